#!/usr/bin/env Rscript
# make_glmm_vcov_reference.R -- lme4's covariance of the fixed effects of the tests/reference/glmm
# cases, at lme4's optimum, computed three ways:
#
#   vcov_rx           vcov(fit, use.hessian = FALSE): from RX at the converged working weights
#   hessian           fit@optinfo$derivs$Hessian: lme4's finite-difference Hessian of -2 log L in
#                     (theta, beta) (lme4's deriv12, delta = 1e-4), from the devfun lme4 optimized
#                     (PIRLS at the default tolPwrss = 1e-7, each evaluation starting where the last
#                     ended); vcov(fit) is 2 solve(hessian)[beta, beta]
#   hessian_tight     deriv12 of the devFunOnly function with tolPwrss = 1e-13 at the same point
#                     (PIRLS converged: the Hessian of the Laplace objective itself)
#
# Reads the cases' formulas and data from tests/reference/glmm (the JSON and data/*.csv) and
# writes tests/reference/glmm/vcov/<name>.json.  Run from the repository root:
#     Rscript scripts/make_glmm_vcov_reference.R
# Written against R 4.2.2, lme4 1.1-31, jsonlite 1.8.4.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

local({
  file_arg <- grep("^--file=", commandArgs(FALSE), value = TRUE)
  here <- if (length(file_arg)) dirname(sub("^--file=", "", file_arg[1])) else "scripts"
  source(file.path(here, "reference_io.R"), local = globalenv())
})

indir <- file.path("tests", "reference", "glmm")
outdir <- file.path(indir, "vcov")
dir.create(outdir, showWarnings = FALSE)

for (path in Sys.glob(file.path(indir, "*.json"))) {
  cs <- fromJSON(path, simplifyVector = FALSE)
  if (cs$nAGQ != 1) next
  df <- read.csv(file.path(indir, "data", basename(cs$dataset)))
  for (col in names(cs$factor_levels)) {
    df[[col]] <- factor(as.character(df[[col]]), levels = unlist(cs$factor_levels[[col]]))
  }
  for (col in c("herd", "BROOD", "LOCATION", "id", "district")) {
    if (col %in% names(df) && !is.factor(df[[col]])) df[[col]] <- factor(df[[col]])
  }
  w <- if (is.null(cs$weights)) NULL else as.numeric(unlist(cs$weights))
  fam <- get(cs$family)(link = cs$link)
  env <- environment()
  fit <- eval(bquote(glmer(.(as.formula(cs$formula, env = env)), data = df, family = fam,
                           weights = .(w))))
  tight <- eval(bquote(glmer(.(as.formula(cs$formula, env = env)), data = df, family = fam,
                             weights = .(w), control = glmerControl(tolPwrss = 1e-13),
                             devFunOnly = TRUE)))
  x <- c(unname(getME(fit, "theta")), unname(fixef(fit)))
  h_tight <- lme4:::deriv12(tight, x)$Hessian
  out <- list(
    name = cs$name,
    theta = unname(getME(fit, "theta")),
    beta = unname(fixef(fit)),
    vcov = unname(as.matrix(vcov(fit))),
    vcov_rx = unname(as.matrix(suppressWarnings(vcov(fit, use.hessian = FALSE)))),
    hessian = unname(fit@optinfo$derivs$Hessian),
    hessian_tight = unname(h_tight)
  )
  write_json_file(out, file.path(outdir, paste0(cs$name, ".json")))
  cat(cs$name, "\n")
}
