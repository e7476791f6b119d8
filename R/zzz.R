# Layer objects bind `self` in their function environment (see R/layer.R).
utils::globalVariables("self")

.onLoad <- function(libname, pkgname) {
  register_einsum_dense()
  register_multi_head_attention()
}
