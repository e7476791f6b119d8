# round_float32(): doubles to the nearest float32 value, attributes kept; an
# array whose values are float32 already comes back as it is.

test_that("round_float32 rounds like a float cast and keeps attributes", {
  x <- array(c(1 / 3, 1e39, -1e39, NaN, NA, 0.5, 2^-149, 2^-151), c(2, 4), dimnames = list(c("a", "b"), NULL))
  y <- multihead:::round_float32(x)
  expect_identical(attributes(y), attributes(x))
  f32 <- function(v) readBin(writeBin(v, raw(), size = 4), "double", n = length(v), size = 4)
  expect_identical(as.vector(y)[c(1, 2, 3, 6, 7, 8)], f32(as.vector(x)[c(1, 2, 3, 6, 7, 8)]))
  expect_true(is.nan(y[2, 2]) && is.na(y[1, 3]))
  z <- array(f32(rnorm(24)), c(2, 3, 4))
  expect_identical(multihead:::round_float32(z), z)
  expect_identical(multihead:::round_float32(1:3), c(1, 2, 3))
  expect_identical(multihead:::round_float32(matrix(TRUE, 1, 2)), matrix(1, 1, 2))
})
