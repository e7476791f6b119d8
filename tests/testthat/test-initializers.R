# Initializers: constructors, validation, lookup, config round trips, the
# distributions drawn by initializer_sample() and its RNG handling.

all_initializers <- function() {
  list(
    initializer_glorot_uniform(seed = 1), initializer_glorot_normal(seed = 2),
    initializer_he_uniform(seed = 3), initializer_he_normal(seed = 4),
    initializer_lecun_uniform(seed = 5), initializer_lecun_normal(seed = 6),
    initializer_random_normal(mean = 1, stddev = 2, seed = 7),
    initializer_random_uniform(minval = -1, maxval = 3, seed = 8),
    initializer_truncated_normal(mean = -1, stddev = 0.5, seed = 9),
    initializer_zeros(), initializer_ones(), initializer_constant(2.5),
    initializer_orthogonal(gain = 2, seed = 10)
  )
}

snake_names <- c(
  glorot_uniform = "GlorotUniform", glorot_normal = "GlorotNormal",
  he_uniform = "HeUniform", he_normal = "HeNormal",
  lecun_uniform = "LecunUniform", lecun_normal = "LecunNormal",
  random_normal = "RandomNormal", random_uniform = "RandomUniform",
  truncated_normal = "TruncatedNormal", zeros = "Zeros", ones = "Ones",
  constant = "Constant", orthogonal = "Orthogonal"
)

test_that("constructors return Keras class names and configs with defaults", {
  expect_s3_class(initializer_glorot_uniform(), "multihead_initializer")
  expect_identical(unclass(initializer_glorot_uniform()),
                   list(class_name = "GlorotUniform", config = list(seed = NULL)))
  expect_identical(initializer_he_normal(seed = 3)$config, list(seed = 3L))
  expect_identical(unclass(initializer_random_normal()),
                   list(class_name = "RandomNormal",
                        config = list(mean = 0, stddev = 0.05, seed = NULL)))
  expect_identical(initializer_random_uniform()$config,
                   list(minval = -0.05, maxval = 0.05, seed = NULL))
  expect_identical(initializer_truncated_normal()$config,
                   list(mean = 0, stddev = 0.05, seed = NULL))
  expect_identical(initializer_zeros()$config, list())
  expect_identical(initializer_ones()$class_name, "Ones")
  expect_identical(initializer_constant()$config, list(value = 0))
  expect_identical(initializer_orthogonal()$config, list(gain = 1, seed = NULL))
  classes <- vapply(all_initializers(), function(i) i$class_name, "")
  expect_setequal(classes, unname(snake_names))
})

test_that("print() gives one line", {
  expect_output(print(initializer_glorot_uniform()), "^<initializer GlorotUniform seed=NULL>$")
  expect_output(print(initializer_random_normal(seed = 4)),
                "<initializer RandomNormal mean=0 stddev=0.05 seed=4>", fixed = TRUE)
  expect_output(print(initializer_zeros()), "^<initializer Zeros>$")
  out <- capture.output(res <- print(initializer_constant(3)))
  expect_length(out, 1)
  expect_identical(res, initializer_constant(3))
})

test_that("bad constructor arguments are errors naming the argument", {
  err <- "multihead_error_argument"
  for (bad in list("1", 1.5, NA, c(1, 2), TRUE, 2^31, list(1))) {
    expect_error(initializer_glorot_uniform(seed = bad), class = err)
    expect_error(initializer_orthogonal(seed = bad), "`seed`")
  }
  expect_error(initializer_he_uniform(seed = "a"), "`seed`")
  expect_error(initializer_random_normal(stddev = 0), "`stddev`.*positive")
  expect_error(initializer_random_normal(stddev = -1), "`stddev`", class = err)
  expect_error(initializer_truncated_normal(stddev = NA), "`stddev`")
  expect_error(initializer_truncated_normal(stddev = Inf), "`stddev`")
  expect_error(initializer_random_normal(mean = NA), "`mean`")
  expect_error(initializer_random_normal(mean = "0"), "`mean`")
  expect_error(initializer_truncated_normal(mean = c(0, 1)), "`mean`")
  expect_error(initializer_random_uniform(minval = 1, maxval = 1), "`maxval`.*minval")
  expect_error(initializer_random_uniform(minval = 1, maxval = 0), "`maxval`", class = err)
  expect_error(initializer_random_uniform(minval = -Inf), "`minval`")
  expect_error(initializer_random_uniform(maxval = NA), "`maxval`")
  expect_error(initializer_constant(Inf), "`value`")
  expect_error(initializer_constant("a"), "`value`")
  expect_error(initializer_constant(c(1, 2)), "`value`")
  expect_error(initializer_orthogonal(gain = NA), "`gain`")
  expect_error(initializer_orthogonal(gain = "1"), "`gain`", class = err)
  expect_identical(initializer_glorot_uniform(seed = -5)$config$seed, -5L)
})

test_that("as_initializer() accepts objects, names, class names and configs", {
  init <- initializer_he_normal(seed = 3)
  expect_identical(as_initializer(init, "k"), init)
  for (nm in names(snake_names)) {
    expect_identical(as_initializer(nm, "k")$class_name, snake_names[[nm]])
    expect_identical(as_initializer(snake_names[[nm]], "k")$class_name, snake_names[[nm]])
  }
  # Names give the defaults.
  expect_identical(as_initializer("random_normal", "k"), initializer_random_normal())
  expect_identical(as_initializer("constant", "k"), initializer_constant())
  # Keras's aliases.
  expect_identical(as_initializer("uniform", "k")$class_name, "RandomUniform")
  expect_identical(as_initializer("normal", "k")$class_name, "RandomNormal")
  expect_identical(as_initializer("OrthogonalInitializer", "k")$class_name, "Orthogonal")
  expect_identical(as_initializer("zero", "k")$class_name, "Zeros")
})

test_that("initializer_config() round-trips through as_initializer()", {
  for (init in all_initializers()) {
    cfg <- initializer_config(init)
    expect_false(is.object(cfg))
    expect_identical(names(cfg), c("class_name", "config"))
    expect_identical(as_initializer(cfg, "k"), init)
  }
  # A config without `config`, or with Keras's extra keys, is accepted.
  expect_identical(as_initializer(list(class_name = "Zeros"), "k"), initializer_zeros())
  keras_style <- list(module = "keras.initializers", class_name = "GlorotUniform",
                      config = list(seed = NULL), registered_name = NULL)
  expect_identical(as_initializer(keras_style, "k"), initializer_glorot_uniform())
  expect_identical(as_initializer(list(class_name = "glorot_normal", config = list(seed = 4)), "k"),
                   initializer_glorot_normal(seed = 4))
})

test_that("configs survive JSON", {
  skip_if_not_installed("jsonlite")
  for (init in all_initializers()) {
    json <- jsonlite::toJSON(initializer_config(init), auto_unbox = TRUE, null = "null",
                             digits = NA)
    back <- jsonlite::fromJSON(json, simplifyVector = TRUE)
    expect_identical(as_initializer(back, "k"), init)
  }
  # jsonlite's default for NULL is {} (read back as an empty list).
  json <- jsonlite::toJSON(initializer_config(initializer_glorot_uniform()), auto_unbox = TRUE)
  expect_identical(as_initializer(jsonlite::fromJSON(json), "k"), initializer_glorot_uniform())
})

test_that("as_initializer() rejects anything else, naming the argument", {
  err <- "multihead_error_argument"
  for (bad in list(NULL, 1, NA, "foo", "GLOROT_UNIFORM", c("zeros", "ones"), function(s) 0,
                   list(1), regularizer_l1())) {
    expect_error(as_initializer(bad, "kernel_initializer"), "`kernel_initializer`", class = err)
  }
  expect_error(as_initializer("foo", "bias_initializer"),
               "\"glorot_uniform\".*\"he_normal\".*\"orthogonal\"")
  expect_error(as_initializer(list(class_name = "Nope"), "kernel_initializer"),
               "`kernel_initializer\\$class_name`.*GlorotUniform", class = err)
  expect_error(as_initializer(list(class_name = "RandomNormal", config = list(sd = 1)), "ki"),
               "`ki\\$config`.*unknown `sd`", class = err)
  expect_error(as_initializer(list(class_name = "RandomNormal", config = 1), "ki"),
               "`ki\\$config`", class = err)
  expect_error(as_initializer(list(class_name = "Zeros", other = 1), "ki"), "`ki`.*`other`")
  expect_error(as_initializer(list(class_name = "RandomNormal", config = list(stddev = -1)), "ki"),
               "`ki`.*`stddev`", class = err)
  expect_error(initializer_config(list(class_name = "Zeros")), "`init`", class = err)
})

test_that("samples have dim = shape, also for 1-D shapes", {
  for (init in all_initializers()) {
    w <- initializer_sample(init, c(4, 3, 2), 4, 6)
    expect_identical(dim(w), c(4L, 3L, 2L))
    expect_type(w, "double")
  }
  v <- initializer_sample(initializer_glorot_uniform(), 5, 5, 5)
  expect_identical(dim(v), 5L)
  expect_identical(dim(initializer_sample(initializer_zeros(), 3L)), 3L)
})

test_that("constant initializers fill the array", {
  expect_identical(initializer_sample(initializer_zeros(), c(2, 3)), array(0, c(2, 3)))
  expect_identical(initializer_sample(initializer_ones(), 4), array(1, 4))
  expect_identical(initializer_sample(initializer_constant(-0.5), c(2, 2, 2)),
                   array(-0.5, c(2, 2, 2)))
})

test_that("glorot uniform: within the limit, uniform variance, fan_avg", {
  set.seed(101)
  # The caller's fans (20, 40), not the shape, decide the limit.
  limit <- sqrt(6 / (20 + 40))
  w <- initializer_sample(initializer_glorot_uniform(), c(200, 250), fan_in = 20, fan_out = 40)
  expect_true(all(abs(w) <= limit))
  expect_gt(max(abs(w)), 0.99 * limit)
  expect_equal(var(as.vector(w)), limit^2 / 3, tolerance = 0.02)
  expect_equal(mean(w), 0, tolerance = 0.01 * limit)
})

test_that("he and lecun uniform use fan_in with scales 2 and 1", {
  set.seed(102)
  w <- initializer_sample(initializer_he_uniform(), c(300, 200), fan_in = 12, fan_out = 1000)
  limit <- sqrt(6 / 12)
  expect_true(all(abs(w) <= limit))
  expect_gt(max(abs(w)), 0.99 * limit)
  expect_equal(var(as.vector(w)), 2 / 12, tolerance = 0.02)
  w <- initializer_sample(initializer_lecun_uniform(), c(300, 200), fan_in = 12, fan_out = 1000)
  limit <- sqrt(3 / 12)
  expect_true(all(abs(w) <= limit))
  expect_gt(max(abs(w)), 0.99 * limit)
  expect_equal(var(as.vector(w)), 1 / 12, tolerance = 0.02)
})

test_that("normal variance-scaling variants: truncated at 2 sd, sd sqrt(scale / n)", {
  set.seed(103)
  cases <- list(
    list(init = initializer_glorot_normal(), sd = sqrt(1 / 30)),   # fan_avg (20 + 40) / 2
    list(init = initializer_he_normal(), sd = sqrt(2 / 20)),
    list(init = initializer_lecun_normal(), sd = sqrt(1 / 20))
  )
  for (case in cases) {
    w <- initializer_sample(case$init, c(300, 200), fan_in = 20, fan_out = 40)
    untruncated_sd <- case$sd / 0.87962566103423978
    expect_true(all(abs(w) <= 2 * untruncated_sd))
    expect_gt(max(abs(w)), 1.95 * untruncated_sd)
    expect_equal(sd(as.vector(w)), case$sd, tolerance = 0.01)
    expect_equal(mean(w), 0, tolerance = 0.01 * case$sd)
  }
})

test_that("fans below 1 count as 1, and missing fans follow Keras's compute_fans", {
  set.seed(104)
  w <- initializer_sample(initializer_he_uniform(), c(100, 100), fan_in = 0, fan_out = 0)
  expect_true(all(abs(w) <= sqrt(6)))
  expect_gt(max(abs(w)), 0.99 * sqrt(6))
  expect_identical(initializer_fans(c(20, 30)), c(20, 30))
  expect_identical(initializer_fans(7), c(7, 7))
  expect_identical(initializer_fans(c(3, 3, 4, 8)), c(36, 72))   # conv: field 9
  w <- initializer_sample(initializer_glorot_uniform(), c(400, 100))
  limit <- sqrt(6 / 500)
  expect_true(all(abs(w) <= limit))
  expect_gt(max(abs(w)), 0.99 * limit)
  w <- initializer_sample(initializer_he_uniform(), c(40, 50), fan_in = NULL, fan_out = 5)
  expect_gt(max(abs(w)), 0.99 * sqrt(6 / 40))
})

test_that("random normal, random uniform and truncated normal draw their distributions", {
  set.seed(105)
  w <- initializer_sample(initializer_random_normal(mean = 1, stddev = 2), c(200, 200))
  expect_equal(mean(w), 1, tolerance = 0.02)
  expect_equal(sd(as.vector(w)), 2, tolerance = 0.01)
  expect_gt(max(abs(w - 1)), 4 * 2)   # not truncated
  w <- initializer_sample(initializer_random_uniform(minval = 2, maxval = 5), c(200, 200))
  expect_true(all(w >= 2 & w < 5))
  expect_equal(mean(w), 3.5, tolerance = 0.005)
  expect_equal(var(as.vector(w)), 9 / 12, tolerance = 0.02)
  w <- initializer_sample(initializer_truncated_normal(mean = -1, stddev = 0.5), c(200, 200))
  expect_true(all(w >= -1 - 2 * 0.5 & w <= -1 + 2 * 0.5))
  expect_gt(max(w), -1 + 0.98)
  expect_lt(min(w), -1 - 0.98)
  expect_equal(sd(as.vector(w)), 0.87962566103423978 * 0.5, tolerance = 0.01)
  expect_equal(mean(w), -1, tolerance = 0.01)
})

test_that("orthogonal: orthonormal columns (tall) or rows (wide), times gain", {
  tall <- initializer_sample(initializer_orthogonal(seed = 1), c(6, 4))
  expect_equal(crossprod(tall), diag(4), tolerance = 1e-12)
  wide <- initializer_sample(initializer_orthogonal(seed = 1), c(3, 7))
  expect_equal(tcrossprod(wide), diag(3), tolerance = 1e-12)
  square <- initializer_sample(initializer_orthogonal(gain = 2, seed = 2), c(5, 5))
  expect_equal(crossprod(square), 4 * diag(5), tolerance = 1e-12)
  expect_equal(tcrossprod(square), 4 * diag(5), tolerance = 1e-12)
  # Rank 3: the last axis is the columns of a (3 * 4, 5) matrix.
  k <- initializer_sample(initializer_orthogonal(seed = 3), c(3, 4, 5))
  m <- matrix(k, ncol = 5)
  expect_equal(crossprod(m), diag(5), tolerance = 1e-12)
  # A draw is not a signed permutation of the identity.
  expect_gt(sum(abs(tall) > 1e-3), 8)
  expect_error(initializer_sample(initializer_orthogonal(), 5), "`shape`",
               class = "multihead_error_argument")
})

test_that("an unseeded draw uses R's RNG, so set.seed() reproduces it", {
  for (init in all_initializers()) {
    if (!"seed" %in% names(init$config)) next
    init$config["seed"] <- list(NULL)
    set.seed(11)
    a <- initializer_sample(init, c(5, 4), 5, 4)
    set.seed(11)
    b <- initializer_sample(init, c(5, 4), 5, 4)
    c <- initializer_sample(init, c(5, 4), 5, 4)
    expect_identical(a, b)
    expect_false(identical(b, c))
  }
  set.seed(12)
  ref <- stats::runif(6, -sqrt(6 / 5), sqrt(6 / 5))
  set.seed(12)
  expect_equal(as.vector(initializer_sample(initializer_glorot_uniform(), c(2, 3), 2, 3)),
               ref, tolerance = 1e-14)
})

test_that("a seeded draw is deterministic and leaves .Random.seed untouched", {
  for (init in all_initializers()) {
    if (is.null(init$config$seed)) next
    set.seed(1)
    before <- .Random.seed
    a <- initializer_sample(init, c(6, 5), 6, 5)
    expect_identical(.Random.seed, before)
    set.seed(2)
    b <- initializer_sample(init, c(6, 5), 6, 5)
    expect_identical(a, b)
    after <- stats::runif(3)
    set.seed(2)
    expect_identical(stats::runif(3), after)     # the stream went on as if untouched
  }
})

test_that("a seeded draw does not create .Random.seed when there was none", {
  old <- if (exists(".Random.seed", globalenv())) get(".Random.seed", globalenv())
  on.exit(if (!is.null(old)) assign(".Random.seed", old, envir = globalenv()))
  kind <- RNGkind()
  rm(".Random.seed", envir = globalenv())
  w <- initializer_sample(initializer_he_normal(seed = 9), c(3, 3), 3, 3)
  expect_false(exists(".Random.seed", globalenv()))
  expect_identical(RNGkind(), kind)
  expect_identical(w, initializer_sample(initializer_he_normal(seed = 9), c(3, 3), 3, 3))
})

test_that("salt and seed change the draw; salt 0 is the plain seed", {
  init <- initializer_glorot_uniform(seed = 42)
  draws <- lapply(0:3, function(s) initializer_sample(init, c(4, 4), 4, 4, salt = s))
  for (i in 1:3) for (j in (i + 1):4) expect_false(isTRUE(all.equal(draws[[i]], draws[[j]])))
  expect_identical(initializer_sample(init, c(4, 4), 4, 4, salt = 2), draws[[3]])
  other <- initializer_sample(initializer_glorot_uniform(seed = 43), c(4, 4), 4, 4)
  expect_false(isTRUE(all.equal(other, draws[[1]])))
  old <- if (exists(".Random.seed", globalenv())) get(".Random.seed", globalenv())
  set.seed(42)
  ref <- stats::runif(16, -sqrt(6 / 8), sqrt(6 / 8))
  if (!is.null(old)) assign(".Random.seed", old, envir = globalenv())
  expect_equal(as.vector(draws[[1]]), ref, tolerance = 1e-14)
  expect_identical(derive_seed(5L, 0L), 5L)
  expect_true(all(!duplicated(vapply(0:50, function(s) derive_seed(-7L, s), 1L))))
  expect_true(all(abs(vapply(0:5, function(s) derive_seed(.Machine$integer.max, s), 1L)) <=
                    .Machine$integer.max))
})

test_that("initializer_sample() validates its arguments", {
  err <- "multihead_error_argument"
  init <- initializer_glorot_uniform()
  expect_error(initializer_sample("glorot_uniform", c(2, 2), 2, 2), "`init`", class = err)
  expect_error(initializer_sample(init, c(2, -1), 2, 2), "`shape`", class = err)
  expect_error(initializer_sample(init, c(2, NA), 2, 2), "`shape`", class = err)
  expect_error(initializer_sample(init, "2", 2, 2), "`shape`", class = err)
  expect_error(initializer_sample(init, numeric(0), 2, 2), "`shape`", class = err)
  expect_error(initializer_sample(init, c(2, 2), -1, 2), "`fan_in`", class = err)
  expect_error(initializer_sample(init, c(2, 2), 2, NA), "`fan_out`", class = err)
  expect_error(initializer_sample(init, c(2, 2), "2", 2), "`fan_in`", class = err)
  expect_error(initializer_sample(init, c(2, 2), 2, 2, salt = -1), "`salt`", class = err)
  expect_error(initializer_sample(init, c(2, 2), 2, 2, salt = 0.5), "`salt`", class = err)
})
