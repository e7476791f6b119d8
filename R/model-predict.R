# predict() and backprop() for models.

#' Predictions of a model in batches
#'
#' Runs the model on `x` in batches of `batch_size` samples (along the first
#' axis of every input) and binds the results. Dropout is inactive. A
#' progress bar appears when the run takes more than a moment (after about
#' two seconds, see `cli`'s `cli.progress_show_after` option).
#'
#' @param object A model.
#' @param x The model's input: an array, or a (named) list of arrays as for
#'   calling the model, or a data frame (as [fit()][fit.multihead_model]
#'   takes it), or a generator: an R function called with no arguments
#'   returning one batch per call, the input array(s) or `list(x)` (or
#'   `list(x, y, ...)`, whose `x` is used), and `NULL` when done.
#' @param ... Must be empty: the other arguments are given by name, as in
#'   keras3.
#' @param batch_size `NULL` or samples per batch, a positive whole number.
#'   `NULL` means 32, or with `steps` the number of samples divided by
#'   `steps` (rounded up).
#' @param verbose `"auto"` or `1` (a progress bar for slow runs), `0` or `2`
#'   (none), as in keras3.
#' @param steps `NULL` or a positive whole number: predict the first `steps`
#'   batches only (for a generator: draw `steps` batches; `NULL` draws until
#'   it returns `NULL`).
#' @returns What calling the model returns: an array, or a list of arrays.
#' @export
#' @examples
#' model <- keras_model_sequential(input_shape = c(5, 8))
#' model |> layer_multi_head_attention(num_heads = 2, key_dim = 4)
#' y <- predict(model, array(rnorm(100 * 5 * 8), c(100, 5, 8)), batch_size = 32)
#' dim(y)
predict.multihead_model <- function(object, x, ..., batch_size = NULL, verbose = "auto", steps = NULL) {
  if (...length()) abort_arg("...", "empty (predict() takes x, batch_size, verbose and steps)",
                             sprintf("%d more argument(s)", ...length()))
  if (missing(x) || is.null(x)) abort_arg("x", "supplied: the model's input array(s) or a generator function")
  batch_size <- check_whole(batch_size, "batch_size", null_ok = TRUE)
  steps <- check_whole(steps, "steps", null_ok = TRUE)
  if (!(identical(verbose, "auto") || (is.numeric(verbose) && length(verbose) == 1L && verbose %in% 0:2))) {
    abort_arg("verbose", "\"auto\", 0, 1 or 2", describe_value(verbose))
  }
  self <- layer_self(object)
  show_bar <- identical(verbose, "auto") || verbose == 1
  if (is_generator_data(x)) {
    if (!is.null(batch_size)) {
      abort_arg("batch_size", "NULL when `x` is a generator function (its batches have their own size)",
                describe_value(batch_size))
    }
    return(predict_generator(self, x, steps, show_bar))
  }
  x <- normalize_model_x(self, x, "x")
  model_ensure_built(self, x)
  vals <- model_input_values(self, x)
  present <- Filter(Negate(is.null), vals)
  n <- unique(vapply(present, function(v) dim(v)[1L], integer(1)))
  if (length(n) != 1L) {
    abort_arg("x", "arrays with the same number of samples (first axis)",
              sprintf("sample counts %s", paste(n, collapse = ", ")))
  }
  if (n == 0L) abort_arg("x", "arrays with at least one sample (first axis)", "0 samples")
  if (is.null(batch_size)) batch_size <- if (is.null(steps)) 32L else as.integer(ceiling(n / steps))
  batch_size <- min(batch_size, n)  # starts + batch_size must not overflow an integer
  starts <- seq(1L, n, by = batch_size)
  if (!is.null(steps)) {
    if (steps > length(starts)) warn_ran_out("predict()", length(starts), steps, "steps")
    starts <- starts[seq_len(min(steps, length(starts)))]
  }
  bar <- NULL
  if (show_bar && length(starts) > 1L) {
    bar <- cli::cli_progress_bar("Predicting", total = length(starts), .auto_close = FALSE)
  }
  pieces <- vector("list", length(starts))
  native_in <- graph_native_inputs(self$graph)
  for (b in seq_along(starts)) {
    idx <- starts[b]:min(n, starts[b] + batch_size - 1L)
    batch <- Map(function(v, native) if (is.null(v)) NULL else slice_first_axis(v, idx, native), vals, native_in)
    run <- run_graph_forward(self$graph, batch, NULL, FALSE, keep = FALSE, native = TRUE)
    pieces[[b]] <- run$outputs
    if (!is.null(bar)) cli::cli_progress_update(id = bar)
  }
  if (!is.null(bar)) cli::cli_progress_done(id = bar)
  outs <- lapply(seq_along(self$graph$outputs), function(k) bind_first_axis(lapply(pieces, `[[`, k)))
  model_output_structure(self, outs)
}

# predict() on a generator function: its batches (an input array, or a list
# whose first element is the input), `steps` of them or until NULL.
#' @noRd
predict_generator <- function(self, fn, steps, show_bar) {
  pieces <- list()
  bar <- NULL
  if (show_bar) bar <- cli::cli_progress_bar("Predicting", total = if (is.null(steps)) NA else steps,
                                             .auto_close = FALSE)
  b <- 0L
  repeat {
    if (!is.null(steps) && b >= steps) break
    raw <- call_generator(fn, "x", b + 1L)
    if (is.null(raw)) {
      if (!is.null(steps) && b > 0L) warn_ran_out("predict()", b, steps, "steps")
      break
    }
    if (is.list(raw) && !is.object(raw)) {
      ok <- length(raw) %in% 1:3
      if (!ok) abort_arg("x", paste0("a function returning an input array or list(x) (or list(x, y, ...)) per ",
                                     "batch, or NULL when done"), describe_value(raw))
      raw <- raw[[1L]]
    }
    data <- generator_batch_data(self, list(x = raw), "x", need_y = FALSE)
    b <- b + 1L
    pieces[[b]] <- run_graph_forward(self$graph, data$x, NULL, FALSE, keep = FALSE, native = TRUE)$outputs
    if (!is.null(bar)) cli::cli_progress_update(id = bar)
  }
  if (!is.null(bar)) cli::cli_progress_done(id = bar)
  if (b == 0L) abort_arg("x", "a generator function that yields at least one batch", "NULL at once")
  outs <- lapply(seq_along(self$graph$outputs), function(k) bind_first_axis(lapply(pieces, `[[`, k)))
  model_output_structure(self, outs)
}

# (Plain double/integer/logical arrays are gathered in C++, cpp_take_rows();
# others, e.g. with dimnames or of strings, through `[`.)
#' @noRd
slice_first_axis <- function(x, idx, native = FALSE) {
  d <- dim(x)
  if (length(d) >= 2L && is.null(dimnames(x)) && typeof(x) %in% c("double", "integer", "logical") &&
      !is.object(x) && length(idx) && all(idx >= 1 & idx <= d[1L])) {
    if (native && is.double(x)) return(cpp_native_take_rows(x, as.integer(idx), mh_threads()))
    return(cpp_take_rows(x, as.integer(idx), mh_threads()))
  }
  args <- c(list(x, idx), rep(list(TRUE), length(d) - 1L), list(drop = FALSE))
  do.call(`[`, args)
}

#' @noRd
bind_first_axis <- function(parts) {
  if (length(parts) == 1L) return(parts[[1L]])
  d <- dim(parts[[1L]])
  n <- vapply(parts, function(p) dim(p)[1L], integer(1))
  out <- array(if (is.logical(parts[[1L]])) NA else 0, c(sum(n), d[-1L]))
  at <- 0L
  for (i in seq_along(parts)) {
    idx <- at + seq_len(n[i])
    out <- do.call(`[<-`, c(list(out, idx), rep(list(TRUE), length(d) - 1L), list(value = parts[[i]])))
    at <- at + n[i]
  }
  out
}

#' Gradients of a model
#'
#' @describeIn backprop Runs the model forward on `x` and backward from
#'   `grad_output` (an array of the output's shape, or a list matching the
#'   model's outputs). Returns `list(output = , grads = list(inputs = ,
#'   weights = ))`: `output` as calling the model returns it; `inputs` one
#'   gradient per model input in the order of the model's inputs (named by
#'   input; `NULL` for integer or logical inputs); `weights` one gradient per
#'   weight, named by weight path, in [get_weights()] order. Gradients are
#'   summed where a tensor feeds several layers (residual connections) and
#'   over the calls of a shared layer.
#' @param x For models: the model's input array(s), as for calling it.
#' @param training For models: `TRUE` to apply dropout (its masks are reused
#'   by the backward pass).
#' @export
backprop.multihead_model <- function(object, x, ..., training = FALSE, grad_output) {
  if (...length()) abort_arg("...", "empty (backprop() of a model takes x, training and grad_output)",
                             sprintf("%d more argument(s)", ...length()))
  if (missing(x)) abort_arg("x", "supplied: the model's input array(s)")
  if (missing(grad_output)) abort_arg("grad_output", "supplied: an array of the output's shape")
  training <- check_flag(training, "training")
  self <- layer_self(object)
  model_ensure_built(self, x)
  vals <- model_input_values(self, x)
  run <- run_graph_forward(self$graph, vals, NULL, training, keep = TRUE)
  outs <- run$outputs
  g <- model_grad_output_list(self, grad_output, outs)
  res <- run_graph_backward(self$graph, run, g)
  tensors <- self$graph$inputs
  in_grads <- lapply(seq_along(tensors), function(i) {
    gi <- res$inputs[[i]]
    if (is.null(gi) && !is.null(vals[[i]]) && tensors[[i]]$dtype %in% c("float32", "float64")) {
      gi <- array(0, dim(vals[[i]]))
    }
    gi
  })
  names(in_grads) <- if (identical(self$input_form, "named")) self$input_names else
    vapply(tensors, function(t) t$name, character(1))
  list(output = model_output_structure(self, outs),
       grads = list(inputs = in_grads, weights = model_weight_grads(self, res$weights)))
}

# grad_output given by the user -> a list aligned with the model's outputs,
# each checked against the output's shape.
#' @noRd
model_grad_output_list <- function(self, grad_output, outs) {
  n <- length(outs)
  if (identical(self$output_form, "single")) {
    g <- list(grad_output)
    args <- "grad_output"
  } else {
    if (!is.list(grad_output) || is.object(grad_output) || length(grad_output) != n) {
      abort_arg("grad_output", sprintf("a list of %d arrays, one per output of model \"%s\"", n, self$name),
                describe_value(grad_output))
    }
    if (identical(self$output_form, "named") && !is.null(names(grad_output))) {
      if (!setequal(names(grad_output), self$output_names)) {
        abort_arg("grad_output", sprintf("a list named %s", paste(self$output_names, collapse = ", ")),
                  sprintf("names %s", paste(names(grad_output), collapse = ", ")))
      }
      g <- unname(grad_output[self$output_names])
      args <- paste0("grad_output$", self$output_names)
    } else {
      g <- unname(grad_output)
      args <- sprintf("grad_output[[%d]]", seq_len(n))
    }
  }
  lapply(seq_len(n), function(k) {
    o <- outs[[k]]
    d <- if (is.null(dim(o))) length(o) else dim(o)
    gk <- g[[k]]
    gd <- if (is.null(dim(gk))) length(gk) else dim(gk)
    if (!is.numeric(gk) || length(gd) != length(d) || any(gd != d)) {
      abort_arg(args[k], sprintf("a numeric array of the output's shape %s", fmt_shape(d)), describe_value(gk))
    }
    if (!cpp_all_finite(gk, mh_threads())) abort_arg(args[k], "finite: it contains NA, NaN or Inf")
    array(as.double(gk), d)
  })
}
