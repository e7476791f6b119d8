# The Add layer (keras3's layer_add()): the elementwise sum of its inputs.
# Forward in C++ (src/core/add.h); the backward pass hands grad_output to
# every input (rounded to the layer's dtype).

#' Add layer
#'
#' Adds a list of arrays of one shape elementwise (Keras's `Add`; this
#' implementation does not broadcast, so every input must have the same
#' shape). The layer has no weights. When inputs carry masks, the output's
#' mask is their logical AND (inputs without a mask count as all present).
#'
#' @param object What to compose the layer with: `NULL` or missing returns the
#'   layer; a list of arrays (or of symbolic tensors, once the models support
#'   them) applies the layer to it. Unnamed arguments in `...` are further
#'   inputs, so `layer_add(x, y)` and `layer_add(list(x, y))` are the same.
#' @param ... Further inputs (unnamed), and the named layer options `name`
#'   (default `"add"`, ...), `dtype` (`"float32"` or `"float64"`),
#'   `trainable`.
#' @returns A layer object (a function) if no inputs are given; otherwise the
#'   sum of the inputs.
#' @export
#' @examples
#' x <- array(1:6, c(2, 3))
#' layer_add(x, x)
#' add <- layer_add()
#' add(list(x, x, x))
layer_add <- function(object, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  dots <- list(...)
  nms <- names(dots)
  if (is.null(nms)) nms <- rep("", length(dots))
  extra <- check_layer_dots(dots[nzchar(nms)], base_layer_options(), "layer_add()")
  more <- dots[!nzchar(nms)]
  self <- new_layer_state("Add", "add", extra$name, extra$dtype, extra$trainable)
  layer <- new_layer_object(self, protocol_layer_function)
  if (!length(more)) return(compose_layer(object, layer))
  first <- if (missing(object) || is.null(object)) list()
    else if (is.list(object) && !is.object(object)) object else list(object)
  compose_layer(c(first, more), layer)
}

#' @noRd
add_input_list <- function(inputs) {
  if (!is.list(inputs) || is.object(inputs) || length(inputs) < 1L) {
    abort_arg("inputs", "a list of at least one array (the arrays to add)", describe_value(inputs))
  }
  for (i in seq_along(inputs)) inputs[[i]] <- check_layer_input(inputs[[i]], sprintf("inputs[[%d]]", i))
  inputs
}

# Errors unless all shapes are equal (NA matches anything).
#' @noRd
check_same_shapes <- function(shapes, arg = "inputs") {
  ref <- shapes[[1L]]
  for (s in shapes[-1L]) {
    same <- length(s) == length(ref) && all(is.na(s) | is.na(ref) | s == ref)
    if (!same) {
      abort_arg(arg, "arrays of one shape (Add does not broadcast)",
                paste0("shapes ", paste(vapply(shapes, fmt_shape, ""), collapse = ", ")))
    }
  }
}

#' @noRd
add_build <- function(self, input_shape) {
  if (!is.list(input_shape) || is.object(input_shape) || length(input_shape) < 1L) {
    abort_arg("input_shape", "a list of at least one shape (one per input)", describe_value(input_shape))
  }
  shapes <- lapply(input_shape, as_input_shape)
  check_same_shapes(shapes, "input_shape")
  check_not_built(self)
  self$build_shapes <- shapes[[1L]]
  self$built <- TRUE
  invisible(NULL)
}

#' @noRd
add_compute_output_shape <- function(self, input_shape, args = list()) {
  if (!is.list(input_shape) || is.object(input_shape) || length(input_shape) < 1L) {
    abort_arg("input_shape", "a list of at least one shape (one per input)", describe_value(input_shape))
  }
  shapes <- lapply(input_shape, as_input_shape)
  check_same_shapes(shapes, "input_shape")
  out <- shapes[[1L]]
  for (s in shapes[-1L]) out[is.na(out)] <- s[is.na(out)]
  out
}

# The output mask: the AND of the inputs' masks (NULL when none has one).
#' @noRd
combine_masks <- function(masks, inputs) {
  if (is.null(masks)) return(NULL)
  if (!is.list(masks) || is.object(masks) || length(masks) != length(inputs)) {
    abort_arg("mask", sprintf("NULL or a list of %d masks (NULL entries allowed), one per input", length(inputs)),
              describe_value(masks))
  }
  out <- NULL
  for (i in seq_along(masks)) {
    if (is.null(masks[[i]])) next
    d <- dim(inputs[[i]])
    m <- check_position_mask(masks[[i]], d[-length(d)], sprintf("mask[[%d]]", i))
    out <- if (is.null(out)) m else out & m
  }
  out
}

#' @noRd
add_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  inputs <- add_input_list(inputs)
  d <- dim(inputs[[1L]])
  check_same_shapes(lapply(inputs, dim))
  mask <- combine_masks(masks, inputs)
  if (!isTRUE(self$built)) add_build(self, rep(list(batchless_shape(d)), length(inputs)))
  out <- cpp_add_forward(unname(inputs), is_float64(self), mh_threads())
  list(output = out, cache = list(n = length(inputs), out_dims = d), mask = mask)
}

#' @noRd
add_backward <- function(self, cache, grad_output) {
  g <- cpp_as_dtype(check_grad_output(grad_output, cache$out_dims), is_float64(self))
  list(inputs = rep(list(g), cache$n), weights = named_weight_grads(self, list()))
}

#' @noRd
register_add <- function() {
  register_protocol_layer(
    "Add",
    properties = list(),
    describe = function(self) describe_built(self, ""),
    get_config = base_layer_config,
    from_config = function(config) layer_from_config(layer_add, config, character()),
    build = add_build, compute_output_shape = add_compute_output_shape,
    forward = add_forward, backward = add_backward)
}
