.onLoad <- function(libname, pkgname) {
  register_einsum_dense()
  register_multi_head_attention()
  register_dense()
  register_input_layer()
  register_models()
}
