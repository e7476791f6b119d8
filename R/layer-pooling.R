# Pooling over steps (forward and backward in C++, src/core/pooling.h, except
# GlobalMaxPooling1D's): GlobalAveragePooling1D (keras3's
# layer_global_average_pooling_1d()), the mean over the steps of a sequence,
# counting only unmasked steps when a mask is given; GlobalMaxPooling1D; and
# the windowed AveragePooling1D / MaxPooling1D.

#' Global average pooling over steps
#'
#' Averages a (batch, steps, features) input over its steps, giving (batch,
#' features) (Keras's `GlobalAveragePooling1D`). With a mask (batch, steps),
#' for example from [layer_embedding()] with `mask_zero = TRUE`, only the
#' unmasked steps are averaged; a sequence whose steps are all masked gives
#' zeros (Keras gives NaN). The output carries no mask.
#'
#' @section Calling the layer:
#' `layer(inputs, mask = NULL)`: `mask` is a logical (batch, steps) array,
#' `TRUE` for the steps that count.
#'
#' @inheritParams layer_dense
#' @param data_format `"channels_last"` (inputs are (batch, steps,
#'   features), the default; `NULL` means the same) or `"channels_first"`
#'   ((batch, features, steps)).
#' @param keepdims If `TRUE`, the steps axis is kept with size 1.
#' @param ... Named layer options: `name` (default
#'   `"global_average_pooling1d"`, ...), `dtype` (`"float32"` or
#'   `"float64"`), `trainable`.
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object`.
#' @export
#' @examples
#' x <- array(rnorm(2 * 4 * 3), c(2, 4, 3))
#' pool <- layer_global_average_pooling_1d()
#' dim(pool(x))                              # 2 3
#' mask <- rbind(c(TRUE, TRUE, FALSE, FALSE), c(TRUE, TRUE, TRUE, TRUE))
#' pool(x, mask = mask)[1, ]                 # mean of the first two steps
layer_global_average_pooling_1d <- function(object, data_format = "channels_last", keepdims = FALSE, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  new_global_pooling_1d(object, "GlobalAveragePooling1D", "global_average_pooling1d", data_format, keepdims,
                        list(...), "layer_global_average_pooling_1d()")
}

# The constructor both global poolings share.
#' @noRd
new_global_pooling_1d <- function(object, class_name, prefix, data_format, keepdims, dots, fun) {
  extra <- check_layer_dots(dots, base_layer_options(), fun)
  cfg <- list(data_format = check_data_format(data_format), keepdims = check_flag(keepdims, "keepdims"))
  self <- new_layer_state(class_name, prefix, extra$name, extra$dtype, extra$trainable, cfg)
  compose_layer(object, new_layer_object(self, protocol_layer_function))
}

#' @noRd
check_data_format <- function(x, arg = "data_format") {
  if (is.null(x)) return("channels_last")
  if (!(is.character(x) && length(x) == 1L && !is.na(x) && x %in% c("channels_last", "channels_first"))) {
    abort_arg(arg, "NULL, \"channels_last\" or \"channels_first\"", describe_value(x))
  }
  x
}

# Axis order that presents the input to the core as (batch, steps, features).
#' @noRd
pooling_order <- function(self) if (self$config$data_format == "channels_last") 0:2 else c(0L, 2L, 1L)

#' @noRd
pooling_output_shape <- function(self, d) {
  steps_axis <- if (self$config$data_format == "channels_last") 2L else 3L
  if (self$config$keepdims) {
    d[steps_axis] <- 1L
    return(d)
  }
  d[-steps_axis]
}

#' @noRd
pooling_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  x <- check_layer_input(inputs, min_rank = 3L)
  d <- dim(x)
  if (length(d) != 3L) {
    abort_arg("inputs", "a rank-3 array (batch, steps, features)", sprintf("rank %d (shape %s)", length(d), fmt_shape(d)))
  }
  order <- pooling_order(self)
  if (is.list(masks) && !is.object(masks)) {
    if (length(masks) != 1L) abort_arg("mask", "NULL, a logical array or a list of one mask", describe_value(masks))
    masks <- masks[[1L]]
  }
  mask <- if (is.null(masks)) NULL else check_position_mask(masks, d[order[1:2] + 1L])
  ensure_built(self, d)
  y <- cpp_average_steps_forward(x, order, mask, is_float64(self), mh_threads())
  out_dims <- pooling_output_shape(self, d)
  dim(y) <- out_dims
  list(output = y, cache = list(x_dims = d, order = order, mask = mask, out_dims = out_dims,
                                native = is_native_tensor(x)), mask = NULL)
}

#' @noRd
pooling_backward <- function(self, cache, grad_output) {
  g <- check_grad_output(grad_output, cache$out_dims)
  d <- cache$x_dims
  gd <- d[cache$order[c(1L, 3L)] + 1L]
  if (is_native_tensor(g) && !identical(as.integer(dim(g)), as.integer(gd))) g <- native_as_array(g)
  if (!is_native_tensor(g)) dim(g) <- gd
  dx <- cpp_average_steps_backward(g, d, cache$order, cache$mask, is_float64(self), mh_threads(),
                                   isTRUE(cache$native))
  list(inputs = dx, weights = named_weight_grads(self, list()))
}

#' @noRd
register_global_average_pooling_1d <- function() {
  register_global_pooling_1d("GlobalAveragePooling1D", layer_global_average_pooling_1d, pooling_forward,
                             pooling_backward, native_tensors = TRUE)
}

# The registration both global poolings share: the configuration
# (data_format, keepdims), rank-3 inputs, the output shape.
#' @noRd
register_global_pooling_1d <- function(class_name, ctor, forward, backward, native_tensors = FALSE) {
  register_protocol_layer(
    class_name,
    properties = list(data_format = function(self) self$config$data_format,
                      keepdims = function(self) self$config$keepdims),
    describe = function(self) {
      s <- if (self$config$data_format == "channels_first") "channels_first" else ""
      if (self$config$keepdims) s <- paste0(s, if (nzchar(s)) ", " else "", "keepdims")
      describe_built(self, s)
    },
    get_config = function(self) c(base_layer_config(self), self$config[c("data_format", "keepdims")]),
    from_config = function(config) layer_from_config(ctor, config, c("data_format", "keepdims")),
    build = weightless_build(rank = 3L),
    compute_output_shape = function(self, input_shape, args = list()) {
      input_shape <- as_input_shape(input_shape, min_rank = 3L)
      if (length(input_shape) != 3L) abort_arg("input_shape", "a shape of rank 3", fmt_shape(input_shape))
      pooling_output_shape(self, input_shape)
    },
    forward = forward, backward = backward, native_tensors = native_tensors,
    keras_object = keras_object_adjust(build_config = FALSE))  # Keras's global pooling has no build()
}

# ---- GlobalMaxPooling1D ---------------------------------------------------------

#' Global max pooling over steps
#'
#' The maximum of a (batch, steps, features) input over its steps, giving
#' (batch, features) (Keras's `GlobalMaxPooling1D`). As in Keras, an input
#' mask is not used (masked steps take part in the maximum) and the output
#' carries no mask. The gradient goes to the steps holding the maximum, split
#' equally among ties (as Keras's backends differentiate `max`).
#'
#' @inheritParams layer_global_average_pooling_1d
#' @param ... Named layer options: `name` (default `"global_max_pooling1d"`,
#'   ...), `dtype` (`"float32"` or `"float64"`), `trainable`.
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object`.
#' @export
#' @examples
#' x <- array(rnorm(2 * 4 * 3), c(2, 4, 3))
#' pool <- layer_global_max_pooling_1d()
#' all.equal(pool(x), apply(x, c(1, 3), max))
layer_global_max_pooling_1d <- function(object, data_format = "channels_last", keepdims = FALSE, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  new_global_pooling_1d(object, "GlobalMaxPooling1D", "global_max_pooling1d", data_format, keepdims,
                        list(...), "layer_global_max_pooling_1d()")
}

# The input as (batch, steps, features) and back.
#' @noRd
max_pooling_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  x <- check_layer_input(inputs, min_rank = 3L)
  d <- dim(x)
  if (length(d) != 3L) {
    abort_arg("inputs", "a rank-3 array (batch, steps, features)", sprintf("rank %d (shape %s)", length(d), fmt_shape(d)))
  }
  ensure_built(self, d)
  order <- pooling_order(self)
  xs <- if (identical(order, 0:2)) x else aperm(x, order + 1L)
  steps <- dim(xs)[2L]
  if (steps == 0L) abort_arg("inputs", "an array with at least one step", fmt_shape(d))
  y <- xs[, 1L, , drop = TRUE]
  for (t in seq_len(steps)[-1L]) y <- pmax(y, xs[, t, , drop = TRUE])
  y <- array(y, dim(xs)[c(1L, 3L)])
  if (identical(self$dtype, "float32")) y <- round_float32(y)
  out_dims <- pooling_output_shape(self, d)
  list(output = array(y, out_dims), cache = list(xs = xs, y = y, order = order, x_dims = d, out_dims = out_dims),
       mask = NULL)
}

#' @noRd
max_pooling_backward <- function(self, cache, grad_output) {
  g <- check_grad_output(grad_output, cache$out_dims)
  xs <- cache$xs
  d <- dim(xs)                                   # (batch, steps, features)
  over_steps <- function(m) aperm(array(m, c(d[1L], d[3L], d[2L])), c(1L, 3L, 2L))  # (B, C) -> (B, T, C)
  hit <- xs == over_steps(cache$y)
  count <- array(0, d[c(1L, 3L)])
  for (t in seq_len(d[2L])) count <- count + hit[, t, , drop = TRUE]
  gs <- hit * over_steps(array(g, d[c(1L, 3L)]) / count)
  grad <- if (identical(cache$order, 0:2)) gs else aperm(gs, order(cache$order + 1L))
  list(inputs = array(grad, cache$x_dims), weights = named_weight_grads(self, list()))
}

#' @noRd
register_global_max_pooling_1d <- function() {
  register_global_pooling_1d("GlobalMaxPooling1D", layer_global_max_pooling_1d, max_pooling_forward,
                             max_pooling_backward)
}

# ---- AveragePooling1D, MaxPooling1D -----------------------------------------------

#' Average pooling over windows of steps
#'
#' Downsamples a (batch, steps, features) input by averaging each window of
#' `pool_size` consecutive steps, moving the window by `strides` (Keras's
#' `AveragePooling1D`). With `padding = "valid"` only whole windows are used:
#' `floor((steps - pool_size) / strides) + 1` output steps. With
#' `padding = "same"` the output has `ceil(steps / strides)` steps; the input
#' is padded evenly on both sides (the left side getting the smaller half)
#' and the padding is not counted in the averages, as Keras's backends do.
#' The layer has no weights. As in Keras, it does not support masking: an
#' input mask is not used and the output carries none.
#'
#' @inheritParams layer_dense
#' @param pool_size The window length, a positive whole number (or a list
#'   of one).
#' @param strides How far the window moves; `NULL` (the default) means
#'   `pool_size`.
#' @param padding `"valid"` or `"same"` (case-insensitive), see above.
#' @param data_format `NULL` or `"channels_last"` (inputs are (batch, steps,
#'   features)) or `"channels_first"` ((batch, features, steps)).
#' @param name The layer's name (default `"average_pooling1d"`, ...).
#' @param ... Named layer options: `dtype` (`"float32"` or `"float64"`),
#'   `trainable`.
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object`.
#' @export
#' @examples
#' x <- array(c(1, 2, 3, 4, 5), c(1, 5, 1))
#' layer_average_pooling_1d(x, pool_size = 2, strides = 1)[1, , 1]   # 1.5 2.5 3.5 4.5
#' layer_average_pooling_1d(x, pool_size = 2, padding = "same")[1, , 1]  # 1.5 3.5 5
layer_average_pooling_1d <- function(object, pool_size, strides = NULL, padding = "valid", data_format = NULL,
                                     name = NULL, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  if (missing(pool_size)) abort_arg("pool_size", "supplied: a positive whole number")
  new_window_pooling_1d(object, "AveragePooling1D", "average_pooling1d", pool_size, strides, padding,
                        data_format, name, list(...), "layer_average_pooling_1d()")
}

#' Max pooling over windows of steps
#'
#' Downsamples a (batch, steps, features) input by taking the maximum of each
#' window of `pool_size` consecutive steps, moving the window by `strides`
#' (Keras's `MaxPooling1D`). Output lengths and padding are as for
#' [layer_average_pooling_1d()]; padding never holds the maximum. The
#' gradient of each window goes to its first maximal step (as TensorFlow and
#' XLA differentiate max pooling); where windows overlap, the gradients add
#' up. The layer has no weights, does not use an input mask and gives no
#' output mask (as in Keras).
#'
#' @inheritParams layer_average_pooling_1d
#' @param pool_size The window length, a positive whole number (default 2).
#' @param name The layer's name (default `"max_pooling1d"`, ...).
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object`.
#' @export
#' @examples
#' x <- array(c(1, 2, 3, 4, 5), c(1, 5, 1))
#' layer_max_pooling_1d(x, pool_size = 2, strides = 1)[1, , 1]   # 2 3 4 5
#' layer_max_pooling_1d(x, pool_size = 2, padding = "same")[1, , 1]  # 2 4 5
layer_max_pooling_1d <- function(object, pool_size = 2L, strides = NULL, padding = "valid", data_format = NULL,
                                 name = NULL, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  new_window_pooling_1d(object, "MaxPooling1D", "max_pooling1d", pool_size, strides, padding,
                        data_format, name, list(...), "layer_max_pooling_1d()")
}

# A whole number >= 1 given as a number, a vector or list of one (Keras's
# tuples of one).
#' @noRd
check_tuple_1 <- function(x, arg) {
  if (is.list(x) && !is.object(x) && length(x) == 1L) x <- x[[1L]]
  check_whole(x, arg)
}

# Keras's standardize_padding(): lower case, one of `choices`.
#' @noRd
check_padding <- function(x, choices) {
  ok <- is.character(x) && length(x) == 1L && !is.na(x) && tolower(x) %in% choices
  if (!ok) abort_arg("padding", paste0(paste0("\"", choices, "\"", collapse = " or "), " (case-insensitive)"),
                     describe_value(x))
  tolower(x)
}

#' @noRd
new_window_pooling_1d <- function(object, class_name, prefix, pool_size, strides, padding, data_format,
                                  name, dots, fun) {
  extra <- check_layer_dots(dots, c("dtype", "trainable"), fun)
  pool_size <- check_tuple_1(pool_size, "pool_size")
  strides <- if (is.null(strides)) pool_size else check_tuple_1(strides, "strides")
  cfg <- list(pool_size = pool_size, padding = check_padding(padding, c("valid", "same")), strides = strides,
              data_format = check_data_format(data_format))
  self <- new_layer_state(class_name, prefix, name, extra$dtype, extra$trainable, cfg)
  compose_layer(object, new_layer_object(self, protocol_layer_function))
}

# Output steps of a window of `span` steps moved by `stride` over `steps`
# steps (NA stays NA); errors for a "valid" window longer than the input.
# `what` describes the window for the error.
#' @noRd
window_output_steps <- function(steps, span, stride, padding, arg, shape, what) {
  if (is.na(steps)) return(NA_integer_)
  steps <- as.double(steps); span <- as.double(span); stride <- as.double(stride)  # no integer overflow
  if (padding == "valid") {
    if (steps < span) {
      abort_arg(arg, sprintf("an input with at least %.0f steps (%s with padding \"valid\")", span, what),
                sprintf("%.0f steps (shape %s)", steps, fmt_shape(shape)))
    }
    return(as.integer((steps - span) %/% stride + 1))
  }
  as.integer(ceiling(steps / stride))
}

#' @noRd
window_pooling_output_shape <- function(self, d, arg = "inputs") {
  cfg <- self$config
  steps_axis <- if (cfg$data_format == "channels_last") 2L else 3L
  d[steps_axis] <- window_output_steps(d[steps_axis], cfg$pool_size, cfg$strides, cfg$padding, arg, d,
                                       sprintf("pool_size %d", cfg$pool_size))
  d
}

#' @noRd
is_max_pooling <- function(self) identical(self$class_name, "MaxPooling1D")

#' @noRd
window_pooling_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  x <- check_layer_input(inputs, min_rank = 3L)
  d <- dim(x)
  if (length(d) != 3L) {
    abort_arg("inputs", "a rank-3 array (batch, steps, features)", sprintf("rank %d (shape %s)", length(d), fmt_shape(d)))
  }
  single_input_mask(masks, d)  # checked, then dropped: Keras's pooling layers do not support masking
  ensure_built(self, d)
  out_dims <- window_pooling_output_shape(self, d)
  cfg <- self$config
  order <- pooling_order(self)
  y <- cpp_pool1d_forward(x, order, cfg$pool_size, cfg$strides, cfg$padding == "same", is_max_pooling(self),
                          is_float64(self), mh_threads())
  list(output = y, cache = list(x = x, order = order, out_dims = out_dims), mask = NULL)
}

#' @noRd
window_pooling_backward <- function(self, cache, grad_output) {
  g <- check_grad_output(grad_output, cache$out_dims)
  cfg <- self$config
  dx <- cpp_pool1d_backward(cache$x, g, cache$order, cfg$pool_size, cfg$strides, cfg$padding == "same",
                            is_max_pooling(self), is_float64(self), mh_threads())
  list(inputs = dx, weights = named_weight_grads(self, list()))
}

#' @noRd
register_window_pooling_1d <- function() {
  register_window_pooling_class("AveragePooling1D", layer_average_pooling_1d)
  register_window_pooling_class("MaxPooling1D", layer_max_pooling_1d)
}

#' @noRd
register_window_pooling_class <- function(class_name, ctor) {
  force(ctor)
  keys <- c("pool_size", "padding", "strides", "data_format")
  register_protocol_layer(
    class_name,
    properties = list(pool_size = function(self) self$config$pool_size,
                      strides = function(self) self$config$strides,
                      padding = function(self) self$config$padding,
                      data_format = function(self) self$config$data_format),
    describe = function(self) {
      cfg <- self$config
      s <- sprintf("pool_size=%d, strides=%d, padding=%s", cfg$pool_size, cfg$strides, cfg$padding)
      if (cfg$data_format == "channels_first") s <- paste0(s, ", channels_first")
      describe_built(self, s)
    },
    get_config = function(self) c(base_layer_config(self), self$config[keys]),
    from_config = function(config) layer_from_config(ctor, config, keys),
    build = weightless_build(rank = 3L),
    compute_output_shape = function(self, input_shape, args = list()) {
      input_shape <- as_input_shape(input_shape, min_rank = 3L)
      if (length(input_shape) != 3L) abort_arg("input_shape", "a shape of rank 3", fmt_shape(input_shape))
      window_pooling_output_shape(self, input_shape, "input_shape")
    },
    forward = window_pooling_forward, backward = window_pooling_backward)
}
