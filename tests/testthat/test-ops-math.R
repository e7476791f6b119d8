# Elementwise math, activation, comparison and logical ops (R/ops-math.R).
# References are plain R written here, independent of the implementation.

away_from_kinks <- function(n, lo = 0.1, hi = 2) sample(c(-1, 1), n, TRUE) * runif(n, lo, hi)

ref_erf <- function(x) 2 * pnorm(x * sqrt(2)) - 1
selu_a <- 1.6732632423543772
selu_s <- 1.0507009873554805

# name, function, reference, input generator (n -> values), differentiable
unary_cases <- list(
  list("square", op_square, function(x) x * x, function(n) rnorm(n), TRUE),
  list("sqrt", op_sqrt, function(x) x^0.5, function(n) runif(n, 0.5, 3), TRUE),
  list("rsqrt", op_rsqrt, function(x) x^-0.5, function(n) runif(n, 0.5, 3), TRUE),
  list("exp", op_exp, function(x) exp(1)^x, function(n) rnorm(n), TRUE),
  list("expm1", op_expm1, function(x) exp(x) - 1, function(n) rnorm(n), TRUE),
  list("log", op_log, function(x) log(x, base = exp(1)), function(n) runif(n, 0.5, 3), TRUE),
  list("log1p", op_log1p, function(x) log(1 + x), function(n) runif(n, -0.5, 3), TRUE),
  list("log2", op_log2, function(x) log(x) / log(2), function(n) runif(n, 0.5, 3), TRUE),
  list("log10", op_log10, function(x) log(x) / log(10), function(n) runif(n, 0.5, 3), TRUE),
  list("abs", op_abs, function(x) ifelse(x < 0, -x, x), function(n) away_from_kinks(n), TRUE),
  list("absolute", op_absolute, function(x) ifelse(x < 0, -x, x), function(n) away_from_kinks(n), TRUE),
  list("sin", op_sin, sin, function(n) rnorm(n), TRUE),
  list("cos", op_cos, cos, function(n) rnorm(n), TRUE),
  list("tan", op_tan, function(x) sin(x) / cos(x), function(n) runif(n, -1.2, 1.2), TRUE),
  list("arcsin", op_arcsin, asin, function(n) runif(n, -0.9, 0.9), TRUE),
  list("arccos", op_arccos, acos, function(n) runif(n, -0.9, 0.9), TRUE),
  list("arctan", op_arctan, atan, function(n) rnorm(n) * 2, TRUE),
  list("sinh", op_sinh, function(x) (exp(x) - exp(-x)) / 2, function(n) rnorm(n), TRUE),
  list("cosh", op_cosh, function(x) (exp(x) + exp(-x)) / 2, function(n) rnorm(n), TRUE),
  list("tanh", op_tanh, function(x) (exp(2 * x) - 1) / (exp(2 * x) + 1), function(n) rnorm(n), TRUE),
  list("erf", op_erf, ref_erf, function(n) rnorm(n), TRUE),
  list("sigmoid", op_sigmoid, function(x) 1 / (1 + exp(-x)), function(n) rnorm(n) * 3, TRUE),
  list("relu", op_relu, function(x) ifelse(x > 0, x, 0), function(n) away_from_kinks(n), TRUE),
  list("relu6", op_relu6, function(x) ifelse(x > 6, 6, ifelse(x > 0, x, 0)),
       function(n) sample(c(-1, 1, 7), n, TRUE) * runif(n, 0.1, 0.8) + sample(c(0, 3), n, TRUE), TRUE),
  list("gelu", op_gelu, function(x) 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))),
       function(n) rnorm(n) * 2, TRUE),
  list("gelu_exact", function(x) op_gelu(x, approximate = FALSE), function(x) 0.5 * x * (1 + ref_erf(x / sqrt(2))),
       function(n) rnorm(n) * 2, TRUE),
  list("silu", op_silu, function(x) x / (1 + exp(-x)), function(n) rnorm(n) * 3, TRUE),
  list("swish", op_swish, function(x) x / (1 + exp(-x)), function(n) rnorm(n) * 3, TRUE),
  list("softplus", op_softplus, function(x) log(1 + exp(x)), function(n) rnorm(n) * 3, TRUE),
  list("softsign", op_softsign, function(x) x / (1 + ifelse(x < 0, -x, x)), function(n) away_from_kinks(n), TRUE),
  list("elu", op_elu, function(x) ifelse(x > 0, x, exp(x) - 1), function(n) away_from_kinks(n), TRUE),
  list("elu_alpha", function(x) op_elu(x, alpha = 0.5), function(x) ifelse(x > 0, x, 0.5 * (exp(x) - 1)),
       function(n) away_from_kinks(n), TRUE),
  list("selu", op_selu, function(x) selu_s * ifelse(x > 0, x, selu_a * (exp(x) - 1)),
       function(n) away_from_kinks(n), TRUE),
  list("leaky_relu", op_leaky_relu, function(x) ifelse(x > 0, x, 0.2 * x), function(n) away_from_kinks(n), TRUE),
  list("leaky_relu_slope", function(x) op_leaky_relu(x, negative_slope = 0.01), function(x) ifelse(x > 0, x, 0.01 * x),
       function(n) away_from_kinks(n), TRUE),
  list("sign", op_sign, function(x) (x > 0) - (x < 0), function(n) away_from_kinks(n), FALSE),
  list("floor", op_floor, function(x) x - ((x %% 1)), function(n) rnorm(n) * 3, FALSE),
  list("ceil", op_ceil, function(x) -((-x) - ((-x) %% 1)), function(n) rnorm(n) * 3, FALSE),
  list("trunc", op_trunc, function(x) ifelse(x < 0, -floor(-x), floor(x)), function(n) rnorm(n) * 3, FALSE),
  list("round", op_round, function(x) floor(x + 0.5), function(n) rnorm(n) * 3, FALSE)
)

test_that("unary ops: eager values match plain-R references, keep shapes", {
  set.seed(42)
  for (case in unary_cases) {
    x <- array(case[[4]](24), c(2, 3, 4))
    out <- case[[2]](x)
    expect_equal(out, case[[3]](x), tolerance = 1e-12, info = case[[1]])
    expect_identical(dim(out), c(2L, 3L, 4L), info = case[[1]])
    v <- case[[4]](5)
    expect_equal(case[[2]](v), case[[3]](v), tolerance = 1e-12, info = case[[1]])
    expect_null(dim(case[[2]](v)), info = case[[1]])
    expect_equal(case[[2]](v[1]), case[[3]](v[1]), tolerance = 1e-12, info = case[[1]])
  }
})

test_that("unary ops: special values follow Keras", {
  expect_identical(op_round(c(0.5, 1.5, 2.5, -0.5, -2.5)), c(0, 2, 2, -0, -2))  # halves to even
  expect_equal(op_round(c(1.23456, -9.87654), decimals = 2), c(1.23, -9.88))
  expect_equal(op_round(0.125, 2), 0.12)
  expect_identical(op_round(c(1234, 1250, 1350), decimals = -2), c(1200, 1200, 1400))
  expect_identical(op_round(c(1234L, 1250L, -1350L), decimals = -2), c(1200L, 1200L, -1400L))
  expect_identical(op_round(c(1234L, 5L), decimals = 1), c(1234L, 5L))
  expect_identical(op_round(1e300, decimals = 20), 1e300)   # 1e300 * 1e20 overflows: kept
  expect_identical(op_trunc(c(-1.7, -0.2, 1.5, 2)), c(-1, -0, 1, 2))
  expect_identical(op_trunc(c(-3L, 4L)), c(-3L, 4L))
  expect_identical(op_sign(c(-2L, 0L, 5L)), c(-1L, 0L, 1L))
  expect_identical(op_sign(c(-Inf, -0.5, 0, 3)), c(-1, -1, 0, 1))
  expect_identical(op_abs(c(-3L, 2L)), c(3L, 2L))
  expect_identical(op_abs(c(TRUE, FALSE)), c(TRUE, FALSE))
  expect_identical(op_relu(c(-2L, 3L)), c(0L, 3L))
  expect_identical(op_relu(c(TRUE, FALSE)), c(1L, 0L))
  expect_identical(op_relu6(c(-1L, 3L, 9L)), c(0L, 3L, 6L))
  expect_identical(op_relu(c(-Inf, Inf, NaN)), c(0, Inf, NaN))
  expect_equal(op_sigmoid(c(-800, 800, 0)), c(0, 1, 0.5))
  expect_equal(op_softplus(c(-800, 800, 0, -Inf, Inf)), c(0, 800, log(2), 0, Inf))
  expect_identical(op_erf(c(-Inf, 0, Inf)), c(-1, 0, 1))
  expect_equal(op_erf(1e-12), 2 / sqrt(pi) * 1e-12, tolerance = 1e-14)   # no cancellation near 0
  expect_equal(op_erf(c(0.5, 1, 3)), c(0.5204998778130465, 0.8427007929497149, 0.9999779095030014), tolerance = 1e-15)
  expect_equal(op_gelu(c(-1, 0, 1)), c(-0.15880800939172324, 0, 0.8411919906082768), tolerance = 1e-14)
  expect_equal(op_gelu(c(-1, 0, 1), FALSE), c(-0.15865525393145707, 0, 0.8413447460685429), tolerance = 1e-14)
  expect_equal(op_selu(c(-1, 1)), c(-1.1113307378125628, 1.0507009873554805), tolerance = 1e-14)
  expect_identical(op_isnan(c(1, NaN, Inf)), c(FALSE, TRUE, FALSE))
  expect_identical(op_isfinite(c(1, NaN, -Inf)), c(TRUE, FALSE, FALSE))
  expect_identical(op_isinf(c(1, NaN, -Inf)), c(FALSE, FALSE, TRUE))
  expect_identical(op_isnan(array(1:4, c(2, 2))), array(FALSE, c(2, 2)))
  expect_identical(op_isfinite(c(TRUE, FALSE)), c(TRUE, TRUE))
  expect_identical(op_logical_not(c(0, 2, NaN)), c(TRUE, FALSE, FALSE))
  expect_identical(op_logical_not(array(c(TRUE, FALSE), c(1, 2))), array(c(FALSE, TRUE), c(1, 2)))
  expect_identical(op_square(c(3L, -4L)), c(9L, 16L))
  expect_identical(op_square(c(TRUE, FALSE)), c(1L, 0L))
  # outside the domain: NaN, quietly (as Keras; R's own functions would warn)
  expect_no_warning(expect_identical(op_sqrt(c(-1, 4)), c(NaN, 2)))
  expect_no_warning(expect_identical(op_rsqrt(-1), NaN))
  expect_no_warning(expect_identical(op_log(c(-1, 0)), c(NaN, -Inf)))
  expect_no_warning(expect_identical(op_log1p(-2), NaN))
  expect_no_warning(expect_identical(op_log2(-1), NaN))
  expect_no_warning(expect_identical(op_log10(-1), NaN))
  expect_no_warning(expect_identical(op_arcsin(c(2, -Inf)), c(NaN, NaN)))
  expect_no_warning(expect_identical(op_arccos(2), NaN))
  expect_no_warning(expect_identical(op_sin(c(Inf, 0)), c(NaN, 0)))
  expect_no_warning(expect_identical(op_cos(-Inf), NaN))
  expect_no_warning(expect_identical(op_tan(Inf), NaN))
  expect_no_warning(expect_identical(c(op_mod(1e300, 3)), suppressWarnings(1e300 %% 3)))
  expect_identical(op_log(0), -Inf)
})

binary_cases <- list(
  list("power", op_power, function(a, b) exp(b * log(a)), function(n) runif(n, 0.5, 2), function(n) rnorm(n), TRUE),
  list("maximum", op_maximum, function(a, b) ifelse(a >= b, a, b), rnorm, rnorm, TRUE),
  list("pmax", op_pmax, function(a, b) ifelse(a >= b, a, b), rnorm, rnorm, TRUE),
  list("minimum", op_minimum, function(a, b) ifelse(a <= b, a, b), rnorm, rnorm, TRUE),
  list("pmin", op_pmin, function(a, b) ifelse(a <= b, a, b), rnorm, rnorm, TRUE),
  list("mod", op_mod, function(a, b) a - b * floor(a / b), function(n) rnorm(n) * 4,
       function(n) sample(c(-1, 1), n, TRUE) * runif(n, 0.7, 1.5), TRUE),
  list("floor_divide", op_floor_divide, function(a, b) floor(a / b), function(n) rnorm(n) * 4,
       function(n) sample(c(-1, 1), n, TRUE) * runif(n, 0.7, 1.5), FALSE),
  list("equal", op_equal, function(a, b) a == b, function(n) sample(0:2, n, TRUE) + 0, function(n) sample(0:2, n, TRUE) + 0,
       FALSE),
  list("not_equal", op_not_equal, function(a, b) a != b, function(n) sample(0:2, n, TRUE) + 0,
       function(n) sample(0:2, n, TRUE) + 0, FALSE),
  list("less", op_less, function(a, b) a < b, function(n) sample(0:2, n, TRUE) + 0, function(n) sample(0:2, n, TRUE) + 0,
       FALSE),
  list("less_equal", op_less_equal, function(a, b) a <= b, function(n) sample(0:2, n, TRUE) + 0,
       function(n) sample(0:2, n, TRUE) + 0, FALSE),
  list("greater", op_greater, function(a, b) a > b, function(n) sample(0:2, n, TRUE) + 0,
       function(n) sample(0:2, n, TRUE) + 0, FALSE),
  list("greater_equal", op_greater_equal, function(a, b) a >= b, function(n) sample(0:2, n, TRUE) + 0,
       function(n) sample(0:2, n, TRUE) + 0, FALSE),
  list("logical_and", op_logical_and, function(a, b) a != 0 & b != 0, function(n) sample(0:2, n, TRUE) + 0,
       function(n) sample(0:2, n, TRUE) + 0, FALSE),
  list("logical_or", op_logical_or, function(a, b) a != 0 | b != 0, function(n) sample(0:2, n, TRUE) + 0,
       function(n) sample(0:2, n, TRUE) + 0, FALSE),
  list("logical_xor", op_logical_xor, function(a, b) (a != 0) != (b != 0), function(n) sample(0:2, n, TRUE) + 0,
       function(n) sample(0:2, n, TRUE) + 0, FALSE)
)

# Shapes that broadcast against (2, 3, 4), and the plain-R expansion.
expand_to <- function(v, to) {
  full <- c(rep(1L, length(to) - length(dim2(v))), dim2(v))
  idx <- lapply(seq_along(to), function(k) if (full[k] == 1L) rep(1L, to[k]) else seq_len(to[k]))
  do.call(`[`, c(list(array(v, full)), idx, list(drop = FALSE)))
}
dim2 <- function(v) if (is.null(dim(v))) if (length(v) == 1L) integer() else length(v) else dim(v)

test_that("binary ops: eager values with broadcasting match plain-R references", {
  set.seed(7)
  to <- c(2L, 3L, 4L)
  for (case in binary_cases) {
    for (sb in list(c(2L, 3L, 4L), c(3L, 1L), 4L, integer(), c(2L, 1L, 4L))) {
      a <- array(case[[4]](24), to)
      b <- if (length(sb)) array(case[[5]](prod(sb)), sb) else case[[5]](1)
      if (length(sb) == 1L) b <- as.vector(b)
      out <- case[[2]](a, b)
      ref <- case[[3]](a, expand_to(b, to))
      expect_equal(out, ref, tolerance = 1e-12, info = paste(case[[1]], toString(sb)))
      # and with the operands swapped (broadcast on the first)
      out2 <- case[[2]](b, a)
      expect_identical(dim(out2), to, info = case[[1]])
    }
  }
  expect_identical(c(op_greater(c(1, 2, 3), 2)), c(FALSE, FALSE, TRUE))
  expect_identical(c(op_mod(c(-7, 7, -7, 7), c(3, 3, -3, -3))), c(2, 1, -1, -2))
  expect_identical(c(op_mod(c(-7L, 7L), 3L)), c(2L, 1L))
  expect_identical(c(op_floor_divide(c(-7L, 7L), 2L)), c(-4L, 3L))
  expect_identical(c(op_floor_divide(c(-7, 7), 2)), c(-4, 3))
  expect_identical(op_power(2L, 10L), 1024L)
  expect_identical(c(op_power(c(TRUE, FALSE), TRUE)), c(1L, 0L))
  expect_identical(c(op_maximum(c(1L, 5L), 3L)), c(3L, 5L))
  expect_identical(c(op_maximum(c(1L, 5L), 2.5)), c(2.5, 5))
  expect_identical(c(op_maximum(c(TRUE, FALSE), FALSE)), c(TRUE, FALSE))
  expect_identical(c(op_minimum(c(TRUE, FALSE), TRUE)), c(TRUE, FALSE))
  expect_identical(c(op_maximum(c(NaN, 1, 2), c(0, NaN, 1))), c(NaN, NaN, 2))   # NaN propagates
  expect_identical(c(op_minimum(c(NaN, 1, 2), c(0, NaN, 1))), c(NaN, NaN, 1))
  expect_identical(c(op_equal(c(NaN, 1), c(NaN, 1))), c(FALSE, TRUE))
  expect_identical(c(op_not_equal(c(NaN, 1), c(NaN, 1))), c(TRUE, FALSE))
  expect_identical(op_less(NaN, 1), FALSE)
  expect_identical(c(op_logical_and(c(NaN, 0, 2), 1)), c(TRUE, FALSE, TRUE))
  expect_identical(c(op_logical_xor(c(TRUE, FALSE, TRUE), c(TRUE, TRUE, FALSE))), c(FALSE, TRUE, TRUE))
  expect_identical(op_mod(5, 0), NaN)
  expect_identical(op_floor_divide(5, 0), Inf)
})

test_that("op_clip and op_where: eager values and broadcasting", {
  x <- array(c(-3, -1, 0, 0.5, 1, 4), c(2, 3))
  expect_identical(op_clip(x, -1, 1), array(c(-1, -1, 0, 0.5, 1, 1), c(2, 3)))
  expect_identical(op_clip(x, c(0, -2, -5), 0.25), array(c(0, 0, 0, 0.25, 0.25, 0.25), c(2, 3)))
  lo <- array(c(-2, 0), c(2, 1))
  expect_identical(op_clip(x, lo, 3), array(c(-2, 0, 0, 0.5, 1, 3), c(2, 3)))
  expect_identical(c(op_clip(c(1L, 5L, 9L), 2L, 6L)), c(2L, 5L, 6L))
  expect_identical(c(op_clip(c(1L, 5L, 9L), 1.5, 6.5)), c(2L, 5L, 6L))   # integer stays integer, inside the bounds
  expect_identical(c(op_clip(c(TRUE, FALSE), 0L, 1L)), c(1L, 0L))
  expect_identical(c(op_clip(c(-1, 2), NaN, 1)), c(-1, 1))               # a NaN bound leaves x (TensorFlow)
  expect_identical(op_clip(5, 1, 3), 3)

  cond <- array(c(TRUE, FALSE), c(2, 1))
  a <- array(1:6, c(2, 3))
  expect_identical(op_where(cond, a, -1L), array(c(1L, -1L, 3L, -1L, 5L, -1L), c(2, 3)))
  expect_identical(op_where(cond, a, 0.5), array(c(1, 0.5, 3, 0.5, 5, 0.5), c(2, 3)))
  expect_identical(c(op_where(c(1, 0, NaN), c(1, 2, 3), c(7, 8, 9))), c(1, 8, 3))   # non-zero is TRUE
  expect_identical(op_where(FALSE, 1L, 2.5), 2.5)
  expect_identical(op_where(FALSE, 2.5, 1L), 1)
  expect_identical(c(op_where(c(TRUE, FALSE), TRUE, FALSE)), c(TRUE, FALSE))
  # the condition alone broadcast over both values
  b <- array(rnorm(24), c(2, 3, 4))
  c3 <- rnorm(4) > 0
  ref <- b
  ref[, , !c3] <- 0
  expect_identical(op_where(c3, b, 0), ref)
})

test_that("symbolic calls record nodes with Keras's shapes and dtypes", {
  x <- keras_input(shape = c(3, 4))
  x64 <- keras_input(shape = c(3, 4), dtype = "float64")
  i <- keras_input(shape = c(3, 4), dtype = "int32")
  b <- keras_input(shape = c(3, 4), dtype = "bool")
  for (case in unary_cases) {
    s <- case[[2]](x)
    expect_identical(s$shape, c(NA, 3L, 4L), info = case[[1]])
    expect_identical(s$dtype, "float32", info = case[[1]])
    expect_identical(case[[2]](x64)$dtype, "float64", info = case[[1]])
  }
  int_dtypes <- c(square = "int32", sqrt = "float32", exp = "float32", abs = "int32", sign = "int32",
                  floor = "float32", ceil = "float32", round = "int32", trunc = "int32", relu = "int32",
                  relu6 = "int32", sigmoid = "float32", gelu = "float32", erf = "float32", tanh = "float32",
                  leaky_relu = "float32", isnan = "bool", logical_not = "bool")
  bool_dtypes <- c(square = "int32", sqrt = "float32", abs = "bool", sign = "bool", floor = "float32",
                   round = "bool", trunc = "bool", relu = "int32", sigmoid = "float32", isfinite = "bool")
  for (nm in names(int_dtypes)) {
    expect_identical(get(paste0("op_", nm))(i)$dtype, int_dtypes[[nm]], info = nm)
  }
  for (nm in names(bool_dtypes)) {
    expect_identical(get(paste0("op_", nm))(b)$dtype, bool_dtypes[[nm]], info = nm)
  }
  y <- keras_input(shape = c(1, 4))
  z <- keras_input(shape = 4)
  for (case in binary_cases) {
    s <- case[[2]](x, y)
    expect_identical(s$shape, c(NA, 3L, 4L), info = case[[1]])
    expect_identical(case[[2]](z, keras_input(batch_shape = c(2, 5, 1)))$shape, c(2L, 5L, 4L), info = case[[1]])
    expect_identical(case[[2]](x, 2)$shape, c(NA, 3L, 4L), info = case[[1]])
  }
  expect_identical(op_power(x, y)$dtype, "float32")
  expect_identical(op_greater(x, y)$dtype, "bool")
  expect_identical(op_logical_or(x, i)$dtype, "bool")
  expect_identical(op_mod(i, i)$dtype, "int32")
  expect_identical(op_mod(b, b)$dtype, "int32")
  expect_identical(op_floor_divide(b, b)$dtype, "int32")
  expect_identical(op_power(b, b)$dtype, "int32")
  expect_identical(op_maximum(b, b)$dtype, "bool")
  expect_identical(op_maximum(i, x)$dtype, "float32")
  expect_identical(op_maximum(i, x64)$dtype, "float64")
  expect_identical(op_power(i, 2L)$dtype, "int32")       # weak int constant
  expect_identical(op_power(i, 2)$dtype, "float32")      # weak float constant with ints
  expect_identical(op_minimum(x64, 1)$dtype, "float64")  # weak constants do not promote
  expect_identical(op_where(b, i, x64)$dtype, "float64")
  expect_identical(op_where(x > 0, x, 0)$dtype, "float32")
  expect_identical(op_where(x > 0, i, 0L)$dtype, "int32")
  expect_identical(op_where(keras_input(shape = c(3, 1), dtype = "bool"), z, 0)$shape, c(NA, 3L, 4L))
  expect_identical(op_clip(x, 0, 1)$shape, c(NA, 3L, 4L))
  expect_identical(op_clip(x, keras_input(batch_shape = c(3, 1)), y)$shape, c(NA, 3L, 4L))
  expect_identical(op_clip(x64, 0, 1)$dtype, "float64")
  expect_identical(op_clip(b, 0L, 1L)$dtype, "int32")
  expect_identical(op_clip(i, 0.5, 2)$dtype, "int32")
  # NA dims on both sides, and names
  expect_identical(op_maximum(keras_input(batch_shape = c(NA, 1)), keras_input(batch_shape = c(NA, 5)))$shape,
                   c(NA, 5L))
  expect_match(format(op_sqrt(x)), "name=sqrt")
  expect_match(format(op_leaky_relu(x)), "name=leaky_relu")
  expect_match(format(op_floor_divide(x, 2)), "name=floor_divide")
})

test_that("the graph runner computes what the eager ops compute", {
  set.seed(3)
  for (case in unary_cases) {
    v <- array(case[[4]](24), c(2, 3, 4))
    r <- graph_run_op(case[[2]], list(x = v))
    expect_equal(r$output, case[[2]](v), tolerance = 1e-14, info = case[[1]])
  }
  for (case in binary_cases) {
    a <- array(case[[4]](24), c(2, 3, 4)); b <- array(case[[5]](4), c(1, 4))
    r <- graph_run_op(case[[2]], list(a, b))
    expect_equal(r$output, case[[2]](a, b), tolerance = 1e-14, info = case[[1]])
    expect_identical(is.logical(r$output), r$symbolic$dtype == "bool", info = case[[1]])
  }
  x <- array(rnorm(24), c(2, 3, 4)); lo <- array(-runif(3), c(3, 1)); hi <- runif(4)
  expect_equal(graph_run_op(op_clip, list(x, lo, hi))$output, op_clip(x, lo, hi))
  expect_equal(graph_run_op(function(x) op_clip(x, -0.5, 0.5), list(x = x))$output, op_clip(x, -0.5, 0.5))
  cnd <- array(runif(6) > 0.5, c(2, 3, 1))
  y <- rnorm(4)
  expect_equal(graph_run_op(op_where, list(cnd, x, y))$output, op_where(cnd, x, y))
  # integer and bool placeholders keep their dtypes through the runner
  iv <- array(c(-3L, 4L, 7L, 0L), c(2, 2))
  expect_identical(graph_run_op(function(a) op_mod(a, 3L), list(a = iv))$output, op_mod(iv, 3L))
  expect_identical(graph_run_op(function(a) op_floor_divide(a, 2L), list(a = iv))$output, array(c(-2L, 2L, 3L, 0L), c(2, 2)))
  expect_identical(graph_run_op(op_logical_not, list(iv))$output, iv == 0L)
  # float32 graphs round like Keras
  r <- graph_run_op(op_exp, list(x = 1), dtypes = "float32")
  expect_identical(r$output, multihead:::round_float32(exp(1)))
})

test_that("gradients match finite differences, with broadcasting", {
  set.seed(11)
  shapes <- list(c(2L, 3L), c(3L, 2L, 2L), 5L)
  for (case in unary_cases[vapply(unary_cases, `[[`, logical(1), 5)]) {
    sh <- shapes[[sample(length(shapes), 1)]]
    check_op_gradient(case[[2]], list(x = array(case[[4]](prod(sh)), sh)))
  }
  for (case in binary_cases[vapply(binary_cases, `[[`, logical(1), 6)]) {
    a <- array(case[[4]](24), c(2, 3, 4))
    check_op_gradient(case[[2]], list(a, array(case[[5]](4), c(1, 4))))     # b broadcast
    check_op_gradient(case[[2]], list(array(case[[4]](3), c(3, 1)), array(case[[5]](24), c(2, 3, 4))))
    check_op_gradient(case[[2]], list(case[[4]](1), array(case[[5]](6), c(2, 3))))   # scalar
  }
  # clip: x, and both bounds broadcast into x (away from the bounds)
  x <- array(away_from_kinks(24, 0.05, 1), c(2, 3, 4))
  x[abs(abs(x) - 0.5) < 0.05] <- 0.8
  lo <- array(rep(-0.5, 3), c(3, 1)) + c(0, 0.01, -0.01)
  hi <- rep(0.5, 4) + c(0, 0.01, -0.01, 0.02)
  check_op_gradient(op_clip, list(x, lo, hi))
  check_op_gradient(function(x) op_clip(x, -0.5, 0.5), list(x = x))
  # where: x1 and x2 broadcast, the condition is a bool input
  cnd <- array(c(TRUE, FALSE, FALSE, TRUE, TRUE, FALSE), c(2, 3, 1))
  check_op_gradient(op_where, list(cnd, array(rnorm(24), c(2, 3, 4)), rnorm(4)))
  check_op_gradient(function(c, a, b) op_where(c > 0, a, b), list(c = rnorm(4), a = rnorm(4), b = rnorm(1)),
                    wrt = 2:3)
})

test_that("gradients at kinks and of the rounding ops follow TensorFlow", {
  grad_of <- function(fn, inputs, w = NULL) {
    r <- graph_run_op(fn, inputs)
    if (is.null(w)) w <- array(1, multihead:::value_shape(r$output))
    lapply(multihead:::run_graph_backward(r$graph, r$run, list(w))$inputs, function(g) if (is.null(g)) g else as.vector(g))
  }
  expect_equal(grad_of(op_relu, list(x = c(-1, 0, 1)))[[1]], c(0, 0, 1))
  expect_equal(grad_of(op_relu6, list(x = c(-1, 0, 3, 6, 7)))[[1]], c(0, 0, 1, 0, 0))
  expect_equal(grad_of(op_abs, list(x = c(-2, 0, 2)))[[1]], c(-1, 0, 1))
  expect_equal(grad_of(op_leaky_relu, list(x = c(-2, 0, 2)))[[1]], c(0.2, 0.2, 1))
  expect_equal(grad_of(function(x) op_elu(x, alpha = 0.5), list(x = c(-1, 0, 2)))[[1]], c(0.5 * exp(-1), 0.5, 1))
  expect_equal(grad_of(op_selu, list(x = c(0, 1)))[[1]], c(selu_s, selu_s))
  g <- grad_of(op_maximum, list(c(1, 2, 3), c(1, 1, 4)))
  expect_equal(g[[1]], c(1, 1, 0)); expect_equal(g[[2]], c(0, 0, 1))        # ties: all to x1
  g <- grad_of(op_minimum, list(c(1, 2, 3), c(1, 1, 4)))
  expect_equal(g[[1]], c(1, 0, 1)); expect_equal(g[[2]], c(0, 1, 0))
  g <- grad_of(op_clip, list(c(-2, -1, 0, 1, 2), -1, 1))
  expect_equal(g[[1]], c(0, 1, 1, 1, 0)); expect_equal(g[[2]], 1); expect_equal(g[[3]], 1)
  g <- grad_of(op_power, list(c(0, -2, 3), c(2, 2, 2)))
  expect_equal(g[[1]], c(0, -4, 6)); expect_equal(g[[2]], c(0, 0, 9 * log(3)))   # log(x1) only where x1 > 0
  # rounding ops pass no gradient (TensorFlow's None); the other terms still do
  for (fn in list(op_floor, op_ceil, op_round, op_trunc, op_sign)) {
    expect_null(grad_of(fn, list(x = c(0.3, 1.7)))[[1]])
    check_op_gradient(function(x) x - fn(x), list(x = c(0.3, 1.7, -2.2)))
  }
  expect_null(grad_of(op_floor_divide, list(c(3.5, 7.1), c(2, 2)))[[2]])
  check_op_gradient(function(a, b) a - op_floor_divide(a, b) * b, list(a = c(3.5, 7.1), b = c(2, 2)), wrt = 1)
  # comparisons have no gradient, but a where() on them differentiates its values
  expect_error(grad_of(function(x) op_greater(x, 0) + x, list(x = c(-1, 1))), NA)
  g <- grad_of(function(x) op_where(x > 0, x * 3, -x), list(x = c(-1, 1)))
  expect_equal(g[[1]], c(-1, 3))
})

test_that("R operators and Math functions on symbolic tensors use these ops", {
  x <- keras_input(shape = c(3, 4))
  i <- keras_input(shape = c(3, 4), dtype = "int32")
  for (e in list(x^2, x %% 2, x %/% 2, abs(x), sign(x), sqrt(x), floor(x), ceiling(x), round(x), trunc(x),
                 exp(x), log(x), expm1(x), log1p(x), log2(x), log10(x), cos(x), sin(x), tan(x), tanh(x),
                 cosh(x), sinh(x), acos(x), asin(x), atan(x))) {
    expect_identical(e$shape, c(NA, 3L, 4L))
    expect_identical(e$dtype, "float32")
  }
  for (e in list(x == 0, x != 0, x < 0, x <= 0, x > 0, x >= 0, (x > 0) & (x < 1), (x > 0) | (x < 1), !(x > 0), !x)) {
    expect_identical(e$shape, c(NA, 3L, 4L))
    expect_identical(e$dtype, "bool")
  }
  expect_identical((i^2L)$dtype, "int32")
  expect_identical((i %/% 2L)$dtype, "int32")
  expect_identical(abs(i)$dtype, "int32")
  expect_identical(sqrt(i)$dtype, "float32")
  expect_identical((2^x)$shape, c(NA, 3L, 4L))
  expect_match(format(x^2), "name=power")
  expect_match(format(x > 0), "name=greater")
  expect_match(format(!(x > 0)), "name=logical_not")
  expect_match(format(ceiling(x)), "name=ceil")
  expect_match(format(acos(x)), "name=arccos")
  # the runner computes them
  v <- array(runif(24, 0.1, 2), c(2, 3, 4))
  r <- graph_run_op(function(x) sqrt(x)^2 + (x > 1) * exp(-x) - x %% 0.3, list(x = v))
  expect_equal(r$output, sqrt(v)^2 + (v > 1) * exp(-v) - v %% 0.3, tolerance = 1e-14)
  r <- graph_run_op(function(x) !(x > 1) | (x < 0.5), list(x = v))
  expect_identical(r$output, !(v > 1) | (v < 0.5))
  r <- graph_run_op(function(x) log(x, base = 2), list(x = v))
  expect_equal(r$output, log2(v), tolerance = 1e-14)
  check_op_gradient(function(x) x^3 - exp(x) * sin(x) + sqrt(x), list(x = v))
})

test_that("operators on variables compute eagerly and record in a graph", {
  d <- layer_dense(units = 2, dtype = "float64")
  invisible(d(array(1, c(1, 3))))
  v <- multihead:::new_variable(multihead:::layer_self(d), "kernel")
  k <- get_weights(d)[[1]]
  expect_equal(v^2, k^2)
  expect_equal(exp(v), exp(k))
  expect_identical(v > 0, k > 0)
  expect_identical(!(v > 0), !(k > 0))
  expect_equal(op_where(v > 0, v, 0), ifelse(k > 0, k, 0))
  expect_equal(op_clip(v, -0.1, 0.1), pmin(pmax(k, -0.1), 0.1))
  x <- keras_input(shape = c(3, 2), dtype = "float64")
  s <- op_maximum(x, v)
  expect_identical(s$shape, c(NA, 3L, 2L))
  expect_identical(s$dtype, "float64")
  expect_identical((x > v)$dtype, "bool")
})

test_that("result_dtype() follows NumPy/Keras promotion with weak constants (plain-R reference)", {
  reference <- function(specs) {
    strong <- Filter(function(s) !isTRUE(s$weak), specs)
    use <- if (length(strong)) strong else specs
    order <- c("float64", "float32", "int64", "int32", "bool")
    best <- order[min(match(vapply(use, function(s) s$dtype, ""), order))]
    weak_float <- any(vapply(specs, function(s) isTRUE(s$weak) && s$dtype %in% order[1:2], NA))
    if (length(strong) && !(best %in% order[1:2]) && weak_float) best <- "float32"
    best
  }
  dts <- c("float64", "float32", "int64", "int32", "bool")
  for (d1 in dts) for (d2 in dts) for (w1 in c(FALSE, TRUE)) for (w2 in c(FALSE, TRUE)) {
    specs <- list(list(shape = 1L, dtype = d1, weak = w1), list(shape = 1L, dtype = d2, weak = w2))
    expect_identical(multihead:::result_dtype(specs), reference(specs), info = paste(d1, d2, w1, w2))
  }
})

test_that("bad input gives clear errors naming the argument", {
  x <- keras_input(shape = c(3, 4))
  expect_error(op_exp("a"), "`x` must be a tensor", class = "multihead_error_argument")
  expect_error(op_exp(list(1, 2)), "`x` must be a tensor", class = "multihead_error_argument")
  expect_error(op_relu(factor("a")), "`x` must be a tensor", class = "multihead_error")
  expect_error(op_sqrt(c(1, NA)), "`x` must be free of NA", class = "multihead_error_argument")
  expect_error(op_exp(), "`x` must be supplied", class = "multihead_error_argument")
  expect_error(op_power(2), "`x2` must be supplied", class = "multihead_error_argument")
  expect_error(op_maximum(x2 = 2), "`x1` must be supplied", class = "multihead_error_argument")
  expect_error(op_power("a", 2), "`x1` must be a tensor", class = "multihead_error_argument")
  expect_error(op_greater(1, NA), "`x2` must be free of NA", class = "multihead_error_argument")
  expect_error(op_logical_and(TRUE, NA), "`x2` must be free of NA", class = "multihead_error_argument")
  expect_error(op_maximum(array(0, c(2, 3)), array(0, c(2, 4))),
               "op_maximum\\(\\): the shapes of its operands do not broadcast.*`x1` \\(2, 3\\).*`x2` \\(2, 4\\)",
               class = "multihead_error_shape")
  expect_error(op_mod(x, keras_input(shape = c(3, 5))), "op_mod\\(\\): the shapes", class = "multihead_error_shape")
  expect_error(x^"a", "`e2` must be a tensor", class = "multihead_error_argument")
  expect_error(x > NA, "`e2` must be free of NA", class = "multihead_error_argument")
  # params
  expect_error(op_round(1.5, decimals = 1.5), "`decimals` must be a whole number", class = "multihead_error_argument")
  expect_error(op_round(1.5, decimals = NA), "`decimals`", class = "multihead_error_argument")
  expect_error(op_round(1.5, decimals = c(1, 2)), "`decimals`", class = "multihead_error_argument")
  expect_error(op_round(1.5, decimals = "1"), "`decimals`", class = "multihead_error_argument")
  expect_error(op_round(1.5, decimals = 400), "`decimals`", class = "multihead_error_argument")
  expect_error(op_gelu(1, approximate = "yes"), "`approximate` must be TRUE or FALSE", class = "multihead_error_argument")
  expect_error(op_gelu(1, approximate = NA), "`approximate`", class = "multihead_error_argument")
  expect_error(op_elu(1, alpha = "a"), "`alpha` must be a finite number", class = "multihead_error_argument")
  expect_error(op_elu(1, alpha = c(1, 2)), "`alpha`", class = "multihead_error_argument")
  expect_error(op_leaky_relu(1, negative_slope = Inf), "`negative_slope`", class = "multihead_error_argument")
  expect_error(op_leaky_relu(x, negative_slope = NULL), "`negative_slope`", class = "multihead_error_argument")
  # clip
  expect_error(op_clip(1), "`x_min` must be a number or a tensor", class = "multihead_error_argument")
  expect_error(op_clip(1, 0), "`x_max` must be a number or a tensor", class = "multihead_error_argument")
  expect_error(op_clip(1, NULL, 2), "`x_min`", class = "multihead_error_argument")
  expect_error(op_clip(1, "a", 2), "`x_min` must be a tensor", class = "multihead_error_argument")
  expect_error(op_clip(1, 0, NA), "`x_max` must be free of NA", class = "multihead_error_argument")
  expect_error(op_clip(c(1, 2), c(0, 0, 0), 3), "`x_min` must broadcast to the shape of `x`",
               class = "multihead_error_shape")
  expect_error(op_clip(c(1, 2), 0, array(3, c(2, 2))), "`x_max` must broadcast to the shape of `x`",
               class = "multihead_error_shape")
  expect_error(op_clip(x, keras_input(shape = c(2, 4)), 1), "`x_min` must broadcast", class = "multihead_error_shape")
  expect_error(op_clip(keras_input(shape = 1), array(0, c(2, 3)), 1), "`x_min` must broadcast",
               class = "multihead_error_shape")
  # where
  expect_error(op_where(), "`condition` must be supplied", class = "multihead_error_argument")
  expect_error(op_where(c(TRUE, FALSE)), "not supported", class = "multihead_error_unsupported")
  expect_error(op_where(c(TRUE, FALSE), 1), "`x2` must be a tensor in op_where\\(\\) when `x1` is supplied",
               class = "multihead_error_argument")
  expect_error(op_where(c(TRUE, FALSE), x2 = 1), "`x1` must be a tensor", class = "multihead_error_argument")
  expect_error(op_where(c(TRUE, NA), 1, 2), "`condition` must be free of NA", class = "multihead_error_argument")
  expect_error(op_where("a", 1, 2), "`condition` must be a tensor", class = "multihead_error_argument")
  expect_error(op_where(c(TRUE, FALSE), c(1, 2, 3), 0), "op_where\\(\\): the shapes of its operands do not broadcast",
               class = "multihead_error_shape")
  # integer arithmetic that Keras cannot represent
  expect_error(op_mod(5L, c(1L, 0L)), "op_mod\\(\\): integer division by zero \\(`x2`", class = "multihead_error")
  expect_error(op_floor_divide(5L, 0L), "integer division by zero", class = "multihead_error")
  expect_error(op_mod(TRUE, FALSE), "integer division by zero", class = "multihead_error")
  expect_error(op_square(50000L), "overflows int32", class = "multihead_error")
  expect_error(op_power(10L, 10L), "overflows int32", class = "multihead_error")
  expect_error(op_power(2L, -1L), "negative integer powers", class = "multihead_error")
  expect_error(op_round(2147483647L, decimals = -1), "overflows int32", class = "multihead_error")
  # in a graph the same errors come from the runner, never NA
  iv <- array(c(1L, 0L), c(1, 2))
  expect_error(graph_run_op(function(a) op_mod(3L, a), list(a = iv)), "integer division by zero",
               class = "multihead_error")
})

test_that("eager ops are cheap on small arrays", {
  a <- array(rnorm(12), c(3, 4))
  t <- system.time(for (k in 1:200) { op_exp(a); op_relu(a); op_greater(a, 0); op_where(a > 0, a, 0) })[["elapsed"]]
  expect_lt(t, 0.5)  # well under 1 ms per op even on a loaded machine
})
