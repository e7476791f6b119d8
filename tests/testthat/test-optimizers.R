# Optimizers and learning rate schedules: the first updates against Keras 3's
# rules written out by hand (textbook algebra, not the package's code), the
# single-step values from Keras's own tests, clipping, weight decay,
# schedules, state and argument errors.

opt_apply <- multihead:::optimizer_apply
err <- "multihead_error_argument"

# Two variables and three steps of (different) gradients.
w0 <- list(kernel = matrix(c(0.5, -1.2, 2.0, 0.3, -0.7, 1.1), 2, 3),
           bias = c(0.1, -0.2))
grad_seq <- list(
  list(kernel = matrix(c(0.2, -0.4, 1.5, 0.05, -0.3, 0.8), 2, 3), bias = c(0.6, -0.1)),
  list(kernel = matrix(c(-0.1, 0.7, 0.9, -0.2, 0.4, 0.0), 2, 3), bias = c(-0.3, 0.25)),
  list(kernel = matrix(c(0.3, 0.1, -0.6, 0.5, 0.2, -0.9), 2, 3), bias = c(0.05, 0.4))
)

# Runs `opt` for the three steps; returns the weights after each.
run_steps <- function(opt, w = w0, grads = grad_seq) {
  out <- list()
  for (g in grads) {
    w <- opt_apply(opt, w, g)
    out[[length(out) + 1L]] <- w
  }
  out
}

# Applies `rule(w, g, state, t)` (t = 1, 2, 3; returns list(w =, state =))
# per variable for the three steps: the hand reference.
ref_steps <- function(rule, w = w0, grads = grad_seq) {
  state <- lapply(w, function(x) list())
  out <- list()
  for (t in seq_along(grads)) {
    for (nm in names(w)) {
      r <- rule(w[[nm]], grads[[t]][[nm]], state[[nm]], t)
      w[[nm]] <- r$w
      state[[nm]] <- r$state
    }
    out[[t]] <- w
  }
  out
}

zeros_like <- function(x) x * 0

test_that("single steps match the values in Keras's own optimizer tests", {
  x <- list(v = c(1, 2, 3, 4))
  g <- list(v = c(1, 6, 7, 2))
  expect_equal(opt_apply(optimizer_sgd(learning_rate = 0.5), x, g)$v, c(0.5, -1, -0.5, 3))
  expect_equal(opt_apply(optimizer_adam(learning_rate = 0.5), x, g)$v, c(0.5, 1.5, 2.5, 3.5),
               tolerance = 1e-6)
  expect_equal(opt_apply(optimizer_adamw(learning_rate = 0.5), x, g)$v,
               c(0.4980, 1.4960, 2.4940, 3.4920), tolerance = 1e-4)
  expect_equal(opt_apply(optimizer_rmsprop(learning_rate = 0.5), x, g)$v,
               c(-0.5811, 0.4189, 1.4189, 2.4189), tolerance = 1e-4)
  # RMSprop's docstring: lr 0.1, loss var^2 / 2 at var = 10 -> 9.683772.
  expect_equal(opt_apply(optimizer_rmsprop(learning_rate = 0.1), list(v = 10), list(v = 10))$v,
               9.683772, tolerance = 1e-6)
})

test_that("SGD: plain, momentum and nesterov follow Keras's rules for three steps", {
  expect_equal(run_steps(optimizer_sgd(learning_rate = 0.1)),
               ref_steps(function(w, g, s, t) list(w = w - 0.1 * g, state = s)))
  momentum_rule <- function(nesterov) function(w, g, s, t) {
    v <- if (is.null(s$v)) zeros_like(w) else s$v
    v <- 0.9 * v - 0.05 * g
    list(w = if (nesterov) w + 0.9 * v - 0.05 * g else w + v, state = list(v = v))
  }
  expect_equal(run_steps(optimizer_sgd(learning_rate = 0.05, momentum = 0.9)),
               ref_steps(momentum_rule(FALSE)))
  expect_equal(run_steps(optimizer_sgd(learning_rate = 0.05, momentum = 0.9, nesterov = TRUE)),
               ref_steps(momentum_rule(TRUE)))
  # Nesterov differs from plain momentum from the first step on.
  a <- run_steps(optimizer_sgd(learning_rate = 0.05, momentum = 0.9))
  b <- run_steps(optimizer_sgd(learning_rate = 0.05, momentum = 0.9, nesterov = TRUE))
  expect_false(isTRUE(all.equal(a[[1]], b[[1]])))
})

adam_rule <- function(lr, b1 = 0.9, b2 = 0.999, eps = 1e-7, amsgrad = FALSE, wd = 0) {
  function(w, g, s, t) {
    m <- if (is.null(s$m)) zeros_like(w) else s$m
    v <- if (is.null(s$v)) zeros_like(w) else s$v
    vmax <- if (is.null(s$vmax)) zeros_like(w) else s$vmax
    w <- w * (1 - wd * lr)
    m <- b1 * m + (1 - b1) * g
    v <- b2 * v + (1 - b2) * g^2
    vmax <- pmax(vmax, v)
    denom_v <- if (amsgrad) vmax else v
    lr_t <- lr * sqrt(1 - b2^t) / (1 - b1^t)
    list(w = w - lr_t * m / (sqrt(denom_v) + eps), state = list(m = m, v = v, vmax = vmax))
  }
}

test_that("Adam, AMSGrad and AdamW follow Keras's rules for three steps", {
  expect_equal(run_steps(optimizer_adam(learning_rate = 0.01)), ref_steps(adam_rule(0.01)),
               tolerance = 1e-12)
  expect_equal(run_steps(optimizer_adam(learning_rate = 0.02, beta_1 = 0.8, beta_2 = 0.95,
                                        epsilon = 1e-3)),
               ref_steps(adam_rule(0.02, b1 = 0.8, b2 = 0.95, eps = 1e-3)), tolerance = 1e-12)
  # Gradients that shrink make v fall, so AMSGrad's running max matters.
  shrinking <- lapply(c(1, 0.1, 0.01), function(k) lapply(grad_seq[[1]], `*`, k))
  ams <- run_steps(optimizer_adam(learning_rate = 0.01, beta_2 = 0.5, amsgrad = TRUE), grads = shrinking)
  expect_equal(ams, ref_steps(adam_rule(0.01, b2 = 0.5, amsgrad = TRUE), grads = shrinking),
               tolerance = 1e-12)
  plain <- run_steps(optimizer_adam(learning_rate = 0.01, beta_2 = 0.5), grads = shrinking)
  expect_false(isTRUE(all.equal(ams[[3]], plain[[3]])))
  expect_equal(run_steps(optimizer_adamw(learning_rate = 0.01, weight_decay = 0.1)),
               ref_steps(adam_rule(0.01, wd = 0.1)), tolerance = 1e-12)
  expect_equal(run_steps(optimizer_adam(learning_rate = 0.01, weight_decay = 0.1)),
               ref_steps(adam_rule(0.01, wd = 0.1)), tolerance = 1e-12)
})

rmsprop_rule <- function(lr, rho = 0.9, momentum = 0, eps = 1e-7, centered = FALSE) {
  function(w, g, s, t) {
    v <- if (is.null(s$v)) zeros_like(w) else s$v
    a <- if (is.null(s$a)) zeros_like(w) else s$a
    mom <- if (is.null(s$mom)) zeros_like(w) else s$mom
    v <- rho * v + (1 - rho) * g^2
    a <- rho * a + (1 - rho) * g
    step <- lr * g / sqrt((if (centered) v - a^2 else v) + eps)
    mom <- momentum * mom + step
    list(w = w - (if (momentum > 0) mom else step), state = list(v = v, a = a, mom = mom))
  }
}

test_that("RMSprop: plain, centered and with momentum follow Keras's rules for three steps", {
  expect_equal(run_steps(optimizer_rmsprop(learning_rate = 0.01)), ref_steps(rmsprop_rule(0.01)),
               tolerance = 1e-12)
  expect_equal(run_steps(optimizer_rmsprop(learning_rate = 0.01, rho = 0.8, centered = TRUE)),
               ref_steps(rmsprop_rule(0.01, rho = 0.8, centered = TRUE)), tolerance = 1e-12)
  expect_equal(run_steps(optimizer_rmsprop(learning_rate = 0.01, momentum = 0.5, epsilon = 1e-3)),
               ref_steps(rmsprop_rule(0.01, momentum = 0.5, eps = 1e-3)), tolerance = 1e-12)
  expect_equal(run_steps(optimizer_rmsprop(learning_rate = 0.01, momentum = 0.5, centered = TRUE,
                                           weight_decay = 0.2)),
               ref_steps(function(w, g, s, t) rmsprop_rule(0.01, momentum = 0.5, centered = TRUE)(
                 w * (1 - 0.2 * 0.01), g, s, t)), tolerance = 1e-12)
})

test_that("weight decay is applied before the update with the step's learning rate", {
  # Keras's test: lr 1, weight_decay 0.004, zero gradient: 2 -> 1.992.
  out <- opt_apply(optimizer_sgd(learning_rate = 1, weight_decay = 0.004), list(v = c(2, 2)),
                   list(v = c(0, 0)))
  expect_equal(out$v, c(1.992, 1.992))
  expect_equal(run_steps(optimizer_sgd(learning_rate = 0.1, momentum = 0.5, weight_decay = 0.3)),
               ref_steps(function(w, g, s, t) {
                 w <- w - w * 0.3 * 0.1
                 v <- if (is.null(s$v)) zeros_like(w) else s$v
                 v <- 0.5 * v - 0.1 * g
                 list(w = w + v, state = list(v = v))
               }))
})

test_that("clipnorm, global_clipnorm and clipvalue clip as Keras does", {
  big <- list(v = c(100, 100))
  expect_equal(opt_apply(optimizer_sgd(learning_rate = 1, clipnorm = 1), list(v = c(0, 0)), big)$v,
               -c(1, 1) / sqrt(2))
  expect_equal(opt_apply(optimizer_sgd(learning_rate = 1, clipvalue = 1), list(v = c(0, 0)), big)$v,
               c(-1, -1))
  # clipnorm is per variable; global_clipnorm scales all by one factor.
  g <- grad_seq[[1]]
  norm_k <- sqrt(sum(g$kernel^2))
  norm_b <- sqrt(sum(g$bias^2))
  global <- sqrt(norm_k^2 + norm_b^2)
  per_var <- opt_apply(optimizer_sgd(learning_rate = 1, clipnorm = 0.5), w0, g)
  expect_equal(per_var$kernel, w0$kernel - g$kernel * 0.5 / norm_k)
  expect_equal(per_var$bias, w0$bias - g$bias * 0.5 / norm_b)
  all_vars <- opt_apply(optimizer_sgd(learning_rate = 1, global_clipnorm = 0.5), w0, g)
  expect_equal(all_vars$kernel, w0$kernel - g$kernel * 0.5 / global)
  expect_equal(all_vars$bias, w0$bias - g$bias * 0.5 / global)
  # Norms below the threshold leave the gradient alone.
  expect_equal(opt_apply(optimizer_sgd(learning_rate = 1, clipnorm = 100), w0, g),
               Map(`-`, w0, g))
  expect_equal(opt_apply(optimizer_sgd(learning_rate = 1, global_clipnorm = 100), w0, g),
               Map(`-`, w0, g))
  cv <- opt_apply(optimizer_sgd(learning_rate = 1, clipvalue = 0.5), w0, g)
  expect_equal(cv$kernel, w0$kernel - pmin(pmax(g$kernel, -0.5), 0.5))
  # Clipping feeds Adam's moments, for three steps.
  clipped_seq <- lapply(grad_seq, function(gs) {
    s <- 0.3 / max(sqrt(sum(unlist(gs)^2)), 0.3)
    lapply(gs, `*`, s)
  })
  expect_equal(run_steps(optimizer_adam(learning_rate = 0.01, global_clipnorm = 0.3)),
               ref_steps(adam_rule(0.01), grads = clipped_seq), tolerance = 1e-12)
})

test_that("a schedule as learning rate is evaluated at the iteration count before each step", {
  sched <- learning_rate_schedule_exponential_decay(0.1, decay_steps = 1, decay_rate = 0.5)
  opt <- optimizer_sgd(learning_rate = sched)
  expect_equal(run_steps(opt),
               ref_steps(function(w, g, s, t) list(w = w - 0.1 * 0.5^(t - 1) * g, state = s)))
  expect_identical(opt$iterations, 3L)
  expect_equal(multihead:::optimizer_current_learning_rate(opt), 0.1 * 0.5^3)
  # Adam with a schedule and weight decay uses the scheduled rate for both.
  cos <- learning_rate_schedule_cosine_decay(0.05, decay_steps = 4)
  lr_t <- cos(0:2)
  opt <- optimizer_adam(learning_rate = cos, weight_decay = 0.1)
  expect_equal(run_steps(opt), ref_steps(function(w, g, s, t) adam_rule(lr_t[t], wd = 0.1)(w, g, s, t)),
               tolerance = 1e-12)
})

test_that("state: iterations, slots keyed by path, shapes kept, saveRDS round trip", {
  opt <- optimizer_adam(amsgrad = TRUE)
  expect_identical(opt$iterations, 0L)
  out <- opt_apply(opt, w0, rev(grad_seq[[1]]))  # gradient order does not matter
  expect_identical(names(out), names(w0))
  expect_identical(dim(out$kernel), dim(w0$kernel))
  expect_null(dim(out$bias))
  expect_identical(opt$iterations, 1L)
  expect_setequal(names(opt$slots), c("momentum", "velocity", "velocity_hat"))
  expect_setequal(names(opt$slots$momentum), c("kernel", "bias"))
  expect_equal(opt$slots$momentum$kernel, 0.1 * grad_seq[[1]]$kernel)
  # saveRDS() keeps the whole state: continuing from a copy matches.
  f <- tempfile(fileext = ".rds")
  saveRDS(opt, f)
  copy <- readRDS(f)
  expect_s3_class(copy, "multihead_optimizer")
  expect_identical(opt_apply(copy, out, grad_seq[[2]]), opt_apply(opt, out, grad_seq[[2]]))
  expect_identical(copy$iterations, 2L)
  # SGD without momentum keeps no slots; with momentum one kind.
  sgd <- optimizer_sgd()
  opt_apply(sgd, w0, grad_seq[[1]])
  expect_length(sgd$slots, 0)
  # A variable that changes shape is an error, not silent recycling.
  bad <- w0
  bad$bias <- c(1, 2, 3)
  expect_error(opt_apply(opt, bad, list(kernel = grad_seq[[1]]$kernel, bias = c(1, 2, 3))),
               "\"bias\".*shape")
})

test_that("a NULL gradient leaves its variable unchanged with a warning", {
  opt <- optimizer_sgd(learning_rate = 1)
  expect_warning(out <- opt_apply(opt, w0, list(kernel = grad_seq[[1]]$kernel, bias = NULL)),
                 "\"bias\"")
  expect_identical(out$bias, w0$bias)
  expect_equal(out$kernel, w0$kernel - grad_seq[[1]]$kernel)
  expect_error(opt_apply(opt, w0, list(kernel = NULL, bias = NULL)), "`grads`", class = err)
})

test_that("print() shows the class, hyperparameters and iterations", {
  expect_output(print(optimizer_adam()),
                "^<optimizer Adam name=\"adam\" learning_rate=0.001 beta_1=0.9 beta_2=0.999 epsilon=1e-07 amsgrad=FALSE iterations=0>$")
  expect_output(print(optimizer_sgd(clipnorm = 1, name = "mine")),
                "<optimizer SGD name=\"mine\" .*clipnorm=1 iterations=0>")
  expect_output(print(optimizer_adamw()), "weight_decay=0.004")
  sched <- learning_rate_schedule_cosine_decay(0.1, 10)
  expect_output(print(optimizer_rmsprop(learning_rate = sched)), "learning_rate=<CosineDecay>")
})

test_that("keras3's defaults and names", {
  expect_identical(optimizer_sgd()$learning_rate, 0.01)
  expect_identical(optimizer_sgd()$name, "SGD")
  expect_identical(optimizer_adam()$config, list(beta_1 = 0.9, beta_2 = 0.999, epsilon = 1e-7,
                                                 amsgrad = FALSE))
  expect_identical(optimizer_adamw()$weight_decay, 0.004)
  expect_identical(optimizer_adamw()$name, "adamw")
  expect_identical(optimizer_rmsprop()$config, list(rho = 0.9, momentum = 0, epsilon = 1e-7,
                                                    centered = FALSE))
  expect_identical(optimizer_rmsprop()$learning_rate, 0.001)
  expect_null(optimizer_adam()$weight_decay)
})

test_that("as_optimizer() takes objects and names, and lists the names otherwise", {
  as_opt <- multihead:::as_optimizer
  opt <- optimizer_adam()
  expect_identical(as_opt(opt), opt)
  expect_s3_class(as_opt("sgd"), "SGD")
  expect_s3_class(as_opt("Adam"), "Adam")
  expect_s3_class(as_opt("adamw"), "AdamW")
  expect_s3_class(as_opt("rmsprop"), "RMSprop")
  expect_error(as_opt("adadelta"), "`optimizer`.*\"sgd\", \"adam\", \"adamw\", \"rmsprop\".*\"adadelta\"",
               class = err)
  expect_error(as_opt(NULL), "`optimizer`", class = err)
  expect_error(as_opt(c("sgd", "adam")), "`optimizer`", class = err)
})

test_that("bad optimizer arguments are errors naming them", {
  for (bad in list(-0.1, NA, "0.1", c(0.1, 0.2), NULL, Inf, function(step) 0.1)) {
    expect_error(optimizer_sgd(learning_rate = bad), "`learning_rate`", class = err)
    expect_error(optimizer_adam(learning_rate = bad), "`learning_rate`", class = err)
  }
  expect_error(optimizer_sgd(momentum = 1.5), "`momentum`", class = err)
  expect_error(optimizer_sgd(momentum = -0.1), "`momentum`", class = err)
  expect_error(optimizer_sgd(nesterov = NA), "`nesterov`", class = err)
  expect_error(optimizer_sgd(weight_decay = -1), "`weight_decay`", class = err)
  expect_error(optimizer_sgd(clipnorm = 0), "`clipnorm`", class = err)
  expect_error(optimizer_sgd(clipvalue = -1), "`clipvalue`", class = err)
  expect_error(optimizer_sgd(global_clipnorm = "1"), "`global_clipnorm`", class = err)
  expect_error(optimizer_sgd(clipnorm = 1, clipvalue = 1), "`clipvalue`.*only one", class = err)
  expect_error(optimizer_adam(clipnorm = 1, global_clipnorm = 1), "`global_clipnorm`", class = err)
  expect_error(optimizer_adam(beta_1 = 1), "`beta_1`", class = err)
  expect_error(optimizer_adam(beta_2 = -0.5), "`beta_2`", class = err)
  expect_error(optimizer_adam(epsilon = -1), "`epsilon`", class = err)
  expect_error(optimizer_adam(amsgrad = "yes"), "`amsgrad`", class = err)
  expect_error(optimizer_adamw(weight_decay = NULL), "`weight_decay`", class = err)
  expect_error(optimizer_adamw(weight_decay = -0.1), "`weight_decay`", class = err)
  expect_error(optimizer_adamw(clipnorm = -1), "`clipnorm`", class = err)
  expect_error(optimizer_rmsprop(rho = 2), "`rho`", class = err)
  expect_error(optimizer_rmsprop(momentum = -1), "`momentum`", class = err)
  expect_error(optimizer_rmsprop(centered = 1), "`centered`", class = err)
  expect_error(optimizer_rmsprop(clipvalue = 0), "`clipvalue`", class = err)
  expect_error(optimizer_sgd(foo = 1), "`foo`", class = err)
  expect_error(optimizer_sgd(0.1, 0, FALSE, NULL, NULL, NULL, NULL, 3), "`...`", class = err)
  expect_error(optimizer_adam(use_ema = TRUE), "`use_ema`", class = err)
  expect_error(optimizer_sgd(name = ""), "`name`", class = err)
  expect_silent(optimizer_adam(use_ema = FALSE, ema_momentum = 0.99, name = "a"))
})

test_that("bad weights and gradients are errors naming them", {
  opt <- optimizer_sgd()
  expect_error(opt_apply("sgd", w0, grad_seq[[1]]), "`opt`", class = err)
  expect_error(opt_apply(opt, unname(w0), grad_seq[[1]]), "`weights`", class = err)
  expect_error(opt_apply(opt, list(a = 1, a = 2), list(a = 1, a = 2)), "`weights`", class = err)
  expect_error(opt_apply(opt, list(a = "x"), list(a = 1)), "`weights\\$a`", class = err)
  expect_error(opt_apply(opt, w0, grad_seq[[1]]["kernel"]), "`grads`.*\"kernel\", \"bias\"", class = err)
  expect_error(opt_apply(opt, w0, list(kernel = grad_seq[[1]]$kernel, bias = c(NA, 1))),
               "`grads\\$bias`", class = err)
  expect_error(opt_apply(opt, w0, list(kernel = t(grad_seq[[1]]$kernel), bias = c(0, 1))),
               "`grads\\$kernel`.*shape \\(2, 3\\).*\\(3, 2\\)", class = err)
  expect_identical(opt$iterations, 0L)
})

test_that("exponential decay matches its formula, with and without staircase", {
  s <- learning_rate_schedule_exponential_decay(0.1, decay_steps = 10, decay_rate = 0.9)
  steps <- c(0, 1, 5, 10, 25, 1000)
  expect_equal(s(steps), 0.1 * 0.9^(steps / 10))
  st <- learning_rate_schedule_exponential_decay(0.1, 10, 0.9, staircase = TRUE)
  expect_equal(st(steps), 0.1 * 0.9^floor(steps / 10))
  expect_s3_class(s, "multihead_learning_rate_schedule")
  expect_s3_class(s, "ExponentialDecay")
  expect_output(print(st), "^<learning_rate_schedule ExponentialDecay initial_learning_rate=0.1 decay_steps=10 decay_rate=0.9 staircase=TRUE name=\"ExponentialDecay\">$")
})

test_that("cosine decay matches Keras's formula, with alpha and with warmup", {
  s <- learning_rate_schedule_cosine_decay(0.2, decay_steps = 100, alpha = 0.1)
  steps <- c(0, 10, 50, 100, 150)
  cosine <- 0.5 * (1 + cos(pi * pmin(steps, 100) / 100))
  expect_equal(s(steps), 0.2 * ((1 - 0.1) * cosine + 0.1))
  expect_equal(s(100), 0.02)
  w <- learning_rate_schedule_cosine_decay(0.01, decay_steps = 100, warmup_target = 1,
                                           warmup_steps = 20)
  expect_equal(w(c(0, 5, 10)), 0.01 + (1 - 0.01) * c(0, 5, 10) / 20)
  expect_equal(w(c(20, 70, 120, 500)), 1 * 0.5 * (1 + cos(pi * c(0, 50, 100, 100) / 100)))
  # With warmup_steps 0 the decay starts from warmup_target.
  w0s <- learning_rate_schedule_cosine_decay(0.01, decay_steps = 10, warmup_target = 0.5)
  expect_equal(w0s(c(0, 5)), 0.5 * 0.5 * (1 + cos(pi * c(0, 5) / 10)))
})

test_that("schedules survive saveRDS and reject bad arguments naming them", {
  s <- learning_rate_schedule_cosine_decay(0.1, 10, alpha = 0.5)
  f <- tempfile(fileext = ".rds")
  saveRDS(s, f)
  expect_identical(readRDS(f)(0:12), s(0:12))
  ed <- learning_rate_schedule_exponential_decay
  cd <- learning_rate_schedule_cosine_decay
  expect_error(ed(-1, 10, 0.9), "`initial_learning_rate`", class = err)
  expect_error(ed(0.1, 0, 0.9), "`decay_steps`", class = err)
  expect_error(ed(0.1, 2.5, 0.9), "`decay_steps`", class = err)
  expect_error(ed(0.1, 10, NA), "`decay_rate`", class = err)
  expect_error(ed(0.1, 10, 0.9, staircase = "no"), "`staircase`", class = err)
  expect_error(ed(0.1, 10, 0.9, name = 1), "`name`", class = err)
  expect_error(cd("a", 10), "`initial_learning_rate`", class = err)
  expect_error(cd(0.1, -10), "`decay_steps`", class = err)
  expect_error(cd(0.1, 10, alpha = 1.5), "`alpha`", class = err)
  expect_error(cd(0.1, 10, warmup_target = -1), "`warmup_target`", class = err)
  expect_error(cd(0.1, 10, warmup_steps = -1), "`warmup_steps`", class = err)
  expect_error(s(-1), "`step`", class = err)
  expect_error(s("1"), "`step`", class = err)
  expect_error(s(NA), "`step`", class = err)
})
