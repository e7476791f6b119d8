# Functions that work on any layer: weights, parameter counts, configs.

#' Get and set a layer's weights
#'
#' `get_weights()` returns the layer's weights as a list of arrays in
#' Keras's order and shapes; `set_weights()` replaces them (same count,
#' each of the same shape, finite values) and returns the layer invisibly.
#' For a multi-head attention layer the order is query kernel, query bias,
#' key kernel, key bias, (gate kernel, gate bias,) value kernel, value bias,
#' output kernel, output bias.
#'
#' @param object A layer.
#' @param trainable `NA` (all weights), `TRUE` (trainable weights only) or
#'   `FALSE` (non-trainable weights only).
#' @param weights A list of numeric arrays.
#' @returns `get_weights()`: an unnamed list of arrays. `set_weights()`:
#'   `object`, invisibly.
#' @export
#' @examples
#' mha <- layer_multi_head_attention(num_heads = 2, key_dim = 2)
#' mha$build(c(NA, 8, 16), c(NA, 4, 16))
#' w <- get_weights(mha)
#' sapply(w, dim)
#' w[[1]][] <- 0
#' set_weights(mha, w)
get_weights <- function(object, trainable = NA) {
  check_layer(object)
  if (!(is.logical(trainable) && length(trainable) == 1L)) {
    abort_arg("trainable", "NA, TRUE or FALSE", describe_value(trainable))
  }
  self <- layer_self(object)
  if (inherits(object, "multihead_model")) return(model_get_weights(self, trainable))
  if (!isTRUE(self$built)) return(list())
  if (!is.na(trainable) && trainable != isTRUE(self$trainable)) return(list())
  unname(layer_variables(self))
}

#' @rdname get_weights
#' @export
set_weights <- function(object, weights) {
  check_layer(object)
  layer_set_weights(layer_self(object), weights)
  invisible(object)
}

#' Count a layer's parameters
#'
#' @param object A built layer.
#' @returns The number of scalar weights.
#' @export
#' @examples
#' mha <- layer_multi_head_attention(num_heads = 2, key_dim = 2)
#' mha$build(c(NA, 8, 16), c(NA, 4, 16))
#' count_params(mha)   # 284
count_params <- function(object) {
  check_layer(object)
  layer_count_params(layer_self(object))
}

#' A layer's configuration
#'
#' `get_config()` returns the arguments that recreate the layer (its
#' weights excluded) as a named list, with attribute `"class_name"`.
#' `from_config()` creates a new, unbuilt layer from such a list.
#'
#' @param object A layer.
#' @param config A list returned by `get_config()`.
#' @returns `get_config()`: a named list. `from_config()`: a layer.
#' @export
#' @examples
#' mha <- layer_multi_head_attention(num_heads = 2, key_dim = 4, dropout = 0.1)
#' cfg <- get_config(mha)
#' cfg$num_heads
#' mha2 <- from_config(cfg)
get_config <- function(object) {
  check_layer(object)
  layer_get_config(layer_self(object))
}

#' @rdname get_config
#' @export
from_config <- function(config) {
  cls <- attr(config, "class_name")
  if (!is.list(config) || is.null(cls)) {
    abort_arg("config", "a list returned by get_config() (with a \"class_name\" attribute)",
              describe_value(config))
  }
  def <- .layer_classes[[cls]]
  if (is.null(def)) abort_arg("config", "the configuration of a known layer class", sprintf("class \"%s\"", cls))
  def$from_config(config)
}

#' @noRd
check_layer <- function(object, arg = "object") {
  if (!is_layer(object)) abort_arg(arg, "a layer", describe_value(object))
}
