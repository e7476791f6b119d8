# The fused C++ updates of SGD, Adam, AdamW and RMSprop (src/core/
# optimizer_update.h) against the R rules they replace in optimizer_apply()
# (the readable reference, forced with options(multihead.optimizer_fused =
# FALSE); test-optimizers.R checks those rules and the fused path against
# Keras's formulas and numbers). The two must agree bit for bit: weights,
# slots (kinds, paths and order) and iterations, for any thread count.

opt_apply <- multihead:::optimizer_apply

# identical(), reporting the largest numeric difference on failure (waldo's
# diff of long lists of arrays is not readable).
expect_bitwise <- function(actual, expected, label) {
  same <- identical(actual, expected)
  detail <- ""
  if (!same) {
    a <- unlist(actual)
    e <- unlist(expected)
    detail <- if (is.numeric(a) && is.numeric(e) && length(a) == length(e) && identical(names(a), names(e))) {
      sprintf(" (largest difference %g)", max(abs(a - e)))
    } else {
      " (different structure or names)"
    }
  }
  expect(same, sprintf("%s: not bitwise identical%s", label, detail))
  invisible(actual)
}

# Runs `body` with the fused rules on or off.
with_fused <- function(fused, body) {
  old <- options(multihead.optimizer_fused = fused)
  on.exit(options(old), add = TRUE)
  body
}

# Variables of several shapes (a matrix, a vector, a 3-d array, a scalar).
random_vars <- function(seed, big = FALSE) {
  set.seed(seed)
  v <- list(`dense/kernel` = array(rnorm(15 * 7), c(15, 7)), `dense/bias` = rnorm(7),
            `conv/kernel` = array(rnorm(3 * 4 * 5), c(3, 4, 5)), `norm/gamma` = 0.5)
  # above the core's serial threshold (2^18 elements) and its task size, so
  # two threads really split the work
  if (big) v$`big/kernel` <- array(rnorm(600 * 500), c(600, 500))
  v
}

# `steps` steps of `make_opt()` from random_vars(); gradients differ per step
# (some large, so clipping bites). Returns the weights, slots, iterations and
# variables after the steps.
run_fused <- function(make_opt, fused, steps = 4, big = FALSE) {
  with_fused(fused, {
    w <- random_vars(1, big)
    opt <- make_opt()
    set.seed(2)
    for (i in seq_len(steps)) {
      g <- lapply(w, function(x) x * 0 + rnorm(length(x), sd = if (i == 2) 30 else 1))
      w <- opt_apply(opt, w, g)
    }
    list(weights = w, slots = opt$slots, iterations = opt$iterations, variables = opt$variables)
  })
}

fused_cases <- list(
  sgd = function() optimizer_sgd(0.1),
  sgd_momentum = function() optimizer_sgd(0.05, momentum = 0.9),
  sgd_nesterov = function() optimizer_sgd(0.05, momentum = 0.8, nesterov = TRUE),
  sgd_decay_clipnorm = function() optimizer_sgd(0.05, momentum = 0.5, weight_decay = 0.1, clipnorm = 1),
  sgd_decay_zero = function() optimizer_sgd(0.05, weight_decay = 0),
  adam = function() optimizer_adam(0.01),
  adam_amsgrad = function() optimizer_adam(0.01, amsgrad = TRUE, clipvalue = 2),
  adam_decay_schedule = function() {
    optimizer_adam(learning_rate_schedule_exponential_decay(0.02, decay_steps = 2, decay_rate = 0.5),
                   beta_1 = 0.8, beta_2 = 0.99, epsilon = 1e-4, weight_decay = 0.05)
  },
  adamw = function() optimizer_adamw(0.01, weight_decay = 0.1),
  adamw_amsgrad_global = function() optimizer_adamw(0.01, amsgrad = TRUE, global_clipnorm = 3),
  rmsprop = function() optimizer_rmsprop(0.01),
  rmsprop_centered = function() optimizer_rmsprop(0.01, centered = TRUE),
  rmsprop_momentum = function() optimizer_rmsprop(0.01, momentum = 0.9, weight_decay = 0.02),
  rmsprop_both = function() optimizer_rmsprop(0.01, rho = 0.7, momentum = 0.5, centered = TRUE, clipnorm = 5)
)

test_that("the fused rules give bitwise the R rules' weights, slots and iterations", {
  for (nm in names(fused_cases)) {
    fused <- run_fused(fused_cases[[nm]], TRUE)
    reference <- run_fused(fused_cases[[nm]], FALSE)
    expect_bitwise(fused, reference, nm)
    # the run did something: weights moved, slots where the rule has them
    expect_false(identical(fused$weights, random_vars(1)), label = nm)
  }
  slot_kinds <- function(f) names(run_fused(f, TRUE, steps = 1)$slots)
  expect_length(slot_kinds(fused_cases$sgd), 0)
  expect_identical(slot_kinds(fused_cases$adam_amsgrad), c("momentum", "velocity", "velocity_hat"))
  expect_identical(slot_kinds(fused_cases$rmsprop_both), c("velocity", "average_gradient", "momentum"))
  # slots keep their variable's shape (a scalar weight's slot is a plain number)
  s <- run_fused(fused_cases$adam, TRUE, steps = 1)$slots
  expect_identical(dim(s$velocity$`conv/kernel`), c(3L, 4L, 5L))
  expect_null(dim(s$momentum$`norm/gamma`))
})

test_that("one and two threads give bitwise the same fused steps (and the R rules')", {
  old <- set_num_threads(1)
  on.exit(set_num_threads(old), add = TRUE)
  for (nm in c("sgd_nesterov", "adam_amsgrad", "adamw", "rmsprop_both")) {
    set_num_threads(1)
    one <- run_fused(fused_cases[[nm]], TRUE, steps = 2, big = TRUE)
    set_num_threads(2)
    two <- run_fused(fused_cases[[nm]], TRUE, steps = 2, big = TRUE)
    expect_bitwise(two, one, nm)
    expect_bitwise(run_fused(fused_cases[[nm]], FALSE, steps = 2, big = TRUE), one, nm)
  }
})

test_that("a run continues bitwise across the two paths (slots made by either)", {
  w <- random_vars(3)
  g <- lapply(w, function(x) x * 0 + 0.25)
  steps <- function(opt, w, fused_per_step) {
    for (f in fused_per_step) w <- with_fused(f, opt_apply(opt, w, g))
    list(w = w, slots = opt$slots)
  }
  for (make in list(fused_cases$adam_amsgrad, fused_cases$rmsprop_both, fused_cases$sgd_momentum)) {
    expect_bitwise(steps(make(), w, c(FALSE, TRUE, FALSE, TRUE)), steps(make(), w, c(FALSE, FALSE, FALSE, FALSE)),
                   make()$class_name)
  }
  # a variable first updated later gets its slots appended, as the R rules do
  opt_f <- optimizer_adam(0.01)
  opt_r <- optimizer_adam(0.01)
  part <- w[c("dense/bias", "norm/gamma")]
  with_fused(TRUE, opt_apply(opt_f, part, g[names(part)]))
  with_fused(FALSE, opt_apply(opt_r, part, g[names(part)]))
  with_fused(TRUE, opt_apply(opt_f, w, g))
  with_fused(FALSE, opt_apply(opt_r, w, g))
  expect_identical(opt_f$slots, opt_r$slots)
  expect_identical(names(opt_f$slots$momentum), c("dense/bias", "norm/gamma", "dense/kernel", "conv/kernel"))
})

test_that("the fused step returns new arrays: values kept elsewhere do not change", {
  w <- random_vars(4)
  g <- lapply(w, function(x) x * 0 - 0.5)
  opt <- optimizer_adam(0.1)
  w1 <- opt_apply(opt, w, g)
  kept_w <- w1
  kept_m <- opt$slots$momentum
  kept_m_copy <- lapply(kept_m, function(x) x + 0)
  kept_w_copy <- lapply(kept_w, function(x) x + 0)
  w2 <- opt_apply(opt, w1, g)
  expect_identical(kept_m, kept_m_copy)
  expect_identical(kept_w, kept_w_copy)
  expect_identical(w1, kept_w_copy)
  expect_false(identical(w2, w1))
  expect_false(identical(opt$slots$momentum, kept_m))
})

test_that("bad input: the same errors as the R rules, nothing changed", {
  w <- random_vars(5)
  g <- lapply(w, function(x) x * 0 + 1)
  for (fused in c(TRUE, FALSE)) {
    opt <- optimizer_adam()
    bad <- g
    bad$`dense/bias`[2] <- NaN
    expect_error(with_fused(fused, opt_apply(opt, w, bad)), class = "multihead_error_argument",
                 regexp = "grads\\$dense/bias")
    bad$`dense/bias`[2] <- Inf
    expect_error(with_fused(fused, opt_apply(opt, w, bad)), class = "multihead_error_argument")
    bad <- g
    bad$`dense/kernel` <- array(1, c(7, 15))
    expect_error(with_fused(fused, opt_apply(opt, w, bad)), class = "multihead_error_argument",
                 regexp = "shape \\(15, 7\\)")
    expect_identical(opt$iterations, 0L)
    expect_identical(opt$slots, list())
  }
  # a kept slot of another shape (the optimizer reused for another model)
  opt <- optimizer_rmsprop(momentum = 0.5)
  with_fused(TRUE, opt_apply(opt, w, g))
  before <- opt$slots
  w2 <- w
  w2$`dense/bias` <- rnorm(8)
  g2 <- g
  g2$`dense/bias` <- rep(1, 8)
  expect_error(with_fused(TRUE, opt_apply(opt, w2, g2)), regexp = "has shape \\(7\\) but the weight")
  expect_identical(opt$slots, before)
  expect_identical(opt$iterations, 1L)
  # the glue itself refuses mismatched lists and lengths
  upd <- multihead:::cpp_optimizer_update
  p <- list(learning_rate = 0.1, weight_decay = NULL, momentum = 0, nesterov = FALSE)
  no_slots <- list(NULL, NULL, NULL)
  expect_error(upd("sgd", list(1, 2), list(1), no_slots, p, 1L), "one gradient per weight")
  expect_error(upd("sgd", list(c(1, 2)), list(1), no_slots, p, 1L), "as many elements as its weight")
  expect_error(upd("sgd", list(1L), list(1), no_slots, p, 1L), "not a double array")
  pm <- modifyList(p, list(momentum = 0.9))
  expect_error(upd("sgd", list(c(1, 2)), list(c(1, 1)), list(list(3), NULL, NULL), pm, 1L),
               "slot 1 of variable 1")
  expect_error(upd("lamb", list(1), list(1), no_slots, p, 1L), "unknown optimizer rule")
  # and gives the rule's numbers when called right: w - g * lr
  expect_identical(upd("sgd", list(c(a = 1, b = 2)), list(c(0.5, -1)), no_slots, p, 1L)$weights,
                   list(c(a = 1 - 0.5 * 0.1, b = 2 + 1 * 0.1)))
})

test_that("fit() trains to bitwise the same weights with the fused and the R rules", {
  set.seed(11)
  x <- array(rnorm(48 * 6 * 4), c(48, 6, 4))
  y <- matrix(rnorm(48), 48, 1)
  train <- function(fused, optimizer, dtype) {
    with_fused(fused, {
      set.seed(12)
      inp <- keras_input(shape = c(6, 4))
      h <- inp |> layer_dense(8, activation = "relu", dtype = dtype, name = "hidden") |>
        layer_layer_normalization(dtype = dtype, name = "norm") |>
        layer_global_average_pooling_1d(dtype = dtype, name = "pool")
      out <- h |> layer_dense(1, dtype = dtype, name = "out")
      model <- keras_model(inp, out)
      model |> compile(optimizer = optimizer, loss = "mse")
      hist <- fit(model, x, y, epochs = 3, batch_size = 16, verbose = 0)
      list(weights = get_weights(model), loss = hist$metrics$loss, slots = model$optimizer$slots,
           class = model$optimizer$class_name)
    })
  }
  makers <- list(function() optimizer_adamw(0.01), function() optimizer_rmsprop(0.01, momentum = 0.5),
                 function() optimizer_sgd(0.05, momentum = 0.9, nesterov = TRUE))
  for (i in seq_along(makers)) {
    for (dtype in c("float32", "float64")) {
      fused <- train(TRUE, makers[[i]](), dtype)
      expect_bitwise(fused, train(FALSE, makers[[i]](), dtype), paste(fused$class, dtype))
      expect_lt(fused$loss[[3]], fused$loss[[1]])
    }
  }
  # float32 weights stay float32 values after fused steps
  w <- train(TRUE, makers[[1]](), "float32")$weights
  for (v in w) expect_identical(v, multihead:::round_float32(v))
})

test_that("float32 flags give the R rules' weights rounded to float32, slots unchanged", {
  round32 <- multihead:::round_float32
  flags <- c(TRUE, FALSE, TRUE, TRUE, TRUE)  # dense/bias stays double
  for (make_opt in list(function() optimizer_adam(learning_rate = 0.01),
                        function() optimizer_sgd(learning_rate = 0.1, momentum = 0.9),
                        function() optimizer_rmsprop(learning_rate = 0.01, centered = TRUE),
                        function() optimizer_adamw(learning_rate = 0.01, weight_decay = 0.1))) {
    for (threads in c(1L, 2L)) {
      old <- multihead::set_num_threads(threads)
      w <- random_vars(3, big = TRUE)
      set.seed(4)
      g <- lapply(w, function(x) x * 0 + rnorm(length(x)))
      ref_opt <- make_opt()
      ref <- with_fused(FALSE, opt_apply(ref_opt, w, g))
      opt <- make_opt()
      got <- with_fused(TRUE, opt_apply(opt, w, g, float32 = flags))
      multihead::set_num_threads(old)
      expected <- ref
      for (k in which(flags)) expected[[k]] <- round32(ref[[k]])
      expect_bitwise(got, expected, sprintf("%s weights (%d threads)", opt$class_name, threads))
      expect_bitwise(opt$slots, ref_opt$slots, sprintf("%s slots (%d threads)", opt$class_name, threads))
      # rounded really means float32 values (and the double one really is not rounded)
      expect_identical(round32(got[[1]]), got[[1]])
      expect_false(identical(round32(got[[2]]), got[[2]]))
    }
  }
  expect_error(multihead:::cpp_optimizer_update("sgd", list(1, 2), list(1, 1), list(NULL, NULL, NULL),
                                                list(learning_rate = 0.1, weight_decay = NULL, momentum = 0,
                                                     nesterov = FALSE), 1L, TRUE),
               "one flag per variable")
})

test_that("store_weight() keeps a fresh double array of the right dims as it is", {
  sw <- multihead:::store_weight
  w <- array(c(0.5, 0.25, 1, 2), c(2, 2))
  expect_identical(sw(w, c(2L, 2L), "float32"), w)
  # other attributes are dropped; values rounded; dims set
  v <- structure(c(0.1, 0.2, 0.3, 0.4), dim = c(2L, 2L), dimnames = list(c("a", "b"), NULL))
  got <- sw(v, c(2L, 2L), "float32")
  expect_identical(attributes(got), list(dim = c(2L, 2L)))
  expect_identical(as.vector(got), multihead:::round_float32(c(0.1, 0.2, 0.3, 0.4)))
  expect_identical(sw(c(1, 2, 3, 4), c(4L, 1L), "float64"), array(c(1, 2, 3, 4), c(4, 1)))
  expect_identical(sw(1:4, c(2L, 2L), "float64"), array(as.double(1:4), c(2, 2)))
})

test_that("the fused step writes slots in place only when nothing else holds them", {
  stats <- multihead:::cpp_optimizer_step_stats
  set.seed(21)
  m <- keras_model_sequential(input_shape = 5) |> layer_dense(3, activation = "relu") |> layer_dense(1)
  compile(m, optimizer = optimizer_adam(learning_rate = 0.01), loss = "mse")
  x <- matrix(rnorm(40 * 5), 40)
  y <- matrix(rnorm(40), 40)
  fit(m, x, y, batch_size = 10, epochs = 1, verbose = 0)
  s0 <- stats()
  fit(m, x, y, batch_size = 10, epochs = 2, verbose = 0)
  # 8 steps of 4 variables x 2 slots, all in place once the slots exist
  expect_equal(stats() - s0, c(in_place = 64, fresh = 0))

  # a user's copies (an array, a kind's list, the whole slots list) keep their values
  opt <- m$optimizer
  one <- opt$slots$momentum[[1]]
  one_values <- one + 0
  kind <- opt$slots$velocity
  kind_values <- lapply(kind, function(v) v + 0)
  everything <- opt$slots
  everything_values <- rapply(everything, function(v) v + 0, how = "list")
  fit(m, x, y, batch_size = 10, epochs = 1, verbose = 0)
  expect_identical(one, one_values)
  expect_identical(kind, kind_values)
  expect_identical(everything, everything_values)
  expect_false(identical(opt$slots$momentum[[1]], one))
  expect_false(identical(opt$slots$velocity, kind))

  # and the updates match the R rules bitwise, with slots shared along the way
  train <- function(fused, share) {
    old <- options(multihead.optimizer_fused = fused)
    on.exit(options(old))
    set.seed(22)
    m <- keras_model_sequential(input_shape = 5) |> layer_dense(3, activation = "relu", name = "h") |>
      layer_dense(1, name = "o")
    compile(m, optimizer = optimizer_rmsprop(learning_rate = 0.01, momentum = 0.5, centered = TRUE), loss = "mse")
    kept <- list()
    for (e in 1:3) {
      fit(m, x, y, batch_size = 10, epochs = 1, verbose = 0, shuffle = FALSE)
      if (share) kept[[e]] <- m$optimizer$slots
    }
    list(weights = get_weights(m), slots = m$optimizer$slots, kept = kept)
  }
  ref <- train(FALSE, TRUE)
  for (share in c(FALSE, TRUE)) {
    got <- train(TRUE, share)
    expect_bitwise(got$weights, ref$weights, paste("weights, share =", share))
    expect_bitwise(got$slots, ref$slots, paste("slots, share =", share))
    if (share) expect_bitwise(got$kept, ref$kept, "slots kept after each epoch")
  }
})

test_that("a model read back with readRDS() trains on, its slots updated in place again", {
  set.seed(23)
  m <- keras_model_sequential(input_shape = 4) |> layer_dense(2) |> layer_dense(1)
  compile(m, optimizer = optimizer_sgd(learning_rate = 0.01, momentum = 0.9), loss = "mse")
  x <- matrix(rnorm(32 * 4), 32)
  y <- matrix(rnorm(32), 32)
  fit(m, x, y, batch_size = 8, epochs = 1, verbose = 0)
  f <- tempfile(fileext = ".rds")
  on.exit(unlink(f))
  saveRDS(m, f)
  m2 <- readRDS(f)
  fit(m, x, y, batch_size = 8, epochs = 2, verbose = 0, shuffle = FALSE)
  s0 <- multihead:::cpp_optimizer_step_stats()
  fit(m2, x, y, batch_size = 8, epochs = 2, verbose = 0, shuffle = FALSE)
  expect_gt((multihead:::cpp_optimizer_step_stats() - s0)[["in_place"]], 0)
  expect_bitwise(get_weights(m2), get_weights(m), "weights after readRDS()")
  expect_bitwise(m2$optimizer$slots, m$optimizer$slots, "slots after readRDS()")
})
