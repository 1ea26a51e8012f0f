#!/usr/bin/env Rscript
# make_reference.R -- regenerate the lme4 reference values used by the tests.
#
# Produces, under OUTDIR (default: reference-out):
#   data/*.csv          the data sets, as written by R's write.csv (row.names = FALSE):
#                       dyestuff, dyestuff2, penicillin, pastes, sleepstudy, insteval (lme4),
#                       star_k_sample (mlmRev's star, kindergarten, 20% sample) and
#                       three_level (simulated), both generated with set.seed(123) exactly
#                       as in notes/extracting-the-V-matrix.txt;
#   cases/<name>.json   one fitted model each (11 cases): estimates, objective at fixed
#                       theta values, VarCorr, ranef with condsd, Z/Lambdat sizes, statistics
#                       of V = sigma^2 (Z Lambda Lambda' Z' + I), GLS beta, lmerTest
#                       Satterthwaite and Kenward-Roger tests, lmer() timing;
#   inference/<name>.json  post-fit inference (confint profile/Wald, coef, predict with a new
#                       level "999", Satterthwaite/Kenward-Roger df and p, type III anova) for
#                       5 models, and anova_sleepstudy.json (anova(m0, m1) model comparison).
# The fields are described in the README.md of the shared reference folder.
#
# Written against R 4.2.2, lme4 1.1-31, Matrix 1.5-3, lmerTest 3.1-3, pbkrtest 0.5.2,
# mlmRev 1.0-8, dplyr 1.0.10, jsonlite 1.8.4 (Debian's r-cran-* packages). Other lme4
# versions give the same model-only values (data, fixed_theta objectives) but may give
# slightly different optimizer-dependent ones (theta, beta, sigma, ...).
#
# Run from the repository root:
#     Rscript scripts/make_reference.R [OUTDIR]
# InstEval takes ~20 s per fit; the whole run takes a few minutes.

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)  # masks lme4::lmer; lme4::lmer is used explicitly below
  library(pbkrtest)
  library(mlmRev)
  library(dplyr)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
outdir <- if (length(args) >= 1) args[[1]] else "reference-out"
for (d in c("data", "cases", "inference")) {
  dir.create(file.path(outdir, d), recursive = TRUE, showWarnings = FALSE)
}

write_json_file <- function(x, path) {
  writeLines(toJSON(x, auto_unbox = TRUE, pretty = TRUE, digits = NA,
                    null = "null", na = "null"), path)
}

# ---------------------------------------------------------------------------
# Data sets. Models are fitted to these data frames (held in `dataenv`, which
# is also the environment of every formula, so update()/profile() find them).
# ---------------------------------------------------------------------------
dataenv <- new.env()

data(star, package = "mlmRev")
set.seed(123)
star_k_sample <- filter(star, gr == "K") %>% sample_frac(.2)

n1 <- 5; n2 <- 3; n3 <- 10
sch <- letters[1:10]
tch <- 1:30
sch.cl <- rep(sch, each = n1 * n2)
tch.cl <- rep(tch, each = n1)
set.seed(123)
e3 <- rep(rnorm(n1), each = n1 * n2)
e2 <- rep(rnorm(n2 * n1), each = n1)
x1 <- rnorm(n1 * n2 * n3)
e1 <- rnorm(n1 * n2 * n3)
y <- e3 + e2 + .5 * x1 + e1
three_level <- data.frame(y, sch.cl, tch.cl, e3, e2, x1, e1)

assign("dyestuff", lme4::Dyestuff, envir = dataenv)
assign("dyestuff2", lme4::Dyestuff2, envir = dataenv)
assign("penicillin", lme4::Penicillin, envir = dataenv)
assign("pastes", lme4::Pastes, envir = dataenv)
assign("sleepstudy", lme4::sleepstudy, envir = dataenv)
assign("insteval", lme4::InstEval, envir = dataenv)
assign("star_k_sample", star_k_sample, envir = dataenv)
assign("three_level", three_level, envir = dataenv)

for (nm in ls(dataenv)) {
  write.csv(get(nm, envir = dataenv), file.path(outdir, "data", paste0(nm, ".csv")),
            row.names = FALSE)
}

# prior weights for sleepstudy_weighted: 1, 2, 3, 1, 2, 3, ... by Days
sleepstudy_w <- lme4::sleepstudy
sleepstudy_w$w <- sleepstudy_w$Days %% 3 + 1
assign("sleepstudy_w", sleepstudy_w, envir = dataenv)

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
# Build and evaluate `fun(formula, data = <dataset>, REML = REML, ...)` in dataenv,
# so that the stored call refers to the data set by name.
lmer_call <- function(fun, formula, dataset, REML, weights = NULL, ...) {
  cl <- as.call(c(list(fun, formula = as.formula(formula, env = dataenv),
                       data = as.name(dataset), REML = REML),
                  if (!is.null(weights)) list(weights = as.name(weights)),
                  list(...)))
  eval(cl, dataenv)
}

# Fit with lme4::lmer, collecting the messages and warnings it emits.
fit_capture <- function(formula, dataset, REML, weights = NULL) {
  msgs <- character(0)
  elapsed <- NA_real_
  fit <- withCallingHandlers({
    t0 <- proc.time()[["elapsed"]]
    f <- lmer_call(quote(lme4::lmer), formula, dataset, REML, weights)
    elapsed <- proc.time()[["elapsed"]] - t0
    f
  },
  message = function(m) {
    msgs <<- c(msgs, conditionMessage(m))
    invokeRestart("muffleMessage")
  },
  warning = function(w) {
    msgs <<- c(msgs, conditionMessage(w))
    invokeRestart("muffleWarning")
  })
  list(fit = fit, messages = msgs, elapsed = elapsed)
}

# median elapsed seconds of lmer() over `reps` fits (including the first one)
fit_seconds <- function(first, formula, dataset, REML, reps) {
  times <- first
  if (reps > 1) for (i in seq_len(reps - 1)) {
    times <- c(times, system.time(suppressMessages(suppressWarnings(
      lmer_call(quote(lme4::lmer), formula, dataset, REML))))[["elapsed"]])
  }
  median(times)
}

lmertest_fit <- function(formula, dataset, REML, weights = NULL) {
  suppressMessages(suppressWarnings(
    lmer_call(quote(lmerTest::lmer), formula, dataset, REML, weights)))
}

factor_levels <- function(df) {
  out <- list()
  for (nm in names(df)) {
    if (is.factor(df[[nm]]) && nlevels(df[[nm]]) <= 50) out[[nm]] <- levels(df[[nm]])
  }
  if (length(out) == 0) setNames(list(), character(0)) else out
}

objective_of <- function(fit) if (isREML(fit)) REMLcrit(fit) else deviance(fit)

v_stats <- function(fit) {
  Lambdat <- getME(fit, "Lambdat")
  Zt <- getME(fit, "Zt")
  s2 <- sigma(fit)^2
  n <- nobs(fit)
  V <- s2 * (t(Zt) %*% crossprod(Lambdat) %*% Zt) + s2 * Diagonal(n)
  Vd <- as.matrix(V)
  y <- getME(fit, "y")
  X <- getME(fit, "X")
  Vinv_y <- solve(Vd, y)
  Vinv_X <- solve(Vd, X)
  gls <- solve(crossprod(X, Vinv_X), crossprod(X, Vinv_y))
  list(
    V = list(
      shape = dim(Vd),
      trace = sum(diag(Vd)),
      sum = sum(Vd),
      frobenius = sqrt(sum(Vd^2)),
      nnz = sum(Vd != 0),
      diag_head = unname(head(diag(Vd), 10)),
      row1 = unname(Vd[1, ]),
      log_det = as.numeric(determinant(Vd, logarithm = TRUE)$modulus),
      Vinv_y_head = unname(head(as.numeric(Vinv_y), 10))
    ),
    gls_beta = unname(as.numeric(gls))
  )
}

coef_table <- function(fit_lt, ddf) {
  cf <- summary(fit_lt, ddf = ddf)$coefficients
  list(df = unname(cf[, "df"]), t = unname(cf[, "t value"]), p = unname(cf[, "Pr(>|t|)"]))
}

# ---------------------------------------------------------------------------
# cases/*.json
# ---------------------------------------------------------------------------
cases <- list(
  list(name = "dyestuff", dataset = "dyestuff", formula = "Yield ~ 1 + (1 | Batch)", REML = TRUE),
  list(name = "dyestuff2_singular", dataset = "dyestuff2", formula = "Yield ~ 1 + (1 | Batch)", REML = TRUE),
  list(name = "insteval_crossed_ml", dataset = "insteval",
       formula = "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)", REML = FALSE,
       reps = 3, V = FALSE),
  list(name = "pastes_nested", dataset = "pastes", formula = "strength ~ 1 + (1 | batch/cask)", REML = TRUE),
  list(name = "penicillin_crossed", dataset = "penicillin",
       formula = "diameter ~ 1 + (1 | plate) + (1 | sample)", REML = TRUE),
  list(name = "sleepstudy_intercept", dataset = "sleepstudy", formula = "Reaction ~ Days + (1 | Subject)", REML = TRUE),
  list(name = "sleepstudy_ml", dataset = "sleepstudy", formula = "Reaction ~ Days + (Days | Subject)", REML = FALSE),
  list(name = "sleepstudy_reml", dataset = "sleepstudy", formula = "Reaction ~ Days + (Days | Subject)", REML = TRUE),
  list(name = "sleepstudy_uncorrelated", dataset = "sleepstudy",
       formula = "Reaction ~ Days + (Days || Subject)", REML = TRUE),
  list(name = "star_k_sample", dataset = "star_k_sample", formula = "read ~ cltype + sx + (sx | sch/tch)", REML = TRUE),
  list(name = "three_level_nested", dataset = "three_level", formula = "y ~ x1 + (1 | sch.cl/tch.cl)", REML = TRUE)
)

make_case <- function(cs) {
  reps <- if (is.null(cs$reps)) 5 else cs$reps
  with_V <- if (is.null(cs$V)) TRUE else cs$V
  cap <- fit_capture(cs$formula, cs$dataset, cs$REML)
  fit <- cap$fit
  secs <- fit_seconds(cap$elapsed, cs$formula, cs$dataset, cs$REML, reps)

  # objective at fixed theta: lme4's start, halfway, optimum
  devfun <- lmer_call(quote(lme4::lmer), cs$formula, cs$dataset, cs$REML, devFunOnly = TRUE)
  start <- lmer_call(quote(lme4::lFormula), cs$formula, cs$dataset, cs$REML)$reTrms$theta
  theta <- unname(getME(fit, "theta"))
  fixed_theta <- lapply(list(start, (start + theta) / 2, theta), function(th) {
    th <- as.numeric(th)
    list(theta = th, objective = devfun(th))
  })

  vc <- as.data.frame(VarCorr(fit))
  re <- as.data.frame(ranef(fit, condVar = TRUE))
  Z <- getME(fit, "Z")
  Lambdat <- getME(fit, "Lambdat")
  ll <- logLik(fit)

  out <- list(
    name = cs$name,
    dataset = paste0("data/", cs$dataset, ".csv"),
    factor_levels = factor_levels(get(cs$dataset, envir = dataenv)),
    formula = cs$formula,
    REML = cs$REML,
    lme4_version = as.character(packageVersion("lme4")),
    nobs = nobs(fit),
    ngrps = as.list(ngrps(fit)),
    theta = theta,
    theta_names = names(getME(fit, "theta")),
    lower = getME(fit, "lower"),
    beta = as.list(fixef(fit)),
    sigma = sigma(fit),
    objective = objective_of(fit),
    logLik = as.numeric(ll),
    AIC = AIC(fit),
    BIC = BIC(fit),
    df = attr(ll, "df"),
    vcov_beta = unname(as.matrix(vcov(fit))),
    varcorr = data.frame(grp = vc$grp, var1 = vc$var1, var2 = vc$var2,
                         vcov = vc$vcov, sdcor = vc$sdcor, stringsAsFactors = FALSE),
    is_singular = isSingular(fit),
    messages = cap$messages,
    scaled_resid_quantiles = unname(quantile(residuals(fit, "pearson", scaled = TRUE), na.rm = TRUE)),
    fitted_head = unname(head(fitted(fit), 10)),
    Z_shape = dim(Z),
    Z_nnz = length(Z@x),
    Lambdat_shape = dim(Lambdat),
    Lambdat_nnz = length(Lambdat@x),
    lme4_fit_seconds = secs,
    ranef = list(grpvar = as.character(re$grpvar), term = as.character(re$term),
                 grp = as.character(re$grp), condval = re$condval, condsd = re$condsd),
    fixed_theta = fixed_theta
  )
  if (with_V) out <- c(out, v_stats(fit))
  if (cs$REML) {
    fit_lt <- lmertest_fit(cs$formula, cs$dataset, cs$REML)
    out$satterthwaite <- coef_table(fit_lt, "Satterthwaite")
    kr <- coef_table(fit_lt, "Kenward-Roger")
    out$kenward_roger <- list(df = kr$df, p = kr$p)
  }
  write_json_file(out, file.path(outdir, "cases", paste0(cs$name, ".json")))
  invisible(out)
}

for (cs in cases) {
  message("case ", cs$name)
  make_case(cs)
}

# ---------------------------------------------------------------------------
# inference/*.json
# ---------------------------------------------------------------------------
sleep_newdata <- data.frame(Days = c(0, 5, 9, 0, 5, 9),
                            Subject = c("308", "308", "308", "999", "999", "999"),
                            stringsAsFactors = FALSE)

inference <- list(
  list(name = "sleepstudy_reml", dataset = "sleepstudy",
       formula = "Reaction ~ Days + (Days | Subject)", REML = TRUE, newdata = sleep_newdata),
  list(name = "sleepstudy_ml", dataset = "sleepstudy",
       formula = "Reaction ~ Days + (Days | Subject)", REML = FALSE, newdata = sleep_newdata),
  list(name = "sleepstudy_weighted", dataset = "sleepstudy_w", weights = "w",
       formula = "Reaction ~ Days + (Days | Subject)", REML = TRUE, newdata = sleep_newdata),
  list(name = "pastes_nested", dataset = "pastes", formula = "strength ~ 1 + (1 | batch/cask)", REML = TRUE),
  list(name = "penicillin_crossed", dataset = "penicillin",
       formula = "diameter ~ 1 + (1 | plate) + (1 | sample)", REML = TRUE)
)

confint_list <- function(ci) {
  list(names = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]))
}

make_inference <- function(inf) {
  fit <- suppressMessages(suppressWarnings(
    lmer_call(quote(lme4::lmer), inf$formula, inf$dataset, inf$REML, inf$weights)))
  w <- if (is.null(inf$weights)) NULL else get(inf$dataset, envir = dataenv)[[inf$weights]]
  ci_prof <- suppressMessages(suppressWarnings(
    confint(fit, method = "profile", oldNames = FALSE)))
  ci_wald <- confint(fit, method = "Wald", oldNames = FALSE)
  cf <- coef(fit)
  out <- list(
    name = inf$name,
    formula = inf$formula,
    REML = inf$REML,
    weights = w,
    theta = unname(getME(fit, "theta")),
    beta = as.list(fixef(fit)),
    sigma = sigma(fit),
    objective = objective_of(fit),
    vcov_beta = unname(as.matrix(vcov(fit))),
    confint_profile = confint_list(ci_prof),
    confint_wald = confint_list(ci_wald),
    coef = lapply(cf, function(d) list(levels = rownames(d), columns = colnames(d),
                                       values = unname(as.matrix(d))))
  )
  if (!is.null(inf$newdata)) {
    out$newdata <- inf$newdata
    out$predict_conditional <- unname(predict(fit, newdata = inf$newdata, allow.new.levels = TRUE))
    out$predict_population <- unname(predict(fit, newdata = inf$newdata, re.form = NA))
  }
  if (inf$REML) {
    fit_lt <- lmertest_fit(inf$formula, inf$dataset, inf$REML, inf$weights)
    s <- coef_table(fit_lt, "Satterthwaite")
    kr <- coef_table(fit_lt, "Kenward-Roger")
    out$satterthwaite <- list(df = s$df, p = s$p)
    out$kenward_roger <- list(df = kr$df, p = kr$p)
    a <- suppressMessages(anova(fit_lt, type = 3, ddf = "Satterthwaite"))
    out$anova_satterthwaite <- list(terms = rownames(a), F = unname(a[["F value"]]),
                                    NumDF = unname(a[["NumDF"]]), DenDF = unname(a[["DenDF"]]),
                                    p = unname(a[["Pr(>F)"]]))
  }
  write_json_file(out, file.path(outdir, "inference", paste0(inf$name, ".json")))
  invisible(out)
}

for (inf in inference) {
  message("inference ", inf$name)
  make_inference(inf)
}

# anova(m0, m1): both REML fits, refitted with ML by anova()
message("inference anova_sleepstudy")
m_formulas <- c("Reaction ~ Days + (1 | Subject)", "Reaction ~ Days + (Days | Subject)")
m0 <- lmer_call(quote(lme4::lmer), m_formulas[1], "sleepstudy", TRUE)
m1 <- lmer_call(quote(lme4::lmer), m_formulas[2], "sleepstudy", TRUE)
a <- suppressMessages(anova(m0, m1))
write_json_file(list(
  models = m_formulas,
  npar = unname(a[["npar"]]),
  AIC = unname(a[["AIC"]]),
  BIC = unname(a[["BIC"]]),
  logLik = unname(a[["logLik"]]),
  deviance = unname(a[["deviance"]]),
  Chisq = unname(a[["Chisq"]]),
  Df = unname(a[["Df"]]),
  p = unname(a[["Pr(>Chisq)"]])
), file.path(outdir, "inference", "anova_sleepstudy.json"))

message("wrote ", normalizePath(outdir))
