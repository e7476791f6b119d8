# The Masking layer (keras3's layer_masking(), Keras's
# keras/src/layers/core/masking.py): a time step (a position of the axes
# before the last) whose features all equal `mask_value` is masked: its
# output is 0 and the output mask is FALSE there. Keras compares in the
# layer's dtype, so a float32 layer compares the float32 values. The mask
# the input arrives with is replaced. No weights.

#' Masking layer
#'
#' Masks the time steps whose features all equal `mask_value`, as Keras's
#' `Masking`: for an input of shape (batch, time, features) the output mask
#' is `TRUE` where any feature differs from `mask_value`, and the masked
#' steps of the output are set to 0. Layers after it that use masks
#' (attention, pooling, ...) skip those steps. The layer has no weights.
#'
#' @inheritParams layer_dense
#' @param mask_value The value marking padding (a number).
#' @param ... Named layer options: `name` (default `"masking"`, ...),
#'   `dtype` (`"float32"` or `"float64"`), `trainable`.
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object`.
#' @export
#' @examples
#' x <- array(c(1, 0, 2, 0, 3, 0), c(2, 3, 1))   # sample 2 is all padding
#' layer_masking(x, mask_value = 0)
layer_masking <- function(object, mask_value = 0, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  extra <- check_layer_dots(list(...), base_layer_options(), "layer_masking()")
  ok <- is.numeric(mask_value) && !is.object(mask_value) && length(mask_value) == 1L &&
    is.null(dim(mask_value)) && !is.na(mask_value)
  if (!ok) abort_arg("mask_value", "a single number (the value of padded features)", describe_value(mask_value))
  cfg <- list(mask_value = as.double(mask_value))
  self <- new_layer_state("Masking", "masking", extra$name, extra$dtype, extra$trainable, cfg)
  compose_layer(object, new_layer_object(self, protocol_layer_function))
}

#' @noRd
masking_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  x <- check_layer_input(inputs, min_rank = 2L)
  d <- dim(x)
  single_input_mask(masks, d)  # checked, then replaced (Keras's Masking ignores it)
  ensure_built(self, d)
  f64 <- is_float64(self)
  x <- as_dtype_values(x, f64)
  dim(x) <- d
  r <- length(d)
  value <- if (f64) self$config$mask_value else round_float32(self$config$mask_value)
  # any feature differing, per position: a sum over the last axis of the
  # (positions, features) view of the column-major array
  keep <- rowSums(matrix(x != value, ncol = d[r])) > 0
  keep_full <- rep.int(keep, d[r])   # the mask repeated along the last axis
  x[!keep_full] <- 0
  mask <- array(keep, d[-r])
  list(output = x, cache = list(keep = keep_full, out_dims = d), mask = mask)
}

#' @noRd
masking_backward <- function(self, cache, grad_output) {
  g <- check_grad_output(grad_output, cache$out_dims)
  g <- as_dtype_values(g, is_float64(self))
  dim(g) <- cache$out_dims
  g[!cache$keep] <- 0
  list(inputs = g, weights = named_weight_grads(self, list()))
}

#' @noRd
register_masking_layer <- function() {
  register_protocol_layer(
    "Masking",
    properties = list(mask_value = function(self) self$config$mask_value),
    describe = function(self) describe_built(self, sprintf("mask_value=%g", self$config$mask_value)),
    get_config = function(self) c(base_layer_config(self), self$config["mask_value"]),
    from_config = function(config) layer_from_config(layer_masking, config, "mask_value"),
    build = weightless_build(min_rank = 2L),
    compute_output_shape = function(self, input_shape, args = list()) as_input_shape(input_shape, min_rank = 2L),
    forward = masking_forward, backward = masking_backward)
}
