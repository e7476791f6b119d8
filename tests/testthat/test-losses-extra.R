# Huber, KL divergence and categorical focal cross-entropy: Keras's test
# values, the formulas written out here element by element, reductions and
# sample weights, gradients against central finite differences in float64
# (fd_grad() from helper-fixtures.R), compile() names and argument errors.

vg <- multihead:::loss_value_and_grad
err <- "multihead_error_argument"
eps <- 1e-7

expect_fd <- function(loss, y_true, y_pred, sample_weight = NULL, tol = 1e-6) {
  out <- vg(loss, y_true, y_pred, sample_weight)
  num <- fd_grad(function(p) sum(vg(loss, y_true, p, sample_weight)$value), y_pred)
  expect_identical(dim(out$grad), dim(y_pred))
  expect_equal(out$grad, num, tolerance = tol)
}

huber_ref <- function(t, p, delta = 1) {
  e <- p - t
  out <- numeric(length(e))
  for (i in seq_along(e)) {
    out[i] <- if (abs(e[i]) <= delta) 0.5 * e[i]^2 else delta * abs(e[i]) - 0.5 * delta^2
  }
  out
}

kl_ref <- function(t, p) {
  s <- 0
  for (i in seq_along(t)) {
    ti <- min(max(t[i], eps), 1)
    pi <- min(max(p[i], eps), 1)
    s <- s + ti * log(ti / pi)
  }
  s
}

# One sample's focal loss over its class vector (probabilities or logits).
focal_ref <- function(t, p, alpha = 0.25, gamma = 2, from_logits = FALSE, smoothing = 0) {
  if (smoothing > 0) t <- t * (1 - smoothing) + smoothing / length(t)
  if (from_logits) p <- exp(p - max(p)) / sum(exp(p - max(p)))
  o <- p / sum(p)
  s <- 0
  for (c in seq_along(o)) {
    oc <- min(max(o[c], eps), 1 - eps)
    s <- s + alpha * (1 - oc)^gamma * (-t[c] * log(oc))
  }
  s
}

test_that("Huber: Keras's test values, delta, reductions and weights", {
  yp <- rbind(c(0.9, 0.2, 0.2), c(0.8, 0.4, 0.6))
  yt <- rbind(c(1, 0, 1), c(1, 0, 0))
  el <- matrix(huber_ref(yt, yp), 2)
  expect_equal(loss_huber()(yt, yp), sum(el) / 6, tolerance = 1e-12)
  expect_equal(loss_huber()(yt, yp, sample_weight = 2.3), 2.3 * sum(el) / 6, tolerance = 1e-12)
  expect_equal(loss_huber()(yt, yp, sample_weight = c(1.2, 3.4)), sum(el * c(1.2, 3.4)) / 6,
               tolerance = 1e-12)
  expect_equal(loss_huber()(yt, yt), 0)
  el8 <- matrix(huber_ref(yt, yp, 0.8), 2)
  expect_equal(loss_huber(delta = 0.8)(yt, yp, sample_weight = 2.3), 2.3 * sum(el8) / 6, tolerance = 1e-12)
  # the function form: per-sample means over the last axis
  big <- rbind(c(0, 3, -2), c(1.5, 0.2, 0))
  expect_equal(as.vector(loss_huber(yt, big, delta = 0.5)), rowMeans(matrix(huber_ref(yt, big, 0.5), 2)))
  expect_equal(loss_huber(reduction = "sum")(yt, big), sum(rowMeans(matrix(huber_ref(yt, big), 2))))
  expect_equal(as.vector(loss_huber(reduction = "none")(yt, big, sample_weight = c(2, 0))),
               rowMeans(matrix(huber_ref(yt, big), 2)) * c(2, 0))
  # timestep weights on (batch, time, 1)
  y3 <- array(yt, c(2, 3, 1)); p3 <- array(yp, c(2, 3, 1))
  sw <- matrix(c(3, 6, 5, 0, 4, 2), 2, 3, byrow = TRUE)
  expect_equal(loss_huber()(y3, p3, sample_weight = sw), sum(matrix(huber_ref(yt, yp), 2) * sw) / 6,
               tolerance = 1e-12)
})

test_that("Huber: gradients by finite differences on both sides of delta", {
  set.seed(1)
  yt <- matrix(rnorm(12), 3, 4)
  yp <- yt + matrix(c(0.3, -1.7, 2.2, -0.1, 0.9, -0.6, 1.4, -2.5, 0.05, 0.7, -1.2, 3), 3, 4)
  for (delta in c(0.5, 1, 2)) {
    expect_fd(loss_huber(delta = delta), yt, yp)
    expect_fd(loss_huber(delta = delta, reduction = "sum"), yt, yp, sample_weight = c(1, 0.5, 2))
  }
  y3 <- array(rnorm(24), c(2, 3, 4)); p3 <- y3 + array(runif(24, -2, 2), c(2, 3, 4))
  expect_fd(loss_huber(reduction = "mean_with_sample_weight"), y3, p3, sample_weight = c(0.3, 1.7))
})

test_that("KL divergence: Keras's test values, clipping and gradients", {
  yp <- matrix(c(0.4, 0.9, 0.12, 0.36, 0.3, 0.4), 2, byrow = TRUE)
  yt <- matrix(c(0.5, 0.8, 0.12, 0.7, 0.43, 0.8), 2, byrow = TRUE)
  per <- c(kl_ref(yt[1, ], yp[1, ]), kl_ref(yt[2, ], yp[2, ]))
  expect_equal(as.vector(loss_kl_divergence(yt, yp)), per, tolerance = 1e-12)
  expect_equal(loss_kl_divergence()(yt, yp), sum(per) / 2, tolerance = 1e-12)
  expect_equal(loss_kl_divergence()(yt, yp, sample_weight = c(1.2, 3.4)), sum(per * c(1.2, 3.4)) / 2,
               tolerance = 1e-12)
  expect_equal(loss_kl_divergence()(yt, yp, sample_weight = 0), 0)
  # zeros and values above 1 are clipped on both sides
  zt <- rbind(c(0, 1, 0), c(0.2, 0.3, 0.5))
  zp <- rbind(c(0.5, 0, 1.2), c(0.1, 0.6, 0.3))
  expect_equal(as.vector(loss_kl_divergence(zt, zp)), c(kl_ref(zt[1, ], zp[1, ]), kl_ref(zt[2, ], zp[2, ])),
               tolerance = 1e-12)
  g <- vg(loss_kl_divergence(reduction = "sum"), zt, zp)$grad
  expect_identical(g[1, 2], 0)   # clipped at 1e-7: no gradient
  expect_identical(g[1, 3], 0)   # clipped at 1
  set.seed(2)
  pt <- t(apply(matrix(runif(15, 0.05, 1), 5, 3), 1, function(r) r / sum(r)))
  pp <- t(apply(matrix(runif(15, 0.05, 1), 5, 3), 1, function(r) r / sum(r)))
  expect_fd(loss_kl_divergence(), pt, pp)
  expect_fd(loss_kl_divergence(reduction = "sum"), pt, pp, sample_weight = c(1, 2, 0, 0.5, 3))
})

test_that("categorical focal cross-entropy: Keras's test values", {
  yt <- diag(3)
  yp <- rbind(c(0.9, 0.05, 0.05), c(0.5, 0.89, 0.6), c(0.05, 0.01, 0.94))
  logits <- rbind(c(8, 1, 1), c(0, 9, 1), c(2, 3, 5))
  focal <- loss_categorical_focal_crossentropy()
  expect_equal(focal(yt, yp), 0.02059, tolerance = 1e-3)
  expect_equal(focal(yt, yp, sample_weight = 2.3), 0.047368, tolerance = 1e-3)
  expect_equal(focal(yt, yp, sample_weight = c(1.2, 3.4, 5.6)), 0.06987, tolerance = 1e-3)
  expect_equal(loss_categorical_focal_crossentropy(from_logits = TRUE)(yt, logits), 0.000345,
               tolerance = 1e-2)
  expect_equal(loss_categorical_focal_crossentropy(from_logits = TRUE)(yt, logits, sample_weight = 2.3),
               0.000794, tolerance = 1e-2)
  expect_equal(focal(yt, diag(3)), 0, tolerance = 1e-6)
})

test_that("categorical focal cross-entropy: the formula under every option, and its gradients", {
  set.seed(3)
  B <- 4; C <- 5
  yt <- diag(C)[sample(C, B, replace = TRUE), ]
  soft <- matrix(runif(B * C), B, C) * 0.3 + yt * 0.5
  probs <- soft / rowSums(soft)
  logits <- matrix(rnorm(B * C, sd = 2), B, C)
  for (opts in list(list(alpha = 0.25, gamma = 2), list(alpha = 1, gamma = 0), list(alpha = 0.6, gamma = 0.5),
                    list(alpha = 0.4, gamma = 3, label_smoothing = 0.2))) {
    sm <- if (is.null(opts$label_smoothing)) 0 else opts$label_smoothing
    for (from_logits in c(FALSE, TRUE)) {
      x <- if (from_logits) logits else probs
      loss <- loss_categorical_focal_crossentropy(alpha = opts$alpha, gamma = opts$gamma, from_logits = from_logits,
                                                  label_smoothing = sm)
      ref <- vapply(seq_len(B), function(b) focal_ref(yt[b, ], x[b, ], opts$alpha, opts$gamma, from_logits, sm),
                    numeric(1))
      expect_equal(as.vector(loss_categorical_focal_crossentropy(yt, x, alpha = opts$alpha, gamma = opts$gamma,
                                                                 from_logits = from_logits, label_smoothing = sm)),
                   ref, tolerance = 1e-12)
      expect_equal(loss(yt, x), mean(ref), tolerance = 1e-12)
      expect_fd(loss, yt, x)
      expect_fd(loss, yt, x, sample_weight = c(0.5, 2, 1, 0))
    }
  }
  # gamma = 0, alpha = 1 is the categorical cross-entropy
  expect_equal(loss_categorical_focal_crossentropy(yt, probs, alpha = 1, gamma = 0),
               loss_categorical_crossentropy(yt, probs), tolerance = 1e-12)
  # unnormalised predictions: the gradient goes through the normalisation
  raw <- matrix(runif(B * C, 0.1, 2), B, C)
  expect_fd(loss_categorical_focal_crossentropy(), yt, raw)
  # the class axis elsewhere: (batch, classes, time) with axis = 2
  a <- array(runif(2 * 3 * 4, 0.1, 1), c(2, 3, 4))
  t3 <- array(0, c(2, 3, 4))
  for (b in 1:2) for (s in 1:4) t3[b, (b + s) %% 3 + 1, s] <- 1
  v <- loss_categorical_focal_crossentropy(t3, a, axis = 2)
  ref <- outer(1:2, 1:4, Vectorize(function(b, s) focal_ref(t3[b, , s], a[b, , s])))
  expect_equal(v, ref, tolerance = 1e-12)
  expect_fd(loss_categorical_focal_crossentropy(axis = 2, reduction = "sum"), t3, a)
})

test_that("compile() takes the names; models train with these losses", {
  set.seed(5)
  x <- matrix(rnorm(30 * 4), 30, 4)
  yr <- x %*% c(1, -1, 0.5, 2)
  cls <- diag(3)[(x[, 1] > 0) + (x[, 2] > 0) + 1, ]
  cases <- list(list("huber", "Huber", yr, NULL), list("huber_loss", "Huber", yr, NULL),
                list("kl_divergence", "KLDivergence", cls, "softmax"), list("kld", "KLDivergence", cls, "softmax"),
                list("KLD", "KLDivergence", cls, "softmax"),
                list("categorical_focal_crossentropy", "CategoricalFocalCrossentropy", cls, "softmax"),
                list("CategoricalFocalCrossentropy", "CategoricalFocalCrossentropy", cls, "softmax"))
  for (case in cases) {
    y <- case[[3]]
    model <- keras_model_sequential(input_shape = 4) |>
      layer_dense(ncol(y), activation = case[[4]], dtype = "float64")
    model |> compile(optimizer = optimizer_adam(0.05), loss = case[[1]])
    expect_identical(class(model$loss)[[1]], case[[2]])
    h <- fit(model, x, y, epochs = 8, batch_size = 10, verbose = 0)
    expect_lt(h$metrics$loss[[8]], h$metrics$loss[[1]])
  }
  # a configured loss object round-trips through save_model()
  model <- keras_model_sequential(input_shape = 4) |> layer_dense(3, activation = "softmax")
  model |> compile(optimizer = "adam", loss = loss_categorical_focal_crossentropy(alpha = 0.4, gamma = 1.5))
  path <- tempfile(fileext = ".rds")
  save_model(model, path)
  loaded <- load_model(path)
  l <- loaded$loss
  expect_identical(c(l$alpha, l$gamma), c(0.4, 1.5))
  expect_identical(l(cls, model(x)), model$loss(cls, model(x)))
})

test_that("bad arguments and inputs are errors naming them", {
  expect_error(loss_huber(delta = -1), "delta", class = err)
  expect_error(loss_huber(delta = NA), "delta", class = err)
  expect_error(loss_huber(reduction = "avg"), "reduction", class = err)
  expect_error(loss_huber(foo = 1), "foo", class = err)
  expect_error(loss_huber(matrix(1, 2, 2)), "y_pred", class = err)
  expect_error(loss_huber(matrix(1, 2, 2), matrix(1, 2, 3)), "y_true", class = err)
  expect_error(loss_kl_divergence(matrix(1, 2, 2), matrix(NA, 2, 2)), "y_pred", class = err)
  expect_error(loss_kl_divergence(name = 3), "name", class = err)
  expect_error(loss_categorical_focal_crossentropy(gamma = -1), "gamma", class = err)
  expect_error(loss_categorical_focal_crossentropy(alpha = Inf), "alpha", class = err)
  expect_error(loss_categorical_focal_crossentropy(label_smoothing = 2), "label_smoothing", class = err)
  expect_error(loss_categorical_focal_crossentropy(from_logits = "yes"), "from_logits", class = err)
  expect_error(loss_categorical_focal_crossentropy(axis = 0), "axis", class = err)
  expect_error(loss_categorical_focal_crossentropy(axis = 3)(diag(2), diag(2)), "axis", class = err)
  expect_error(loss_huber()(diag(2), diag(2), sample_weight = c(1, 2, 3)), "sample_weight", class = err)
  model <- keras_model_sequential(input_shape = 3) |> layer_dense(1)
  expect_error(compile(model, optimizer = "sgd", loss = "hubber"), "huber", class = err)
  expect_output(print(loss_huber(delta = 2)), "<loss Huber name=\"huber_loss\" reduction=\"sum_over_batch_size\"")
})
