# keras3's R test of the layer (tests/testthat/test-layer-attention.R, see
# section C of keras-mha-tests.md), ported, including the part keras3 skips
# ("MultiHeadAttention upstream bug": Keras's symbolic scores shape is
# (NULL, 2, 8, 8)); here the scores are (NA, 2, 8, 4) as the eager call gives.

test_that("multi_head_attention (keras3 test, including the skipped part)", {
  expect_no_error({
    layer <- layer_multi_head_attention(num_heads = 2, key_dim = 2, name = "hello")
    target <- layer_input(shape = c(8, 16))
    source <- layer_input(shape = c(4, 16))
  })
  expect_equal(layer$name, "hello")

  # the part keras3 skips
  res <- layer(target, source, return_attention_scores = TRUE)
  output_tensor <- res[[1]]
  weights <- res[[2]]
  expect_equal(output_tensor$shape, c(NA, 8L, 16L))
  expect_equal(weights$shape, c(NA, 2L, 8L, 4L))

  # and the same through a model on arrays
  model <- keras_model(list(target, source), list(output_tensor, weights))
  out <- model(list(array(runif(3 * 8 * 16), c(3, 8, 16)), array(runif(3 * 4 * 16), c(3, 4, 16))))
  expect_equal(dim(out[[1]]), c(3L, 8L, 16L))
  expect_equal(dim(out[[2]]), c(3L, 2L, 8L, 4L))
  expect_equal(apply(out[[2]], c(1, 2, 3), sum), array(1, c(3, 2, 8)), tolerance = 1e-6)
})
