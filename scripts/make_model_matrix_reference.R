# Reference model matrices from R's model.frame/model.matrix, for tests/reference/model_matrix.
#
#   Rscript scripts/make_model_matrix_reference.R tests/reference/model_matrix
#
# For each right-hand side: the column names and the whole model matrix on a small data set
# (data.csv), and the matrix that R builds for new data (newdata.csv) from the fit's terms
# (the `predvars` of stateful transforms: poly, scale, ns, bs), as predict() does.
suppressPackageStartupMessages({ library(jsonlite); library(splines) })
source("scripts/reference_io.R")
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args)) args[1] else "tests/reference/model_matrix"
dir.create(out, showWarnings = FALSE, recursive = TRUE)

set.seed(7)
n <- 30
d <- data.frame(
  y = rnorm(n),
  x = round(runif(n, 1, 9), 3),
  z = round(rnorm(n), 3),
  k = rep(0:5, 5),
  f = factor(sample(c("a", "b", "c"), n, replace = TRUE), levels = c("b", "a", "c")),
  h = factor(sample(c("u", "v"), n, replace = TRUE)),
  o = factor(sample(c("lo", "mid", "hi", "top"), n, replace = TRUE),
             levels = c("lo", "mid", "hi", "top"), ordered = TRUE),
  l = sample(c(TRUE, FALSE), n, replace = TRUE),
  s = sample(c("p", "q", "r"), n, replace = TRUE),
  g = rep(sprintf("g%d", 1:6), each = 5),
  stringsAsFactors = FALSE
)
options(warn = -1)  # bs() warns about the new data beyond the boundary knots
nd <- d[c(2, 5, 11, 17, 23, 29), ]
nd$x <- c(2.5, 3.75, 8.5, 1.5, 6, 4.25)  # 8.5 and 1.5 beyond the range: extrapolated
nd$k <- c(0, 5, 2, 3, 1, 4)

rhs <- c(
  "x + I(x^2)", "k + I(k^2)", "poly(x, 3)", "poly(x, 2, raw = TRUE)", "scale(x)",
  "scale(x, center = FALSE)", "ns(x, df = 3)", "bs(x, df = 4)", "ns(x, 2)", "log(x) + log(z + 3, 2)",
  "log10(x) + log1p(x) + exp(z) + sqrt(x) + abs(z)", "log2(x + z + 5) + log(x, base = 10)", "sin(z) + cos(z) + tan(z)",
  "round(x, 1) + I(x %% 2) + I(x %/% 2)", "I(x > 5) + I(z < 0 & x > 3)", "factor(k)",
  "as.numeric(f)", "f", "f + h + f:h", "f * x", "x:f", "0 + f", "0 + f:h", "0 + x + f:h",
  "x + f:x", "0 + x:f + h", "o", "o + x", "o:x", "0 + o", "l", "0 + l", "s", "f * s",
  "(x + z + f)^2", "(x + z + k)^3 - x:z:k", "x * z - z", "f/x", "x + exp(z/10) + I(-z^2)",
  "I((x + 1)^2) + I(2 * -z)", "0 + h:f + z", "1", "0 + x + z", "-1 + x",
  "poly(z, 2) + f:poly(z, 2)", "x:z + x:k", "factor(k > 2) + h"
)
cases <- list()
for (r in rhs) {
  fo <- as.formula(paste("y ~", r))
  mf <- model.frame(fo, d)
  X <- model.matrix(fo, mf)
  tt <- delete.response(terms(mf))
  Xn <- model.matrix(tt, model.frame(tt, nd, xlev = .getXlevels(terms(mf), mf)))
  cases[[length(cases) + 1]] <- list(
    rhs = r, colnames = I(colnames(X)), X = unname(X), X_new = unname(Xn),
    term_labels = I(attr(terms(fo), "term.labels")), assign = I(attr(X, "assign"))
  )
}
write_csv17(d, file.path(out, "data.csv"))
write_csv17(nd, file.path(out, "newdata.csv"))
writeLines(
  toJSON(list(
    R_version = R.version.string,
    factor_levels = list(f = levels(d$f), o = levels(d$o)),
    ordered_factors = I("o"),
    cases = cases
  ), auto_unbox = TRUE, digits = NA, pretty = TRUE),
  file.path(out, "model_matrix.json")
)
cat("wrote", length(cases), "cases to", out, "\n")
