# torch <-> Keras weight layout for multi-head attention (test helper).
#
# torch_to_keras_mha() and keras_to_torch_mha() are copied from the vignette
# "Coming from keras3 and torch" (vignettes/coming-from-keras3-and-torch.Rmd);
# keep the two in step. torch_mha_formula() is torch's nn_multihead_attention
# computed in plain R straight from the torch-layout matrices (batch first),
# independent of multihead and of the Keras layout.
#
# torch state: in_proj_weight (3E, E) [query rows, key rows, value rows],
# in_proj_bias (3E), out_proj.weight (E, E), out_proj.bias (E); weights are
# (out, in) and applied as x %*% t(W); head n is rows (n - 1) * H + 1:H of each
# projection, H = E / N.
# Keras weights (get_weights() order): query kernel (E, N, H), query bias
# (N, H), key kernel, key bias, value kernel, value bias, output kernel
# (N, H, E), output bias (E).

torch_to_keras_mha <- function(state, num_heads) {
  w_in <- state[["in_proj_weight"]]
  e <- ncol(w_in)
  h <- e %/% num_heads
  rows <- function(part) (part - 1) * e + seq_len(e)
  kernel <- function(w) aperm(array(t(w), c(e, h, num_heads)), c(1, 3, 2))
  bias <- function(b) t(matrix(b, h, num_heads))
  w_out <- state[["out_proj.weight"]]
  list(
    kernel(w_in[rows(1), ]), bias(state[["in_proj_bias"]][rows(1)]),
    kernel(w_in[rows(2), ]), bias(state[["in_proj_bias"]][rows(2)]),
    kernel(w_in[rows(3), ]), bias(state[["in_proj_bias"]][rows(3)]),
    aperm(array(t(w_out), c(h, num_heads, nrow(w_out))), c(2, 1, 3)),
    as.vector(state[["out_proj.bias"]])
  )
}

keras_to_torch_mha <- function(weights) {
  e <- dim(weights[[1]])[1]
  torch_matrix <- function(kernel) t(matrix(aperm(kernel, c(1, 3, 2)), e))
  flat_bias <- function(b) as.vector(t(b))
  w_out <- weights[[7]]
  list(
    in_proj_weight = rbind(torch_matrix(weights[[1]]), torch_matrix(weights[[3]]),
                           torch_matrix(weights[[5]])),
    in_proj_bias = c(flat_bias(weights[[2]]), flat_bias(weights[[4]]),
                     flat_bias(weights[[6]])),
    out_proj.weight = t(matrix(aperm(w_out, c(2, 1, 3)), ncol = dim(w_out)[3])),
    out_proj.bias = as.vector(weights[[8]])
  )
}

# A random torch state for embed_dim e.
random_torch_mha_state <- function(e) {
  list(in_proj_weight = matrix(rnorm(3 * e * e, sd = 0.4), 3 * e, e),
       in_proj_bias = rnorm(3 * e, sd = 0.1),
       out_proj.weight = matrix(rnorm(e * e, sd = 0.4), e, e),
       out_proj.bias = rnorm(e, sd = 0.1))
}

# torch's forward (batch_first = TRUE, no dropout): list(output (B, T, E),
# weights (B, N, T, S) per head, as avg_weights = FALSE returns them).
# key_padding_mask (B, S): TRUE = ignore that key.
torch_mha_formula <- function(query, key, value, state, num_heads, key_padding_mask = NULL) {
  e <- dim(query)[3]
  h <- e %/% num_heads
  project <- function(x, part) {
    rows <- (part - 1) * e + seq_len(e)
    sweep(x %*% t(state$in_proj_weight[rows, , drop = FALSE]), 2, state$in_proj_bias[rows], "+")
  }
  n_b <- dim(query)[1]
  out <- array(0, dim(query))
  probs <- array(0, c(n_b, num_heads, dim(query)[2], dim(key)[2]))
  for (b in seq_len(n_b)) {
    q <- project(query[b, , ], 1)
    k <- project(key[b, , ], 2)
    v <- project(value[b, , ], 3)
    heads <- lapply(seq_len(num_heads), function(n) {
      cols <- (n - 1) * h + seq_len(h)
      logits <- q[, cols, drop = FALSE] %*% t(k[, cols, drop = FALSE]) / sqrt(h)
      if (!is.null(key_padding_mask)) logits[, key_padding_mask[b, ]] <- -Inf
      p <- exp(logits - apply(logits, 1, max))
      p / rowSums(p)
    })
    for (n in seq_len(num_heads)) probs[b, n, , ] <- heads[[n]]
    concat <- do.call(cbind, lapply(seq_len(num_heads), function(n) {
      heads[[n]] %*% v[, (n - 1) * h + seq_len(h), drop = FALSE]
    }))
    out[b, , ] <- sweep(concat %*% t(state$out_proj.weight), 2, state$out_proj.bias, "+")
  }
  list(output = out, weights = probs)
}
