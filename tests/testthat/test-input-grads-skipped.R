# A training step does not need the gradients of the model's inputs:
# run_graph_backward(input_grads = FALSE) lets the layers that can (attention,
# dense, einsum dense, nested models) skip them. The weight gradients must be
# exactly those of a backward pass that computes everything.

backward_both_ways <- function(model, xs, input_grads) {
  g <- NULL
  graph <- multihead:::layer_self(model)$graph
  runs <- lapply(1:2, function(i) multihead:::run_graph_forward(graph, xs, training = TRUE, keep = TRUE))
  out <- runs[[1]]$outputs[[1]]
  set.seed(5)
  g <- array(rnorm(length(out)), dim(out))
  full <- multihead:::run_graph_backward(graph, runs[[1]], list(g), input_grads = TRUE)
  part <- multihead:::run_graph_backward(graph, runs[[2]], list(g), input_grads = input_grads)
  list(full = full, part = part)
}

expect_same_weight_grads <- function(res) {
  keys <- sort(ls(res$full$weights))
  expect_true(length(keys) > 0)
  expect_identical(sort(ls(res$part$weights)), keys)
  for (k in keys) expect_identical(res$part$weights[[k]], res$full$weights[[k]], info = k)
}

test_that("self-attention on the model's input: same weight gradients, no input gradient", {
  set.seed(1)
  for (dtype in c("float32", "float64")) {
    for (flash in c(TRUE, FALSE)) {
      inp <- keras_input(shape = c(6, 8), dtype = dtype)
      a <- layer_multi_head_attention(num_heads = 2, key_dim = 4, dtype = dtype, flash_attention = flash)
      h <- layer_add(list(inp, a(inp, inp)), dtype = dtype)
      m <- keras_model(inp, h |> layer_dense(3, dtype = dtype))
      x <- array(rnorm(3 * 6 * 8), c(3, 6, 8))
      res <- backward_both_ways(m, list(x), FALSE)
      expect_same_weight_grads(res)
      expect_null(res$part$inputs[[1]])
      expect_equal(dim(res$full$inputs[[1]]), dim(x))
    }
  }
})

test_that("cross-attention and a dense branch with one of two inputs wanted", {
  set.seed(2)
  q <- keras_input(shape = c(5, 6))
  v <- keras_input(shape = c(7, 4))
  k <- keras_input(shape = c(7, 3))
  att <- layer_multi_head_attention(num_heads = 2, key_dim = 3)(q, v, k)
  m <- keras_model(list(q, v, k), layer_add(list(att, layer_dense(q, 6))) |> layer_einsum_dense("abc,cd->abd", c(NA, 2)))
  xs <- list(array(rnorm(2 * 5 * 6), c(2, 5, 6)), array(rnorm(2 * 7 * 4), c(2, 7, 4)),
             array(rnorm(2 * 7 * 3), c(2, 7, 3)))
  res <- backward_both_ways(m, xs, c(FALSE, TRUE, FALSE))
  expect_same_weight_grads(res)
  expect_null(res$part$inputs[[1]])
  expect_identical(res$part$inputs[[2]], res$full$inputs[[2]])
  expect_null(res$part$inputs[[3]])
  res <- backward_both_ways(m, xs, c(TRUE, FALSE, FALSE))
  expect_identical(res$part$inputs[[1]], res$full$inputs[[1]])
  expect_null(res$part$inputs[[2]])
})

test_that("grouped-query attention, a nested model and a dense layer first", {
  set.seed(3)
  inner_in <- keras_input(shape = c(4, 8))
  inner <- keras_model(inner_in, layer_dense(inner_in, 8, activation = "relu"))
  inp <- keras_input(shape = c(4, 8))
  h <- inner(inp)
  h <- layer_group_query_attention(head_dim = 4, num_query_heads = 4, num_key_value_heads = 2)(h, h)
  m <- keras_model(inp, layer_global_average_pooling_1d(h))
  x <- array(rnorm(3 * 4 * 8), c(3, 4, 8))
  res <- backward_both_ways(m, list(x), FALSE)
  expect_same_weight_grads(res)
  expect_null(res$part$inputs[[1]])
})

test_that("the layers skip the input gradient they are told is not needed", {
  set.seed(4)
  d <- layer_dense(units = 3)
  x <- array(rnorm(2 * 5), c(2, 5))
  def <- multihead:::layer_class_def(multihead:::layer_self(d))
  self <- multihead:::layer_self(d)
  fwd <- def$forward(self, x, list(), TRUE, NULL)
  g <- array(1, c(2, 3))
  skipped <- def$backward(self, fwd$cache, g, need_inputs = FALSE)
  full <- def$backward(self, fwd$cache, g, need_inputs = TRUE)
  expect_null(skipped$inputs)
  expect_equal(dim(full$inputs), dim(x))
  expect_identical(skipped$weights, full$weights)

  a <- layer_multi_head_attention(num_heads = 2, key_dim = 2)
  xa <- array(rnorm(2 * 3 * 4), c(2, 3, 4))
  self <- multihead:::layer_self(a)
  def <- multihead:::layer_class_def(self)
  f1 <- def$forward(self, list(query = xa, value = xa), list(), TRUE, NULL)
  f2 <- def$forward(self, list(query = xa, value = xa), list(), TRUE, NULL)
  ga <- array(rnorm(2 * 3 * 4), c(2, 3, 4))
  none <- def$backward(self, f1$cache, ga, need_inputs = c(query = FALSE, value = FALSE))
  all <- def$backward(self, f2$cache, ga, need_inputs = c(query = TRUE, value = TRUE))
  expect_null(none$inputs$query)
  expect_null(none$inputs$value)
  expect_equal(dim(all$inputs$query), dim(xa))
  expect_identical(none$weights, all$weights)
})

test_that("a fit() step equals SGD on the gradients of a full backward pass", {
  set.seed(11)
  inp <- keras_input(shape = c(6, 8), dtype = "float64")
  a <- layer_multi_head_attention(num_heads = 2, key_dim = 4, dtype = "float64")(inp, inp)
  h <- layer_layer_normalization(layer_add(list(inp, a), dtype = "float64"), dtype = "float64")
  m <- keras_model(inp, h |> layer_global_average_pooling_1d(dtype = "float64") |> layer_dense(1, dtype = "float64"))
  compile(m, optimizer = optimizer_sgd(learning_rate = 0.1), loss = "mse")
  x <- array(rnorm(8 * 6 * 8), c(8, 6, 8))
  y <- array(rnorm(8), c(8, 1))
  w0 <- get_weights(m)
  # the reference: MSE's gradient 2 (pred - y) / n through a backward pass that computes everything
  graph <- multihead:::layer_self(m)$graph
  run <- multihead:::run_graph_forward(graph, list(x), training = TRUE, keep = TRUE)
  back <- multihead:::run_graph_backward(graph, run, list(2 * (run$outputs[[1]] - y) / 8), input_grads = TRUE)
  expect_equal(dim(back$inputs[[1]]), dim(x))
  grads <- multihead:::model_weight_grads(multihead:::layer_self(m), back$weights)
  want <- Map(function(w, g) w - 0.1 * g, w0, grads)
  fit(m, x, y, batch_size = 8, epochs = 1, shuffle = FALSE, verbose = 0)
  got <- get_weights(m)
  expect_equal(length(got), length(want))
  for (i in seq_along(got)) expect_equal(unname(got[[i]]), unname(array(want[[i]], dim(got[[i]]))), tolerance = 1e-12)
  expect_false(isTRUE(all.equal(got, w0)))
})
