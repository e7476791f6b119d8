# Layer objects bind `self` in their function environment (see R/layer.R).
utils::globalVariables("self")

.onLoad <- function(libname, pkgname) {
  register_einsum_dense()
  register_multi_head_attention()
  register_dense()
  register_activation_layer()
  register_dropout()
  register_add()
  register_global_average_pooling_1d()
  register_global_max_pooling_1d()
  register_flatten()
  register_embedding()
  register_layer_normalization()
  register_input_layer()
  register_text_vectorization()
  register_lookup_layers()
  register_models()
  register_all_ops()
}
