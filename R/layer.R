# Layer objects.
#
# A layer is an R function (calling it runs the layer) with a class vector
# c(<Keras class name>, "multihead_layer", "function"). Its environment holds
# one binding, `self`: an environment with the layer's whole state as plain R
# data (config, weights as arrays, sub-layers, RNG seed and call counter), so
# saveRDS() / readRDS() round-trips a layer exactly.
#
# `layer$prop` reads a property or returns a bound method. Properties and
# methods are looked up in a per-class table registered with
# register_layer_class(); every property is read-only. That registry is the
# one way to add a layer class (built-in classes and Layer()'s custom ones
# alike): generic code (models, saving, regularization, backprop()) asks a
# layer's class definition, layer_class_def(), what the layer needs rather
# than testing its class name.

.layer_classes <- new.env(parent = emptyenv())
.layer_name_counts <- new.env(parent = emptyenv())

# properties: named list of function(self) -> value
# methods:    named list of function(self, ...) -> value (bound on access)
# describe:   function(self) -> one-line configuration summary
# get_config: function(self) -> named list (the constructor's arguments)
# from_config: function(config) -> a new layer
#
# The graph protocol (what models use to run a layer; NULL for classes that
# only live inside another layer, such as the attention's EinsumDense parts).
# "shape" means an integer vector, batch first, NA for an unknown size; a
# layer with several inputs (add, multi-head attention) takes a list of them.
#   build(self, input_shape)               creates the weights; sets
#                                          self$built and self$build_shapes
#   compute_output_shape(self, input_shape, args = list())
#                                          -> shape (or a list of shapes for
#                                          several outputs); computes nothing
#   forward(self, inputs, args = list(), training = FALSE, masks = NULL)
#                                          inputs: an array or a list of arrays
#                                          (as input_shape); args: the call's
#                                          other arguments recorded on the node
#                                          (e.g. use_causal_mask); masks: NULL
#                                          or logical (B, T...) per input.
#                                          Builds if needed. Returns
#                                          list(output = , cache = , mask = ):
#                                          cache is whatever backward needs,
#                                          mask the output's mask or NULL.
#   backward(self, cache, grad_output)     -> list(inputs = , weights = ):
#                                          dLoss/dinput (an array, or a list
#                                          matching `inputs`; NULL for inputs
#                                          that are not differentiable, such as
#                                          integer ids) and the weight
#                                          gradients as a named list in
#                                          get_weights() order.
#   backward(self, cache, grad_output, need_inputs)
#                                          the same, for a class that declares
#                                          `backward_skips_inputs = TRUE`:
#                                          need_inputs (logical, one per input,
#                                          in the order of `inputs`) says which
#                                          input gradients the runner will use;
#                                          the others may be NULL (not
#                                          computed: in a training step the
#                                          model's inputs need none).
#
# What else generic code needs to know about a class is declared here too,
# never found out from its name (each NULL when the class needs nothing
# special):
#   input_args       character vector: the arguments of a call of the layer
#                    object that are its tensor inputs, in the order of the
#                    protocol's input list (call_layer_symbolically(): e.g.
#                    c("query", "value", "key") records the node's inputs as
#                    a list named by those present). NULL: the first argument
#                    is the input (a tensor or a list of tensors).
#   sequential_call  function(layer, x): how a sequential model applies the
#                    layer to the previous layer's output (e.g. layer(x, x),
#                    self-attention). NULL: layer(x).
#   activity_terms   function(self, node_input_values, node_input_names): the
#                    regularized tensors of a call besides its output (an
#                    activity regularizer applies to each), as a list of
#                    list(value = <array>, gradient = function(g) list(inputs
#                    = <list aligned with the node's inputs, NULL where none>,
#                    weights = <named by weight path>)): `g` is dLoss/dvalue
#                    (model-regularization.R). NULL: the output only.
#   h5_children      function(self): the groups of Keras's ".weights.h5"
#                    layout below the layer's own, in Keras's visiting order:
#                    a list of list(path = <relative group path>, layer = <a
#                    layer, or NULL for a weightless group>, name = <the name
#                    attribute of a weightless group>, alt = <other relative
#                    paths tried when reading>) (keras-weights-h5.R). NULL: the
#                    layer has no sub-layers in that layout.
#   backprop         function(object, args, grad_output): what backprop()
#                    does for a layer object of the class; `args` is the list
#                    of backprop()'s other arguments (those of a call of the
#                    layer), `grad_output` may be missing. NULL: backprop()
#                    refuses the layer.
#   keras_object     function(self, obj): adjusts the layer's serialized
#                    object in a ".keras" archive's config.json (obj: module,
#                    class_name, config, registered_name, build_config, as
#                    Keras's JSON in R lists) where Keras's own differs from
#                    the generic translation (keras-config.R): keys Keras has
#                    that we do not (at their defaults), a build_config Keras
#                    does not write. NULL: the generic translation is Keras's.
#   keras_config     function(cfg, raw, custom_objects): the reverse, reading
#                    a ".keras" config: `cfg` is the generic translation of
#                    Keras's config `raw` (dtype policies, initializer objects
#                    ... converted); returns the config our from_config()
#                    takes. NULL: the generic translation is ours.
#   keras_class_name the class name Keras writes in a ".keras" config when it
#                    differs from ours (Keras exports GroupedQueryAttention
#                    as "GroupQueryAttention"). NULL: the same.
#   save_assets      function(self): the layer's state that is neither config
#                    nor weights, as a named list of plain data (a vocabulary:
#                    vocabulary.R), written by save_model(); it may refuse
#                    (an error) what a model file cannot hold. NULL: none.
#   load_assets      function(self, assets): restores what save_assets gave.
#   backward_skips_inputs
#                    TRUE: backward() takes `need_inputs` (see the protocol
#                    above) and may leave unwanted input gradients NULL.
#   native_tensors   TRUE: in a float32 layer, forward() and backward() take
#                    native tensors (native-tensor.R) for float inputs and
#                    output gradients besides R arrays, and return native
#                    tensors for native inputs.
#' @noRd
register_layer_class <- function(class_name, properties, methods, describe, get_config, from_config,
                                 build = NULL, compute_output_shape = NULL, forward = NULL,
                                 backward = NULL, input_args = NULL, sequential_call = NULL,
                                 activity_terms = NULL, h5_children = NULL, backprop = NULL,
                                 keras_object = NULL, keras_config = NULL, save_assets = NULL,
                                 load_assets = NULL, keras_class_name = NULL,
                                 backward_skips_inputs = FALSE, native_tensors = FALSE) {
  if (!is.null(input_args) && !(is.character(input_args) && length(input_args) && !anyNA(input_args) &&
                                all(nzchar(input_args)) && !anyDuplicated(input_args))) {
    abort_msg(sprintf("`input_args` of layer class \"%s\" must be NULL or distinct argument names.", class_name))
  }
  fields <- list(sequential_call = sequential_call, activity_terms = activity_terms,
                 h5_children = h5_children, backprop = backprop, keras_object = keras_object,
                 keras_config = keras_config, save_assets = save_assets, load_assets = load_assets)
  for (nm in names(fields)) {
    if (!is.null(fields[[nm]]) && !is.function(fields[[nm]])) {
      abort_msg(sprintf("`%s` of layer class \"%s\" must be NULL or a function.", nm, class_name))
    }
  }
  assign(class_name, list(properties = properties, methods = methods, describe = describe,
                          get_config = get_config, from_config = from_config, build = build,
                          compute_output_shape = compute_output_shape, forward = forward,
                          backward = backward, input_args = input_args, sequential_call = sequential_call,
                          activity_terms = activity_terms, h5_children = h5_children, backprop = backprop,
                          keras_object = keras_object, keras_config = keras_config,
                          save_assets = save_assets, load_assets = load_assets,
                          keras_class_name = keras_class_name,
                          backward_skips_inputs = isTRUE(backward_skips_inputs),
                          native_tensors = isTRUE(native_tensors)),
         envir = .layer_classes)
}

# The class definition of a layer: `x` is a class name, or a layer state
# (a custom layer read in a new session registers its class again from the
# definition it carries).
#' @noRd
layer_class_def <- function(x) {
  if (is.environment(x)) {
    state <- x
    x <- state$class_name
    def <- .layer_classes[[x]]
    if (is.null(def) && is.environment(state$custom)) {
      register_custom_layer_class(state$custom)
      def <- .layer_classes[[x]]
    }
  } else {
    def <- .layer_classes[[x]]
  }
  if (is.null(def)) {
    abort_msg(sprintf(paste0("Unknown layer class \"%s\". A custom layer class must be defined with Layer() ",
                             "in this session before a model file that uses it is loaded (its code is not in ",
                             "the file)."), x), class = "multihead_error_unknown_class")
  }
  def
}

# Keras's default names: snake_case of the class, made unique per session
# ("multi_head_attention", "multi_head_attention_1", ...).
#' @noRd
unique_layer_name <- function(prefix) {
  n <- .layer_name_counts[[prefix]]
  n <- if (is.null(n)) 0L else n + 1L
  assign(prefix, n, envir = .layer_name_counts)
  if (n == 0L) prefix else paste0(prefix, "_", n)
}

# Wraps `fun` (whose body refers to `self`) into a layer object.
#' @noRd
new_layer_object <- function(self, fun) {
  env <- new.env(parent = asNamespace("multihead"))
  env$self <- self
  fun <- add_symbolic_guard(fun)  # calls on symbolic tensors record a graph node
  environment(fun) <- env
  structure(fun, class = c(self$class_name, "multihead_layer", "function"))
}

#' @noRd
layer_self <- function(x) {
  # (called for every node of every step: environment() of the classed
  # closure itself, no copy; [[ on an environment does not inherit)
  self <- if (is.function(x) && is.environment(env <- environment(x))) env[["self"]]
  if (is.null(self)) {
    abort_msg(sprintf("This %s object is not a layer made by multihead (it has no layer state).",
                      class(x)[1L]), class = "multihead_error_argument")
  }
  self
}

#' @noRd
is_layer <- function(x) inherits(x, "multihead_layer")

# Properties every layer has.
#' @noRd
common_layer_properties <- list(
  name = function(self) self$name,
  built = function(self) self$built,
  dtype = function(self) self$dtype,
  trainable = function(self) self$trainable,
  weights = function(self) layer_variable_handles(self),
  trainable_weights = function(self) layer_variable_handles(self)[layer_variable_trainable_flags(self)],
  non_trainable_weights = function(self) layer_variable_handles(self)[!layer_variable_trainable_flags(self)],
  losses = function(self) layer_losses(self),
  supports_masking = function(self) TRUE
)

# Methods every layer has.
#' @noRd
common_layer_methods <- list(
  get_weights = function(self) unname(layer_variables(self)),
  set_weights = function(self, weights) layer_set_weights(self, weights),
  count_params = function(self) layer_count_params(self),
  get_config = function(self) layer_get_config(self),
  apply_constraints = function(self) layer_apply_constraints(self)
)

#' @export
`$.multihead_layer` <- function(x, name) {
  self <- layer_self(x)
  def <- layer_class_def(self)
  getter <- def$properties[[name]]
  if (!is.null(getter)) return(getter(self))
  method <- def$methods[[name]]
  if (!is.null(method)) {
    return(function(...) {
      check_method_args(method, name, list(...))
      method(self, ...)
    })
  }
  abort_msg(sprintf("%s layer has no property or method `%s`. Available: %s.",
                    self$class_name, name,
                    paste(sort(c(names(def$properties), names(def$methods))), collapse = ", ")))
}

# Arguments of a method call that R cannot match (unknown names, too many)
# are an error naming them, before the method runs.
#' @noRd
check_method_args <- function(method, name, args) {
  signature <- method
  formals(signature) <- formals(method)[-1L]
  placeholders <- as.call(c(quote(f), lapply(args, function(a) NULL)))
  ok <- tryCatch({
    match.call(signature, placeholders)
    TRUE
  }, error = function(e) FALSE)
  if (ok) return(invisible(NULL))
  accepted <- names(formals(signature))
  nms <- names(args)
  if (is.null(nms)) nms <- rep("", length(args))
  unknown <- nms[nzchar(nms) & is.na(pmatch(nms, accepted))]
  problem <- if (length(unknown)) {
    sprintf("Unknown argument%s in a call of $%s(): %s", if (length(unknown) == 1L) "" else "s", name,
            paste0("`", unknown, "`", collapse = ", "))
  } else {
    sprintf("Too many arguments in a call of $%s() (got %d)", name, length(args))
  }
  abort_msg(sprintf("%s. Its arguments: %s.", problem,
                    if (length(accepted)) paste(accepted, collapse = ", ") else "none"),
            class = "multihead_error_argument")
}

#' @export
`[[.multihead_layer` <- function(x, i, ...) {
  if (!(is.character(i) && length(i) == 1L && !is.na(i) && nzchar(i))) {
    abort_arg("i", "the name of a property or method (a single string)", describe_value(i))
  }
  `$.multihead_layer`(x, i)
}

#' @export
`$<-.multihead_layer` <- function(x, name, value) {
  abort_msg(sprintf(paste0("`%s` of a layer is read-only. Create a new layer to change its ",
                           "configuration, or use set_weights() to change its weights."), name),
            class = "multihead_error_readonly")
}

#' @export
`[[<-.multihead_layer` <- function(x, i, value) `$<-.multihead_layer`(x, i, value)

#' @exportS3Method utils::.DollarNames
.DollarNames.multihead_layer <- function(x, pattern = "") {
  def <- layer_class_def(layer_self(x))
  nms <- sort(c(names(def$properties), names(def$methods)))
  grep(pattern, nms, value = TRUE)
}

#' @export
names.multihead_layer <- function(x) {
  def <- layer_class_def(layer_self(x))
  sort(c(names(def$properties), names(def$methods)))
}

#' @export
print.multihead_layer <- function(x, ...) {
  self <- layer_self(x)
  cat(layer_summary_line(self), "\n", sep = "")
  invisible(x)
}

#' @noRd
layer_summary_line <- function(self) {
  desc <- layer_describe(self)
  params <- if (isTRUE(self$built)) sprintf(", %s params", format(layer_count_params(self), big.mark = ","))
    else ", not built"
  sprintf("<%s \"%s\"%s%s>", self$class_name, self$name,
          if (nzchar(desc)) paste0(": ", desc) else "", params)
}

# One-line description of a layer's configuration, per class.
#' @noRd
layer_describe <- function(self) {
  layer_class_def(self)$describe(self)
}

# ---- weights ---------------------------------------------------------------

# A layer's variables: a named list of arrays, names are Keras paths
# ("<layer>/<sub-layer>/kernel"), in Keras's order. Own variables come first,
# then each sub-layer's.
#' @noRd
layer_variables <- function(self) {
  out <- list()
  for (v in self$variable_names) out[[paste0(self$name, "/", v)]] <- self$variables[[v]]
  for (sub in self$sublayers) {
    sv <- layer_variables(layer_self(sub))
    if (length(sv)) names(sv) <- paste0(self$name, "/", names(sv))
    out <- c(out, sv)
  }
  out
}

# The layer's weights as variables (keras3's `layer$weights`), named by
# weight path, in get_weights() order.
#' @noRd
layer_variable_handles <- function(self) {
  slots <- layer_variable_slots(self)
  out <- lapply(slots, function(s) new_variable(s$self, s$name))
  names(out) <- names(layer_variables(self))
  out
}

# The variable of weight `name` of a layer, or NULL before the layer is built.
#' @noRd
layer_variable_handle <- function(self, name) {
  if (is.null(self$variables[[name]])) NULL else new_variable(self, name)
}

# Variable records (self, name) in weight order, for setting values.
#' @noRd
layer_variable_slots <- function(self) {
  slots <- lapply(self$variable_names, function(v) list(self = self, name = v))
  for (sub in self$sublayers) slots <- c(slots, layer_variable_slots(layer_self(sub)))
  slots
}

# Whether each of a layer's variables (layer_variable_slots() order) is
# trainable: the layer's flag, the variable's own (add_weight(trainable =)),
# and the flags of the layers holding it.
#' @noRd
layer_variable_trainable_flags <- function(self, parent = TRUE) {
  own <- isTRUE(self$trainable) && parent
  flags <- vapply(self$variable_names, function(v) own && !identical(self$variable_trainable[[v]], FALSE),
                  logical(1), USE.NAMES = FALSE)
  for (sub in self$sublayers) flags <- c(flags, layer_variable_trainable_flags(layer_self(sub), own))
  flags
}

#' @noRd
layer_count_params <- function(self) {
  if (!isTRUE(self$built)) {
    abort_msg(sprintf(paste0("Layer \"%s\" is not built yet, so it has no weights to count. ",
                             "Call it on data or call $build() first."), self$name))
  }
  sum(vapply(layer_variables(self), length, numeric(1)))
}

#' @noRd
layer_set_weights <- function(self, weights) {
  if (!isTRUE(self$built)) {
    abort_msg(sprintf("Layer \"%s\" is not built yet: call it on data or call $build() before set_weights().",
                      self$name))
  }
  slots <- layer_variable_slots(self)
  if (!is.list(weights) || is.object(weights)) {
    abort_arg("weights", sprintf("a list of %d arrays", length(slots)), describe_value(weights))
  }
  if (length(weights) != length(slots)) {
    abort_arg("weights", sprintf("a list of %d arrays (the layer \"%s\" has %d weights)",
                                 length(slots), self$name, length(slots)),
              sprintf("a list of length %d", length(weights)))
  }
  # Check everything before changing anything.
  new_values <- vector("list", length(slots))
  for (i in seq_along(slots)) {
    s <- slots[[i]]
    path <- paste0(s$self$name, "/", s$name)
    current <- s$self$variables[[s$name]]
    w <- weights[[i]]
    expected <- if (is.null(dim(current))) length(current) else dim(current)
    got <- if (is.null(dim(w))) length(w) else dim(w)
    if (!is.numeric(w) || !identical(as.integer(got), as.integer(expected))) {
      abort_arg(sprintf("weights[[%d]]", i),
                sprintf("a numeric array of shape (%s) for weight \"%s\"",
                        paste(expected, collapse = ", "), path),
                if (is.numeric(w)) sprintf("shape (%s)", paste(got, collapse = ", ")) else describe_value(w))
    }
    if (!cpp_all_finite(w)) {
      abort_arg(sprintf("weights[[%d]]", i),
                sprintf("finite (weight \"%s\" contains NA, NaN or Inf)", path))
    }
    new_values[[i]] <- store_weight(w, expected, s$self$dtype)
    if (is.null(dim(current))) dim(new_values[[i]]) <- NULL  # a scalar weight stays a plain number
  }
  for (i in seq_along(slots)) {
    s <- slots[[i]]
    s$self$variables[[s$name]] <- new_values[[i]]
  }
  layer_weights_changed(self)
  invisible(NULL)
}

# Weights are stored as double arrays holding values representable in the
# layer's dtype (float32 layers round on the way in), so get_weights() returns
# exactly what the computation uses.
#' @noRd
store_weight <- function(w, dims, dtype) {
  # (w itself when it is a double array of these dims with no other
  # attribute: an optimizer's fresh result is not copied again)
  if (!is.double(w) || !identical(attributes(w), list(dim = as.integer(dims)))) w <- array(as.double(w), dim = dims)
  if (identical(dtype, "float32")) w <- round_float32(w)
  w
}

# x's values in a layer's dtype (doubles; float32 values rounded) with x's
# dims and no other attribute: x itself when it is that already.
#' @noRd
as_dtype_values <- function(x, float64) {
  a <- names(attributes(x))
  if (is.double(x) && (is.null(a) || identical(a, "dim"))) return(if (float64) x else round_float32(x))
  cpp_as_dtype(x, float64)
}

#' @noRd
round_float32 <- function(x) {
  if (is.double(x)) return(cpp_round_float32(x))  # x itself when already float32
  y <- cpp_round_float32(as.double(x))
  attributes(y) <- attributes(x)
  y
}

# Invalidates caches derived from the weights (after set_weights()).
#' @noRd
layer_weights_changed <- function(self) {
  self$weight_cache <- NULL
  for (sub in self$sublayers) layer_weights_changed(layer_self(sub))
}

#' @noRd
layer_apply_constraints <- function(self) {
  for (v in self$variable_names) {
    con <- self$constraints[[v]]
    if (!is.null(con)) {
      self$variables[[v]] <- store_weight(apply_constraint(con, self$variables[[v]]),
                                          dim(self$variables[[v]]), self$dtype)
    }
  }
  for (sub in self$sublayers) layer_apply_constraints(layer_self(sub))
  self$weight_cache <- NULL
  invisible(NULL)
}

# Regularisation losses of the current weights (in weight order), then the
# activity losses of the last call.
#' @noRd
layer_losses <- function(self) {
  out <- list()
  for (v in self$variable_names) {
    reg <- self$regularizers[[v]]
    if (!is.null(reg)) out[[length(out) + 1L]] <- regularizer_loss(reg, self$variables[[v]])
  }
  for (sub in self$sublayers) out <- c(out, layer_losses(layer_self(sub)))
  c(out, self$activity_losses)
}

#' @noRd
layer_get_config <- function(self) {
  cfg <- layer_class_def(self)$get_config(self)
  attr(cfg, "class_name") <- self$class_name
  cfg
}

#' @noRd
config_or_null <- function(x, fun) if (is.null(x)) NULL else fun(x)
