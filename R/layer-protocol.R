# Shared machinery of the layers that implement the graph protocol of
# register_layer_class() themselves (Dense, EinsumDense, Embedding,
# LayerNormalization, Dropout, Add, GlobalAveragePooling1D, Flatten,
# Activation): their state, weights, calls on arrays, backprop(), and the
# checks of inputs, masks and shapes.
#
# Conventions of these layers' forward(self, inputs, args, training, masks):
#   * `inputs` is an array (a list of arrays for Add); plain vectors count as
#     rank-1 arrays (a batch of scalars).
#   * `masks` is NULL, a logical array of the input's shape without its last
#     axis, or a list with one such entry (or NULL) per input. Single-input
#     layers accept a list of length 1.
#   * `args` is ignored (these layers have no call arguments besides the
#     mask and `training`).
#   * `training` is TRUE, FALSE or NULL (= FALSE); only Dropout uses it.
#   * The cache holds plain R data and always `out_dims`, the output's dims,
#     which backward() checks `grad_output` against.

# A new layer state. Call it after validating the constructor's own
# arguments: it validates name/dtype/trainable, then draws the default name.
#' @noRd
new_layer_state <- function(class_name, prefix, name = NULL, dtype = NULL, trainable = NULL,
                            config = list()) {
  dtype <- check_dtype(dtype)
  trainable <- if (is.null(trainable)) TRUE else check_flag(trainable, "trainable")
  name <- check_string(name, "name", null_ok = TRUE)
  self <- new.env(parent = emptyenv())
  self$class_name <- class_name
  self$name <- if (is.null(name)) unique_layer_name(prefix) else name
  self$dtype <- dtype
  self$trainable <- trainable
  self$config <- config
  self$built <- FALSE
  self$build_shapes <- NULL
  self$sublayers <- list()
  self$variables <- list()
  self$variable_names <- character()
  self$regularizers <- list()
  self$constraints <- list()
  self$activity_losses <- list()
  self$weight_cache <- NULL
  self
}

# The options every such layer takes through `...`.
#' @noRd
base_layer_options <- function() c("name", "dtype", "trainable")

# Creates a weight from its initializer (Keras's add_weight). `salt` keeps the
# draws of a seeded initializer distinct between a layer's weights.
#' @noRd
add_layer_weight <- function(self, name, shape, initializer, regularizer = NULL, constraint = NULL,
                             fan_in = NULL, fan_out = NULL, size_arg = "input_shape") {
  check_size(shape, size_arg, sprintf("weight \"%s/%s\"", self$name, name))
  salt <- length(self$variable_names)
  values <- initializer_sample(initializer, shape, fan_in, fan_out, salt = salt)
  self$variables[[name]] <- store_weight(values, shape, self$dtype)
  self$regularizers[name] <- list(regularizer)
  self$constraints[name] <- list(constraint)
  self$variable_names <- c(self$variable_names, name)
  invisible(NULL)
}

#' @noRd
is_float64 <- function(self) identical(self$dtype, "float64")

# Weight gradients (a list named by variable, in variable order) named by
# weight path, as get_weights() orders them.
#' @noRd
named_weight_grads <- function(self, grads) {
  grads <- grads[self$variable_names]
  names(grads) <- if (length(grads)) paste0(self$name, "/", self$variable_names) else character()
  grads
}

# ---- calls -----------------------------------------------------------------

# The body of every such layer object: `layer(inputs, training = NULL,
# mask = NULL)` returns the output array.
#' @noRd
protocol_layer_function <- function(inputs, training = NULL, mask = NULL, ...) {
  if (...length()) reject_layer_call_args(self, list(...))
  if (missing(inputs)) abort_arg("inputs", "supplied: the array to apply the layer to")
  if (is.null(mask)) mask <- implicit_masks_of(inputs)  # keras-mask.R
  fw <- run_layer_forward(self, drop_implicit_masks(inputs), training, mask)
  attach_implicit_mask(fw$output, fw$mask)
}

#' @noRd
run_layer_forward <- function(self, inputs, training = NULL, masks = NULL) {
  training <- check_flag(training, "training", null_ok = TRUE)
  layer_class_def(self)$forward(self, inputs, list(), isTRUE(training), masks)
}

# backprop() for these layers (their class's `backprop`): the arguments are
# those of a call, `inputs`, `training = NULL`, `mask = NULL`.
#' @noRd
protocol_layer_backprop <- function(object, args, grad_output) {
  if (!missing(grad_output)) args["grad_output"] <- list(grad_output)
  do.call(protocol_backprop_call, c(list(object), args), quote = TRUE)
}

#' @noRd
protocol_backprop_call <- function(object, inputs, training = NULL, mask = NULL, ..., grad_output) {
  protocol_backprop(object, inputs, training, mask, list(...), grad_output)
}

# Forward, then backward from grad_output.
#' @noRd
protocol_backprop <- function(object, inputs, training, mask, dots, grad_output) {
  self <- layer_self(object)
  if (length(dots)) reject_layer_call_args(self, dots)
  fw <- run_layer_forward(self, inputs, training, mask)
  grads <- layer_class_def(self)$backward(self, fw$cache, grad_output)
  list(output = fw$output, grads = grads)
}

#' @noRd
reject_layer_call_args <- function(self, dots) {
  nms <- names(dots)
  if (is.null(nms)) nms <- rep("", length(dots))
  shown <- ifelse(nzchar(nms), paste0("`", nms, "`"), "an unnamed argument")
  abort_msg(sprintf("Unknown argument%s in a call of %s layer \"%s\": %s. Accepted: inputs, training, mask.",
                    if (length(dots) > 1L) "s" else "", self$class_name, self$name,
                    paste(unique(shown), collapse = ", ")),
            class = "multihead_error_argument")
}

# ---- registration ----------------------------------------------------------

# Registers a class with the protocol functions, the common properties and
# methods, $build(input_shape) / $compute_output_shape(input_shape) and
# backprop(layer, inputs, training, mask, grad_output =).
#' @noRd
register_protocol_layer <- function(class_name, properties, describe, get_config, from_config,
                                    build, compute_output_shape, forward, backward,
                                    backprop = protocol_layer_backprop, keras_object = NULL,
                                    keras_config = NULL, backward_skips_inputs = FALSE,
                                    native_tensors = FALSE) {
  register_layer_class(
    class_name,
    properties = c(common_layer_properties, properties),
    methods = c(common_layer_methods, list(
      build = function(self, input_shape) {
        build(self, input_shape)
        invisible(NULL)
      },
      compute_output_shape = function(self, input_shape) compute_output_shape(self, input_shape)
    )),
    describe = describe, get_config = get_config, from_config = from_config, build = build,
    compute_output_shape = compute_output_shape, forward = forward, backward = backward,
    backprop = backprop, keras_object = keras_object, keras_config = keras_config,
    backward_skips_inputs = backward_skips_inputs, native_tensors = native_tensors)
}

# Initializer, regularizer and constraint arguments (told apart by the
# suffix of their names) as spec objects; each error names its argument.
#' @noRd
as_weight_specs <- function(args) {
  out <- list()
  for (k in names(args)) {
    convert <- if (endsWith(k, "_initializer")) as_initializer
      else if (endsWith(k, "_regularizer")) as_regularizer else as_constraint
    out[k] <- list(convert(args[[k]], k))
  }
  out
}

# The serialisable configs of the spec objects cfg[keys] (NULL stays NULL).
#' @noRd
spec_configs <- function(cfg, keys) {
  out <- list()
  for (k in keys) {
    v <- cfg[[k]]
    out[k] <- list(if (is.null(v)) NULL else if (endsWith(k, "_initializer")) initializer_config(v)
                   else if (endsWith(k, "_regularizer")) regularizer_config(v) else constraint_config(v))
  }
  out
}

# The configuration keys every layer has, first (as Keras's base config).
#' @noRd
base_layer_config <- function(self) list(name = self$name, trainable = self$trainable, dtype = self$dtype)

# Calls constructor `ctor` (a layer_*() function) with the entries of a
# get_config() list that it accepts (NULL entries included).
#' @noRd
layer_from_config <- function(ctor, config, keys) {
  args <- config[intersect(names(config), c(keys, base_layer_options()))]
  do.call(ctor, c(list(NULL), args), quote = TRUE)
}

#' @noRd
describe_built <- function(self, s) {
  if (isTRUE(self$built) && !is.null(self$build_shapes)) {
    s <- paste0(s, if (nzchar(s)) ", " else "", "built for input ", fmt_shape(self$build_shapes))
  }
  if (!identical(self$dtype, "float32")) s <- paste0(s, if (nzchar(s)) ", " else "", self$dtype)
  s
}

#' @noRd
check_not_built <- function(self) {
  if (isTRUE(self$built)) {
    abort_msg(sprintf("Layer \"%s\" is already built (for input shape %s).", self$name,
                      fmt_shape(self$build_shapes)))
  }
}

# ---- input, mask, shape and gradient checks --------------------------------

#' @noRd
check_layer_input <- function(x, arg = "inputs", min_rank = 1L, what = "a numeric array") {
  if (is_native_tensor(x) && length(dim(x)) >= min_rank) return(x)  # a float32 layer's result (the runner's)
  d <- if (is.null(dim(x))) length(x) else dim(x)
  if (!is.numeric(x) || is.object(x) || (is.null(dim(x)) && min_rank > 1L)) {
    abort_arg(arg, sprintf("%s with at least %d ax%s (batch first)", what, min_rank,
                           if (min_rank == 1L) "is" else "es"),
              describe_value(x))
  }
  if (length(d) < min_rank) {
    abort_arg(arg, sprintf("%s with at least %d axes (batch first)", what, min_rank),
              sprintf("rank %d (shape %s)", length(d), fmt_shape(d)))
  }
  if (!cpp_all_finite(x, mh_threads())) abort_arg(arg, "finite: it contains NA, NaN or Inf")
  if (is.null(dim(x))) dim(x) <- d
  x
}

# Errors unless axis `axis` (1-based) of the input has the size the layer
# was built for.
#' @noRd
check_input_size <- function(self, d, arg, axis, size, what) {
  if (!is.na(d[axis]) && d[axis] != size) {  # NA: a symbolic tensor's unknown size
    abort_arg(arg, sprintf("an array with %s, as when layer \"%s\" was built (input shape %s)",
                           what, self$name, fmt_shape(self$build_shapes)),
              sprintf("%d (shape %s)", d[axis], fmt_shape(d)))
  }
}

#' @noRd
check_input_rank <- function(self, d, arg, rank) {
  if (length(d) != rank) {
    abort_arg(arg, sprintf("an array of rank %d, as when layer \"%s\" was built (input shape %s)",
                           rank, self$name, fmt_shape(self$build_shapes)),
              sprintf("rank %d (shape %s)", length(d), fmt_shape(d)))
  }
}

# The mask of a single-input layer from `masks` (NULL, a mask, or a list of
# one), checked against the input's dims.
#' @noRd
single_input_mask <- function(masks, input_dims, arg = "mask") {
  if (is.null(masks)) return(NULL)
  if (is.list(masks) && !is.object(masks)) {
    if (length(masks) != 1L) {
      abort_arg(arg, "NULL, a logical array or a list of one mask (this layer has one input)",
                sprintf("a list of length %d", length(masks)))
    }
    masks <- masks[[1L]]
    if (is.null(masks)) return(NULL)
  }
  check_position_mask(masks, input_dims[-length(input_dims)], arg)
}

# A mask of positions: logical (or 0/1) with dims `dims` (the input's shape
# without its last axis). Returns a logical array.
#' @noRd
check_position_mask <- function(mask, dims, arg = "mask") {
  md <- if (is.null(dim(mask))) length(mask) else dim(mask)
  ok <- (is.logical(mask) || is.numeric(mask)) && !is.object(mask) &&
    identical(as.integer(md), as.integer(dims)) && !anyNA(mask) &&
    (is.logical(mask) || all(mask == 0 | mask == 1))
  if (!ok) {
    abort_arg(arg, sprintf(paste0("a logical array of shape %s (the input's shape without its last ",
                                  "axis; TRUE where a position is present)"), fmt_shape(dims)),
              if (is.logical(mask) || is.numeric(mask)) sprintf("shape %s", fmt_shape(md)) else describe_value(mask))
  }
  array(as.logical(mask), dim = dims)
}

#' @noRd
check_grad_output <- function(grad_output, dims) {
  if (is_native_tensor(grad_output) && identical(as.integer(dim(grad_output)), as.integer(dims))) {
    return(grad_output)  # a float32 layer's result (the runner's)
  }
  gd <- if (is.null(dim(grad_output))) length(grad_output) else dim(grad_output)
  if (!is.numeric(grad_output) || is.object(grad_output) || !identical(as.integer(gd), as.integer(dims))) {
    abort_arg("grad_output", sprintf("a numeric array of the output's shape %s", fmt_shape(dims)),
              if (is.numeric(grad_output)) sprintf("shape %s", fmt_shape(gd)) else describe_value(grad_output))
  }
  if (!cpp_all_finite(grad_output, mh_threads())) abort_arg("grad_output", "finite: it contains NA, NaN or Inf")
  if (is.null(dim(grad_output))) dim(grad_output) <- dims
  grad_output
}

# An input shape for build() / compute_output_shape(): whole numbers >= 0 or
# NA (unknown), batch first; a list may use NULL for unknown sizes.
# `known` lists (1-based, negative from the end) axes whose size must be known.
#' @noRd
as_input_shape <- function(shape, arg = "input_shape", min_rank = 1L, known = integer()) {
  if (is.list(shape) && !is.object(shape)) {
    shape <- unlist(lapply(shape, function(s) if (is.null(s)) NA else s))
  }
  ok <- (is.numeric(shape) || (is.logical(shape) && all(is.na(shape)))) && is.null(dim(shape)) &&
    length(shape) >= min_rank
  if (ok) {
    k <- shape[!is.na(shape)]
    ok <- all(is.finite(k)) && all(k == round(k)) && all(k >= 0) && all(k <= .Machine$integer.max)
  }
  if (!ok) {
    abort_arg(arg, sprintf(paste0("a shape: a vector of at least %d whole number%s, batch first ",
                                  "(NA for an unknown size)"), min_rank, if (min_rank == 1L) "" else "s"),
              describe_value(shape))
  }
  shape <- as.integer(shape)
  r <- length(shape)
  for (a in known) {
    i <- if (a < 0L) r + 1L + a else a
    if (is.na(shape[i])) {
      abort_arg(arg, sprintf("a shape whose axis %d is known", i), fmt_shape(shape))
    }
  }
  shape
}

# The input shape a layer built on array dims `d` records: batch unknown.
#' @noRd
batchless_shape <- function(d) c(NA_integer_, as.integer(d[-1L]))

# build() of a layer without weights: records the input shape. `rank`: the
# exact rank the layer needs (NULL: any rank >= min_rank).
#' @noRd
weightless_build <- function(min_rank = 1L, rank = NULL) {
  force(min_rank); force(rank)
  function(self, input_shape) {
    input_shape <- as_input_shape(input_shape, min_rank = min_rank)
    if (!is.null(rank) && length(input_shape) != rank) {
      abort_arg("input_shape", sprintf("a shape of rank %d", rank), fmt_shape(input_shape))
    }
    check_not_built(self)
    self$build_shapes <- input_shape
    self$built <- TRUE
    invisible(NULL)
  }
}

# Marks a weight-free layer built on its first call.
#' @noRd
ensure_built <- function(self, d) {
  if (!isTRUE(self$built)) {
    layer_class_def(self)$build(self, batchless_shape(d))
  }
}

# Layer functions find `self` in the environment new_layer_object() gives them.
utils::globalVariables("self")
