# Plain-R references for the supporting layers (Dense, EinsumDense,
# activations, LayerNormalization, Embedding, Dropout statistics, Add,
# GlobalAveragePooling1D, Flatten) and a finite-difference checker for any
# layer with backprop(). Written for clarity: base R, double precision,
# Keras's axis order (batch first).

# ---- activations -------------------------------------------------------------

ref_sigmoid <- function(z) 1 / (1 + exp(-z))
ref_softplus <- function(z) log1p(exp(z))

# f(z) for every activation name; softmax and log_softmax act on the last axis.
ref_activation <- function(name, z) {
  last_axis <- function(f) {
    d <- dim(z)
    if (is.null(d)) return(f(z))
    r <- length(d)
    m <- matrix(aperm(z, c(r, seq_len(r - 1L))), nrow = d[r])   # one column per row of the last axis
    out <- apply(m, 2, f)
    aperm(array(out, c(d[r], d[-r])), c(seq_len(r - 1L) + 1L, 1L))
  }
  switch(name,
    linear = z,
    relu = pmax(z, 0),
    gelu = z * pnorm(z),
    sigmoid = ref_sigmoid(z),
    tanh = tanh(z),
    softmax = last_axis(function(v) exp(v - max(v)) / sum(exp(v - max(v)))),
    silu = z * ref_sigmoid(z),
    elu = ifelse(z > 0, z, exp(z) - 1),
    selu = 1.0507009873554805 * ifelse(z > 0, z, 1.6732632423543772 * (exp(z) - 1)),
    softplus = ref_softplus(z),
    softsign = z / (1 + abs(z)),
    exponential = exp(z),
    relu6 = pmin(pmax(z, 0), 6),
    leaky_relu = ifelse(z >= 0, z, 0.2 * z),
    hard_sigmoid = pmin(pmax(z + 3, 0), 6) / 6,
    mish = z * tanh(ref_softplus(z)),
    log_softmax = last_axis(function(v) v - max(v) - log(sum(exp(v - max(v))))),
    stop("ref_activation: unknown activation ", name)
  )
}

all_activations <- c("linear", "relu", "gelu", "sigmoid", "tanh", "softmax", "silu", "elu", "selu",
                     "softplus", "softsign", "exponential", "relu6", "leaky_relu", "hard_sigmoid",
                     "mish", "log_softmax")

# ---- projections ---------------------------------------------------------------

# activation(x %*% kernel + bias) on the last axis of x.
ref_dense <- function(x, kernel, bias = NULL, activation = "linear") {
  d <- dim(x)
  r <- length(d)
  y <- matrix(x, ncol = d[r]) %*% kernel
  if (!is.null(bias)) y <- sweep(y, 2, as.vector(bias), "+")
  ref_activation(activation, array(y, c(d[-r], ncol(kernel))))
}

# A general einsum of two arrays by brute force over every letter's index:
# "ij,jk->ik" style equations (no ellipsis). Small arrays only.
ref_einsum <- function(equation, x, k) {
  parts <- strsplit(sub("->", ",", equation), ",")[[1]]
  li <- strsplit(parts[1], "")[[1]]; lk <- strsplit(parts[2], "")[[1]]; lo <- strsplit(parts[3], "")[[1]]
  sizes <- c(stats::setNames(dim(x), li), stats::setNames(dim(k), lk))
  sizes <- sizes[!duplicated(names(sizes))]
  grid <- as.matrix(expand.grid(lapply(sizes, seq_len)))
  colnames(grid) <- names(sizes)
  prod_vals <- x[grid[, li, drop = FALSE]] * k[grid[, lk, drop = FALSE]]
  out <- array(0, sizes[lo])
  idx <- grid[, lo, drop = FALSE]
  for (i in seq_len(nrow(grid))) out[idx[i, , drop = FALSE]] <- out[idx[i, , drop = FALSE]] + prod_vals[i]
  out
}

# Adds a bias spanning the trailing output axes from letter `first` on
# (Keras's bias shape with 1s), by explicit broadcasting.
ref_add_trailing_bias <- function(y, bias) {
  d <- dim(y); bd <- dim(bias); if (is.null(bd)) bd <- length(bias)
  lead <- length(d) - length(bd)
  full <- array(bias, c(rep(1L, lead), bd))
  idx <- arrayInd(seq_along(y), d)
  bidx <- idx
  for (a in seq_along(d)) bidx[, a] <- if (dim(full)[a] == 1L) 1L else idx[, a]
  y + full[bidx]
}

# ---- LayerNormalization ---------------------------------------------------------

# Normalizes over the (1-based) axes `axes`; gamma/beta have the dims of
# those axes (or are NULL).
ref_layer_norm <- function(x, axes, gamma = NULL, beta = NULL, epsilon = 1e-3) {
  d <- dim(x)
  keep <- setdiff(seq_along(d), axes)
  perm <- c(axes, keep)
  xp <- aperm(x, perm)
  m <- matrix(xp, nrow = prod(d[axes]))              # one column per normalized group
  mu <- colMeans(m)
  v <- colMeans(sweep(m, 2, mu)^2)
  y <- sweep(sweep(m, 2, mu), 2, sqrt(v + epsilon), "/")
  if (!is.null(gamma)) y <- y * as.vector(gamma)
  if (!is.null(beta)) y <- y + as.vector(beta)
  aperm(array(y, d[perm]), order(perm))
}

# ---- Embedding, pooling, flatten -------------------------------------------------

ref_embedding <- function(ids, table) {
  d <- if (is.null(dim(ids))) length(ids) else dim(ids)
  array(table[as.vector(ids) + 1, , drop = FALSE], c(d, ncol(table)))
}

# Mean over axis 2 of (B, T, C) (or axis 3 of (B, C, T) when channels_first)
# counting only steps where mask is TRUE; 0 when none is.
ref_average_pool <- function(x, mask = NULL, channels_first = FALSE) {
  if (channels_first) x <- aperm(x, c(1, 3, 2))
  B <- dim(x)[1]; Tn <- dim(x)[2]; C <- dim(x)[3]
  if (is.null(mask)) mask <- matrix(TRUE, B, Tn)
  out <- matrix(0, B, C)
  for (b in seq_len(B)) {
    steps <- which(mask[b, ])
    if (length(steps)) out[b, ] <- colMeans(x[b, steps, , drop = FALSE][1, , , drop = TRUE] |> matrix(ncol = C))
  }
  out
}

# Keras's row-major flattening of every axis after the batch axis.
ref_flatten <- function(x, channels_first = FALSE) {
  d <- dim(x)
  r <- length(d)
  if (r == 1L) return(matrix(x, ncol = 1))
  if (channels_first && r > 2L) {
    x <- aperm(x, c(1L, seq.int(3L, r), 2L))
    d <- dim(x)
  }
  matrix(aperm(x, c(1L, rev(seq.int(2L, r)))), nrow = d[1])
}

# ---- finite differences for any layer --------------------------------------------

# Checks backprop() of `layer` on `inputs` (an array, or a list for Add)
# against central differences of L = sum(output * R), for every input in
# `wrt` (TRUE: all) and every weight. `make_layer`, if given, returns a fresh
# layer with the same weights for each evaluation (dropout, whose mask
# changes with every call).
check_layer_gradients <- function(layer, inputs, mask = NULL, training = NULL, tol = 1e-6,
                                  wrt_inputs = TRUE, make_layer = NULL) {
  fresh <- if (is.null(make_layer)) function() layer else make_layer
  l0 <- fresh()
  out <- l0(inputs, training = training, mask = mask)
  R <- array(rnorm(length(out)), dim(out))
  g <- backprop(fresh(), inputs, training = training, mask = mask, grad_output = R)
  expect_equal(g$output, out, ignore_attr = "keras_mask")  # an eager output carries its mask
  loss <- function(inp, lay = fresh()) sum(lay(inp, training = training, mask = mask) * R)
  if (wrt_inputs) {
    if (is.list(inputs)) {
      expect_length(g$grads$inputs, length(inputs))
      for (i in seq_along(inputs)) {
        num <- fd_grad(function(v) { inp <- inputs; inp[[i]] <- v; loss(inp) }, inputs[[i]])
        expect_lt(rel_err(g$grads$inputs[[i]], num), tol, label = sprintf("d inputs[[%d]]", i))
      }
    } else {
      num <- fd_grad(function(v) loss(v), inputs)
      expect_lt(rel_err(g$grads$inputs, num), tol, label = "d inputs")
    }
  }
  lay <- fresh()
  w <- get_weights(lay)
  expect_length(g$grads$weights, length(w))
  for (i in seq_along(w)) {
    num <- fd_grad(function(v) {
      l <- fresh()
      w2 <- w
      w2[[i]] <- v
      set_weights(l, w2)
      on.exit(set_weights(l, w))
      loss(inputs, l)
    }, w[[i]])
    expect_equal(dim(g$grads$weights[[i]]), dim(w[[i]]))
    expect_lt(rel_err(g$grads$weights[[i]], num), tol, label = names(g$grads$weights)[i])
  }
  invisible(g)
}

# ---- small test utilities -------------------------------------------------------

# An error of class multihead_error_argument whose message names `arg`.
expect_arg_error <- function(expr, arg) {
  expect_error(expr, paste0("`", arg, "`"), fixed = TRUE, class = "multihead_error_argument")
}

# The protocol functions of a layer's class (what models call).
layer_protocol <- function(layer) multihead:::layer_class_def(multihead:::layer_self(layer)$class_name)
layer_state <- function(layer) multihead:::layer_self(layer)

# get_config() -> from_config() -> get_config() gives the same list.
expect_config_round_trip <- function(layer) {
  cfg <- get_config(layer)
  again <- from_config(cfg)
  expect_s3_class(again, class(layer)[1])
  expect_identical(get_config(again), cfg)
  invisible(again)
}
