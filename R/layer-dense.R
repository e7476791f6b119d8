# The Dense layer (keras3's layer_dense()), and the projection helpers it
# shares with EinsumDense: both run cpp_projection_forward() /
# cpp_projection_backward() (src/core/projection.h) with a "plan" that says
# in which axis order the C++ core sees the input, kernel and output.

#' Densely connected layer
#'
#' Creates a dense (fully connected) layer with the keras3 signature and
#' Keras 3 semantics: `output = activation(dot(inputs, kernel) + bias)`,
#' computed in C++. The layer acts on the last axis of inputs of any rank
#' \eqn{\ge} 2, so a (batch, time, features) array is projected at every time
#' step with the same kernel.
#'
#' The weights are, in Keras's order, `kernel` of shape (input features,
#' `units`) and `bias` of shape (`units`) (no bias with `use_bias = FALSE`),
#' created when the layer is first called (or by `layer$build(input_shape)`).
#' The input mask, if any, is passed through unchanged.
#'
#' @section Calling the layer:
#' `layer(inputs, training = NULL, mask = NULL)` returns the output array,
#' of shape (B, ..., `units`). After the layer is built, inputs must have the
#' same number of features on their last axis. [backprop()] returns the
#' gradients with respect to the input and the weights.
#'
#' @param object What to compose the layer with: `NULL` or missing returns the
#'   layer; an array (or a symbolic tensor, or a sequential model, once the
#'   models support them) applies the layer to it.
#' @param units Number of output features, a positive whole number.
#' @param activation `NULL` (linear) or an activation name: `"linear"`,
#'   `"relu"`, `"gelu"` (exact erf form, as Keras's default), `"sigmoid"`,
#'   `"tanh"`, `"softmax"` (over the last axis), `"silu"` (also
#'   `"swish"`), `"elu"`, `"selu"`, `"softplus"`, `"softsign"`,
#'   `"exponential"`, `"relu6"`, `"leaky_relu"` (slope 0.2),
#'   `"hard_sigmoid"`, `"mish"`, `"log_softmax"`. See [layer_activation()].
#' @param use_bias Whether the layer has a bias vector.
#' @param kernel_initializer,bias_initializer Initializers: a name such as
#'   `"glorot_uniform"` or an `initializer_*()` object.
#' @param kernel_regularizer,bias_regularizer Regularizers for the weights:
#'   `NULL`, `"l1"`, `"l2"`, `"l1_l2"` or a `regularizer_*()` object. Their
#'   losses appear in `layer$losses`.
#' @param activity_regularizer Regularizer for the output; after each call
#'   `layer$losses` holds its penalty divided by the batch size (Keras >=
#'   3.14).
#' @param kernel_constraint,bias_constraint Constraints: `NULL`, a name such
#'   as `"non_neg"` or a `constraint_*()` object, applied by
#'   `layer$apply_constraints()`.
#' @param ... Named layer options: `name` (default `"dense"`, `"dense_1"`,
#'   ...), `dtype` (`"float32"`, the default, or `"float64"`), `trainable`.
#'
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object`.
#' @seealso [backprop()], [get_weights()], [get_config()].
#' @export
#' @examples
#' dense <- layer_dense(units = 3, activation = "relu")
#' x <- array(rnorm(2 * 4 * 5), c(2, 4, 5))   # (batch, time, features)
#' y <- dense(x)
#' dim(y)                                      # 2 4 3
#' sapply(get_weights(dense), dim)
#'
#' # created and applied at once
#' y2 <- layer_dense(x, units = 2)
layer_dense <- function(object, units, activation = NULL, use_bias = TRUE,
                        kernel_initializer = "glorot_uniform", bias_initializer = "zeros",
                        kernel_regularizer = NULL, bias_regularizer = NULL,
                        activity_regularizer = NULL, kernel_constraint = NULL,
                        bias_constraint = NULL, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  if (missing(units)) abort_arg("units", "supplied: a positive whole number")
  extra <- check_layer_dots(list(...), base_layer_options(), "layer_dense()")
  cfg <- c(list(units = check_whole(units, "units"), activation = as_activation(activation),
                use_bias = check_flag(use_bias, "use_bias")),
           as_weight_specs(list(kernel_initializer = kernel_initializer, bias_initializer = bias_initializer,
                                kernel_regularizer = kernel_regularizer, bias_regularizer = bias_regularizer,
                                activity_regularizer = activity_regularizer,
                                kernel_constraint = kernel_constraint, bias_constraint = bias_constraint)))
  self <- new_layer_state("Dense", "dense", extra$name, extra$dtype, extra$trainable, cfg)
  compose_layer(object, new_layer_object(self, protocol_layer_function))
}

#' @noRd
dense_build <- function(self, input_shape) {
  input_shape <- as_input_shape(input_shape, min_rank = 2L, known = -1L)
  check_not_built(self)
  cfg <- self$config
  in_dim <- input_shape[length(input_shape)]
  add_layer_weight(self, "kernel", c(in_dim, cfg$units), cfg$kernel_initializer,
                   cfg$kernel_regularizer, cfg$kernel_constraint, size_arg = "units")
  if (cfg$use_bias) {
    add_layer_weight(self, "bias", cfg$units, cfg$bias_initializer, cfg$bias_regularizer,
                     cfg$bias_constraint)
  }
  self$build_shapes <- input_shape
  self$built <- TRUE
  invisible(NULL)
}

#' @noRd
dense_compute_output_shape <- function(self, input_shape, args = list()) {
  input_shape <- as_input_shape(input_shape, min_rank = 2L)
  if (isTRUE(self$built)) {
    n_in <- dim(self$variables$kernel)[1L]
    check_input_size(self, input_shape, "inputs", length(input_shape), n_in,
                     sprintf("%d features on its last axis", n_in))
  }
  c(input_shape[-length(input_shape)], self$config$units)
}

# The plan of a Dense call on an input of dims d: natural axis orders.
#' @noRd
dense_plan <- function(self, d) {
  r <- length(d)
  units <- self$config$units
  natural <- seq_len(r) - 1L
  list(x_order = natural, n_contract = 1L, k_order = 0:1, n_kernel_in = 1L,
       out_dims = c(d[-r], units), out_order = natural,
       bias = self$variables$bias, bias_fold = NULL)
}

#' @noRd
dense_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  x <- check_layer_input(inputs, min_rank = 2L)
  d <- dim(x)
  mask <- single_input_mask(masks, d)
  if (!isTRUE(self$built)) dense_build(self, batchless_shape(d))
  check_input_size(self, d, "inputs", length(d), dim(self$variables$kernel)[1L],
                   sprintf("%d features on its last axis", dim(self$variables$kernel)[1L]))
  check_size(c(d[-length(d)], self$config$units), "inputs", sprintf("the output of layer \"%s\"", self$name))
  projection_run_forward(self, x, dense_plan(self, d), self$config$activation,
                         self$config$activity_regularizer, mask)
}

#' @noRd
dense_backward <- function(self, cache, grad_output, need_inputs = TRUE) {
  projection_run_backward(self, cache, grad_output, need_inputs)
}

# ---- projection helpers (Dense and EinsumDense) ------------------------------

# Runs the projection of `plan` on x; returns the protocol's
# list(output, cache, mask) and records the activity loss.
#' @noRd
projection_run_forward <- function(self, x, plan, activation, activity_regularizer, mask) {
  res <- cpp_projection_forward(x, plan$x_order, plan$n_contract, self$variables$kernel,
                                plan$k_order, plan$n_kernel_in, plan$bias, plan$out_dims,
                                plan$out_order, activation_code(activation), is_float64(self),
                                mh_threads(), self)
  self$activity_losses <- if (is.null(activity_regularizer)) list() else
    list(regularizer_loss(activity_regularizer, native_as_array(res$output)) / max(1, plan$out_dims[1L]))
  list(output = res$output,
       cache = list(x = x, saved = res$saved, plan = plan, activation = activation,
                    out_dims = plan$out_dims),
       mask = mask)
}

# need_input: FALSE when the runner does not want dL/dx (then NULL).
#' @noRd
projection_run_backward <- function(self, cache, grad_output, need_input = TRUE) {
  g <- check_grad_output(grad_output, cache$out_dims)
  plan <- cache$plan
  has_bias <- "bias" %in% self$variable_names
  res <- cpp_projection_backward(cache$x, plan$x_order, plan$n_contract, self$variables$kernel,
                                 plan$k_order, plan$n_kernel_in,
                                 if (has_bias) length(plan$bias) else 0L, cache$saved, g,
                                 plan$out_order, activation_code(cache$activation),
                                 is_float64(self), mh_threads(), self, !isFALSE(as.vector(need_input)[1L]))
  grads <- list(kernel = res$kernel)
  if (has_bias) {
    db <- if (is.null(plan$bias_fold)) res$bias else plan$bias_fold(res$bias)
    grads$bias <- array(db, dim = dim(self$variables$bias))
  }
  list(inputs = res$inputs, weights = named_weight_grads(self, grads))
}

#' @noRd
dense_get_config <- function(self) {
  cfg <- self$config
  c(base_layer_config(self),
    list(units = cfg$units, activation = cfg$activation, use_bias = cfg$use_bias),
    spec_configs(cfg, c("kernel_initializer", "bias_initializer", "kernel_regularizer",
                               "bias_regularizer", "activity_regularizer", "kernel_constraint",
                               "bias_constraint")))
}

#' @noRd
register_dense <- function() {
  register_protocol_layer(
    "Dense",
    properties = list(
      units = function(self) self$config$units,
      activation = function(self) self$config$activation,
      use_bias = function(self) self$config$use_bias,
      kernel = function(self) layer_variable_handle(self, "kernel"),
      bias = function(self) layer_variable_handle(self, "bias")
    ),
    describe = function(self) {
      s <- sprintf("units=%d", self$config$units)
      if (self$config$activation != "linear") s <- paste0(s, ", activation=", self$config$activation)
      if (!self$config$use_bias) s <- paste0(s, ", no bias")
      describe_built(self, s)
    },
    get_config = dense_get_config,
    from_config = function(config) {
      layer_from_config(layer_dense, config, c("units", "activation", "use_bias", "kernel_initializer",
                                               "bias_initializer", "kernel_regularizer",
                                               "bias_regularizer", "activity_regularizer",
                                               "kernel_constraint", "bias_constraint"))
    },
    build = dense_build, compute_output_shape = dense_compute_output_shape,
    forward = dense_forward, backward = dense_backward, backward_skips_inputs = TRUE, native_tensors = TRUE,
    keras_object = keras_object_adjust(add = list(quantization_config = NULL), drop_null = "activity_regularizer"))
}
