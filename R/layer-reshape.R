# The reshaping layers keras3 users put around attention (Keras's
# keras/src/layers/reshaping/): Reshape (Keras's row-major element order),
# Permute (1-based dims over the axes after the batch axis) and RepeatVector.
# Pure data movement; none has weights, and none passes a mask on (Keras's
# classes do not support masking, so the mask is dropped).

# A value in the layer's dtype (float32 rounded), with dims `d`.
#' @noRd
reshape_in_dtype <- function(self, x, d = dim(x)) {
  y <- as_dtype_values(x, is_float64(self))
  dim(y) <- d
  y
}

# ---- Reshape ------------------------------------------------------------------

#' Reshape layer
#'
#' Gives each sample a new shape `target_shape` (the batch axis is kept), as
#' Keras's `Reshape`: the elements are taken in Keras's row-major order (the
#' last axis varies fastest), not R's `dim<-` order, so models ported from
#' Keras give the same numbers. One entry of `target_shape` may be `-1` (or
#' `NA`) for a size inferred from the others. The layer has no weights and
#' drops the input mask.
#'
#' @inheritParams layer_dense
#' @param target_shape The new shape of each sample (without the batch
#'   axis): whole numbers >= 0, with at most one `-1` or `NA` (inferred).
#' @param ... Named layer options: `name` (default `"reshape"`, ...),
#'   `dtype` (`"float32"` or `"float64"`), `trainable`.
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object`.
#' @export
#' @examples
#' x <- array(1:12, c(2, 6))
#' layer_reshape(x, c(2, 3))      # sample 1: rbind(x[1, 1:3], x[1, 4:6])
#' layer_reshape(x, c(-1, 2))     # (2, 3, 2)
layer_reshape <- function(object, target_shape, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  if (missing(target_shape)) abort_arg("target_shape", "supplied: the shape of each sample, e.g. c(4, 8)")
  extra <- check_layer_dots(list(...), base_layer_options(), "layer_reshape()")
  cfg <- list(target_shape = check_target_shape(target_shape))
  self <- new_layer_state("Reshape", "reshape", extra$name, extra$dtype, extra$trainable, cfg)
  compose_layer(object, new_layer_object(self, protocol_layer_function))
}

# keras3's target shape: whole numbers >= 0, NA / NULL / -1 for one inferred
# size; returned as integers with -1 there.
#' @noRd
check_target_shape <- function(x) {
  if (is.list(x) && !is.object(x)) {
    x <- vapply(x, function(e) if (is.null(e) || (length(e) == 1L && is.na(e))) -1
                else if (is.numeric(e) && length(e) == 1L) as.double(e) else NaN, numeric(1))
  }
  ok <- (is.numeric(x) || (is.logical(x) && all(is.na(x)))) && !is.object(x) && is.null(dim(x)) && length(x) >= 1L
  if (ok) {
    x <- ifelse(is.na(x) & !is.nan(x), -1, x)
    ok <- !anyNA(x) && all(is.finite(x)) && all(x == round(x)) && all(x >= -1) && all(x <= .Machine$integer.max)
  }
  if (!ok) {
    abort_arg("target_shape", paste0("a shape without the batch axis: whole numbers >= 0, with at most one -1 ",
                                     "or NA for a size to infer"), describe_value(x))
  }
  if (sum(x == -1) > 1L) {
    abort_arg("target_shape", "a shape with at most one -1 or NA (one size to infer)",
              fmt_shape(ifelse(x == -1, NA, x)))
  }
  as.integer(x)
}

# The output shape for an input shape (batch first); errors name `arg`.
#' @noRd
reshape_output_shape <- function(self, shape, arg = "inputs") {
  ts <- self$config$target_shape
  rest <- shape[-1L]
  unknown <- which(ts == -1L)
  if (anyNA(rest)) return(c(shape[1L], ifelse(ts == -1L, NA_integer_, ts)))
  n <- prod(as.double(rest))
  known <- prod(as.double(ts[ts != -1L]))
  if (!length(unknown)) {
    if (n != known) {
      abort_arg(arg, sprintf("an array whose samples have %.0f elements, as `target_shape` %s (the layer \"%s\")",
                             known, fmt_shape(ts), self$name),
                sprintf("shape %s (%.0f elements per sample)", fmt_shape(shape), n))
    }
    return(as.integer(c(shape[1L], ts)))
  }
  if (known == 0 || n %% known != 0) {
    abort_arg(arg, sprintf(paste0("an array whose samples have a multiple of %.0f elements, to fit `target_shape` ",
                                  "%s (the layer \"%s\")"), known, fmt_shape(ifelse(ts == -1L, NA, ts)), self$name),
              sprintf("shape %s (%.0f elements per sample)", fmt_shape(shape), n))
  }
  out <- ts
  out[unknown] <- as.integer(n / known)
  as.integer(c(shape[1L], out))
}

#' @noRd
reshape_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  x <- check_layer_input(inputs)
  d <- dim(x)
  single_input_mask(masks, d)
  ensure_built(self, d)
  out <- reshape_output_shape(self, d)
  f64 <- is_float64(self)
  flat <- cpp_flatten(x, seq_along(d) - 1L, f64)                 # (B, P), each sample row-major
  y <- cpp_unflatten(flat, out, seq_along(out) - 1L, f64)
  list(output = y, cache = list(x_dims = d, out_dims = out), mask = NULL)
}

#' @noRd
reshape_backward <- function(self, cache, grad_output) {
  g <- check_grad_output(grad_output, cache$out_dims)
  f64 <- is_float64(self)
  flat <- cpp_flatten(g, seq_along(cache$out_dims) - 1L, f64)
  dx <- cpp_unflatten(flat, cache$x_dims, seq_along(cache$x_dims) - 1L, f64)
  list(inputs = dx, weights = named_weight_grads(self, list()))
}

# ---- Permute ------------------------------------------------------------------

#' Permute layer
#'
#' Permutes the axes after the batch axis, as Keras's `Permute`: `dims` is a
#' permutation of `1:k` for inputs of rank `k + 1`, numbering the axes after
#' the batch axis from 1 (`dims = c(2, 1)` swaps the two axes of a (batch,
#' time, features) input). The layer has no weights and drops the input
#' mask.
#'
#' @inheritParams layer_dense
#' @param dims A permutation of `1:k`: output axis `i + 1` is input axis
#'   `dims[i] + 1`.
#' @param ... Named layer options: `name` (default `"permute"`, ...),
#'   `dtype` (`"float32"` or `"float64"`), `trainable`.
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object`.
#' @export
#' @examples
#' x <- array(1:24, c(2, 3, 4))
#' y <- layer_permute(x, c(2, 1))
#' dim(y)                       # 2 4 3
#' all(y[1, , ] == t(x[1, , ]))
layer_permute <- function(object, dims, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  if (missing(dims)) abort_arg("dims", "supplied: a permutation of 1:k (the axes after the batch axis)")
  cfg <- list(dims = check_layer_dims(dims))
  extra <- check_layer_dots(list(...), base_layer_options(), "layer_permute()")
  self <- new_layer_state("Permute", "permute", extra$name, extra$dtype, extra$trainable, cfg)
  compose_layer(object, new_layer_object(self, protocol_layer_function))
}

#' @noRd
check_layer_dims <- function(dims) {
  if (is.list(dims) && !is.object(dims) && all(lengths(dims) == 1L)) dims <- unlist(dims)
  ok <- is.numeric(dims) && !is.object(dims) && is.null(dim(dims)) && length(dims) >= 1L && !anyNA(dims) &&
    all(is.finite(dims)) && all(dims == round(dims))
  if (!ok || !identical(sort(as.integer(dims)), seq_along(dims))) {
    abort_arg("dims", paste0("a permutation of 1:k, numbering the axes after the batch axis from 1 ",
                             "(e.g. c(2, 1))"),
              if (is.numeric(dims) && length(dims) <= 20L) paste(dims, collapse = ", ") else describe_value(dims))
  }
  as.integer(dims)
}

#' @noRd
permute_check_rank <- function(self, shape, arg) {
  k <- length(self$config$dims)
  if (length(shape) != k + 1L) {
    abort_arg(arg, sprintf("an array of rank %d (batch and the %d axes `dims` permutes)", k + 1L, k),
              sprintf("rank %d (shape %s)", length(shape), fmt_shape(shape)))
  }
}

#' @noRd
permute_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  x <- check_layer_input(inputs)
  d <- dim(x)
  single_input_mask(masks, d)
  permute_check_rank(self, d, "inputs")
  ensure_built(self, d)
  perm <- c(1L, self$config$dims + 1L)
  y <- reshape_in_dtype(self, aperm.default(x, perm), d[perm])
  list(output = y, cache = list(perm = perm, out_dims = d[perm]), mask = NULL)
}

#' @noRd
permute_backward <- function(self, cache, grad_output) {
  g <- check_grad_output(grad_output, cache$out_dims)
  inv <- order(cache$perm)
  dx <- reshape_in_dtype(self, aperm.default(g, inv), cache$out_dims[inv])
  list(inputs = dx, weights = named_weight_grads(self, list()))
}

# ---- RepeatVector ------------------------------------------------------------

#' Repeat vector layer
#'
#' Repeats each sample of a (batch, features) input `n` times: the output
#' is (batch, n, features), as Keras's `RepeatVector`. The layer has no
#' weights and drops the input mask.
#'
#' @inheritParams layer_dense
#' @param n The number of repetitions (a whole number >= 1).
#' @param ... Named layer options: `name` (default `"repeat_vector"`, ...),
#'   `dtype` (`"float32"` or `"float64"`), `trainable`.
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object`.
#' @export
#' @examples
#' x <- matrix(1:6, 2)
#' layer_repeat_vector(x, 3)[1, , ]   # x[1, ] in each of 3 rows
layer_repeat_vector <- function(object, n, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  if (missing(n)) abort_arg("n", "supplied: the number of repetitions (a whole number >= 1)")
  cfg <- list(n = check_whole(n, "n", min = 1L))
  extra <- check_layer_dots(list(...), base_layer_options(), "layer_repeat_vector()")
  self <- new_layer_state("RepeatVector", "repeat_vector", extra$name, extra$dtype, extra$trainable, cfg)
  compose_layer(object, new_layer_object(self, protocol_layer_function))
}

#' @noRd
repeat_vector_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  x <- check_layer_input(inputs, min_rank = 2L)
  d <- dim(x)
  single_input_mask(masks, d)
  if (length(d) != 2L) {
    abort_arg("inputs", "an array of rank 2 (batch, features)", sprintf("rank %d (shape %s)", length(d), fmt_shape(d)))
  }
  ensure_built(self, d)
  n <- self$config$n
  out <- c(d[1L], n, d[2L])
  check_size(out, "inputs", sprintf("the output of layer \"%s\"", self$name))
  # column j = (f - 1) * n + i of x[, cols] is x[, f]: element (b, i, f) of the output
  y <- reshape_in_dtype(self, x[, rep(seq_len(d[2L]), each = n), drop = FALSE], out)
  list(output = y, cache = list(x_dims = d, out_dims = out), mask = NULL)
}

#' @noRd
repeat_vector_backward <- function(self, cache, grad_output) {
  g <- check_grad_output(grad_output, cache$out_dims)
  d <- cache$x_dims
  dx <- rowSums(aperm.default(g, c(1L, 3L, 2L)), dims = 2L)   # the sum over the n repetitions
  list(inputs = reshape_in_dtype(self, dx, d), weights = named_weight_grads(self, list()))
}

# ---- registration --------------------------------------------------------------------

# Replaces a property of a registered class (register_protocol_layer() puts
# the common properties first, so a class's own `supports_masking` would
# not be found).
#' @noRd
override_layer_property <- function(class_name, name, getter) {
  def <- .layer_classes[[class_name]]
  def$properties[[name]] <- getter
  assign(class_name, def, envir = .layer_classes)
  invisible(NULL)
}

#' @noRd
register_reshaping_layers <- function() {
  register_protocol_layer(
    "Reshape",
    properties = list(target_shape = function(self) self$config$target_shape),
    describe = function(self) describe_built(self, paste0("target_shape=", fmt_shape(self$config$target_shape))),
    get_config = function(self) c(base_layer_config(self), self$config["target_shape"]),
    from_config = function(config) layer_from_config(layer_reshape, config, "target_shape"),
    build = weightless_build(),
    compute_output_shape = function(self, input_shape, args = list()) {
      reshape_output_shape(self, as_input_shape(input_shape), "input_shape")
    },
    forward = reshape_forward, backward = reshape_backward)
  register_protocol_layer(
    "Permute",
    properties = list(dims = function(self) self$config$dims),
    describe = function(self) describe_built(self, paste0("dims=", fmt_shape(self$config$dims))),
    get_config = function(self) c(base_layer_config(self), self$config["dims"]),
    from_config = function(config) layer_from_config(layer_permute, config, "dims"),
    build = function(self, input_shape) {
      input_shape <- as_input_shape(input_shape)
      permute_check_rank(self, input_shape, "input_shape")
      weightless_build()(self, input_shape)
    },
    compute_output_shape = function(self, input_shape, args = list()) {
      input_shape <- as_input_shape(input_shape)
      permute_check_rank(self, input_shape, "input_shape")
      input_shape[c(1L, self$config$dims + 1L)]
    },
    forward = permute_forward, backward = permute_backward)
  register_protocol_layer(
    "RepeatVector",
    properties = list(n = function(self) self$config$n),
    describe = function(self) describe_built(self, sprintf("n=%d", self$config$n)),
    get_config = function(self) c(base_layer_config(self), self$config["n"]),
    from_config = function(config) layer_from_config(layer_repeat_vector, config, "n"),
    build = weightless_build(rank = 2L),
    compute_output_shape = function(self, input_shape, args = list()) {
      input_shape <- as_input_shape(input_shape)
      if (length(input_shape) != 2L) {
        abort_arg("input_shape", "a shape of rank 2 (batch, features)", fmt_shape(input_shape))
      }
      c(input_shape[1L], self$config$n, input_shape[2L])
    },
    forward = repeat_vector_forward, backward = repeat_vector_backward)
  for (cls in c("Reshape", "Permute", "RepeatVector")) {  # Keras's classes drop the mask
    override_layer_property(cls, "supports_masking", function(self) FALSE)
  }
}
