# The torch <-> Keras weight conversion shown in the vignette "Coming from
# keras3 and torch" (functions copied into helper-torch-layout.R): weights
# converted from torch's layout, set on a multihead layer, give torch's
# numbers computed by torch_mha_formula() from the original matrices, and
# PyTorch's own nn.MultiheadAttention (fixtures/torch-layout/torch-mha.json).

new_torch_like_layer <- function(e, n, t_len, s_len, dtype = "float64") {
  layer <- layer_multi_head_attention(num_heads = n, key_dim = e / n, dtype = dtype)
  layer$build(c(2, t_len, e), c(2, s_len, e))
  layer
}

weight_shape <- function(w) as.integer(if (is.null(dim(w))) length(w) else dim(w))

test_that("converted torch weights have the shapes and order of get_weights()", {
  set.seed(11)
  for (cfg in list(c(8, 2), c(12, 3), c(6, 1), c(4, 4))) {
    layer <- new_torch_like_layer(cfg[1], cfg[2], 3, 3)
    converted <- torch_to_keras_mha(random_torch_mha_state(cfg[1]), cfg[2])
    expect_identical(lapply(converted, weight_shape), lapply(get_weights(layer), weight_shape))
  }
})

test_that("a layer with converted torch weights computes torch's attention (float64)", {
  set.seed(12)
  e <- 12; n <- 3
  state <- random_torch_mha_state(e)
  query <- array(rnorm(2 * 5 * e), c(2, 5, e))
  memory <- array(rnorm(2 * 7 * e), c(2, 7, e))
  padding <- matrix(FALSE, 2, 7)
  padding[1, 5:7] <- TRUE
  padding[2, 2] <- TRUE
  layer <- new_torch_like_layer(e, n, 5, 7)
  set_weights(layer, torch_to_keras_mha(state, n))
  ref <- torch_mha_formula(query, memory, memory, state, n, key_padding_mask = padding)
  res <- layer(query, memory, value_mask = !padding, return_attention_scores = TRUE)
  expect_lt(max(abs(res$output - ref$output)), 1e-12)
  expect_lt(max(abs(res$scores - ref$weights)), 1e-12)
  # torch's default head-averaged weights (B, T, S)
  expect_lt(max(abs(apply(res$scores, c(1, 3, 4), mean) - apply(ref$weights, c(1, 3, 4), mean))), 1e-12)
  # separate key and value inputs: torch (query, key, value), Keras (query, value, key)
  keys <- array(rnorm(2 * 7 * e), c(2, 7, e))
  expect_lt(max(abs(layer(query, memory, keys) -
                      torch_mha_formula(query, keys, memory, state, n)$output)), 1e-12)
})

# Self-attention on x: largest difference between a multihead layer holding
# torch_to_keras_mha(layer_state) and torch's formula with torch_state.
self_attention_gap <- function(layer_state, torch_state, n, x, dtype = "float64") {
  layer <- new_torch_like_layer(dim(x)[3], n, dim(x)[2], dim(x)[2], dtype = dtype)
  set_weights(layer, torch_to_keras_mha(layer_state, n))
  max(abs(layer(x, x) - torch_mha_formula(x, x, x, torch_state, n)$output))
}

test_that("the conversion matches torch in float32 to rounding", {
  set.seed(13)
  state <- random_torch_mha_state(8)
  x <- array(rnorm(3 * 6 * 8), c(3, 6, 8))
  expect_lt(self_attention_gap(state, state, 2, x, dtype = "float32"), 1e-5)
})

test_that("the block order of in_proj_weight matters (the reference is sensitive to it)", {
  set.seed(14)
  e <- 8
  state <- random_torch_mha_state(e)
  swapped <- state
  swapped$in_proj_weight <- state$in_proj_weight[c(e + 1:e, 1:e, 2 * e + 1:e), ]
  x <- array(rnorm(2 * 4 * e), c(2, 4, e))
  expect_lt(self_attention_gap(state, state, 2, x), 1e-12)
  expect_gt(self_attention_gap(swapped, state, 2, x), 1e-3)
})

test_that("torch -> Keras -> torch and Keras -> torch -> Keras are exact round trips", {
  set.seed(15)
  e <- 12; n <- 4
  state <- random_torch_mha_state(e)
  expect_identical(keras_to_torch_mha(torch_to_keras_mha(state, n)), state)
  layer <- new_torch_like_layer(e, n, 3, 3)
  keras_weights <- get_weights(layer)          # glorot-initialised, zero biases
  keras_weights[c(2, 4, 6)] <- lapply(keras_weights[c(2, 4, 6)], function(b) b + rnorm(length(b)))
  back <- torch_to_keras_mha(keras_to_torch_mha(keras_weights), n)
  for (i in seq_along(back)) expect_equal(as.vector(back[[i]]), as.vector(keras_weights[[i]]), tolerance = 0)
  expect_identical(lapply(back[1:7], dim), lapply(keras_weights[1:7], dim))
})

test_that("converted weights reproduce torch.nn.MultiheadAttention itself (PyTorch fixture)", {
  # fixtures/torch-layout/torch-mha.json: written by make-torch-mha.py in the
  # same folder with PyTorch 1.13, float64, batch_first = TRUE.
  fx <- jsonlite::fromJSON(file.path(fixture_dir(), "torch-layout", "torch-mha.json"),
                           simplifyVector = TRUE, simplifyDataFrame = FALSE, simplifyMatrix = FALSE)
  state <- lapply(fx$state_dict, fx_array)
  state <- lapply(state, function(w) if (length(dim(w)) == 1L) as.vector(w) else w)
  inputs <- lapply(fx$inputs, fx_array)
  n <- fx$num_heads
  expect_identical(dim(state$in_proj_weight), c(24L, 8L))
  ignore <- inputs$key_padding_mask                             # torch: TRUE = ignore
  expected_output <- fx_array(fx$expected$output)
  expected_weights <- fx_array(fx$expected$attn_weights)

  # the plain-R formula of the vignette is torch's
  ref <- torch_mha_formula(inputs$query, inputs$key, inputs$value, state, n, key_padding_mask = ignore)
  expect_lt(max(abs(ref$output - expected_output)), 1e-12)
  expect_lt(max(abs(ref$weights - expected_weights)), 1e-12)

  # a multihead layer holding the converted weights gives torch's numbers
  layer <- layer_multi_head_attention(num_heads = n, key_dim = 8 / n, dtype = "float64")
  layer$build(dim(inputs$query), dim(inputs$value), dim(inputs$key))
  set_weights(layer, torch_to_keras_mha(state, n))
  res <- layer(inputs$query, inputs$value, inputs$key, value_mask = !ignore, key_mask = !ignore,
               return_attention_scores = TRUE)
  expect_lt(max(abs(res$output - expected_output)), 1e-12)
  expect_lt(max(abs(res$scores - expected_weights)), 1e-12)
  expect_identical(keras_to_torch_mha(get_weights(layer)), state)
})
