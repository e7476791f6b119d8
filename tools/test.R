# The README's test command: installs what is missing, installs multihead
# from this source tree into a temporary library, runs the whole testthat
# suite and ends with a line "N passed, N failed" (expectations).
# Run from the package root:  Rscript tools/test.R
source(file.path("tools", "install-deps.R"))

# R collates R/*.R into one namespace: a function defined in two files is
# silently replaced by the later one. Refuse that before testing.
defs <- unlist(lapply(list.files("R", "\\.R$", full.names = TRUE), function(f) {
  exprs <- parse(f, keep.source = FALSE)
  nms <- vapply(exprs, function(e) {
    if (is.call(e) && identical(e[[1]], as.name("<-")) && is.name(e[[2]])) as.character(e[[2]]) else ""
  }, character(1))
  stats::setNames(rep(basename(f), sum(nzchar(nms))), nms[nzchar(nms)])
}))
dup <- unique(names(defs)[duplicated(names(defs))])
if (length(dup)) {
  for (d in dup) cat(sprintf("Defined more than once in R/: %s (%s)\n", d,
                             paste(defs[names(defs) == d], collapse = ", ")))
  cat("\n0 passed, 1 failed\n")
  quit(status = 1L, save = "no")
}
# hdf5r, jsonlite and zip (Suggests) read and write Keras .weights.h5 files and
# .keras archives; hdf5r compiles
# against the HDF5 C library (tools/install-system-libs.sh installs it).
install_missing(c(description_deps(), "testthat", "jsonlite", "hdf5r", "zip", "ggplot2"))
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
