# Finite-difference checks (float64) of backprop() for every input and
# weight: plain, masked, causal, gated, several attention axes, dropout.

# Checks every gradient of L = sum(output * R) against central differences.
check_all_gradients <- function(mha, args, tol = 1e-6) {
  out <- do.call(mha, args)
  R <- array(rnorm(length(out)), dim(out))
  g <- do.call(backprop, c(list(mha), args, list(grad_output = R)))
  loss_at <- function(name, value) {
    a <- args
    a[[name]] <- value
    sum(do.call(mha, a) * R)
  }
  for (input in intersect(c("query", "value", "key"), names(args))) {
    if (is.null(args[[input]])) next
    num <- fd_grad(function(x) loss_at(input, x), args[[input]])
    expect_lt(rel_err(g$grads[[input]], num), tol, label = paste("d", input))
  }
  w <- get_weights(mha)
  for (i in seq_along(w)) {
    num <- fd_grad(function(x) {
      w2 <- w
      w2[[i]] <- x
      set_weights(mha, w2)
      on.exit(set_weights(mha, w))
      sum(do.call(mha, args) * R)
    }, w[[i]])
    an <- g$grads$weights[[i]]
    if (max(abs(num)) < 1e-8) {
      expect_lt(max(abs(an - num)), 1e-8, label = names(g$grads$weights)[i])  # key bias: 0
    } else {
      expect_lt(rel_err(an, num), tol, label = names(g$grads$weights)[i])
    }
  }
  invisible(g)
}

new_f64 <- function(...) {
  layer_multi_head_attention(..., dtype = "float64", bias_initializer = "random_normal")
}

test_that("gradients of a cross-attention call (T != S, key != value)", {
  set.seed(11)
  mha <- new_f64(num_heads = 2, key_dim = 3, value_dim = 2)
  check_all_gradients(mha, list(query = rand_array(2, 4, 5), value = rand_array(2, 3, 4),
                                key = rand_array(2, 3, 6)))
})

test_that("gradients with key omitted include the value's use as key", {
  set.seed(12)
  mha <- new_f64(num_heads = 2, key_dim = 2, output_shape = c(2, 3))
  g <- check_all_gradients(mha, list(query = rand_array(2, 3, 4), value = rand_array(2, 5, 3)))
  expect_null(g$grads$key)
})

test_that("gradients with an attention mask, padding masks and a fully masked row", {
  set.seed(13)
  mha <- new_f64(num_heads = 2, key_dim = 2)
  mask <- array(runif(2 * 4 * 5) < 0.6, c(2, 4, 5))
  mask[1, 1, ] <- FALSE
  check_all_gradients(mha, list(query = rand_array(2, 4, 3), value = rand_array(2, 5, 3),
                                attention_mask = mask,
                                value_mask = matrix(c(TRUE, TRUE, FALSE, TRUE, TRUE), 2, 5, byrow = TRUE),
                                query_mask = matrix(c(TRUE, TRUE, TRUE, FALSE), 2, 4, byrow = TRUE)))
})

test_that("gradients of causal self-attention with a sliding window", {
  set.seed(14)
  mha <- new_f64(num_heads = 3, key_dim = 2, sliding_window = 2)
  x <- rand_array(2, 5, 4)
  check_all_gradients(mha, list(query = x, value = x, use_causal_mask = TRUE))
})

test_that("gradients with use_gate and without biases", {
  set.seed(15)
  mha <- new_f64(num_heads = 2, key_dim = 2, use_gate = TRUE, use_bias = FALSE)
  check_all_gradients(mha, list(query = rand_array(2, 3, 4), value = rand_array(2, 4, 4)))
  set.seed(16)
  mha <- new_f64(num_heads = 2, key_dim = 2, value_dim = 3, use_gate = TRUE)
  check_all_gradients(mha, list(query = rand_array(1, 3, 4), value = rand_array(1, 4, 2),
                                use_causal_mask = TRUE))
})

test_that("gradients over several attention axes and with a batch-like axis", {
  set.seed(17)
  mha <- new_f64(num_heads = 2, key_dim = 2)  # rank 4: axes (1, 2) jointly
  check_all_gradients(mha, list(query = rand_array(2, 2, 3, 3), value = rand_array(2, 3, 2, 3)))
  set.seed(18)
  mha <- new_f64(num_heads = 2, key_dim = 2, attention_axes = 2)
  mask <- array(runif(2 * 3 * 4 * 2) < 0.7, c(2, 3, 4, 2))
  check_all_gradients(mha, list(query = rand_array(2, 3, 4, 3), value = rand_array(2, 3, 2, 3),
                                attention_mask = mask))
})

test_that("gradients with dropout use the forward pass's mask", {
  set.seed(19)
  cfg_layer <- new_f64(num_heads = 2, key_dim = 3, dropout = 0.3, seed = 5)
  q <- rand_array(2, 4, 5); v <- rand_array(2, 6, 5)
  cfg_layer$build(dim(q), dim(v))
  w <- get_weights(cfg_layer)
  R <- array(rnorm(2 * 4 * 5), c(2, 4, 5))
  # A fresh layer per evaluation makes every call the first training call of
  # a layer with seed 5, so all evaluations share one dropout mask.
  fresh <- function(weights = w) {
    m <- from_config(get_config(cfg_layer))
    m$build(dim(q), dim(v))
    set_weights(m, weights)
    m
  }
  g <- backprop(fresh(), q, v, training = TRUE, grad_output = R)
  loss <- function(qq = q, vv = v, weights = w) sum(fresh(weights)(qq, vv, training = TRUE) * R)
  expect_lt(rel_err(g$grads$query, fd_grad(function(x) loss(qq = x), q)), 1e-6)
  expect_lt(rel_err(g$grads$value, fd_grad(function(x) loss(vv = x), v)), 1e-6)
  for (i in c(1, 5, 7)) {
    num <- fd_grad(function(x) { w2 <- w; w2[[i]] <- x; loss(weights = w2) }, w[[i]])
    expect_lt(rel_err(g$grads$weights[[i]], num), 1e-6)
  }
  # and dropout really changed the result
  no_drop <- backprop(fresh(), q, v, training = FALSE, grad_output = R)
  expect_gt(rel_err(g$output, no_drop$output), 1e-3)
})

# Counts the calls of multihead's internal functions `fns` while running `expr`.
count_internal_calls <- function(fns, expr) {
  counts <- new.env()
  for (f in fns) assign(f, 0L, envir = counts)
  ns <- asNamespace("multihead")
  for (f in fns) {
    tracer <- bquote(assign(.(f), get(.(f), envir = .(counts)) + 1L, envir = .(counts)))
    suppressMessages(trace(f, tracer = tracer, where = ns, print = FALSE))
  }
  on.exit(for (f in fns) suppressMessages(untrace(f, where = ns)))
  force(expr)
  mget(fns, envir = counts)
}

test_that("a model's training backward differentiates the forward's record (one forward per step)", {
  set.seed(23)
  layer_args <- list(num_heads = 2, key_dim = 3, dropout = 0.3, seed = 5, dtype = "float64")
  x <- rand_array(2, 4, 5)
  make <- function(weights = NULL) {
    inp <- keras_input(c(4, 5), dtype = "float64")
    mha <- do.call(layer_multi_head_attention, layer_args)
    m <- keras_model(inp, mha(inp, inp))
    if (!is.null(weights)) set_weights(m, weights)
    m
  }
  w <- get_weights(make())
  R <- array(rnorm(2 * 4 * 5), c(2, 4, 5))
  m <- make(w)
  n <- count_internal_calls(c("cpp_mha_call", "cpp_mha_backward"),
                            g <- backprop(m, x, training = TRUE, grad_output = R))
  expect_identical(n, list(cpp_mha_call = 1L, cpp_mha_backward = 1L))
  # the same numbers as the layer's fused forward + backward with the same
  # (first) dropout stream
  layer <- do.call(layer_multi_head_attention, layer_args)
  layer$build(dim(x), dim(x))
  set_weights(layer, w)
  gl <- backprop(layer, x, x, training = TRUE, grad_output = R)
  expect_lt(rel_err(g$output, gl$output), 1e-14)
  gx <- if (is.list(g$grads$inputs)) g$grads$inputs[[1]] else g$grads$inputs
  expect_lt(rel_err(gx, gl$grads$query + gl$grads$value), 1e-14)
  for (i in seq_along(w)) expect_lt(rel_err(g$grads$weights[[i]], gl$grads$weights[[i]]), 1e-14)
  # and against finite differences of the training loss (fresh models: the
  # first training call each, so one dropout mask)
  loss <- function(xx = x, weights = w) sum(make(weights)(xx, training = TRUE) * R)
  expect_lt(rel_err(gx, fd_grad(function(z) loss(xx = z), x)), 1e-6)
  for (i in c(1, 7)) {
    num <- fd_grad(function(z) { w2 <- w; w2[[i]] <- z; loss(weights = w2) }, w[[i]])
    expect_lt(rel_err(g$grads$weights[[i]], num), 1e-6)
  }
})

test_that("with an activity regularizer a training step projects the inputs once", {
  set.seed(24)
  inp <- keras_input(c(4, 5), dtype = "float64")
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 3, dtype = "float64",
                                    activity_regularizer = regularizer_l2(0.01))
  m <- keras_model(inp, mha(inp, inp))
  compile(m, optimizer = optimizer_sgd(0.01), loss = "mse")
  x <- rand_array(2, 4, 5); y <- rand_array(2, 4, 5)
  n <- count_internal_calls("einsum_dense_call",
                            fit(m, x, y, epochs = 1, batch_size = 2, verbose = 0))
  expect_identical(n$einsum_dense_call, 3L)  # query, key, value: once each
})
