# Layer objects bind `self` in their function environment (see R/layer.R).
utils::globalVariables("self")

.onLoad <- function(libname, pkgname) {
  register_einsum_dense()
  register_multi_head_attention()
  register_dense()
  register_activation_layer()
  register_dropout()
  register_merge_layers()
  register_reshaping_layers()
  register_identity_layer()
  register_masking_layer()
  register_lambda_layer()
  register_time_distributed()
  register_global_average_pooling_1d()
  register_global_max_pooling_1d()
  register_flatten()
  register_embedding()
  register_layer_normalization()
  register_input_layer()
  register_models()
  register_all_ops()
}
