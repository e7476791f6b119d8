# Cached (key/value) attention (keras_hub's CachedMultiHeadAttention
# semantics): `cache` (B, 2, S_max, Nkv, H) and `cache_update_index`.

# Plain-R cached attention, float64: weights as get_weights() gives them
# (query kernel (E, N, H), bias (N, H), key kernel, bias, [gate kernel,
# bias,] value kernel, bias, output kernel (N, H, O), bias (O)). Writes the
# projected key/value inputs at positions idx + 1, ... (R's 1-based) of the
# cache when idx is not NULL, then attends query t to the cache positions s
# with allowed(b, t, s). Returns list(output, cache).
cached_reference <- function(q, v, k, cache, idx, w, N, Nkv, H, allowed, gate = FALSE) {
  B <- dim(q)[1]; Tq <- dim(q)[2]; S <- dim(cache)[3]
  wi <- 0
  nxt <- function() { wi <<- wi + 1; w[[wi]] }
  Wq <- nxt(); bq <- nxt(); Wk <- nxt(); bk <- nxt()
  if (gate) { Wg <- nxt(); bg <- nxt() }
  Wv <- nxt(); bv <- nxt(); Wo <- nxt(); bo <- nxt()
  O <- dim(Wo)[3]
  if (!is.null(idx)) {
    U <- dim(v)[2]
    for (b in seq_len(B)) for (g in seq_len(Nkv)) {
      xk <- matrix(k[b, , ], U); xv <- matrix(v[b, , ], U)
      cache[b, 1, idx + seq_len(U), g, ] <- xk %*% Wk[, g, ] + matrix(bk[g, ], U, H, byrow = TRUE)
      cache[b, 2, idx + seq_len(U), g, ] <- xv %*% Wv[, g, ] + matrix(bv[g, ], U, H, byrow = TRUE)
    }
  }
  out <- array(0, c(B, Tq, O))
  for (b in seq_len(B)) {
    xq <- matrix(q[b, , ], Tq)
    acc <- matrix(bo, Tq, O, byrow = TRUE)
    for (n in seq_len(N)) {
      g <- (n - 1) %/% (N / Nkv) + 1
      Q <- xq %*% Wq[, n, ] + matrix(bq[n, ], Tq, H, byrow = TRUE)
      K <- matrix(cache[b, 1, , g, ], S); V <- matrix(cache[b, 2, , g, ], S)
      L <- Q %*% t(K) / sqrt(H)
      P <- matrix(0, Tq, S)
      for (t in seq_len(Tq)) {
        ok <- vapply(seq_len(S), function(s) allowed(b, t, s), logical(1))
        if (!any(ok)) next
        e <- exp(L[t, ok] - max(L[t, ok]))
        P[t, ok] <- e / sum(e)
      }
      ctx <- P %*% V
      if (gate) ctx <- ctx * plogis(xq %*% Wg[, n, ] + matrix(bg[n, ], Tq, H, byrow = TRUE))
      acc <- acc + ctx %*% Wo[n, , ]
    }
    out[b, , ] <- acc
  }
  list(output = out, cache = cache)
}

slice_t <- function(x, i) x[, i, , drop = FALSE]

test_that("cached decoding reproduces the causal forward, step by step (MHA, GQA, gate, window)", {
  set.seed(1)
  B <- 2; L <- 7; E <- 6
  x <- array(rnorm(B * L * E), c(B, L, E))
  cases <- list(
    list(make = function(dt) layer_multi_head_attention(num_heads = 2, key_dim = 4, dtype = dt,
                                                        bias_initializer = "random_normal"),
         Nkv = 2, H = 4),
    list(make = function(dt) layer_multi_head_attention(num_heads = 2, key_dim = 4, dtype = dt, use_gate = TRUE,
                                                        sliding_window = 3),
         Nkv = 2, H = 4, gate = TRUE),
    list(make = function(dt) layer_group_query_attention(head_dim = 3, num_query_heads = 4,
                                                         num_key_value_heads = 2, dtype = dt,
                                                         bias_initializer = "random_normal"),
         Nkv = 2, H = 3),
    list(make = function(dt) layer_group_query_attention(head_dim = 3, num_query_heads = 4,
                                                         num_key_value_heads = 1, dtype = dt),
         Nkv = 1, H = 3)
  )
  for (cs in cases) for (dt in c("float64", "float32")) {
    tol <- if (dt == "float64") 1e-12 else 2e-6
    l <- cs$make(dt)
    full <- l(x, x, use_causal_mask = TRUE)
    cache <- array(0, c(B, 2, 10, cs$Nkv, cs$H))
    before <- cache
    p <- 3  # a prompt of 3 positions, then one position per call
    r <- l(slice_t(x, 1:p), slice_t(x, 1:p), cache = cache, cache_update_index = 0, use_causal_mask = TRUE)
    expect_identical(cache, before)  # the given cache is not modified
    expect_named(r, c("output", "cache"))
    expect_equal(r$output, slice_t(full, 1:p), tolerance = tol)
    cache <- r$cache
    for (i in (p + 1):L) {
      r <- l(slice_t(x, i), slice_t(x, i), cache = cache, cache_update_index = i - 1, use_causal_mask = 1)
      expect_equal(r$output, slice_t(full, i), tolerance = tol)
      cache <- r$cache
    }
    # the cache holds the projected keys and values, zero past the written positions
    w <- get_weights(l)
    ref <- cached_reference(x, x, x, array(0, dim(cache)), 0, lapply(w, as.array),
                            dim(w[[1]])[2], cs$Nkv, cs$H, function(b, t, s) s <= t, gate = isTRUE(cs$gate))
    expect_equal(cache, ref$cache, tolerance = tol)
    expect_true(all(cache[, , (L + 1):10, , ] == 0))
  }
})

test_that("a cached call matches plain R: cache used as it is, attention_mask, updates, key", {
  set.seed(2)
  B <- 2; Tq <- 3; E <- 5; S <- 6; N <- 4; Nkv <- 2; H <- 3
  l <- layer_group_query_attention(head_dim = H, num_query_heads = N, num_key_value_heads = Nkv,
                                   dtype = "float64", bias_initializer = "random_normal")
  q <- array(rnorm(B * Tq * E), c(B, Tq, E))
  v <- array(rnorm(B * 2 * E), c(B, 2, E))
  cache <- array(rnorm(B * 2 * S * Nkv * H), c(B, 2, S, Nkv, H))
  # no update index: the cache as it is, every position attended
  r <- l(q, v, cache = cache)
  ref <- cached_reference(q, NULL, NULL, cache, NULL, get_weights(l), N, Nkv, H, function(b, t, s) TRUE)
  expect_equal(r$output, ref$output, tolerance = 1e-12)
  expect_identical(r$cache, cache)
  # an attention mask over the cache positions (B, T, S_max)
  am <- array(rbinom(B * Tq * S, 1, 0.6), c(B, Tq, S)); am[1, 2, ] <- 0  # one row fully masked
  r <- l(q, v, cache = cache, attention_mask = am)
  ref <- cached_reference(q, NULL, NULL, cache, NULL, get_weights(l), N, Nkv, H,
                          function(b, t, s) am[b, t, s] == 1)
  expect_equal(r$output, ref$output, tolerance = 1e-12)
  # an update of 2 positions at index 3 with a causal mask and an attention mask
  r <- l(q[, 1:2, , drop = FALSE], v, cache = cache, cache_update_index = 3, use_causal_mask = TRUE,
         attention_mask = am[, 1:2, ])
  ref <- cached_reference(q[, 1:2, , drop = FALSE], v, v, cache, 3, get_weights(l), N, Nkv, H,
                          function(b, t, s) s <= 3 + t && am[b, t, s] == 1)
  expect_equal(r$output, ref$output, tolerance = 1e-12)
  expect_equal(r$cache, ref$cache, tolerance = 1e-12)
  # a separate key
  k <- array(rnorm(B * 2 * E), c(B, 2, E))
  r <- l(q[, 1:2, , drop = FALSE], v, k, cache = cache, cache_update_index = 4)
  ref <- cached_reference(q[, 1:2, , drop = FALSE], v, k, cache, 4, get_weights(l), N, Nkv, H,
                          function(b, t, s) TRUE)
  expect_equal(r$output, ref$output, tolerance = 1e-12)
  expect_equal(r$cache, ref$cache, tolerance = 1e-12)
  # the same for 1 and 2 threads, bitwise
  old <- get_num_threads()
  on.exit(set_num_threads(old))
  outs <- lapply(1:2, function(n) {
    set_num_threads(n)
    l(q, v, cache = cache, cache_update_index = 2, attention_mask = am)
  })
  expect_identical(outs[[1]], outs[[2]])
})

test_that("cached calls reject bad input with errors naming the argument", {
  l <- layer_multi_head_attention(num_heads = 2, key_dim = 4)
  x <- array(rnorm(2 * 3 * 6), c(2, 3, 6))
  cache <- array(0, c(2, 2, 8, 2, 4))
  expect_error(l(x, x, cache = array(0, c(2, 2, 8, 3, 4))), "`cache`.*shape \\(2, 2, max_length, 2, 4\\)",
               class = "multihead_error_argument")
  expect_error(l(x, x, cache = array(0, c(2, 8, 2, 4))), "`cache`", class = "multihead_error_argument")
  expect_error(l(x, x, cache = "a"), "`cache`", class = "multihead_error_argument")
  for (bad in list(-1, 6, 2.5, NA, c(1, 2), "1")) {
    expect_error(l(x, x, cache = cache, cache_update_index = bad), "`cache_update_index`.*\\[0, 5\\]",
                 class = "multihead_error_argument")
  }
  expect_error(l(x, x, cache = cache, use_causal_mask = TRUE), "`cache_update_index`",
               class = "multihead_error_argument")
  expect_error(l(x, x, cache_update_index = 0), "`cache_update_index`.*without `cache`",
               class = "multihead_error_argument")
  expect_error(l(x, x, cache = cache, cache_update_index = 0, return_attention_scores = TRUE),
               "`return_attention_scores`", class = "multihead_error_argument")
  expect_error(l(x, x, cache = cache, value_mask = matrix(1, 2, 3)), "`value_mask`",
               class = "multihead_error_argument")
  bad_cache <- cache; bad_cache[1, 1, 6, 1, 1] <- NaN  # read: position 5 of 8, past the update
  expect_error(l(x, x, cache = bad_cache, cache_update_index = 0), "`cache`.*NA, NaN or Inf",
               class = "multihead_error_argument")
  big <- cache; big[2, 2, 1, 1, 1] <- 1e39
  expect_error(l(x, x, cache = big, cache_update_index = 3), "`cache`.*float32",
               class = "multihead_error_argument")
  expect_error(l(x, x, cache = cache, cache_update_index = 0, attention_mask = array(1, c(2, 3, 5))),
               "`attention_mask`", class = "multihead_error_argument")
  d <- layer_multi_head_attention(num_heads = 2, key_dim = 4, dropout = 0.5)
  expect_error(d(x, x, cache = cache, cache_update_index = 0, training = TRUE), "`training`",
               class = "multihead_error_argument")
  expect_silent(d(x, x, cache = cache, cache_update_index = 0, training = FALSE))
  v <- layer_multi_head_attention(num_heads = 2, key_dim = 4, value_dim = 3)
  expect_error(v(x, x, cache = cache, cache_update_index = 0), "`cache`.*key_dim == value_dim",
               class = "multihead_error_argument")
  expect_error(l(x[, , 1:5], x, cache = cache), "`query`", class = "multihead_error_argument")
})
