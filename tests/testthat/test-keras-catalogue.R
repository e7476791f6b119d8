# Keras's own MultiHeadAttention tests (keras/src/layers/attention/
# multi_head_attention_test.py), ported to the R API. Ids (B1, B3, ...) are
# those of ../shared/reference/keras-mha-tests.md. Where GUIDE.md decides
# differently from Keras (whole doubles accepted for integer arguments,
# use_gate supported, fully masked rows give zero probabilities), the test
# asserts the decided behaviour. Symbolic tensors do not exist yet, so the
# symbolic parts of Keras's run_layer_test use $compute_output_shape() with
# an unknown (NA) batch size, and $build().

# Weight shapes of a layer, in get_weights() order.
weight_dims <- function(mha) unname(lapply(get_weights(mha), dim))

# The parts of Keras's run_layer_test that apply here: config round trip,
# build from shapes (weight count and shapes), shape inference with an
# unknown batch size, an eager call, no losses, masking supported.
check_layer_basics <- function(args, query_shape, value_shape, expected_dims) {
  mha <- do.call(layer_multi_head_attention, args)
  cfg <- get_config(mha)
  clone <- from_config(cfg)
  expect_identical(get_config(clone), cfg)
  expect_identical(names(clone), names(mha))
  expect_true(mha$supports_masking)

  mha$build(query_shape, value_shape)
  expect_true(mha$built)
  expect_identical(weight_dims(mha), lapply(expected_dims, as.integer))
  expect_length(mha$trainable_weights, length(expected_dims))
  expect_length(mha$non_trainable_weights, 0)
  expect_identical(mha$compute_output_shape(c(NA, query_shape[-1]), c(NA, value_shape[-1])),
                   c(NA, as.integer(query_shape[-1])))

  eager <- do.call(layer_multi_head_attention, args)
  q <- array(runif(prod(query_shape)) * 3, query_shape)
  v <- array(runif(prod(value_shape)) * 3, value_shape)
  out <- eager(q, v)
  expect_identical(dim(out), as.integer(query_shape))
  expect_true(all(is.finite(out)))
  expect_length(eager$trainable_weights, length(expected_dims))
  expect_length(eager$losses, 0)
  invisible(eager)
}

test_that("B1 basics: weights, shapes, config round trip for the four configurations", {
  set.seed(1)
  qs <- c(2, 8, 16); vs <- c(2, 4, 16)
  # (a) num_heads = 2, key_dim = 2: 8 weights, 284 parameters
  a <- check_layer_basics(list(num_heads = 2, key_dim = 2), qs, vs,
                          list(c(16, 2, 2), c(2, 2), c(16, 2, 2), c(2, 2), c(16, 2, 2), c(2, 2),
                               c(2, 2, 16), 16))
  expect_equal(count_params(a), 284)
  # (b) value_dim = 4, no bias, dropout: 4 kernels
  b <- check_layer_basics(list(num_heads = 2, key_dim = 2, value_dim = 4, use_bias = FALSE,
                               dropout = 0.5), qs, vs,
                          list(c(16, 2, 2), c(16, 2, 2), c(16, 2, 4), c(2, 4, 16)))
  # (c) use_gate: gate kernel and bias between key and value, 10 weights
  check_layer_basics(list(num_heads = 2, key_dim = 2, use_gate = TRUE), qs, vs,
                     list(c(16, 2, 2), c(2, 2), c(16, 2, 2), c(2, 2), c(16, 2, 2), c(2, 2),
                          c(16, 2, 2), c(2, 2), c(2, 2, 16), 16))
  # (d) use_gate without biases: 5 kernels, the gate's of the value head size
  d <- check_layer_basics(list(num_heads = 2, key_dim = 2, value_dim = 4, use_bias = FALSE,
                               dropout = 0.5, use_gate = TRUE), qs, vs,
                          list(c(16, 2, 2), c(16, 2, 2), c(16, 2, 4), c(16, 2, 4), c(2, 4, 16)))
  expect_identical(names(d$weights)[3], paste0(d$name, "/gate/kernel"))
  # dropout > 0 means one random stream: training calls differ from inference
  # calls and from each other, inference calls are deterministic.
  q <- array(runif(2 * 8 * 16), qs); v <- array(runif(2 * 4 * 16), vs)
  expect_identical(b(q, v), b(q, v, training = FALSE))
  t1 <- b(q, v, training = TRUE); t2 <- b(q, v, training = TRUE)
  expect_false(isTRUE(all.equal(t1, b(q, v))))
  expect_false(isTRUE(all.equal(t1, t2)))
})

test_that("B3 high-dimensional attention: shapes, weights and scores for several axes", {
  set.seed(3)
  cases <- list(
    list(q = c(3, 3, 4, 8), v = c(3, 3, 2, 8), axes = 2, scores = c(3, 3, 2, 4, 2)),
    list(q = c(3, 3, 4, 8), v = c(3, 3, 2, 8), axes = c(1, 2), scores = c(3, 2, 3, 4, 3, 2)),
    list(q = c(3, 5, 3, 4, 8), v = c(3, 5, 3, 2, 8), axes = c(2, 3), scores = c(3, 5, 2, 3, 4, 3, 2))
  )
  for (cs in cases) {
    for (gate in c(FALSE, TRUE)) {
      info <- sprintf("axes %s, use_gate %s", paste(cs$axes, collapse = ","), gate)
      built <- layer_multi_head_attention(num_heads = 2, key_dim = 2, attention_axes = cs$axes,
                                          use_gate = gate)
      built$build(cs$q, cs$v)
      expect_length(built$trainable_weights, if (gate) 10 else 8)
      kernels <- Filter(function(d) length(d) == 3L, weight_dims(built))
      expect_identical(kernels, c(rep(list(c(8L, 2L, 2L)), if (gate) 4 else 3), list(c(2L, 2L, 8L))),
                       info = info)
      expect_identical(built$compute_output_shape(c(NA, cs$q[-1]), c(NA, cs$v[-1])),
                       c(NA, as.integer(cs$q[-1])), info = info)

      mha <- layer_multi_head_attention(num_heads = 2, key_dim = 2, attention_axes = cs$axes,
                                        use_gate = gate)
      q <- array(runif(prod(cs$q)) * 3, cs$q); v <- array(runif(prod(cs$v)) * 3, cs$v)
      res <- mha(q, v, return_attention_scores = TRUE)
      expect_identical(dim(res$output), as.integer(cs$q), info = info)
      expect_identical(dim(res$scores), as.integer(cs$scores), info = info)
      # probabilities sum to one jointly over the key attention axes (the last
      # length(axes) axes of the scores)
      n_key <- length(cs$axes)
      sums <- apply(res$scores, seq_len(length(cs$scores) - n_key), sum)
      expect_lt(max(abs(sums - 1)), 1e-5, label = info)
    }
  }
})

test_that("B4 negative attention_axes index like positive ones", {
  set.seed(4)
  x <- rand_array(2, 3, 8, 4)
  for (gate in c(FALSE, TRUE)) {
    pos <- layer_multi_head_attention(num_heads = 2, key_dim = 4, attention_axes = 2, use_gate = gate)
    neg <- layer_multi_head_attention(num_heads = 2, key_dim = 4, attention_axes = -2, use_gate = gate)
    pos(x, x); neg(x, x)
    expect_identical(neg$attention_axes, 2L)
    set_weights(neg, get_weights(pos))
    rp <- pos(x, x, return_attention_scores = TRUE)
    rn <- neg(x, x, return_attention_scores = TRUE)
    expect_identical(dim(rn$output), dim(rp$output))
    expect_identical(dim(rn$scores), c(2L, 3L, 2L, 8L, 8L))
    expect_equal(rn$output, rp$output, tolerance = 1e-6)
    expect_equal(rn$scores, rp$scores, tolerance = 1e-6)
  }
})

fmt_dims <- function(x) if (is.null(x)) "none" else paste0("(", paste(x, collapse = ","), ")")

test_that("B5 compute_output_shape agrees with the eager call", {
  cases <- list(
    list(q = c(4, 8), v = c(2, 8), k = NULL, out = NULL, want = c(7, 4, 8)),
    list(q = c(4, 8), v = c(2, 8), k = c(2, 3), out = NULL, want = c(7, 4, 8)),
    list(q = c(4, 8), v = c(2, 8), k = NULL, out = c(3, 4), want = c(7, 4, 3, 4)),
    list(q = c(4, 8), v = c(2, 8), k = c(2, 3), out = c(1, 5), want = c(7, 4, 1, 5)),
    list(q = c(4, 2, 3, 8), v = c(1, 1, 5, 8), k = c(1, 1, 5, 2), out = NULL, want = c(7, 4, 2, 3, 8)),
    list(q = c(4, 2, 3, 8), v = c(1, 1, 5, 8), k = c(1, 1, 5, 2), out = c(3, 2),
         want = c(7, 4, 2, 3, 3, 2)),
    list(q = c(4, 2, 3, 8), v = c(4, 2, 3, 7), k = c(4, 2, 3, 8), out = NULL, want = c(7, 4, 2, 3, 8))
  )
  for (cs in cases) {
    mha <- layer_multi_head_attention(num_heads = 2, key_dim = 2, value_dim = 2,
                                      output_shape = cs$out)
    qs <- c(7, cs$q); vs <- c(7, cs$v); ks <- if (!is.null(cs$k)) c(7, cs$k)
    info <- paste("query", fmt_dims(qs), "value", fmt_dims(vs), "key", fmt_dims(ks))
    want <- as.integer(cs$want)
    expect_identical(mha$compute_output_shape(qs, vs, ks), want, info = info)
    expect_identical(mha$compute_output_shape(as.list(qs), as.list(vs), if (!is.null(ks)) as.list(ks)),
                     want, info = info)
    out <- mha(query = array(1, qs), value = array(1, vs), key = if (!is.null(ks)) array(1, ks))
    expect_identical(dim(out), want, info = info)
  }
})

test_that("B6 key/value shape mismatches error with Keras's 'must be equal'", {
  cases <- list(
    list(q = c(2, 4, 8), v = c(2, 2, 7), k = 2),
    list(q = c(2, 4, 8), v = c(2, 2, 8), k = c(2, 1, 7)),
    list(q = c(2, 4, 2, 3, 8), v = c(2, 1, 1, 5, 8), k = c(2, 1, 15, 5, 2))
  )
  for (cs in cases) {
    mha <- layer_multi_head_attention(num_heads = 4, key_dim = 2, value_dim = 2)
    expect_error(mha$compute_output_shape(cs$q, cs$v, cs$k), "must be equal", class = "multihead_error")
    expect_error(mha(array(1, cs$q), array(1, cs$v), array(1, cs$k)), "must be equal",
                 class = "multihead_error")
    expect_false(mha$built)
  }
  # query/value mismatches in the attention axes are not errors
  mha <- layer_multi_head_attention(num_heads = 4, key_dim = 2, value_dim = 2)
  expect_identical(dim(mha(array(1, c(2, 4, 8)), array(1, c(2, 2, 7)))), c(2L, 4L, 8L))
})

test_that("B7 num_heads, key_dim, value_dim: non-whole, zero, negative values error naming the argument", {
  for (arg in c("num_heads", "key_dim", "value_dim")) {
    for (bad in list(0, -2, 1.5, 0L, -2L)) {
      args <- list(num_heads = 2, key_dim = 2)
      args[[arg]] <- bad
      expect_error(do.call(layer_multi_head_attention, args), paste0("`", arg, "`"), fixed = TRUE,
                   class = "multihead_error")
    }
  }
  # value_dim = NULL is accepted (defaults to key_dim); whole doubles are integers
  mha <- layer_multi_head_attention(num_heads = 8, key_dim = 4, value_dim = NULL)
  expect_identical(mha$value_dim, 4L)
  expect_identical(mha$num_heads, 8L)
  unnamed <- function(cfg) cfg[setdiff(names(cfg), "name")]
  from_doubles <- layer_multi_head_attention(num_heads = 8, key_dim = 4, value_dim = 3)
  from_integers <- layer_multi_head_attention(num_heads = 8L, key_dim = 4L, value_dim = 3L)
  expect_identical(unnamed(get_config(from_doubles)), unnamed(get_config(from_integers)))
})

test_that("B10 query and value masks equal the explicit attention mask (with and without causal)", {
  set.seed(10)
  # Keras embeds token ids with mask_zero = TRUE; here the same ids index an
  # embedding table and the padding masks are passed explicitly.
  q_tokens <- rbind(c(1, 2, 3, 0, 0), c(3, 3, 1, 1, 2), c(1, 0, 0, 0, 0))
  v_tokens <- rbind(c(5, 4, 0), c(3, 0, 0), c(2, 1, 1))
  embed <- function(tokens, table) {
    out <- array(0, c(dim(tokens), ncol(table)))
    for (b in seq_len(nrow(tokens))) out[b, , ] <- table[tokens[b, ] + 1, ]
    out
  }
  query <- embed(q_tokens, matrix(rnorm(4 * 8), 4, 8))
  value <- embed(v_tokens, matrix(rnorm(6 * 8), 6, 8))
  # Keras's expected mask, written out row by row as in the test
  explicit <- array(FALSE, c(3, 5, 3))
  explicit[1, 1:3, ] <- rep(c(TRUE, TRUE, FALSE), each = 3)
  explicit[2, , ] <- rep(c(TRUE, FALSE, FALSE), each = 5)
  explicit[3, 1, ] <- TRUE
  causal <- outer(1:5, 1:3, `>=`)
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 2, bias_initializer = "random_normal")
  for (use_causal in c(TRUE, FALSE)) {
    info <- paste("use_causal_mask", use_causal)
    implicit <- mha(query, value, query_mask = q_tokens != 0, value_mask = v_tokens != 0,
                    use_causal_mask = use_causal, return_attention_scores = TRUE)
    via_key <- mha(query, value, value, key_mask = v_tokens != 0, query_mask = q_tokens != 0,
                   use_causal_mask = use_causal, return_attention_scores = TRUE)
    mask <- explicit
    if (use_causal) for (b in 1:3) mask[b, , ] <- mask[b, , ] & causal
    want <- mha(query, value, attention_mask = mask, return_attention_scores = TRUE)
    expect_equal(implicit$output, want$output, tolerance = 1e-6, info = info)
    expect_equal(implicit$scores, want$scores, tolerance = 1e-6, info = info)
    expect_equal(via_key$output, want$output, tolerance = 1e-6, info = info)
    # fully masked rows (every padded query) get zero probabilities and the bias
    dead <- which(apply(mask, c(1, 2), function(r) !any(r)), arr.ind = TRUE)
    expect_gt(nrow(dead), 0)
    for (i in seq_len(nrow(dead))) {
      expect_true(all(want$scores[dead[i, 1], , dead[i, 2], ] == 0), info = info)
      expect_equal(want$output[dead[i, 1], dead[i, 2], ], as.vector(mha$output_dense$bias),
                   tolerance = 1e-6, info = info)
    }
  }
  # the written-out mask is outer(query mask, value mask)
  expect_identical(explicit, array(apply(expand.grid(b = 1:3, t = 1:5, s = 1:3), 1, function(i)
    q_tokens[i[1], i[2]] != 0 && v_tokens[i[1], i[3]] != 0), c(3, 5, 3)))
})

test_that("B11 attention masks of shape (T, S), (B, T, S) and (B, N, T, S) broadcast alike", {
  set.seed(11)
  x <- array(runif(2 * 5 * 8), c(2, 5, 8))
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 4)
  tril <- lower.tri(diag(5), diag = TRUE)
  m2 <- tril
  m3 <- aperm(array(tril, c(5, 5, 2)), c(3, 1, 2))
  m4 <- aperm(array(tril, c(5, 5, 2, 2)), c(3, 4, 1, 2))
  o2 <- mha(x, x, attention_mask = m2)
  expect_equal(mha(x, x, attention_mask = m3), o2, tolerance = 1e-6)
  expect_equal(mha(x, x, attention_mask = m4), o2, tolerance = 1e-6)
  expect_equal(mha(x, x, attention_mask = m2 * 1), o2, tolerance = 1e-6)   # 0/1 numbers
  expect_false(isTRUE(all.equal(mha(x, x), o2)))
})

test_that("B13 sliding window: banded scores, exactly zero outside the band", {
  set.seed(13)
  x <- rand_array(1, 6, 8)
  ij <- expand.grid(i = 1:6, j = 1:6)
  for (use_causal in c(TRUE, FALSE)) {
    mha <- layer_multi_head_attention(num_heads = 2, key_dim = 4, sliding_window = 3)
    s <- mha(x, x, use_causal_mask = use_causal, return_attention_scores = TRUE)$scores
    expect_identical(dim(s), c(1L, 2L, 6L, 6L))
    band <- if (use_causal) ij$j <= ij$i & ij$i - ij$j < 3 else abs(ij$i - ij$j) < 3
    for (h in 1:2) {
      p <- s[1, h, , ][cbind(ij$i, ij$j)]
      expect_true(all(p[band] > 0), info = paste("head", h, "causal", use_causal))
      expect_true(all(p[!band] == 0), info = paste("head", h, "causal", use_causal))
    }
  }
})

test_that("B14 use_causal_mask equals an explicit lower-triangular mask", {
  set.seed(14)
  x <- rand_array(2, 5, 8)
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 4)
  mha(x, x, use_causal_mask = TRUE)
  tril <- array(lower.tri(diag(5), diag = TRUE), c(1, 5, 5))
  expect_equal(mha(x, x, use_causal_mask = TRUE), mha(x, x, attention_mask = tril), tolerance = 1e-6)
  expect_false(isTRUE(all.equal(mha(x, x, use_causal_mask = TRUE), mha(x, x))))
})

test_that("B16 an explicit mask and use_causal_mask are AND-ed", {
  set.seed(16)
  x <- rand_array(2, 5, 8)
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 4)
  mha$build(dim(x), dim(x))
  causal <- lower.tri(diag(5), diag = TRUE)
  extra <- array(TRUE, c(2, 5, 5))
  extra[, 3, 4] <- FALSE     # Keras's [:, 2, 3] (already future, hidden by causal)
  extra[, 4, 2] <- FALSE     # and one the causal mask allows
  merged <- extra
  for (b in 1:2) merged[b, , ] <- extra[b, , ] & causal
  out <- mha(x, x, attention_mask = extra, use_causal_mask = TRUE)
  expect_identical(dim(out), c(2L, 5L, 8L))
  expect_equal(out, mha(x, x, attention_mask = merged, use_causal_mask = FALSE), tolerance = 1e-6)
  expect_false(isTRUE(all.equal(out, mha(x, x, use_causal_mask = TRUE))))
})

test_that("B17 causal masking holds with scores requested and with dropout (training = FALSE)", {
  set.seed(17)
  x <- rand_array(1, 6, 8)
  future <- upper.tri(diag(6))
  for (dropout in c(0, 0.1)) {
    mha <- layer_multi_head_attention(num_heads = 2, key_dim = 4, dropout = dropout)
    s <- mha(x, x, use_causal_mask = TRUE, return_attention_scores = TRUE, training = FALSE)$scores
    for (h in 1:2) expect_identical(sum(s[1, h, , ][future]), 0, info = paste("dropout", dropout))
  }
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 4, dropout = 0.1)
  expect_equal(mha(x, x, use_causal_mask = TRUE, training = FALSE),
               mha(x, x, attention_mask = !future, training = FALSE), tolerance = 1e-6)
})

test_that("B18 causal masking on a rank-4 input attending over axis 1", {
  set.seed(18)
  x <- rand_array(1, 5, 3, 8)
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 4, attention_axes = 1)
  res <- mha(x, x, use_causal_mask = TRUE, return_attention_scores = TRUE)
  expect_identical(dim(res$scores), c(1L, 3L, 2L, 5L, 5L))
  future <- upper.tri(diag(5))
  for (l in 1:3) for (h in 1:2) expect_identical(sum(res$scores[1, l, h, , ][future]), 0)
  expect_equal(res$output, mha(x, x, attention_mask = !future), tolerance = 1e-6)
})

test_that("B20 sliding_window must be a positive whole number", {
  for (bad in list(0, -3, 1.5, NA)) {
    expect_error(layer_multi_head_attention(num_heads = 2, key_dim = 2, sliding_window = bad),
                 "`sliding_window`", fixed = TRUE, class = "multihead_error")
  }
  expect_identical(layer_multi_head_attention(num_heads = 2, key_dim = 2, sliding_window = 3)$sliding_window,
                   3L)
})

test_that("B21 sliding_window survives get_config() / from_config()", {
  set.seed(21)
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 2, sliding_window = 5)
  cfg <- get_config(mha)
  expect_identical(cfg$sliding_window, 5L)
  clone <- from_config(cfg)
  expect_identical(clone$sliding_window, 5L)
  x <- rand_array(1, 8, 4)
  out <- mha(x, x)
  clone$build(dim(x), dim(x))
  set_weights(clone, get_weights(mha))
  expect_identical(clone(x, x), out)
  plain <- layer_multi_head_attention(num_heads = 2, key_dim = 2)
  plain$build(dim(x), dim(x))
  set_weights(plain, get_weights(mha))
  expect_false(isTRUE(all.equal(plain(x, x), out)))
})

test_that("B22 correctness: identity weights give Keras's numbers", {
  # The derivation of keras-mha-tests.md B22, in float64.
  a <- 1 / sqrt(8)
  p_diag <- exp(a) / (exp(a) + 7)
  p_off <- 1 / (exp(a) + 7)
  probs <- matrix(p_off, 8, 8); diag(probs) <- p_diag
  want_rows <- 0.28 + 0.64 * as.vector(probs %*% (0:7))
  # the doc's rounded values
  expect_equal(c(p_diag, p_off), c(0.169053, 0.118707), tolerance = 1e-5)
  expect_equal(want_rows, c(2.4072, 2.4394, 2.4717, 2.5039, 2.5361, 2.5683, 2.6006, 2.6328),
               tolerance = 1e-4)
  want_out <- array(rep(want_rows, 8), c(1, 8, 8))
  want_scores <- aperm(array(probs, c(8, 8, 1, 8)), c(3, 4, 1, 2))   # (1, N, T, S)

  query <- array(diag(8), c(1, 8, 8))
  value <- array(matrix(0:63, 8, 8, byrow = TRUE) / 100, c(1, 8, 8))   # value[1, s, e] = (8s + e) / 100
  expect_identical(value[1, 3, 2], 0.17)
  kernel <- array(0, c(8, 8, 8))
  for (i in 1:8) kernel[i, , i] <- 1                                   # kernel[i, h, j] = (i == j)
  bias <- array(0, c(8, 8))
  weights <- list(kernel, bias, kernel, bias, kernel, bias, kernel, numeric(8))
  for (dtype in c("float32", "float64")) {
    tol <- if (dtype == "float32") 2e-6 else 1e-13
    for (flash in c(FALSE, TRUE)) {
      info <- sprintf("%s, flash_attention %s", dtype, flash)
      mha <- layer_multi_head_attention(num_heads = 8, key_dim = 8, flash_attention = flash, dtype = dtype)
      mha$build(dim(query), dim(query), dim(value))
      set_weights(mha, weights)
      out <- mha(query, value, query)
      expect_lt(max(abs(out - want_out)), tol, label = info)
      if (!flash) {
        res <- mha(query, value, query, return_attention_scores = TRUE)
        expect_identical(dim(res$scores), c(1L, 8L, 8L, 8L))
        expect_lt(max(abs(res$scores - want_scores)), tol / 4, label = info)
        expect_lt(max(abs(res$output - want_out)), tol, label = info)
      }
    }
  }
})

test_that("B27 flash attention refuses dropout and returned scores", {
  expect_error(layer_multi_head_attention(num_heads = 2, key_dim = 2, flash_attention = TRUE, dropout = 0.1),
               "Dropout is not supported when flash attention is enabled.", fixed = TRUE,
               class = "multihead_error")
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 2, flash_attention = TRUE)
  expect_true(mha$flash_attention)
  q <- array(runif(2 * 4 * 8), c(2, 4, 8))
  expect_error(mha(q, q, return_attention_scores = TRUE),
               paste("Returning attention scores is not supported when flash attention is enabled.",
                     "Please disable flash attention to access attention scores."),
               fixed = TRUE, class = "multihead_error")
  expect_identical(dim(mha(q, q)), c(2L, 4L, 8L))
})

test_that("B28 output_shape as a number", {
  for (out in list(8, 8L)) {
    mha <- layer_multi_head_attention(num_heads = 2, key_dim = 16, output_shape = out)
    q <- array(runif(2 * 4 * 16), c(2, 4, 16))
    expect_identical(dim(mha(q, q)), c(2L, 4L, 8L))
    expect_identical(dim(mha$output_dense$kernel), c(2L, 16L, 8L))
    expect_identical(dim(mha$output_dense$bias), 8L)
    expect_identical(mha$output_shape, 8L)
  }
})

test_that("B29 output_shape as a vector", {
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 16, output_shape = c(8, 8))
  q <- array(runif(2 * 4 * 16), c(2, 4, 16))
  expect_identical(dim(mha(q, q)), c(2L, 4L, 8L, 8L))
  expect_identical(dim(mha$output_dense$kernel), c(2L, 16L, 8L, 8L))
  expect_identical(dim(mha$output_dense$bias), c(8L, 8L))
  expect_identical(mha$compute_output_shape(c(NA, 4, 16), c(NA, 4, 16)), c(NA, 4L, 8L, 8L))
})

test_that("B30 output_shape: non-whole, zero and negative values error naming the argument", {
  for (bad in list(8.5, 0, -8, c(8, 1.5), c(8, 0), NA, "8", numeric(0))) {
    expect_error(layer_multi_head_attention(num_heads = 2, key_dim = 16, output_shape = bad),
                 "`output_shape`", fixed = TRUE, class = "multihead_error")
  }
  # 8.0 is a whole number: accepted (Keras rejects the float 8.0)
  expect_identical(layer_multi_head_attention(num_heads = 2, key_dim = 16, output_shape = 8.0)$output_shape,
                   8L)
})
