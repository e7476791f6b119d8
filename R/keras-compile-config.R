# The compile configuration of a ".keras" archive (config.json's
# "compile_config") and the optimizer's variables (model.weights.h5's
# "optimizer" group), in both directions.

# Keras's compile_config of a model: {} when it is not compiled.
#' @noRd
keras_compile_config <- function(compiled) {
  if (is.null(compiled)) return(json_object())
  json_object()
}
