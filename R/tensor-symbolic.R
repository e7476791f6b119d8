# Symbolic tensors (keras3's KerasTensor): a shape and a dtype, no values.
#
# A symbolic tensor is a list of class "multihead_tensor":
#   shape  integer vector, batch first, NA for an unknown size
#   dtype  "float32", "float64", "int32", "int64" or "bool"
#   name   a label for printing (the input's name, or the producing layer's)
#   id     "<node id>:<output index>", unique across sessions
#   node   the node that produced it (see new_graph_node())
#   index  which output of that node it is (1-based)
# Tensors are immutable; the graph is the DAG of nodes reachable through
# `node$inputs` from a tensor. Calling a layer on symbolic tensors records a
# node (record_layer_call()) and returns symbolic outputs whose shapes come
# from the layer's compute_output_shape(); nothing is computed.

.graph_state <- new.env(parent = emptyenv())
.graph_state$count <- 0

#' @noRd
tensor_dtypes <- c("float32", "float64", "int32", "int64", "bool")

# A fresh identifier, unique within the session and (through the session
# token) across sessions, so that tensors of a model read with readRDS()
# never collide with new ones. Does not touch R's RNG.
#' @noRd
next_graph_id <- function() {
  if (is.null(.graph_state$token)) {
    .graph_state$token <- sprintf("%d.%s", Sys.getpid(),
                                  format(as.numeric(Sys.time()) * 1e6, scientific = FALSE))
  }
  .graph_state$count <- .graph_state$count + 1
  sprintf("%s.%.0f", .graph_state$token, .graph_state$count)
}

# A node of the graph: one call of a layer (kind "layer"), an elementwise
# operation (kind "op") or an input (kind "input").
#   callee      the layer object (or op description)
#   inputs      list of symbolic tensors (named for layers taking named inputs)
#   single      TRUE if the layer was called on one tensor (not a list)
#   args        the call's other arguments (constants)
#   arg_tensors named list of symbolic tensors passed as other arguments
#               (e.g. attention_mask = <tensor>); not differentiated
#   training    NULL, or TRUE/FALSE fixed at the call
#   output_shapes list of output shapes; output_names their names (or NULL)
#' @noRd
new_graph_node <- function(kind, callee, inputs = list(), single = TRUE, args = list(),
                           arg_tensors = list(), training = NULL, output_shapes, output_names = NULL,
                           output_dtypes) {
  list(id = next_graph_id(), kind = kind, callee = callee, inputs = inputs, single = single,
       args = args, arg_tensors = arg_tensors, training = training, output_shapes = output_shapes,
       output_names = output_names, output_dtypes = output_dtypes)
}

#' @noRd
new_symbolic_tensor <- function(node, index = 1L, name = NULL) {
  structure(list(shape = node$output_shapes[[index]], dtype = node$output_dtypes[[index]],
                 name = if (is.null(name)) callee_name(node$callee) else name,
                 id = paste0(node$id, ":", index), node = node, index = as.integer(index)),
            class = "multihead_tensor")
}

# The output tensors of a node: one tensor, or a list (named by
# output_names) when the node has several outputs.
#' @noRd
node_output_tensors <- function(node) {
  n <- length(node$output_shapes)
  if (n == 1L && is.null(node$output_names)) return(new_symbolic_tensor(node, 1L))
  base <- callee_name(node$callee)
  nms <- node$output_names
  out <- lapply(seq_len(n), function(i) {
    new_symbolic_tensor(node, i, name = paste0(base, "/", if (is.null(nms)) i else nms[i]))
  })
  names(out) <- nms
  out
}

#' @noRd
is_symbolic <- function(x) inherits(x, "multihead_tensor") && is.list(x) && is.list(x$node)

# TRUE for a symbolic tensor or a plain list holding at least one.
#' @noRd
contains_symbolic <- function(x) {
  if (is_symbolic(x)) return(TRUE)
  is.list(x) && !is.object(x) && length(x) > 0L && any(vapply(x, is_symbolic, logical(1)))
}

#' @noRd
callee_name <- function(callee) {
  if (inherits(callee, "multihead_op")) return(callee$name)
  if (inherits(callee, "multihead_variable")) return(callee$path)
  layer_self(callee)$name
}

# ---- keras_input() -----------------------------------------------------------

#' Symbolic inputs
#'
#' `keras_input()` (alias `layer_input()`) creates a symbolic tensor: a shape
#' and a dtype, without values. Calling layers on it records a graph from
#' which [keras_model()] builds a model. Nothing is computed until the model
#' is called on arrays.
#'
#' @param shape The shape without the batch axis: a vector of whole numbers,
#'   `NA` for an unknown size (e.g. `c(NA, 16)` for sequences of any length
#'   with 16 features). Lists with `NULL` entries are accepted, as in keras3.
#' @param batch_size `NULL` (unknown batch size) or a whole number.
#' @param dtype `"float32"` (the default), `"float64"`, `"int32"`, `"int64"`
#'   (for integer ids, e.g. before [layer_embedding()]), `"bool"` or
#'   `"string"` (text, e.g. before [layer_text_vectorization()]; the model
#'   then takes a character vector or array).
#' @param sparse `NULL` or `FALSE`; sparse inputs are not supported.
#' @param batch_shape The full shape including the batch axis, instead of
#'   `shape` and `batch_size`.
#' @param name `NULL` or the input's name (unique names are generated:
#'   `"input_layer"`, `"input_layer_1"`, ...).
#' @param tensor `NULL` or an existing symbolic tensor to use as this input.
#' @param optional `TRUE` if the model may be called with `NULL` for this
#'   input (the layers it feeds then receive `NULL`, e.g. an attention key).
#' @returns A symbolic tensor. It prints as one line, e.g.
#'   `<KerasTensor shape=(NA, 10, 16), dtype=float32, name=input_layer>`;
#'   `x$shape` or [shape()] give its shape, `x$dtype` and `x$name` the rest.
#' @seealso [keras_model()], [shape()].
#' @export
#' @examples
#' x <- keras_input(shape = c(10, 16))
#' x
#' shape(x)
#' ids <- keras_input(shape = c(NA), dtype = "int32", name = "tokens")
#' ids$shape
keras_input <- function(shape = NULL, batch_size = NULL, dtype = NULL, sparse = NULL,
                        batch_shape = NULL, name = NULL, tensor = NULL, optional = FALSE) {
  optional <- check_flag(optional, "optional")
  if (!is.null(sparse) && !identical(sparse, FALSE)) {
    if (identical(sparse, TRUE)) {
      abort_arg("sparse", "NULL or FALSE (sparse inputs are not supported)", "TRUE")
    }
    abort_arg("sparse", "NULL or FALSE", describe_value(sparse))
  }
  name <- check_string(name, "name", null_ok = TRUE)
  if (!is.null(tensor)) {
    if (!is_symbolic(tensor)) abort_arg("tensor", "NULL or a symbolic tensor (from keras_input())",
                                        describe_value(tensor))
    if (!is.null(shape) || !is.null(batch_shape) || !is.null(batch_size)) {
      abort_arg("tensor", "given without `shape`, `batch_shape` or `batch_size` (it has its own shape)")
    }
    return(tensor)
  }
  if (!is.null(shape) && !is.null(batch_shape)) {
    abort_arg("batch_shape", "NULL when `shape` is given (pass one of them)", describe_value(batch_shape))
  }
  batch_size <- check_whole(batch_size, "batch_size", null_ok = TRUE)
  if (!is.null(batch_shape)) {
    if (!is.null(batch_size)) {
      abort_arg("batch_size", "NULL when `batch_shape` is given (its first entry is the batch size)",
                describe_value(batch_size))
    }
    full <- normalize_shape(batch_shape, "batch_shape")
    if (length(full) < 1L) abort_arg("batch_shape", "a shape with at least the batch axis", "an empty shape")
  } else {
    if (is.null(shape)) {
      abort_arg("shape", "supplied: the input's shape without the batch axis, e.g. c(10, 16)")
    }
    full <- c(if (is.null(batch_size)) NA_integer_ else batch_size, normalize_shape(shape, "shape"))
  }
  dtype <- check_tensor_dtype(dtype, "dtype", string_ok = TRUE)   # "string": text inputs
  if (is.null(name)) name <- unique_layer_name("input_layer")
  input_layer <- new_input_layer(name, full, dtype, optional)
  layer_self(input_layer)$output
}

#' @rdname keras_input
#' @export
layer_input <- keras_input

# keras3's shape conversion: whole numbers, NA / NULL for unknown sizes.
#' @noRd
normalize_shape <- function(x, arg) {
  if (is.list(x) && !is.object(x)) {
    x <- vapply(x, function(e) if (is.null(e) || (length(e) == 1L && is.na(e))) NA_real_
                else if (is.numeric(e) && length(e) == 1L) as.double(e) else NaN, numeric(1))
  }
  if (length(x) == 0L) return(integer())
  ok <- (is.numeric(x) || (is.logical(x) && all(is.na(x)))) && is.null(dim(x))
  if (ok) {
    known <- x[!is.na(x)]
    ok <- !any(is.nan(x)) && all(is.finite(known)) && all(known == round(known)) && all(known >= 0) &&
      all(known <= .Machine$integer.max)
  }
  if (!ok) {
    abort_arg(arg, "a shape: a vector of whole numbers >= 0, NA for an unknown size", describe_value(x))
  }
  as.integer(x)
}

#' @noRd
check_tensor_dtype <- function(dtype, arg, string_ok = FALSE) {
  if (is.null(dtype)) return(config_floatx())
  ok <- c(tensor_dtypes, if (string_ok) "string")
  if (!(is.character(dtype) && length(dtype) == 1L && !is.na(dtype) && dtype %in% ok)) {
    abort_arg(arg, paste0("one of ", paste0("\"", ok, "\"", collapse = ", ")),
              describe_value(dtype))
  }
  dtype
}

# The InputLayer object behind keras_input(): a layer without weights whose
# `output` is the input's symbolic tensor.
#' @noRd
new_input_layer <- function(name, batch_shape, dtype, optional = FALSE) {
  self <- new.env(parent = emptyenv())
  self$class_name <- "InputLayer"
  self$name <- name
  self$dtype <- dtype
  self$trainable <- TRUE
  self$built <- TRUE
  self$batch_shape <- as.integer(batch_shape)
  self$optional <- optional
  self$variables <- list()
  self$variable_names <- character()
  self$sublayers <- list()
  self$activity_losses <- list()
  layer <- new_layer_object(self, function(...) {
    abort_msg(sprintf(paste0("InputLayer \"%s\" cannot be called: use its tensor (layer$output) as the ",
                             "input of other layers."), self$name))
  })
  node <- new_graph_node("input", layer, output_shapes = list(self$batch_shape),
                         output_dtypes = list(dtype))
  self$output <- new_symbolic_tensor(node, 1L, name = name)
  layer
}

#' @noRd
register_input_layer <- function() {
  register_layer_class(
    "InputLayer",
    properties = c(common_layer_properties, list(
      batch_shape = function(self) self$batch_shape,
      output = function(self) self$output,
      optional = function(self) self$optional
    )),
    methods = common_layer_methods,
    describe = function(self) sprintf("batch_shape=%s, dtype=%s", fmt_shape(self$batch_shape), self$dtype),
    get_config = function(self) {
      list(name = self$name, batch_shape = self$batch_shape, dtype = self$dtype, sparse = FALSE,
           optional = self$optional)
    },
    from_config = function(config) {
      t <- keras_input(batch_shape = config$batch_shape, dtype = config$dtype, name = config$name,
                       optional = isTRUE(config$optional))
      t$node$callee
    }
  )
}

# A placeholder: a symbolic input of a traced function (a custom layer's
# call(), a custom loss) with no InputLayer behind it. Its node has kind
# "input", so a trace that uses a tensor it was not given fails with
# build_graph()'s "Graph disconnected" error.
#' @noRd
new_placeholder_tensor <- function(shape, dtype, name = "placeholder") {
  callee <- structure(list(class_name = "Placeholder", name = name), class = "multihead_op")
  node <- new_graph_node("input", callee, output_shapes = list(as.integer(shape)), output_dtypes = list(dtype))
  new_symbolic_tensor(node, 1L, name = name)
}

# ---- printing and shape() ----------------------------------------------------

#' @export
format.multihead_tensor <- function(x, ...) {
  sprintf("<KerasTensor shape=%s, dtype=%s, name=%s>", fmt_shape(x$shape), x$dtype, x$name)
}

#' @export
print.multihead_tensor <- function(x, ...) {
  cat(format(x), "\n", sep = "")
  invisible(x)
}

#' @exportS3Method utils::str
str.multihead_tensor <- function(object, ...) cat(" ", format(object), "\n", sep = "")

#' Shapes
#'
#' `shape(x)` returns the shape of a symbolic tensor (`NA` for unknown
#' sizes) or the dimensions of an array. With numbers (and `NA` or `NULL`
#' for unknown sizes) it builds a shape, as keras3's `shape()` does:
#' `shape(NA, 16)`.
#'
#' @param ... A symbolic tensor or an array; or sizes (whole numbers, `NA`,
#'   `NULL`).
#' @returns An integer vector.
#' @export
#' @examples
#' shape(keras_input(shape = c(8, 16)))   # NA 8 16
#' shape(NA, 16)
shape <- function(...) {
  args <- list(...)
  if (length(args) == 1L) {
    x <- args[[1L]]
    if (is_symbolic(x)) return(x$shape)
    if (!is.null(dim(x))) return(as.integer(dim(x)))
  }
  parts <- lapply(seq_along(args), function(i) {
    a <- args[[i]]
    if (is.null(a)) return(NA_integer_)
    if (is_symbolic(a) || !is.null(dim(a))) {
      abort_arg(sprintf("..%d", i), "a size (a whole number, NA or NULL) when several values are given",
                describe_value(a))
    }
    normalize_shape(a, sprintf("..%d", i))
  })
  as.integer(unlist(parts))
}

# ---- recording layer calls --------------------------------------------------

# Records a call of `layer` on symbolic tensors. `inputs`: a tensor, or a
# (named) list of tensors; `args`: the other call arguments (symbolic
# tensors among them are recorded as graph inputs that are not
# differentiated). Builds the layer if needed. Returns the output tensor(s).
#' @noRd
record_layer_call <- function(layer, inputs, args = list()) {
  self <- layer_self(layer)
  if (is.environment(self$custom)) {  # a custom layer's node re-recorded from a config
    return(custom_record_call(self, custom_unflatten(args$custom_call, if (is_symbolic(inputs)) list(inputs)
                                                     else inputs)))
  }
  def <- layer_class_def(self)
  if (is.null(def$compute_output_shape) || is.null(def$forward)) {
    abort_msg(sprintf("A %s layer (\"%s\") cannot be called on symbolic tensors.",
                      self$class_name, self$name), class = "multihead_error_unsupported")
  }
  if (identical(self$input_form, "single") && is.list(inputs) && !is.object(inputs) && length(inputs) == 1L) {
    inputs <- inputs[[1L]]  # a one-input model called on list(x), as keras3 allows
  }
  single <- is_symbolic(inputs)
  if (single) {
    inputs <- list(inputs)
  } else {
    if (!is.list(inputs) || is.object(inputs) || length(inputs) == 0L ||
        !all(vapply(inputs, is_symbolic, logical(1)))) {
      abort_arg("inputs", sprintf(paste0("symbolic tensors (a tensor or a list of them) when layer \"%s\" ",
                                         "is called symbolically; mixing symbolic tensors and arrays is ",
                                         "not supported"), self$name),
                describe_value(inputs))
    }
  }
  is_tensor_arg <- vapply(args, is_symbolic, logical(1))
  for (nm in names(args)[!is_tensor_arg]) {
    if (contains_symbolic(args[[nm]])) {
      abort_arg(nm, "a symbolic tensor or a constant, not a list holding symbolic tensors")
    }
  }
  arg_tensors <- args[is_tensor_arg]
  args <- args[!is_tensor_arg]
  training <- args$training
  args$training <- NULL
  if (!is.null(training)) training <- check_flag(training, "training")
  shapes <- lapply(inputs, function(t) t$shape)
  input_shape <- if (single) shapes[[1L]] else shapes
  if (!isTRUE(self$built) && identical(self$class_name, "Sequential")) {
    sequential_build(self, input_shape, inputs[[1L]]$dtype)
  } else if (!isTRUE(self$built)) {
    if (is.null(def$build)) {
      abort_msg(sprintf("Layer \"%s\" is not built and cannot be built from shapes.", self$name))
    }
    def$build(self, input_shape)
  }
  out <- def$compute_output_shape(self, input_shape, args)
  for (o in if (is.list(out)) out else list(out)) {
    check_size(o, "inputs", sprintf("each sample of the output of layer \"%s\"", self$name))
  }
  several <- is.list(out)
  out_shapes <- if (several) lapply(out, as.integer) else list(as.integer(out))
  node <- new_graph_node("layer", layer, inputs = inputs, single = single, args = args,
                         arg_tensors = arg_tensors, training = training, output_shapes = out_shapes,
                         output_names = if (several) names(out) else NULL,
                         output_dtypes = layer_output_dtypes(self, length(out_shapes)))
  node_output_tensors(node)
}

# The dtypes of a layer's n outputs: a model's output dtypes, else the
# layer's compute dtype.
#' @noRd
layer_output_dtypes <- function(self, n) {
  if (!is.null(self$output_dtypes) && length(self$output_dtypes) == n) return(self$output_dtypes)
  d <- if (is.character(self$dtype) && length(self$dtype) == 1L && self$dtype %in% c("float32", "float64"))
    self$dtype else "float32"
  as.list(rep(d, n))
}

# The guard that new_layer_object() puts first in every layer's function:
# when any supplied argument holds a symbolic tensor, the call is recorded
# instead of computed. The test is written out for the function's own
# arguments, `!missing(a) && contains_symbolic(a) || ...` (and the dots),
# so a numeric call pays a few primitive calls per argument: the generic
# frame_has_symbolic() (ls(), eval(missing), get() per argument) was about
# half of a tiny call's R-level cost.
#' @noRd
add_symbolic_guard <- function(fun) {
  args <- names(formals(fun))
  tests <- lapply(setdiff(args, "..."), function(a) {
    bquote(!missing(.(as.name(a))) && contains_symbolic(.(as.name(a))))
  })
  if ("..." %in% args) {
    tests <- c(tests, quote(...length() > 0L && any(vapply(list(...), contains_symbolic, logical(1)))))
  }
  tests <- c(tests, quote(trace_active()))  # inside a traced call(), arrays become graph constants
  cond <- Reduce(function(a, b) call("||", a, b), tests)
  guard <- bquote(if (.(cond)) return(call_layer_symbolically(sys.function(), environment())))
  body(fun) <- call("{", guard, body(fun))
  fun
}

# The supplied (not missing) arguments of a call frame, dots included.
#' @noRd
frame_args <- function(frame) {
  nms <- ls(frame, all.names = TRUE, sorted = FALSE)
  out <- list()
  for (nm in setdiff(nms, "...")) {
    if (eval(call("missing", as.name(nm)), frame)) next
    v <- get(nm, envir = frame)
    if (is.null(v)) out[nm] <- list(NULL) else out[[nm]] <- v
  }
  if ("..." %in% nms) out <- c(out, eval(quote(list(...)), frame))
  out
}

# The generic form of the guard's test, which layer objects saved by
# earlier versions still call.
#' @noRd
frame_has_symbolic <- function(frame) {
  nms <- ls(frame, all.names = TRUE, sorted = FALSE)
  for (nm in setdiff(nms, "...")) {
    if (eval(call("missing", as.name(nm)), frame)) next
    if (contains_symbolic(get(nm, envir = frame))) return(TRUE)
  }
  if ("..." %in% nms) {
    dots <- eval(quote(list(...)), frame)
    return(any(vapply(dots, contains_symbolic, logical(1))))
  }
  FALSE
}

# Inputs of a layer called inside a traced call(): arrays (and variables)
# become graph constants (a tensor, or a list of them).
#' @noRd
as_graph_inputs <- function(inputs) {
  if (is_symbolic(inputs)) return(inputs)
  if (is.list(inputs) && !is.object(inputs)) {
    out <- lapply(inputs, function(x) if (is.null(x)) NULL else constant_tensor(x))
    return(out)
  }
  constant_tensor(inputs)
}

#' @noRd
call_layer_symbolically <- function(layer, frame) {
  self <- layer_self(layer)
  args <- frame_args(frame)
  if (length(args) && (is.null(names(args)) || any(!nzchar(names(args))))) {
    abort_arg("...", sprintf("named arguments in a call of layer \"%s\"", self$name), "an unnamed argument")
  }
  # inputs taken by name (the class's `input_args`), else the first argument
  # (a tensor or a list of tensors)
  input_names <- layer_class_def(self)$input_args
  if (is.null(input_names)) {
    first <- names(formals(layer))[1L]
    if (is.null(args[[first]])) abort_arg(first, "supplied: a symbolic tensor")
    inputs <- args[[first]]
    args[[first]] <- NULL
  } else {
    present <- intersect(input_names, names(args))
    present <- present[!vapply(args[present], is.null, logical(1))]
    inputs <- args[present]
    args[input_names] <- NULL
  }
  if (trace_active()) inputs <- as_graph_inputs(inputs)
  record_layer_call(layer, inputs, args)
}

# ---- broadcasting (the elementwise ops: ops-elementwise.R) --------------------

# Keras (NumPy) broadcasting of two shapes (NA = unknown), or NULL when the
# shapes do not broadcast.
#' @noRd
broadcast_shapes_or_null <- function(a, b) {
  la <- length(a); lb <- length(b)
  if (la < lb) a <- c(rep.int(1L, lb - la), a) else if (lb < la) b <- c(rep.int(1L, la - lb), b)
  na_a <- is.na(a); na_b <- is.na(b)
  ok <- na_a | na_b | a == b | a == 1L | b == 1L
  if (!all(ok)) return(NULL)
  out <- a
  take_b <- (!na_a & a == 1L) | (na_a & !na_b & b != 1L)
  out[take_b] <- b[take_b]
  as.integer(out)
}

# broadcast_shapes_or_null(), or an error naming both shapes.
#' @noRd
broadcast_shapes <- function(a, b) {
  out <- broadcast_shapes_or_null(a, b)
  if (is.null(out)) {
    abort_msg(sprintf("Cannot broadcast shapes %s and %s.", fmt_shape(a), fmt_shape(b)),
              class = "multihead_error_shape")
  }
  out
}

# The AND of the masks present (NULL if none; masks of different shapes
# cannot be combined and give NULL).
#' @noRd
elementwise_output_mask <- function(masks) {
  if (is.null(masks)) return(NULL)
  if (!is.list(masks)) return(masks)
  present <- Filter(Negate(is.null), masks)
  if (length(present) == 0L) return(NULL)
  out <- present[[1L]]
  for (m in present[-1L]) {
    if (!identical(dim(m), dim(out))) return(NULL)
    out <- out & m
  }
  out
}
