# Run by R CMD check. The README's test command (Rscript tools/test.R) runs
# the same suite and prints "N passed, N failed".
library(testthat)
library(multihead)

test_check("multihead")
