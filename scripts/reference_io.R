# reference_io.R -- the writers the reference scripts share (sourced by them):
# JSON as the tests read it, and CSV whose doubles read back exactly.

write_json_file <- function(x, path) {
  writeLines(toJSON(x, auto_unbox = TRUE, pretty = TRUE, digits = NA,
                    null = "null", na = "null"), path)
}

# write.csv (row.names = FALSE), but doubles written so that a correctly rounding reader
# (Python's float(), Rust's parse) gets back the very double R used: a short form (at most 12
# significant digits, e.g. 249.56) where R reads it back as the same double, else 17
# significant digits (write.csv alone writes 15, which may not round-trip).
num17 <- function(x) {
  s <- sprintf("%.12g", x)
  long <- !is.na(x) & as.numeric(s) != x
  s[long] <- sprintf("%.17g", x[long])
  s[is.na(x)] <- "NA"
  s
}
write_csv17 <- function(df, path) {
  quote_cols <- which(vapply(df, function(v) is.factor(v) || is.character(v), logical(1)))
  out <- df
  for (nm in names(out)) {
    if (is.double(out[[nm]])) out[[nm]] <- num17(out[[nm]])
  }
  write.csv(out, path, row.names = FALSE, quote = if (length(quote_cols)) quote_cols else FALSE)
}
