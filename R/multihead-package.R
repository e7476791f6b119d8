#' multihead: native Keras-style multi-head attention
#'
#' `layer_multi_head_attention()` with the keras3 signature and Keras 3
#' semantics, computed by a C++ core (Rcpp + RcppEigen): projections, masks,
#' dropout, attention scores and every gradient. See
#' `vignette("getting-started", package = "multihead")` to get started.
#'
#' @keywords internal
#' @useDynLib multihead, .registration = TRUE
#' @importFrom Rcpp sourceCpp
#' @importFrom stats predict
"_PACKAGE"
