# Every fixture (PyTorch port of Keras, float64): output, scores and every
# gradient, in float64 (relative error < 1e-9) and float32 (< 3e-5).

tolerance_for <- function(dtype) if (dtype == "float64") 1e-9 else 3e-5

for (nm in fixture_names()) {
  for (dtype in c("float64", "float32")) {
    test_that(sprintf("fixture %s matches in %s", nm, dtype), {
      fx <- fx_read(nm)
      tol <- tolerance_for(dtype)
      mha <- fixture_layer(fx, dtype)
      causal <- isTRUE(fx$call$use_causal_mask)
      # key passed explicitly: gradients per call argument, as stored.
      res <- backprop(mha, fx$inputs$query, fx$inputs$value, fx$inputs$key,
                      attention_mask = fx$inputs$attention_mask, use_causal_mask = causal,
                      return_attention_scores = TRUE, grad_output = fx$R)
      expect_equal(dim(res$output), dim(fx$expected$output))
      expect_lt(rel_err(res$output, fx$expected$output), tol)
      expect_equal(dim(res$scores), dim(fx$expected$attention_scores))
      expect_lt(rel_err(res$scores, fx$expected$attention_scores), tol)
      for (input in c("query", "key", "value")) {
        expect_lt(rel_err(res$grads[[input]], fx$grads[[input]]), tol)
      }
      wg <- unname(res$grads$weights)
      present <- weight_names[!vapply(fx$weights[weight_names], is.null, logical(1))]
      expect_length(wg, length(present))
      scale <- max(abs(fx$grads$query_kernel))
      for (i in seq_along(present)) {
        expected <- fx$grads[[present[i]]]
        expect_equal(dim(wg[[i]]), dim(expected))
        if (present[i] == "key_bias") {
          # analytically zero: absolute tolerance
          expect_lt(max(abs(wg[[i]] - expected)), tol * scale)
        } else {
          expect_lt(rel_err(wg[[i]], expected), tol, label = present[i])
        }
      }
      # plain call (flash path) equals the backprop forward to rounding; on
      # the materialised path, bit for bit
      plain <- function() mha(fx$inputs$query, fx$inputs$value, fx$inputs$key,
                              attention_mask = fx$inputs$attention_mask, use_causal_mask = causal)
      expect_lt(rel_err(plain(), res$output), tol)
      old <- config_disable_flash_attention()
      on.exit(if (old) config_enable_flash_attention())
      expect_identical(plain(), res$output)
    })
  }
}

test_that("key omitted: the value's gradient includes its use as key", {
  checked <- 0
  for (nm in fixture_names()) {
    fx <- fx_read(nm)
    if (!isTRUE(fx$call$key_is_value)) next
    checked <- checked + 1
    mha <- fixture_layer(fx)
    res <- backprop(mha, fx$inputs$query, fx$inputs$value,
                    attention_mask = fx$inputs$attention_mask,
                    use_causal_mask = isTRUE(fx$call$use_causal_mask), grad_output = fx$R)
    expect_null(res$grads$key)
    expect_lt(rel_err(res$grads$value, fx$grads$value + fx$grads$key), 1e-9)
    expect_lt(rel_err(res$output, fx$expected$output), 1e-9)
  }
  expect_gte(checked, 3)
})

test_that("self-attention through `inputs` equals layer(x, x)", {
  fx <- fx_read("self_causal")
  mha <- fixture_layer(fx)
  x <- fx$inputs$query
  a <- mha(x, x, use_causal_mask = TRUE)
  expect_lt(rel_err(a, fx$expected$output), 1e-9)
  b <- layer_multi_head_attention(list(query = x, value = x, use_causal_mask = TRUE),
                                  num_heads = 2, key_dim = 4, dtype = "float64",
                                  kernel_initializer = "zeros")
  expect_equal(dim(b), dim(x))
})
