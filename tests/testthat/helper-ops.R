# Helpers for testing op_* functions: run an op through the graph runner
# (as a model or a traced custom layer does) and check its gradient against
# central finite differences in float64.

# Runs `fn` (a function of tensors returning one tensor) on float64 (or the
# given dtypes) placeholders shaped like `inputs`, then forward on `inputs`.
# Returns list(output =, graph =, run =).
graph_run_op <- function(fn, inputs, dtypes = NULL) {
  if (is.null(dtypes)) {
    dtypes <- vapply(inputs, function(v) if (is.logical(v)) "bool" else if (is.integer(v)) "int32" else "float64",
                     character(1))
  }
  ph <- lapply(seq_along(inputs), function(i) {
    multihead:::new_placeholder_tensor(multihead:::value_shape(inputs[[i]]), dtypes[[i]], paste0("in", i))
  })
  names(ph) <- names(inputs)
  out <- do.call(fn, ph)
  graph <- multihead:::build_graph(unname(ph), list(out))
  run <- multihead:::run_graph_forward(graph, unname(inputs), keep = TRUE)
  list(output = run$outputs[[1L]], graph = graph, run = run, symbolic = out)
}

# Checks the gradient of sum(w * fn(inputs)) with respect to every input
# named in `wrt` (default: all double inputs) against central differences.
check_op_gradient <- function(fn, inputs, wrt = NULL, eps = 1e-6, tolerance = 1e-6, seed = 1) {
  set.seed(seed)
  r <- graph_run_op(fn, inputs)
  y <- r$output
  w <- if (length(multihead:::value_shape(y))) array(rnorm(length(y)), multihead:::value_shape(y)) else rnorm(1)
  back <- multihead:::run_graph_backward(r$graph, r$run, list(w))
  if (is.null(wrt)) wrt <- which(vapply(inputs, is.double, logical(1)))
  loss <- function(vals) {
    run <- multihead:::run_graph_forward(r$graph, unname(vals), keep = FALSE)
    sum(w * run$outputs[[1L]])
  }
  for (i in wrt) {
    x <- inputs[[i]]
    fd <- x
    for (k in seq_along(x)) {
      up <- inputs; dn <- inputs
      up[[i]][k] <- x[k] + eps
      dn[[i]][k] <- x[k] - eps
      fd[k] <- (loss(up) - loss(dn)) / (2 * eps)
    }
    g <- back$inputs[[i]]
    testthat::expect_false(is.null(g), info = sprintf("no gradient for input %s", i))
    testthat::expect_equal(as.vector(g), as.vector(fd), tolerance = tolerance,
                           info = sprintf("gradient of input %s", i))
  }
  invisible(back)
}
