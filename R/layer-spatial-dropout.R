# The SpatialDropout1D layer (keras3's layer_spatial_dropout_1d()): dropout
# of whole channels of a (batch, steps, channels) input, i.e. Dropout with
# the noise shape (batch, 1, channels). It shares Dropout's counter-based
# masks (R/layer-dropout.R, src/core/dropout.h): the mask of a call is a
# function of (seed, call counter), so backward regenerates it.

#' Spatial 1D dropout layer
#'
#' While training (`training = TRUE` in the call), drops whole channels of a
#' (batch, steps, channels) input: for each example and channel, all steps
#' are set to zero with probability `rate`, and the kept channels are scaled
#' by `1 / (1 - rate)` (Keras's `SpatialDropout1D`). Otherwise the layer is
#' the identity. It has no weights and passes the input mask through.
#'
#' Randomness is as for [layer_dropout()]: the mask of a call depends on the
#' layer's seed and a counter of its training calls; with `seed = NULL` the
#' seed is drawn from R's random number generator when the layer is created,
#' so [set.seed()] makes runs reproducible.
#'
#' @inheritParams layer_dense
#' @param rate The fraction of channels to drop, in \[0, 1\].
#' @param seed `NULL` or a whole number: the seed of the dropout stream.
#' @param name The layer's name (default `"spatial_dropout1d"`, ...).
#' @param dtype `NULL` (the default float type) or `"float32"` or
#'   `"float64"`.
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object` (in inference mode, so the
#'   input itself).
#' @export
#' @examples
#' drop <- layer_spatial_dropout_1d(rate = 0.5, seed = 1)
#' x <- array(1, c(2, 4, 6))
#' y <- drop(x, training = TRUE)
#' y[1, , ]       # each channel (column) all 0 or all 2
layer_spatial_dropout_1d <- function(object, rate, seed = NULL, name = NULL, dtype = NULL) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  if (missing(rate)) abort_arg("rate", "supplied: a number between 0 and 1")
  cfg <- list(rate = check_number(rate, "rate", lower = 0, upper = 1), seed = check_seed(seed, "seed"))
  self <- new_layer_state("SpatialDropout1D", "spatial_dropout1d", name, dtype, NULL, cfg)
  self$dropout_seed <- if (is.null(cfg$seed)) draw_seed() else cfg$seed
  self$call_counter <- 0
  compose_layer(object, new_layer_object(self, protocol_layer_function))
}

#' @noRd
spatial_dropout_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  x <- check_layer_input(inputs, min_rank = 3L)
  d <- dim(x)
  if (length(d) != 3L) {
    abort_arg("inputs", "a rank-3 array (batch, steps, channels)", sprintf("rank %d (shape %s)", length(d),
                                                                             fmt_shape(d)))
  }
  mask <- single_input_mask(masks, d)
  ensure_built(self, d)
  active <- isTRUE(training) && self$config$rate > 0
  if (active) self$call_counter <- self$call_counter + 1
  cache <- list(active = active, noise = c(d[1L], 1L, d[3L]), counter = self$call_counter, out_dims = d)
  list(output = dropout_apply(self, x, cache), cache = cache, mask = mask)
}

#' @noRd
register_spatial_dropout_1d <- function() {
  register_protocol_layer(
    "SpatialDropout1D",
    properties = list(rate = function(self) self$config$rate,
                      seed = function(self) self$config$seed),
    describe = function(self) describe_built(self, sprintf("rate=%g", self$config$rate)),
    # Keras's BaseSpatialDropout.get_config(): these four keys only.
    get_config = function(self) {
      list(rate = self$config$rate, seed = self$config$seed, name = self$name, dtype = self$dtype)
    },
    from_config = function(config) {
      args <- config[intersect(names(config), c("rate", "seed", "name", "dtype"))]
      do.call(layer_spatial_dropout_1d, c(list(NULL), args), quote = TRUE)
    },
    build = weightless_build(rank = 3L),
    compute_output_shape = function(self, input_shape, args = list()) {
      input_shape <- as_input_shape(input_shape, min_rank = 3L)
      if (length(input_shape) != 3L) abort_arg("input_shape", "a shape of rank 3", fmt_shape(input_shape))
      input_shape
    },
    forward = spatial_dropout_forward, backward = dropout_backward)
}
