# EinsumDense: the class of the attention layer's four (five) projection
# sub-layers. It holds a kernel and an optional bias and computes
#   output = einsum(equation, inputs, kernel) + bias
# for "dense-like" equations, where the kernel's leading axes contract the
# trailing axes of the input and its remaining axes are appended to the
# output, e.g. "abc,cde->abde" (query: (B, T, E) x (E, N, H) -> (B, T, N, H))
# and "abcd,cde->abe" (output: (B, T, N, Hv) x (N, Hv, E) -> (B, T, E)).

# Keras's _build_proj_equation: `free` letters shared by input and output,
# `bound` letters contracted, `out` letters shared by kernel and output.
#' @noRd
projection_equation <- function(free, bound, out) {
  l <- letters
  f <- l[seq_len(free)]
  b <- l[free + seq_len(bound)]
  o <- l[free + bound + seq_len(out)]
  sprintf("%s,%s->%s", paste(c(f, b), collapse = ""), paste(c(b, o), collapse = ""),
          paste(c(f, o), collapse = ""))
}

# Creates a built EinsumDense sub-layer.
#   kernel_shape: (contracted..., out...); bias_shape: out... or NULL
#   fan_in / fan_out: Keras >= 3.15 fans (product of input / output axes)
#   salt: distinguishes sub-layers' random draws under one seeded initializer
#' @noRd
new_einsum_dense <- function(name, equation, kernel_shape, bias_shape, n_contract,
                             kernel_initializer, bias_initializer,
                             kernel_regularizer = NULL, bias_regularizer = NULL,
                             kernel_constraint = NULL, bias_constraint = NULL,
                             activation = NULL, dtype = "float32", trainable = TRUE,
                             salt = 0L, output_shape = NULL) {
  self <- new.env(parent = emptyenv())
  self$class_name <- "EinsumDense"
  self$name <- name
  self$dtype <- dtype
  self$trainable <- trainable
  self$equation <- equation
  self$n_contract <- as.integer(n_contract)
  self$activation <- activation
  self$output_shape <- output_shape
  self$kernel_initializer <- kernel_initializer
  self$bias_initializer <- bias_initializer
  self$kernel_regularizer <- kernel_regularizer
  self$bias_regularizer <- bias_regularizer
  self$kernel_constraint <- kernel_constraint
  self$bias_constraint <- bias_constraint
  self$sublayers <- list()
  self$activity_losses <- list()
  fan_in <- prod(kernel_shape[seq_len(n_contract)])
  fan_out <- prod(kernel_shape[-seq_len(n_contract)])
  self$variables <- list(kernel = store_weight(
    initializer_sample(kernel_initializer, kernel_shape, fan_in, fan_out, salt = salt),
    kernel_shape, dtype))
  self$regularizers <- list(kernel = kernel_regularizer)
  self$constraints <- list(kernel = kernel_constraint)
  self$variable_names <- "kernel"
  if (!is.null(bias_shape)) {
    self$variables$bias <- store_weight(
      initializer_sample(bias_initializer, bias_shape, prod(bias_shape), prod(bias_shape),
                         salt = salt + 100L),
      bias_shape, dtype)
    self$regularizers["bias"] <- list(bias_regularizer)
    self$constraints["bias"] <- list(bias_constraint)
    self$variable_names <- c("kernel", "bias")
  }
  self$built <- TRUE
  new_layer_object(self, function(inputs) einsum_dense_call(self, inputs))
}

# Forward pass: contracts the trailing `n_contract` axes of `inputs` with the
# kernel's leading axes (one GEMM in the C++ core).
#' @noRd
einsum_dense_call <- function(self, inputs) {
  check_numeric_array(inputs, "inputs", min_rank = self$n_contract + 1L)
  kernel <- self$variables$kernel
  kd <- dim(kernel)
  xd <- dim(inputs)
  nc <- self$n_contract
  contracted <- xd[(length(xd) - nc + 1L):length(xd)]
  if (!identical(as.integer(contracted), as.integer(kd[seq_len(nc)]))) {
    abort_arg("inputs", sprintf("an array whose last %d axes have sizes %s (layer \"%s\", equation %s)",
                                nc, fmt_shape(kd[seq_len(nc)]), self$name, self$equation),
              sprintf("shape %s", fmt_shape(xd)))
  }
  out <- cpp_dense_call(inputs, nc, kernel, self$variables$bias,
                        identical(self$dtype, "float64"), mh_threads())
  if (identical(self$activation, "sigmoid")) out[] <- 1 / (1 + exp(-out))
  out
}

#' @noRd
einsum_dense_properties <- function() c(common_layer_properties, list(
  kernel = function(self) self$variables$kernel,
  bias = function(self) self$variables$bias,
  equation = function(self) self$equation,
  activation = function(self) if (is.null(self$activation)) "linear" else self$activation,
  output_shape = function(self) self$output_shape
))

#' @noRd
einsum_dense_config <- function(self) {
  list(name = self$name, trainable = self$trainable, dtype = self$dtype,
       output_shape = self$output_shape, equation = self$equation,
       activation = if (is.null(self$activation)) "linear" else self$activation,
       bias_axes = einsum_bias_axes(self),
       kernel_initializer = config_or_null(self$kernel_initializer, initializer_config),
       bias_initializer = config_or_null(self$bias_initializer, initializer_config),
       kernel_regularizer = config_or_null(self$kernel_regularizer, regularizer_config),
       bias_regularizer = config_or_null(self$bias_regularizer, regularizer_config),
       kernel_constraint = config_or_null(self$kernel_constraint, constraint_config),
       bias_constraint = config_or_null(self$bias_constraint, constraint_config))
}

# Keras's bias_axes: the trailing output letters the bias spans.
#' @noRd
einsum_bias_axes <- function(self) {
  if (!("bias" %in% self$variable_names)) return(NULL)
  out_spec <- sub(".*->", "", self$equation)
  k <- length(dim(self$variables$bias))
  substr(out_spec, nchar(out_spec) - k + 1L, nchar(out_spec))
}

#' @noRd
register_einsum_dense <- function() {
  register_layer_class(
    "EinsumDense",
    properties = einsum_dense_properties(),
    methods = common_layer_methods,
    describe = function(self) {
      sprintf("equation=%s, kernel %s", self$equation, fmt_shape(dim(self$variables$kernel)))
    },
    get_config = einsum_dense_config,
    from_config = function(config) {
      abort_msg("from_config() for EinsumDense layers comes with layer_einsum_dense().")
    }
  )
}
