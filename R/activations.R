# Activation names accepted by layer_dense(), layer_einsum_dense() and
# layer_activation(). The position in activation_names() (0-based) is the
# code of src/core/activations.h; the definitions are documented there and in
# ?layer_activation.

#' @noRd
activation_names <- function() {
  c("linear", "relu", "gelu", "sigmoid", "tanh", "softmax", "silu", "elu", "selu", "softplus",
    "softsign", "exponential", "relu6", "leaky_relu", "hard_sigmoid", "mish", "log_softmax")
}

# Keras's other names for the same functions.
#' @noRd
activation_aliases <- function() c(swish = "silu")

# NULL means "linear", as in Keras. Returns the canonical name.
#' @noRd
as_activation <- function(x, arg = "activation", null_ok = TRUE) {
  if (is.null(x) && null_ok) return("linear")
  if (is.character(x) && length(x) == 1L && !is.na(x)) {
    if (x %in% activation_names()) return(x)
    alias <- activation_aliases()[x]
    if (!is.na(alias)) return(unname(alias))
  }
  abort_arg(arg, paste0(if (null_ok) "NULL or " else "", "the name of an activation: ",
                        paste0("\"", activation_names(), "\"", collapse = ", ")),
            describe_value(x))
}

#' @noRd
activation_code <- function(name) {
  code <- match(name, activation_names()) - 1L
  if (is.na(code)) abort_msg(sprintf("internal: unknown activation \"%s\"", name))
  code
}
