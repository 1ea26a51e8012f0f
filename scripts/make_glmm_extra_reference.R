#!/usr/bin/env Rscript
# make_glmm_extra_reference.R -- lme4 reference fits for the GLMM families beyond binomial and
# Poisson: negative binomial (glmer.nb) and Gamma with a log link (glmer).
#
# Produces, under OUTDIR (default: reference-out/glmm_extra):
#   data/*.csv     the data sets, written with write_csv17() below (numbers with as many
#                  significant digits as needed to read back the same double, at most 17;
#                  factors as their labels): grouseticks (lme4, plus cHEIGHT = HEIGHT minus its
#                  mean), nb_sim (set.seed(4)), gamma_sim (set.seed(5)), gamma_slopes_sim
#                  (set.seed(6));
#   <name>.json    one fit each, with the fields of the shared glmm/*.json (estimates, objective,
#                  Wald z and p, VarCorr, ranef, the objective at three fixed (theta, beta) points
#                  with tight PIRLS), plus, for glmer.nb, the NB shape theta_nb and the objective
#                  as a function of the shape (shape_profile). Fields: tests/reference/README.md.
#
# Written against R 4.2.2, lme4 1.1-31, Matrix 1.5-3, MASS 7.3-58.2, jsonlite 1.8.4
# (Debian's r-cran-* packages).
#
# Run from the repository root:
#     Rscript scripts/make_glmm_extra_reference.R tests/reference/glmm_extra
# The whole run takes well under a minute.

suppressPackageStartupMessages({
  library(lme4)
  library(MASS)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
outdir <- if (length(args) >= 1) args[[1]] else file.path("reference-out", "glmm_extra")
dir.create(file.path(outdir, "data"), recursive = TRUE, showWarnings = FALSE)

local({
  # this script's folder, whatever the working directory
  file_arg <- grep("^--file=", commandArgs(FALSE), value = TRUE)
  here <- if (length(file_arg)) dirname(sub("^--file=", "", file_arg[1])) else "scripts"
  source(file.path(here, "reference_io.R"), local = globalenv())
})

# ---------------------------------------------------------------------------
# Data sets (held in `dataenv`, also the environment of every formula)
# ---------------------------------------------------------------------------
dataenv <- new.env()

grouseticks <- lme4::grouseticks
grouseticks$cHEIGHT <- grouseticks$HEIGHT - mean(grouseticks$HEIGHT)

# nb_sim: 50 groups of 10, overdispersed counts: y ~ NB(size 1.5, mean exp(0.5 + 0.4 x + b_g)),
# b_g ~ N(0, 0.6^2)
set.seed(4)
g <- factor(rep(sprintf("c%02d", 1:50), each = 10))
x <- rnorm(500)
b <- rnorm(50, sd = 0.6)
y <- rnbinom(500, size = 1.5, mu = exp(0.5 + 0.4 * x + b[as.integer(g)]))
nb_sim <- data.frame(y = y, x = x, g = g)

# gamma_sim: 40 groups of 10: y ~ Gamma(shape 2, mean exp(1 + 0.5 x + b_g)), b_g ~ N(0, 0.5^2)
set.seed(5)
g <- factor(rep(sprintf("h%02d", 1:40), each = 10))
x <- runif(400, 0, 2)
b <- rnorm(40, sd = 0.5)
mu <- exp(1 + 0.5 * x + b[as.integer(g)])
y <- rgamma(400, shape = 2, rate = 2 / mu)
gamma_sim <- data.frame(y = y, x = x, g = g)

# gamma_slopes_sim: 30 groups of 12, x = -1.1, -0.9, ..., 1.1 (centred: with x = 0, ..., 2.2
# lme4 warns of a max|grad| of 0.02, an artefact of its PIRLS tolerance): y ~ Gamma(shape 3,
# mean exp(0.5 + 0.8 x + b0_g + b1_g x)), (b0, b1) with sd 0.5, 0.3 and correlation 0.2
set.seed(6)
g <- factor(rep(sprintf("k%02d", 1:30), each = 12))
x <- rep(round(seq(-1.1, 1.1, by = 0.2), 1), 30)
S <- matrix(c(0.5^2, 0.2 * 0.5 * 0.3, 0.2 * 0.5 * 0.3, 0.3^2), 2)
bb <- MASS::mvrnorm(30, c(0, 0), S)
gi <- as.integer(g)
mu <- exp(0.5 + 0.8 * x + bb[gi, 1] + bb[gi, 2] * x)
y <- rgamma(360, shape = 3, rate = 3 / mu)
gamma_slopes_sim <- data.frame(y = y, x = x, g = g)

for (nm in c("grouseticks", "nb_sim", "gamma_sim", "gamma_slopes_sim")) {
  assign(nm, get(nm), envir = dataenv)
  write_csv17(get(nm), file.path(outdir, "data", paste0(nm, ".csv")))
}

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
# Evaluate `fun(formula, data = <dataset>, ...)` in dataenv.
glmer_call <- function(fun, formula, dataset, ...) {
  cl <- as.call(c(list(fun, formula = as.formula(formula, env = dataenv),
                       data = as.name(dataset)), list(...)))
  eval(cl, dataenv)
}

fit_capture <- function(expr_fun) {
  msgs <- character(0)
  elapsed <- NA_real_
  fit <- withCallingHandlers({
    t0 <- proc.time()[["elapsed"]]
    f <- expr_fun()
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

factor_levels <- function(df) {
  out <- list()
  for (nm in names(df)) {
    if (is.factor(df[[nm]]) && nlevels(df[[nm]]) <= 50) out[[nm]] <- levels(df[[nm]])
  }
  if (length(out) == 0) setNames(list(), character(0)) else out
}

# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------
cases <- list(
  list(name = "grouseticks_nb", dataset = "grouseticks", kind = "nb",
       formula = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD)"),
  list(name = "nb_sim", dataset = "nb_sim", kind = "nb",
       formula = "y ~ x + (1 | g)"),
  list(name = "gamma_log_sim", dataset = "gamma_sim", kind = "gamma",
       formula = "y ~ x + (1 | g)"),
  list(name = "gamma_log_slopes_sim", dataset = "gamma_slopes_sim", kind = "gamma",
       formula = "y ~ x + (x | g)")
)

make_case <- function(cs) {
  if (cs$kind == "nb") {
    cap <- fit_capture(function() glmer_call(quote(lme4::glmer.nb), cs$formula, cs$dataset))
    fit <- cap$fit
    theta_nb <- getME(fit, "glmer.nb.theta")
    fam_at <- function(th) MASS::negative.binomial(theta = th)
    fam <- fam_at(theta_nb)
  } else {
    fam <- Gamma(link = "log")
    cap <- fit_capture(function() glmer_call(quote(lme4::glmer), cs$formula, cs$dataset,
                                             family = fam))
    fit <- cap$fit
  }

  theta <- unname(getME(fit, "theta"))
  beta <- unname(fixef(fit))
  start <- glmer_call(quote(lme4::glFormula), cs$formula, cs$dataset, family = fam)$reTrms$theta
  # objective at fixed (theta, beta) with PIRLS converged tightly (family at lme4's NB shape)
  devfun <- suppressMessages(suppressWarnings(
    glmer_call(quote(lme4::glmer), cs$formula, cs$dataset, family = fam, nAGQ = 1L,
               control = glmerControl(tolPwrss = 1e-13), devFunOnly = TRUE)))
  pts <- list(list(theta, beta), list((start + theta) / 2, beta), list(start, 0.9 * beta))
  fixed_parameters <- lapply(pts, function(p) {
    th <- as.numeric(p[[1]]); be <- as.numeric(p[[2]])
    list(theta = th, beta = be, objective = devfun(c(th, be)))
  })

  df <- get(cs$dataset, envir = dataenv)
  vc <- as.data.frame(VarCorr(fit))
  re <- as.data.frame(ranef(fit, condVar = TRUE))
  ll <- logLik(fit)
  cf <- summary(fit)$coefficients
  ci <- confint(fit, method = "Wald", oldNames = FALSE)[names(fixef(fit)), , drop = FALSE]

  out <- list(
    name = cs$name,
    dataset = paste0("data/", cs$dataset, ".csv"),
    factor_levels = factor_levels(df),
    formula = cs$formula,
    family = if (cs$kind == "nb") "negative.binomial" else "Gamma",
    lme4_family = family(fit)$family,
    link = family(fit)$link,
    nAGQ = 1L,
    weights = NULL,
    lme4_version = as.character(packageVersion("lme4")),
    R_version = paste(R.version$major, R.version$minor, sep = "."),
    nobs = nobs(fit),
    ngrps = as.list(ngrps(fit)),
    theta = theta,
    theta_names = names(getME(fit, "theta")),
    lower = getME(fit, "lower"),
    beta = as.list(fixef(fit)),
    sigma = sigma(fit),
    objective = unname(fit@devcomp$cmp[["dev"]]),
    logLik = as.numeric(ll),
    AIC = AIC(fit),
    BIC = BIC(fit),
    df = attr(ll, "df"),
    deviance = deviance(fit),
    vcov_beta = unname(as.matrix(vcov(fit))),
    # Gamma: lme4 labels the column "t value" but takes p from the normal distribution
    z = unname(cf[, 3]),
    p = unname(cf[, "Pr(>|z|)"]),
    varcorr = data.frame(grp = vc$grp, var1 = vc$var1, var2 = vc$var2,
                         vcov = vc$vcov, sdcor = vc$sdcor, stringsAsFactors = FALSE),
    is_singular = isSingular(fit),
    messages = cap$messages,
    fitted_head = unname(head(fitted(fit), 10)),
    ranef = list(grpvar = as.character(re$grpvar), term = as.character(re$term),
                 grp = as.character(re$grp), condval = re$condval, condsd = re$condsd),
    confint_wald = list(lower = unname(ci[, 1]), upper = unname(ci[, 2])),
    lme4_fit_seconds = cap$elapsed,
    fixed_parameters = fixed_parameters
  )
  if (cs$kind == "nb") {
    out$theta_nb <- theta_nb
    out$nb_shape_evaluations <- attr(fit, "nevals")
    # At shapes around theta_nb: the objective at lme4's (theta, beta) with tight PIRLS
    # (optimizer-independent), and a fresh glmer fit at that fixed shape (lme4's glmer.nb
    # minimizes this fit's -2 logLik over log(shape) with optimize(tol = 5e-5)).
    out$shape_profile <- lapply(theta_nb * c(1 / 1.5, 1, 1.5), function(s) {
      dfs <- suppressMessages(suppressWarnings(
        glmer_call(quote(lme4::glmer), cs$formula, cs$dataset, family = fam_at(s), nAGQ = 1L,
                   control = glmerControl(tolPwrss = 1e-13), devFunOnly = TRUE)))
      f <- suppressMessages(suppressWarnings(
        glmer_call(quote(lme4::glmer), cs$formula, cs$dataset, family = fam_at(s))))
      list(theta_nb = s, fixed_objective = dfs(c(theta, beta)),
           objective = unname(f@devcomp$cmp[["dev"]]),
           logLik = as.numeric(logLik(f)), theta = unname(getME(f, "theta")),
           beta = unname(fixef(f)))
    })
  }
  write_json_file(out, file.path(outdir, paste0(cs$name, ".json")))
  invisible(list(fit = fit, out = out))
}

for (cs in cases) {
  message("case ", cs$name)
  r <- make_case(cs)
  o <- r$out
  message(sprintf("  objective %.6f (fixed at optimum %.6f)  singular %s  sigma %.6g  theta %s%s  messages: %s",
                  o$objective, o$fixed_parameters[[1]]$objective, o$is_singular, o$sigma,
                  paste(signif(o$theta, 6), collapse = " "),
                  if (!is.null(o$theta_nb)) sprintf("  theta_nb %.6g", o$theta_nb) else "",
                  if (length(o$messages)) paste(o$messages, collapse = " | ") else "none"))
  message("  beta: ", paste(sprintf("%s=%.6g", names(o$beta), unlist(o$beta)), collapse = ", "))
  message("  df ", o$df, "  logLik ", format(o$logLik, digits = 10))
}

message("wrote ", normalizePath(outdir))
