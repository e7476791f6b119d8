# Regularizers: constructors, validation, lookup, config round trips, and the
# penalty and its gradient against the formulas and finite differences.

test_that("constructors have keras3's defaults and Keras's class names", {
  expect_identical(unclass(regularizer_l1()), list(class_name = "L1", config = list(l1 = 0.01)))
  expect_identical(unclass(regularizer_l2()), list(class_name = "L2", config = list(l2 = 0.01)))
  expect_identical(unclass(regularizer_l1_l2()),
                   list(class_name = "L1L2", config = list(l1 = 0, l2 = 0)))
  expect_identical(regularizer_l1_l2(l2 = 0.3)$config, list(l1 = 0, l2 = 0.3))
  expect_identical(regularizer_l1(1L)$config$l1, 1)   # stored as double
  expect_s3_class(regularizer_l2(), "multihead_regularizer")
})

test_that("print() gives one line", {
  expect_output(print(regularizer_l1()), "^<regularizer L1 l1=0.01>$")
  expect_output(print(regularizer_l1_l2(0.1, 0.2)), "^<regularizer L1L2 l1=0.1 l2=0.2>$")
  expect_length(capture.output(print(regularizer_l2())), 1)
})

test_that("bad factors are errors naming the argument", {
  err <- "multihead_error_argument"
  for (bad in list(-0.1, NA, NaN, Inf, "0.1", c(0.1, 0.2), NULL, TRUE)) {
    expect_error(regularizer_l1(bad), "`l1`", class = err)
    expect_error(regularizer_l2(bad), "`l2`", class = err)
    expect_error(regularizer_l1_l2(l1 = bad), "`l1`", class = err)
    expect_error(regularizer_l1_l2(l2 = bad), "`l2`", class = err)
  }
  expect_silent(regularizer_l1(0))
})

test_that("as_regularizer() accepts NULL, objects, names and configs", {
  expect_null(as_regularizer(NULL, "kernel_regularizer"))
  reg <- regularizer_l1_l2(0.1, 0.2)
  expect_identical(as_regularizer(reg, "k"), reg)
  expect_identical(as_regularizer("l1", "k"), regularizer_l1())
  expect_identical(as_regularizer("l2", "k"), regularizer_l2())
  expect_identical(as_regularizer("l1_l2", "k"), regularizer_l1_l2())
  expect_identical(as_regularizer("L1", "k"), regularizer_l1())
  expect_identical(as_regularizer("L1L2", "k"), regularizer_l1_l2())
  for (r in list(regularizer_l1(0.3), regularizer_l2(0.4), reg)) {
    cfg <- regularizer_config(r)
    expect_false(is.object(cfg))
    expect_identical(as_regularizer(cfg, "k"), r)
  }
  expect_null(regularizer_config(NULL))
  expect_identical(as_regularizer(list(class_name = "L2", config = list(l2 = 1)), "k"),
                   regularizer_l2(1))
})

test_that("configs survive JSON", {
  skip_if_not_installed("jsonlite")
  for (r in list(regularizer_l1(0.3), regularizer_l2(1e-4), regularizer_l1_l2(0.1, 0.2))) {
    json <- jsonlite::toJSON(regularizer_config(r), auto_unbox = TRUE, digits = NA)
    expect_identical(as_regularizer(jsonlite::fromJSON(json), "k"), r)
  }
})

test_that("as_regularizer() rejects anything else, naming the argument and the names", {
  err <- "multihead_error_argument"
  for (bad in list(0.01, NA, "l3", "L1_L2", "", c("l1", "l2"), function(w) 0, list(1),
                   initializer_zeros())) {
    expect_error(as_regularizer(bad, "kernel_regularizer"), "`kernel_regularizer`", class = err)
  }
  expect_error(as_regularizer("lasso", "bias_regularizer"), "\"l1\", \"l2\", \"l1_l2\"")
  expect_error(as_regularizer(list(class_name = "L1", config = list(l2 = 1)), "br"),
               "`br\\$config`.*`l2`", class = err)
  expect_error(as_regularizer(list(class_name = "L1", config = list(l1 = -1)), "br"),
               "`br`.*`l1`", class = err)
  expect_error(as_regularizer(list(class_name = "Orthogonal"), "br"), "`br\\$class_name`")
  expect_error(regularizer_config("l1"), "`reg`", class = err)
})

test_that("regularizer_loss() matches the formulas on a hand example", {
  w <- matrix(c(-1, 2, 0, -3, 0.5, 4), 2, 3)   # sum |w| = 10.5, sum w^2 = 30.25
  expect_equal(regularizer_loss(regularizer_l1(0.1), w), 1.05)
  expect_equal(regularizer_loss(regularizer_l2(0.2), w), 6.05)
  expect_equal(regularizer_loss(regularizer_l1_l2(0.1, 0.2), w), 7.1)
  expect_identical(regularizer_loss(regularizer_l1_l2(), w), 0)
  expect_identical(regularizer_loss(as_regularizer("l1_l2", "k"), w), 0)   # as in Keras 3
  expect_identical(regularizer_loss(NULL, w), 0)
  # Keras's docstring example: L2(2.) on ones((5, 5)) is 50.
  expect_equal(regularizer_loss(regularizer_l2(2), matrix(1, 5, 5)), 50)
  expect_length(regularizer_loss(regularizer_l1(), array(1, c(2, 3, 4))), 1)
  expect_type(regularizer_loss(regularizer_l1(), 1:3), "double")
})

test_that("regularizer_gradient() is l1 * sign(w) + 2 * l2 * w with w's dim", {
  w <- array(c(-1, 2, 0, -3, 0.5, 4, 1, -2), c(2, 2, 2))
  g <- regularizer_gradient(regularizer_l1_l2(0.1, 0.2), w)
  expect_identical(dim(g), dim(w))
  expect_equal(g, 0.1 * sign(w) + 0.4 * w)
  expect_equal(regularizer_gradient(regularizer_l1(0.3), w), 0.3 * sign(w))
  expect_equal(regularizer_gradient(regularizer_l2(0.3), w), 0.6 * w)
  expect_identical(regularizer_gradient(NULL, w), array(0, dim(w)))
  expect_identical(regularizer_gradient(regularizer_l1(), c(-2, 0, 3)), c(-0.01, 0, 0.01))
  expect_type(regularizer_gradient(regularizer_l2(), 1:3), "double")
})

test_that("the gradient agrees with central finite differences of the loss", {
  set.seed(201)
  w <- array(stats::rnorm(24), c(2, 3, 4))
  w[abs(w) < 0.05] <- 0.1                  # keep away from the kink of |w|
  reg <- regularizer_l1_l2(0.07, 0.3)
  h <- 1e-6
  fd <- w
  for (i in seq_along(w)) {
    up <- w
    down <- w
    up[i] <- up[i] + h
    down[i] <- down[i] - h
    fd[i] <- (regularizer_loss(reg, up) - regularizer_loss(reg, down)) / (2 * h)
  }
  expect_equal(regularizer_gradient(reg, w), fd, tolerance = 1e-7)
})

test_that("loss and gradient check their arguments", {
  err <- "multihead_error_argument"
  expect_error(regularizer_loss(regularizer_l1(), "a"), "`w`", class = err)
  expect_error(regularizer_loss(regularizer_l1(), list(1, 2)), "`w`", class = err)
  expect_error(regularizer_gradient(regularizer_l1(), TRUE), "`w`", class = err)
  expect_error(regularizer_loss("l1", 1), "`reg`", class = err)
  expect_error(regularizer_gradient(list(class_name = "L1"), 1), "`reg`", class = err)
})
