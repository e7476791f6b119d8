# Functional models: keras_model() over a recorded graph, and what every
# model (functional or sequential) shares: the model object, calling it on
# arrays or symbolic tensors, its graph protocol (so models nest inside
# other models), weights, configuration and get_layer().
#
# A model is a layer object (see layer.R) of class
# c("Functional" | "Sequential", "multihead_model", "multihead_layer",
# "function") whose `self` holds the graph (model-graph.R), the layers in
# order, and how its inputs and outputs are structured: one tensor
# ("single"), an unnamed list ("list") or a named list ("named").

#' Functional models
#'
#' `keras_model()` creates a model from symbolic inputs (from
#' [keras_input()]) and the outputs obtained by calling layers on them. The
#' model is itself a layer: call it on arrays to compute its outputs, on
#' symbolic tensors to use it inside another model, or pass it to
#' [predict()][predict.multihead_model], [backprop()], [summary()],
#' [get_weights()], [set_weights()], [count_params()] and [get_config()].
#' A layer called several times in the graph shares its weights between
#' the calls.
#'
#' @param inputs A symbolic tensor, or an unnamed or named list of them. A
#'   model with named inputs is called with a named list of arrays.
#' @param outputs A symbolic tensor computed from `inputs`, or an unnamed or
#'   named list of them.
#' @param name `NULL` (a unique name such as `"functional"`) or a string.
#' @param ... `trainable = FALSE` marks the model's weights non-trainable.
#' @returns A model: an R function `model(inputs, training = NULL)`, with
#'   properties `$layers`, `$inputs`, `$outputs`, `$input`, `$output`,
#'   `$output_shape`, `$weights`, `$name`, `$compiled`, `$optimizer`,
#'   `$loss` (see [compile()][compile.multihead_model]) and methods
#'   `$get_layer()`, `$get_weights()`, `$set_weights()`, `$count_params()`,
#'   `$summary()`. Train it with [fit()][fit.multihead_model].
#' @seealso [keras_model_sequential()], [get_layer()], [backprop()].
#' @export
#' @examples
#' x <- keras_input(shape = c(6, 8))
#' mha <- layer_multi_head_attention(num_heads = 2, key_dim = 4)
#' y <- mha(x, x) + x
#' model <- keras_model(x, y)
#' model
#' out <- model(array(rnorm(2 * 6 * 8), c(2, 6, 8)))
#' dim(out)
keras_model <- function(inputs, outputs, name = NULL, ...) {
  if (missing(inputs)) abort_arg("inputs", "supplied: a symbolic tensor from keras_input(), or a list of them")
  if (missing(outputs)) abort_arg("outputs", "supplied: a symbolic tensor computed from `inputs`, or a list of them")
  extra <- check_layer_dots(list(...), "trainable", "keras_model()")
  name <- check_string(name, "name", null_ok = TRUE)
  trainable <- if (is.null(extra$trainable)) TRUE else check_flag(extra$trainable, "trainable")
  ins <- model_structure(inputs, "inputs")
  outs <- model_structure(outputs, "outputs")
  ids <- vapply(ins$tensors, function(t) t$id, character(1))
  if (anyDuplicated(ids)) {
    abort_arg("inputs", "distinct tensors", sprintf("%s twice", format(ins$tensors[[anyDuplicated(ids)]])))
  }
  if (is.null(name)) name <- unique_layer_name("functional")
  graph <- build_graph(ins$tensors, outs$tensors, name)
  self <- new_model_self("Functional", name, trainable)
  model_set_graph(self, graph, ins, outs)
  new_model_object(self)
}

# A model's inputs or outputs: list(tensors = <list>, form = "single" |
# "list" | "named", names = <names or NULL>). An unnamed list of length 1 is
# a single tensor, as in keras3.
#' @noRd
model_structure <- function(x, arg) {
  if (is_symbolic(x)) return(list(tensors = list(x), form = "single", names = NULL))
  if (!is.list(x) || is.object(x) || length(x) == 0L) {
    abort_arg(arg, "a symbolic tensor or a (named) list of symbolic tensors", describe_value(x))
  }
  for (i in seq_along(x)) {
    if (!is_symbolic(x[[i]])) {
      abort_arg(sprintf("%s[[%d]]", arg, i), "a symbolic tensor (from keras_input() or a layer called on one)",
                describe_value(x[[i]]))
    }
  }
  nms <- names(x)
  if (is.null(nms)) {
    if (length(x) == 1L) return(list(tensors = x, form = "single", names = NULL))
    return(list(tensors = x, form = "list", names = NULL))
  }
  if (any(!nzchar(nms)) || anyDuplicated(nms)) {
    abort_arg(arg, "a list whose elements are all named, with distinct names, or all unnamed",
              paste0("names ", paste0("\"", nms, "\"", collapse = ", ")))
  }
  list(tensors = unname(x), form = "named", names = nms)
}

#' @noRd
new_model_self <- function(class_name, name, trainable = TRUE) {
  self <- new.env(parent = emptyenv())
  self$class_name <- class_name
  self$name <- name
  self$trainable <- trainable
  self$dtype <- "float32"
  self$built <- FALSE
  self$layers <- list()
  self$sublayers <- list()
  self$variables <- list()
  self$variable_names <- character()
  self$activity_losses <- list()
  self
}

#' @noRd
new_model_object <- function(self) {
  model <- new_layer_object(self, function(inputs, training = NULL) model_call(self, inputs, training))
  extra <- if (identical(self$class_name, "Sequential")) "multihead_sequential"
  class(model) <- c(self$class_name, extra, "multihead_model", "multihead_layer", "function")
  model
}

# Installs a graph in a model; the layers are collected in graph order
# (input layers first) and must have distinct names.
#' @noRd
model_set_graph <- function(self, graph, ins, outs, include_input_layers = TRUE) {
  layers <- list()
  add <- function(l) {
    s <- layer_self(l)
    for (m in layers) {
      ms <- layer_self(m)
      if (identical(ms, s)) return(invisible())
      if (identical(ms$name, s$name)) {
        abort_msg(sprintf(paste0("All layer names in a model must be unique; model \"%s\" has two layers ",
                                 "named \"%s\". Give one of them another `name`."), self$name, s$name),
                  class = "multihead_error_argument")
      }
    }
    layers[[length(layers) + 1L]] <<- l
  }
  if (include_input_layers) {
    for (t in graph$inputs) if (identical(t$node$kind, "input")) add(t$node$callee)
  }
  for (node in graph$nodes) if (identical(node$kind, "layer")) add(node$callee)
  if (any(vapply(layers, function(l) identical(layer_self(l), self), logical(1)))) {
    abort_msg(sprintf("Model \"%s\" cannot contain itself.", self$name), class = "multihead_error_argument")
  }
  self$graph <- graph
  self$input_form <- ins$form
  self$input_names <- ins$names
  self$output_form <- outs$form
  self$output_names <- outs$names
  self$output_dtypes <- lapply(outs$tensors, function(t) t$dtype)
  self$layers <- layers
  self$sublayers <- layers
  self$built <- TRUE
  self$weight_cache <- NULL
  invisible(self)
}

# ---- calling a model -----------------------------------------------------------

#' @noRd
model_call <- function(self, inputs, training = NULL) {
  if (missing(inputs)) abort_arg("inputs", "supplied: the model's input array(s)")
  training <- isTRUE(check_flag(training, "training", null_ok = TRUE))
  model_ensure_built(self, inputs)
  values <- model_input_values(self, inputs)
  run <- run_graph_forward(self$graph, values, NULL, training, keep = FALSE)
  model_output_structure(self, run$outputs)
}

# Sequential models without an input shape are built by their first call.
#' @noRd
model_ensure_built <- function(self, inputs) {
  if (isTRUE(self$built)) return(invisible())
  x <- if (is.list(inputs) && !is.object(inputs) && length(inputs) == 1L) inputs[[1L]] else inputs
  if (!(is.numeric(x) || is.logical(x) || is.character(x)) || is.object(x)) {
    abort_arg("inputs", sprintf("an array (model \"%s\" is built by its first call)", self$name),
              describe_value(x))
  }
  d <- if (is.null(dim(x))) length(x) else dim(x)
  dtype <- if (is.character(x)) "string" else if (is.integer(x)) "int32" else if (is.logical(x)) "bool"
    else "float32"
  sequential_build(self, c(NA_integer_, as.integer(d[-1L])), dtype)
}

# Arrays for the model's inputs, aligned with self$graph$inputs, checked
# against the inputs' shapes and dtypes.
#' @noRd
model_input_values <- function(self, x, check = TRUE) {
  tensors <- self$graph$inputs
  n <- length(tensors)
  form <- self$input_form
  if (identical(form, "single")) {
    if (is.list(x) && !is.object(x) && length(x) == 1L) x <- x[[1L]]
    vals <- list(x)
    args <- "inputs"
  } else {
    if (!is.list(x) || is.object(x)) {
      expected <- if (identical(form, "named")) {
        sprintf("a named list of %d arrays (%s)", n, paste(self$input_names, collapse = ", "))
      } else sprintf("a list of %d arrays", n)
      abort_arg("inputs", sprintf("%s for model \"%s\"", expected, self$name), describe_value(x))
    }
    nms <- names(x)
    if (identical(form, "named") && !is.null(nms)) {
      missing_nms <- setdiff(self$input_names, nms)
      extra <- setdiff(nms, self$input_names)
      if (length(missing_nms) || length(extra)) {
        abort_arg("inputs", sprintf("a named list with the inputs of model \"%s\": %s", self$name,
                                    paste(self$input_names, collapse = ", ")),
                  sprintf("names %s", paste(nms, collapse = ", ")))
      }
      vals <- x[self$input_names]
      args <- paste0("inputs$", self$input_names)
    } else {
      if (length(x) != n) {
        abort_arg("inputs", sprintf("a list of %d arrays, one per input of model \"%s\"", n, self$name),
                  sprintf("a list of length %d", length(x)))
      }
      vals <- unname(x)
      args <- sprintf("inputs[[%d]]", seq_len(n))
    }
  }
  if (!check) return(unname(vals))
  lapply(seq_len(n), function(i) model_check_input(self, vals[[i]], tensors[[i]], args[i]))
}

#' @noRd
model_check_input <- function(self, value, tensor, arg) {
  spec <- tensor$shape
  expected <- sprintf("an array of shape %s for input \"%s\" of model \"%s\"", fmt_shape(spec), tensor$name,
                      self$name)
  if (is.null(value)) {
    callee <- tensor$node$callee
    if (identical(tensor$node$kind, "input") && isTRUE(layer_self(callee)$optional)) return(NULL)
    abort_arg(arg, expected, "NULL")
  }
  if (identical(tensor$dtype, "string")) return(model_check_string_input(self, value, tensor, arg))
  if (!(is.numeric(value) || is.logical(value)) || is.object(value)) {
    abort_arg(arg, expected, describe_value(value))
  }
  d <- dim(value)
  if (is.null(d)) d <- length(value)
  if (length(d) != length(spec) || any(!is.na(spec) & spec != d)) {
    abort_arg(arg, expected, sprintf("an array of shape %s", fmt_shape(d)))
  }
  dtype <- tensor$dtype
  if (dtype %in% c("float32", "float64")) {
    if (!is.numeric(value)) abort_arg(arg, sprintf("numeric (input \"%s\" has dtype %s)", tensor$name, dtype),
                                      describe_value(value))
    if (!cpp_all_finite(value, mh_threads())) abort_arg(arg, "finite: it contains NA, NaN or Inf")
    storage.mode(value) <- "double"
  } else if (dtype %in% c("int32", "int64")) {
    if (!is.numeric(value) || anyNA(value) || any(value != round(value))) {
      abort_arg(arg, sprintf("whole numbers (input \"%s\" has dtype %s)", tensor$name, dtype),
                "other values")
    }
  } else {
    if (is.numeric(value) && (anyNA(value) || any(value != 0 & value != 1))) {
      abort_arg(arg, sprintf("logical or 0/1 values (input \"%s\" has dtype bool)", tensor$name), "other values")
    }
    storage.mode(value) <- "logical"
  }
  dim(value) <- d
  value
}

#' @noRd
model_output_structure <- function(self, outs) {
  switch(self$output_form,
         single = outs[[1L]],
         list = unname(outs),
         named = stats::setNames(outs, self$output_names))
}

# ---- graph protocol of models (models inside models) --------------------------

#' @noRd
model_input_list <- function(self, x, what) {
  if (identical(self$input_form, "single")) return(list(x))
  if (!is.list(x) || length(x) != length(self$graph$inputs)) {
    abort_arg(what, sprintf("a list of %d, one per input of model \"%s\"", length(self$graph$inputs),
                            self$name), describe_value(x))
  }
  if (identical(self$input_form, "named") && !is.null(names(x))) {
    if (!setequal(names(x), self$input_names)) {
      abort_arg(what, sprintf("a list named %s (the inputs of model \"%s\")",
                              paste(self$input_names, collapse = ", "), self$name),
                sprintf("names %s", paste(names(x), collapse = ", ")))
    }
    return(unname(x[self$input_names]))
  }
  unname(x)
}

#' @noRd
model_graph_build <- function(self, input_shape) {
  if (!identical(self$class_name, "Sequential")) return(invisible())
  sequential_build(self, input_shape, "float32")
}

#' @noRd
model_graph_output_shape <- function(self, input_shape, args = list()) {
  model_reject_args(self, args)
  shapes <- model_input_list(self, input_shape, "input_shape")
  tensors <- self$graph$inputs
  for (i in seq_along(tensors)) {
    spec <- tensors[[i]]$shape
    s <- shapes[[i]]
    if (length(s) != length(spec) || any(!is.na(spec) & !is.na(s) & spec != s)) {
      abort_arg(if (length(tensors) == 1L) "inputs" else sprintf("inputs[[%d]]", i),
                sprintf("a tensor of shape %s for input \"%s\" of model \"%s\"", fmt_shape(spec),
                        tensors[[i]]$name, self$name),
                sprintf("shape %s", fmt_shape(s)))
    }
  }
  out <- graph_output_shapes(self$graph, shapes)
  model_output_structure(self, out)
}

#' @noRd
model_reject_args <- function(self, args) {
  if (length(args)) {
    abort_msg(sprintf("Unknown argument%s in a call of model \"%s\": %s. Accepted: inputs, training.",
                      if (length(args) > 1L) "s" else "", self$name,
                      paste0("`", names(args), "`", collapse = ", ")),
              class = "multihead_error_argument")
  }
}

#' @noRd
model_graph_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  model_reject_args(self, args)
  if (!isTRUE(self$built)) model_ensure_built(self, inputs)
  vals <- model_input_list(self, inputs, "inputs")
  m <- if (is.null(masks)) NULL else model_input_list(self, masks, "masks")
  run <- run_graph_forward(self$graph, vals, m, training, keep = TRUE)
  mask <- if (identical(self$output_form, "single")) run$output_masks[[1L]] else run$output_masks
  list(output = model_output_structure(self, run$outputs), cache = run, mask = mask)
}

# need_inputs: the outer runner's flags per node input (the model's inputs in
# order unless they are named: then all are computed).
#' @noRd
model_graph_backward <- function(self, cache, grad_output, need_inputs = NULL) {
  n_out <- length(self$graph$outputs)
  g <- if (identical(self$output_form, "single")) list(grad_output) else
    if (identical(self$output_form, "named") && !is.null(names(grad_output))) grad_output[self$output_names]
    else grad_output
  if (length(g) != n_out) {
    abort_arg("grad_output", sprintf("a list of %d arrays, one per output of model \"%s\"", n_out, self$name),
              describe_value(grad_output))
  }
  input_grads <- if (is.null(need_inputs) || identical(self$input_form, "named") ||
                     length(need_inputs) != length(self$graph$inputs)) TRUE else unname(need_inputs)
  res <- run_graph_backward(self$graph, cache, g, activity = isTRUE(cache$activity), input_grads = input_grads)
  inputs <- switch(self$input_form, single = res$inputs[[1L]], list = res$inputs,
                   named = stats::setNames(res$inputs, self$input_names))
  list(inputs = inputs, weights = model_weight_grads(self, res$weights))
}

# ---- weights ---------------------------------------------------------------------

# The model's variables, named by layer path, in get_weights() order.
#' @noRd
model_variables <- function(self) {
  out <- list()
  for (l in self$layers) out <- c(out, any_layer_variables(layer_self(l)))
  out
}

#' @noRd
any_layer_variables <- function(s) {
  if (!is.null(s$graph) || identical(s$class_name, "Sequential")) model_variables(s) else layer_variables(s)
}

# Weight gradients (the accumulator of run_graph_backward(), keyed by
# var_key()) -> one list named by weight path in get_weights() order; zeros
# for weights that received no gradient.
#' @noRd
model_weight_grads <- function(self, wgrads) {
  slots <- layer_variable_slots(self)
  vars <- model_variables(self)
  out <- vector("list", length(slots))
  for (i in seq_along(slots)) {
    s <- slots[[i]]
    out[[i]] <- as_weight_grad(wgrads[[var_key(s$self, s$name)]], vars[[i]])
  }
  names(out) <- names(vars)
  out
}

# A weight's gradient `g` from the backward pass (NULL: none, zeros) as a
# double array of the weight `v`'s dims.
#' @noRd
as_weight_grad <- function(g, v) {
  d <- if (is.null(dim(v))) length(v) else dim(v)
  if (is.null(g)) array(0, d)
  else if (is.double(g) && identical(attributes(g), list(dim = as.integer(d)))) g
  else array(as.double(g), d)
}

# get_weights() of a model: every layer's weights in order, filtered by each
# layer's trainable flag when `trainable` is TRUE or FALSE.
#' @noRd
model_get_weights <- function(self, trainable = NA) {
  out <- list()
  for (l in self$layers) {
    s <- layer_self(l)
    if (!is.null(s$graph) || identical(s$class_name, "Sequential")) {
      out <- c(out, model_get_weights(s, trainable))
    } else if (isTRUE(s$built) && (is.na(trainable) || trainable == (isTRUE(s$trainable) &&
                                                                       isTRUE(self$trainable)))) {
      out <- c(out, unname(layer_variables(s)))
    }
  }
  out
}

# ---- layers ----------------------------------------------------------------------

#' Find a layer of a model
#'
#' @param object A model.
#' @param name The layer's name.
#' @param index The layer's position in `object$layers` (1-based), instead
#'   of `name`.
#' @returns The layer object (changing its weights changes the model's).
#' @export
#' @examples
#' x <- keras_input(shape = c(4, 8))
#' y <- layer_multi_head_attention(x, num_heads = 2, key_dim = 4, name = "attn")
#' model <- keras_model(x, y)
#' get_layer(model, "attn")
get_layer <- function(object, name = NULL, index = NULL) {
  if (!inherits(object, "multihead_model")) abort_arg("object", "a model", describe_value(object))
  model_get_layer(layer_self(object), name, index)
}

#' @noRd
model_get_layer <- function(self, name = NULL, index = NULL) {
  layers <- self$layers
  if (is.null(name) == is.null(index)) {
    abort_arg("name", "given, or `index` given instead (exactly one of them)")
  }
  if (!is.null(index)) {
    index <- check_whole(index, "index")
    if (index > length(layers)) {
      abort_arg("index", sprintf("at most %d (model \"%s\" has %d layers)", length(layers), self$name,
                                 length(layers)), index)
    }
    return(layers[[index]])
  }
  name <- check_string(name, "name")
  for (l in layers) if (identical(layer_self(l)$name, name)) return(l)
  abort_arg("name", sprintf("the name of a layer of model \"%s\" (%s)", self$name,
                            paste0("\"", vapply(layers, function(l) layer_self(l)$name, character(1)), "\"",
                                   collapse = ", ")),
            sprintf("\"%s\"", name))
}

# ---- properties, config, registration ------------------------------------------

#' @noRd
model_tensor_structure <- function(self, tensors, form, nms) {
  switch(form, single = tensors[[1L]], list = tensors, named = stats::setNames(tensors, nms))
}

#' @noRd
model_check_built <- function(self, what) {
  if (!isTRUE(self$built)) {
    abort_msg(sprintf("Model \"%s\" has no %s yet: give it an input shape or call it on data first.",
                      self$name, what))
  }
}

#' @noRd
model_properties <- function() replace_entries(common_layer_properties, list(
  layers = function(self) self$layers,
  inputs = function(self) { model_check_built(self, "inputs"); self$graph$inputs },
  outputs = function(self) { model_check_built(self, "outputs"); self$graph$outputs },
  input = function(self) {
    model_check_built(self, "input")
    model_tensor_structure(self, self$graph$inputs, self$input_form, self$input_names)
  },
  output = function(self) {
    model_check_built(self, "output")
    model_tensor_structure(self, self$graph$outputs, self$output_form, self$output_names)
  },
  input_shape = function(self) {
    model_check_built(self, "input shape")
    model_tensor_structure(self, lapply(self$graph$inputs, function(t) t$shape), self$input_form,
                           self$input_names)
  },
  output_shape = function(self) {
    model_check_built(self, "output shape")
    model_tensor_structure(self, lapply(self$graph$outputs, function(t) t$shape), self$output_form,
                           self$output_names)
  },
  weights = function(self) model_variable_handles(self),
  compiled = function(self) !is.null(self$compiled),
  optimizer = function(self) self$compiled$optimizer,
  loss = function(self) {
    losses <- self$compiled$losses
    if (length(losses) == 1L) losses[[1L]] else losses
  },
  trainable_weights = function(self) {
    v <- model_variable_handles(self)
    v[vapply(model_variable_trainable(self), isTRUE, logical(1))]
  },
  non_trainable_weights = function(self) {
    v <- model_variable_handles(self)
    v[!vapply(model_variable_trainable(self), isTRUE, logical(1))]
  }
))

# The model's weights as variables, named by weight path (get_weights() order).
#' @noRd
model_variable_handles <- function(self) {
  out <- lapply(layer_variable_slots(self), function(s) new_variable(s$self, s$name))
  names(out) <- names(model_variables(self))
  out
}

# `base` with the entries of `new` added or replaced.
#' @noRd
replace_entries <- function(base, new) {
  base[names(new)] <- new
  base
}

#' @noRd
model_variable_trainable <- function(self) {
  out <- list()
  for (l in self$layers) {
    s <- layer_self(l)
    if (!is.null(s$graph) || identical(s$class_name, "Sequential")) {
      out <- c(out, lapply(model_variable_trainable(s), function(x) x && isTRUE(self$trainable)))
    } else {
      out <- c(out, as.list(layer_variable_trainable_flags(s, isTRUE(self$trainable))))
    }
  }
  out
}

#' @noRd
model_methods <- function() replace_entries(common_layer_methods, list(
  get_layer = function(self, name = NULL, index = NULL) model_get_layer(self, name, index),
  get_weights = function(self) model_get_weights(self),
  summary = function(self, ...) model_summary(self, ...),
  build = function(self, input_shape) {
    if (isTRUE(self$built)) return(invisible(NULL))
    sequential_build(self, normalize_shape(input_shape, "input_shape"))
    invisible(NULL)
  },
  add = function(self, layer) {
    if (!identical(self$class_name, "Sequential")) {
      abort_msg(sprintf("Model \"%s\" is functional: only sequential models have $add().", self$name),
                class = "multihead_error_unsupported")
    }
    sequential_add_self(self, layer)
  }
))

# A tensor's place in a config: list(input = i) for the model's i-th input,
# list(node = k, index = j) for output j of the k-th node.
#' @noRd
functional_get_config <- function(self) {
  graph <- self$graph
  input_ids <- vapply(graph$inputs, function(t) t$id, character(1))
  node_pos <- stats::setNames(seq_along(graph$nodes), vapply(graph$nodes, function(n) n$id, character(1)))
  ref <- function(t) {
    i <- match(t$id, input_ids)
    if (!is.na(i)) return(list(input = i))
    list(node = unname(node_pos[[t$node$id]]), index = t$index)
  }
  inputs <- lapply(graph$inputs, function(t) {
    if (!identical(t$node$kind, "input")) {
      abort_msg(sprintf(paste0("get_config() of model \"%s\" needs inputs created by keras_input(); ",
                               "input %s is computed by a layer."), self$name, format(t)))
    }
    list(layer = layer_self(t$node$callee)$name)
  })
  nodes <- lapply(graph$nodes, function(n) {
    refs <- lapply(n$inputs, ref)
    if (identical(n$kind, "op")) {
      return(list(kind = "op", op = n$args$op, name = n$callee$name, inputs = refs,
                  constants = n$args$constants, symbolic = n$args$symbolic,
                  params = random_params_to_config(n$args$params),
                  operand_names = n$args$operand_names))
    }
    if (identical(n$kind, "variable")) {
      owner <- variable_state(n$callee)
      if (!any(vapply(self$layers, function(l) identical(layer_self(l), owner), logical(1)))) {
        abort_msg(sprintf(paste0("get_config() of model \"%s\": variable %s is used in the graph but its ",
                                 "layer is not part of the model."), self$name, n$callee$path))
      }
      return(list(kind = "variable", layer = owner$name, variable = variable_name(n$callee)))
    }
    list(kind = "layer", layer = layer_self(n$callee)$name, inputs = refs, single = n$single,
         args = n$args, arg_tensors = lapply(n$arg_tensors, ref), training = n$training)
  })
  list(name = self$name, trainable = self$trainable,
       layers = lapply(self$layers, function(l) {
         s <- layer_self(l)
         list(name = s$name, class_name = s$class_name, config = layer_get_config(s))
       }),
       inputs = inputs, input_form = self$input_form, input_names = self$input_names,
       nodes = nodes, outputs = lapply(graph$outputs, ref), output_form = self$output_form,
       output_names = self$output_names)
}

#' @noRd
functional_from_config <- function(config) {
  layers <- list()
  for (lc in config$layers) layers[[lc$name]] <- from_config(lc$config)
  inputs <- lapply(config$inputs, function(r) layer_self(layers[[r$layer]])$output)
  outputs_of <- list()
  resolve <- function(r) {
    if (!is.null(r$input)) return(inputs[[r$input]])
    o <- outputs_of[[r$node]]
    if (is_symbolic(o)) o else o[[r$index]]
  }
  for (k in seq_along(config$nodes)) {
    nc <- config$nodes[[k]]
    ins <- lapply(nc$inputs, resolve)
    if (identical(nc$kind, "op")) {
      ops <- nc$constants
      ops[nc$symbolic] <- ins
      names(ops) <- if (is.null(nc$operand_names)) paste0("x", seq_along(ops)) else nc$operand_names
      out <- op_record(node_op_def(list(args = list(op = nc$op))), ops,
                       if (is.null(nc$params)) list() else random_params_from_config(nc$params))
    } else if (identical(nc$kind, "variable")) {
      out <- variable_tensor(new_variable(layer_self(layers[[nc$layer]]), nc$variable))
    } else {
      args <- nc$args
      for (nm in names(nc$arg_tensors)) args[[nm]] <- resolve(nc$arg_tensors[[nm]])
      if (!is.null(nc$training)) args$training <- nc$training
      out <- record_layer_call(layers[[nc$layer]], if (isTRUE(nc$single)) ins[[1L]] else ins, args)
    }
    outputs_of[[k]] <- out
  }
  outs <- lapply(config$outputs, resolve)
  shape_back <- function(x, form, nms) switch(form, single = x[[1L]], list = x, named = stats::setNames(x, nms))
  keras_model(shape_back(inputs, config$input_form, config$input_names),
              shape_back(outs, config$output_form, config$output_names),
              name = config$name, trainable = config$trainable)
}

#' @noRd
model_describe <- function(self) {
  if (!isTRUE(self$built)) return(sprintf("%d layers, not built", length(self$layers)))
  sprintf("%d layers, inputs %s -> outputs %s", length(self$layers),
          paste(vapply(self$graph$inputs, function(t) fmt_shape(t$shape), character(1)), collapse = ", "),
          paste(vapply(self$graph$outputs, function(t) fmt_shape(t$shape), character(1)), collapse = ", "))
}

#' @noRd
register_models <- function() {
  register_layer_class(
    "Functional", properties = model_properties(), methods = model_methods(), describe = model_describe,
    get_config = functional_get_config, from_config = functional_from_config,
    build = model_graph_build, compute_output_shape = model_graph_output_shape,
    forward = model_graph_forward, backward = model_graph_backward, backward_skips_inputs = TRUE)
  register_layer_class(
    "Sequential", properties = model_properties(), methods = model_methods(), describe = model_describe,
    get_config = sequential_get_config, from_config = sequential_from_config,
    build = model_graph_build, compute_output_shape = model_graph_output_shape,
    forward = model_graph_forward, backward = model_graph_backward, backward_skips_inputs = TRUE)
}
