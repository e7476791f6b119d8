# The glue's converted-weight cache (src/glue_weight_cache.h): never serves
# weights a layer no longer has, and does not outlive its layers.

test_that("a layer's new weights are used at once, eagerly and after fit()", {
  set.seed(3)
  x <- array(rnorm(2 * 4 * 6), c(2, 4, 6))
  d <- layer_dense(units = 5)
  y1 <- d(x)
  s0 <- multihead:::cpp_weight_cache_stats()
  expect_identical(d(x), y1)  # the second call finds the converted kernel
  s1 <- multihead:::cpp_weight_cache_stats()
  expect_equal(s1[["hits"]] - s0[["hits"]], 1)
  expect_equal(s1[["misses"]] - s0[["misses"]], 0)
  w <- get_weights(d)
  expect_equal(y1, ref_dense(x, w[[1]], w[[2]]), tolerance = 1e-6)
  w[[1]] <- w[[1]] * 2
  set_weights(d, w)
  expect_equal(d(x), ref_dense(x, w[[1]], w[[2]]), tolerance = 1e-6)
  e <- layer_embedding(input_dim = 7, output_dim = 3)
  ids <- matrix(c(0L, 3L, 6L, 2L), 2)
  e1 <- e(ids)
  t2 <- get_weights(e)[[1]] + 1
  set_weights(e, list(t2))
  expect_equal(e(ids)[2, 1, ], t2[4, ], tolerance = 1e-6)  # ids[2, 1] = 3: row 4
  expect_equal(e(ids) - e1, array(1, dim(e1)), tolerance = 1e-6)

  m <- keras_model_sequential(input_shape = c(4, 6)) |> layer_dense(8, activation = "relu") |> layer_dense(1)
  compile(m, optimizer = "adam", loss = "mse")
  before <- predict(m, x, verbose = 0)
  fit(m, array(rnorm(32 * 24), c(32, 4, 6)), array(rnorm(32 * 4), c(32, 4, 1)), epochs = 2, verbose = 0)
  wm <- get_weights(m)
  h <- pmax(ref_dense(x, wm[[1]], wm[[2]]), 0)
  expect_equal(predict(m, x, verbose = 0), ref_dense(h, wm[[3]], wm[[4]]), tolerance = 1e-5)
  expect_false(isTRUE(all.equal(predict(m, x, verbose = 0), before)))
})

test_that("the cache lets go of layers R has collected", {
  x <- array(rnorm(16), c(1, 1, 16))
  invisible(gc())
  invisible(layer_dense(units = 4)(x))
  before <- multihead:::cpp_weight_cache_stats()[["entries"]]  # other tests' layers may be alive
  for (i in 1:30) {
    d <- layer_dense(units = 4)
    invisible(d(x))
    rm(d)
    invisible(gc())
  }
  invisible(layer_dense(units = 4)(x))  # an insertion drops the collected layers' entries
  expect_lte(multihead:::cpp_weight_cache_stats()[["entries"]], before + 2)
})

test_that("the cache lets go of a layer's old weight arrays while the layer lives", {
  # a training step gives a layer new weight arrays; a replaced entry must not
  # keep the old one alive (R's weak reference holds its value while its key,
  # the layer, lives): 40 steps of a 256 x 256 kernel would keep 20 MB
  set.seed(4)
  m <- keras_model_sequential(input_shape = 256) |> layer_dense(256) |> layer_dense(1)
  compile(m, optimizer = optimizer_sgd(learning_rate = 1e-4), loss = "mse")
  x <- matrix(rnorm(4 * 256), 4)
  y <- matrix(rnorm(4), 4)
  vcells_mb <- function() { invisible(gc()); gc()[2, 2] }
  fit(m, x, y, batch_size = 4, epochs = 2, verbose = 0)
  before <- vcells_mb()
  fit(m, x, y, batch_size = 4, epochs = 40, verbose = 0)
  expect_lt(vcells_mb() - before, 4)
  expect_equal(predict(m, x, verbose = 0),
               ref_dense(ref_dense(x, get_weights(m)[[1]], get_weights(m)[[2]]),
                         get_weights(m)[[3]], get_weights(m)[[4]]), tolerance = 1e-5)
})
