# The start every bench/ R script shares: `args` (the command line after the
# script), `opt(name, default)` reading "--name value" from it, `lib` (--lib),
# put first on the library path, and multihead loaded from there. A script
# sources it from its own folder:
#   source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE),
#                                                       value = TRUE))), "bench-setup.R"))
args <- commandArgs(TRUE)
opt <- function(name, default) {
  i <- match(paste0("--", name), args)
  if (is.na(i)) default else args[i + 1L]
}
lib <- opt("lib", NULL)
if (!is.null(lib)) .libPaths(c(lib, .libPaths()))
suppressPackageStartupMessages(library(multihead))
