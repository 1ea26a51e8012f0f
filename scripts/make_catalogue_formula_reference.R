# lme4's fits of the formula cases of the bad-inputs catalogue that lme4 fits, for
# tests/test_catalogue_formula.py.
#
#   Rscript scripts/make_catalogue_formula_reference.R tests/reference/catalogue
#
# `d` is sleepstudy with extra columns (built the same way in the test): f = c("a","b","c")[Days %% 3 + 1],
# n.days = `n days` = Tage_é = Days, Sujet_é = `the subject` = `1subj` = Subject,
# half = ifelse(Days < 5, "early", "late").
suppressPackageStartupMessages({ library(lme4); library(jsonlite); library(splines) })
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args)) args[1] else "tests/reference/catalogue"
dir.create(out, showWarnings = FALSE, recursive = TRUE)
ss <- sleepstudy
d <- ss
d$f <- factor(c("a", "b", "c")[d$Days %% 3 + 1])
d$n.days <- d$Days; d[["n days"]] <- d$Days; d[["Tage_é"]] <- d$Days
d[["Sujet_é"]] <- d$Subject; d[["the subject"]] <- d$Subject; d[["1subj"]] <- d$Subject
d$half <- factor(ifelse(d$Days < 5, "early", "late"))
dneg <- ss; dneg$Reaction[1] <- -5
cases <- list(
  F16 = list("Reaction ~ Days + ((1 | Subject))", "ss"),
  F17 = list("Reaction ~ (Days) + (1 | Subject)", "ss"),
  F20 = list("Reaction ~ (1 | Subject)", "ss"),
  F21 = list("Reaction ~ 0 + (1 | Subject)", "ss"),
  F22 = list("Reaction ~ 0 + Days + (1 | Subject)", "ss"),
  F23 = list("Reaction ~ Days - 1 + (1 | Subject)", "ss"),
  F24 = list("Reaction ~ Days + (0 + Days | Subject)", "ss"),
  F25 = list("Reaction ~ Days + (Days - 1 | Subject)", "ss"),
  F27 = list("Reaction ~ Days + Days + (1 | Subject)", "ss"),
  F29 = list("Reaction ~ Days + (Days + Days | Subject)", "ss"),
  F30 = list("Reaction ~ Days + (f || Subject)", "d"),
  F31 = list("Reaction ~ Days + (Days || Subject)", "ss"),
  F32 = list("log(Reaction) ~ Days + (1 | Subject)", "ss"),
  F33 = list("I(Reaction/100) ~ Days + (1 | Subject)", "ss"),
  F35 = list("log(Reaction) ~ Days + (1 | Subject)", "dneg"),
  F36 = list("Reaction + Days ~ Days + (1 | Subject)", "ss"),
  F38 = list("Reaction ~ Tage_é + (1 | Subject)", "d"),
  F39 = list("Reaction ~ Days + (1 | Sujet_é)", "d"),
  F40 = list("Reaction ~ Days + (1 | `Sujet_é`)", "d"),
  F41 = list("Reaction ~ `n days` + (1 | Subject)", "d"),
  F42 = list("Reaction ~ Days + (1 | `the subject`)", "d"),
  F43 = list("Reaction ~ `n days` + (`n days` | Subject)", "d"),
  F44 = list("Reaction ~ n.days + (n.days | Subject)", "d"),
  F45 = list("Reaction ~ log(n.days + 1) + (1 | Subject)", "d"),
  F45b = list("Reaction ~ log(`n.days` + 1) + (1 | Subject)", "d"),
  F46 = list("log(Reaction) ~ n.days + (1 | Subject)", "d"),
  F49 = list("Reaction ~ Days + (1 | Subject:half)", "d"),
  F50 = list("Reaction ~ Days + (1 | Subject/half)", "d"),
  F55 = list("Reaction ~ I(Days**2) + Days + (1 | Subject)", "ss"),
  F56 = list("Reaction ~ I(Days^2) + Days + (1 | Subject)", "ss"),
  F57 = list("Reaction ~ Days*f + (1 | Subject)", "d"),
  F58 = list("Reaction ~ f + (f | Subject)", "d"),
  F60 = list("  Reaction~Days+(1|Subject)  ", "ss"),
  F61 = list("Reaction ~ Days +\n (1 | Subject)", "ss"),
  F62 = list("Reaction ~ Days + offset(Days) + (1 | Subject)", "ss"),
  F63 = list("Reaction ~ C(f) + (1 | Subject)", "d"),
  F69 = list("Reaction ~ Days + (1 | `1subj`)", "d"),
  F71 = list("Reaction ~ sqrt(Days) + (1 | Subject)", "ss"),
  F71b = list("Reaction ~ abs(Days - 4) + round(Days/3) + (1 | Subject)", "ss"),
  F71c = list("Reaction ~ factor(Days) + (1 | Subject)", "ss"),
  F71d = list("sqrt(Reaction) ~ Days + (sqrt(Days) | Subject)", "ss"),
  F72 = list("Reaction ~ scale(Days) + (1 | Subject)", "ss"),
  F72b = list("Reaction ~ poly(Days, 2) + (1 | Subject)", "ss"),
  F72c = list("Reaction ~ bs(Days, 3) + (1 | Subject)", "ss"),
  F72d = list("Reaction ~ Days + (scale(Days) | Subject)", "ss"),
  F73 = list("Reaction/1000 ~ Days + (1 | Subject)", "ss")
)
# Each case is fitted with lme4's defaults and with tight tolerances; the reference values are
# the tight fit's (lme4's default stops short on some of these, e.g. F30 by 0.93), and the
# default's criterion is kept as `objective_default`.
tight <- lmerControl(optCtrl = list(xtol_rel = 1e-12, ftol_abs = 1e-12, maxeval = 1e5))
res <- list()
for (id in names(cases)) {
  fo <- as.formula(cases[[id]][[1]])
  dat <- get(cases[[id]][[2]])
  fit0 <- suppressWarnings(suppressMessages(lmer(fo, dat)))
  fit <- suppressWarnings(suppressMessages(lmer(fo, dat, control = tight)))
  res[[id]] <- list(
    formula = cases[[id]][[1]], data = cases[[id]][[2]],
    objective = -2 * as.numeric(logLik(fit)),  # the REML criterion (also when p = 0)
    objective_default = -2 * as.numeric(logLik(fit0)),
    fixef = as.list(fixef(fit)), sigma = sigma(fit), nobs = nobs(fit), ngrps = as.list(ngrps(fit))
  )
}
writeLines(toJSON(list(lme4_version = as.character(packageVersion("lme4")), cases = res),
                  auto_unbox = TRUE, digits = NA, pretty = TRUE),
           file.path(out, "formula_cases.json"))
cat("wrote", length(res), "cases\n")
