# Adagrad, Nadam and Lion: several steps against Keras 3's update rules
# written out in plain R (from adagrad.py, nadam.py, lion.py), the values of
# Keras's own optimizer tests, clipping and weight decay, compile() names,
# state in model files, and argument errors.

opt_apply <- multihead:::optimizer_apply
err <- "multihead_error_argument"

# Two variables and four steps of (different) gradients.
w_start <- list(kernel = matrix(c(0.5, -1.2, 2.0, 0.3, -0.7, 1.1), 2, 3),
                bias = c(0.1, -0.2))
grad_steps <- list(
  list(kernel = matrix(c(0.2, -0.4, 1.5, 0.05, -0.3, 0.8), 2, 3), bias = c(0.6, -0.1)),
  list(kernel = matrix(c(-0.1, 0.7, 0.9, -0.2, 0.4, 0.0), 2, 3), bias = c(-0.3, 0.25)),
  list(kernel = matrix(c(0.3, 0.1, -0.6, 0.5, 0.2, -0.9), 2, 3), bias = c(0.05, 0.4)),
  list(kernel = matrix(c(-0.8, 0.2, 0.1, 0.4, -0.5, 0.3), 2, 3), bias = c(0.2, -0.6))
)

run_opt <- function(opt, w = w_start, grads = grad_steps) {
  out <- list()
  for (g in grads) {
    w <- opt_apply(opt, w, g)
    out[[length(out) + 1L]] <- w
  }
  out
}

test_that("Adagrad: accumulators from initial_accumulator_value, epsilon inside the root", {
  lr <- 0.3; init <- 0.2; eps <- 1e-3
  got <- run_opt(optimizer_adagrad(learning_rate = lr, initial_accumulator_value = init, epsilon = eps))
  w <- w_start
  acc <- lapply(w, function(x) x * 0 + init)
  for (t in seq_along(grad_steps)) {
    for (nm in names(w)) {
      g <- grad_steps[[t]][[nm]]
      acc[[nm]] <- acc[[nm]] + g * g
      w[[nm]] <- w[[nm]] - lr * g / sqrt(acc[[nm]] + eps)
    }
    expect_equal(got[[t]], w, tolerance = 1e-14)
  }
})

test_that("Nadam: momentum cache, bias corrections and epsilon placement as Keras", {
  lr <- 0.05; b1 <- 0.8; b2 <- 0.95; eps <- 1e-4
  opt <- optimizer_nadam(learning_rate = lr, beta_1 = b1, beta_2 = b2, epsilon = eps)
  got <- run_opt(opt)
  w <- w_start
  m <- lapply(w, function(x) x * 0)
  v <- m
  cache <- 1
  for (t in seq_along(grad_steps)) {
    mu_t <- b1 * (1 - 0.5 * 0.96^t)
    mu_next <- b1 * (1 - 0.5 * 0.96^(t + 1))
    cache <- cache * mu_t
    for (nm in names(w)) {
      g <- grad_steps[[t]][[nm]]
      m[[nm]] <- b1 * m[[nm]] + (1 - b1) * g
      v[[nm]] <- b2 * v[[nm]] + (1 - b2) * g^2
      m_hat <- mu_next * m[[nm]] / (1 - cache * mu_next) + (1 - mu_t) * g / (1 - cache)
      v_hat <- v[[nm]] / (1 - b2^t)
      w[[nm]] <- w[[nm]] - lr * m_hat / (sqrt(v_hat) + eps)
    }
    expect_equal(got[[t]], w, tolerance = 1e-12)
  }
  expect_equal(opt$variables$u_product, cache, tolerance = 1e-15)
  expect_setequal(names(opt$slots), c("momentum", "velocity"))
  expect_equal(opt$slots$momentum$bias, m$bias, tolerance = 1e-14)
})

test_that("Lion: sign of the interpolated momentum, then the momentum update", {
  lr <- 0.01; b1 <- 0.7; b2 <- 0.95
  got <- run_opt(optimizer_lion(learning_rate = lr, beta_1 = b1, beta_2 = b2))
  w <- w_start
  m <- lapply(w, function(x) x * 0)
  for (t in seq_along(grad_steps)) {
    for (nm in names(w)) {
      g <- grad_steps[[t]][[nm]]
      direction <- b1 * m[[nm]] + (1 - b1) * g
      w[[nm]] <- w[[nm]] - lr * ifelse(direction > 0, 1, ifelse(direction < 0, -1, 0))
      m[[nm]] <- b2 * m[[nm]] + (1 - b2) * g
    }
    expect_equal(got[[t]], w, tolerance = 1e-14)
  }
})

test_that("single steps and golden sequences of Keras's own optimizer tests", {
  x <- list(v = c(1, 2, 3, 4))
  g <- list(v = c(1, 6, 7, 2))
  expect_equal(opt_apply(optimizer_adagrad(learning_rate = 0.5), x, g)$v,
               c(0.5233, 1.5007, 2.5005, 3.5061), tolerance = 1e-4)
  expect_equal(opt_apply(optimizer_nadam(learning_rate = 0.5), x, g)$v,
               c(0.4686, 1.4686, 2.4686, 3.4686), tolerance = 1e-4)
  expect_equal(opt_apply(optimizer_lion(learning_rate = 0.5), x, g)$v, c(0.5, 1.5, 2.5, 3.5))

  golden_run <- function(opt) {
    x <- list(v = rep(1, 10))
    x <- opt_apply(opt, x, list(v = rep(0.01, 10)))
    out <- list(x$v)
    for (i in 1:4) {
      x <- opt_apply(opt, x, list(v = seq(0.1, 1, by = 0.1)))
      out[[i + 1L]] <- x$v
    }
    do.call(rbind, out)
  }
  adagrad_golden <- rbind(
    rep(0.9963, 10),
    c(0.9604, 0.9278, 0.9003, 0.8784, 0.8615, 0.8487, 0.8388, 0.8313, 0.8255, 0.8209),
    c(0.9251, 0.8629, 0.8137, 0.7768, 0.7497, 0.7298, 0.7151, 0.704, 0.6956, 0.6891),
    c(0.8903, 0.8012, 0.7342, 0.6862, 0.6521, 0.6277, 0.6099, 0.5967, 0.5867, 0.579),
    c(0.856, 0.7422, 0.6604, 0.6037, 0.5644, 0.5367, 0.5168, 0.5021, 0.491, 0.4825))
  expect_equal(golden_run(optimizer_adagrad(learning_rate = 0.2, initial_accumulator_value = 0.3,
                                            epsilon = 1e-6)),
               adagrad_golden, tolerance = 5e-4)
  nadam_golden <- rbind(
    rep(0.4281, 10),
    c(-0.1738, -0.1731, -0.1726, -0.1723, -0.1721, -0.172, -0.1719, -0.1718, -0.1718, -0.1717),
    c(-0.7115, -0.7103, -0.7096, -0.7092, -0.709, -0.7088, -0.7086, -0.7085, -0.7085, -0.7084),
    c(-1.2335, -1.2322, -1.2313, -1.2309, -1.2306, -1.2304, -1.2302, -1.2301, -1.23, -1.2299),
    c(-1.7492, -1.7478, -1.7469, -1.7464, -1.7461, -1.7459, -1.7457, -1.7456, -1.7455, -1.7454))
  expect_equal(golden_run(optimizer_nadam(learning_rate = 0.5, beta_1 = 0.5, beta_2 = 0.67, epsilon = 1e-5)),
               nadam_golden, tolerance = 5e-4)
  expect_equal(golden_run(optimizer_lion()), matrix(c(0.999, 0.998, 0.997, 0.996, 0.995), 5, 10),
               tolerance = 5e-4)
})

test_that("clipping and weight decay come before the update rule, as for the other optimizers", {
  lr <- 0.1; wd <- 0.05; c <- 0.5
  got <- opt_apply(optimizer_lion(learning_rate = lr, weight_decay = wd, clipnorm = c), w_start,
                   grad_steps[[1]])
  for (nm in names(w_start)) {
    g <- grad_steps[[1]][[nm]]
    g <- g * c / max(sqrt(sum(g^2)), c)
    w <- w_start[[nm]] - w_start[[nm]] * wd * lr
    expect_equal(got[[nm]], w - lr * sign((1 - 0.9) * g), tolerance = 1e-14)
  }
  # global_clipnorm over all variables, Adagrad's denominator
  got <- opt_apply(optimizer_adagrad(learning_rate = lr, global_clipnorm = c), w_start, grad_steps[[2]])
  norm <- sqrt(sum(unlist(grad_steps[[2]])^2))
  for (nm in names(w_start)) {
    g <- grad_steps[[2]][[nm]] * c / max(norm, c)
    expect_equal(got[[nm]], w_start[[nm]] - lr * g / sqrt(0.1 + g^2 + 1e-7), tolerance = 1e-14)
  }
  # clipvalue and weight decay with Nadam's first step
  got <- opt_apply(optimizer_nadam(learning_rate = lr, weight_decay = wd, clipvalue = 0.25), w_start,
                   grad_steps[[1]])
  mu1 <- 0.9 * (1 - 0.5 * 0.96); mu2 <- 0.9 * (1 - 0.5 * 0.96^2)
  for (nm in names(w_start)) {
    g <- pmin(pmax(grad_steps[[1]][[nm]], -0.25), 0.25)
    w <- w_start[[nm]] - w_start[[nm]] * wd * lr
    m <- 0.1 * g; v <- 0.001 * g^2
    m_hat <- mu2 * m / (1 - mu1 * mu2) + (1 - mu1) * g / (1 - mu1)
    expect_equal(got[[nm]], w - lr * m_hat / (sqrt(v / 0.001) + 1e-7), tolerance = 1e-13)
  }
})

test_that("a learning-rate schedule is read at the step count, as for the other optimizers", {
  sched <- learning_rate_schedule_exponential_decay(0.1, decay_steps = 1, decay_rate = 0.5)
  opt <- optimizer_lion(learning_rate = sched)
  w <- opt_apply(opt, list(v = 1), list(v = 1))
  w <- opt_apply(opt, w, list(v = 1))
  expect_equal(w$v, 1 - 0.1 - 0.05)
})

test_that("compile() takes the names; training resumes from a saved model with the same slots", {
  set.seed(3)
  x <- matrix(rnorm(40 * 3), 40, 3)
  y <- x %*% c(1, -2, 0.5) + 0.1
  for (name in c("adagrad", "nadam", "lion", "Adagrad", "Nadam", "Lion")) {
    model <- keras_model_sequential(input_shape = 3) |> layer_dense(1, dtype = "float64")
    model |> compile(optimizer = name, loss = "mse")
    expect_identical(model$optimizer$class_name, c(adagrad = "Adagrad", nadam = "Nadam", lion = "Lion")[[
      tolower(name)]])
  }
  for (ctor in list(optimizer_adagrad(0.05), optimizer_nadam(0.01), optimizer_lion(0.005))) {
    set.seed(4)
    model <- keras_model_sequential(input_shape = 3) |> layer_dense(1, dtype = "float64")
    model |> compile(optimizer = ctor, loss = "mse")
    h0 <- fit(model, x, y, epochs = 3, batch_size = 8, verbose = 0)
    expect_lt(h0$metrics$loss[[3]], h0$metrics$loss[[1]])
    path <- tempfile(fileext = ".rds")
    save_model(model, path)
    loaded <- load_model(path)
    expect_identical(loaded$optimizer$iterations, 15L)
    expect_identical(loaded$optimizer$slots, model$optimizer$slots)
    h1 <- fit(model, x, y, epochs = 2, batch_size = 8, verbose = 0, shuffle = FALSE)
    h2 <- fit(loaded, x, y, epochs = 2, batch_size = 8, verbose = 0, shuffle = FALSE)
    expect_identical(get_weights(loaded), get_weights(model))
    expect_identical(h2$metrics, h1$metrics)
    expect_identical(loaded$optimizer$slots, model$optimizer$slots)
    if (model$optimizer$class_name == "Nadam") {
      # the momentum cache continues from the step count, bit for bit
      expect_identical(loaded$optimizer$variables$u_product, model$optimizer$variables$u_product)
    }
  }
  # a Nadam restored without its cache (the variable dropped) continues identically
  opt <- optimizer_nadam(0.01)
  w <- run_opt(opt)[[4]]
  twin <- list2env(as.list.environment(opt, all.names = TRUE), envir = new.env(parent = emptyenv()))
  class(twin) <- class(opt)
  twin$variables <- NULL
  expect_identical(opt_apply(twin, w, grad_steps[[1]]), opt_apply(opt, w, grad_steps[[1]]))
  expect_identical(twin$variables$u_product, opt$variables$u_product)
})

test_that("bad arguments are errors naming them", {
  expect_error(optimizer_adagrad(initial_accumulator_value = -1), "initial_accumulator_value", class = err)
  expect_error(optimizer_adagrad(epsilon = NA), "epsilon", class = err)
  expect_error(optimizer_adagrad(learning_rate = -0.1), "learning_rate", class = err)
  expect_error(optimizer_adagrad(use_ema = TRUE), "use_ema", class = err)
  expect_error(optimizer_nadam(ema_momentum = 0.5), "ema_momentum", class = err)
  expect_error(optimizer_nadam(beta_1 = 1), "beta_1", class = err)
  expect_error(optimizer_nadam(beta_2 = -0.1), "beta_2", class = err)
  expect_error(optimizer_nadam(gradient_accumulation_steps = 2), "gradient_accumulation_steps", class = err)
  expect_error(optimizer_nadam(clipnorm = 1, clipvalue = 1), "clipvalue", class = err)
  expect_error(optimizer_lion(beta_1 = 0), "beta_1", class = err)
  expect_error(optimizer_lion(beta_1 = 1.5), "beta_1", class = err)
  expect_error(optimizer_lion(beta_2 = 2), "beta_2", class = err)
  expect_error(optimizer_lion(loss_scale_factor = 2), "loss_scale_factor", class = err)
  expect_error(optimizer_lion(name = ""), "name", class = err)
  expect_error(optimizer_lion(momentum = 0.9), "momentum", class = err)
  expect_error(optimizer_adagrad(weight_decay = -1), "weight_decay", class = err)
  model <- keras_model_sequential(input_shape = 3) |> layer_dense(1)
  expect_error(compile(model, optimizer = "adagradd", loss = "mse"), "adagrad", class = err)
  # defaults, names and printing
  expect_identical(optimizer_adagrad()$name, "adagrad")
  expect_identical(optimizer_nadam(name = "n2")$name, "n2")
  expect_output(print(optimizer_lion()), "<optimizer Lion name=\"lion\" learning_rate=0.001 beta_1=0.9")
})
