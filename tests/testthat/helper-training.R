# Helpers for the training tests (compile / fit / evaluate).

# A linear regression problem: x (n, p), y = x %*% beta + 0.1 (n, 1).
regression_data <- function(n = 64, p = 3, beta = c(1, -2, 0.5)[seq_len(p)]) {
  x <- matrix(rnorm(n * p), n, p)
  list(x = x, y = x %*% beta + 0.1)
}

# A one-Dense-layer regression model in float64 (exact comparisons).
dense64_model <- function(p = 3, units = 1, ...) {
  keras_model_sequential(input_shape = p) |> layer_dense(units, dtype = "float64", ...)
}

# The mean squared error of predictions and its gradient, as Keras's
# MeanSquaredError with the default reduction (optionally weighted).
mse_by_hand <- function(pred, y, sample_weight = NULL) {
  n <- dim(pred)[1]
  units <- length(pred) / n
  w <- if (is.null(sample_weight)) rep(1, n) else sample_weight
  list(value = sum(rowMeans(matrix((pred - y)^2, n)) * w) / n,
       grad = array(2 * (pred - y) * w / (n * units), dim(pred)))
}

# Weights after one plain SGD step w - lr * grad, from the model's own
# backprop() with grad_output = dLoss/dy_pred; `extra` adds to the weight
# gradients (e.g. regularizer terms), a list in get_weights() order.
sgd_step_by_hand <- function(model, x, grad_output, lr, extra = NULL) {
  g <- backprop(model, x, grad_output = grad_output)$grads$weights
  w <- get_weights(model)
  Map(function(wi, gi, ei) wi - lr * (gi + if (is.null(ei)) 0 else ei), w, unname(g),
      if (is.null(extra)) vector("list", length(w)) else extra)
}

# Signals an interrupt, as Ctrl-C does.
signal_interrupt <- function() {
  signalCondition(structure(class = c("interrupt", "condition"), list(message = "interrupt", call = NULL)))
}
