# Constraints: constructors, validation, lookup, config round trips, and the
# projections on hand-computed examples and on kernels of several ranks.

eps <- 1e-7

# Reference: the norm of w's slice through each entry over `axes` (positions).
ref_norms <- function(w, axes) {
  keep <- setdiff(seq_along(dim(w)), axes)
  out <- w
  idx <- arrayInd(seq_along(w), dim(w))
  for (i in seq_along(w)) {
    same <- apply(idx[, keep, drop = FALSE], 1, function(r) all(r == idx[i, keep]))
    out[i] <- sqrt(sum(w[same]^2))
  }
  out
}

test_that("constructors have keras3's defaults and Keras's class names", {
  expect_identical(unclass(constraint_nonneg()), list(class_name = "NonNeg", config = list()))
  expect_identical(unclass(constraint_maxnorm()),
                   list(class_name = "MaxNorm", config = list(max_value = 2, axis = 1L)))
  expect_identical(unclass(constraint_unitnorm()),
                   list(class_name = "UnitNorm", config = list(axis = 1L)))
  expect_identical(unclass(constraint_minmaxnorm()),
                   list(class_name = "MinMaxNorm",
                        config = list(min_value = 0, max_value = 1, rate = 1, axis = 1L)))
  expect_identical(constraint_maxnorm(axis = c(1, -1))$config$axis, c(1L, -1L))
  expect_s3_class(constraint_nonneg(), "multihead_constraint")
})

test_that("print() gives one line", {
  expect_output(print(constraint_nonneg()), "^<constraint NonNeg>$")
  expect_output(print(constraint_maxnorm(axis = c(1, 2))),
                "<constraint MaxNorm max_value=2 axis=c(1, 2)>", fixed = TRUE)
  expect_output(print(constraint_minmaxnorm(rate = 0.5)),
                "<constraint MinMaxNorm min_value=0 max_value=1 rate=0.5 axis=1>", fixed = TRUE)
  expect_output(print(as_constraint(function(w) w, "k")), "^<constraint RFunction fn=<function>>$")
})

test_that("bad constructor arguments are errors naming the argument", {
  err <- "multihead_error_argument"
  for (bad in list(-1, NA, Inf, "2", c(1, 2), NULL)) {
    expect_error(constraint_maxnorm(max_value = bad), "`max_value`", class = err)
    expect_error(constraint_minmaxnorm(min_value = bad), "`min_value`", class = err)
  }
  for (bad in list(0, 1.5, NA, "1", NULL, c(1, 1), c(2, 0), list("a"))) {
    expect_error(constraint_maxnorm(axis = bad), "`axis`", class = err)
    expect_error(constraint_unitnorm(axis = bad), "`axis`", class = err)
    expect_error(constraint_minmaxnorm(axis = bad), "`axis`", class = err)
  }
  expect_error(constraint_minmaxnorm(min_value = 2, max_value = 1), "`max_value`.*min_value",
               class = err)
  expect_error(constraint_minmaxnorm(max_value = NA), "`max_value`", class = err)
  for (bad in list(-0.1, 1.5, NA, "1")) {
    expect_error(constraint_minmaxnorm(rate = bad), "`rate`", class = err)
  }
  expect_silent(constraint_minmaxnorm(min_value = 1, max_value = 1, rate = 0))
})

test_that("as_constraint() accepts NULL, objects, names, aliases, configs and functions", {
  expect_null(as_constraint(NULL, "kernel_constraint"))
  con <- constraint_minmaxnorm(0.5, 2, 0.3, axis = c(1, 3))
  expect_identical(as_constraint(con, "k"), con)
  names_map <- c(non_neg = "NonNeg", max_norm = "MaxNorm", unit_norm = "UnitNorm",
                 min_max_norm = "MinMaxNorm", nonneg = "NonNeg", maxnorm = "MaxNorm",
                 unitnorm = "UnitNorm", minmaxnorm = "MinMaxNorm")
  for (nm in names(names_map)) {
    expect_identical(as_constraint(nm, "k")$class_name, names_map[[nm]])
    expect_identical(as_constraint(names_map[[nm]], "k")$class_name, names_map[[nm]])
  }
  expect_identical(as_constraint("max_norm", "k"), constraint_maxnorm())
  for (c0 in list(constraint_nonneg(), constraint_maxnorm(3, axis = -1),
                  constraint_unitnorm(axis = 2), con)) {
    cfg <- constraint_config(c0)
    expect_false(is.object(cfg))
    expect_identical(as_constraint(cfg, "k"), c0)
  }
  expect_null(constraint_config(NULL))
  f <- function(w) pmax(w, -1)
  fc <- as_constraint(f, "k")
  expect_identical(fc$class_name, "RFunction")
  expect_identical(fc$config$fn, f)
  expect_identical(as_constraint(constraint_config(fc), "k"), fc)
})

test_that("configs survive JSON", {
  skip_if_not_installed("jsonlite")
  for (c0 in list(constraint_nonneg(), constraint_maxnorm(3, axis = c(1, 2)),
                  constraint_unitnorm(axis = -1), constraint_minmaxnorm(0.5, 2, 0.3))) {
    json <- jsonlite::toJSON(constraint_config(c0), auto_unbox = TRUE, digits = NA)
    expect_identical(as_constraint(jsonlite::fromJSON(json), "k"), c0)
  }
})

test_that("as_constraint() rejects anything else, naming the argument", {
  err <- "multihead_error_argument"
  for (bad in list(1, NA, "nonnegative", "RFunction", "", c("non_neg", "max_norm"), list(1),
                   regularizer_l1())) {
    expect_error(as_constraint(bad, "kernel_constraint"), "`kernel_constraint`", class = err)
  }
  expect_error(as_constraint("foo", "bias_constraint"),
               "\"non_neg\", \"max_norm\", \"unit_norm\", \"min_max_norm\"")
  expect_error(as_constraint(list(class_name = "MaxNorm", config = list(max_value = -1)), "kc"),
               "`kc`.*`max_value`", class = err)
  expect_error(as_constraint(list(class_name = "MaxNorm", config = list(maxval = 1)), "kc"),
               "`kc\\$config`.*`maxval`", class = err)
  expect_error(as_constraint(list(class_name = "RFunction", config = list(fn = 1)), "kc"),
               "`kc`", class = err)
  expect_error(constraint_config("non_neg"), "`con`", class = err)
})

test_that("non_neg zeroes the negative entries and keeps dim", {
  w <- array(c(-1, 2, 0, -3.5, 4, -0.1), c(1, 2, 3))
  out <- apply_constraint(constraint_nonneg(), w)
  expect_identical(out, array(c(0, 2, 0, 0, 4, 0), c(1, 2, 3)))
  expect_identical(apply_constraint(constraint_nonneg(), c(-1L, 2L)), c(0, 2))
})

test_that("max_norm on a hand example, over axis 1 (columns) and axis 2 (rows)", {
  w <- matrix(c(3, 4, 0.6, 0.8), 2, 2)     # column norms 5 and 1
  out <- apply_constraint(constraint_maxnorm(max_value = 2, axis = 1), w)
  expect_equal(out, cbind(c(3, 4) * 2 / (5 + eps), c(0.6, 0.8) * 1 / (1 + eps)), tolerance = 1e-15)
  expect_equal(sqrt(colSums(out^2)), c(2, 1), tolerance = 1e-6)
  # Rows: norms sqrt(9.36) and sqrt(16.64), both above 2.
  out <- apply_constraint(constraint_maxnorm(max_value = 2, axis = 2), w)
  rn <- sqrt(c(9.36, 16.64))
  expect_equal(out, w * (2 / (rn + eps)), tolerance = 1e-15)
  expect_identical(dim(out), c(2L, 2L))
})

test_that("unit_norm on a 3-D kernel (E, N, H) normalises each vector over E", {
  set.seed(301)
  w <- array(stats::rnorm(4 * 3 * 2), c(4, 3, 2))
  out <- apply_constraint(constraint_unitnorm(axis = 1), w)
  expect_identical(dim(out), dim(w))
  for (n in 1:3) for (h in 1:2) {
    expect_equal(out[, n, h], w[, n, h] / (sqrt(sum(w[, n, h]^2)) + eps), tolerance = 1e-15)
  }
  expect_equal(sqrt(apply(out^2, c(2, 3), sum)), matrix(1, 3, 2), tolerance = 1e-6)
  # -1 is the last axis, as in Python.
  expect_equal(apply_constraint(constraint_unitnorm(axis = -1), w),
               apply_constraint(constraint_unitnorm(axis = 3), w))
  expect_equal(apply_constraint(constraint_unitnorm(axis = 3), w), w / (ref_norms(w, 3) + eps))
})

test_that("norms over several axes and over a vector", {
  set.seed(302)
  w <- array(stats::rnorm(60) * 3, c(3, 4, 5))
  out <- apply_constraint(constraint_maxnorm(max_value = 1.5, axis = c(1, 3)), w)
  n <- ref_norms(w, c(1, 3))
  expect_equal(out, w * pmin(n, 1.5) / (n + eps), tolerance = 1e-14)
  for (j in 1:4) expect_equal(sqrt(sum(out[, j, ]^2)), 1.5, tolerance = 1e-6)
  expect_equal(apply_constraint(constraint_maxnorm(1.5, axis = c(3, 1)), w), out)
  out <- apply_constraint(constraint_unitnorm(axis = c(1, 2, 3)), w)
  expect_equal(sum(out^2), 1, tolerance = 1e-6)
  v <- c(3, 4)                              # a plain vector: norm 5, no dim
  expect_equal(apply_constraint(constraint_unitnorm(), v), v / (5 + eps))
  expect_null(dim(apply_constraint(constraint_unitnorm(), v)))
})

test_that("min_max_norm moves norms into [min_value, max_value] at `rate`", {
  w <- matrix(c(0.3, 0.4, 3, 4, 1.2, 1.6), 2, 3)    # column norms 0.5, 5, 2
  con <- constraint_minmaxnorm(min_value = 1, max_value = 2, rate = 1, axis = 1)
  out <- apply_constraint(con, w)
  expect_equal(out, w %*% diag(c(1 / (0.5 + eps), 2 / (5 + eps), 2 / (2 + eps))),
               tolerance = 1e-15)
  half <- apply_constraint(constraint_minmaxnorm(1, 2, rate = 0.5, axis = 1), w)
  desired <- c(0.5 * 1 + 0.5 * 0.5, 0.5 * 2 + 0.5 * 5, 2)    # 0.75, 3.5, 2
  expect_equal(sqrt(colSums(half^2)), desired, tolerance = 1e-6)
  expect_equal(half, w %*% diag(desired / (c(0.5, 5, 2) + eps)), tolerance = 1e-15)
  none <- apply_constraint(constraint_minmaxnorm(1, 2, rate = 0, axis = 1), w)
  expect_equal(none, w * (c(0.5, 5, 2) / (c(0.5, 5, 2) + eps))[col(w)], tolerance = 1e-15)
})

test_that("an all-zero slice stays zero (epsilon avoids 0 / 0)", {
  w <- cbind(c(0, 0), c(3, 4))
  expect_identical(apply_constraint(constraint_unitnorm(), w)[, 1], c(0, 0))
  expect_identical(apply_constraint(constraint_minmaxnorm(1, 2), w)[, 1], c(0, 0))
})

test_that("an axis beyond the weight's rank is an error naming `axis`", {
  err <- "multihead_error_argument"
  w <- matrix(1, 2, 3)
  expect_error(apply_constraint(constraint_maxnorm(axis = 3), w), "`axis`.*rank 2", class = err)
  expect_error(apply_constraint(constraint_unitnorm(axis = -3), w), "`axis`", class = err)
  expect_error(apply_constraint(constraint_unitnorm(axis = c(2, -1)), w), "`axis`", class = err)
  expect_error(apply_constraint(constraint_unitnorm(axis = 2), c(1, 2)), "`axis`", class = err)
})

test_that("function constraints are applied and must keep the shape", {
  err <- "multihead_error_argument"
  w <- array(c(-2, 0.5, 3, -0.1, 1, 2), c(2, 3))
  clip <- as_constraint(function(w) pmin(pmax(w, -1), 1), "k")
  expect_identical(apply_constraint(clip, w), array(c(-1, 0.5, 1, -0.1, 1, 1), c(2, 3)))
  drop_dim <- as_constraint(function(w) as.vector(w), "k")
  expect_error(apply_constraint(drop_dim, w), "`con`.*shape \\(2, 3\\)", class = err)
  shorter <- as_constraint(function(w) w[1:2], "k")
  expect_error(apply_constraint(shorter, c(1, 2, 3)), "length 3", class = err)
  to_text <- as_constraint(function(w) array(as.character(w), dim(w)), "k")
  expect_error(apply_constraint(to_text, w), "`con`", class = err)
})

test_that("apply_constraint() checks its arguments; NULL leaves w as it is", {
  err <- "multihead_error_argument"
  w <- matrix(c(-1, 2, 3, 4), 2)
  expect_identical(apply_constraint(NULL, w), w)
  expect_error(apply_constraint("non_neg", w), "`con`", class = err)
  expect_error(apply_constraint(constraint_nonneg(), "a"), "`w`", class = err)
})
