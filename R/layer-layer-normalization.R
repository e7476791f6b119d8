# The LayerNormalization layer (keras3's layer_layer_normalization()):
# normalization over one or more axes of each example, with a scale (gamma)
# and an offset (beta) spanning those axes. Forward and backward in C++
# (src/core/layer_norm.h); the normalized axes are moved last in the copy to
# the core's layout.

#' Layer normalization layer
#'
#' Normalizes each example over `axis`: with mean \eqn{\mu} and variance
#' \eqn{\sigma^2} over those axes, `output = (x - mu) / sqrt(var + epsilon) *
#' gamma + beta` (Keras's `LayerNormalization`). `gamma` (created with
#' `scale = TRUE`) and `beta` (with `center = TRUE`) have the shape of the
#' normalized axes; the weights are in Keras's order, `gamma` then `beta`.
#' The input mask is passed through.
#'
#' `axis` follows keras3's R convention: negative numbers count from the end
#' (`-1` is the last axis, the features) and positive numbers are R's 1-based
#' axis numbers, the batch axis being 1 (so `axis = c(2, 3)` of a (batch,
#' time, features) input normalizes over time and features jointly). The
#' batch axis cannot be normalized over. Several axes are sorted, and the
#' weights' shape follows the input's axis order.
#'
#' @inheritParams layer_dense
#' @param axis The axis or axes to normalize over (see above).
#' @param epsilon A small positive number added to the variance.
#' @param center Whether to add the offset `beta`.
#' @param scale Whether to multiply by the scale `gamma`.
#' @param rms_scaling Keras's RMS-scaling variant; only `FALSE` is supported.
#' @param beta_initializer,gamma_initializer Initializers (default zeros
#'   and ones).
#' @param beta_regularizer,gamma_regularizer Regularizers or `NULL`.
#' @param beta_constraint,gamma_constraint Constraints or `NULL`.
#' @param ... Named layer options: `name` (default `"layer_normalization"`,
#'   ...), `dtype` (`"float32"` or `"float64"`), `trainable`.
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object`.
#' @export
#' @examples
#' ln <- layer_layer_normalization()
#' x <- array(rnorm(2 * 3 * 8, mean = 5), c(2, 3, 8))
#' y <- ln(x)
#' round(mean(y[1, 1, ]), 6)        # 0
#' sapply(get_weights(ln), dim)     # gamma 8, beta 8
layer_layer_normalization <- function(object, axis = -1L, epsilon = 0.001, center = TRUE, scale = TRUE,
                                      rms_scaling = FALSE, beta_initializer = "zeros",
                                      gamma_initializer = "ones", beta_regularizer = NULL,
                                      gamma_regularizer = NULL, beta_constraint = NULL,
                                      gamma_constraint = NULL, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  extra <- check_layer_dots(list(...), base_layer_options(), "layer_layer_normalization()")
  axis <- check_whole_vector(axis, "axis", allow_negative = TRUE)
  if (any(axis == 0L)) {
    abort_arg("axis", "nonzero whole numbers (1-based axes, negative counting from the end)",
              paste(axis, collapse = ", "))
  }
  if (anyDuplicated(axis)) abort_arg("axis", "distinct axes", paste(axis, collapse = ", "))
  epsilon <- check_number(epsilon, "epsilon", lower = 0)
  if (epsilon <= 0) abort_arg("epsilon", "a positive number", describe_value(epsilon))
  if (isTRUE(check_flag(rms_scaling, "rms_scaling"))) {
    abort_msg("`rms_scaling = TRUE` is not supported; use the default FALSE.",
              class = c("multihead_error_unsupported", "multihead_error_argument"))
  }
  cfg <- c(list(axis = axis, epsilon = epsilon, center = check_flag(center, "center"),
                scale = check_flag(scale, "scale"), rms_scaling = FALSE),
           as_weight_specs(list(beta_initializer = beta_initializer, gamma_initializer = gamma_initializer,
                                beta_regularizer = beta_regularizer, gamma_regularizer = gamma_regularizer,
                                beta_constraint = beta_constraint, gamma_constraint = gamma_constraint)))
  self <- new_layer_state("LayerNormalization", "layer_normalization", extra$name, extra$dtype,
                          extra$trainable, cfg)
  compose_layer(object, new_layer_object(self, protocol_layer_function))
}

# The normalized axes (1-based, sorted) for an input of rank r.
#' @noRd
layer_norm_axes <- function(self, r, arg = "inputs") {
  a <- self$config$axis
  a <- ifelse(a < 0L, r + 1L + a, a)
  if (any(a < 2L | a > r) || anyDuplicated(a)) {
    abort_arg(arg, sprintf(paste0("an array in which `axis` (%s) names distinct axes other than the batch ",
                                  "axis"), paste(self$config$axis, collapse = ", ")),
              sprintf("rank %d", r))
  }
  sort(as.integer(a))
}

#' @noRd
layer_norm_build <- function(self, input_shape) {
  input_shape <- as_input_shape(input_shape, min_rank = 2L)
  check_not_built(self)
  axes <- layer_norm_axes(self, length(input_shape), "input_shape")
  shape <- input_shape[axes]
  if (anyNA(shape)) {
    abort_arg("input_shape", sprintf("a shape whose normalized axes (%s) are known",
                                     paste(axes, collapse = ", ")), fmt_shape(input_shape))
  }
  cfg <- self$config
  if (cfg$scale) {
    add_layer_weight(self, "gamma", shape, cfg$gamma_initializer, cfg$gamma_regularizer, cfg$gamma_constraint)
  }
  if (cfg$center) {
    add_layer_weight(self, "beta", shape, cfg$beta_initializer, cfg$beta_regularizer, cfg$beta_constraint)
  }
  self$axes <- axes
  self$build_shapes <- input_shape
  self$built <- TRUE
  invisible(NULL)
}

# Checks the input against the built shape; returns the core axis order
# (other axes, then the normalized ones).
#' @noRd
layer_norm_order <- function(self, d) {
  check_input_rank(self, d, "inputs", length(self$build_shapes))
  axes <- self$axes
  for (a in axes) {
    check_input_size(self, d, "inputs", a, self$build_shapes[a], sprintf("size %d on axis %d (normalized)",
                                                                         self$build_shapes[a], a))
  }
  c(setdiff(seq_along(d), axes), axes) - 1L
}

#' @noRd
layer_norm_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  x <- check_layer_input(inputs, min_rank = 2L)
  d <- dim(x)
  mask <- single_input_mask(masks, d)
  if (!isTRUE(self$built)) {
    layer_norm_axes(self, length(d))
    layer_norm_build(self, batchless_shape(d))
  }
  order <- layer_norm_order(self, d)
  y <- cpp_layer_norm_forward(x, order, length(self$axes), self$variables$gamma, self$variables$beta,
                              self$config$epsilon, is_float64(self), mh_threads())
  list(output = y, cache = list(x = x, order = order, out_dims = d), mask = mask)
}

#' @noRd
layer_norm_backward <- function(self, cache, grad_output) {
  g <- check_grad_output(grad_output, cache$out_dims)
  v <- self$variables
  like <- if (is.null(v$gamma)) v$beta else v$gamma
  res <- cpp_layer_norm_backward(cache$x, cache$order, length(self$axes), v$gamma, !is.null(v$beta),
                                 if (is.null(like)) array(0, 1) else like, self$config$epsilon, g,
                                 is_float64(self), mh_threads())
  list(inputs = res$inputs, weights = named_weight_grads(self, list(gamma = res$gamma, beta = res$beta)))
}

#' @noRd
register_layer_normalization <- function() {
  register_protocol_layer(
    "LayerNormalization",
    properties = list(axis = function(self) self$config$axis,
                      epsilon = function(self) self$config$epsilon,
                      center = function(self) self$config$center,
                      scale = function(self) self$config$scale,
                      gamma = function(self) layer_variable_handle(self, "gamma"),
                      beta = function(self) layer_variable_handle(self, "beta")),
    describe = function(self) {
      cfg <- self$config
      s <- sprintf("axis=%s, epsilon=%g", paste(cfg$axis, collapse = ","), cfg$epsilon)
      if (!cfg$center) s <- paste0(s, ", no center")
      if (!cfg$scale) s <- paste0(s, ", no scale")
      describe_built(self, s)
    },
    get_config = function(self) {
      cfg <- self$config
      c(base_layer_config(self), cfg[c("axis", "epsilon", "center", "scale", "rms_scaling")],
        spec_configs(cfg, c("beta_initializer", "gamma_initializer", "beta_regularizer",
                            "gamma_regularizer", "beta_constraint", "gamma_constraint")))
    },
    from_config = function(config) {
      layer_from_config(layer_layer_normalization, config, c(
        "axis", "epsilon", "center", "scale", "rms_scaling", "beta_initializer", "gamma_initializer",
        "beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint"))
    },
    build = layer_norm_build,
    compute_output_shape = function(self, input_shape, args = list()) {
      input_shape <- as_input_shape(input_shape, min_rank = 2L)
      if (isTRUE(self$built)) layer_norm_order(self, input_shape)
      input_shape
    },
    forward = layer_norm_forward, backward = layer_norm_backward, native_tensors = TRUE,
    keras_object = keras_axis_key_out("axis"), keras_config = keras_axis_key_in("axis"))
}
