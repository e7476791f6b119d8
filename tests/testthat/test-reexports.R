# The helpers keras3 re-exports (%<-% from zeallot, %>% from magrittr, `.`
# from dotty) work through multihead alone: evaluated in an environment
# that sees multihead's exports and base R only (zeallot, magrittr and dotty
# not attached).

exports_env <- function() {
  ns <- asNamespace("multihead")
  nms <- c("%<-%", "%>%", ".", "op_add")
  exports <- list2env(mget(nms, envir = ns, inherits = TRUE), parent = baseenv())
  new.env(parent = exports)
}

test_that("the three helpers are multihead's exports, taken from their packages", {
  exp <- getNamespaceExports("multihead")
  expect_true(all(c("%<-%", "%>%", ".") %in% exp))
  expect_identical(multihead::`%>%`, magrittr::`%>%`)
  expect_identical(multihead::`%<-%`, zeallot::`%<-%`)
  expect_identical(multihead::., dotty::.)
})

test_that("%>% pipes and %<-% destructures with only multihead's exports in sight", {
  env <- exports_env()
  expect_equal(eval(quote(c(1, 4, 9) %>% sqrt()), env), c(1, 2, 3))
  expect_equal(as.vector(eval(quote(c(1, 2) %>% op_add(10)), env)), c(11, 12))
  eval(quote(c(a, b) %<-% list(1, "x")), env)
  expect_identical(env$a, 1)
  expect_identical(env$b, "x")
  eval(quote(c(first, ..rest) %<-% list(1, 2, 3)), env)
  expect_identical(env$first, 1)
  expect_identical(env$rest, list(2, 3))
})

test_that(".[a, b] <- value destructures in the caller's environment (dotty not attached)", {
  expect_false("package:dotty" %in% search())
  env <- exports_env()
  eval(quote(.[b, t] <- c(2L, 3L)), env)
  expect_identical(env$b, 2L)
  expect_identical(env$t, 3L)
  eval(quote(.[batch, ..] <- dim(array(0, c(4, 5, 6)))), env)
  expect_identical(env$batch, 4L)
  eval(quote(.[.., last] <- c(7L, 8L, 9L)), env)
  expect_identical(env$last, 9L)
  eval(quote(.[x = a + 1] <- list(a = 1)), env)
  expect_identical(env$x, 2)
  # inside a function: local variables, nothing leaks outside
  f <- eval(quote(function(v) { .[p, q] <- v; p * q }), env)
  expect_identical(f(c(3L, 4L)), 12L)
  expect_false(exists("p", envir = env, inherits = FALSE))
  # `.` itself is left usable afterwards
  eval(quote(.[u, w] <- c(5, 6)), env)
  expect_identical(env$u + env$w, 11)
})

test_that("library(multihead) alone makes all three work in a fresh R session", {
  rscript <- file.path(R.home("bin"), "Rscript")
  code <- paste0(".libPaths(", paste(deparse(.libPaths()), collapse = ""), "); suppressPackageStartupMessages(library(multihead)); ",
                 ".[b, t, ..] <- c(2L, 3L, 4L); c(x, y) %<-% list(10, 20); ",
                 "cat(b * t, x + y, c(4, 9) %>% sqrt(), !'package:dotty' %in% search(), sep = ',')")
  out <- system2(rscript, c("--vanilla", "-e", shQuote(code)), stdout = TRUE, stderr = TRUE)
  expect_identical(out[length(out)], "6,30,2,3,TRUE")
})
