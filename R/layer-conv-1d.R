# The Conv1D layer (keras3's layer_conv_1d()): a 1D convolution over the
# steps of a (batch, steps, channels) input, with Keras's kernel layout
# (kernel_size, channels / groups, filters), padding rules and grouped
# convolutions. The convolution and its gradients run in C++
# (src/core/conv1d.h); the activation is applied to the result afterwards
# along its last axis (src/core/activations.h), as Keras applies it.

#' 1D convolution layer
#'
#' Convolves a (batch, steps, channels) input with `filters` kernels of
#' `kernel_size` steps (Keras's `Conv1D`): `output = activation(conv1d(inputs,
#' kernel) + bias)`, computed in C++.
#'
#' The weights are, in Keras's order and shapes, `kernel` (`kernel_size`,
#' channels / `groups`, `filters`) and `bias` (`filters`). With `groups > 1`
#' the channels are split into `groups` equal parts, each convolved with its
#' own `filters / groups` filters, and the results are concatenated.
#'
#' Output steps: `padding = "valid"` uses whole windows only,
#' `floor((steps - span) / strides) + 1` steps with the dilated window span
#' `(kernel_size - 1) * dilation_rate + 1` (an input shorter than the span is
#' an error); `"same"` pads evenly (the left side getting the smaller half)
#' to `ceil(steps / strides)` steps; `"causal"` pads `span - 1` steps on the
#' left, so `output[t]` depends on no input step after `t`. As in Keras,
#' `strides > 1` together with `dilation_rate > 1` is refused, and the layer
#' does not support masking (an input mask is not used; the output has none).
#'
#' @inheritParams layer_dense
#' @param filters The number of output channels, a positive whole number
#'   divisible by `groups`.
#' @param kernel_size The window length, a positive whole number (or a list
#'   of one).
#' @param strides How far the window moves (default 1).
#' @param padding `"valid"`, `"same"` or `"causal"` (case-insensitive), see
#'   above.
#' @param data_format `NULL` or `"channels_last"` (inputs (batch, steps,
#'   channels)) or `"channels_first"` ((batch, channels, steps)).
#' @param dilation_rate The spacing of the window's taps (default 1).
#' @param groups The number of channel groups (default 1); must divide the
#'   input channels and `filters`.
#' @param activation `NULL` (linear) or an activation name, applied along the
#'   output's last axis (see [layer_dense()]).
#' @param kernel_initializer,bias_initializer Initializers (`NULL`: Keras's
#'   defaults `"glorot_uniform"` and `"zeros"`; the kernel's fans are
#'   `kernel_size * channels / groups` and `kernel_size * filters`, as Keras
#'   computes them).
#' @param ... Named layer options: `name` (default `"conv1d"`, ...), `dtype`
#'   (`"float32"` or `"float64"`), `trainable`.
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object`.
#' @export
#' @examples
#' x <- array(runif(4 * 10 * 8), c(4, 10, 8))
#' conv <- layer_conv_1d(filters = 6, kernel_size = 3, activation = "relu")
#' dim(conv(x))                      # 4 8 6
#' sapply(get_weights(conv), dim)    # kernel 3 8 6, bias 6
#' dim(layer_conv_1d(x, 6, 3, padding = "causal", dilation_rate = 2))   # 4 10 6
layer_conv_1d <- function(object, filters, kernel_size, strides = 1L, padding = "valid", data_format = NULL,
                          dilation_rate = 1L, groups = 1L, activation = NULL, use_bias = TRUE,
                          kernel_initializer = "glorot_uniform", bias_initializer = "zeros",
                          kernel_regularizer = NULL, bias_regularizer = NULL, activity_regularizer = NULL,
                          kernel_constraint = NULL, bias_constraint = NULL, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  if (missing(filters)) abort_arg("filters", "supplied: a positive whole number")
  if (missing(kernel_size)) abort_arg("kernel_size", "supplied: a positive whole number")
  extra <- check_layer_dots(list(...), base_layer_options(), "layer_conv_1d()")
  filters <- check_whole(filters, "filters")
  kernel_size <- check_tuple_1(kernel_size, "kernel_size")
  strides <- check_tuple_1(strides, "strides")
  dilation_rate <- check_tuple_1(dilation_rate, "dilation_rate")
  groups <- check_whole(groups, "groups")
  if (filters %% groups != 0L) {
    abort_arg("groups", sprintf("a divisor of `filters` (%d)", filters), describe_value(groups))
  }
  if (strides > 1L && dilation_rate > 1L) {
    abort_arg("strides", "1 when `dilation_rate` > 1 (Keras does not support both)",
              sprintf("strides = %d with dilation_rate = %d", strides, dilation_rate))
  }
  if (is.null(kernel_initializer)) kernel_initializer <- "glorot_uniform"
  if (is.null(bias_initializer)) bias_initializer <- "zeros"
  cfg <- c(list(filters = filters, kernel_size = kernel_size, strides = strides,
                padding = check_padding(padding, c("valid", "same", "causal")),
                data_format = check_data_format(data_format), dilation_rate = dilation_rate, groups = groups,
                activation = as_activation(activation), use_bias = check_flag(use_bias, "use_bias")),
           as_weight_specs(list(kernel_initializer = kernel_initializer, bias_initializer = bias_initializer,
                                kernel_regularizer = kernel_regularizer, bias_regularizer = bias_regularizer,
                                activity_regularizer = activity_regularizer,
                                kernel_constraint = kernel_constraint, bias_constraint = bias_constraint)))
  self <- new_layer_state("Conv1D", "conv1d", extra$name, extra$dtype, extra$trainable, cfg)
  compose_layer(object, new_layer_object(self, protocol_layer_function))
}

# The steps and channel axes (1-based) of an input.
#' @noRd
conv_axes <- function(self) {
  if (self$config$data_format == "channels_last") c(steps = 2L, channels = 3L) else c(steps = 3L, channels = 2L)
}

#' @noRd
conv_span <- function(cfg) (as.double(cfg$kernel_size) - 1) * cfg$dilation_rate + 1  # double: no overflow

#' @noRd
conv_check_shape <- function(self, shape, arg) {
  if (length(shape) != 3L) {
    abort_arg(arg, "a rank-3 shape (batch, steps, channels)", sprintf("rank %d (shape %s)", length(shape),
                                                                        fmt_shape(shape)))
  }
}

#' @noRd
conv_build <- function(self, input_shape) {
  input_shape <- as_input_shape(input_shape, min_rank = 3L)
  conv_check_shape(self, input_shape, "input_shape")
  check_not_built(self)
  cfg <- self$config
  ch <- input_shape[conv_axes(self)[["channels"]]]
  if (is.na(ch)) abort_arg("input_shape", "a shape whose channel axis is known", fmt_shape(input_shape))
  if (ch %% cfg$groups != 0L) {
    abort_arg("groups", sprintf("a divisor of the input's channels (%d; input shape %s)", ch,
                                fmt_shape(input_shape)), describe_value(cfg$groups))
  }
  add_layer_weight(self, "kernel", c(cfg$kernel_size, ch %/% cfg$groups, cfg$filters), cfg$kernel_initializer,
                   cfg$kernel_regularizer, cfg$kernel_constraint, size_arg = "filters")
  if (cfg$use_bias) {
    add_layer_weight(self, "bias", cfg$filters, cfg$bias_initializer, cfg$bias_regularizer, cfg$bias_constraint)
  }
  self$build_shapes <- input_shape
  self$built <- TRUE
  invisible(NULL)
}

#' @noRd
conv_output_shape <- function(self, d, arg = "inputs") {
  cfg <- self$config
  ax <- conv_axes(self)
  d[ax[["steps"]]] <- window_output_steps(d[ax[["steps"]]], conv_span(cfg), cfg$strides,
                                          if (cfg$padding == "valid") "valid" else "same", arg, d,
                                          sprintf("kernel_size %d, dilation_rate %d", cfg$kernel_size,
                                                  cfg$dilation_rate))
  d[ax[["channels"]]] <- cfg$filters
  d
}

#' @noRd
conv_check_input <- function(self, d, arg = "inputs") {
  check_input_rank(self, d, arg, 3L)
  ch <- conv_axes(self)[["channels"]]
  check_input_size(self, d, arg, ch, self$build_shapes[ch],
                   sprintf("%d channels on axis %d", self$build_shapes[ch], ch))
}

#' @noRd
conv_padding_code <- function(padding) match(padding, c("valid", "same", "causal")) - 1L

#' @noRd
conv_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  x <- check_layer_input(inputs, min_rank = 3L)
  d <- dim(x)
  conv_check_shape(self, d, "inputs")
  single_input_mask(masks, d)  # checked, then dropped: Keras's Conv1D does not support masking
  if (!isTRUE(self$built)) conv_build(self, batchless_shape(d))
  conv_check_input(self, d)
  out_dims <- conv_output_shape(self, d)
  check_size(out_dims, "inputs", sprintf("the output of layer \"%s\"", self$name))
  cfg <- self$config
  order <- pooling_order(self)
  y <- cpp_conv1d_forward(x, order, self$variables$kernel, self$variables$bias, cfg$strides, cfg$dilation_rate,
                          cfg$groups, conv_padding_code(cfg$padding), is_float64(self), mh_threads())
  saved <- NULL
  if (cfg$activation != "linear") {
    res <- cpp_activation_forward(y, activation_code(cfg$activation), is_float64(self), mh_threads())
    y <- res$output
    saved <- res$saved
  }
  reg <- cfg$activity_regularizer
  self$activity_losses <- if (is.null(reg)) list() else list(regularizer_loss(reg, y) / max(1, d[1L]))
  list(output = y, cache = list(x = x, order = order, saved = saved, out_dims = out_dims), mask = NULL)
}

#' @noRd
conv_backward <- function(self, cache, grad_output) {
  g <- check_grad_output(grad_output, cache$out_dims)
  cfg <- self$config
  if (cfg$activation != "linear") {
    g <- cpp_activation_backward(cache$saved, g, activation_code(cfg$activation), is_float64(self), mh_threads())
  }
  has_bias <- "bias" %in% self$variable_names
  res <- cpp_conv1d_backward(cache$x, cache$order, self$variables$kernel, has_bias, cfg$strides,
                             cfg$dilation_rate, cfg$groups, conv_padding_code(cfg$padding), g, is_float64(self),
                             mh_threads())
  grads <- list(kernel = res$kernel)
  if (has_bias) grads$bias <- array(res$bias, dim = dim(self$variables$bias))
  list(inputs = res$inputs, weights = named_weight_grads(self, grads))
}

#' @noRd
conv_config_keys <- function() {
  c("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups", "activation",
    "use_bias", "kernel_initializer", "bias_initializer", "kernel_regularizer", "bias_regularizer",
    "activity_regularizer", "kernel_constraint", "bias_constraint")
}

#' @noRd
register_conv_1d <- function() {
  spec_keys <- c("kernel_initializer", "bias_initializer", "kernel_regularizer", "bias_regularizer",
                 "activity_regularizer", "kernel_constraint", "bias_constraint")
  register_protocol_layer(
    "Conv1D",
    properties = list(
      filters = function(self) self$config$filters,
      kernel_size = function(self) self$config$kernel_size,
      strides = function(self) self$config$strides,
      padding = function(self) self$config$padding,
      data_format = function(self) self$config$data_format,
      dilation_rate = function(self) self$config$dilation_rate,
      groups = function(self) self$config$groups,
      activation = function(self) self$config$activation,
      use_bias = function(self) self$config$use_bias,
      kernel = function(self) layer_variable_handle(self, "kernel"),
      bias = function(self) layer_variable_handle(self, "bias")
    ),
    describe = function(self) {
      cfg <- self$config
      s <- sprintf("filters=%d, kernel_size=%d", cfg$filters, cfg$kernel_size)
      if (cfg$strides != 1L) s <- paste0(s, ", strides=", cfg$strides)
      if (cfg$padding != "valid") s <- paste0(s, ", padding=", cfg$padding)
      if (cfg$dilation_rate != 1L) s <- paste0(s, ", dilation_rate=", cfg$dilation_rate)
      if (cfg$groups != 1L) s <- paste0(s, ", groups=", cfg$groups)
      if (cfg$data_format == "channels_first") s <- paste0(s, ", channels_first")
      if (cfg$activation != "linear") s <- paste0(s, ", activation=", cfg$activation)
      if (!cfg$use_bias) s <- paste0(s, ", no bias")
      describe_built(self, s)
    },
    get_config = function(self) {
      cfg <- self$config
      plain <- setdiff(conv_config_keys(), spec_keys)
      out <- c(base_layer_config(self), cfg[plain], spec_configs(cfg, spec_keys))
      out[c(names(base_layer_config(self)), conv_config_keys())]
    },
    from_config = function(config) layer_from_config(layer_conv_1d, config, conv_config_keys()),
    build = conv_build,
    compute_output_shape = function(self, input_shape, args = list()) {
      input_shape <- as_input_shape(input_shape, min_rank = 3L)
      conv_check_shape(self, input_shape, "input_shape")
      if (isTRUE(self$built)) conv_check_input(self, input_shape, "input_shape")
      conv_output_shape(self, input_shape, "input_shape")
    },
    forward = conv_forward, backward = conv_backward)
}
