#!/usr/bin/env Rscript
# make_formula_reference.R -- lme4 reference fits for formula features: transforms in the
# fixed and random parts (I(), poly(), scale(), sqrt(), log(), log1p(), exp(), ns(), bs()),
# offset(), a transformed response, an ordered factor (contr.poly), interactions and the
# (a + b + c)^2 crossing.
#
# Produces, under OUTDIR (default: reference-out/formulas):
#   data/*.csv     the data sets, written with write_csv17() below (numbers with as many
#                  significant digits as needed to read back the same double, at most 17;
#                  factors as their labels): sleepstudy (lme4, plus the ordered factor fDays),
#                  co2 (R's datasets::CO2, Plant made unordered), and three simulated sets
#                  (crossing_sim: set.seed(1); quadratic_sim: set.seed(2);
#                  quadratic_re_sim: set.seed(3));
#   <name>.json    one lmer(REML = TRUE) fit each: the fields of the existing cases/*.json
#                  that are cheap, plus the model matrices' first rows (X_head, re_terms),
#                  the model frame's predvars (basis coefficients of poly/scale/ns/bs), the
#                  response and offset as lme4 sees them. Fields: tests/reference/README.md.
#
# Written against R 4.2.2, lme4 1.1-31, Matrix 1.5-3, MASS 7.3-58.2, jsonlite 1.8.4
# (Debian's r-cran-* packages).
#
# Run from the repository root:
#     Rscript scripts/make_formula_reference.R tests/reference/formulas
# The whole run takes a few seconds.

suppressPackageStartupMessages({
  library(lme4)
  library(splines)
  library(MASS)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
outdir <- if (length(args) >= 1) args[[1]] else file.path("reference-out", "formulas")
dir.create(file.path(outdir, "data"), recursive = TRUE, showWarnings = FALSE)

local({
  # this script's folder, whatever the working directory
  file_arg <- grep("^--file=", commandArgs(FALSE), value = TRUE)
  here <- if (length(file_arg)) dirname(sub("^--file=", "", file_arg[1])) else "scripts"
  source(file.path(here, "reference_io.R"), local = globalenv())
})

# ---------------------------------------------------------------------------
# Data sets (held in `dataenv`, which is also the environment of every formula).
# ---------------------------------------------------------------------------
dataenv <- new.env()

# sleepstudy, plus an ordered factor of Days: levels "(-1,2]" < "(2,5]" < "(5,9]"
sleepstudy <- lme4::sleepstudy
sleepstudy$fDays <- factor(cut(sleepstudy$Days, c(-1, 2, 5, 9)), ordered = TRUE)

# CO2 (datasets): a groupedData object whose Plant is an ordered factor. Made a plain data
# frame with Plant an unordered factor, its level order kept (Qn1 Qn2 Qn3 Qc1 Qc3 Qc2 Mn3 Mn2
# Mn1 Mc2 Mc3 Mc1). Type and Treatment are unordered factors already.
co2 <- data.frame(
  Plant = factor(as.character(datasets::CO2$Plant), levels = levels(datasets::CO2$Plant)),
  Type = factor(as.character(datasets::CO2$Type), levels = levels(datasets::CO2$Type)),
  Treatment = factor(as.character(datasets::CO2$Treatment),
                     levels = levels(datasets::CO2$Treatment)),
  conc = as.numeric(datasets::CO2$conc),
  uptake = as.numeric(datasets::CO2$uptake),
  stringsAsFactors = FALSE
)

# crossing_sim: 200 rows, numeric a, b, c, group g with 20 levels of 10 rows
set.seed(1)
n <- 200
a <- rnorm(n); b <- rnorm(n); c <- rnorm(n)
g <- factor(rep(sprintf("g%02d", 1:20), each = 10))
u <- rnorm(20, sd = 1)
y <- 2 + 1.0 * a - 0.5 * b + 0.3 * c + 0.4 * a * b - 0.2 * a * c + 0.1 * b * c +
  u[as.integer(g)] + rnorm(n, sd = 1)
crossing_sim <- data.frame(y = y, a = a, b = b, c = c, g = g)

# quadratic_sim: 26 groups (A..Z) of 9 rows, x = 0..8 an integer column, random intercept
# and slope
set.seed(2)
g <- factor(rep(LETTERS, each = 9))
x <- rep(0:8, 26)
S2 <- matrix(c(20^2, 0.2 * 20 * 4, 0.2 * 20 * 4, 4^2), 2)
b2 <- MASS::mvrnorm(26, c(0, 0), S2)
y <- 250 + 10 * x - 0.5 * x^2 + b2[as.integer(g), 1] + b2[as.integer(g), 2] * x +
  rnorm(length(x), sd = 10)
quadratic_sim <- data.frame(y = y, x = x, g = g)
stopifnot(is.integer(quadratic_sim$x))

# quadratic_re_sim: 40 groups of 12 rows, x = 0, 0.5, ..., 5.5, a random intercept, slope
# and curvature with a positive-definite covariance (sd 2, 1, 0.3; correlations 0.3, -0.2,
# -0.4), residual sd 1
set.seed(3)
g <- factor(rep(sprintf("s%02d", 1:40), each = 12))
x <- rep(seq(0, 5.5, by = 0.5), 40)
sds <- c(2, 1, 0.3)
R3 <- matrix(c(1, 0.3, -0.2,
               0.3, 1, -0.4,
               -0.2, -0.4, 1), 3)
S3 <- diag(sds) %*% R3 %*% diag(sds)
stopifnot(all(eigen(S3)$values > 0))
b3 <- MASS::mvrnorm(40, c(0, 0, 0), S3)
gi <- as.integer(g)
y <- 5 + 1.5 * x - 0.2 * x^2 + b3[gi, 1] + b3[gi, 2] * x + b3[gi, 3] * x^2 +
  rnorm(length(x), sd = 1)
quadratic_re_sim <- data.frame(y = y, x = x, g = g)

for (nm in c("sleepstudy", "co2", "crossing_sim", "quadratic_sim", "quadratic_re_sim")) {
  assign(nm, get(nm), envir = dataenv)
  write_csv17(get(nm), file.path(outdir, "data", paste0(nm, ".csv")))
}

data_notes <- list(
  sleepstudy = paste("lme4's sleepstudy plus fDays = factor(cut(Days, c(-1, 2, 5, 9)),",
                     "ordered = TRUE): an ordered factor (contr.poly contrasts), written as labels"),
  co2 = paste("R's datasets::CO2 as a plain data frame; Plant is an ordered factor in R,",
              "converted to an unordered factor with its level order kept"),
  crossing_sim = "simulated, set.seed(1): 200 rows, a, b, c ~ N(0, 1), g with 20 levels of 10 rows",
  quadratic_sim = paste("simulated, set.seed(2): 26 groups (A..Z) of 9 rows, x = 0..8 an integer",
                        "column, random intercept and slope"),
  quadratic_re_sim = paste("simulated, set.seed(3): 40 groups of 12 rows, x = 0, 0.5, ..., 5.5,",
                           "random intercept, slope and curvature with a positive-definite covariance")
)

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
lmer_call <- function(fun, formula, dataset, REML, ...) {
  cl <- as.call(c(list(fun, formula = as.formula(formula, env = dataenv),
                       data = as.name(dataset), REML = REML), list(...)))
  eval(cl, dataenv)
}

fit_capture <- function(formula, dataset, REML) {
  msgs <- character(0)
  fit <- withCallingHandlers(
    lmer_call(quote(lme4::lmer), formula, dataset, REML),
    message = function(m) {
      msgs <<- c(msgs, conditionMessage(m))
      invokeRestart("muffleMessage")
    },
    warning = function(w) {
      msgs <<- c(msgs, conditionMessage(w))
      invokeRestart("muffleWarning")
    })
  list(fit = fit, messages = msgs)
}

factor_levels <- function(df) {
  out <- list()
  for (nm in names(df)) {
    if (is.factor(df[[nm]]) && nlevels(df[[nm]]) <= 50) out[[nm]] <- levels(df[[nm]])
  }
  if (length(out) == 0) setNames(list(), character(0)) else out
}

ordered_factors <- function(df) {
  names(df)[vapply(df, is.ordered, logical(1))]
}

objective_of <- function(fit) if (isREML(fit)) REMLcrit(fit) else deviance(fit)

dep17 <- function(e) {
  paste(deparse(e, width.cutoff = 500L, control = c("keepNA", "keepInteger", "niceNames", "digits17")),
        collapse = " ")
}

head_rows <- function(m, k = 5) {
  m <- as.matrix(m)
  list(colnames = I(colnames(m)), rows = unname(m[seq_len(min(k, nrow(m))), , drop = FALSE]))
}

# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------
cases <- list(
  list(name = "sleepstudy_days_squared_slopes", dataset = "sleepstudy",
       formula = "Reaction ~ Days + I(Days^2) + (Days | Subject)"),
  list(name = "sleepstudy_poly2", dataset = "sleepstudy",
       formula = "Reaction ~ poly(Days, 2) + (1 | Subject)"),
  list(name = "sleepstudy_poly2_raw", dataset = "sleepstudy",
       formula = "Reaction ~ poly(Days, 2, raw = TRUE) + (1 | Subject)"),
  list(name = "sleepstudy_scale", dataset = "sleepstudy",
       formula = "Reaction ~ scale(Days) + (1 | Subject)"),
  list(name = "sleepstudy_sqrt", dataset = "sleepstudy",
       formula = "Reaction ~ sqrt(Days) + (1 | Subject)"),
  list(name = "sleepstudy_offset", dataset = "sleepstudy",
       formula = "Reaction ~ Days + offset(Days) + (1 | Subject)"),
  list(name = "sleepstudy_log_response", dataset = "sleepstudy",
       formula = "log(Reaction) ~ Days + (Days | Subject)"),
  list(name = "sleepstudy_scaled_response", dataset = "sleepstudy",
       formula = "Reaction/1000 ~ Days + (1 | Subject)"),
  list(name = "sleepstudy_ordered_factor", dataset = "sleepstudy",
       formula = "Reaction ~ fDays + (1 | Subject)"),
  list(name = "sleepstudy_log1p_exp", dataset = "sleepstudy",
       formula = "Reaction ~ log1p(Days) + exp(Days/10) + (1 | Subject)"),
  list(name = "sleepstudy_ns3", dataset = "sleepstudy",
       formula = "Reaction ~ ns(Days, 3) + (1 | Subject)"),
  list(name = "sleepstudy_bs3", dataset = "sleepstudy",
       formula = "Reaction ~ bs(Days, 3) + (1 | Subject)"),
  list(name = "co2_log_conc_slopes", dataset = "co2",
       formula = "uptake ~ Treatment + log(conc) + (log(conc) | Plant)"),
  list(name = "co2_type_treatment", dataset = "co2",
       formula = "uptake ~ Type * Treatment + (1 | Plant)"),
  # the two above are singular fits in lme4; this one is not
  list(name = "co2_type_treatment_log_conc", dataset = "co2",
       formula = "uptake ~ Type * Treatment + log(conc) + (1 | Plant)"),
  list(name = "crossing_sim", dataset = "crossing_sim",
       formula = "y ~ (a + b + c)^2 + (1 | g)"),
  list(name = "quadratic_sim", dataset = "quadratic_sim",
       formula = "y ~ x + I(x^2) + (x | g)"),
  list(name = "quadratic_re_sim", dataset = "quadratic_re_sim",
       formula = "y ~ x + I(x^2) + (1 + x + I(x^2) | g)")
)

make_case <- function(cs) {
  REML <- if (is.null(cs$REML)) TRUE else cs$REML
  cap <- fit_capture(cs$formula, cs$dataset, REML)
  fit <- cap$fit

  devfun <- lmer_call(quote(lme4::lmer), cs$formula, cs$dataset, REML, devFunOnly = TRUE)
  start <- lmer_call(quote(lme4::lFormula), cs$formula, cs$dataset, REML)$reTrms$theta
  theta <- unname(getME(fit, "theta"))
  fixed_theta <- lapply(list(start, (start + theta) / 2, theta), function(th) {
    th <- as.numeric(th)
    list(theta = th, objective = devfun(th))
  })

  df <- get(cs$dataset, envir = dataenv)
  vc <- as.data.frame(VarCorr(fit))
  re <- as.data.frame(ranef(fit, condVar = TRUE))
  X <- getME(fit, "X")
  Z <- getME(fit, "Z")
  Lambdat <- getME(fit, "Lambdat")
  mm <- getME(fit, "mmList")
  tt <- attr(model.frame(fit), "terms")
  ctr <- attr(X, "contrasts")
  ll <- logLik(fit)

  out <- list(
    name = cs$name,
    dataset = paste0("data/", cs$dataset, ".csv"),
    data_notes = data_notes[[cs$dataset]],
    factor_levels = factor_levels(df),
    ordered_factors = I(ordered_factors(df)),
    formula = cs$formula,
    REML = REML,
    lme4_version = as.character(packageVersion("lme4")),
    R_version = paste(R.version$major, R.version$minor, sep = "."),
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
    fitted_head = unname(head(fitted(fit), 10)),
    y_head = unname(head(as.numeric(getME(fit, "y")), 10)),
    offset_head = unname(head(as.numeric(getME(fit, "offset")), 10)),
    X_shape = dim(X),
    X_head = head_rows(X),
    X_colsums = unname(colSums(X)),
    contrasts = if (is.null(ctr)) setNames(list(), character(0)) else
      lapply(ctr, function(v) if (is.character(v)) v else "matrix"),
    re_terms = lapply(seq_along(mm), function(i) {
      c(list(term = names(mm)[i]), head_rows(mm[[i]]))
    }),
    predvars_fixed = dep17(attr(tt, "predvars.fixed")),
    predvars_random = dep17(attr(tt, "predvars.random")),
    Z_shape = dim(Z),
    Z_nnz = length(Z@x),
    Lambdat_shape = dim(Lambdat),
    Lambdat_nnz = length(Lambdat@x),
    ranef = list(grpvar = as.character(re$grpvar), term = as.character(re$term),
                 grp = as.character(re$grp), condval = re$condval, condsd = re$condsd),
    fixed_theta = fixed_theta
  )
  write_json_file(out, file.path(outdir, paste0(cs$name, ".json")))
  invisible(list(fit = fit, out = out))
}

for (cs in cases) {
  message("case ", cs$name)
  r <- make_case(cs)
  o <- r$out
  message(sprintf("  objective %.6f  singular %s  sigma %.6g  theta %s  messages: %s",
                  o$objective, o$is_singular, o$sigma,
                  paste(signif(o$theta, 6), collapse = " "),
                  if (length(o$messages)) paste(o$messages, collapse = " | ") else "none"))
  message("  beta: ", paste(sprintf("%s=%.6g", names(o$beta), unlist(o$beta)), collapse = ", "))
}

message("wrote ", normalizePath(outdir))
