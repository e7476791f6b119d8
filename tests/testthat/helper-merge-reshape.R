# Helpers of the tests of the merge, reshaping, Lambda and TimeDistributed
# layers (test-layer-merge.R, test-layer-reshaping.R, test-layer-lambda.R,
# test-layer-time-distributed.R).

# Central differences of sum(w * model(x)) for every input array and weight
# of a float64 model, against backprop().
check_model_gradients <- function(model, x, tol = 1e-6) {
  out <- model(x)
  w <- array(rnorm(length(out)), dim(out))
  g <- backprop(model, x, grad_output = w)
  loss <- function(xx) sum(w * model(xx))
  xs <- if (is.list(x)) x else list(x)
  gin <- g$grads$inputs
  if (!is.list(x)) gin <- if (is.list(gin)) gin[1] else list(gin)
  for (i in seq_along(xs)) {
    num <- fd_grad(function(v) { xx <- xs; xx[[i]] <- v; loss(if (is.list(x)) xx else xx[[1]]) }, xs[[i]])
    expect_lt(rel_err(gin[[i]], num), tol, label = sprintf("d input %d", i))
  }
  ws <- get_weights(model)
  for (i in seq_along(ws)) {
    num <- fd_grad(function(v) {
      a <- ws; a[[i]] <- v; set_weights(model, a); on.exit(set_weights(model, ws)); loss(x)
    }, ws[[i]])
    expect_lt(rel_err(g$grads$weights[[i]], num), tol, label = names(ws)[i])
  }
  invisible(g)
}

# Every group and dataset path of an HDF5 file, sorted.
h5_group_paths <- function(path) {
  f <- hdf5r::H5File$new(path, mode = "r")
  on.exit(f$close_all())
  sort(f$ls(recursive = TRUE)$name)
}

# Sample b of x (any rank, batch first) as an array of the other axes.
sample_of <- function(x, b) {
  d <- dim(x)
  array(x[seq(b, length(x), by = d[1])], d[-1])
}

# Keras's (row-major) reshape of each sample, written with explicit index
# arithmetic: element k (0-based, row-major) of a sample goes to position k
# (row-major) of the new shape.
ref_reshape <- function(x, target) {
  d <- dim(x)
  B <- d[1]
  out <- array(0, c(B, target))
  rm_index <- function(dims) {  # column-major positions listed in row-major order
    n <- prod(dims)
    idx <- arrayInd(seq_len(n), rev(dims))[, rev(seq_along(dims)), drop = FALSE]  # row-major tuples
    as.vector(1 + (idx - 1) %*% cumprod(c(1, dims))[seq_along(dims)])
  }
  src <- rm_index(d[-1]); dst <- rm_index(target)
  for (b in 1:B) {
    s <- sample_of(x, b)
    o <- numeric(prod(target))
    o[dst] <- s[src]
    out[seq(b, length(out), by = B)] <- o
  }
  out
}
