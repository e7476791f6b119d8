# The UnitNormalization layer (keras3's layer_unit_normalization()): each
# example scaled to unit L2 norm over `axis`. No weights; forward and
# backward in C++ (src/core/normalization.h), the normalized axes moved last
# in the copy to the core's layout.

#' Unit normalization layer
#'
#' Scales each example to an L2 norm of 1 over `axis` (Keras's
#' `UnitNormalization`): `output = x / sqrt(sum(x^2))`, the sum taken over the
#' normalized axes. As Keras's `ops.normalize()`, the factor
#' `1 / sqrt(sum(x^2))` is capped at `1e12`, so an all-zero example stays
#' zero. The layer has no weights and passes the input mask through.
#'
#' `axis` follows keras3's R convention: negative numbers count from the end
#' (`-1`, the default, is the last axis) and positive numbers are R's 1-based
#' axis numbers, the batch axis being 1 (Keras allows normalizing over it;
#' results then depend on how the batch is split).
#'
#' @inheritParams layer_dense
#' @param axis The axis or axes to normalize over (see above).
#' @param ... Named layer options: `name` (default `"unit_normalization"`,
#'   ...), `dtype` (`"float32"` or `"float64"`), `trainable`.
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object`.
#' @export
#' @examples
#' x <- matrix(0:5, 2, 3, byrow = TRUE)
#' y <- layer_unit_normalization(x)
#' rowSums(y^2)          # 1 1
layer_unit_normalization <- function(object, axis = -1L, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  extra <- check_layer_dots(list(...), base_layer_options(), "layer_unit_normalization()")
  cfg <- list(axis = check_norm_axis(axis))
  self <- new_layer_state("UnitNormalization", "unit_normalization", extra$name, extra$dtype, extra$trainable,
                          cfg)
  compose_layer(object, new_layer_object(self, protocol_layer_function))
}

# The normalized axes (1-based, sorted) for an input of rank r; the batch
# axis is allowed, as in Keras.
#' @noRd
unit_norm_axes <- function(self, r, arg = "inputs") {
  a <- self$config$axis
  a <- ifelse(a < 0L, r + 1L + a, a)
  if (any(a < 1L | a > r) || anyDuplicated(a)) {
    abort_arg(arg, sprintf("an array in which `axis` (%s) names distinct axes",
                           paste(self$config$axis, collapse = ", ")),
              sprintf("rank %d", r))
  }
  sort(as.integer(a))
}

# Keras's ops.normalize() epsilon.
#' @noRd
unit_norm_epsilon <- 1e-12

#' @noRd
unit_norm_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  x <- check_layer_input(inputs)
  d <- dim(x)
  mask <- single_input_mask(masks, d)
  axes <- unit_norm_axes(self, length(d))
  ensure_built(self, d)
  order <- c(setdiff(seq_along(d), axes), axes) - 1L
  y <- cpp_unit_norm_forward(x, order, length(axes), unit_norm_epsilon, is_float64(self), mh_threads())
  list(output = y, cache = list(x = x, order = order, n_norm = length(axes), out_dims = d), mask = mask)
}

#' @noRd
unit_norm_backward <- function(self, cache, grad_output) {
  g <- check_grad_output(grad_output, cache$out_dims)
  dx <- cpp_unit_norm_backward(cache$x, cache$order, cache$n_norm, unit_norm_epsilon, g, is_float64(self),
                               mh_threads())
  list(inputs = dx, weights = named_weight_grads(self, list()))
}

#' @noRd
register_unit_normalization <- function() {
  register_protocol_layer(
    "UnitNormalization",
    properties = list(axis = function(self) self$config$axis),
    describe = function(self) describe_built(self, sprintf("axis=%s", paste(self$config$axis, collapse = ","))),
    get_config = function(self) c(base_layer_config(self), self$config["axis"]),
    from_config = function(config) layer_from_config(layer_unit_normalization, config, "axis"),
    build = function(self, input_shape) {
      input_shape <- as_input_shape(input_shape)
      unit_norm_axes(self, length(input_shape), "input_shape")
      weightless_build()(self, input_shape)
    },
    compute_output_shape = function(self, input_shape, args = list()) {
      input_shape <- as_input_shape(input_shape)
      unit_norm_axes(self, length(input_shape), "input_shape")
      input_shape
    },
    forward = unit_norm_forward, backward = unit_norm_backward)
}
