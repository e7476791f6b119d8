# The flash kernel (tiled online softmax; backward from the saved row
# log-sum-exp) against the materialised kernel: outputs and every gradient
# agree to float rounding, for every mask kind, ragged tile edges, T != S,
# several attention axes, dropout, float64 and float32.

# Runs backprop() on the flash path (global switch on, flash_attention NULL)
# and on the materialised path (switch off), each on a fresh copy of one
# layer (same weights, same seed, same call counter, so the same dropout
# stream). Returns list(flash = , materialised = ).
run_both_paths <- function(layer_args, call_args, dtype = "float64") {
  set.seed(101)
  proto <- do.call(layer_multi_head_attention,
                   c(layer_args, list(dtype = dtype, bias_initializer = "random_normal")))
  dims <- lapply(call_args[c("query", "value", "key")], dim)
  proto$build(dims$query, dims$value, dims$key)
  w <- get_weights(proto)
  out <- do.call(proto, call_args[setdiff(names(call_args), "training")])
  grad_output <- array(rnorm(length(out)), dim(out))
  run <- function(flash) {
    old <- if (flash) config_enable_flash_attention() else config_disable_flash_attention()
    on.exit(if (old) config_enable_flash_attention() else config_disable_flash_attention())
    m <- from_config(get_config(proto))
    m$build(dims$query, dims$value, dims$key)
    set_weights(m, w)
    do.call(backprop, c(list(m), call_args, list(grad_output = grad_output)))
  }
  list(flash = run(TRUE), materialised = run(FALSE))
}

# Every array of the two results (output, input and weight gradients)
# within `tol` relative error.
expect_paths_agree <- function(res, tol) {
  a <- res$flash; b <- res$materialised
  expect_lt(rel_err(a$output, b$output), tol, label = "output")
  for (g in c("query", "value", "key")) {
    expect_lt(rel_err(a$grads[[g]], b$grads[[g]]), tol, label = paste0("d", g))
  }
  expect_identical(names(a$grads$weights), names(b$grads$weights))
  for (nm in names(b$grads$weights)) {
    ga <- a$grads$weights[[nm]]; gb <- b$grads$weights[[nm]]
    if (endsWith(nm, "key/bias")) {  # softmax is shift-invariant: zero up to rounding
      expect_lt(max(abs(ga - gb)), 10 * tol, label = nm)
    } else {
      expect_lt(rel_err(ga, gb), tol, label = nm)
    }
  }
}

tol64 <- 1e-12
tol32 <- 2e-5

test_that("flash equals materialised with ragged tiles, T != S both ways, float64 and float32", {
  set.seed(1)
  # Tiles are 64 queries x 128 keys: 150 and 137, 131 and 260 cross edges.
  for (ts in list(c(150, 137), c(131, 260), c(1, 5), c(70, 3))) {
    q <- rand_array(2, ts[1], 6); v <- rand_array(2, ts[2], 5); k <- rand_array(2, ts[2], 4)
    args <- list(query = q, value = v, key = k)
    expect_paths_agree(run_both_paths(list(num_heads = 2, key_dim = 3, value_dim = 4), args), tol64)
  }
  q <- rand_array(2, 150, 6); v <- rand_array(2, 137, 5)
  res32 <- run_both_paths(list(num_heads = 3, key_dim = 4), list(query = q, value = v),
                          dtype = "float32")
  expect_paths_agree(res32, tol32)
})

test_that("flash equals materialised in float32 with heads 16 and 32 wide (q and v written in place)", {
  # key_dim and value_dim multiples of 16: the packed float kernel writes the
  # query and value projections straight into the flash kernel's buffers;
  # 3 heads, T != S, rows not a multiple of any block.
  set.seed(11)
  q <- rand_array(3, 70, 6); v <- rand_array(3, 45, 5); k <- rand_array(3, 45, 4)
  res <- run_both_paths(list(num_heads = 3, key_dim = 16, value_dim = 32),
                        list(query = q, value = v, key = k), dtype = "float32")
  expect_paths_agree(res, tol32)
})

test_that("flash equals materialised for every mask kind and combinations", {
  set.seed(2)
  B <- 2; T <- 140; S <- 133
  q <- rand_array(B, T, 5); v <- rand_array(B, S, 5)
  L <- list(num_heads = 2, key_dim = 3)
  m2 <- matrix(runif(T * S) < 0.7, T, S)
  m3 <- array(runif(B * T * S) < 0.5, c(B, T, S))
  m4 <- array(runif(B * 2 * T * S) < 0.5, c(B, 2, T, S))
  qmask <- matrix(runif(B * T) < 0.8, B, T)
  vmask <- matrix(runif(B * S) < 0.8, B, S)
  kmask <- matrix(runif(B * S) < 0.8, B, S)
  cases <- list(
    list(attention_mask = m2), list(attention_mask = m3), list(attention_mask = m4),
    list(query_mask = qmask), list(value_mask = vmask), list(key = v, key_mask = kmask),
    list(use_causal_mask = TRUE),
    list(use_causal_mask = TRUE, attention_mask = m3, value_mask = vmask, query_mask = qmask))
  for (extra in cases) {
    expect_paths_agree(run_both_paths(L, c(list(query = q, value = v), extra)), tol64)
  }
  # sliding window alone, and with causal on a self-attention where T > key tile
  x <- rand_array(1, 300, 4)
  for (causal in c(FALSE, TRUE)) {
    expect_paths_agree(run_both_paths(c(L, list(sliding_window = 37)),
                                      list(query = x, value = x, use_causal_mask = causal)), tol64)
  }
  # causal with T > S and T < S (top-left aligned)
  expect_paths_agree(run_both_paths(L, list(query = rand_array(1, 200, 3), value = rand_array(1, 70, 3),
                                            use_causal_mask = TRUE)), tol64)
  expect_paths_agree(run_both_paths(L, list(query = rand_array(1, 70, 3), value = rand_array(1, 200, 3),
                                            use_causal_mask = TRUE)), tol64)
})

test_that("rows with every key masked give the output bias and no gradient on the flash path", {
  set.seed(3)
  B <- 2; T <- 70; S <- 150
  q <- rand_array(B, T, 4); v <- rand_array(B, S, 4)
  mask <- array(runif(B * T * S) < 0.6, c(B, T, S))
  mask[1, 5, ] <- FALSE
  mask[2, 66:70, ] <- FALSE
  vmask <- matrix(TRUE, B, S)
  vmask[2, 1:150] <- FALSE  # batch 2: no key exists at all
  res <- run_both_paths(list(num_heads = 2, key_dim = 3),
                        list(query = q, value = v, attention_mask = mask, value_mask = vmask))
  expect_paths_agree(res, tol64)
  f <- res$flash
  bias <- f$output[1, 5, ]  # the output bias, in every fully masked row
  expect_equal(f$output[2, 1, ], bias, tolerance = 1e-14)
  expect_equal(f$output[2, 70, ], bias, tolerance = 1e-14)
  expect_true(all(f$grads$query[2, , ] == 0))
  expect_true(all(f$grads$value[2, , ] == 0))
  expect_true(all(is.finite(unlist(f$grads))))
})

test_that("flash equals materialised with dropout in training (same dropout stream)", {
  set.seed(4)
  q <- rand_array(2, 90, 5); v <- rand_array(2, 150, 5)
  L <- list(num_heads = 2, key_dim = 3, dropout = 0.3, seed = 9)
  res <- run_both_paths(L, list(query = q, value = v, training = TRUE))
  expect_paths_agree(res, tol64)
  res_c <- run_both_paths(L, list(query = q, value = rand_array(2, 90, 5), training = TRUE,
                                  use_causal_mask = TRUE))
  expect_paths_agree(res_c, tol64)
  # dropout really acted on both paths
  no_drop <- run_both_paths(L, list(query = q, value = v, training = FALSE))
  expect_gt(rel_err(res$flash$output, no_drop$flash$output), 1e-3)
  res32 <- run_both_paths(L, list(query = q, value = v, training = TRUE), dtype = "float32")
  expect_paths_agree(res32, tol32)
})

test_that("flash equals materialised over several attention axes (rank 4 and 5)", {
  set.seed(5)
  res <- run_both_paths(list(num_heads = 2, key_dim = 3),
                        list(query = rand_array(2, 9, 11, 4), value = rand_array(2, 13, 7, 4)))
  expect_paths_agree(res, tol64)
  mask <- array(runif(2 * 3 * 20 * 30) < 0.7, c(2, 3, 20, 30))
  res <- run_both_paths(list(num_heads = 2, key_dim = 3, attention_axes = 2),
                        list(query = rand_array(2, 3, 20, 4), value = rand_array(2, 3, 30, 4),
                             attention_mask = mask))
  expect_paths_agree(res, tol64)
  res <- run_both_paths(list(num_heads = 2, key_dim = 2, attention_axes = c(2, 3)),
                        list(query = rand_array(2, 2, 10, 7, 3), value = rand_array(2, 2, 9, 8, 3)),
                        dtype = "float32")
  expect_paths_agree(res, tol32)
})

test_that("backprop on double inputs (R arrays read and written in place) equals the converted path", {
  # Integer storage of the same values takes the converted path (full copies);
  # double storage the fused one. Self-attention (query = value = key, one R
  # object, gradients summed in R), gate, a two-axis output, attention axes.
  set.seed(8)
  x <- array(sample(-3:3, 3 * 5 * 40 * 6, TRUE), c(3, 5, 40, 6))
  xd <- x
  storage.mode(xd) <- "double"
  for (dtype in c("float64", "float32")) {
    m <- layer_multi_head_attention(num_heads = 2, key_dim = 3, attention_axes = 2,
                                    output_shape = c(2, 3), use_gate = TRUE, dtype = dtype,
                                    bias_initializer = "random_normal")
    out <- m(xd, xd, use_causal_mask = TRUE)
    go <- array(rnorm(length(out)), dim(out))
    a <- backprop(m, xd, xd, use_causal_mask = TRUE, grad_output = go)
    b <- backprop(m, x, x, use_causal_mask = TRUE, grad_output = go)
    tol <- if (dtype == "float64") tol64 else tol32
    expect_lt(rel_err(a$output, b$output), tol)
    expect_identical(dim(a$grads$query), dim(x))
    expect_lt(rel_err(a$grads$query, b$grads$query), tol)
    expect_lt(rel_err(a$grads$value, b$grads$value), tol)
    expect_null(a$grads$key)
    for (nm in names(b$grads$weights)) {
      if (endsWith(nm, "key/bias")) next  # zero up to rounding (softmax shift)
      expect_lt(rel_err(a$grads$weights[[nm]], b$grads$weights[[nm]]), tol, label = nm)
    }
  }
})

test_that("flash equals materialised at T = S = 700 with causal masking", {
  set.seed(6)
  x <- rand_array(1, 700, 8)
  res <- run_both_paths(list(num_heads = 2, key_dim = 8), list(query = x, value = x,
                                                               use_causal_mask = TRUE))
  expect_paths_agree(res, tol64)
  res <- run_both_paths(list(num_heads = 2, key_dim = 8), list(query = x, value = x),
                        dtype = "float32")
  expect_paths_agree(res, tol32)
})

test_that("the materialised path refuses oversized calls and points at the flash path", {
  set.seed(7)
  x <- rand_array(2, 300, 4)
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 2)
  mha(x, x)
  old <- options(multihead.max_attention_bytes = 1e5)  # scores need 2*2*300*300*4 = 1.4 MB
  on.exit(options(old))
  expect_error(mha(x, x, return_attention_scores = TRUE), "flash", class = "multihead_error_memory")
  expect_error(backprop(mha, x, x, return_attention_scores = TRUE, grad_output = x),
               "would need 1.4 MiB", class = "multihead_error_memory")
  # without scores the flash path runs, forward and backward
  expect_equal(dim(mha(x, x)), c(2, 300, 4))
  g <- backprop(mha, x, x, grad_output = x)
  expect_equal(dim(g$grads$value), c(2, 300, 4))
  # a layer with flash_attention = FALSE stays on the materialised path
  off <- layer_multi_head_attention(num_heads = 2, key_dim = 2, flash_attention = FALSE)
  expect_error(off(x, x), class = "multihead_error_memory")
  old_switch <- config_disable_flash_attention()
  on.exit(if (old_switch) config_enable_flash_attention(), add = TRUE)
  expect_error(mha(x, x), class = "multihead_error_memory")
  forced <- layer_multi_head_attention(num_heads = 2, key_dim = 2, flash_attention = TRUE)
  expect_equal(dim(forced(x, x)), c(2, 300, 4))
})

test_that("Keras's two flash_attention = TRUE errors remain", {
  expect_error(layer_multi_head_attention(num_heads = 2, key_dim = 2, flash_attention = TRUE,
                                          dropout = 0.1), "Dropout is not supported")
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 2, flash_attention = TRUE)
  x <- rand_array(1, 3, 4)
  expect_error(mha(x, x, return_attention_scores = TRUE), "Returning attention scores")
})

test_that("float32 layers refuse inputs and weights beyond float32's range, suggesting float64", {
  set.seed(61)
  x <- rand_array(2, 5, 4)
  big <- x; big[2, 3, 1] <- 1e39  # finite in R, Inf as a float32
  for (flash in c(TRUE, FALSE)) {
    old <- if (flash) config_enable_flash_attention() else config_disable_flash_attention()
    l <- layer_multi_head_attention(num_heads = 2, key_dim = 3, name = "m32")
    expect_error(l(big, x), "`query`.*float32's range.*dtype = \"float64\"", class = "multihead_error_argument")
    expect_error(l(x, big), "`value`.*float32's range", class = "multihead_error_argument")
    expect_error(l(x, x, key = big), "`key`.*float32's range", class = "multihead_error_argument")
    # converted path (integer storage is converted, never read in place)
    xi <- array(1L, c(2, 5, 4))
    expect_error(l(xi, big), "`value`.*float32's range", class = "multihead_error_argument")
    g <- array(1e39, c(2, 5, 4))
    expect_error(backprop(l, x, x, grad_output = g), "`grad_output`.*float32's range",
                 class = "multihead_error_argument")
    # NA is still reported as NA
    na <- x; na[1] <- NA
    expect_error(l(na, x), "`query` must be finite", class = "multihead_error_argument")
    # a float64 layer takes them
    l64 <- layer_multi_head_attention(num_heads = 2, key_dim = 3, dtype = "float64")
    expect_true(all(is.finite(l64(big, x))))
    # a weight beyond float32's range (stored as Inf in a float32 layer)
    w <- get_weights(l)
    w[[1]][1] <- 1e39
    set_weights(l, w)
    expect_error(l(x, x), "m32/query/kernel.*dtype = \"float64\"", class = "multihead_error_argument")
    if (old) config_enable_flash_attention() else config_disable_flash_attention()
  }
})

test_that("logits beyond float32's range are an error on both kernels, never zeros or NaN", {
  set.seed(62)
  x <- rand_array(2, 6, 4)
  for (flash in c(TRUE, FALSE)) {
    old <- if (flash) config_enable_flash_attention() else config_disable_flash_attention()
    l <- layer_multi_head_attention(num_heads = 2, key_dim = 3, name = "m32")
    for (s in c(1e21, 1e25)) {  # q . k ~ s^2 > 3.4e38
      expect_error(l(x * s, x * s), "logits .* beyond the range of float32.*dtype = \"float64\"",
                   class = "multihead_error_overflow")
      expect_error(l(x * s, x * s, use_causal_mask = TRUE), class = "multihead_error_overflow")
      expect_error(l(x * s, x * s, attention_mask = array(TRUE, c(2, 6, 6))),
                   class = "multihead_error_overflow")
    }
    # large but representable logits: a correct (one-hot) softmax, compared
    # with the float64 layer of the same weights
    l64 <- layer_multi_head_attention(num_heads = 2, key_dim = 3, dtype = "float64")
    l64$build(dim(x), dim(x))
    set_weights(l64, get_weights(l))
    y32 <- l(x * 1e15, x * 1e15)
    expect_true(all(is.finite(y32)))
    expect_lt(rel_err(y32, l64(x * 1e15, x * 1e15)), 1e-5)
    # float64 takes what float32 cannot
    expect_true(all(is.finite(l64(x * 1e21, x * 1e21))))
    if (old) config_enable_flash_attention() else config_disable_flash_attention()
  }
})

test_that("use_causal_mask accepts 1 and 0 as keras3 does", {
  set.seed(63)
  x <- rand_array(2, 5, 4)
  l <- layer_multi_head_attention(num_heads = 2, key_dim = 3)
  expect_identical(l(x, x, use_causal_mask = 1), l(x, x, use_causal_mask = TRUE))
  expect_identical(l(x, x, use_causal_mask = 0L), l(x, x))
  expect_error(l(x, x, use_causal_mask = 2), "use_causal_mask", class = "multihead_error_argument")
  inp <- keras_input(c(5, 4))
  m <- keras_model(inp, l(inp, inp, use_causal_mask = 1))
  expect_identical(m(x), l(x, x, use_causal_mask = TRUE))
})
