# The C++ layer against the plain-R reference (helper-reference.R) on
# randomized configurations: ranks 3 to 5, one or several attention axes,
# every mask kind, cross-attention with T != S and key != value, vector
# output_shape, value_dim != key_dim, gate, sliding window. float64.

random_case <- function(seed) {
  set.seed(seed)
  r <- sample(3:5, 1)
  B <- sample(1:3, 1)
  n_mid <- r - 2L
  if (n_mid == 1L) {
    axes <- 1L
  } else {
    k <- sample(seq_len(n_mid), 1)
    axes <- sort(sample(seq_len(n_mid), k))
  }
  other <- setdiff(seq_len(n_mid), axes)
  q_mid <- v_mid <- integer(n_mid)
  q_mid[other] <- v_mid[other] <- sample(1:3, length(other), replace = TRUE)
  q_mid[axes] <- sample(1:4, length(axes), replace = TRUE)
  v_mid[axes] <- sample(1:4, length(axes), replace = TRUE)
  E <- sample(2:6, 1); Dv <- sample(2:6, 1); Dk <- sample(2:6, 1)
  N <- sample(1:3, 1); H <- sample(1:4, 1); Hv <- sample(1:4, 1)
  out <- if (runif(1) < 0.3) sample(1:3, sample(1:2, 1), replace = TRUE) else NULL
  # Keras numbering, sometimes negative, sometimes default (NULL)
  axes_arg <- if (identical(axes, seq_len(n_mid)) && runif(1) < 0.5) NULL else
    ifelse(runif(length(axes)) < 0.3, axes - r, axes)
  key_given <- runif(1) < 0.6
  k_dims <- if (key_given) c(B, v_mid, Dk) else c(B, v_mid, Dv)
  list(r = r, B = B, axes = axes, axes_arg = axes_arg, q_dims = c(B, q_mid, E),
       v_dims = c(B, v_mid, Dv), k_dims = k_dims, N = N, H = H, Hv = Hv, out = out,
       use_bias = runif(1) < 0.7, use_gate = runif(1) < 0.25, key_given = key_given)
}

run_case <- function(cs, masks = list(), causal = FALSE, window = NULL) {
  E <- cs$q_dims[cs$r]
  out_feat <- if (is.null(cs$out)) E else cs$out
  w <- random_weights(E, cs$k_dims[cs$r], cs$v_dims[cs$r], cs$N, cs$H, cs$Hv, out_feat,
                      use_bias = cs$use_bias, use_gate = cs$use_gate)
  query <- rand_array(cs$q_dims); value <- rand_array(cs$v_dims)
  key <- if (cs$key_given) rand_array(cs$k_dims) else NULL
  mha <- layer_multi_head_attention(num_heads = cs$N, key_dim = cs$H, value_dim = cs$Hv,
                                    output_shape = cs$out, use_bias = cs$use_bias,
                                    attention_axes = cs$axes_arg, dtype = "float64",
                                    use_gate = cs$use_gate, sliding_window = window)
  mha$build(cs$q_dims, cs$v_dims, if (cs$key_given) cs$k_dims)
  set_weights(mha, w$ordered)
  got <- do.call(mha, c(list(query, value, key, return_attention_scores = TRUE,
                             use_causal_mask = causal), masks))
  want <- do.call(ref_mha, c(list(query, value, key, weights = w$ref, num_heads = cs$N,
                                  key_dim = cs$H, value_dim = cs$Hv, attention_axes = cs$axes_arg,
                                  use_causal_mask = causal, sliding_window = window,
                                  use_gate = cs$use_gate), masks))
  list(got = got, want = want, mha = mha)
}

test_that("random configurations match the reference (no masks)", {
  for (seed in 1:40) {
    cs <- random_case(seed)
    res <- run_case(cs)
    expect_equal(dim(res$got$output), dim(res$want$output), label = paste("output dims, seed", seed))
    expect_equal(dim(res$got$scores), dim(res$want$scores), label = paste("scores dims, seed", seed))
    expect_lt(rel_err(res$got$output, res$want$output), 1e-10, label = paste("output, seed", seed))
    expect_lt(rel_err(res$got$scores, res$want$scores), 1e-10, label = paste("scores, seed", seed))
    expect_equal(res$mha$attention_axes, cs$axes)
  }
})

test_that("random configurations with attention, query, value and key masks match", {
  for (seed in 101:140) {
    cs <- random_case(seed)
    sd <- c(cs$q_dims[-c(cs$axes + 1L, cs$r)], cs$N, cs$q_dims[cs$axes + 1L], cs$v_dims[cs$axes + 1L])
    nb <- cs$r - 1L - length(cs$axes)
    # a mask of a random broadcastable shape: full, without heads, or 1s
    kind <- sample(c("full", "no_heads", "bcast"), 1)
    mdims <- switch(kind,
      full = sd,
      no_heads = sd[-(nb + 1L)],
      bcast = ifelse(runif(length(sd)) < 0.5, 1L, sd))
    masks <- list(attention_mask = array(runif(prod(mdims)) < 0.7, dim = mdims))
    if (runif(1) < 0.5) masks$query_mask <- array(runif(prod(cs$q_dims[-cs$r])) < 0.8, cs$q_dims[-cs$r])
    if (runif(1) < 0.5) masks$value_mask <- array(runif(prod(cs$v_dims[-cs$r])) < 0.8, cs$v_dims[-cs$r])
    if (cs$key_given && runif(1) < 0.5) {
      masks$key_mask <- array(runif(prod(cs$k_dims[-cs$r])) < 0.8, cs$k_dims[-cs$r])
    }
    res <- run_case(cs, masks)
    expect_lt(rel_err(res$got$output, res$want$output), 1e-10, label = paste("output, seed", seed))
    expect_lt(rel_err(res$got$scores, res$want$scores), 1e-10, label = paste("scores, seed", seed))
  }
})

test_that("causal masks and sliding windows match on single-axis attention", {
  ran <- 0
  for (seed in 201:240) {
    set.seed(seed)
    cs <- random_case(seed)
    if (length(cs$axes) != 1L) next
    ran <- ran + 1
    window <- if (runif(1) < 0.5) sample(1:3, 1) else NULL
    masks <- if (runif(1) < 0.5) list(value_mask = array(runif(prod(cs$v_dims[-cs$r])) < 0.8,
                                                       cs$v_dims[-cs$r])) else list()
    res <- run_case(cs, masks, causal = runif(1) < 0.7, window = window)
    expect_lt(rel_err(res$got$output, res$want$output), 1e-10, label = paste("output, seed", seed))
    expect_lt(rel_err(res$got$scores, res$want$scores), 1e-10, label = paste("scores, seed", seed))
  }
  expect_gte(ran, 10)
})

test_that("a query row with every key masked gets zero probabilities and the output bias", {
  set.seed(7)
  x <- rand_array(2, 4, 6)
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 3, dtype = "float64",
                                    bias_initializer = "random_normal")
  mask <- array(TRUE, c(2, 4, 4))
  mask[1, 2, ] <- FALSE            # batch 1, query 2: nothing to attend
  res <- mha(x, x, attention_mask = mask, return_attention_scores = TRUE)
  expect_true(all(res$scores[1, , 2, ] == 0))
  expect_false(anyNA(res$output))
  bo <- mha$output_dense$bias
  expect_equal(res$output[1, 2, ], as.vector(bo), tolerance = 1e-14)
  # the same through a query mask, on the default (no scores) path
  qm <- matrix(TRUE, 2, 4); qm[2, 3] <- FALSE
  out <- mha(x, x, query_mask = qm)
  expect_equal(out[2, 3, ], as.vector(bo), tolerance = 1e-14)
  # the gradient through a fully masked row is finite
  g <- backprop(mha, x, x, attention_mask = mask, grad_output = array(1, dim(x)))
  expect_true(all(is.finite(g$grads$query)))
})

test_that("float32 and float64 layers agree to float32 rounding", {
  set.seed(3)
  q <- rand_array(2, 7, 8); v <- rand_array(2, 5, 6)
  m64 <- layer_multi_head_attention(num_heads = 2, key_dim = 4, dtype = "float64")
  m32 <- layer_multi_head_attention(num_heads = 2, key_dim = 4)
  m64$build(dim(q), dim(v)); m32$build(dim(q), dim(v))
  w <- get_weights(m64)
  set_weights(m32, w)
  # float32 layers store float32-representable weights
  expect_lt(rel_err(unlist(get_weights(m32)), unlist(w)), 1e-7)
  expect_false(identical(get_weights(m32), w))
  expect_lt(rel_err(m32(q, v), m64(q, v)), 3e-6)
})
