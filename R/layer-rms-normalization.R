# The RMSNormalization layer (keras3's layer_rms_normalization()): each
# example divided by the root mean square over `axis`, times a learnt
# `scale`. Forward and backward in C++ (src/core/normalization.h); the
# normalized axes are moved last in the copy to the core's layout, as for
# LayerNormalization (whose axis rules, layer_norm_axes(), it shares).

#' RMS normalization layer
#'
#' Normalizes each example by its root mean square over `axis` (Keras's
#' `RMSNormalization`, after Zhang and Sennrich 2019): `output = x /
#' sqrt(mean(x^2) + epsilon) * scale`, the mean taken over the normalized
#' axes. The one weight, `scale` (initialized to ones), has the shape of the
#' normalized axes. Unlike [layer_layer_normalization()] nothing is
#' subtracted and there is no offset. As in Keras, the layer does not support
#' masking (an input mask is not used; the output has none).
#'
#' `axis` follows keras3's R convention: negative numbers count from the end
#' (`-1`, the default, is the last axis) and positive numbers are R's 1-based
#' axis numbers, the batch axis being 1, which cannot be normalized over.
#' Several axes are sorted, and `scale` follows the input's axis order
#' (Keras multiplies by `scale` with broadcasting, which lines up with the
#' normalized axes when they are the last ones, the usual case; here `scale`
#' always spans the normalized axes).
#'
#' @inheritParams layer_dense
#' @param axis The axis or axes to normalize over (see above).
#' @param epsilon A small number >= 0 added to the mean square.
#' @param ... Named layer options: `name` (default `"rms_normalization"`,
#'   ...), `dtype` (`"float32"` or `"float64"`), `trainable`.
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object`.
#' @export
#' @examples
#' rms <- layer_rms_normalization()
#' x <- array(rnorm(2 * 3 * 8, sd = 4), c(2, 3, 8))
#' y <- rms(x)
#' mean(y[1, 1, ]^2)                # about 1
#' dim(get_weights(rms)[[1]])       # scale: 8
layer_rms_normalization <- function(object, axis = -1L, epsilon = 1e-06, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  extra <- check_layer_dots(list(...), base_layer_options(), "layer_rms_normalization()")
  cfg <- list(axis = check_norm_axis(axis), epsilon = check_number(epsilon, "epsilon", lower = 0))
  self <- new_layer_state("RMSNormalization", "rms_normalization", extra$name, extra$dtype, extra$trainable, cfg)
  compose_layer(object, new_layer_object(self, protocol_layer_function))
}

# A normalization layer's `axis`: distinct nonzero whole numbers (1-based,
# negative from the end).
#' @noRd
check_norm_axis <- function(axis) {
  axis <- check_whole_vector(axis, "axis", allow_negative = TRUE)
  if (any(axis == 0L)) {
    abort_arg("axis", "nonzero whole numbers (1-based axes, negative counting from the end)",
              paste(axis, collapse = ", "))
  }
  if (anyDuplicated(axis)) abort_arg("axis", "distinct axes", paste(axis, collapse = ", "))
  axis
}

#' @noRd
rms_norm_build <- function(self, input_shape) {
  input_shape <- as_input_shape(input_shape, min_rank = 2L)
  check_not_built(self)
  axes <- layer_norm_axes(self, length(input_shape), "input_shape")
  shape <- input_shape[axes]
  if (anyNA(shape)) {
    abort_arg("input_shape", sprintf("a shape whose normalized axes (%s) are known", paste(axes, collapse = ", ")),
              fmt_shape(input_shape))
  }
  add_layer_weight(self, "scale", shape, as_initializer("ones", "scale_initializer"))
  self$axes <- axes
  self$build_shapes <- input_shape
  self$built <- TRUE
  invisible(NULL)
}

#' @noRd
rms_norm_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  x <- check_layer_input(inputs, min_rank = 2L)
  d <- dim(x)
  single_input_mask(masks, d)  # checked, then dropped: Keras's RMSNormalization does not support masking
  if (!isTRUE(self$built)) {
    layer_norm_axes(self, length(d))
    rms_norm_build(self, batchless_shape(d))
  }
  order <- layer_norm_order(self, d)
  y <- cpp_rms_norm_forward(x, order, length(self$axes), self$variables$scale, self$config$epsilon,
                            is_float64(self), mh_threads())
  list(output = y, cache = list(x = x, order = order, out_dims = d), mask = NULL)
}

#' @noRd
rms_norm_backward <- function(self, cache, grad_output) {
  g <- check_grad_output(grad_output, cache$out_dims)
  res <- cpp_rms_norm_backward(cache$x, cache$order, length(self$axes), self$variables$scale,
                               self$config$epsilon, g, is_float64(self), mh_threads())
  list(inputs = res$inputs, weights = named_weight_grads(self, list(scale = res$scale)))
}

#' @noRd
register_rms_normalization <- function() {
  register_protocol_layer(
    "RMSNormalization",
    properties = list(axis = function(self) self$config$axis,
                      epsilon = function(self) self$config$epsilon,
                      scale = function(self) layer_variable_handle(self, "scale")),
    describe = function(self) {
      cfg <- self$config
      describe_built(self, sprintf("axis=%s, epsilon=%g", paste(cfg$axis, collapse = ","), cfg$epsilon))
    },
    get_config = function(self) c(base_layer_config(self), self$config[c("axis", "epsilon")]),
    from_config = function(config) layer_from_config(layer_rms_normalization, config, c("axis", "epsilon")),
    build = rms_norm_build,
    compute_output_shape = function(self, input_shape, args = list()) {
      input_shape <- as_input_shape(input_shape, min_rank = 2L)
      if (isTRUE(self$built)) layer_norm_order(self, input_shape) else layer_norm_axes(self, length(input_shape),
                                                                                          "input_shape")
      input_shape
    },
    forward = rms_norm_forward, backward = rms_norm_backward)
}
