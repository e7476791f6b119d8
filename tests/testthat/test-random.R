# random_*(): distributions, seeds (integer, generator, global), R's RNG
# stream left alone, set_random_seed(), graph ops that draw anew on every
# run, gradients of random_dropout() and random_shuffle(), bad input.

# Runs `fn` while a custom layer's call() would be traced, on placeholders
# shaped like `inputs`; returns the graph (run it with run_graph_forward()).
trace_graph <- function(fn, inputs = list(x = array(0, c(2, 3)))) {
  ph <- lapply(seq_along(inputs), function(i) {
    multihead:::new_placeholder_tensor(multihead:::value_shape(inputs[[i]]),
                                       if (is.integer(inputs[[i]])) "int32" else "float64", paste0("in", i))
  })
  out <- multihead:::with_trace_frame(do.call(fn, ph))
  graph <- multihead:::build_graph(unname(ph), list(out))
  list(graph = graph, symbolic = out,
       run = function() multihead:::run_graph_forward(graph, unname(inputs))$outputs[[1L]])
}

test_that("random_uniform(): range, moments, shape and dtype", {
  x <- random_uniform(c(200, 500), minval = -2, maxval = 3, seed = 1)
  expect_identical(dim(x), c(200L, 500L))
  expect_true(is.double(x))
  expect_true(all(x >= -2 & x < 3))
  expect_equal(mean(x), 0.5, tolerance = 0.01)
  expect_equal(var(as.vector(x)), 25 / 12, tolerance = 0.01)
  # quantiles of a uniform
  expect_equal(unname(quantile(x, c(0.1, 0.5, 0.9))), c(-1.5, 0.5, 2.5), tolerance = 0.01)
  expect_length(random_uniform(integer(), seed = 1), 1L)
  expect_null(dim(random_uniform(integer(), seed = 1)))
  expect_identical(dim(random_uniform(4, seed = 1)), 4L)
  expect_identical(dim(random_uniform(c(2, 0, 3), seed = 1)), c(2L, 0L, 3L))
  expect_identical(dim(random_uniform(list(2, 3), seed = 1)), c(2L, 3L))
  expect_true(all(random_uniform(10, minval = 4, maxval = 4, seed = 1) == 4))
})

test_that("random_normal() and random_truncated_normal(): moments and truncation", {
  z <- random_normal(c(1000, 100), mean = 3, stddev = 2, seed = 2)
  expect_equal(mean(z), 3, tolerance = 0.01)
  expect_equal(sd(as.vector(z)), 2, tolerance = 0.01)
  expect_equal(mean(abs(z - 3) > 4), 2 * pnorm(-2), tolerance = 0.05)   # tails are there
  t <- random_truncated_normal(c(1000, 100), mean = -1, stddev = 0.5, seed = 2)
  expect_true(all(abs(t + 1) <= 1))
  expect_equal(mean(t), -1, tolerance = 0.01)
  # the sd of a standard normal truncated to [-2, 2]
  sd_trunc <- sqrt(1 - 2 * 2 * dnorm(2) / (pnorm(2) - pnorm(-2)))
  expect_equal(sd(as.vector(t)), 0.5 * sd_trunc, tolerance = 0.01)
  expect_true(mean(abs(t + 1) > 0.9) > 0)
  expect_true(all(random_normal(5, mean = 1, stddev = 0, seed = 1) == 1))
})

test_that("random_integer(): [minval, maxval), every value equally likely", {
  k <- random_integer(c(600, 100), minval = -2, maxval = 4, seed = 3)
  expect_true(is.integer(k))
  expect_identical(dim(k), c(600L, 100L))
  expect_setequal(unique(as.vector(k)), -2:3)                        # maxval excluded
  expect_equal(as.vector(table(k)) / length(k), rep(1 / 6, 6), tolerance = 0.03)
  # keras3 rounds a fractional maxval up
  expect_setequal(unique(as.vector(random_integer(1000, 0, 2.5, seed = 1))), 0:2)
  big <- random_integer(1000, minval = -.Machine$integer.max, maxval = 2^31, seed = 1)
  expect_true(is.integer(big) && !anyNA(big))
  expect_true(any(big < 0) && any(big > 0))
  expect_identical(typeof(random_integer(3, 0, 5, dtype = "int64", seed = 1)), "integer")
})

test_that("random_categorical(): frequencies follow softmax(logits); 1-based unless zero_indexed", {
  p <- rbind(c(0.6, 0.3, 0.1, 0), c(0.25, 0.25, 0.25, 0.25))
  logits <- log(p)                                   # -Inf: never drawn
  s <- random_categorical(logits, num_samples = 20000, seed = 4)
  expect_true(is.integer(s))
  expect_identical(dim(s), c(2L, 20000L))
  expect_true(all(s %in% 1:4))
  expect_false(any(s[1, ] == 4))
  f1 <- tabulate(s[1, ], 4) / 20000
  f2 <- tabulate(s[2, ], 4) / 20000
  expect_equal(f1, p[1, ], tolerance = 0.03)
  expect_equal(f2, p[2, ], tolerance = 0.05)
  # shift invariance of logits and the zero-based indices
  s0 <- random_categorical(logits + 5, num_samples = 20000, seed = 4, zero_indexed = TRUE)
  expect_identical(s0, s - 1L)
  # unnormalised logits: softmax
  lg <- matrix(c(1, 2, 3), 1)
  f <- tabulate(random_categorical(lg, 30000, seed = 9), 3) / 30000
  expect_equal(f, exp(1:3) / sum(exp(1:3)), tolerance = 0.03)
  expect_identical(dim(random_categorical(matrix(0, 3, 2), 0, seed = 1)), c(3L, 0L))
  # one class with all the mass
  expect_true(all(random_categorical(matrix(c(0, -Inf, -Inf), 1), 50, seed = 1) == 1L))
  # many (row, sample) pairs, or many classes, run in blocks
  big <- matrix(rep(c(0, 50), each = 3000), 3000)
  expect_true(all(random_categorical(big, 2000, seed = 1) == 2L))
  wide <- matrix(-Inf, 2, 2^20)
  wide[1, 7] <- 0; wide[2, c(3, 2^20)] <- 0
  w <- random_categorical(wide, 5, seed = 1)                  # 4 pairs per block of 2^22 values
  expect_true(all(w[1, ] == 7L) && all(w[2, ] %in% c(3L, 2^20)))
})

test_that("random_shuffle(): a permutation of the slices along `axis`", {
  x <- array(1:60, c(5, 4, 3))
  y <- random_shuffle(x, seed = 5)                       # axis 1 by default
  expect_identical(dim(y), dim(x))
  perm <- y[, 1, 1]
  expect_setequal(perm, 1:5)
  expect_identical(y, x[perm, , , drop = FALSE])
  y2 <- random_shuffle(x, axis = -1, seed = 5)
  p2 <- (y2[1, 1, ] - 1) %/% 20 + 1
  expect_identical(y2, x[, , p2, drop = FALSE])
  y3 <- random_shuffle(x, axis = 2, seed = 6)
  p3 <- (y3[1, , 1] - 1) %/% 5 + 1
  expect_setequal(p3, 1:4)
  expect_identical(y3, x[, p3, , drop = FALSE])
  v <- random_shuffle(as.double(1:10), seed = 1)
  expect_setequal(as.vector(v), 1:10)
  # every permutation of 3 appears, about equally often
  perms <- vapply(1:3000, function(i) paste(random_shuffle(1:3, seed = i), collapse = ""), "")
  expect_length(unique(perms), 6L)
  expect_equal(as.vector(table(perms)) / 3000, rep(1 / 6, 6), tolerance = 0.1)
})

test_that("random_dropout(): drops about `rate`, rescales the rest, shares along noise_shape", {
  x <- array(rnorm(200 * 50), c(200, 50))
  y <- random_dropout(x, rate = 0.3, seed = 7)
  kept <- y != 0
  expect_equal(mean(!kept), 0.3, tolerance = 0.03)
  expect_equal(y[kept], x[kept] / 0.7)
  expect_identical(dim(y), dim(x))
  expect_identical(random_dropout(x, rate = 0, seed = 1), x)
  ones <- array(1, c(4, 30, 8))
  z <- random_dropout(ones, 0.5, noise_shape = c(NA, 1, NA), seed = 11)
  for (t in 2:30) expect_identical(z[, t, ], z[, 1, ])
  expect_true(any(z == 0) && any(z == 2))
  z2 <- random_dropout(ones, 0.5, noise_shape = list(NULL, 30, 1), seed = 11)
  for (f in 2:8) expect_identical(z2[, , f], z2[, , 1])
  # an infinite input that is dropped is 0, not NaN
  inf <- random_dropout(rep(Inf, 100), 0.5, seed = 1)
  expect_false(anyNA(inf))
  expect_true(all(inf == 0 | inf == Inf))
})

test_that("random_gamma(), random_beta(), random_binomial(): moments, broadcast parameters", {
  g <- random_gamma(c(400, 250), alpha = 3, seed = 1)
  expect_identical(dim(g), c(400L, 250L))
  expect_true(all(g > 0))
  expect_equal(mean(g), 3, tolerance = 0.01)                  # shape alpha, scale 1
  expect_equal(var(as.vector(g)), 3, tolerance = 0.03)
  b <- random_beta(1e5, alpha = 2, beta = 5, seed = 2)
  expect_true(all(b > 0 & b < 1))
  expect_equal(mean(b), 2 / 7, tolerance = 0.01)
  expect_equal(var(as.vector(b)), 2 * 5 / (7^2 * 8), tolerance = 0.03)
  k <- random_binomial(1e5, counts = 10, probabilities = 0.3, seed = 3)
  expect_true(is.double(k))
  expect_true(all(k == round(k) & k >= 0 & k <= 10))
  expect_equal(mean(k), 3, tolerance = 0.01)
  expect_equal(var(as.vector(k)), 2.1, tolerance = 0.03)
  # parameters broadcast along the last axis, as NumPy
  kb <- random_binomial(c(5000, 3), counts = c(0, 10, 10), probabilities = c(0.5, 0, 1), seed = 4)
  expect_true(all(kb[, 1] == 0) && all(kb[, 2] == 0) && all(kb[, 3] == 10))
  bb <- random_beta(c(20000, 2), alpha = c(1, 10), beta = 1, seed = 5)
  expect_equal(colMeans(bb), c(1 / 2, 10 / 11), tolerance = 0.01)
  gg <- random_gamma(c(2, 20000), alpha = array(c(1, 5), c(2, 1)), seed = 6)
  expect_equal(rowMeans(gg), c(1, 5), tolerance = 0.02)
  # seeds, graph runs and R's stream, as the other draws
  expect_identical(random_gamma(3, 2, seed = 9), random_gamma(3, 2, seed = 9))
  gen <- random_seed_generator(9)
  expect_identical(random_gamma(3, 2, seed = gen), random_gamma(3, 2, seed = 9))
  expect_false(identical(random_gamma(3, 2, seed = gen), random_gamma(3, 2, seed = 9)))
  set.seed(1); r <- runif(2)
  set.seed(1); random_beta(5, 1, 2, seed = 1); random_binomial(5, 3, 0.5, seed = gen)
  expect_identical(runif(2), r)
  tr <- trace_graph(function(x) x + random_binomial(c(2, 3), 100, 0.5))
  expect_false(identical(tr$run(), tr$run()))
  expect_identical(multihead:::with_trace_frame(random_beta(c(2, 3), 1, 1, dtype = "float64"))$dtype, "float64")
  # a symbolic shape: parameters broadcast when the graph runs
  tr <- trace_graph(function(s) random_binomial(s, counts = c(0, 5), probabilities = 1, seed = 1),
                    list(s = c(3L, 2L)))
  expect_identical(tr$run(), array(rep(c(0, 5), each = 3), c(3, 2)))
  bad <- trace_graph(function(s) random_binomial(s, counts = c(0, 5), probabilities = 1, seed = 1),
                     list(s = c(2L, 3L)))
  expect_arg_error(bad$run(), "counts")
})

test_that("an integer seed repeats; a generator advances; its first draw is the integer seed's", {
  expect_identical(random_normal(c(3, 3), seed = 10), random_normal(c(3, 3), seed = 10))
  expect_false(identical(random_normal(c(3, 3), seed = 10), random_normal(c(3, 3), seed = 11)))
  g <- random_seed_generator(seed = 10)
  expect_identical(g$counter, 0)
  a <- random_normal(c(3, 3), seed = g)
  b <- random_normal(c(3, 3), seed = g)
  expect_identical(a, random_normal(c(3, 3), seed = 10))
  expect_false(identical(a, b))
  expect_identical(g$counter, 2)
  expect_identical(g$state, c(10L, 2))
  h <- random_seed_generator(seed = 10)
  expect_identical(list(random_normal(c(3, 3), seed = h), random_normal(c(3, 3), seed = h)), list(a, b))
  # every random function advances the generator and repeats with an integer seed
  fns <- list(function(s) random_uniform(4, seed = s), function(s) random_truncated_normal(4, seed = s),
              function(s) random_integer(4, 0, 1000, seed = s),
              function(s) random_categorical(matrix(0, 2, 50), 3, seed = s),
              function(s) random_shuffle(1:20, seed = s), function(s) random_dropout(rep(1, 40), 0.5, seed = s))
  for (f in fns) {
    expect_identical(f(3), f(3))
    g <- random_seed_generator(3)
    first <- f(g)
    expect_identical(first, f(3))
    expect_false(identical(first, f(g)))
    expect_identical(g$counter, 2)
  }
  # distinct generators give distinct streams
  expect_false(identical(random_uniform(5, seed = random_seed_generator(1)),
                         random_uniform(5, seed = random_seed_generator(2))))
})

test_that("seeded draws leave R's random stream alone, and do not depend on RNGkind()", {
  set.seed(123)
  ref <- c(runif(2), rnorm(2), sample.int(10, 2))
  set.seed(123)
  g <- random_seed_generator(5)
  random_uniform(10, seed = 1)
  a <- runif(2)
  random_normal(c(4, 4), seed = g)
  random_truncated_normal(10, seed = 3)
  b <- rnorm(2)
  random_integer(5, 0, 9, seed = g)
  random_categorical(matrix(0, 3, 3), 4, seed = 2)
  random_shuffle(1:9, seed = g)
  random_dropout(rep(1, 9), 0.5, seed = g)
  c3 <- sample.int(10, 2)
  expect_identical(c(a, b, c3), ref)
  # another RNG kind: the kind stays, the stream is not disturbed, the values are the same
  old_kind <- RNGkind()
  on.exit(do.call(RNGkind, as.list(old_kind)), add = TRUE)
  v_default <- random_normal(6, seed = 8)
  suppressWarnings(RNGkind("L'Ecuyer-CMRG", "Box-Muller", "Rounding"))
  set.seed(5)
  r1 <- runif(3)
  set.seed(5)
  v_other <- random_normal(6, seed = 8)
  expect_identical(runif(3), r1)
  expect_identical(v_other, v_default)
  expect_identical(RNGkind(), c("L'Ecuyer-CMRG", "Box-Muller", "Rounding"))
  do.call(RNGkind, as.list(old_kind))
  # no .Random.seed yet: none afterwards either
  if (exists(".Random.seed", globalenv())) {
    saved <- get(".Random.seed", globalenv())
    on.exit(assign(".Random.seed", saved, globalenv()), add = TRUE)
    rm(".Random.seed", envir = globalenv())
  }
  random_uniform(3, seed = 1)
  expect_false(exists(".Random.seed", globalenv()))
  expect_identical(RNGkind(), old_kind)
})

test_that("seed = NULL uses the global generator; set_random_seed() reproduces a whole sequence", {
  run <- function() {
    x <- random_normal(3)
    y <- random_uniform(c(2, 2))
    g <- random_seed_generator()                     # its seed comes from R's RNG
    z <- random_integer(4, 0, 100, seed = g)
    r <- runif(2)                                     # R's own stream
    d <- layer_dense(units = 2, dtype = "float64")    # weights drawn from R's RNG
    d(array(1, c(1, 3)))
    list(x, y, z, r, get_weights(d), random_dropout(rep(1, 20), 0.5))
  }
  set_random_seed(42)
  first <- run()
  set_random_seed(42)
  expect_identical(run(), first)
  # different draws on each call with seed = NULL
  expect_false(identical(random_normal(5), random_normal(5)))
  set_random_seed(43)
  expect_false(identical(run()[[1]], first[[1]]))
  # set_random_seed() also sets R's seed, as set.seed() does
  set_random_seed(7)
  a <- runif(3)
  set.seed(7)
  expect_identical(runif(3), a)
  # NULL-seed draws leave R's stream alone once the global generator exists
  set_random_seed(7)
  random_normal(10)
  expect_identical(runif(3), a)
})

test_that("seed generators: printing, fields, saveRDS() of an object holding one", {
  g <- random_seed_generator(seed = 99, name = "my_gen")
  expect_match(format(g), "SeedGenerator name=my_gen seed=99 counter=0", fixed = TRUE)
  expect_output(print(g), "SeedGenerator")
  expect_identical(g$seed, 99L)
  expect_identical(g$name, "my_gen")
  expect_identical(g$get_config(), list(seed = 99L, name = "my_gen"))
  expect_identical(g$`next`(), c(99, 0))
  expect_identical(g$counter, 1)
  expect_error(g$nothing, "no field", class = "multihead_error")
  expect_identical(random_seed_generator(1, backend = "jax")$seed, 1L)
  set.seed(3); s1 <- random_seed_generator()$seed
  set.seed(3); s2 <- random_seed_generator()$seed
  expect_identical(s1, s2)
  # a layer-like environment holding a generator survives saveRDS()
  holder <- new.env()
  holder$seed_generator <- g
  random_uniform(2, seed = g)
  f <- tempfile(fileext = ".rds")
  saveRDS(holder, f)
  back <- readRDS(f)
  expect_identical(back$seed_generator$counter, g$counter)
  expect_identical(random_uniform(4, seed = back$seed_generator), random_uniform(4, seed = g))
  expect_identical(back$seed_generator$counter, g$counter)
})

test_that("op params with seed generators go to plain-data configs and back", {
  g <- random_seed_generator(8, name = "g8")
  random_uniform(2, seed = g)
  params <- list(rate = 0.5, noise_shape = NULL, seed = g)
  cfg <- multihead:::random_params_to_config(params)
  expect_null(multihead:::first_non_plain(cfg))
  expect_identical(unclass(cfg$seed), list(seed = 8L, counter = 1, name = "g8"))
  expect_identical(cfg$rate, 0.5)
  back <- multihead:::random_params_from_config(cfg)
  expect_true(multihead:::is_seed_generator(back$seed))
  expect_false(identical(back$seed, g))                     # a new generator with the same state
  expect_identical(random_uniform(3, seed = back$seed), random_uniform(3, seed = g))
  expect_identical(multihead:::random_params_to_config(list(seed = 3L)), list(seed = 3L))
  expect_identical(multihead:::random_params_from_config(list(seed = NULL, a = 1)), list(seed = NULL, a = 1))
})

test_that("traced random ops are graph nodes drawing anew on every run", {
  # no tensor operand: recorded because a trace is active
  tr <- trace_graph(function(x) x + random_normal(c(2, 3)))
  expect_true(multihead:::is_symbolic(tr$symbolic))
  a <- tr$run(); b <- tr$run()
  expect_false(identical(a, b))
  # a generator advances once per run; runs replay from its seed
  g <- random_seed_generator(21)
  tr <- trace_graph(function(x) x * 0 + random_uniform(c(2, 3), seed = g))
  expect_identical(g$counter, 0)
  r1 <- tr$run(); r2 <- tr$run()
  expect_identical(g$counter, 2)
  expect_false(identical(r1, r2))
  expect_equal(r1, random_uniform(c(2, 3), seed = 21), tolerance = 1e-6)   # float32 in the graph
  # an integer seed repeats
  tr <- trace_graph(function(x) x + random_truncated_normal(c(2, 3), seed = 4))
  expect_identical(tr$run(), tr$run())
  # every function records while tracing, even on constant operands
  g <- random_seed_generator(3)
  graphs <- list(
    trace_graph(function(x) op_add(x, 0) + random_integer(c(2, 3), 0, 1000, seed = g)),
    trace_graph(function(x) op_add(x, 0) + random_categorical(matrix(0, 2, 100), 3, seed = g)),
    trace_graph(function(x) op_add(x, 0) + random_shuffle(array(1:6, c(2, 3)), seed = g)),
    trace_graph(function(x) op_add(x, 0) + random_dropout(array(1, c(2, 3)), 0.5, seed = g))
  )
  for (tg in graphs) {
    runs <- lapply(1:4, function(i) tg$run())
    expect_gt(length(unique(runs)), 1L)
  }
  # outside a trace, on arrays: an array
  expect_false(multihead:::is_symbolic(random_normal(2)))
})

test_that("symbolic operands: shapes, dtypes, and runs equal to eager draws", {
  x <- keras_input(shape = c(3, 4))
  expect_identical(random_dropout(x, 0.5)$shape, c(NA, 3L, 4L))
  expect_identical(random_dropout(x, 0.5)$dtype, "float32")
  expect_identical(random_shuffle(x, axis = 2)$shape, c(NA, 3L, 4L))
  l <- keras_input(shape = 5)
  expect_identical(random_categorical(l, 7)$shape, c(NA, 7L))
  expect_identical(random_categorical(l, 7, dtype = "int64")$dtype, "int64")
  ids <- keras_input(shape = 5, dtype = "int32")
  expect_identical(random_shuffle(ids)$dtype, "int32")
  # graph runs with an integer seed equal the eager results
  set.seed(1)
  xv <- array(rnorm(24), c(2, 3, 4))
  expect_equal(graph_run_op(function(x) random_dropout(x, 0.4, seed = 3), list(x = xv))$output,
               random_dropout(xv, 0.4, seed = 3))
  expect_equal(graph_run_op(function(x) random_dropout(x, 0.4, noise_shape = c(NA, 1, NA), seed = 3),
                            list(x = xv))$output,
               random_dropout(xv, 0.4, noise_shape = c(NA, 1, NA), seed = 3))
  expect_equal(graph_run_op(function(x) random_shuffle(x, axis = 3, seed = 3), list(x = xv))$output,
               random_shuffle(xv, axis = 3, seed = 3))
  lv <- matrix(rnorm(10), 2)
  expect_identical(graph_run_op(function(x) random_categorical(x, 6, seed = 2), list(x = lv))$output,
                   random_categorical(lv, 6, seed = 2))
  # the global generator: each run of the same graph draws anew
  r <- graph_run_op(function(x) random_dropout(x, 0.5), list(x = array(1, c(10, 10))))
  again <- multihead:::run_graph_forward(r$graph, list(array(1, c(10, 10))))$outputs[[1L]]
  expect_false(identical(r$output, again))
  # a symbolic shape: sizes known when the graph runs
  tr <- trace_graph(function(s) random_normal(s, seed = 1), list(s = c(3L, 4L)))
  expect_identical(tr$symbolic$shape, c(NA_integer_, NA_integer_))
  expect_identical(dim(tr$run()), c(3L, 4L))
  expect_equal(tr$run(), random_normal(c(3, 4), seed = 1), tolerance = 1e-6)
})

test_that("gradients: dropout's mask over (1 - rate), shuffle's permutation, none into draws", {
  set.seed(2)
  check_op_gradient(function(x) random_dropout(x, 0.3, seed = 1), list(x = array(rnorm(12), c(3, 4))))
  check_op_gradient(function(x) random_dropout(x, 0.5, noise_shape = c(1, NA, 2), seed = 5),
                    list(x = array(rnorm(24), c(3, 4, 2))))
  check_op_gradient(function(x) random_shuffle(x, axis = 2, seed = 1), list(x = array(rnorm(12), c(3, 4))))
  check_op_gradient(function(x) random_shuffle(x, seed = 2), list(x = rnorm(6)))
  # the dropout gradient is the same mask times 1 / (1 - rate)
  xv <- array(rnorm(40), c(4, 10))
  r <- graph_run_op(function(x) random_dropout(x, 0.25, seed = 9), list(x = xv))
  w <- array(rnorm(40), c(4, 10))
  g <- multihead:::run_graph_backward(r$graph, r$run, list(w))$inputs[[1L]]
  expect_equal(g, w * (r$output != 0) / 0.75)
  # a draw added inside a trace passes the gradient to the other operand only
  check_op_gradient(function(x) multihead:::with_trace_frame(x * random_normal(c(2, 3), seed = 3) +
                                                               random_uniform(c(2, 3), seed = 4)),
                    list(x = array(rnorm(6), c(2, 3))))
})

test_that("bad input: clear errors naming the argument", {
  for (f in list(random_uniform, random_normal, random_truncated_normal)) {
    expect_arg_error(f(), "shape")
    expect_arg_error(f(c(2, NA)), "shape")
    expect_arg_error(f(c(2, -1)), "shape")
    expect_arg_error(f(2.5), "shape")
    expect_arg_error(f("a"), "shape")
    expect_arg_error(f(NULL), "shape")
    expect_arg_error(f(matrix(1:4, 2)), "shape")
    expect_arg_error(f(c(2^20, 2^20)), "shape")
    expect_arg_error(f(2, seed = "a"), "seed")
    expect_arg_error(f(2, seed = 1.5), "seed")
    expect_arg_error(f(2, seed = NA), "seed")
    expect_arg_error(f(2, seed = c(1, 2)), "seed")
    expect_arg_error(f(2, seed = 2^40), "seed")
    expect_arg_error(f(2, seed = list()), "seed")
    expect_arg_error(f(2, dtype = "int32"), "dtype")
    expect_arg_error(f(2, dtype = "float16"), "dtype")
    expect_arg_error(f(2, dtype = NA), "dtype")
  }
  expect_arg_error(random_uniform(2, minval = NA), "minval")
  expect_arg_error(random_uniform(2, maxval = Inf), "maxval")
  expect_arg_error(random_uniform(2, minval = 2, maxval = 1), "maxval")
  expect_arg_error(random_uniform(2, minval = c(0, 1)), "minval")
  expect_arg_error(random_normal(2, stddev = -1), "stddev")
  expect_arg_error(random_normal(2, mean = "a"), "mean")
  expect_arg_error(random_truncated_normal(2, stddev = NaN), "stddev")
  expect_arg_error(random_integer(2, maxval = 3), "minval")
  expect_arg_error(random_integer(2, 0), "maxval")
  expect_arg_error(random_integer(2, 0.5, 3), "minval")
  expect_arg_error(random_integer(2, 3, 3), "maxval")
  expect_arg_error(random_integer(2, 0, 2^32), "maxval")
  expect_arg_error(random_integer(2, 0, 3, dtype = "float32"), "dtype")
  expect_arg_error(random_categorical(num_samples = 2), "logits")
  expect_arg_error(random_categorical(matrix(0, 2, 2)), "num_samples")
  expect_arg_error(random_categorical(matrix(0, 2, 2), -1), "num_samples")
  expect_arg_error(random_categorical(matrix(0, 2, 2), 1.5), "num_samples")
  expect_arg_error(random_categorical(1:3, 2), "logits")
  expect_arg_error(random_categorical(array(0, c(2, 2, 2)), 2), "logits")
  expect_arg_error(random_categorical(matrix(0, 2, 0), 2), "logits")
  expect_arg_error(random_categorical(matrix(c(0, NaN), 1), 2), "logits")
  expect_arg_error(random_categorical(matrix(c(0, NA), 1), 2), "logits")
  expect_arg_error(random_categorical(matrix(c(0, Inf), 1), 2), "logits")
  expect_arg_error(random_categorical(matrix(c(-Inf, -Inf), 1), 2), "logits")
  expect_arg_error(random_categorical(matrix(TRUE, 2, 2), 2), "logits")
  expect_arg_error(random_categorical(matrix(0, 2, 2), 2, dtype = "float32"), "dtype")
  expect_arg_error(random_categorical(matrix(0, 2, 2), 2, zero_indexed = NA), "zero_indexed")
  expect_arg_error(random_categorical("a", 2), "logits")
  expect_arg_error(random_shuffle(), "x")
  expect_arg_error(random_shuffle(1:3, axis = 2), "axis")
  expect_arg_error(random_shuffle(1:3, axis = 0), "axis")
  expect_arg_error(random_shuffle(1:3, axis = c(1, 1)), "axis")
  expect_arg_error(random_shuffle(1:3, axis = "a"), "axis")
  expect_arg_error(random_shuffle(5, seed = 1), "x")
  expect_arg_error(random_shuffle(list(1, 2)), "x")
  expect_arg_error(random_shuffle(c(1, NA)), "x")
  expect_arg_error(random_dropout(rate = 0.5), "inputs")
  expect_arg_error(random_dropout(array(1, c(2, 2))), "rate")
  expect_arg_error(random_dropout(array(1, c(2, 2)), 1), "rate")
  expect_arg_error(random_dropout(array(1, c(2, 2)), -0.1), "rate")
  expect_arg_error(random_dropout(array(1, c(2, 2)), NA), "rate")
  expect_arg_error(random_dropout(array(1, c(2, 2)), c(0.1, 0.2)), "rate")
  expect_arg_error(random_dropout(array(1L, c(2, 2)), 0.5), "inputs")
  expect_arg_error(random_dropout(array(1, c(2, 2)), 0.5, noise_shape = c(1, 3)), "noise_shape")
  expect_arg_error(random_dropout(array(1, c(2, 2)), 0.5, noise_shape = 1), "noise_shape")
  expect_arg_error(random_dropout(array(1, c(2, 2)), 0.5, noise_shape = c(0, 1)), "noise_shape")
  expect_arg_error(random_dropout(array(1, c(2, 2)), 0.5, noise_shape = "a"), "noise_shape")
  expect_arg_error(random_dropout(keras_input(shape = 3), 0.5, noise_shape = c(NA, 2)), "noise_shape")
  expect_arg_error(random_dropout("a", 0.5), "inputs")
  expect_arg_error(random_seed_generator(seed = "a"), "seed")
  expect_arg_error(random_seed_generator(seed = 1.5), "seed")
  expect_arg_error(random_seed_generator(name = 1), "name")
  expect_arg_error(random_seed_generator(1, foo = 2), "...")
  expect_arg_error(random_seed_generator(1, NULL, 2), "...")
  expect_arg_error(set_random_seed(), "seed")
  expect_arg_error(set_random_seed(NA), "seed")
  expect_arg_error(set_random_seed("1"), "seed")
  expect_arg_error(set_random_seed(1.5), "seed")
  expect_arg_error(set_random_seed(NULL), "seed")
  expect_arg_error(random_gamma(3), "alpha")
  expect_arg_error(random_gamma(3, alpha = 0), "alpha")
  expect_arg_error(random_gamma(3, alpha = -1), "alpha")
  expect_arg_error(random_gamma(3, alpha = NA), "alpha")
  expect_arg_error(random_gamma(3, alpha = Inf), "alpha")
  expect_arg_error(random_gamma(3, alpha = "a"), "alpha")
  expect_arg_error(random_gamma(3, alpha = c(1, 2)), "alpha")
  expect_arg_error(random_gamma(c(NA, 3), alpha = 1), "shape")
  expect_arg_error(random_gamma(3, alpha = 1, dtype = "int32"), "dtype")
  expect_arg_error(random_beta(3, beta = 1), "alpha")
  expect_arg_error(random_beta(3, 1), "beta")
  expect_arg_error(random_beta(3, 1, 0), "beta")
  expect_arg_error(random_beta(c(2, 3), c(1, 2), 1), "alpha")
  expect_arg_error(random_beta(3, 1, 1, seed = "x"), "seed")
  expect_arg_error(random_binomial(3, probabilities = 0.5), "counts")
  expect_arg_error(random_binomial(3, 10), "probabilities")
  expect_arg_error(random_binomial(3, 2.5, 0.5), "counts")
  expect_arg_error(random_binomial(3, -1, 0.5), "counts")
  expect_arg_error(random_binomial(3, 10, 1.5), "probabilities")
  expect_arg_error(random_binomial(3, 10, NaN), "probabilities")
  expect_arg_error(random_binomial(3, 10, c(0.1, 0.2)), "probabilities")
  expect_arg_error(random_binomial(3, 10, keras_input(shape = 3)), "probabilities")
  # sizes beyond options(multihead.max_tensor_elements) are refused before allocating
  old <- options(multihead.max_tensor_elements = 10)
  on.exit(options(old), add = TRUE)
  expect_error(random_uniform(c(3, 4)), "`shape` must be small enough", class = "multihead_error_argument")
  expect_error(random_binomial(11, 1, 0.5), "`shape` must be small enough", class = "multihead_error_argument")
  expect_error(random_categorical(matrix(0, 2, 3), 6), "`num_samples` must be small enough",
               class = "multihead_error_argument")
  tr <- trace_graph(function(s) random_normal(s, seed = 1), list(s = c(3L, 4L)))
  expect_error(tr$run(), "`shape` must be small enough", class = "multihead_error_argument")
  expect_identical(dim(random_uniform(c(2, 5))), c(2L, 5L))
  options(old)
  # a symbolic shape must be a rank-1 integer tensor
  expect_arg_error(random_normal(keras_input(shape = 2)), "shape")
})

test_that("a seed generator's record read from a model file is checked before use", {
  bad <- list(structure(list(seed = "x", counter = 0, name = NULL), class = "multihead_seed_generator_config"))
  expect_error(multihead:::random_params_from_config(bad), "not valid.*seed generator", class = "multihead_error_file")
  bad[[1]]$seed <- 1; bad[[1]]$counter <- -1
  expect_error(multihead:::random_params_from_config(bad), "not valid", class = "multihead_error_file")
  ok <- list(structure(list(seed = 3, counter = 2, name = "g"), class = "multihead_seed_generator_config"))
  g <- multihead:::random_params_from_config(ok)[[1]]
  expect_identical(g$counter, 2)
})
