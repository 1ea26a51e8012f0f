#!/usr/bin/env Rscript
# make_glmm_features_reference.R -- lme4 reference values for the GLMM result API beyond the fit:
# the inverse Gaussian family with each of its links, profile intervals of a GLMM with a
# correlated random-effects term, and the linearized model's working weights and V.
#
# Produces, under OUTDIR (default: reference-out/glmm_features):
#   data/*.csv       written with write_csv17() (reference_io.R): invgauss_sim (set.seed(8)),
#                    binomial_slopes_sim (set.seed(9)), cbpp (lme4's, as in glmm/data);
#   ig_<link>.json   glmer(y ~ x + (1 | g), family = inverse.gaussian(link)) for the links
#                    1/mu^2, inverse, log, identity: the fields of glmm_extra/*.json (estimates,
#                    objective, sigma, vcov, VarCorr, the objective at three fixed (theta, beta)
#                    points with tight PIRLS);
#   binomial_slopes_profile.json  glmer(y ~ x + (x | g), binomial) and its
#                    confint(method = "profile", oldNames = FALSE) (names, lower, upper);
#   cbpp_linearized.json  at lme4's fit of cbpp: theta, beta, the working weights
#                    (weights(fit, "working")), the working response (eta + working residuals),
#                    and V = diag(1/w) + Z Lambda Lambda' Z' (its diagonal, first row and
#                    log det).
#
# Written against R 4.2.2, lme4 1.1-31, Matrix 1.5-3, statmod 1.5.0, jsonlite 1.8.4.
#
# Run from the repository root:
#     Rscript scripts/make_glmm_features_reference.R tests/reference/glmm_features
# The whole run takes about a minute (the profile most of it).

suppressPackageStartupMessages({
  library(lme4)
  library(statmod)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
outdir <- if (length(args) >= 1) args[[1]] else file.path("reference-out", "glmm_features")
dir.create(file.path(outdir, "data"), recursive = TRUE, showWarnings = FALSE)

local({
  file_arg <- grep("^--file=", commandArgs(FALSE), value = TRUE)
  here <- if (length(file_arg)) dirname(sub("^--file=", "", file_arg[1])) else "scripts"
  source(file.path(here, "reference_io.R"), local = globalenv())
})

# invgauss_sim: 40 groups of 10, y ~ IG(mean mu, shape 6), 1/mu^2 = 0.6 + 0.25 x + b_g,
# b_g ~ N(0, 0.1^2)
set.seed(8)
g <- factor(rep(sprintf("g%02d", 1:40), each = 10))
x <- runif(400, 0, 2)
b <- rnorm(40, sd = 0.1)
mu <- 1 / sqrt(0.6 + 0.25 * x + b[as.integer(g)])
invgauss_sim <- data.frame(y = statmod::rinvgauss(400, mean = mu, shape = 6), x = x, g = g)

# binomial_slopes_sim: 50 groups of 20 Bernoulli trials, logit p = -0.3 + 0.8 x + b0_g + b1_g x,
# x ~ U(-1, 1), (b0, b1) with sds 0.9, 0.6 and correlation 0.5
set.seed(9)
g <- factor(rep(sprintf("s%02d", 1:50), each = 20))
x <- runif(1000, -1, 1)
S <- matrix(c(0.81, 0.5 * 0.9 * 0.6, 0.5 * 0.9 * 0.6, 0.36), 2)
bb <- MASS::mvrnorm(50, c(0, 0), S)
gi <- as.integer(g)
p <- plogis(-0.3 + 0.8 * x + bb[gi, 1] + bb[gi, 2] * x)
binomial_slopes_sim <- data.frame(y = rbinom(1000, 1, p), x = x, g = g)

cbpp <- lme4::cbpp
for (nm in c("invgauss_sim", "binomial_slopes_sim", "cbpp")) {
  write_csv17(get(nm), file.path(outdir, "data", paste0(nm, ".csv")))
}

factor_levels <- function(df) {
  out <- list()
  for (nm in names(df)) if (is.factor(df[[nm]])) out[[nm]] <- levels(df[[nm]])
  out
}

fit_fields <- function(fit, name, dataset, formula, fam, df) {
  theta <- unname(getME(fit, "theta"))
  beta <- unname(fixef(fit))
  start <- rep(1, length(theta))
  start[getME(fit, "lower") != 0] <- 0
  devfun <- glmer(as.formula(formula), data = df, family = fam, nAGQ = 1L,
                  control = glmerControl(tolPwrss = 1e-13), devFunOnly = TRUE)
  pts <- list(list(theta, beta), list((start + theta) / 2, beta), list(start, 0.9 * beta))
  vc <- as.data.frame(VarCorr(fit))
  ll <- logLik(fit)
  list(
    name = name, dataset = paste0("data/", dataset, ".csv"), factor_levels = factor_levels(df),
    formula = formula, family = fam$family, link = fam$link, nAGQ = 1L,
    lme4_version = as.character(packageVersion("lme4")), nobs = nobs(fit),
    theta = theta, beta = as.list(fixef(fit)), sigma = sigma(fit),
    objective = unname(fit@devcomp$cmp[["dev"]]), logLik = as.numeric(ll), AIC = AIC(fit),
    df = attr(ll, "df"), deviance = deviance(fit), vcov_beta = unname(as.matrix(vcov(fit))),
    varcorr = data.frame(grp = vc$grp, var1 = vc$var1, var2 = vc$var2, vcov = vc$vcov,
                         sdcor = vc$sdcor, stringsAsFactors = FALSE),
    messages = fit@optinfo$conv$lme4$messages,
    fitted_head = unname(head(fitted(fit), 10)),
    fixed_parameters = lapply(pts, function(p) {
      list(theta = as.numeric(p[[1]]), beta = as.numeric(p[[2]]),
           objective = devfun(c(as.numeric(p[[1]]), as.numeric(p[[2]]))))
    })
  )
}

# -- the inverse Gaussian, each link ------------------------------------------------------
links <- c(mu2 = "1/mu^2", inverse = "inverse", log = "log", identity = "identity")
for (k in names(links)) {
  fam <- inverse.gaussian(link = links[[k]])
  fit <- glmer(y ~ x + (1 | g), data = invgauss_sim, family = fam)
  out <- fit_fields(fit, paste0("ig_", k), "invgauss_sim", "y ~ x + (1 | g)", fam, invgauss_sim)
  write_json_file(out, file.path(outdir, paste0("ig_", k, ".json")))
  message(sprintf("ig_%s: objective %.6f sigma %.6g theta %s beta %s", k, out$objective,
                  out$sigma, paste(signif(out$theta, 6), collapse = " "),
                  paste(signif(unlist(out$beta), 6), collapse = " ")))
}

# -- profile intervals with a correlated term ---------------------------------------------
fam <- binomial()
fit <- glmer(y ~ x + (x | g), data = binomial_slopes_sim, family = fam)
out <- fit_fields(fit, "binomial_slopes_profile", "binomial_slopes_sim", "y ~ x + (x | g)", fam,
                  binomial_slopes_sim)
t0 <- proc.time()[["elapsed"]]
ci <- confint(fit, method = "profile", oldNames = FALSE)
out$lme4_profile_seconds <- proc.time()[["elapsed"]] - t0
out$confint_profile <- list(names = rownames(ci), lower = unname(ci[, 1]),
                            upper = unname(ci[, 2]))
write_json_file(out, file.path(outdir, "binomial_slopes_profile.json"))
message("binomial_slopes_profile: ", paste(sprintf("%s [%.5f, %.5f]", rownames(ci), ci[, 1],
                                                   ci[, 2]), collapse = "; "))

# -- the linearized model of cbpp ---------------------------------------------------------
fit <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp,
             family = binomial)
w <- weights(fit, type = "working")
z <- fit@resp$eta + residuals(fit, type = "working")
Z <- getME(fit, "Z")
L <- getME(fit, "Lambda")
V <- as.matrix(Diagonal(x = 1 / w) + Z %*% L %*% t(L) %*% t(Z))
out <- list(
  name = "cbpp_linearized", dataset = "data/cbpp.csv", factor_levels = factor_levels(cbpp),
  formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
  family = "binomial", link = "logit", lme4_version = as.character(packageVersion("lme4")),
  theta = unname(getME(fit, "theta")), beta = unname(fixef(fit)),
  working_weights = unname(w), working_response = unname(z),
  V_diag = unname(diag(V)), V_row1 = unname(V[1, ]),
  V_logdet = as.numeric(determinant(V, logarithm = TRUE)$modulus)
)
write_json_file(out, file.path(outdir, "cbpp_linearized.json"))
message("wrote ", normalizePath(outdir))
