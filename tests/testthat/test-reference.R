# Tests of the plain-R reference (helper-reference.R) itself: it must agree
# with the PyTorch-generated fixtures, with finite differences and with
# hand-computed examples before it can serve as the yardstick for the C++.

# ---- small local tools ------------------------------------------------------

# Call ref_mha / ref_mha_loss_grads with a fixture's configuration.
fx_ref <- function(fx, ..., grads = FALSE) {
  key <- if (isTRUE(fx$call$key_is_value)) NULL else fx$inputs$key
  args <- list(query = fx$inputs$query, value = fx$inputs$value, key = key,
               weights = fx$weights, num_heads = fx$layer$num_heads,
               key_dim = fx$layer$key_dim, value_dim = fx$layer$value_dim,
               attention_axes = fx$layer$attention_axes,
               attention_mask = fx$inputs$attention_mask,
               use_causal_mask = isTRUE(fx$call$use_causal_mask))
  over <- list(...)
  args[names(over)] <- over
  if (grads) {
    args$R <- fx$R
    do.call(ref_mha_loss_grads, args)
  } else {
    do.call(ref_mha, args)
  }
}

# Random weights in Keras layout.
rand_weights <- function(E, N, H, Hv = H, Dk = E, Dv = E, out = E,
                         bias = TRUE, gate = FALSE) {
  a <- function(...) array(rnorm(prod(c(...))) * 0.5, c(...))
  w <- list(query_kernel = a(E, N, H), query_bias = if (bias) a(N, H),
            key_kernel = a(Dk, N, H), key_bias = if (bias) a(N, H),
            value_kernel = a(Dv, N, Hv), value_bias = if (bias) a(N, Hv),
            output_kernel = a(N, Hv, out), output_bias = if (bias) a(out))
  if (gate) {
    w$gate_kernel <- a(E, N, Hv)
    w["gate_bias"] <- list(if (bias) a(N, Hv))
  }
  w
}

rand_array <- function(...) array(rnorm(prod(c(...))), c(...))

# An explicit-loop 3-D MHA (no gate), written independently of the grouped
# layout of helper-reference.R; `allowed` is a (B, N, T, S) logical array,
# `keep` an optional (B, N, T, S) 0/1 array with rate `rate`.
loop_mha_3d <- function(q_in, v_in, k_in, w, N, H, Hv, allowed, keep = NULL, rate = 0) {
  B <- dim(q_in)[1]; Tn <- dim(q_in)[2]; Sn <- dim(v_in)[2]
  O <- dim(w$output_kernel)[3]
  out <- array(0, c(B, Tn, O))
  scores <- array(0, c(B, N, Tn, Sn))
  for (b in seq_len(B)) {
    ctx <- array(0, c(Tn, N, Hv))
    for (n in seq_len(N)) {
      q <- matrix(0, Tn, H); k <- matrix(0, Sn, H); v <- matrix(0, Sn, Hv)
      for (t in seq_len(Tn)) for (h in seq_len(H))
        q[t, h] <- sum(q_in[b, t, ] * w$query_kernel[, n, h]) + w$query_bias[n, h]
      for (s in seq_len(Sn)) {
        for (h in seq_len(H))
          k[s, h] <- sum(k_in[b, s, ] * w$key_kernel[, n, h]) + w$key_bias[n, h]
        for (j in seq_len(Hv))
          v[s, j] <- sum(v_in[b, s, ] * w$value_kernel[, n, j]) + w$value_bias[n, j]
      }
      for (t in seq_len(Tn)) {
        ok <- allowed[b, n, t, ]
        p <- numeric(Sn)
        if (any(ok)) {
          lg <- sapply(seq_len(Sn), function(s) sum(q[t, ] * k[s, ]) / sqrt(H))
          e <- exp(lg[ok] - max(lg[ok]))
          p[ok] <- e / sum(e)
        }
        scores[b, n, t, ] <- p
        if (!is.null(keep)) p <- p * keep[b, n, t, ] / (1 - rate)
        for (j in seq_len(Hv)) ctx[t, n, j] <- sum(p * v[, j])
      }
    }
    for (t in seq_len(Tn)) for (o in seq_len(O))
      out[b, t, o] <- sum(ctx[t, , ] * w$output_kernel[, , o]) + w$output_bias[o]
  }
  list(output = out, scores = scores)
}

# ---- the fixtures -------------------------------------------------------------

test_that("fixtures are all present and readable", {
  nms <- fixture_names()
  expect_length(nms, 12L)
  for (nm in nms) {
    fx <- fx_read(nm)
    expect_identical(fx$name, nm)
    expect_named(fx$weights, c("query_kernel", "query_bias", "key_kernel", "key_bias",
                               "value_kernel", "value_bias", "output_kernel", "output_bias"))
    expect_identical(dim(fx$R), dim(fx$expected$output))
    expect_identical(length(dim(fx$weights$output_kernel)), 3L)
    if (isTRUE(fx$layer$use_bias)) expect_identical(length(dim(fx$weights$output_bias)), 1L)
    if (!is.null(fx$inputs$attention_mask)) expect_type(fx$inputs$attention_mask, "logical")
    # key holds the same numbers as value when the key was omitted
    if (isTRUE(fx$call$key_is_value)) expect_identical(fx$inputs$key, fx$inputs$value)
  }
})

test_that("fx_array follows row-major order", {
  x <- fx_array(list(shape = list(2L, 3L), dtype = "float64", data = as.list(0:5)))
  expect_identical(x, matrix(c(0, 1, 2, 3, 4, 5), 2, 3, byrow = TRUE))
  y <- fx_array(list(shape = list(2L, 3L, 4L), dtype = "float64", data = as.list(0:23)))
  expect_identical(y[2, 3, 4], 23)                       # Python y[1, 2, 3] = 23
  expect_identical(y[1, 2, 3], 6)                        # 0*12 + 1*4 + 2
  expect_identical(dim(fx_array(list(shape = 3L, dtype = "float64", data = 1:3))), 3L)
  expect_identical(fx_array(list(shape = 2L, dtype = "bool", data = c(1L, 0L))),
                   array(c(TRUE, FALSE), 2L))
  expect_null(fx_array(NULL))
})

test_that("ref_mha reproduces every fixture's output and scores to 1e-12", {
  for (nm in fixture_names()) {
    fx <- fx_read(nm)
    res <- fx_ref(fx)
    expect_identical(dim(res$output), dim(fx$expected$output), label = nm)
    expect_identical(dim(res$scores), dim(fx$expected$attention_scores), label = nm)
    expect_lt(rel_err(res$output, fx$expected$output), 1e-12, label = paste(nm, "output"))
    expect_lt(rel_err(res$scores, fx$expected$attention_scores), 1e-12,
              label = paste(nm, "scores"))
    # an explicitly passed key equal to value gives the same result
    if (isTRUE(fx$call$key_is_value)) {
      res2 <- fx_ref(fx, key = fx$inputs$value)
      expect_identical(res2$output, res$output, label = nm)
    }
  }
})

test_that("ref_mha_loss_grads reproduces every fixture's gradients", {
  for (nm in fixture_names()) {
    fx <- fx_read(nm)
    res <- fx_ref(fx, grads = TRUE)
    expect_equal(res$loss, sum(fx$expected$output * fx$R), tolerance = 1e-12)
    for (g in setdiff(names(fx$grads), "key_bias")) {
      if (is.null(fx$grads[[g]])) {
        expect_null(res$grads[[g]], label = paste(nm, g))
      } else {
        expect_identical(dim(res$grads[[g]]), dim(fx$grads[[g]]), label = paste(nm, g))
        expect_lt(rel_err(res$grads[[g]], fx$grads[[g]]), 1e-10, label = paste(nm, g))
      }
    }
    # d/d key_bias is analytically zero: absolute tolerance
    if (!is.null(fx$grads$key_bias)) {
      expect_lt(max(abs(res$grads$key_bias)), 1e-12, label = paste(nm, "key_bias"))
      expect_lt(max(abs(fx$grads$key_bias)), 1e-12, label = paste(nm, "key_bias fixture"))
    }
  }
})

test_that("finite differences of the reference match the fixture gradients", {
  for (nm in c("padding_mask", "self_causal", "causal_cross_T_gt_S",
               "attn_axes_default_4d", "attn_axis_2_of_4d", "key_is_value")) {
    fx <- fx_read(nm)
    loss <- function(...) sum(fx_ref(fx, ...)$output * fx$R)
    # query (always passed separately)
    g <- fd_grad(function(x) loss(query = x), fx$inputs$query)
    expect_lt(rel_err(g, fx$grads$query), 1e-6, label = paste(nm, "query"))
    # value: when the key is omitted (key = value) the value tensor feeds both
    # paths and its gradient is grads$value + grads$key
    g <- fd_grad(function(x) loss(value = x), fx$inputs$value)
    want <- fx$grads$value
    if (isTRUE(fx$call$key_is_value)) want <- want + fx$grads$key
    expect_lt(rel_err(g, want), 1e-6, label = paste(nm, "value"))
    if (!isTRUE(fx$call$key_is_value)) {
      g <- fd_grad(function(x) loss(key = x), fx$inputs$key)
      expect_lt(rel_err(g, fx$grads$key), 1e-6, label = paste(nm, "key"))
    }
    # a few weights
    for (wn in c("query_kernel", "key_kernel", "value_bias", "output_kernel")) {
      g <- fd_grad(function(x) {
        w <- fx$weights; w[[wn]] <- x
        loss(weights = w)
      }, fx$weights[[wn]])
      expect_lt(rel_err(g, fx$grads[[wn]]), 1e-6, label = paste(nm, wn))
    }
  }
})

# ---- hand-checkable cases -------------------------------------------------------

test_that("a fully masked query row gets zero scores and output = output bias", {
  set.seed(11)
  B <- 2; Tn <- 4; S <- 5; E <- 6; N <- 2; H <- 3
  w <- rand_weights(E, N, H)
  q <- rand_array(B, Tn, E); v <- rand_array(B, S, E)
  m <- array(runif(B * Tn * S) > 0.3, c(B, Tn, S))
  m[, , 1] <- TRUE
  m[2, 3, ] <- FALSE                                   # row t = 3 of batch 2
  res <- ref_mha(q, v, NULL, w, N, H, attention_mask = m)
  expect_false(anyNA(res$output)); expect_false(anyNA(res$scores))
  expect_identical(res$scores[2, , 3, ], matrix(0, N, S))
  expect_equal(res$output[2, 3, ], as.vector(w$output_bias), tolerance = 1e-15)
  # other rows sum to one and masked entries are exactly zero
  sums <- apply(res$scores, c(1, 2, 3), sum)
  sums[2, , 3] <- 1
  expect_equal(sums, array(1, c(B, N, Tn)), tolerance = 1e-14)
  expect_true(all(res$scores[aperm(array(!m, c(B, Tn, S, N)), c(1, 4, 2, 3))] == 0))
  # an explicit loop implementation agrees
  lp <- loop_mha_3d(q, v, v, w, N, H, H, aperm(array(m, c(B, Tn, S, N)), c(1, 4, 2, 3)))
  expect_lt(rel_err(res$output, lp$output), 1e-13)
  expect_lt(rel_err(res$scores, lp$scores), 1e-13)
  # everything masked: output = bias everywhere, gradients finite
  r0 <- ref_mha_loss_grads(q, v, NULL, w, N, H, attention_mask = array(FALSE, c(B, Tn, S)),
                           R = rand_array(B, Tn, E))
  expect_identical(r0$scores, array(0, c(B, N, Tn, S)))
  expect_equal(r0$output, aperm(array(w$output_bias, c(E, B, Tn)), c(2, 3, 1)))
  expect_identical(r0$grads$query, array(0, dim(q)))
  # gradient through a partly fully-masked input is still right
  Rr <- rand_array(B, Tn, E)
  an <- ref_mha_loss_grads(q, v, NULL, w, N, H, attention_mask = m, R = Rr)
  fd <- fd_grad(function(x) sum(ref_mha(x, v, NULL, w, N, H, attention_mask = m)$output * Rr), q)
  expect_lt(rel_err(an$grads$query, fd), 1e-6)
})

test_that("causal mask with T > S is top-left aligned", {
  set.seed(12)
  B <- 2; Tn <- 6; S <- 3; E <- 4; N <- 2; H <- 2
  w <- rand_weights(E, N, H)
  q <- rand_array(B, Tn, E); v <- rand_array(B, S, E)
  res <- ref_mha(q, v, NULL, w, N, H, use_causal_mask = TRUE)
  full <- ref_mha(q, v, NULL, w, N, H)
  # query t (1-based) sees keys 1..t: row 1 puts all weight on key 1
  expect_identical(res$scores[, , 1, ], array(c(1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), c(B, N, S)))
  for (t in 1:Tn) for (s in 1:S) {
    if (s > t) expect_true(all(res$scores[, , t, s] == 0))
  }
  # rows t >= S see every key: identical to the unmasked result
  expect_equal(res$scores[, , S:Tn, ], full$scores[, , S:Tn, ], tolerance = 1e-15)
  expect_equal(res$output[, S:Tn, ], full$output[, S:Tn, ], tolerance = 1e-15)
  # same as an explicit (T, S) attention_mask t >= s
  res2 <- ref_mha(q, v, NULL, w, N, H, attention_mask = outer(1:Tn, 1:S, ">="))
  expect_identical(res2$scores, res$scores)
  expect_identical(res2$output, res$output)
  # and T < S: row t still sees keys 1..t only
  q2 <- rand_array(B, 2, E)
  r3 <- ref_mha(q2, v, NULL, w, N, H, use_causal_mask = TRUE)
  expect_true(all(r3$scores[, , 1, 2:3] == 0)); expect_true(all(r3$scores[, , 2, 3] == 0))
  expect_true(all(r3$scores[, , 2, 1:2] > 0))
})

test_that("sliding window keeps the band |t - s| < w", {
  set.seed(13)
  B <- 1; Tn <- 7; E <- 4; N <- 2; H <- 2; win <- 2
  w <- rand_weights(E, N, H)
  x <- rand_array(B, Tn, E)
  res <- ref_mha(x, x, NULL, w, N, H, sliding_window = win)
  band <- abs(outer(1:Tn, 1:Tn, "-")) < win
  for (n in 1:N) {
    sc <- res$scores[1, n, , ]
    expect_true(all(sc[!band] == 0)); expect_true(all(sc[band] > 0))
  }
  expect_identical(ref_mha(x, x, NULL, w, N, H, attention_mask = band)$output, res$output)
  # with the causal mask: self plus the previous w - 1 keys
  rc <- ref_mha(x, x, NULL, w, N, H, sliding_window = 3, use_causal_mask = TRUE)
  allowed <- outer(1:Tn, 1:Tn, function(t, s) s <= t & s > t - 3)
  for (n in 1:N) {
    expect_true(all(rc$scores[1, n, , ][!allowed] == 0))
    expect_true(all(rc$scores[1, n, , ][allowed] > 0))
  }
  # window 1 = attend to self only: context = own projected value
  r1 <- ref_mha(x, x, NULL, w, N, H, sliding_window = 1)
  expect_identical(r1$scores[1, 1, , ], diag(Tn))
})

test_that("query_mask, value_mask and key_mask act like the matching attention_mask", {
  set.seed(14)
  B <- 2; Tn <- 4; S <- 5; E <- 4; N <- 2; H <- 3
  w <- rand_weights(E, N, H)
  q <- rand_array(B, Tn, E); v <- rand_array(B, S, E); k <- rand_array(B, S, E)
  qm <- matrix(TRUE, B, Tn); qm[1, 4] <- FALSE; qm[2, 2:3] <- FALSE
  res <- ref_mha(q, v, k, w, N, H, query_mask = qm)
  full <- ref_mha(q, v, k, w, N, H)
  expect_identical(res$scores[1, , 4, ], matrix(0, N, S))
  expect_identical(res$scores[2, , 2:3, ], array(0, c(N, 2, S)))
  expect_equal(res$output[1, 4, ], as.vector(w$output_bias), tolerance = 1e-15)
  expect_equal(res$output[2, 3, ], as.vector(w$output_bias), tolerance = 1e-15)
  expect_equal(res$output[1, 1:3, ], full$output[1, 1:3, ], tolerance = 1e-15)
  am <- array(qm, c(B, Tn, S))                          # (B, T, S) from the query mask
  expect_identical(ref_mha(q, v, k, w, N, H, attention_mask = am)$output, res$output)
  # value / key masks: (B, S) -> (B, 1, S); both are AND-ed; 0/1 works too
  vm <- matrix(1, B, S); vm[1, 5] <- 0
  km <- matrix(TRUE, B, S); km[2, 1] <- FALSE
  r2 <- ref_mha(q, v, k, w, N, H, value_mask = vm, key_mask = km)
  am2 <- aperm(array(vm == 1 & km, c(B, S, Tn)), c(1, 3, 2))
  expect_identical(ref_mha(q, v, k, w, N, H, attention_mask = am2)$scores, r2$scores)
  expect_true(all(r2$scores[1, , , 5] == 0)); expect_true(all(r2$scores[2, , , 1] == 0))
})

test_that("use_gate matches a hand-computed example", {
  # B = 1, T = 1, S = 2, E = Dk = Dv = 1, two heads with H = Hv = 1.
  # head 1: q = 1, keys 1 and 2 -> softmax(1, 2); head 2: Wq = 0 -> uniform.
  # values 1 and 2; gate kernel 0, gate biases (0, -1) -> gates (1/2, sigmoid(-1));
  # output kernel (1, 10), bias 0.5.
  w <- list(query_kernel = array(c(1, 0), c(1, 2, 1)), query_bias = array(0, c(2, 1)),
            key_kernel = array(1, c(1, 2, 1)), key_bias = array(0, c(2, 1)),
            value_kernel = array(1, c(1, 2, 1)), value_bias = array(0, c(2, 1)),
            output_kernel = array(c(1, 10), c(2, 1, 1)), output_bias = array(0.5, 1),
            gate_kernel = array(0, c(1, 2, 1)), gate_bias = array(c(0, -1), c(2, 1)))
  query <- array(1, c(1, 1, 1)); value <- array(c(1, 2), c(1, 2, 1))
  res <- ref_mha(query, value, NULL, w, num_heads = 2, key_dim = 1, use_gate = TRUE)
  e <- exp(1)
  ctx1 <- (1 * 1 + 2 * e) / (1 + e)                 # softmax(1, 2) . (1, 2)
  ctx2 <- 1.5                                       # uniform
  want <- 0.5 + 1 * ctx1 * 0.5 + 10 * ctx2 / (1 + exp(1))
  expect_equal(as.vector(res$output), want, tolerance = 1e-15)
  expect_equal(as.vector(res$scores[1, 1, 1, ]), c(1, e) / (1 + e), tolerance = 1e-15)
  expect_equal(as.vector(res$scores[1, 2, 1, ]), c(0.5, 0.5), tolerance = 1e-15)
  # without the gate the output is 0.5 + ctx1 + 10 * ctx2
  res0 <- ref_mha(query, value, NULL, w, num_heads = 2, key_dim = 1)
  expect_equal(as.vector(res0$output), 0.5 + ctx1 + 15, tolerance = 1e-15)
})

test_that("dropout_keep scales the kept probabilities and leaves the scores alone", {
  set.seed(15)
  B <- 2; Tn <- 3; S <- 4; E <- 4; N <- 2; H <- 2; rate <- 0.25
  w <- rand_weights(E, N, H)
  q <- rand_array(B, Tn, E); v <- rand_array(B, S, E)
  keep <- array(as.numeric(runif(B * N * Tn * S) > rate), c(B, N, Tn, S))
  res <- ref_mha(q, v, NULL, w, N, H, dropout_keep = keep, dropout_rate = rate)
  nod <- ref_mha(q, v, NULL, w, N, H)
  expect_identical(res$scores, nod$scores)
  lp <- loop_mha_3d(q, v, v, w, N, H, H, array(TRUE, c(B, N, Tn, S)), keep, rate)
  expect_lt(rel_err(res$output, lp$output), 1e-13)
  all_kept <- ref_mha(q, v, NULL, w, N, H, dropout_keep = array(1, dim(keep)))
  expect_equal(all_kept$output, nod$output, tolerance = 1e-15)
})

test_that("analytic gradients with gate, sliding window, masks and dropout match finite differences", {
  set.seed(16)
  B <- 2; Tn <- 5; E <- 4; Dv <- 3; N <- 2; H <- 3; Hv <- 2; O <- 3
  w <- rand_weights(E, N, H, Hv = Hv, Dk = E, Dv = Dv, out = O, gate = TRUE)
  q <- rand_array(B, Tn, E); k <- rand_array(B, Tn, E); v <- rand_array(B, Tn, Dv)
  qm <- matrix(TRUE, B, Tn); qm[2, 5] <- FALSE
  keep <- array(as.numeric(runif(B * N * Tn * Tn) > 0.2), c(B, N, Tn, Tn))
  Rr <- rand_array(B, Tn, O)
  call <- function(...) {
    a <- list(query = q, value = v, key = k, weights = w, num_heads = N, key_dim = H,
              value_dim = Hv, sliding_window = 3, use_causal_mask = TRUE, query_mask = qm,
              use_gate = TRUE, dropout_keep = keep, dropout_rate = 0.2)
    o <- list(...); a[names(o)] <- o
    a
  }
  an <- do.call(ref_mha_loss_grads, c(call(), list(R = Rr)))$grads
  loss <- function(...) sum(do.call(ref_mha, call(...))$output * Rr)
  expect_lt(rel_err(an$query, fd_grad(function(x) loss(query = x), q)), 1e-6)
  expect_lt(rel_err(an$key, fd_grad(function(x) loss(key = x), k)), 1e-6)
  expect_lt(rel_err(an$value, fd_grad(function(x) loss(value = x), v)), 1e-6)
  for (wn in c("query_kernel", "value_kernel", "output_kernel", "output_bias",
               "gate_kernel", "gate_bias")) {
    g <- fd_grad(function(x) { ww <- w; ww[[wn]] <- x; loss(weights = ww) }, w[[wn]])
    expect_lt(rel_err(an[[wn]], g), 1e-6, label = wn)
  }
})

test_that("Keras test B22 (identity weights) is reproduced", {
  eye <- diag(8)
  query <- array(eye, c(1, 8, 8))
  # value = arange(64).reshape(1, 8, 8) / 100 (row-major): value[1, s, e] = (8(s-1) + e-1)/100
  value <- aperm(array((0:63) / 100, c(8, 8, 1)), c(3, 2, 1))
  expect_identical(value[1, 2, 3], 0.10)
  K <- array(0, c(8, 8, 8))                           # K[i, h, j] = (i == j)
  for (i in 1:8) K[i, , i] <- 1
  w <- list(query_kernel = K, query_bias = array(0, c(8, 8)),
            key_kernel = K, key_bias = array(0, c(8, 8)),
            value_kernel = K, value_bias = array(0, c(8, 8)),
            output_kernel = K, output_bias = array(0, 8))
  res <- ref_mha(query, value, key = query, weights = w, num_heads = 8, key_dim = 8)
  want <- c(2.4072, 2.4394, 2.4717, 2.5039, 2.5361, 2.5683, 2.6006, 2.6328)
  expect_lt(max(abs(res$output[1, , ] - matrix(want, 8, 8))), 1e-4)   # constant over e
  want_scores <- ifelse(diag(8) == 1, 0.169053, 0.118707)
  for (n in 1:8) expect_lt(max(abs(res$scores[1, n, , ] - want_scores)), 1e-4)
  # exact values from the derivation
  expect_equal(res$scores[1, 1, 1, 1], exp(1 / sqrt(8)) / (exp(1 / sqrt(8)) + 7), tolerance = 1e-14)
})

test_that("attention_mask broadcasting follows Keras", {
  set.seed(17)
  B <- 2; Tn <- 3; S <- 4; E <- 4; N <- 3; H <- 2
  w <- rand_weights(E, N, H)
  q <- rand_array(B, Tn, E); v <- rand_array(B, S, E)
  m2 <- matrix(runif(Tn * S) > 0.4, Tn, S); m2[, 1] <- TRUE
  r2 <- ref_mha(q, v, NULL, w, N, H, attention_mask = m2)                        # (T, S)
  r3 <- ref_mha(q, v, NULL, w, N, H, attention_mask = aperm(array(m2, c(Tn, S, B)), c(3, 1, 2)))
  r4 <- ref_mha(q, v, NULL, w, N, H,                                              # (B, N, T, S)
                attention_mask = aperm(array(m2, c(Tn, S, B, N)), c(3, 4, 1, 2)))
  r1 <- ref_mha(q, v, NULL, w, N, H, attention_mask = array(m2 * 1, c(1, Tn, S))) # 0/1, (1, T, S)
  expect_identical(r3$output, r2$output); expect_identical(r4$output, r2$output)
  expect_identical(r1$scores, r2$scores)
  # a per-head mask really acts per head
  mh <- array(TRUE, c(B, N, Tn, S)); mh[, 2, , 2:S] <- FALSE
  rh <- ref_mha(q, v, NULL, w, N, H, attention_mask = mh)
  expect_identical(rh$scores[, 2, , 1], matrix(1, B, Tn))
  expect_error(ref_mha(q, v, NULL, w, N, H, attention_mask = array(TRUE, c(B, Tn, S + 1))))
})

test_that("attention axes: numbering, joint softmax, batch-like axes, order", {
  set.seed(18)
  B <- 2; T1 <- 2; T2 <- 3; S1 <- 3; S2 <- 2; E <- 4; N <- 2; H <- 2
  w <- rand_weights(E, N, H)
  q <- rand_array(B, T1, T2, E); v <- rand_array(B, S1, S2, E)
  r_def <- ref_mha(q, v, NULL, w, N, H)
  expect_identical(dim(r_def$scores), as.integer(c(B, N, T1, T2, S1, S2)))
  expect_identical(ref_mha(q, v, NULL, w, N, H, attention_axes = c(1, 2))$output, r_def$output)
  expect_identical(ref_mha(q, v, NULL, w, N, H, attention_axes = c(-3, -2))$output, r_def$output)
  # joint softmax over (S1, S2) = plain attention over the flattened axes
  r_flat <- ref_mha(array(q, c(B, T1 * T2, E)), array(v, c(B, S1 * S2, E)), NULL, w, N, H)
  expect_equal(array(r_def$output, c(B, T1 * T2, E)), r_flat$output, tolerance = 1e-14)
  expect_equal(array(r_def$scores, c(B, N, T1 * T2, S1 * S2)), r_flat$scores, tolerance = 1e-14)
  expect_equal(apply(r_def$scores, 1:4, sum), array(1, c(B, N, T1, T2)), tolerance = 1e-14)
  # axes given out of order: same output, scores follow the given order
  r_21 <- ref_mha(q, v, NULL, w, N, H, attention_axes = c(2, 1))
  expect_equal(r_21$output, r_def$output, tolerance = 1e-14)
  expect_equal(r_21$scores, aperm(r_def$scores, c(1, 2, 4, 3, 6, 5)), tolerance = 1e-14)
  # attention over axis 2 only: axis 1 is batch-like, each slice is a 3-D problem
  v2 <- rand_array(B, T1, S1, E)
  r_ax2 <- ref_mha(q, v2, NULL, w, N, H, attention_axes = 2)
  expect_identical(ref_mha(q, v2, NULL, w, N, H, attention_axes = -2)$output, r_ax2$output)
  expect_identical(dim(r_ax2$scores), as.integer(c(B, T1, N, T2, S1)))
  for (i in 1:T1) {
    ri <- ref_mha(array(q[, i, , ], c(B, T2, E)), array(v2[, i, , ], c(B, S1, E)), NULL, w, N, H)
    expect_equal(r_ax2$output[, i, , ], ri$output, tolerance = 1e-14)
    expect_equal(r_ax2$scores[, i, , , ], ri$scores, tolerance = 1e-14)
  }
  # attention over axis 1 only: axis 2 batch-like, scores (B, T2, N, T1, S1)
  v3 <- rand_array(B, S1, T2, E)
  r_ax1 <- ref_mha(q, v3, NULL, w, N, H, attention_axes = 1)
  expect_identical(dim(r_ax1$scores), as.integer(c(B, T2, N, T1, S1)))
  ri <- ref_mha(array(q[, , 3, ], c(B, T1, E)), array(v3[, , 3, ], c(B, S1, E)), NULL, w, N, H)
  expect_equal(r_ax1$output[, , 3, ], ri$output, tolerance = 1e-14)
})

test_that("output_shape, no bias and value_dim != key_dim are handled", {
  set.seed(19)
  B <- 2; Tn <- 3; S <- 4; E <- 5; N <- 2; H <- 3; Hv <- 4
  w <- rand_weights(E, N, H, Hv = Hv, Dk = 2, Dv = 6, out = 7, bias = FALSE)
  q <- rand_array(B, Tn, E); k <- rand_array(B, S, 2); v <- rand_array(B, S, 6)
  res <- ref_mha(q, v, k, w, N, H, value_dim = Hv)
  expect_identical(dim(res$output), as.integer(c(B, Tn, 7)))
  w0 <- w                                              # the loop version wants zero biases
  w0$query_bias <- array(0, c(N, H)); w0$key_bias <- array(0, c(N, H))
  w0$value_bias <- array(0, c(N, Hv)); w0$output_bias <- array(0, 7)
  lp <- loop_mha_3d(q, v, k, w0, N, H, Hv, array(TRUE, c(B, N, Tn, S)))
  expect_lt(rel_err(res$output, lp$output), 1e-13)
  expect_lt(rel_err(res$scores, lp$scores), 1e-13)
})

test_that("the reference is fast enough for a few thousand B*T*S", {
  set.seed(20)
  B <- 4; Tn <- 32; E <- 16; N <- 4; H <- 8
  w <- rand_weights(E, N, H)
  x <- rand_array(B, Tn, E)
  el <- system.time(ref_mha(x, x, NULL, w, N, H, use_causal_mask = TRUE))[["elapsed"]]
  expect_lt(el, 1)
})
