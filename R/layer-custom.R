# Custom layers: keras3's Layer() / new_layer_class().
#
# Layer(classname, initialize, call, build, ...) registers the class in the
# same registry the built-in layers use (register_layer_class()) and returns
# a constructor with keras3's composing first argument `object`. An instance
# is a layer object like every other (an R function with class
# c(<classname>, "multihead_custom_layer", "multihead_layer", "function"));
# its state (`layer_self()`) holds, besides the fields every layer has
# (name, dtype, trainable, built, variables, sublayers, ...):
#   custom      the class definition (an environment: classname, methods,
#               private, active, parent_env, parent class, constructor)
#   object      the layer object itself (what user methods see as `self`)
#   attrs       an environment of the attributes user code assigned
#               (`self$units <- units`); layers assigned there, directly or
#               in lists, are tracked in `sublayers`
#   private     the instance's `private` environment
#   traces      cached traces of call() on symbolic placeholders
#               (layer-custom-trace.R)
# User methods run with an environment (parent: the class's parent_env)
# binding `self` (the layer object), `super` (the parent class's methods, or
# the base Layer's) and `private`.

.builtin_layer_classes <- function() {
  nms <- ls(.layer_classes)
  nms[!vapply(nms, function(n) isTRUE(.layer_classes[[n]]$custom_class), logical(1))]
}

#' Custom layers
#'
#' `Layer()` (also spelled `new_layer_class()`) defines a layer class as
#' keras3 does: its `call()` uses sub-layers, weights made with
#' `self$add_weight()` and `op_*()` functions. The result is a layer
#' constructor with keras3's composing first argument: called without
#' `object` it returns a layer; with a sequential model it adds the layer;
#' with an array or a symbolic tensor it calls the layer on it.
#'
#' Called on arrays, a custom layer runs `call()` at once (eagerly). Called on
#' symbolic tensors (inside [keras_model()], a sequential model or another
#' custom layer), its `call()` runs on symbolic placeholders and is recorded
#' as a sub-graph of layer calls and op nodes, so models containing it train
#' with [fit()][fit.multihead_model] without a hand-written backward pass.
#'
#' Inside the methods, `self` is the layer: `self$add_weight()`,
#' `self$built`, `self$supports_masking`, `self$name`, `self$weights`,
#' `self$add_loss()` and any attribute assigned with `self$x <- value`
#' (layers assigned to attributes, directly or in lists, are tracked: their
#' weights are the layer's). `super$initialize(...)` takes `name`, `dtype`,
#' `trainable`; `super$get_config()` returns the base configuration.
#' `private` is an environment for state that is not tracked.
#'
#' `call(inputs, ...)` may take further arguments: tensors (named or not),
#' flags, `mask = NULL` (filled with the implicit mask of the first input
#' when the caller does not pass it) and `training = NULL` (filled from
#' [fit()][fit.multihead_model] and [predict()][predict.multihead_model]).
#'
#' @param classname The class name (a string, e.g. `"TransformerEncoder"`);
#'   the default layer names are its snake case (`"transformer_encoder"`,
#'   `"transformer_encoder_1"`, ...).
#' @param initialize,call,build,get_config,compute_output_shape,compute_mask
#'   Methods (functions), or `NULL`. `build(input_shape)` gets the shape of
#'   the first input (batch first, `NA` for unknown sizes) before the first
#'   call; `compute_output_shape()`, when given, is used instead of tracing
#'   `call()` to find output shapes; `compute_mask(inputs, mask = NULL)`
#'   gives the output's mask.
#' @param ... Further methods or fields, as in `public`.
#' @param public A named list of further methods (functions) and fields.
#' @param private A named list: the initial contents of each instance's
#'   `private` environment.
#' @param active A named list of functions: computed properties
#'   (`function(value)`: read with `value` missing, assigned otherwise).
#' @param inherit `NULL`, or a constructor made by `Layer()`: the new class
#'   extends it (its methods are the defaults, and `super` reaches them).
#' @param parent_env The environment the methods are evaluated in (their
#'   free variables are looked up there).
#' @returns A layer constructor: `function(object, <initialize's
#'   arguments>)`.
#' @seealso [op_add()] and the other `op_*()` functions, [keras_model()].
#' @export
#' @examples
#' layer_scale <- Layer("Scale",
#'   initialize = function(units, ...) {
#'     super$initialize(...)
#'     self$units <- units
#'   },
#'   build = function(input_shape) {
#'     self$w <- self$add_weight(shape = c(input_shape[length(input_shape)], self$units),
#'                               initializer = "ones", name = "w")
#'   },
#'   call = function(inputs) op_matmul(inputs, self$w)
#' )
#' x <- array(1, c(2, 3))
#' layer_scale(x, units = 2)
Layer <- function(classname, initialize = NULL, call = NULL, build = NULL, get_config = NULL,
                  compute_output_shape = NULL, compute_mask = NULL, ..., public = list(), private = list(),
                  active = list(), inherit = NULL, parent_env = parent.frame()) {
  if (missing(classname)) abort_arg("classname", "supplied: the class name, a string such as \"MyLayer\"")
  classname <- check_string(classname, "classname")
  if (!grepl("^[A-Za-z][A-Za-z0-9_.]*$", classname)) {
    abort_arg("classname", "a name made of letters, digits, `_` and `.`, starting with a letter",
              describe_value(classname))
  }
  if (classname %in% .builtin_layer_classes()) {
    abort_arg("classname", sprintf("not the name of a built-in layer class (\"%s\" is one); choose another name",
                                   classname))
  }
  named <- list(initialize = initialize, call = call, build = build, get_config = get_config,
                compute_output_shape = compute_output_shape, compute_mask = compute_mask)
  dots <- list(...)
  if (length(dots) && (is.null(names(dots)) || any(!nzchar(names(dots))))) {
    abort_arg("...", "named methods or fields (e.g. `my_method = function(x) ...`)", "an unnamed argument")
  }
  if (!is.list(public) || (length(public) && (is.null(names(public)) || any(!nzchar(names(public)))))) {
    abort_arg("public", "a named list of methods and fields", describe_value(public))
  }
  if (!is.list(private) || (length(private) && (is.null(names(private)) || any(!nzchar(names(private)))))) {
    abort_arg("private", "a named list", describe_value(private))
  }
  if (!is.list(active) || (length(active) && (is.null(names(active)) || any(!nzchar(names(active))))) ||
      !all(vapply(active, is.function, logical(1)))) {
    abort_arg("active", "a named list of functions", describe_value(active))
  }
  for (nm in names(named)) {
    f <- named[[nm]]
    if (!is.null(f) && !is.function(f)) abort_arg(nm, "a function or NULL", describe_value(f))
  }
  if (!is.environment(parent_env)) abort_arg("parent_env", "an environment", describe_value(parent_env))
  parent_cls <- NULL
  if (!is.null(inherit)) {
    parent_cls <- attr(inherit, "multihead_layer_class", exact = TRUE)
    if (!is.environment(parent_cls)) {
      abort_arg("inherit", "NULL or a layer constructor made by Layer()", describe_value(inherit))
    }
  }
  members <- c(Filter(Negate(is.null), named), dots, public)
  cls <- new.env(parent = emptyenv())
  cls$classname <- classname
  cls$prefix <- keras_snake_case(classname)
  cls$methods <- Filter(is.function, members)
  cls$fields <- Filter(Negate(is.function), members)
  cls$private <- private
  cls$active <- active
  cls$parent <- parent_cls
  cls$parent_env <- parent_env
  init <- custom_lookup(cls, "initialize")
  ctor <- custom_constructor(cls, init)
  cls$constructor <- ctor
  register_custom_layer_class(cls)
  ctor
}

#' @rdname Layer
#' @export
new_layer_class <- Layer

# A method of a class, looked up through its parents; NULL if none.
#' @noRd
custom_lookup <- function(cls, name) {
  while (!is.null(cls)) {
    m <- cls$methods[[name]]
    if (!is.null(m)) return(m)
    cls <- cls$parent
  }
  NULL
}

# The class (in the chain) that defines method `name`.
#' @noRd
custom_lookup_class <- function(cls, name) {
  while (!is.null(cls)) {
    if (!is.null(cls$methods[[name]])) return(cls)
    cls <- cls$parent
  }
  NULL
}

# The constructor: function(object, <initialize's formals>) collecting the
# supplied arguments (missing ones left to initialize's defaults).
#' @noRd
custom_constructor <- function(cls, init) {
  fmls <- if (is.null(init)) alist(... = ) else formals(init)
  fmls <- fmls[names(fmls) != "object"]
  collect <- lapply(setdiff(names(fmls), "..."), function(a) {
    bquote(if (!missing(.(as.name(a)))) .args[.(a)] <- list(.(as.name(a))))
  })
  body <- as.call(c(as.name("{"),
                    quote(if (!missing(object)) force(object)),
                    quote(.args <- list()),
                    collect,
                    if ("..." %in% names(fmls)) list(quote(.args <- c(.args, list(...)))),
                    list(bquote(.(custom_layer_construct)(.(cls), .args, if (missing(object)) NULL else object)))))
  ctor <- function() NULL
  formals(ctor) <- c(alist(object = ), fmls)
  body(ctor) <- body
  environment(ctor) <- cls$parent_env
  structure(ctor, multihead_layer_class = cls, class = c("multihead_layer_constructor", "function"))
}

#' @export
print.multihead_layer_constructor <- function(x, ...) {
  cls <- attr(x, "multihead_layer_class", exact = TRUE)
  cat(sprintf("<layer class %s> constructor(%s)\n", cls$classname,
              paste(names(formals(x)), collapse = ", ")))
  invisible(x)
}

# Creates an instance: state, layer object, initialize(), default name.
#' @noRd
custom_layer_construct <- function(cls, args, object) {
  if (trace_active()) return(without_trace(custom_layer_construct(cls, args, object)))
  state <- new_custom_state(cls)
  layer <- new_custom_layer_object(state)
  init <- custom_lookup(cls, "initialize")
  if (is.null(init)) {
    do.call(custom_base_initialize, c(list(state), args))
  } else {
    if (length(args) && (is.null(names(args)))) names(args) <- rep("", length(args))
    do.call(custom_bind(state, custom_lookup_class(cls, "initialize"), init), args)
  }
  if (is.null(state$name)) state$name <- unique_layer_name(cls$prefix)
  state$init_args <- plain_data_args(args)
  compose_layer(object, layer)
}

#' @noRd
new_custom_state <- function(cls) {
  state <- new.env(parent = emptyenv())
  state$class_name <- cls$classname
  state$custom <- cls
  state$name <- NULL
  state$dtype <- default_layer_dtype()
  state$trainable <- TRUE
  state$built <- FALSE
  state$build_shapes <- NULL
  state$config <- list()
  state$sublayers <- list()
  state$sublayer_attrs <- character()
  state$variables <- list()
  state$variable_names <- character()
  state$variable_trainable <- list()
  state$variable_dtypes <- list()
  state$regularizers <- list()
  state$constraints <- list()
  state$activity_losses <- list()
  state$weight_cache <- NULL
  state$supports_masking <- !is.null(custom_lookup(cls, "compute_mask"))
  state$attrs <- new.env(parent = emptyenv())
  for (nm in names(cls$fields)) assign(nm, cls$fields[[nm]], envir = state$attrs)
  state$private <- list2env(custom_private_init(cls), parent = emptyenv())
  state$traces <- list()
  state$uid <- next_graph_id()
  state
}

# The private fields of the class chain (the subclass's win).
#' @noRd
custom_private_init <- function(cls) {
  chain <- list()
  while (!is.null(cls)) {
    chain <- c(list(cls$private), chain)
    cls <- cls$parent
  }
  out <- list()
  for (p in chain) out[names(p)] <- p
  out
}

# The dtype of a new layer when none is given.
#' @noRd
default_layer_dtype <- function() current_default_dtype()

#' @noRd
new_custom_layer_object <- function(state) {
  env <- new.env(parent = asNamespace("multihead"))
  env$self <- state
  fun <- function(...) custom_layer_call(self, list(...))
  environment(fun) <- env
  layer <- structure(fun, class = c(state$class_name, "multihead_custom_layer", "multihead_layer", "function"))
  state$object <- layer
  layer
}

# `fn` (a method of class `cls` in the chain) with self/super/private bound.
#' @noRd
custom_bind <- function(state, cls, fn) {
  env <- new.env(parent = cls$parent_env)
  env$self <- state$object
  env$super <- custom_super(state, cls$parent)
  env$private <- state$private
  environment(fn) <- env
  fn
}

# `super` for methods of a class whose parent is `parent_cls` (NULL: the
# base Layer).
#' @noRd
custom_super <- function(state, parent_cls) {
  structure(list(state = state, cls = parent_cls), class = "multihead_layer_super")
}

#' @export
`$.multihead_layer_super` <- function(x, name) {
  state <- .subset2(x, "state")
  cls <- .subset2(x, "cls")
  if (!is.null(cls)) {
    owner <- custom_lookup_class(cls, name)
    if (!is.null(owner)) return(custom_bind(state, owner, owner$methods[[name]]))
  }
  base <- custom_base_methods[[name]]
  if (is.null(base)) {
    abort_msg(sprintf("The base Layer class has no method `%s` (it has: %s).", name,
                      paste(names(custom_base_methods), collapse = ", ")))
  }
  function(...) base(state, ...)
}

# ---- the base Layer's methods (what `super` reaches) ---------------------------

#' @noRd
custom_base_initialize <- function(state, name = NULL, dtype = NULL, trainable = TRUE, autocast = TRUE,
                                   activity_regularizer = NULL, input_shape = NULL, input_dim = NULL, ...) {
  if (...length()) {
    extra <- names(list(...))
    shown <- if (is.null(extra)) "an unnamed argument" else paste0("`", extra[nzchar(extra)], "`", collapse = ", ")
    abort_msg(sprintf(paste0("Unknown argument%s in super$initialize() of layer class %s: %s. The base Layer ",
                             "takes name, dtype, trainable."), if (...length() > 1L) "s" else "",
                      state$class_name, shown), class = "multihead_error_argument")
  }
  if (!is.null(activity_regularizer)) {
    abort_arg("activity_regularizer", "NULL for a custom layer (add the penalty with self$add_loss())",
              describe_value(activity_regularizer))
  }
  state$name <- check_string(name, "name", null_ok = TRUE)
  if (is.null(state$name)) state$name <- unique_layer_name(state$custom$prefix)
  state$dtype <- if (is.null(dtype)) default_layer_dtype() else check_dtype(dtype)
  state$trainable <- check_flag(trainable, "trainable")
  invisible(NULL)
}

#' @noRd
custom_base_methods <- list(
  initialize = custom_base_initialize,
  get_config = function(state) custom_base_config(state),
  build = function(state, ...) {
    state$built <- TRUE
    invisible(NULL)
  },
  call = function(state, ...) {
    abort_msg(sprintf("Layer class %s has no call() method.", state$class_name),
              class = "multihead_error_unsupported")
  },
  compute_mask = function(state, inputs, mask = NULL) if (isTRUE(state$supports_masking)) mask else NULL,
  compute_output_shape = function(state, ...) custom_traced_output_shape(state, list(...)),
  add_weight = function(state, ...) custom_add_weight(state, ...)
)

# The base configuration: name, trainable, dtype, and the constructor's
# arguments when they are plain data (as Keras's automatic config).
#' @noRd
custom_base_config <- function(state) {
  cfg <- list(name = state$name, trainable = state$trainable, dtype = state$dtype)
  args <- state$init_args
  for (nm in setdiff(names(args), names(cfg))) cfg[nm] <- list(args[[nm]])
  cfg
}

# The supplied constructor arguments that are plain data (named, atomic or
# lists of atomics), for the default get_config().
#' @noRd
plain_data_args <- function(args) {
  nms <- names(args)
  if (is.null(nms)) return(list())
  plain <- function(x) is.null(x) || (is.atomic(x) && !is.object(x)) ||
    (is.list(x) && !is.object(x) && all(vapply(x, plain, logical(1))))
  out <- list()
  for (i in seq_along(args)) {
    if (nzchar(nms[i]) && plain(args[[i]])) out[nms[i]] <- list(args[[i]])
  }
  out
}

# ---- add_weight --------------------------------------------------------------

# Keras's add_weight(): creates a weight owned by the layer, returns its
# variable. Trainable weights come before non-trainable ones in the
# layer's weights, as in Keras.
#' @noRd
custom_add_weight <- function(state, shape = NULL, initializer = NULL, dtype = NULL, trainable = TRUE,
                              autocast = TRUE, regularizer = NULL, constraint = NULL, aggregation = "none",
                              overwrite_with_gradient = FALSE, name = NULL) {
  shape <- if (is.null(shape)) integer() else check_weight_shape(shape)
  trainable <- check_flag(trainable, "trainable")
  dtype <- if (is.null(dtype)) state$dtype else check_variable_dtype(dtype)
  name <- check_string(name, "name", null_ok = TRUE)
  if (is.null(name)) {
    k <- length(state$variable_names)
    name <- if (k == 0L) "variable" else paste0("variable_", k)
  }
  if (name %in% state$variable_names) {
    abort_arg("name", sprintf("a name not yet used by a weight of layer \"%s\"", state$name), sprintf("\"%s\"", name))
  }
  if (is.null(initializer)) initializer <- if (is_float_dtype(dtype)) "glorot_uniform" else "zeros"
  reg <- as_regularizer(regularizer, "regularizer")
  con <- as_constraint(constraint, "constraint")
  check_size(shape, "shape", sprintf("weight \"%s/%s\"", state$name, name))
  values <- if (is.function(initializer) && !inherits(initializer, "multihead_initializer")) {
    v <- initializer(shape = shape, dtype = dtype)
    if (is_variable(v)) v <- variable_value(v)
    if (!is.numeric(v) || length(v) != prod(shape)) {
      abort_arg("initializer", sprintf("a function returning %d numbers (shape %s)", prod(shape), fmt_shape(shape)),
                describe_value(v))
    }
    v
  } else {
    init <- as_initializer(initializer, "initializer")
    initializer_sample(init, if (length(shape)) shape else 1L, NULL, NULL, salt = length(state$variable_names))
  }
  stored <- if (is_float_dtype(dtype)) store_weight(values, if (length(shape)) shape else 1L, dtype)
    else array(as.double(values), if (length(shape)) shape else 1L)
  if (!length(shape)) dim(stored) <- NULL
  state$variables[[name]] <- stored
  state$regularizers[name] <- list(reg)
  state$constraints[name] <- list(con)
  state$variable_dtypes[[name]] <- dtype
  state$variable_trainable[[name]] <- trainable
  nms <- state$variable_names
  if (trainable) {
    flags <- vapply(nms, function(n) !identical(state$variable_trainable[[n]], FALSE), logical(1))
    pos <- if (any(!flags)) min(which(!flags)) - 1L else length(nms)
    state$variable_names <- append(nms, name, after = pos)
  } else {
    state$variable_names <- c(nms, name)
  }
  state$weight_cache <- NULL
  new_variable(state, name)
}

#' @noRd
check_weight_shape <- function(shape) {
  if (is.list(shape) && !is.object(shape)) {
    if (any(vapply(shape, is.null, logical(1)))) {
      abort_arg("shape", "fully known (a weight's size cannot be NULL or NA)", describe_value(shape))
    }
    shape <- unlist(shape)
  }
  ok <- is.numeric(shape) && is.null(dim(shape)) && !anyNA(shape) && all(shape == round(shape)) &&
    all(shape >= 0) && all(shape <= .Machine$integer.max)
  if (!ok) abort_arg("shape", "a vector of whole numbers >= 0 (the weight's shape)", describe_value(shape))
  as.integer(shape)
}

#' @noRd
check_variable_dtype <- function(dtype) {
  ok <- c("float32", "float64", "int32", "int64", "bool")
  if (!(is.character(dtype) && length(dtype) == 1L && !is.na(dtype) && dtype %in% ok)) {
    abort_arg("dtype", paste0("one of ", paste0("\"", ok, "\"", collapse = ", ")), describe_value(dtype))
  }
  dtype
}

# ---- members of an instance ------------------------------------------------------

# Properties of every custom layer (read with `self$x` / `layer$x`).
#' @noRd
custom_layer_properties <- function() replace_entries(common_layer_properties, list(
  weights = function(self) custom_variables(self, NA),
  variables = function(self) custom_variables(self, NA),
  trainable_weights = function(self) custom_variables(self, TRUE),
  trainable_variables = function(self) custom_variables(self, TRUE),
  non_trainable_weights = function(self) custom_variables(self, FALSE),
  non_trainable_variables = function(self) custom_variables(self, FALSE),
  supports_masking = function(self) isTRUE(self$supports_masking),
  layers = function(self) self$sublayers,
  compute_dtype = function(self) self$dtype,
  variable_dtype = function(self) self$dtype,
  input_spec = function(self) NULL
))

# Methods of every custom layer.
#' @noRd
custom_layer_methods <- function() replace_entries(common_layer_methods, list(
  add_weight = function(self, ...) custom_add_weight(self, ...),
  add_variable = function(self, ...) custom_add_weight(self, ...),
  add_loss = function(self, loss) custom_add_loss(self, loss),
  build = function(self, input_shape) custom_build_from_shapes(self, list(input_shape)),
  compute_output_shape = function(self, ...) custom_output_shape_method(self, list(...)),
  get_config = function(self) layer_get_config(self)
))

# The layer's variables (all, trainable or non-trainable): variable objects
# in get_weights() order, named by weight path.
#' @noRd
custom_variables <- function(self, trainable = NA) {
  v <- layer_variable_handles(self)
  if (is.na(trainable)) v else v[layer_variable_trainable_flags(self) == trainable]
}

#' @noRd
custom_add_loss <- function(state, loss) {
  if (is_symbolic(loss)) {
    frame <- trace_frame()
    if (is.null(frame)) {
      abort_arg("loss", "a number, or a symbolic tensor computed inside the layer's call()", describe_value(loss))
    }
    frame$losses <- c(frame$losses, list(loss))
    return(invisible(NULL))
  }
  if (is_variable(loss)) loss <- variable_value(loss)
  if (!is.numeric(loss) || anyNA(loss)) abort_arg("loss", "a number", describe_value(loss))
  state$activity_losses <- c(state$activity_losses, list(sum(loss)))
  invisible(NULL)
}

# Fields `self$x <- value` sets on the layer state rather than as attributes.
.custom_state_fields <- c("built", "supports_masking", "trainable", "name", "dtype")

#' @export
`$.multihead_custom_layer` <- function(x, name) {
  state <- layer_self(x)
  attrs <- state$attrs
  if (exists(name, envir = attrs, inherits = FALSE)) return(get(name, envir = attrs, inherits = FALSE))
  cls <- state$custom
  act <- custom_lookup_active(cls, name)
  if (!is.null(act)) return(custom_bind(state, act$cls, act$fn)())
  owner <- custom_lookup_class(cls, name)
  if (!is.null(owner)) return(custom_bind(state, owner, owner$methods[[name]]))
  def <- layer_class_def(state)
  getter <- def$properties[[name]]
  if (!is.null(getter)) return(getter(state))
  method <- def$methods[[name]]
  if (!is.null(method)) return(function(...) method(state, ...))
  abort_msg(sprintf("Layer \"%s\" (%s) has no attribute, property or method `%s`.", state$name,
                    state$class_name, name), class = "multihead_error_argument")
}

#' @export
`[[.multihead_custom_layer` <- function(x, i, ...) {
  if (!(is.character(i) && length(i) == 1L && !is.na(i) && nzchar(i))) {
    abort_arg("i", "the name of an attribute, property or method (a single string)", describe_value(i))
  }
  `$.multihead_custom_layer`(x, i)
}

#' @noRd
custom_lookup_active <- function(cls, name) {
  while (!is.null(cls)) {
    fn <- cls$active[[name]]
    if (!is.null(fn)) return(list(cls = cls, fn = fn))
    cls <- cls$parent
  }
  NULL
}

#' @export
`$<-.multihead_custom_layer` <- function(x, name, value) {
  state <- layer_self(x)
  act <- custom_lookup_active(state$custom, name)
  if (!is.null(act)) {
    custom_bind(state, act$cls, act$fn)(value)
    return(x)
  }
  if (name %in% .custom_state_fields) {
    switch(name,
      built = state$built <- check_flag(value, "built"),
      supports_masking = state$supports_masking <- check_flag(value, "supports_masking"),
      trainable = state$trainable <- check_flag(value, "trainable"),
      name = state$name <- check_string(value, "name"),
      dtype = state$dtype <- check_dtype(value))
    return(x)
  }
  def <- layer_class_def(state)
  if (!is.null(def$properties[[name]]) || !is.null(def$methods[[name]])) {
    abort_msg(sprintf("`%s` of a layer is read-only.", name), class = "multihead_error_readonly")
  }
  custom_set_attr(state, name, value)
  x
}

#' @export
`[[<-.multihead_custom_layer` <- function(x, i, value) `$<-.multihead_custom_layer`(x, i, value)

# Assigns an attribute and tracks the layers it holds.
#' @noRd
custom_set_attr <- function(state, name, value) {
  assign(name, value, envir = state$attrs)
  if (length(state$traces)) custom_forget_traces(state)  # call() may read the attribute
  track <- function(v, path) {
    if (is_layer(v)) {
      s <- layer_self(v)
      if (identical(s, state)) {
        abort_msg(sprintf("Layer \"%s\" cannot hold itself (attribute `%s`).", state$name, path),
                  class = "multihead_error_argument")
      }
      if (!any(vapply(state$sublayers, function(l) identical(layer_self(l), s), logical(1)))) {
        state$sublayers <- c(state$sublayers, list(v))
        state$sublayer_attrs <- c(state$sublayer_attrs, path)
      }
    } else if (is.list(v) && !is.object(v)) {
      nms <- names(v)
      for (i in seq_along(v)) {
        track(v[[i]], if (!is.null(nms) && nzchar(nms[i])) paste0(path, "$", nms[i]) else sprintf("%s[[%d]]", path, i))
      }
    }
  }
  track(value, name)
  invisible(NULL)
}

#' @export
names.multihead_custom_layer <- function(x) {
  state <- layer_self(x)
  def <- layer_class_def(state)
  cls <- state$custom
  user <- character()
  while (!is.null(cls)) {
    user <- c(user, names(cls$methods), names(cls$active))
    cls <- cls$parent
  }
  sort(unique(c(ls(state$attrs), user, names(def$properties), names(def$methods))))
}

#' @exportS3Method utils::.DollarNames
.DollarNames.multihead_custom_layer <- function(x, pattern = "") grep(pattern, names(x), value = TRUE)

# ---- calling --------------------------------------------------------------------

# A call of the layer object: matched to call()'s formals; recorded when an
# argument holds a symbolic tensor, else run eagerly.
#' @noRd
custom_layer_call <- function(state, args) {
  matched <- custom_match_call_args(state, args)
  if (trace_active() || any(vapply(matched, contains_symbolic_deep, logical(1)))) {
    return(custom_record_call(state, matched))
  }
  custom_eager_call(state, matched)
}

# TRUE if x is, or (in lists, at any depth) holds, a symbolic tensor.
#' @noRd
contains_symbolic_deep <- function(x) {
  if (is_symbolic(x)) return(TRUE)
  if (is.list(x) && !is.object(x)) return(any(vapply(x, contains_symbolic_deep, logical(1))))
  FALSE
}

#' @noRd
custom_call_method <- function(state) {
  cls <- custom_lookup_class(state$custom, "call")
  if (is.null(cls)) {
    abort_msg(sprintf("Layer class %s has no call() method: give Layer() a `call` function.", state$class_name),
              class = "multihead_error_unsupported")
  }
  list(cls = cls, fn = cls$methods$call)
}

# The call's arguments named by call()'s formals (R's matching rules),
# without evaluating anything; unknown arguments are an error naming them.
#' @noRd
custom_match_call_args <- function(state, args) {
  fn <- custom_call_method(state)$fn
  n <- length(args)
  if (n == 0L) return(list())
  nms <- names(args)
  if (is.null(nms)) nms <- rep("", n)
  placeholders <- lapply(seq_len(n), function(i) as.name(paste0(".arg", i)))
  names(placeholders) <- nms
  cl <- as.call(c(list(as.name("call")), placeholders))
  m <- tryCatch(match.call(fn, cl), error = function(e) {
    accepted <- names(formals(fn))
    unknown <- nms[nzchar(nms) & is.na(pmatch(nms, accepted))]
    problem <- if (length(unknown)) sprintf("unknown argument%s %s", if (length(unknown) > 1L) "s" else "",
                                            paste0("`", unknown, "`", collapse = ", "))
      else sprintf("too many arguments (%d)", n)
    abort_msg(sprintf("Cannot call layer \"%s\" (%s): %s. Its call() takes: %s.", state$name, state$class_name,
                      problem, paste(accepted, collapse = ", ")), class = "multihead_error_argument")
  })
  parts <- as.list(m)[-1L]
  idx <- as.integer(sub("^\\.arg", "", vapply(parts, as.character, character(1))))
  out <- args[idx]
  names(out) <- if (is.null(names(parts))) rep("", length(parts)) else names(parts)
  out
}

# A call on arrays. call() is traced (afresh: its side effects happen on
# every call) and the trace run, as when the layer runs inside a model: the
# result is the same as a symbolic call's, and keras-style code (indexing
# with `newaxis`, op_*() on constants) works the same way. Arrays with dims (and vectors of length > 1)
# are the call's tensors; numbers, flags and NULL stay constants.
#' @noRd
custom_eager_call <- function(state, matched) {
  custom_maybe_build(state, matched)
  fl <- custom_flatten_args(matched, is_value_tensor)
  dtypes <- vapply(fl$tensors, function(x) eager_tensor_dtype(x, state$dtype), character(1))
  training <- isTRUE(matched$training)
  fw <- custom_forward(state, fl$tensors, list(custom_call = fl$struct, input_dtypes = dtypes), training, NULL,
                       fresh = TRUE)
  fw$output
}

# What counts as a tensor among the arrays of an eager call.
#' @noRd
is_value_tensor <- function(x) {
  (is.numeric(x) || is.logical(x)) && !is.object(x) && (!is.null(dim(x)) || length(x) > 1L)
}

#' @noRd
eager_tensor_dtype <- function(x, float_dtype) {
  if (is.logical(x)) "bool" else if (is.integer(x)) "int32" else float_dtype
}

# The shape of a call argument for build(): a symbolic tensor's shape (NA
# for unknown sizes), an array's dims, a list of those for a list.
#' @noRd
arg_shape <- function(x) {
  if (is_symbolic(x)) return(x$shape)
  if (is_variable(x)) return(value_shape(variable_value(x)))
  if (is.list(x) && !is.object(x)) return(lapply(x, arg_shape))
  if (is.numeric(x) || is.logical(x)) return(value_shape(x))
  NULL
}

# Builds the layer before its first call, as Keras's _maybe_build():
# build(input_shape) gets the first argument's shape; a build whose
# arguments are named <arg>_shape gets those arguments' shapes.
#' @noRd
custom_maybe_build <- function(state, matched) {
  if (isTRUE(state$built)) return(invisible())
  without_trace(custom_build(state, matched))
}

#' @noRd
custom_build <- function(state, matched) {
  custom_build_from_shapes(state, lapply(matched, arg_shape))
}

# Calls build() with `shapes` (a list named like the call's arguments, the
# first being the main input's shape), then marks the layer built.
#' @noRd
custom_build_from_shapes <- function(state, shapes) {
  owner <- custom_lookup_class(state$custom, "build")
  if (!is.null(owner)) {
    fn <- owner$methods$build
    fmls <- setdiff(names(formals(fn)), "...")
    args <- list()
    if (length(fmls) && length(shapes)) {
      by_name <- sub("_shape$", "", fmls)
      if (length(fmls) > 1L && !is.null(names(shapes)) && all(by_name %in% names(shapes))) {
        for (i in seq_along(fmls)) args[fmls[i]] <- list(shapes[[by_name[i]]])
      } else {
        args[fmls[1L]] <- list(shapes[[1L]])
      }
    }
    do.call(custom_bind(state, owner, fn), args)
  }
  if (length(shapes)) state$build_shapes <- shapes[[1L]]
  state$built <- TRUE
  invisible(NULL)
}

# ---- registration ------------------------------------------------------------

# Registers a custom class in the layer-class registry with the generic
# custom-layer protocol (layer-custom-trace.R).
#' @noRd
register_custom_layer_class <- function(cls) {
  register_layer_class(
    cls$classname,
    properties = custom_layer_properties(),
    methods = custom_layer_methods(),
    describe = function(self) describe_built(self, ""),
    get_config = custom_get_config,
    from_config = function(config) {
      args <- config
      do.call(cls$constructor, c(list(NULL), args), quote = TRUE)
    },
    build = function(self, input_shape) custom_build_from_shapes(self, list(input_shape)),
    compute_output_shape = custom_protocol_output_shape,
    forward = custom_forward,
    backward = custom_backward,
    h5_children = custom_h5_children,    # keras-weights-h5.R
    backprop = function(object, args, grad_output) {
      if (missing(grad_output)) abort_arg("grad_output", "supplied: an array of the output's shape")
      custom_backprop(object, args, grad_output)
    })
  def <- .layer_classes[[cls$classname]]
  def$custom_class <- TRUE
  assign(cls$classname, def, envir = .layer_classes)
}

#' @noRd
custom_get_config <- function(self) {
  owner <- custom_lookup_class(self$custom, "get_config")
  cfg <- if (is.null(owner)) custom_base_config(self) else custom_bind(self, owner, owner$methods$get_config)()
  if (!is.list(cfg)) {
    abort_msg(sprintf("get_config() of layer class %s must return a named list; it returned %s.",
                      self$class_name, describe_value(cfg)))
  }
  cfg
}
