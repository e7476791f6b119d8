# Keras 3's model configuration ("config.json" of a ".keras" archive) in
# both directions: our models, layers and configs <-> Keras's serialized
# objects.
#
# Keras's format (learnt from keras/src/saving/serialization_lib.py and
# keras/src/models/functional.py, not copied), as JSON read into R lists:
# - every object is {module, class_name, config, registered_name}; layers
#   add build_config (their build shapes) and, inside a functional model,
#   name and inbound_nodes; the model adds compile_config.
# - dtypes are DTypePolicy objects ({"name": "float32"}); initializers,
#   regularizers and constraints are objects of modules keras.initializers,
#   keras.regularizers and keras.constraints; tuples are
#   {"class_name": "__tuple__", "config": {"value": [...]}}.
# - a functional model's config: name, trainable, layers (every operation
#   of the graph, InputLayers and op nodes such as NotEqual included, each
#   with its inbound_nodes: one {args, kwargs} per call, tensors written as
#   {"class_name": "__keras_tensor__", "config": {shape, dtype,
#   keras_history: [operation name, node index, output index]}}),
#   input_layers and output_layers ([name, node, index] triples; one triple
#   alone for a single tensor, a list of them for a list).
# - a sequential model's config: name, trainable, dtype, layers (its
#   InputLayer first) and build_input_shape.
#
# Reading never evaluates anything: class names are looked up in the
# layer-class registry (built-in classes, and custom classes given through
# `custom_objects` or register_keras_serializable()), op class names in the
# op registry; every other value is plain data checked by the constructors.

# ---- JSON values -----------------------------------------------------------------------

# JSON's {} (an empty named list): jsonlite writes an unnamed empty list as [].
#' @noRd
json_object <- function(x = list()) {
  if (!length(x)) return(structure(list(), names = character()))
  x
}

# A JSON array from an R vector (jsonlite would write a length-1 vector as
# a scalar); NA becomes null (a symbolic shape's unknown sizes).
#' @noRd
json_array <- function(x) {
  lapply(as.list(x), function(v) if (length(v) == 1L && is.na(v)) NULL else v)
}

#' @noRd
json_shape <- function(shape) if (is.null(shape)) NULL else json_array(as.integer(shape))

# A shape read from JSON: a list of whole numbers and nulls -> integer
# vector with NA.
#' @noRd
shape_from_json <- function(x, where) {
  if (is.null(x)) return(NULL)
  ok <- is.list(x) && all(vapply(x, function(v) is.null(v) || (is.numeric(v) && length(v) == 1L &&
                                                                   is.finite(v) && v >= 0 && v == round(v) &&
                                                                   v < .Machine$integer.max), logical(1)))
  if (!ok) keras_file_error(sprintf("%s is not a shape (a list of sizes and nulls)", where))
  vapply(x, function(v) if (is.null(v)) NA_integer_ else as.integer(v), integer(1))
}

# A condition for a model file whose content is not what Keras writes.
#' @noRd
keras_file_error <- function(what) {
  abort_msg(sprintf("Not a valid Keras model configuration: %s.", what), class = "multihead_error_file")
}

#' @noRd
is_json_object <- function(x) is.list(x) && !is.object(x) && (length(x) == 0L || !is.null(names(x)))

#' @noRd
json_string <- function(x) is.character(x) && length(x) == 1L && !is.na(x)

# ---- values inside layer configs ----------------------------------------------------------

# Keras 3.15's VarianceScaling initializers also have the arguments
# input_axes and output_axes (NULL: Keras's usual fan rule, which is ours).
.keras_variance_scaling <- c("VarianceScaling", "GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal",
                             "LecunUniform", "LecunNormal")

.keras_spec_modules <- c(initializer = "keras.initializers", regularizer = "keras.regularizers",
                         constraint = "keras.constraints")

# Our config value -> Keras's: dtype strings become DTypePolicy objects,
# spec records (initializers, regularizers, constraints:
# list(class_name, config)) Keras objects of their module; vectors of
# length > 1 and shapes become arrays.
#' @noRd
keras_value_out <- function(value, key) {
  if (is.null(value)) return(NULL)
  if (identical(key, "dtype") && json_string(value)) return(keras_dtype_policy(value))
  kind <- keras_spec_kind(key)
  if (!is.null(kind) && is_config_list(value)) {
    cfg <- if (is.null(value$config)) list() else value$config
    if (identical(kind, "initializer") && value$class_name %in% .keras_variance_scaling) {
      for (k in c("input_axes", "output_axes")) if (!(k %in% names(cfg))) cfg[k] <- list(NULL)
    }
    return(list(module = .keras_spec_modules[[kind]], class_name = value$class_name,
                config = json_object(lapply(cfg, keras_plain_out)), registered_name = NULL))
  }
  keras_plain_out(value)
}

#' @noRd
keras_plain_out <- function(value) {
  if (is.null(value)) return(NULL)
  if (is.list(value) && !is.object(value)) {
    if (!is.null(names(value))) return(json_object(lapply(value, keras_plain_out)))
    return(lapply(value, keras_plain_out))
  }
  if (is.atomic(value) && (length(value) != 1L || !is.null(dim(value)))) return(json_array(value))
  if (is.atomic(value) && length(value) == 1L && is.na(value)) return(NULL)
  value
}

#' @noRd
keras_dtype_policy <- function(name) {
  list(module = "keras", class_name = "DTypePolicy", config = list(name = name), registered_name = NULL)
}

# "kernel_initializer" -> "initializer", ...; NULL for other keys.
#' @noRd
keras_spec_kind <- function(key) {
  for (k in names(.keras_spec_modules)) if (endsWith(key, paste0("_", k)) || identical(key, k)) return(k)
  NULL
}

# Keras's config value -> ours: DTypePolicy objects become their name,
# initializer / regularizer / constraint objects list(class_name, config)
# (entries that are null dropped: Keras's optional arguments left at their
# defaults, which our constructors may not have), tuples lists.
#' @noRd
keras_value_in <- function(value, where) {
  if (!is.list(value) || is.object(value)) return(value)
  cn <- value$class_name
  if (json_string(cn) && is_json_object(value)) {
    if (cn %in% c("DTypePolicy", "FloatDTypePolicy")) {
      name <- value$config$name
      if (!json_string(name)) keras_file_error(sprintf("%s has a dtype policy without a name", where))
      return(name)
    }
    if (identical(cn, "__tuple__")) return(lapply(value$config$value, keras_value_in, where = where))
    module <- value$module
    if (json_string(module) && module %in% .keras_spec_modules) {
      cfg <- value$config
      if (!is.null(cfg) && !is_json_object(cfg)) keras_file_error(sprintf("%s has a config that is not an object", where))
      cfg <- Filter(Negate(is.null), lapply(cfg, keras_value_in, where = where))
      return(list(class_name = cn, config = cfg))
    }
  }
  out <- lapply(value, keras_value_in, where = where)
  names(out) <- names(value)
  out
}

# A config list read from JSON whose arrays of numbers become vectors (as
# our get_config() returns them); objects stay lists.
#' @noRd
simplify_config_value <- function(x) {
  if (!is.list(x) || is.object(x)) return(x)
  if (is.null(names(x)) && length(x) && all(vapply(x, function(v) is.null(v) ||
                                                     (is.atomic(v) && length(v) == 1L), logical(1)))) {
    types <- unique(vapply(x, function(v) if (is.null(v)) "null" else typeof(v), character(1)))
    if (!("character" %in% types && length(setdiff(types, c("character", "null"))) > 0L)) {
      return(unlist(lapply(x, function(v) if (is.null(v)) NA else v)))
    }
  }
  if (is.null(names(x))) return(lapply(x, simplify_config_value))
  out <- lapply(x, simplify_config_value)
  names(out) <- names(x)
  out
}

# Config keys of our layers that Keras's do not have, left out of a Keras
# config at these (default) values.
.multihead_only_keys <- list(flash_attention = NULL)

# ---- layers: ours -> Keras ------------------------------------------------------------------

# The serialized object of a layer (without name / inbound_nodes).
#' @noRd
keras_layer_object <- function(s, node = NULL) {
  if (is_model_self(s)) return(keras_model_object(s))
  def <- layer_class_def(s)
  cfg <- layer_get_config(s)
  attributes(cfg) <- list(names = names(cfg))
  for (k in intersect(names(cfg), names(.multihead_only_keys))) {
    if (identical(cfg[[k]], .multihead_only_keys[[k]])) cfg[[k]] <- NULL
  }
  out_cfg <- json_object(stats::setNames(lapply(names(cfg), function(k) keras_value_out(cfg[[k]], k)), names(cfg)))
  custom <- is.environment(s$custom)
  obj <- list(module = if (custom) NULL else "keras.layers",
              class_name = if (is.null(def$keras_class_name)) s$class_name else def$keras_class_name, config = out_cfg,
              registered_name = if (custom) keras_registered_name(s) else NULL,
              build_config = keras_build_config(s, node))
  if (!is.null(def$keras_object)) obj <- def$keras_object(s, obj)
  obj
}

# A class's `keras_object` field (register_layer_class()) for the usual
# differences from Keras: `add` config keys Keras has (at these values, when
# we have no value), `drop_null` keys of ours that Keras does not write
# (left out when NULL), and `build_config = FALSE` for classes without a
# build() in Keras (which write none).
#' @noRd
keras_object_adjust <- function(add = list(), drop_null = character(), build_config = TRUE) {
  force(add)
  force(drop_null)
  force(build_config)
  function(self, obj) {
    for (k in names(add)) if (!(k %in% names(obj$config))) obj$config[k] <- list(add[[k]])
    for (k in drop_null) if (k %in% names(obj$config) && is.null(obj$config[[k]])) obj$config[[k]] <- NULL
    if (!build_config) obj$build_config <- NULL
    obj
  }
}

# keras_object / keras_config fields for a config key holding axes: ours
# are keras3's (1-based from the first axis, negative from the end), Keras's
# 0-based; negative axes are the same in both.
#' @noRd
keras_axis_key_out <- function(key) {
  function(self, obj) {
    a <- obj$config[[key]]
    if (is.list(a)) obj$config[[key]] <- lapply(a, function(v) if (is.numeric(v) && v > 0) v - 1L else v)
    else if (is.numeric(a) && length(a) == 1L && a > 0) obj$config[[key]] <- a - 1L
    obj
  }
}

#' @noRd
keras_axis_key_in <- function(key) {
  function(cfg, raw, custom_objects) {
    a <- cfg[[key]]
    if (is.numeric(a)) cfg[[key]] <- ifelse(a >= 0, a + 1L, a)
    cfg
  }
}

# Keras's build_config: the shapes the layer was built for
# (Layer._build_shapes_dict), those of its first call (`node`) in a
# functional model: {"input_shape": shape} for one input (a list of shapes
# for a list), {"shapes_dict": {"query_shape": ..., ...}} for a class whose
# inputs are named arguments (those given).
#' @noRd
keras_build_config <- function(s, node = NULL) {
  if (!isTRUE(s$built)) return(NULL)
  bs <- if (is.environment(s$custom) && !is.null(node)) {
    first <- custom_unflatten(node$args$custom_call, node$inputs)[[1L]]
    if (is_symbolic(first)) first$shape else lapply(first, function(t) t$shape)
  } else if (!is.null(node)) {
    shapes <- lapply(node$inputs, function(t) t$shape)
    if (isTRUE(node$single)) shapes[[1L]] else shapes
  } else s$build_shapes
  if (is.null(bs)) return(NULL)
  if (is.list(bs) && !is.null(names(bs))) {
    bs <- Filter(Negate(is.null), bs)
    return(list(shapes_dict = stats::setNames(lapply(bs, json_shape), paste0(names(bs), "_shape"))))
  }
  list(input_shape = if (is.list(bs)) lapply(bs, json_shape) else json_shape(bs))
}

# The registered name of a custom layer's class ("package>Name"), or its
# class name when it was not registered.
#' @noRd
keras_registered_name <- function(s) {
  for (nm in ls(.keras_serializables, all.names = TRUE)) {
    cls <- .keras_serializables[[nm]]
    if (identical(attr(cls, "multihead_layer_class", exact = TRUE), s$custom)) return(nm)
  }
  s$class_name
}

# ---- layers: Keras -> ours ------------------------------------------------------------------

# Keras config keys that our layers do not have and that are harmless at
# the value Keras writes by default.
.keras_default_only <- list(quantization_config = NULL, lora_rank = NULL, lora_alpha = NULL,
                            activity_regularizer = NULL, ragged = FALSE, sparse = FALSE, optional = FALSE,
                            rms_scaling = FALSE, flash_attention = NULL)

# A layer from its serialized object `obj` (a list read from JSON).
#' @noRd
keras_layer_from_object <- function(obj, custom_objects, where) {
  cn <- obj$class_name
  if (!json_string(cn)) keras_file_error(sprintf("%s has no class_name", where))
  if (cn %in% c("Functional", "Sequential", "Model")) return(keras_model_from_object(obj, custom_objects, where))
  raw_cfg <- obj$config
  if (!is_json_object(raw_cfg)) keras_file_error(sprintf("%s (%s) has no config object", where, cn))
  ctor <- keras_custom_class(obj, custom_objects)
  cfg <- keras_value_in(raw_cfg, where)
  cfg <- lapply(cfg, simplify_config_value)
  if (!is.null(ctor)) {
    layer <- tryCatch(do.call(ctor, c(list(NULL), cfg), quote = TRUE), multihead_error = function(e) {
      abort_msg(sprintf("Could not create custom layer %s (%s) from its configuration in the file: %s", where,
                        cn, conditionMessage(e)), class = "multihead_error_file")
    })
    return(layer)
  }
  def <- keras_class_def(cn)
  if (is.null(def) || identical(cn, "InputLayer") || !identical(if (is.null(obj$module)) "keras.layers" else obj$module, "keras.layers")) {
    keras_unknown_class(cn, obj$registered_name, where)
  }
  if (!is.null(def$keras_config)) cfg <- def$keras_config(cfg, raw_cfg, custom_objects)
  cn <- def$class_name
  attr(cfg, "class_name") <- cn
  layer <- tryCatch(def$from_config(cfg), multihead_error = function(e) {
    abort_msg(sprintf("Could not create layer %s (%s) from its configuration in the file: %s", where, cn,
                      conditionMessage(e)), class = "multihead_error_file")
  })
  ours <- names(layer_get_config(layer_self(layer)))
  for (k in setdiff(names(cfg), ours)) {
    if (k %in% names(.keras_default_only) && identical(cfg[[k]], .keras_default_only[[k]])) next
    abort_msg(sprintf(paste0("Layer %s (%s) in the file sets `%s` = %s, which multihead's %s layer does ",
                             "not support."), where, cn, k, describe_value(cfg[[k]]), cn),
              class = "multihead_error_unsupported")
  }
  layer
}

# The constructor of a custom class named by a serialized object: from
# `custom_objects` (by registered name or class name), else from
# register_keras_serializable(); NULL for Keras's own classes.
#' @noRd
keras_custom_class <- function(obj, custom_objects) {
  reg <- obj$registered_name
  cn <- obj$class_name
  for (nm in c(if (json_string(reg)) reg, cn)) {
    if (!is.null(custom_objects[[nm]])) return(custom_objects[[nm]])
  }
  if (json_string(reg) && !is.null(.keras_serializables[[reg]])) return(.keras_serializables[[reg]])
  if (is.null(obj$module) || (json_string(reg) && grepl(">", reg, fixed = TRUE))) {
    keras_unknown_class(cn, reg, NULL)
  }
  NULL
}

# The registry entry of the class Keras names `cn` (our class of that name,
# or the class declaring it as its keras_class_name), with its own name in
# `class_name`; NULL when there is none.
#' @noRd
keras_class_def <- function(cn) {
  def <- .layer_classes[[cn]]
  name <- cn
  if (is.null(def)) {
    for (nm in ls(.layer_classes)) {
      d <- .layer_classes[[nm]]
      if (identical(d$keras_class_name, cn)) {
        def <- d
        name <- nm
        break
      }
    }
  }
  if (is.null(def)) return(NULL)
  def$class_name <- name
  def
}

#' @noRd
keras_unknown_class <- function(class_name, registered_name, where) {
  known <- sort(setdiff(ls(.layer_classes), c("Functional", "Sequential", "InputLayer")))
  custom <- ls(.keras_serializables)
  abort_msg(sprintf(paste0("Unknown layer class \"%s\"%s%s. Give custom layers with load_model(custom_objects = ",
                           "list(%s = <class>)) or register them with register_keras_serializable(). Known ",
                           "classes: %s%s."),
                    class_name, if (json_string(registered_name) && !identical(registered_name, class_name))
                      sprintf(" (registered as \"%s\")", registered_name) else "",
                    if (is.null(where)) "" else sprintf(" at %s", where), class_name,
                    paste(known, collapse = ", "),
                    if (length(custom)) sprintf("; registered: %s", paste(custom, collapse = ", ")) else ""),
            class = "multihead_error_unknown_class")
}
