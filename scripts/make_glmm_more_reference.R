#!/usr/bin/env Rscript
# make_glmm_more_reference.R -- lme4 glmer fits of features the shared glmm cases do not cover:
# an offset in the formula (Poisson), an offset argument with prior weights (binomial
# proportions), and the cloglog link. Data: tests/reference/glmm/data (cbpp, grouseticks).
#
# Writes tests/reference/glmm_more/<name>.json with the fields of the glmm cases
# (tests/reference/README.md): formula, family, link, offset (the offset argument, or null),
# weights, theta, beta, objective, vcov_beta, fitted_head, resid_head (the first 10 residuals
# of each type: deviance, pearson, response, working), and fixed_parameters (lme4's
# devFunOnly with tolPwrss = 1e-13 at lme4's optimum and two other points).
# Run from the repository root:  Rscript scripts/make_glmm_more_reference.R
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

indir <- file.path("tests", "reference", "glmm", "data")
outdir <- file.path("tests", "reference", "glmm_more")
dir.create(outdir, showWarnings = FALSE)

cbpp <- read.csv(file.path(indir, "cbpp.csv"))
cbpp$herd <- factor(cbpp$herd)
cbpp$period <- factor(cbpp$period)
grouse <- read.csv(file.path(indir, "grouseticks.csv"))
grouse$YEAR <- factor(grouse$YEAR)
grouse$BROOD <- factor(grouse$BROOD)
grouse$LOCATION <- factor(grouse$LOCATION)

cases <- list(
  list(name = "grouseticks_offset_formula", data = "grouseticks",
       formula = "TICKS ~ YEAR + offset(log(HEIGHT / 400)) + (1 | BROOD)",
       family = "poisson", link = "log", offset = NULL, weights = NULL),
  list(name = "cbpp_offset_weights", data = "cbpp",
       formula = "prop ~ period + (1 | herd)", family = "binomial", link = "logit",
       offset = round(log(cbpp$size) / 5, 6), weights = cbpp$size),
  list(name = "cbpp_cloglog", data = "cbpp",
       formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
       family = "binomial", link = "cloglog", offset = NULL, weights = NULL)
)

for (cs in cases) {
  df <- get(if (cs$data == "cbpp") "cbpp" else "grouse")
  fam <- get(cs$family)(link = cs$link)
  f <- as.formula(cs$formula)
  args <- list(formula = f, data = df, family = fam)
  if (!is.null(cs$offset)) args$offset <- cs$offset
  if (!is.null(cs$weights)) args$weights <- cs$weights
  fit <- do.call(glmer, args)
  dfun <- do.call(glmer, c(args, list(control = glmerControl(tolPwrss = 1e-13),
                                      devFunOnly = TRUE)))
  theta <- unname(getME(fit, "theta"))
  beta <- unname(fixef(fit))
  pts <- list(list(theta, beta), list(theta * 1.3, beta), list(theta * 0.7, 0.9 * beta))
  out <- list(
    name = cs$name, dataset = paste0("data/", cs$data, ".csv"), formula = cs$formula,
    family = cs$family, link = cs$link, offset = cs$offset, weights = cs$weights,
    factor_levels = if (cs$data == "cbpp") list(period = levels(df$period)) else
      list(YEAR = levels(df$YEAR)),
    theta = theta, beta = as.list(fixef(fit)),
    objective = unname(fit@devcomp$cmp[["dev"]]),
    vcov_beta = unname(as.matrix(vcov(fit))),
    fitted_head = unname(head(fitted(fit), 10)),
    resid_head = lapply(c(deviance = "deviance", pearson = "pearson", response = "response",
                          working = "working"),
                        function(t) unname(head(residuals(fit, type = t), 10))),
    fixed_parameters = lapply(pts, function(p) list(theta = p[[1]], beta = p[[2]],
                                                   objective = dfun(c(p[[1]], p[[2]]))))
  )
  write_json_file(out, file.path(outdir, paste0(cs$name, ".json")))
  cat(cs$name, out$objective, "\n")
}
