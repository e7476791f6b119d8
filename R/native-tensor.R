# Native tensors: float32 buffers kept in C++ between the layers of a
# training step, an evaluation batch or a predict() batch
# (src/glue_native.cpp), so that float32 layers pass their results to each
# other without converting them to R's column-major doubles and back. Only
# the graph runner creates them (run_graph_forward(native = TRUE)): a node
# whose layer class declares `native_tensors = TRUE` and whose dtype is
# float32 gets its float inputs as native tensors and returns native tensors
# (its backward likewise); every other node, and every caller, sees R arrays.
# A native tensor lives for one run: when the run (and its backward pass) is
# over, release_natives() frees them all; nothing that outlives a run holds
# one.
# `options(multihead.native_tensors = FALSE)` runs everything on R arrays.

#' @noRd
is_native_tensor <- function(x) inherits(x, "multihead_native_tensor")

#' @export
dim.multihead_native_tensor <- function(x) attr(x, "shape", exact = TRUE)

#' @export
length.multihead_native_tensor <- function(x) prod(attr(x, "shape", exact = TRUE))

#' @export
print.multihead_native_tensor <- function(x, ...) {
  cat(sprintf("<multihead native float32 tensor of shape %s>\n", fmt_shape(dim(x))))
  invisible(x)
}

# The R array of x (x itself unless it is a native tensor).
#' @noRd
native_as_array <- function(x) if (is_native_tensor(x)) cpp_native_to_array(x, mh_threads()) else x

# Whether the runner passes native tensors to a layer node: its class says it
# takes them and the layer computes in float32.
#' @noRd
node_takes_native <- function(node) {
  if (!identical(node$kind, "layer")) return(FALSE)
  self <- layer_self(node$callee)
  isTRUE(layer_class_def(self)$native_tensors) && identical(self$dtype, "float32")
}

#' @noRd
native_tensors_enabled <- function() !isFALSE(getOption("multihead.native_tensors"))

# A value in the form a node wants: `native` TRUE gives double arrays as
# native tensors, FALSE gives native tensors as R arrays. `conv` (an
# environment) keeps each converted value by tensor id, so a value read by
# several nodes is converted once.
#' @noRd
value_in_form <- function(v, id, native, conv) {
  if (is.null(v)) return(v)
  if (native) {
    if (is_native_tensor(v) || !is.double(v) || is.null(dim(v)) || is.object(v)) return(v)
  } else if (!is_native_tensor(v)) {
    return(v)
  }
  out <- conv[[id]]
  if (is.null(out)) {
    out <- if (native) cpp_native_from_array(v, mh_threads()) else cpp_native_to_array(v, mh_threads())
    assign(id, out, envir = conv)
  }
  out
}

# Frees the buffers of every native tensor (a run and its backward pass are
# over; native tensors never outlive one).
#' @noRd
release_natives <- function() invisible(cpp_native_release_all())
