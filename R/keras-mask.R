# Implicit masks on R arrays in eager calls: a layer that produces a mask
# (layer_embedding(mask_zero = TRUE), layer_masking(), or any layer passing
# its input's mask on) returns an array carrying that mask as the attribute
# "keras_mask" (a logical array of the batch and time axes), as Keras sets
# `_keras_mask` on eager tensors; the next layer called on the array without
# an explicit `mask` uses it. In models, masks flow along the graph instead
# (model-graph.R).

#' Read or set the implicit mask an array carries
#'
#' In an eager call (on an R array), a layer that computes a mask, such as
#' `layer_embedding(mask_zero = TRUE)`, returns an array that carries the
#' mask, as Keras does with its tensors' `_keras_mask`; the next layer called
#' on that array without a `mask` argument uses it. `get_keras_mask()` reads
#' it; `set_keras_mask()` sets (or, with `NULL`, removes) it.
#'
#' @param x An array.
#' @param mask `NULL`, or a logical array whose dimensions are the first
#'   dimensions of `x` (batch, time, ...).
#' @returns `get_keras_mask()`: the mask, or `NULL`. `set_keras_mask()`: `x`
#'   with the mask.
#' @export
#' @examples
#' emb <- layer_embedding(input_dim = 10, output_dim = 3, mask_zero = TRUE)
#' h <- emb(rbind(c(4, 2, 0), c(7, 0, 0)))
#' get_keras_mask(h)
#' layer_global_average_pooling_1d(h)  # averages over the unmasked steps only
get_keras_mask <- function(x) attr(x, "keras_mask", exact = TRUE)

#' @rdname get_keras_mask
#' @export
set_keras_mask <- function(x, mask) {
  if (!is.numeric(x) && !is.logical(x)) abort_arg("x", "a numeric or logical array", describe_value(x))
  if (!is.null(mask)) {
    dx <- if (is.null(dim(x))) length(x) else dim(x)
    dm <- if (is.null(dim(mask))) length(mask) else dim(mask)
    if (!is.logical(mask) && !is.numeric(mask)) abort_arg("mask", "NULL or a logical array", describe_value(mask))
    if (length(dm) > length(dx) || any(dm != dx[seq_along(dm)]) || anyNA(mask)) {
      abort_arg("mask", sprintf("NULL or a logical array without NA whose dimensions lead those of `x` (%s)",
                                paste(dx, collapse = ", ")), describe_value(mask))
    }
    mask <- array(as.logical(mask), dm)
  }
  attr(x, "keras_mask") <- mask
  x
}

# The implicit masks of a call's inputs (an array, or a list of arrays) in
# the form forward() takes: the mask, a list of masks, or NULL when none
# carries one.
#' @noRd
implicit_masks_of <- function(inputs) {
  if (is.list(inputs) && !is.object(inputs)) {
    m <- lapply(inputs, get_keras_mask)
    return(if (all(vapply(m, is.null, logical(1)))) NULL else m)
  }
  get_keras_mask(inputs)
}

#' @noRd
drop_implicit_masks <- function(inputs) {
  if (is.list(inputs) && !is.object(inputs)) return(lapply(inputs, drop_implicit_masks))
  # (removing an absent attribute would still copy a shared array)
  if (!is.null(attr(inputs, "keras_mask", exact = TRUE))) attr(inputs, "keras_mask") <- NULL
  inputs
}

#' @noRd
attach_implicit_mask <- function(output, mask) {
  if (is.null(mask) || !(is.numeric(output) || is.logical(output))) return(output)
  attr(output, "keras_mask") <- mask
  output
}
