# Installs the packages multihead needs that are missing, from the CRAN
# repositories configured in this R session (getOption("repos")).
# Sourced by tools/demo.R and tools/test.R.
install_missing <- function(pkgs) {
  missing <- pkgs[!vapply(pkgs, requireNamespace, logical(1), quietly = TRUE)]
  if (length(missing) == 0L) return(invisible(character()))
  repos <- getOption("repos")
  if (is.null(repos) || all(repos %in% c("", "@CRAN@"))) {
    stop("No CRAN repository is configured; set one, e.g. options(repos = c(CRAN = \"<your CRAN mirror>\")) ",
         "in your .Rprofile, then run this again. Missing: ", paste(missing, collapse = ", "),
         call. = FALSE)
  }
  message("Installing from CRAN: ", paste(missing, collapse = ", "))
  install.packages(missing, quiet = TRUE)
  still <- missing[!vapply(missing, requireNamespace, logical(1), quietly = TRUE)]
  if (length(still)) {
    hint <- if ("hdf5r" %in% still) {
      " (hdf5r needs the HDF5 C library: run tools/install-system-libs.sh, or apt-get install libhdf5-dev)"
    } else ""
    stop("Could not install: ", paste(still, collapse = ", "), hint, call. = FALSE)
  }
  invisible(missing)
}

# Installs the package from this source tree into `lib` (default: the first
# library on .libPaths()).
install_multihead <- function(lib = .libPaths()[1]) {
  r <- file.path(R.home("bin"), "R")
  status <- system2(r, c("CMD", "INSTALL", "--preclean", "--no-test-load", paste0("--library=", shQuote(lib)), "."),
                    stdout = FALSE, stderr = FALSE)
  if (status != 0L) {
    # Run again showing the compiler's output, then stop.
    system2(r, c("CMD", "INSTALL", paste0("--library=", shQuote(lib)), "."))
    stop("Installing multihead failed (see the output above).", call. = FALSE)
  }
}

# Package names listed in the DESCRIPTION fields `fields` (version
# requirements dropped; base packages left out).
description_deps <- function(fields = c("Imports", "LinkingTo")) {
  desc <- read.dcf("DESCRIPTION", fields = fields)
  pkgs <- unlist(strsplit(desc[!is.na(desc)], ","))
  pkgs <- trimws(sub("\\(.*", "", pkgs))
  base <- rownames(installed.packages(priority = "base"))
  setdiff(pkgs[nzchar(pkgs) & pkgs != "R"], base)
}
