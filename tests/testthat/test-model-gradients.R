# backprop() of whole models, checked against central finite differences in
# float64: every model input and every weight, with residual connections
# (gradients summed where a tensor fans out), shared layers (gradients summed
# over calls), nested models and dropout (the backward pass reuses the
# forward pass's dropout masks).

# Checks backprop(model, x, grad_output = R) against finite differences of
# L = sum(output * R) (summed over outputs). `reset` is called before every
# evaluation (to replay dropout masks); `tol` is a norm-wise relative error.
# eps = 1e-5 keeps the rounding error of the differences (about 1e-16 |L| /
# eps) well below tol where layer normalization makes some gradients small.
# One thread: the hundreds of tiny calls are faster without thread start-up
# (results do not depend on the thread count).
check_model_gradients <- function(model, x, training = FALSE, reset = function() NULL, tol = 1e-6, eps = 1e-5) {
  old_threads <- set_num_threads(1)
  on.exit(set_num_threads(old_threads), add = TRUE)
  reset()
  out0 <- model(x, training = training)
  outs <- if (is.list(out0)) out0 else list(out0)
  R <- lapply(outs, function(o) array(rnorm(length(o)), dim(o)))
  loss <- function(xv) {
    reset()
    o <- model(xv, training = training)
    o <- if (is.list(o)) o else list(o)
    sum(mapply(function(a, b) sum(a * b), o, R))
  }
  reset()
  g <- backprop(model, x, training = training, grad_output = if (is.list(out0)) R else R[[1]])
  expect_equal(g$output, out0)
  xs <- if (is.list(x)) x else list(x)
  expect_length(g$grads$inputs, length(xs))
  for (i in seq_along(xs)) {
    if (!is.double(xs[[i]]) || is.null(g$grads$inputs[[i]])) next
    num <- fd_grad(function(v) {
      xx <- xs; xx[[i]] <- v
      loss(if (is.list(x)) stats::setNames(xx, names(x)) else xx[[1]])
    }, xs[[i]], eps)
    expect_lt(rel_err(g$grads$inputs[[i]], num), tol, label = paste("input", i))
  }
  w <- get_weights(model)
  expect_identical(length(g$grads$weights), length(w))
  expect_identical(names(g$grads$weights), names(model$weights))
  for (j in seq_along(w)) {
    num <- fd_grad(function(v) {
      w2 <- w; w2[[j]] <- v
      set_weights(model, w2)
      on.exit(set_weights(model, w))
      loss(x)
    }, w[[j]], eps)
    if (max(abs(num)) < 1e-8) {
      expect_lt(max(abs(g$grads$weights[[j]] - num)), 1e-8, label = names(g$grads$weights)[j])
    } else {
      expect_lt(rel_err(g$grads$weights[[j]], num), tol, label = names(g$grads$weights)[j])
    }
  }
  invisible(g)
}

test_that("gradients of a model with residuals, a shared layer, arithmetic and two inputs", {
  set.seed(41)
  x <- keras_input(shape = c(4, 5), dtype = "float64")
  mem <- keras_input(shape = c(3, 2), dtype = "float64")
  shared <- mha64(num_heads = 2, key_dim = 2)
  cross <- mha64(num_heads = 1, key_dim = 3)
  h <- shared(x, x) + x                      # x fans out to query, value and the residual
  h2 <- cross(h, mem) * 0.5 - h / 3
  y <- shared(h2, h2, use_causal_mask = TRUE)  # second call of the shared layer
  model <- keras_model(list(x = x, memory = mem), y)
  g <- check_model_gradients(model, list(x = rand_array(2, 4, 5), memory = rand_array(2, 3, 2)))
  expect_identical(names(g$grads$inputs), c("x", "memory"))
  expect_length(g$grads$weights, 16L)
})

test_that("gradients of a transformer encoder block: embedding masks, residuals, layer norm, pooling", {
  set.seed(44)
  E <- 6
  ids <- keras_input(shape = 5, dtype = "int32", name = "ids")
  x <- layer_embedding(ids, input_dim = 7, output_dim = E, mask_zero = TRUE, dtype = "float64",
                       embeddings_initializer = "random_normal")
  att <- mha64(x, num_heads = 2, key_dim = 3)                 # self-attention with the padding mask
  h <- layer_layer_normalization(x + att, dtype = "float64", gamma_initializer = "random_normal",
                                 beta_initializer = "random_normal")
  ff <- h |>
    layer_dense(8, activation = "gelu", dtype = "float64", bias_initializer = "random_normal") |>
    layer_dense(E, dtype = "float64", bias_initializer = "random_normal")
  out <- layer_layer_normalization(layer_add(h, ff, dtype = "float64"), dtype = "float64")
  pooled <- layer_global_average_pooling_1d(out, dtype = "float64")   # mean over unmasked steps
  logits <- layer_dense(pooled, 2, dtype = "float64")
  model <- keras_model(ids, logits, name = "encoder_classifier")
  id_values <- rbind(c(3, 1, 4, 0, 0), c(2, 6, 5, 3, 1), c(1, 0, 0, 0, 0))
  g <- check_model_gradients(model, id_values, tol = 1e-6)
  expect_null(g$grads$inputs$ids)                              # integer ids: not differentiable
  emb_grad <- g$grads$weights[[1]]
  expect_identical(dim(emb_grad), c(7L, 6L))
  expect_identical(emb_grad[1, ], rep(0, E))                   # padding id 0 never reaches the output
  expect_true(all(emb_grad[5, ] != 0))                         # id 4 is used
  # padding really is ignored: changing the ids under the mask changes nothing
  other <- id_values
  other[1, 4:5] <- 0
  expect_equal(model(other), model(id_values))
})

test_that("gradients through dropout reuse the forward pass's masks", {
  set.seed(42)
  x <- keras_input(shape = c(5, 4), dtype = "float64")
  drop <- mha64(num_heads = 2, key_dim = 2, dropout = 0.4)
  model <- keras_model(x, drop(x, x) + x)
  s <- multihead:::layer_self(drop)
  c0 <- s$call_counter
  xa <- rand_array(2, 5, 4)
  check_model_gradients(model, xa, training = TRUE, reset = function() s$call_counter <- c0)
  # dropout is really active: two training calls differ, inference calls agree
  expect_false(isTRUE(all.equal(model(xa, training = TRUE), model(xa, training = TRUE))))
  expect_identical(model(xa), model(xa))
})

test_that("gradients of nested models, several outputs and an unused branch", {
  set.seed(43)
  q <- keras_input(shape = c(3, 4), dtype = "float64")
  v <- keras_input(shape = c(2, 4), dtype = "float64")
  inner <- keras_model(list(q, v), mha64(list(q, v), num_heads = 2, key_dim = 2) + q)
  q2 <- keras_input(shape = c(3, 4), dtype = "float64")
  v2 <- keras_input(shape = c(2, 4), dtype = "float64")
  att <- mha64(num_heads = 1, key_dim = 2)
  res <- att(inner(list(q2, v2)), v2, return_attention_scores = TRUE)
  model <- keras_model(list(q2, v2), list(main = res$output, doubled = 2 * res$output))
  check_model_gradients(model, list(rand_array(2, 3, 4), rand_array(2, 2, 4)))
  # gradients into attention scores are refused rather than silently dropped
  with_scores <- keras_model(list(q2, v2), res)
  out <- with_scores(list(rand_array(1, 3, 4), rand_array(1, 2, 4)))
  zero <- lapply(out, function(o) array(0, dim(o)))
  expect_silent(backprop(with_scores, list(rand_array(1, 3, 4), rand_array(1, 2, 4)), grad_output = zero))
  bad <- zero; bad$scores[] <- 1
  expect_error(backprop(with_scores, list(rand_array(1, 3, 4), rand_array(1, 2, 4)), grad_output = bad),
               "Gradients with respect to attention scores are not supported")
  # an input that does not reach the output gets a zero gradient
  z <- keras_input(shape = c(3, 4), dtype = "float64")
  partial <- keras_model(list(q2, z), att(q2, q2))
  gp <- backprop(partial, list(rand_array(1, 3, 4), rand_array(1, 3, 4)), grad_output = rand_array(1, 3, 4))
  expect_identical(gp$grads$inputs[[2]], array(0, c(1, 3, 4)))
})

test_that("backprop() of a model checks its arguments", {
  x <- keras_input(shape = c(2, 3))
  m <- keras_model(x, list(a = x * 2, b = x + 1))
  xa <- rand_array(1, 2, 3)
  g <- array(1, c(1, 2, 3))
  expect_error(backprop(m, xa), "`grad_output` must be supplied")
  expect_error(backprop(m, grad_output = g), "`x` must be supplied")
  expect_error(backprop(m, xa, grad_output = g), "`grad_output` must be a list of 2 arrays")
  expect_error(backprop(m, xa, grad_output = list(a = g, c = g)), "`grad_output` must be a list named a, b")
  expect_error(backprop(m, xa, grad_output = list(a = g, b = g[, , 1:2, drop = FALSE])),
               "`grad_output\\$b` must be a numeric array of the output's shape \\(1, 2, 3\\)")
  expect_error(backprop(m, xa, grad_output = list(g, g * NA)), "`grad_output\\[\\[2\\]\\]` must be finite")
  expect_error(backprop(m, xa, training = NA, grad_output = list(g, g)), "`training` must be TRUE or FALSE")
  r <- backprop(m, xa, grad_output = list(b = g, a = g))
  expect_equal(r$grads$inputs[[1]], 3 * g)
  expect_length(r$grads$weights, 0L)
})
