# The MultiHeadAttention layer keeps its weights converted for the core (an
# external pointer cached with its weight slots): new weights, saveRDS() and
# pointers made for other weights must never let a call use stale values.

core_ptr <- function(mha, float64 = FALSE) {
  attr(multihead:::layer_self(mha)$weight_cache, if (float64) "core_float64" else "core_float32",
       exact = TRUE)
}

make_case <- function(dtype = "float64") {
  set.seed(3)
  q <- rand_array(2, 5, 6); v <- rand_array(2, 4, 6)
  w <- random_weights(6, 6, 6, 2, 3, 3, 6)
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 3, dtype = dtype)
  mha$build(dim(q), dim(v))
  set_weights(mha, w$ordered)
  list(mha = mha, q = q, v = v, w = w)
}

test_that("the converted weights are made once and reused while the weights stay", {
  x <- make_case()
  out1 <- x$mha(x$q, x$v)
  p1 <- core_ptr(x$mha, TRUE)
  expect_true(multihead:::cpp_core_weights_alive(p1))
  out2 <- x$mha(x$q, x$v)
  expect_identical(core_ptr(x$mha, TRUE), p1)  # the same pointer, not a new conversion
  expect_identical(out2, out1)
  ref <- ref_mha(x$q, x$v, weights = x$w$ref, num_heads = 2, key_dim = 3)$output
  expect_lt(rel_err(out1, ref), 1e-12)
})

test_that("new weights (set_weights, training) are used by the next call", {
  x <- make_case()
  invisible(x$mha(x$q, x$v))
  w2 <- random_weights(6, 6, 6, 2, 3, 3, 6)
  set_weights(x$mha, w2$ordered)
  expect_null(core_ptr(x$mha, TRUE))  # dropped with the slot cache
  ref2 <- ref_mha(x$q, x$v, weights = w2$ref, num_heads = 2, key_dim = 3)$output
  expect_lt(rel_err(x$mha(x$q, x$v), ref2), 1e-12)
  # a training step through a model changes the weights: the next call sees it
  inp <- keras_input(shape = c(5, 6))
  model <- keras_model(inp, x$mha(inp, inp))
  compile(model, optimizer = "sgd", loss = "mse")
  before <- predict(model, x$q, verbose = 0)
  fit(model, x$q, array(0, dim(x$q)), epochs = 1, batch_size = 2, verbose = 0)
  after <- predict(model, x$q, verbose = 0)
  expect_false(isTRUE(all.equal(before, after)))
  ref3 <- ref_mha(x$q, x$q, weights = {
    ws <- get_weights(x$mha)
    names(ws) <- c("query_kernel", "query_bias", "key_kernel", "key_bias", "value_kernel",
                   "value_bias", "output_kernel", "output_bias")
    ws
  }, num_heads = 2, key_dim = 3)$output
  expect_lt(rel_err(after, ref3), 1e-12)
})

test_that("a layer read back by readRDS() rebuilds its converted weights", {
  x <- make_case("float32")
  out <- x$mha(x$q, x$v)
  f <- tempfile(fileext = ".rds")
  on.exit(unlink(f))
  saveRDS(x$mha, f)
  back <- readRDS(f)
  expect_false(multihead:::cpp_core_weights_alive(core_ptr(back)))  # a null pointer now
  expect_identical(back(x$q, x$v), out)
  expect_true(multihead:::cpp_core_weights_alive(core_ptr(back)))
})

test_that("the glue ignores converted weights made for other weights or another type", {
  x <- make_case()
  self <- multihead:::layer_self(x$mha)
  slots <- multihead:::mha_weight_slots(self)
  good <- x$mha(x$q, x$v)
  other <- make_case()
  # converted weights of another shape (3 heads of 2): ignored, the call converts its own
  wrong <- multihead:::cpp_mha_core_weights(
    multihead:::mha_weight_slots(multihead:::layer_self(
      { m <- layer_multi_head_attention(num_heads = 3, key_dim = 2); m$build(c(2, 5, 6), c(2, 4, 6)); m })),
    TRUE)
  attr(slots, "core_float64") <- wrong
  self$weight_cache <- slots
  # the cache's pointer is alive and of the right type, so R keeps it; the glue
  # must see that its slot sizes differ and convert instead
  expect_identical(x$mha(x$q, x$v), good)
  # a float32 pointer offered to a float64 layer: ignored
  attr(slots, "core_float64") <- multihead:::cpp_mha_core_weights(slots, FALSE)
  self$weight_cache <- slots
  expect_identical(x$mha(x$q, x$v), good)
  expect_false(multihead:::cpp_core_weights_alive(1))
  expect_error(multihead:::cpp_mha_core_weights(list(1), TRUE), "10 weight slots")
})
