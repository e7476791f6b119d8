# Plain-R reference implementation of Keras 3 MultiHeadAttention (test helper).
#
# This is the yardstick the C++ implementation is tested against, so it is
# written for clarity, not speed: double precision, base R only, an explicit
# loop over (batch-like position, head) groups, each one an ordinary
# (T x S) attention computed with %*%.
#
# Conventions
#   * Arrays use Keras's axis order: query has dim c(B, T..., E) and
#     query[b, t, e] is Python query[b-1, t-1, e-1].
#   * N = num_heads, H = key_dim, Hv = value_dim, E/Dk/Dv = feature sizes of
#     query/key/value, "T..." = the query's axes between batch and features,
#     "S..." = the same for key/value.
#   * attention_axes use Keras numbering: 0 = batch axis, negative numbers
#     count from the end of the input (-1 = features); NULL = every axis except
#     batch and features. Axes that are neither batch, features nor attention
#     axes behave as extra batch axes ("batch-like" axes, BL below).
#   * Several attention axes: the softmax runs jointly over all key attention
#     axes (equivalently over their flattening).
#   * Masks are AND-ed; a masked logit takes no part in the softmax and its
#     probability is 0. A query row with no allowed key gets all-zero
#     probabilities (GUIDE decision 4), so its output is the output bias.
#
# Exported helpers (for the tests):
#   ref_mha(...)             forward: list(output, scores)
#   ref_mha_loss_grads(...)  forward + analytic gradients of L = sum(output * R)

# ---------------------------------------------------------------------------
# small internal tools
# ---------------------------------------------------------------------------

# Resolve Keras attention axes for an input of rank r (batch included) into
# 1-based R axes of the input, keeping the user's order.
.ref_resolve_axes <- function(attention_axes, r) {
  if (is.null(attention_axes)) return(seq.int(2L, r - 1L))
  a <- as.integer(unlist(attention_axes))
  a <- ifelse(a < 0L, r + a, a)                    # 0-based, batch = 0
  if (length(a) == 0L || any(a < 1L | a > r - 2L)) {
    stop("ref_mha: attention_axes must name axes between batch and features")
  }
  if (anyDuplicated(a)) stop("ref_mha: duplicated attention_axes")
  a + 1L                                           # 1-based R axes
}

# Dense projection contracting the LAST n_contract axes of x with the FIRST
# n_contract axes of kernel:
#   x (lead..., in...), kernel (in..., out...), bias (out...) or NULL
#   -> (lead..., out...)
# R arrays are column-major, so matrix(x, ncol = prod(in)) has one row per
# lead position and the columns enumerate in... with its first axis fastest;
# matrix(kernel, nrow = prod(in)) enumerates the rows the same way.
.ref_dense <- function(x, kernel, bias = NULL, n_contract = 1L) {
  xd <- dim(x); kd <- dim(kernel)
  r <- length(xd)
  in_dims <- xd[(r - n_contract + 1L):r]
  if (!identical(as.integer(in_dims), as.integer(kd[seq_len(n_contract)]))) {
    stop(sprintf("ref_mha: kernel dims (%s) do not fit input dims (%s)",
                 paste(kd, collapse = ", "), paste(xd, collapse = ", ")))
  }
  out_dims <- kd[-seq_len(n_contract)]
  X <- matrix(x, ncol = prod(in_dims))          # (prod(lead), prod(in))
  W <- matrix(kernel, nrow = prod(in_dims))     # (prod(in), prod(out))
  Y <- X %*% W                                  # (prod(lead), prod(out))
  if (!is.null(bias)) {
    if (length(bias) != ncol(Y)) stop("ref_mha: bias has the wrong size")
    Y <- Y + rep(as.vector(bias), each = nrow(Y))
  }
  array(Y, dim = c(xd[seq_len(r - n_contract)], out_dims))
}

# Backward of .ref_dense: given dy = dL/d(output), return dL/dx, dL/dkernel
# and dL/dbias (shaped like `bias`, NULL if bias is NULL).
.ref_dense_backward <- function(x, kernel, bias, dy, n_contract = 1L) {
  xd <- dim(x); kd <- dim(kernel)
  n_in <- prod(kd[seq_len(n_contract)])
  X <- matrix(x, ncol = n_in)                   # (prod(lead), prod(in))
  W <- matrix(kernel, nrow = n_in)              # (prod(in), prod(out))
  DY <- matrix(dy, ncol = ncol(W))              # (prod(lead), prod(out))
  dbias <- NULL
  if (!is.null(bias)) {
    dbias <- colSums(DY)
    dim(dbias) <- if (is.null(dim(bias))) length(bias) else dim(bias)
  }
  list(dx = array(DY %*% t(W), xd),
       dkernel = array(crossprod(X, DY), kd),
       dbias = dbias)
}

# Broadcast array x to dim `target` (same rank; every dim of x is 1 or equal
# to the target dim), by computing for each target cell the linear index of
# the x cell it reads.
.ref_broadcast <- function(x, target) {
  xd <- dim(x)
  if (is.null(xd)) xd <- length(x)
  if (length(xd) != length(target) || any(xd != 1L & xd != target)) {
    stop(sprintf("ref_mha: cannot broadcast (%s) to (%s)",
                 paste(xd, collapse = ", "), paste(target, collapse = ", ")))
  }
  stride <- cumprod(c(1, xd))[seq_along(xd)]  # column-major strides of x
  stride[xd == 1L] <- 0                        # size-1 axes are repeated
  lin <- 1
  for (k in seq_along(target)) {               # first axis varies fastest
    lin <- as.vector(outer(lin, (seq_len(target[k]) - 1) * stride[k], "+"))
  }
  array(x[lin], dim = target)
}

# Keras's attention_mask expansion: while the mask rank is below the scores
# rank, insert a size-1 axis at Python position -2 * n_att - 1 (just before
# the query attention axes; for 3-D inputs (B,T,S) -> (B,1,T,S) and
# (T,S) -> (1,T,S) -> (1,1,T,S)); then broadcast (each dim 1 or equal).
.ref_expand_attention_mask <- function(m, score_dim, n_att) {
  md <- dim(m)
  if (is.null(md)) md <- length(m)
  rs <- length(score_dim)
  if (length(md) > rs) stop("ref_mha: attention_mask has more dims than the scores")
  while (length(md) < rs) {
    k <- length(md)
    keep <- k - 2L * n_att                       # axes before the new one
    if (keep < 0L) stop("ref_mha: attention_mask rank too small")
    md <- c(md[seq_len(keep)], 1L, md[seq.int(keep + 1L, length.out = k - keep)])
  }
  m <- array(as.logical(m), dim = md)            # size-1 axes: data order unchanged
  .ref_broadcast(m, score_dim)
}

# Softmax over the columns of logits (T x S) restricted to allowed (T x S
# logical). Disallowed entries get probability 0; a row with no allowed
# entry is all zeros (never NaN, never uniform).
.ref_masked_softmax <- function(logits, allowed) {
  x <- logits
  x[!allowed] <- -Inf
  row_max <- apply(x, 1, max)                    # -Inf for a fully masked row
  row_max[!is.finite(row_max)] <- 0
  e <- exp(x - row_max)                          # row_max recycles down columns = per row
  e[!allowed] <- 0
  den <- rowSums(e)
  e / ifelse(den > 0, den, 1)
}

.ref_as_mask <- function(m, dims, what) {
  if (length(m) != prod(dims) ||
      (!is.null(dim(m)) && !identical(as.integer(dim(m)), as.integer(dims)))) {
    stop(sprintf("ref_mha: %s must have dims (%s)", what, paste(dims, collapse = ", ")))
  }
  array(as.logical(m), dim = dims)
}

# ---------------------------------------------------------------------------
# the computation (forward, and backward when R is given)
# ---------------------------------------------------------------------------

.ref_mha_run <- function(query, value, key, weights, num_heads, key_dim,
                         value_dim, attention_axes, attention_mask,
                         use_causal_mask, sliding_window, query_mask,
                         value_mask, key_mask, use_gate, dropout_keep,
                         dropout_rate, R = NULL) {
  if (is.null(key)) key <- value                 # Keras: key defaults to value
  qd <- dim(query); vd <- dim(value); kd <- dim(key)
  r <- length(qd)                                # input rank, batch included
  if (r < 3L || length(vd) != r || length(kd) != r) {
    stop("ref_mha: query, key and value must be arrays of one rank >= 3")
  }
  if (any(kd[-r] != vd[-r])) stop("ref_mha: key and value dims differ (except the last)")
  N <- as.integer(num_heads); H <- as.integer(key_dim); Hv <- as.integer(value_dim)

  att <- .ref_resolve_axes(attention_axes, r)    # attention axes (R, 1-based)
  bl  <- setdiff(seq_len(r - 1L), att)           # batch-like axes (batch first)
  if (any(qd[bl] != vd[bl])) stop("ref_mha: non-attention axes of query and value differ")
  na <- length(att); nbl <- length(bl)
  Tdims <- qd[att]; Sdims <- vd[att]; BLdims <- qd[bl]
  Tn <- prod(Tdims); Sn <- prod(Sdims)
  G <- prod(BLdims) * N                          # number of (batch-like position, head) groups

  # -- 1. projections --------------------------------------------------------
  q <- .ref_dense(query, weights$query_kernel, weights$query_bias)  # (B, T..., N, H)
  k <- .ref_dense(key,   weights$key_kernel,   weights$key_bias)    # (B, S..., N, H)
  v <- .ref_dense(value, weights$value_kernel, weights$value_bias)  # (B, S..., N, Hv)
  if (any(dim(q)[r:(r + 1L)] != c(N, H)) || any(dim(k)[r:(r + 1L)] != c(N, H)) ||
      any(dim(v)[r:(r + 1L)] != c(N, Hv))) {
    stop("ref_mha: kernel dims do not match num_heads/key_dim/value_dim")
  }

  # -- 2. one (T x H), (S x H), (S x Hv) block per group ---------------------
  # perm orders a projected array as (attention axes..., head_dim, BL..., N);
  # flattening the attention axes (first fastest) gives the T (or S) index and
  # flattening (BL..., N) gives the group index g.
  perm <- c(att, r + 1L, bl, r)
  qg <- array(aperm(q, perm), c(Tn, H,  G))
  kg <- array(aperm(k, perm), c(Sn, H,  G))
  vg <- array(aperm(v, perm), c(Sn, Hv, G))

  # -- 3. masks, in the Keras scores layout (BL..., N, T..., S...) ------------
  score_dim <- c(BLdims, N, Tdims, Sdims)
  # to_blocks orders a scores-layout array as (T..., S..., BL..., N), i.e. as
  # (T, S, g) blocks with the same group order as qg/kg/vg.
  to_blocks <- c(nbl + 1L + seq_len(na), nbl + 1L + na + seq_len(na),
                 seq_len(nbl), nbl + 1L)
  mask <- array(TRUE, score_dim)
  if (!is.null(attention_mask)) {
    mask <- mask & .ref_expand_attention_mask(attention_mask, score_dim, na)
  }
  if (!is.null(query_mask)) {                    # (B, T...) -> (BL..., 1, T..., 1...)
    qm <- aperm(.ref_as_mask(query_mask, qd[-r], "query_mask"), c(bl, att))
    dim(qm) <- c(BLdims, 1L, Tdims, rep(1L, na))
    mask <- mask & .ref_broadcast(qm, score_dim)
  }
  for (sm in list(list(value_mask, "value_mask"), list(key_mask, "key_mask"))) {
    if (is.null(sm[[1]])) next                   # (B, S...) -> (BL..., 1, 1..., S...)
    m <- aperm(.ref_as_mask(sm[[1]], vd[-r], sm[[2]]), c(bl, att))
    dim(m) <- c(BLdims, 1L, rep(1L, na), Sdims)
    mask <- mask & .ref_broadcast(m, score_dim)
  }
  if (isTRUE(use_causal_mask) || !is.null(sliding_window)) {
    if (na != 1L) stop("ref_mha: causal / sliding-window masks need a single attention axis")
    tt <- seq_len(Tn); ss <- seq_len(Sn)
    band <- matrix(TRUE, Tn, Sn)                 # (T, S)
    if (isTRUE(use_causal_mask)) band <- band & outer(tt, ss, ">=")   # top-left aligned
    if (!is.null(sliding_window)) band <- band & (abs(outer(tt, ss, "-")) < sliding_window)
    dim(band) <- c(rep(1L, nbl + 1L), Tn, Sn)
    mask <- mask & .ref_broadcast(band, score_dim)
  }
  maskg <- array(aperm(mask, to_blocks), c(Tn, Sn, G))

  use_dropout <- !is.null(dropout_keep)
  if (use_dropout) {
    if (!identical(as.integer(dim(dropout_keep)), as.integer(score_dim))) {
      stop(sprintf("ref_mha: dropout_keep must have the scores' dims (%s)",
                   paste(score_dim, collapse = ", ")))
    }
    # inverted dropout: kept probabilities are scaled by 1 / (1 - rate)
    keepg <- array(aperm(dropout_keep, to_blocks), c(Tn, Sn, G)) / (1 - dropout_rate)
  }

  # -- 4. attention, group by group -----------------------------------------
  scale <- 1 / sqrt(H)
  probs <- array(0, c(Tn, Sn, G))                # softmax output (pre-dropout)
  ctxg  <- array(0, c(Tn, Hv, G))                # attention context
  for (g in seq_len(G)) {
    Q <- matrix(qg[, , g], Tn, H)                # (T, H)
    K <- matrix(kg[, , g], Sn, H)                # (S, H)
    V <- matrix(vg[, , g], Sn, Hv)               # (S, Hv)
    logits <- (Q * scale) %*% t(K)               # (T, S)
    P <- .ref_masked_softmax(logits, matrix(maskg[, , g], Tn, Sn))
    probs[, , g] <- P
    if (use_dropout) P <- P * keepg[, , g]
    ctxg[, , g] <- P %*% V                       # (T, Hv)
  }
  # back to (B, T..., N, Hv): the inverse of perm
  ctx <- aperm(array(ctxg, c(Tdims, Hv, BLdims, N)), order(perm))

  # -- 5. optional gate and output projection -------------------------------
  gate <- NULL
  ctx_out <- ctx
  if (isTRUE(use_gate)) {
    gate <- .ref_dense(query, weights$gate_kernel, weights$gate_bias)  # (B, T..., N, Hv)
    gate <- 1 / (1 + exp(-gate))
    ctx_out <- ctx * gate
  }
  output <- .ref_dense(ctx_out, weights$output_kernel, weights$output_bias,
                       n_contract = 2L)          # (B, T..., out...)
  scores <- aperm(array(probs, c(Tdims, Sdims, BLdims, N)), order(to_blocks))

  res <- list(output = output, scores = scores)
  if (is.null(R)) return(res)

  # -- backward of L = sum(output * R) ---------------------------------------
  if (length(R) != length(output)) stop("ref_mha: R must have the output's dims")
  R <- array(R, dim(output))
  bo <- .ref_dense_backward(ctx_out, weights$output_kernel, weights$output_bias,
                            R, n_contract = 2L)
  dctx <- bo$dx                                  # (B, T..., N, Hv)
  grads <- list()
  if (isTRUE(use_gate)) {
    dgate_pre <- dctx * ctx * gate * (1 - gate)  # through the sigmoid
    dctx <- dctx * gate
    bg <- .ref_dense_backward(query, weights$gate_kernel, weights$gate_bias, dgate_pre)
  }
  dctxg <- array(aperm(dctx, perm), c(Tn, Hv, G))
  dqg <- array(0, c(Tn, H, G)); dkg <- array(0, c(Sn, H, G)); dvg <- array(0, c(Sn, Hv, G))
  for (g in seq_len(G)) {
    Q <- matrix(qg[, , g], Tn, H); K <- matrix(kg[, , g], Sn, H); V <- matrix(vg[, , g], Sn, Hv)
    P <- matrix(probs[, , g], Tn, Sn)
    Pd <- if (use_dropout) P * keepg[, , g] else P
    dC <- matrix(dctxg[, , g], Tn, Hv)           # (T, Hv)
    dvg[, , g] <- crossprod(Pd, dC)              # (S, Hv)
    dP <- dC %*% t(V)                            # (T, S)
    if (use_dropout) dP <- dP * keepg[, , g]
    dlogits <- P * (dP - rowSums(dP * P))        # softmax backward (0 where masked)
    dqg[, , g] <- (dlogits %*% K) * scale        # (T, H)
    dkg[, , g] <- crossprod(dlogits, Q * scale)  # (S, H)
  }
  dq <- aperm(array(dqg, c(Tdims, H,  BLdims, N)), order(perm))  # (B, T..., N, H)
  dk <- aperm(array(dkg, c(Sdims, H,  BLdims, N)), order(perm))  # (B, S..., N, H)
  dv <- aperm(array(dvg, c(Sdims, Hv, BLdims, N)), order(perm))  # (B, S..., N, Hv)
  bq <- .ref_dense_backward(query, weights$query_kernel, weights$query_bias, dq)
  bk <- .ref_dense_backward(key,   weights$key_kernel,   weights$key_bias,   dk)
  bv <- .ref_dense_backward(value, weights$value_kernel, weights$value_bias, dv)
  dquery <- bq$dx
  if (isTRUE(use_gate)) dquery <- dquery + bg$dx
  grads <- list(query = dquery, key = bk$dx, value = bv$dx,
                query_kernel = bq$dkernel, query_bias = bq$dbias,
                key_kernel = bk$dkernel, key_bias = bk$dbias,
                value_kernel = bv$dkernel, value_bias = bv$dbias,
                output_kernel = bo$dkernel, output_bias = bo$dbias)
  if (isTRUE(use_gate)) {
    grads$gate_kernel <- bg$dkernel
    grads["gate_bias"] <- list(bg$dbias)
  }
  res$loss <- sum(output * R)
  res$grads <- grads
  res
}

# ---------------------------------------------------------------------------
# public helpers
# ---------------------------------------------------------------------------

# ref_mha(): forward pass of Keras 3 MultiHeadAttention.
#   query (B, T..., E), value (B, S..., Dv), key (B, S..., Dk) or NULL (= value)
#   weights: list(query_kernel (E,N,H), query_bias (N,H)|NULL,
#                 key_kernel (Dk,N,H), key_bias (N,H)|NULL,
#                 value_kernel (Dv,N,Hv), value_bias (N,Hv)|NULL,
#                 output_kernel (N,Hv,out...), output_bias (out...)|NULL,
#                 [use_gate: gate_kernel (E,N,Hv), gate_bias (N,Hv)|NULL])
#   attention_mask: logical or 0/1, broadcastable the Keras way (see
#     .ref_expand_attention_mask); query_mask (B, T...); value_mask, key_mask
#     (B, S...) -- applied directly (an explicit query_mask IS applied here,
#     unlike Keras, which ignores an explicit query_mask argument).
#   use_causal_mask: allowed iff t >= s (single attention axis; top-left
#     aligned when T != S); sliding_window w: allowed iff |t - s| < w.
#   use_gate: output projection of context * sigmoid(query . gate_kernel + gate_bias).
#   dropout_keep: 0/1 array of the scores' dims; the context then uses
#     probs * dropout_keep / (1 - dropout_rate). Returned scores are pre-dropout.
# Returns list(output = (B, T..., out...),
#              scores = (B, non-attention axes..., N, T att axes..., S att axes...)).
ref_mha <- function(query, value, key = NULL, weights, num_heads, key_dim,
                    value_dim = key_dim, attention_axes = NULL,
                    attention_mask = NULL, use_causal_mask = FALSE,
                    sliding_window = NULL, query_mask = NULL, value_mask = NULL,
                    key_mask = NULL, use_gate = FALSE, dropout_keep = NULL,
                    dropout_rate = 0) {
  .ref_mha_run(query, value, key, weights, num_heads, key_dim, value_dim,
               attention_axes, attention_mask, use_causal_mask, sliding_window,
               query_mask, value_mask, key_mask, use_gate, dropout_keep,
               dropout_rate, R = NULL)
}

# ref_mha_loss_grads(): forward pass plus analytic gradients of
# L = sum(output * R), R of the output's dims (i.e. R = dL/d output).
# Same arguments as ref_mha() plus R. Returns
#   list(output, scores, loss, grads = list(query, key, value, query_kernel,
#        query_bias, key_kernel, key_bias, value_kernel, value_bias,
#        output_kernel, output_bias [, gate_kernel, gate_bias]))
# Gradients are per call argument, like the fixtures: when key is NULL the
# key path still gets grads$key (computed at the value tensor), and the total
# gradient w.r.t. the value tensor is grads$value + grads$key. Bias
# gradients are NULL when the bias is NULL. dropout_keep is held fixed.
ref_mha_loss_grads <- function(query, value, key = NULL, weights, num_heads,
                               key_dim, value_dim = key_dim,
                               attention_axes = NULL, attention_mask = NULL,
                               use_causal_mask = FALSE, sliding_window = NULL,
                               query_mask = NULL, value_mask = NULL,
                               key_mask = NULL, use_gate = FALSE,
                               dropout_keep = NULL, dropout_rate = 0, R) {
  .ref_mha_run(query, value, key, weights, num_heads, key_dim, value_dim,
               attention_axes, attention_mask, use_causal_mask, sliding_window,
               query_mask, value_mask, key_mask, use_gate, dropout_keep,
               dropout_rate, R = R)
}
