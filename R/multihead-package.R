#' multihead: native Keras-style multi-head attention
#'
#' `layer_multi_head_attention()` with the keras3 signature and Keras 3
#' semantics, computed by a C++ core (Rcpp + RcppEigen): projections, masks,
#' dropout, attention scores and every gradient. See
#' `vignette("getting-started", package = "multihead")` to get started.
#'
#' @section Options:
#' * `multihead.max_tensor_elements`: the largest number of elements of any
#'   array multihead allocates (weights, outputs, work buffers), by default
#'   `2^31 - 1`. Sizes are checked before anything is allocated; a larger one
#'   is an error naming the argument responsible.
#' * `multihead.max_attention_bytes`: the memory the materialised attention
#'   path may use for its `(T, S)` matrices, by default 8 GiB (the flash path
#'   needs none).
#'
#' @keywords internal
#' @useDynLib multihead, .registration = TRUE
#' @importFrom Rcpp sourceCpp
#' @importFrom stats predict
"_PACKAGE"
