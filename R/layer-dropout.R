# The Dropout layer (keras3's layer_dropout()): inverted dropout while
# training, identity otherwise. The mask comes from the counter-based
# generator of src/core/dropout_rng.h keyed by (seed, call counter), so the
# backward pass regenerates it and set.seed() reproduces a run.

#' Dropout layer
#'
#' While training (`training = TRUE` in the call), sets each input element to
#' zero with probability `rate` and scales the others by `1 / (1 - rate)`
#' (inverted dropout), as Keras does; otherwise the layer is the identity.
#' The layer has no weights and passes the input mask through.
#'
#' Randomness: the mask of a call is a function of the layer's seed and a
#' counter of its training calls, never stored. With `seed = NULL` the seed
#' is drawn from R's random number generator when the layer is created, so
#' [set.seed()] makes runs reproducible. [backprop()] regenerates the mask of
#' its own forward pass.
#'
#' @inheritParams layer_dense
#' @param rate The fraction of the input elements to drop, in \[0, 1\].
#' @param noise_shape `NULL` (an independent draw for every element) or the
#'   shape of the random mask, one entry per input axis, each either 1 (the
#'   mask is shared along that axis) or `NA` / the axis's size; e.g.
#'   `c(NA, 1, NA)` drops the same features at every time step of a
#'   (batch, time, features) input.
#' @param seed `NULL` or a whole number: the seed of the dropout stream.
#' @param ... Named layer options: `name` (default `"dropout"`, ...), `dtype`
#'   (`"float32"` or `"float64"`), `trainable`.
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object` (in inference mode, so the
#'   input itself).
#' @export
#' @examples
#' drop <- layer_dropout(rate = 0.5, seed = 1)
#' x <- array(1, c(2, 6))
#' drop(x)                    # inference: unchanged
#' drop(x, training = TRUE)   # about half zeros, the rest 2
layer_dropout <- function(object, rate, noise_shape = NULL, seed = NULL, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  if (missing(rate)) abort_arg("rate", "supplied: a number between 0 and 1")
  extra <- check_layer_dots(list(...), base_layer_options(), "layer_dropout()")
  if (is.list(noise_shape) && !is.object(noise_shape)) {
    noise_shape <- unlist(lapply(noise_shape, function(s) if (is.null(s)) NA else s))
  }
  if (!is.null(noise_shape)) {
    ok <- (is.numeric(noise_shape) || (is.logical(noise_shape) && all(is.na(noise_shape)))) &&
      is.null(dim(noise_shape)) && length(noise_shape) >= 1L
    k <- if (ok) noise_shape[!is.na(noise_shape)] else NULL
    if (!ok || !all(is.finite(k) & k == round(k) & k >= 1 & k <= .Machine$integer.max)) {
      abort_arg("noise_shape", "NULL or a vector of positive whole numbers or NA, one per input axis",
                describe_value(noise_shape))
    }
    noise_shape <- as.integer(noise_shape)
  }
  cfg <- list(rate = check_number(rate, "rate", lower = 0, upper = 1), noise_shape = noise_shape,
              seed = check_seed(seed, "seed"))
  self <- new_layer_state("Dropout", "dropout", extra$name, extra$dtype, extra$trainable, cfg)
  self$dropout_seed <- if (is.null(cfg$seed)) draw_seed() else cfg$seed
  self$call_counter <- 0
  compose_layer(object, new_layer_object(self, protocol_layer_function))
}

# The mask's dims for an input of dims d (NA entries of noise_shape filled in).
#' @noRd
dropout_noise_dims <- function(self, d) {
  ns <- self$config$noise_shape
  if (is.null(ns)) return(as.integer(d))
  if (length(ns) != length(d)) {
    abort_arg("noise_shape", sprintf("of the input's rank %d (input shape %s)", length(d), fmt_shape(d)),
              fmt_shape(ns))
  }
  ns[is.na(ns)] <- d[is.na(ns)]
  if (any(ns != 1L & ns != d)) {
    abort_arg("noise_shape", sprintf("1 or the input's size on each axis (input shape %s)", fmt_shape(d)),
              fmt_shape(ns))
  }
  as.integer(ns)
}

#' @noRd
dropout_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  x <- check_layer_input(inputs)
  d <- dim(x)
  mask <- single_input_mask(masks, d)
  ensure_built(self, d)
  rate <- self$config$rate
  noise <- dropout_noise_dims(self, d)
  active <- isTRUE(training) && rate > 0
  if (active) self$call_counter <- self$call_counter + 1
  cache <- list(active = active, noise = noise, counter = self$call_counter, out_dims = d)
  list(output = dropout_apply(self, x, cache), cache = cache, mask = mask)
}

# Applies the call's mask (or, when inactive, the identity in the layer's
# dtype) to x or to a gradient. A native tensor (float32 already) passes an
# inactive layer as it is (predict(), evaluate()); an active mask is drawn
# over R's column-major order, so a native tensor is converted first and the
# result is the R-array run's.
#' @noRd
dropout_apply <- function(self, x, cache) {
  if (!cache$active) return(if (is_native_tensor(x)) x else as_dtype_values(x, is_float64(self)))
  cpp_dropout(native_as_array(x), cache$noise, self$config$rate, self$dropout_seed %% 4294967296, cache$counter,
              is_float64(self), mh_threads())
}

#' @noRd
dropout_backward <- function(self, cache, grad_output) {
  g <- check_grad_output(grad_output, cache$out_dims)
  list(inputs = dropout_apply(self, g, cache), weights = named_weight_grads(self, list()))
}

#' @noRd
register_dropout <- function() {
  register_protocol_layer(
    "Dropout",
    properties = list(rate = function(self) self$config$rate,
                      noise_shape = function(self) self$config$noise_shape,
                      seed = function(self) self$config$seed),
    describe = function(self) {
      s <- sprintf("rate=%g", self$config$rate)
      if (!is.null(self$config$noise_shape)) s <- paste0(s, ", noise_shape=", fmt_shape(self$config$noise_shape))
      describe_built(self, s)
    },
    get_config = function(self) {
      cfg <- self$config
      c(base_layer_config(self), list(rate = cfg$rate, seed = cfg$seed, noise_shape = cfg$noise_shape))
    },
    from_config = function(config) layer_from_config(layer_dropout, config, c("rate", "noise_shape", "seed")),
    build = weightless_build(),
    compute_output_shape = function(self, input_shape, args = list()) as_input_shape(input_shape),
    forward = dropout_forward, backward = dropout_backward, native_tensors = TRUE,
    keras_object = keras_object_adjust(build_config = FALSE))
}
