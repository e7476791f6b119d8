# The README's test command: installs what is missing, installs multihead
# from this source tree into a temporary library, runs the whole testthat
# suite and ends with a line "N passed, N failed" (expectations).
# Run from the package root:  Rscript tools/test.R
source(file.path("tools", "install-deps.R"))
install_missing(c("Rcpp", "RcppEigen", "testthat", "jsonlite"))
lib <- file.path(tempdir(), "multihead-lib")
dir.create(lib, showWarnings = FALSE)
install_multihead(lib)
.libPaths(c(lib, .libPaths()))

results <- testthat::test_dir("tests/testthat", package = "multihead", load_package = "installed",
                              reporter = testthat::ProgressReporter$new(show_praise = FALSE),
                              stop_on_failure = FALSE, stop_on_warning = FALSE)
df <- as.data.frame(results)
expectations <- sum(df$nb)
failed <- sum(df$failed) + sum(df$error)
skipped <- sum(df$skipped)
passed <- expectations - sum(df$failed) - skipped
cat(sprintf("\n%d passed, %d failed\n", passed, failed))
quit(status = if (failed > 0) 1L else 0L, save = "no")
