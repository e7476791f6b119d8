# Models in Keras's config.json: a functional model's graph as Keras writes
# it (operations with their inbound nodes, input_layers, output_layers) and
# a sequential model's layer list; both directions. The format is described
# at the top of keras-config.R.

# ---- ours -> Keras --------------------------------------------------------------------------

# The serialized object of a model (top level, or nested in another).
#' @noRd
keras_model_object <- function(self) {
  if (identical(self$class_name, "Sequential")) {
    # Keras's Sequential calls each layer on one tensor: a layer our
    # sequential models call otherwise (self-attention: layer(x, x)) makes
    # the model a functional graph in the archive
    special <- vapply(self$layers, function(l) !is.null(layer_class_def(layer_self(l))$sequential_call), logical(1))
    if (!any(special)) return(keras_sequential_object(self))
  }
  graph <- self$graph
  ops <- keras_operation_order(self)
  names_of <- vapply(ops, callee_name, character(1))
  # node index of each graph node among the calls of its operation
  node_index <- list()
  counts <- list()
  for (n in nodes_in_call_order(graph$nodes)) {
    nm <- callee_name(n$callee)
    k <- if (is.null(counts[[nm]])) 0L else counts[[nm]]
    counts[[nm]] <- k + 1L
    node_index[[n$id]] <- k
  }
  tensor_json <- function(t) {
    node <- t$node
    history <- if (identical(node$kind, "input")) list(callee_name(node$callee), 0L, 0L) else
      list(callee_name(node$callee), node_index[[node$id]], t$index - 1L)
    list(class_name = "__keras_tensor__",
         config = list(shape = json_shape(t$shape), dtype = t$dtype, keras_history = history))
  }
  value_json <- function(v) {
    if (is_symbolic(v)) return(tensor_json(v))
    if (is.list(v) && !is.object(v)) {
      out <- lapply(v, value_json)
      return(if (is.null(names(v))) out else json_object(out))
    }
    keras_plain_out(v)
  }
  layers <- lapply(ops, function(op) {
    nodes <- Filter(function(n) identical(callee_name(n$callee), callee_name(op)),
                    nodes_in_call_order(graph$nodes))
    if (inherits(op, "multihead_op")) return(keras_op_entry(op, nodes, value_json))
    s <- layer_self(op)
    if (identical(s$class_name, "InputLayer")) {
      cfg <- layer_get_config(s)
      return(list(module = "keras.layers", class_name = "InputLayer",
                  config = list(batch_shape = json_shape(s$batch_shape), dtype = s$dtype, sparse = FALSE,
                                ragged = FALSE, name = s$name, optional = isTRUE(cfg$optional)),
                  registered_name = NULL, name = s$name, inbound_nodes = list()))
    }
    obj <- keras_layer_object(s, if (length(nodes)) nodes[[1L]])
    obj$name <- s$name
    obj$inbound_nodes <- lapply(nodes, function(n) keras_layer_node(s, n, value_json))
    obj
  })
  io <- function(ts, form) {
    triples <- lapply(ts, function(t) tensor_json(t)$config$keras_history)
    switch(form, single = triples[[1L]], list = triples, named = json_object(stats::setNames(triples, names(ts))))
  }
  input_names <- if (identical(self$input_form, "named")) self$input_names
  output_names <- if (identical(self$output_form, "named")) self$output_names
  list(module = "keras.src.models.functional", class_name = "Functional",
       config = list(name = self$name, trainable = isTRUE(self$trainable), layers = layers,
                     input_layers = io(stats::setNames(graph$inputs, input_names), self$input_form),
                     output_layers = io(stats::setNames(graph$outputs, output_names), self$output_form)),
       registered_name = "Functional", build_config = list(input_shape = NULL))
}

# One call of a layer as Keras writes it: the tensors of the layer's
# required arguments positional (a merge layer's list as one argument),
# the others (optional tensors, masks, flags, `training`) as kwargs.
#' @noRd
keras_layer_node <- function(s, node, value_json) {
  args <- list()
  kwargs <- list()
  ins <- node$inputs
  if (is.environment(s$custom)) {  # a custom layer: its call()'s arguments, the first positional
    matched <- custom_unflatten(node$args$custom_call, ins)
    args <- list(value_json(matched[[1L]]))
    for (nm in names(matched)[-1L]) kwargs[nm] <- list(value_json(matched[[nm]]))
    return(list(args = args, kwargs = json_object(kwargs)))
  }
  if (isTRUE(node$single)) {
    args <- list(value_json(ins[[1L]]))
  } else if (is.null(names(ins))) {
    args <- list(lapply(ins, value_json))
  } else {
    required <- keras_required_inputs(s, node$callee)
    for (nm in names(ins)) {
      if (nm %in% required) args[[length(args) + 1L]] <- value_json(ins[[nm]])
      else kwargs[[nm]] <- value_json(ins[[nm]])
    }
  }
  for (nm in names(node$args)) kwargs[nm] <- list(value_json(node$args[[nm]]))
  for (nm in names(node$arg_tensors)) kwargs[[nm]] <- value_json(node$arg_tensors[[nm]])
  if (!is.null(node$training)) kwargs$training <- node$training
  list(args = args, kwargs = json_object(kwargs))
}

# The nodes of a graph in the order they were created (the order of the
# calls, which numbers a shared layer's nodes in Keras).
#' @noRd
nodes_in_call_order <- function(nodes) {
  count <- vapply(nodes, function(n) as.numeric(sub("^.*\\.", "", n$id)), numeric(1))
  nodes[order(count)]
}

# The inputs a layer's call requires (its function's formals without
# defaults), by name; the first input when none is required.
#' @noRd
keras_required_inputs <- function(s, layer) {
  input_names <- layer_class_def(s)$input_args
  f <- formals(layer)
  req <- names(f)[vapply(f, function(v) identical(v, quote(expr = )), logical(1))]
  req <- intersect(req, input_names)
  if (!length(req)) input_names[1L] else req
}

# An op node's entry: Keras's ops are operations with class names such as
# "NotEqual" in module keras.src.ops.numpy; our ops that take no parameters
# beyond their tensors are written (others have no Keras counterpart
# checked here and are refused).
#' @noRd
keras_op_entry <- function(op, nodes, value_json) {
  def <- node_op_def(nodes[[1L]])
  inbound <- lapply(nodes, function(n) {
    params <- n$args$params
    if (length(params)) {
      abort_msg(sprintf(paste0("The model uses op_%s() with arguments (%s) in its graph; multihead writes ",
                               "ops with tensor operands only to a .keras archive."), def$name,
                        paste(names(params), collapse = ", ")), class = "multihead_error_unsupported")
    }
    operands <- n$args$constants
    operands[n$args$symbolic] <- n$inputs
    list(args = lapply(unname(operands), value_json), kwargs = json_object())
  })
  list(module = keras_op_module(def), class_name = def$class_name, config = list(name = op$name),
       registered_name = def$class_name, name = op$name, inbound_nodes = inbound)
}

#' @noRd
keras_op_module <- function(def) "keras.src.ops.numpy"

# A sequential model: its InputLayer, then its layers.
#' @noRd
keras_sequential_object <- function(self) {
  input <- self$graph$inputs[[1L]]
  shape <- if (isTRUE(self$built)) json_shape(input$shape)
  layers <- lapply(self$layers, function(l) keras_layer_object(layer_self(l)))
  if (isTRUE(self$built)) {
    in_layer <- list(module = "keras.layers", class_name = "InputLayer",
                     config = list(batch_shape = shape, dtype = input$dtype, sparse = FALSE, ragged = FALSE,
                                   name = callee_name(input$node$callee), optional = FALSE),
                     registered_name = NULL)
    layers <- c(list(in_layer), layers)
  }
  list(module = "keras", class_name = "Sequential",
       config = list(name = self$name, trainable = isTRUE(self$trainable),
                     dtype = keras_dtype_policy(self$dtype %||% "float32"), layers = layers,
                     build_input_shape = shape),
       registered_name = NULL, build_config = list(input_shape = shape))
}

# Keras's functional operation order (keras_layer_order() without leaving
# out the op nodes): the `layers` of a functional model's config.
#' @noRd
keras_operation_order <- function(self) keras_layer_order(self, layers_only = FALSE)

# ---- Keras -> ours -----------------------------------------------------------------------

# A model from its serialized object (top level or nested).
#' @noRd
keras_model_from_object <- function(obj, custom_objects, where = "the model") {
  cfg <- obj$config
  if (!is_json_object(cfg)) keras_file_error(sprintf("%s has no config object", where))
  layers <- cfg$layers
  if (!is.list(layers) || !is.null(names(layers))) keras_file_error(sprintf("%s has no list of layers", where))
  for (i in seq_along(layers)) {
    if (!is_json_object(layers[[i]])) keras_file_error(sprintf("layer %d of %s is not an object", i, where))
  }
  name <- if (json_string(cfg$name)) cfg$name else NULL
  trainable <- if (is.logical(cfg$trainable) && length(cfg$trainable) == 1L && !is.na(cfg$trainable)) cfg$trainable
  if (identical(obj$class_name, "Sequential")) return(keras_sequential_from_object(cfg, custom_objects, name, trainable))
  if (!(identical(obj$class_name, "Functional") || identical(obj$class_name, "Model"))) {
    keras_file_error(sprintf("%s is a %s, not a Functional or Sequential model", where, describe_value(obj$class_name)))
  }
  ops <- list()       # name -> layer object or op definition
  outputs <- list()   # name -> list over its nodes of the node's outputs
  pending <- list()
  for (i in seq_along(layers)) {
    entry <- layers[[i]]
    nm <- entry$name
    if (!json_string(nm)) {
      nm <- entry$config$name
      if (!json_string(nm)) keras_file_error(sprintf("layer %d of %s has no name", i, where))
    }
    if (!is.null(ops[[nm]])) keras_file_error(sprintf("%s has two layers named \"%s\"", where, nm))
    lw <- sprintf("layer \"%s\"", nm)
    if (identical(entry$class_name, "InputLayer")) {
      ic <- entry$config
      if (!is_json_object(ic)) keras_file_error(sprintf("%s has no config object", lw))
      dtype <- if (json_string(ic$dtype)) ic$dtype else keras_value_in(ic$dtype, lw)
      t <- keras_input(batch_shape = shape_from_json(ic$batch_shape, sprintf("the batch_shape of %s", lw)),
                       dtype = dtype, name = nm, optional = isTRUE(ic$optional))
      ops[[nm]] <- t$node$callee
      outputs[[nm]] <- list(t)
      next
    }
    module <- entry$module
    if (json_string(module) && startsWith(module, "keras.src.ops.")) {
      ops[[nm]] <- keras_op_def_by_class(entry$class_name, lw)
    } else {
      ops[[nm]] <- keras_layer_from_object(entry, custom_objects, lw)
    }
    nodes <- entry$inbound_nodes
    if (!is.list(nodes) || !is.null(names(nodes))) keras_file_error(sprintf("%s has no list of inbound_nodes", lw))
    outputs[[nm]] <- vector("list", length(nodes))
    for (k in seq_along(nodes)) {
      if (!is_json_object(nodes[[k]])) keras_file_error(sprintf("node %d of %s is not an object", k, lw))
      pending[[length(pending) + 1L]] <- list(name = nm, k = k, node = nodes[[k]])
    }
  }
  # Keras's deserialization: call each node once all its input tensors exist
  # (a shared layer's later nodes may use layers listed after it).
  missing_tensor <- new.env(parent = emptyenv())
  resolve <- function(v, lw) {
    if (is_json_object(v) && identical(v$class_name, "__keras_tensor__")) {
      h <- v$config$keras_history
      if (!(is.list(h) && length(h) == 3L && json_string(h[[1L]]) && is.numeric(h[[2L]]) && is.numeric(h[[3L]]))) {
        keras_file_error(sprintf("a tensor in %s has no valid keras_history", lw))
      }
      outs <- outputs[[h[[1L]]]]
      if (is.null(ops[[h[[1L]]]])) keras_file_error(sprintf("%s uses the unknown layer \"%s\"", lw, h[[1L]]))
      k <- as.integer(h[[2L]]) + 1L
      j <- as.integer(h[[3L]]) + 1L
      if (k < 1L || k > length(outs)) keras_file_error(sprintf("%s uses node %d of layer \"%s\", which has %d", lw,
                                                               k - 1L, h[[1L]], length(outs)))
      o <- outs[[k]]
      if (is.null(o)) {
        missing_tensor$yes <- TRUE
        return(NULL)
      }
      if (is_symbolic(o)) {
        if (j != 1L) keras_file_error(sprintf("%s uses output %d of layer \"%s\", which has one", lw, j - 1L, h[[1L]]))
        return(o)
      }
      if (j < 1L || j > length(o)) keras_file_error(sprintf("%s uses output %d of layer \"%s\"", lw, j - 1L, h[[1L]]))
      return(o[[j]])
    }
    if (is_json_object(v) && identical(v$class_name, "__tuple__")) return(lapply(v$config$value, resolve, lw = lw))
    if (is.list(v)) {
      out <- lapply(v, resolve, lw = lw)
      names(out) <- names(v)
      return(out)
    }
    v
  }
  while (length(pending)) {
    progressed <- FALSE
    for (p in seq_along(pending)) {
      item <- pending[[p]]
      lw <- sprintf("node %d of layer \"%s\"", item$k - 1L, item$name)
      missing_tensor$yes <- FALSE
      args <- resolve(if (is.null(item$node$args)) list() else item$node$args, lw)
      kwargs <- resolve(if (is.null(item$node$kwargs)) list() else item$node$kwargs, lw)
      if (isTRUE(missing_tensor$yes)) next
      if (!is.list(args) || !is.null(names(args))) keras_file_error(sprintf("the args of %s are not a list", lw))
      if (length(kwargs) && (!is_json_object(kwargs) || any(!nzchar(names(kwargs))))) {
        keras_file_error(sprintf("the kwargs of %s are not an object", lw))
      }
      outputs[[item$name]][[item$k]] <- keras_call_operation(ops[[item$name]], args, kwargs, lw, item$name)
      pending[[p]] <- NULL
      progressed <- TRUE
      break
    }
    if (!progressed) {
      keras_file_error(sprintf("the inputs of node %d of layer \"%s\" are never computed", pending[[1L]]$k - 1L,
                               pending[[1L]]$name))
    }
  }
  io <- function(x, what) {
    one <- function(h) resolve(list(class_name = "__keras_tensor__", config = list(keras_history = h)), what)
    if (is.list(x) && length(x) == 3L && json_string(x[[1L]])) return(one(x))
    if (!is.list(x) || !length(x)) keras_file_error(sprintf("%s of %s are missing", what, where))
    out <- lapply(x, one)
    names(out) <- names(x)
    out
  }
  inputs <- io(cfg$input_layers, "the input_layers")
  outs <- io(cfg$output_layers, "the output_layers")
  keras_model(inputs, outs, name = name, trainable = if (is.null(trainable)) TRUE else trainable)
}

# Calls a layer or op on the arguments of a node. Keras's call arguments
# match our layers' formals (the R signatures follow Keras's); an op's axis
# arguments are Keras's 0-based ones, converted to keras3's numbering.
#' @noRd
keras_call_operation <- function(op, args, kwargs, where, name) {
  if (is.list(op) && !is.null(op$infer)) {  # an op definition: its node keeps the file's name
    for (a in intersect(names(kwargs), c("axis", "axes"))) {
      v <- kwargs[[a]]
      if (is.numeric(v)) kwargs[[a]] <- ifelse(v >= 0, v + 1, v)
    }
    fun <- get(op$fun, envir = asNamespace("multihead"), mode = "function")
    out <- tryCatch(do.call(fun, c(args, kwargs), quote = TRUE), multihead_error = function(e) {
      abort_msg(sprintf("Could not apply %s: %s", where, conditionMessage(e)), class = "multihead_error_file")
    })
    if (is_symbolic(out)) {
      out$node$callee$name <- name
      out$name <- name
    }
    return(out)
  }
  kwargs <- lapply(kwargs, function(v) if (is.list(v) && !length(v) && !is_symbolic(v)) NULL else v)
  tryCatch(do.call(op, c(args, kwargs), quote = TRUE), multihead_error = function(e) {
    abort_msg(sprintf("Could not call %s: %s", where, conditionMessage(e)), class = "multihead_error_file")
  })
}

# The op definition registered under Keras's class name (e.g. "NotEqual").
#' @noRd
keras_op_def_by_class <- function(class_name, where) {
  if (json_string(class_name)) {
    for (nm in ls(.op_defs)) {
      def <- .op_defs[[nm]]
      if (identical(def$class_name, class_name)) return(def)
    }
  }
  abort_msg(sprintf("%s is the Keras operation %s, which multihead does not have.", where,
                    describe_value(class_name)), class = "multihead_error_unknown_class")
}

# A sequential model: InputLayer first (or build_input_shape), then layers.
#' @noRd
keras_sequential_from_object <- function(cfg, custom_objects, name, trainable) {
  entries <- cfg$layers
  batch_shape <- NULL
  dtype <- NULL
  input_name <- NULL
  if (length(entries) && identical(entries[[1L]]$class_name, "InputLayer")) {
    ic <- entries[[1L]]$config
    batch_shape <- shape_from_json(ic$batch_shape, "the batch_shape of the InputLayer")
    dtype <- if (json_string(ic$dtype)) ic$dtype
    input_name <- if (json_string(ic$name)) ic$name
    entries <- entries[-1L]
  } else if (!is.null(cfg$build_input_shape)) {
    batch_shape <- shape_from_json(cfg$build_input_shape, "build_input_shape")
  }
  layers <- lapply(seq_along(entries), function(i) {
    keras_layer_from_object(entries[[i]], custom_objects, sprintf("layer %d (\"%s\")", i + 1L,
                                                                  format(entries[[i]]$config$name)))
  })
  args <- list(name = name, trainable = if (is.null(trainable)) TRUE else trainable)
  if (!is.null(batch_shape)) {
    args$input_batch_shape <- batch_shape
    args$input_dtype <- dtype
    args$input_name <- input_name
  }
  model <- do.call(keras_model_sequential, args)
  for (l in layers) model$add(l)
  model
}
