# The merge layers (Keras's Merge family: keras/src/layers/merging/): Add,
# Subtract, Multiply, Average (elementwise, with Keras's broadcasting) and
# Concatenate. They share the constructor (keras3's `inputs, ...` dispatch),
# the input and mask checks, and the registration; each class supplies its
# forward/backward on the checked inputs.
#
# Layout: inputs are R arrays, batch first, column-major. Elementwise merges
# first give lower-rank inputs size-1 axes right after the batch axis (as
# Keras's Merge.call() does with expand_dims(x, 1)), which is only a change
# of dims in column-major order, then broadcast (size 1 against any size;
# the batch sizes must agree). Values are rounded to the layer's dtype on the
# way in and after each binary operation, so a float32 layer computes what
# Keras's float32 ops compute (double rounding is exact for + - * /).
#
# Masks (Keras 3.15, Merge.compute_mask): Add, Subtract, Average, Multiply
# give the OR of the inputs' masks when every input has one, else no mask;
# Multiply also reads its inputs' masks (same ranks): a masked position of
# an input counts as 1, and when every input has a mask, positions masked in
# all of them are 0. Concatenate: inputs without a mask count as all
# present; the masks are concatenated along `axis` (the OR along the feature
# axis when `axis` is the last one).

# ---- constructors ---------------------------------------------------------------

#' Merge layers: add, subtract, multiply, average, concatenate
#'
#' Combine a list of arrays (or symbolic tensors) into one, as Keras's merge
#' layers do: `layer_add()` sums them, `layer_subtract()` computes
#' `inputs[[1]] - inputs[[2]]` (exactly two inputs), `layer_multiply()`
#' multiplies them, `layer_average()` takes their mean, all elementwise, and
#' `layer_concatenate()` joins them along `axis`. The layers have no weights.
#'
#' Shapes: for the elementwise layers the inputs have one batch size; an
#' input of lower rank gets size-1 axes after its batch axis, and sizes of 1
#' broadcast against any size (so a (batch, time, 1) gate multiplies a
#' (batch, time, features) input). `layer_concatenate()` needs inputs of one
#' rank with equal sizes except along `axis`.
#'
#' Masks follow Keras 3: the elementwise layers give the OR of the inputs'
#' masks when every input has one (no mask otherwise); `layer_multiply()`
#' treats masked positions of an input as 1 and, when every input is
#' masked, sets positions masked in all inputs to 0. `layer_concatenate()`
#' counts inputs without a mask as present and concatenates the masks along
#' `axis` (their OR when `axis` is the feature axis).
#'
#' @param inputs What to compose the layer with (keras3's dispatch): `NULL`
#'   or missing returns the layer; a list of arrays or symbolic tensors (or
#'   one of them, with the others as unnamed arguments in `...`) applies the
#'   layer to them, so `layer_add(x, y)` and `layer_add(list(x, y))` are the
#'   same.
#' @param ... Further inputs (unnamed), and the named layer options `name`
#'   (default the snake_case class name: `"add"`, `"add_1"`, ...), `dtype`
#'   (`"float32"` or `"float64"`), `trainable`.
#' @returns A layer object (a function) if no inputs are given; otherwise the
#'   merged output.
#' @export
#' @examples
#' x <- array(1:6, c(2, 3))
#' y <- array(6:1, c(2, 3))
#' layer_add(x, y)
#' layer_subtract(x, y)
#' layer_multiply(x, y)
#' layer_average(x, y)
#' layer_concatenate(x, y)            # (2, 6)
#' layer_concatenate(x, y, axis = 1)  # (4, 3): along the batch axis
#' add <- layer_add()
#' add(list(x, x, x))
layer_add <- function(inputs, ...) {
  if (!missing(inputs)) force(inputs)  # pipe order: earlier layers are created (and named) first
  merge_layer_new("Add", "add", "layer_add()", if (missing(inputs)) NULL else inputs, list(...))
}

#' @rdname layer_add
#' @export
layer_subtract <- function(inputs, ...) {
  if (!missing(inputs)) force(inputs)
  merge_layer_new("Subtract", "subtract", "layer_subtract()", if (missing(inputs)) NULL else inputs, list(...))
}

#' @rdname layer_add
#' @export
layer_multiply <- function(inputs, ...) {
  if (!missing(inputs)) force(inputs)
  merge_layer_new("Multiply", "multiply", "layer_multiply()", if (missing(inputs)) NULL else inputs, list(...))
}

#' @rdname layer_add
#' @export
layer_average <- function(inputs, ...) {
  if (!missing(inputs)) force(inputs)
  merge_layer_new("Average", "average", "layer_average()", if (missing(inputs)) NULL else inputs, list(...))
}

#' @rdname layer_add
#' @param axis The axis to concatenate along: keras3's convention, 1-based
#'   with the batch axis 1, negative counting from the end (`-1`, the
#'   default, is the last axis).
#' @export
layer_concatenate <- function(inputs, ..., axis = -1L) {
  if (!missing(inputs)) force(inputs)
  axis <- check_merge_axis(axis)
  merge_layer_new("Concatenate", "concatenate", "layer_concatenate()", if (missing(inputs)) NULL else inputs,
                  list(...), config = list(axis = axis))
}

#' @noRd
check_merge_axis <- function(axis) {
  ok <- is.numeric(axis) && !is.object(axis) && length(axis) == 1L && is.null(dim(axis)) && !is.na(axis) &&
    is.finite(axis) && axis == round(axis) && axis != 0 && abs(axis) <= .Machine$integer.max
  if (!ok) {
    abort_arg("axis", "a nonzero whole number (1-based, the batch axis is 1; -1 is the last axis)",
              describe_value(axis))
  }
  as.integer(axis)
}

# The layer, composed with its inputs: keras3 wraps a single input in a list
# and appends the unnamed arguments of `...`.
#' @noRd
merge_layer_new <- function(class_name, prefix, fun, inputs, dots, config = list()) {
  nms <- names(dots)
  if (is.null(nms)) nms <- rep("", length(dots))
  extra <- check_layer_dots(dots[nzchar(nms)], base_layer_options(), fun)
  more <- dots[!nzchar(nms)]
  self <- new_layer_state(class_name, prefix, extra$name, extra$dtype, extra$trainable, config)
  layer <- new_layer_object(self, protocol_layer_function)
  if (is.null(inputs) && !length(more)) return(layer)
  if (inherits(inputs, "multihead_sequential")) {
    abort_arg("inputs", sprintf(paste0("a list of arrays or symbolic tensors: %s merges several tensors and ",
                                       "cannot be added to a sequential model"), fun), "a sequential model")
  }
  first <- if (is.null(inputs)) list() else if (is.list(inputs) && !is.object(inputs)) inputs else list(inputs)
  compose_layer(c(first, more), layer)
}

# ---- shared checks ---------------------------------------------------------------------

# The inputs of a call: a list of checked arrays (at least one; exactly two
# for Subtract).
#' @noRd
merge_input_list <- function(self, inputs) {
  n_req <- merge_kind(self)$n_inputs
  what <- if (is.null(n_req)) "a list of at least one array" else sprintf("a list of exactly %d arrays", n_req)
  if (!is.list(inputs) || is.object(inputs) || length(inputs) < 1L) {
    abort_arg("inputs", sprintf("%s (the arrays %s merges)", what, self$class_name), describe_value(inputs))
  }
  if (!is.null(n_req) && length(inputs) != n_req) {
    abort_arg("inputs", sprintf("%s (%s takes inputs[[1]] - inputs[[2]])", what, self$class_name),
              sprintf("a list of length %d", length(inputs)))
  }
  for (i in seq_along(inputs)) inputs[[i]] <- check_layer_input(inputs[[i]], sprintf("inputs[[%d]]", i))
  unname(inputs)
}

# The input shapes of build() / compute_output_shape(): a list of shapes.
#' @noRd
merge_shape_list <- function(self, input_shape) {
  n_req <- merge_kind(self)$n_inputs
  if (!is.list(input_shape) || is.object(input_shape) || length(input_shape) < 1L ||
      (!is.null(n_req) && length(input_shape) != n_req)) {
    abort_arg("input_shape", sprintf("a list of %s shapes, one per input",
                                     if (is.null(n_req)) "at least one" else sprintf("exactly %d", n_req)),
              describe_value(input_shape))
  }
  lapply(input_shape, as_input_shape)
}

# The output shape of an elementwise merge and each input's shape with
# size-1 axes inserted after the batch axis up to the largest rank; errors
# name `arg` and every shape. NA (unknown) against 1 stays unknown, against
# a known size takes it.
#' @noRd
elementwise_merge_shapes <- function(shapes, class_name, arg = "inputs") {
  r <- max(lengths(shapes))
  padded <- lapply(shapes, function(s) {
    s <- as.integer(s)
    if (length(s) < r) c(s[1L], rep(1L, r - length(s)), s[-1L]) else s
  })
  bad <- function() {
    abort_arg(arg, sprintf(paste0("arrays of one shape, or of shapes that broadcast (%s: one batch size; ",
                                  "each other size 1 or equal to the others)"), class_name),
              paste0("shapes ", paste(vapply(shapes, fmt_shape, ""), collapse = ", ")))
  }
  out <- integer(r)
  for (a in seq_len(r)) {
    sz <- vapply(padded, function(s) s[a], integer(1))
    known <- unique(sz[!is.na(sz)])
    if (a == 1L) {
      if (length(known) > 1L) bad()
      out[a] <- if (length(known)) known else NA_integer_
      next
    }
    big <- known[known != 1L]
    if (length(big) > 1L) bad()
    out[a] <- if (length(big)) big else if (anyNA(sz) || !length(known)) NA_integer_ else 1L
  }
  list(out = out, padded = padded)
}

# Each input's mask (NULL entries allowed) checked against its input, or
# NULL when there are none.
#' @noRd
merge_mask_list <- function(masks, inputs) {
  if (is.null(masks)) return(NULL)
  if (!is.list(masks) || is.object(masks) || length(masks) != length(inputs)) {
    abort_arg("mask", sprintf("NULL or a list of %d masks (NULL entries allowed), one per input", length(inputs)),
              describe_value(masks))
  }
  out <- vector("list", length(inputs))
  for (i in seq_along(masks)) {
    if (is.null(masks[[i]])) next
    d <- dim(inputs[[i]])
    out[[i]] <- check_position_mask(masks[[i]], d[-length(d)], sprintf("mask[[%d]]", i))
  }
  if (all(vapply(out, is.null, logical(1)))) NULL else out
}

# The OR of the masks (Keras's Merge.compute_mask) when every input has one,
# broadcast to `dims` (the output's shape without its last axis) after the
# inputs' size-1 axes were inserted; else NULL.
#' @noRd
merge_or_mask <- function(masks, padded, dims) {
  if (is.null(masks) || any(vapply(masks, is.null, logical(1)))) return(NULL)
  out <- NULL
  for (i in seq_along(masks)) {
    p <- padded[[i]]
    m <- broadcast_value(masks[[i]], p[-length(p)], dims)
    out <- if (is.null(out)) m else out | m
  }
  array(as.logical(out), dims)
}

#' @noRd
merge_round <- function(self, x) if (is_float64(self)) x else round_float32(x)

# An input in the layer's dtype (doubles; float32 values rounded), with dims.
#' @noRd
merge_as_dtype <- function(self, x) {
  d <- dim(x)
  y <- as_dtype_values(x, is_float64(self))
  if (!identical(dim(y), d)) dim(y) <- d
  y
}

# ---- the elementwise merges ------------------------------------------------------------

# Forward shared by Add, Subtract, Multiply, Average: `combine(xs, masks,
# padded, out)` gets the inputs in the layer's dtype with their padded dims
# and returns list(output =, cache =) with the output at the broadcast
# shape `out`.
#' @noRd
elementwise_merge_forward <- function(self, xs, masks, combine) {
  shapes <- lapply(xs, dim)
  plan <- elementwise_merge_shapes(shapes, self$class_name)
  xs <- lapply(seq_along(xs), function(i) {
    x <- merge_as_dtype(self, xs[[i]])
    if (!identical(dim(x), as.integer(plan$padded[[i]]))) dim(x) <- plan$padded[[i]]
    x
  })
  same_rank <- length(unique(lengths(shapes))) == 1L
  # Keras's Merge.call() inserts the size-1 axes with expand_dims(), which drops
  # the masks: only inputs of one rank reach the merge function with theirs.
  res <- combine(xs, if (same_rank) masks, plan$padded, plan$out)
  out <- plan$out
  mask <- merge_or_mask(masks, plan$padded, out[-length(out)])
  res$cache$shapes <- shapes
  res$cache$padded <- plan$padded
  res$cache$out_dims <- out
  list(output = res$output, cache = res$cache, mask = mask)
}

# dLoss/dinput i from its gradient at the broadcast shape: summed over the
# broadcast axes, back to the input's own dims, in the layer's dtype.
#' @noRd
merge_input_grad <- function(self, g, cache, i) {
  g <- reduce_to_shape(g, cache$padded[[i]])
  g <- merge_round(self, if (is.double(g)) g else as.double(g))  # g itself when already float32
  shape <- as.integer(cache$shapes[[i]])
  if (!identical(dim(g), shape)) g <- array(g, shape)  # (a shared g is not copied for nothing)
  g
}

#' @noRd
merge_broadcast <- function(x, p, out) if (identical(p, out)) x else broadcast_value(x, p, out)

#' @noRd
add_combine <- function(self) function(xs, masks, padded, out) {
  if (all(vapply(padded, identical, logical(1), out))) {
    y <- cpp_add_forward(xs, is_float64(self), mh_threads())
    dim(y) <- out
    return(list(output = y, cache = list()))
  }
  y <- merge_broadcast(xs[[1L]], padded[[1L]], out)
  for (i in seq_along(xs)[-1L]) y <- merge_round(self, y + merge_broadcast(xs[[i]], padded[[i]], out))
  list(output = y, cache = list())
}

#' @noRd
subtract_combine <- function(self) function(xs, masks, padded, out) {
  y <- merge_round(self, merge_broadcast(xs[[1L]], padded[[1L]], out) - merge_broadcast(xs[[2L]], padded[[2L]], out))
  list(output = array(y, out), cache = list())
}

#' @noRd
average_combine <- function(self) function(xs, masks, padded, out) {
  y <- add_combine(self)(xs, masks, padded, out)$output
  list(output = array(merge_round(self, y / length(xs)), out), cache = list())
}

# Multiply (keras/src/layers/merging/multiply.py): `masks` (given for inputs
# of one rank only): an input's masked positions count as 1; when every input has a mask the
# output is 0 where all are masked. The cache keeps the factors (after the
# masking) at the output shape for the backward products.
#' @noRd
multiply_combine <- function(self) function(xs, masks, padded, out) {
  use_masks <- !is.null(masks)
  keep <- vector("list", length(xs))  # per input: logical at its padded shape, TRUE where it counts
  if (use_masks) {
    for (i in seq_along(xs)) {
      if (is.null(masks[[i]])) next
      p <- padded[[i]]
      keep[[i]] <- array(as.vector(masks[[i]]), p)  # the mask repeated along the last axis
      xs[[i]][!keep[[i]]] <- 1
    }
  }
  factors <- lapply(seq_along(xs), function(i) merge_broadcast(xs[[i]], padded[[i]], out))
  y <- factors[[1L]]
  for (i in seq_along(factors)[-1L]) y <- merge_round(self, y * factors[[i]])
  zero <- NULL
  if (use_masks && !any(vapply(masks, is.null, logical(1)))) {
    any_kept <- NULL
    for (i in seq_along(keep)) {
      k <- merge_broadcast(keep[[i]], padded[[i]], out)
      any_kept <- if (is.null(any_kept)) k else any_kept | k
    }
    zero <- !any_kept
    y[zero] <- 0
  }
  list(output = array(y, out), cache = list(factors = factors, keep = keep, zero = zero))
}

#' @noRd
elementwise_merge_backward <- function(self, cache, grad_output) {
  g <- check_grad_output(grad_output, cache$out_dims)
  if (!is.double(g)) g <- array(as.double(g), cache$out_dims)
  n <- length(cache$shapes)
  grads <- switch(self$class_name,
    Add = lapply(seq_len(n), function(i) merge_input_grad(self, g, cache, i)),
    Subtract = list(merge_input_grad(self, g, cache, 1L), merge_input_grad(self, -g, cache, 2L)),
    Average = lapply(seq_len(n), function(i) merge_input_grad(self, g / n, cache, i)),
    Multiply = {
      f <- cache$factors
      if (!is.null(cache$zero)) g[cache$zero] <- 0
      # products of the other factors, from prefix and suffix products (no division, so zeros are fine)
      prefix <- vector("list", n); suffix <- vector("list", n)
      acc <- 1
      for (i in seq_len(n)) { prefix[[i]] <- acc; acc <- acc * f[[i]] }
      acc <- 1
      for (i in rev(seq_len(n))) { suffix[[i]] <- acc; acc <- acc * f[[i]] }
      lapply(seq_len(n), function(i) {
        gi <- g * prefix[[i]] * suffix[[i]]
        gi <- reduce_to_shape(array(gi, cache$out_dims), cache$padded[[i]])
        if (!is.null(cache$keep[[i]])) gi[!cache$keep[[i]]] <- 0
        array(merge_round(self, as.double(gi)), cache$shapes[[i]])
      })
    })
  list(inputs = grads, weights = named_weight_grads(self, list()))
}

#' @noRd
elementwise_merge_output_shape <- function(self, input_shape, args = list()) {
  shapes <- merge_shape_list(self, input_shape)
  elementwise_merge_shapes(shapes, self$class_name, "input_shape")$out
}

# ---- Concatenate -------------------------------------------------------------------

# The 0-based axis of rank-r inputs; errors name `axis`.
#' @noRd
concat_axis0 <- function(self, r, arg = "inputs") {
  a <- self$config$axis
  k <- if (a > 0L) a - 1L else r + a
  if (k < 0L || k >= r) {
    abort_arg(arg, sprintf("arrays of a rank that has axis %d (the layer's `axis`)", a),
              sprintf("rank %d", r))
  }
  k
}

# The output shape; errors unless the ranks agree and the sizes agree off the
# concatenation axis (NA matches anything).
#' @noRd
concat_shapes <- function(self, shapes, arg = "inputs") {
  r <- length(shapes[[1L]])
  bad <- function() {
    abort_arg(arg, sprintf("arrays of one rank with equal sizes except on the concatenation axis (`axis` = %d)",
                           self$config$axis),
              paste0("shapes ", paste(vapply(shapes, fmt_shape, ""), collapse = ", ")))
  }
  if (any(lengths(shapes) != r)) bad()
  k <- concat_axis0(self, r, arg)
  out <- as.integer(shapes[[1L]])
  for (s in shapes[-1L]) {
    s <- as.integer(s)
    both <- !is.na(out) & !is.na(s)
    if (any((out != s)[-(k + 1L)][both[-(k + 1L)]])) bad()
    fill <- is.na(out) & !is.na(s)
    fill[k + 1L] <- FALSE
    out[fill] <- s[fill]
  }
  sizes <- vapply(shapes, function(s) as.integer(s)[k + 1L], integer(1))
  out[k + 1L] <- if (anyNA(sizes)) NA_integer_ else sum(sizes)
  list(out = out, k = k)
}

#' @noRd
concat_forward <- function(self, xs, masks) {
  shapes <- lapply(xs, dim)
  plan <- concat_shapes(self, shapes)
  k <- plan$k
  xs <- lapply(xs, function(x) merge_as_dtype(self, x))
  y <- shp_concat_values(xs, shapes, k)
  mask <- NULL
  if (!is.null(masks)) {
    r <- length(plan$out)
    full <- lapply(seq_along(xs), function(i) {
      d <- shapes[[i]][-r]
      if (is.null(masks[[i]])) array(TRUE, d) else masks[[i]]
    })
    if (k == r - 1L) {  # along the features: the OR of the masks
      mask <- full[[1L]]
      for (m in full[-1L]) mask <- mask | m
    } else {
      mask <- shp_concat_values(full, lapply(shapes, function(s) s[-r]), k)
      mask <- array(as.logical(mask), plan$out[-r])
    }
  }
  list(output = y, cache = list(shapes = shapes, k = k, out_dims = plan$out), mask = mask)
}

#' @noRd
concat_backward <- function(self, cache, grad_output) {
  g <- check_grad_output(grad_output, cache$out_dims)
  sizes <- vapply(cache$shapes, function(s) s[cache$k + 1L], integer(1))
  parts <- shp_split_values(g, cache$out_dims, cache$k, sizes)
  parts <- lapply(seq_along(parts), function(i) array(merge_round(self, as.double(parts[[i]])), cache$shapes[[i]]))
  list(inputs = parts, weights = named_weight_grads(self, list()))
}

# ---- the protocol ------------------------------------------------------------------

# What each class does: n_inputs (NULL: any number >= 1), combine (the
# elementwise ones) or the Concatenate functions.
#' @noRd
merge_kind <- function(self) {
  switch(self$class_name,
         Add = list(combine = add_combine),
         Subtract = list(combine = subtract_combine, n_inputs = 2L),
         Multiply = list(combine = multiply_combine),
         Average = list(combine = average_combine),
         Concatenate = list())
}

#' @noRd
merge_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  if (is.list(inputs) && !is.object(inputs) && any(vapply(inputs, is_native_tensor, logical(1)))) {
    res <- merge_native_forward(self, inputs, masks)
    if (!is.null(res)) return(res)
    inputs <- lapply(inputs, native_as_array)  # broadcasting: on R arrays
  }
  xs <- merge_input_list(self, inputs)
  masks <- merge_mask_list(masks, xs)
  kind <- merge_kind(self)
  shapes <- lapply(xs, dim)
  if (is.null(kind$combine)) concat_shapes(self, shapes) else elementwise_merge_shapes(shapes, self$class_name)
  if (!isTRUE(self$built)) merge_build(self, lapply(shapes, batchless_shape))
  if (is.null(kind$combine)) return(concat_forward(self, xs, masks))
  elementwise_merge_forward(self, xs, masks, kind$combine(self))
}

# Add, Subtract and Multiply on native tensors (native-tensor.R) of one
# shape: the C++ result (core/add.h, core/merge_elementwise.h), a native
# tensor. NULL (the caller converts them) when the inputs need broadcasting,
# the layer is float64, or a Multiply input has a mask (masked positions
# count as 1: multiply_combine()). A Multiply's cache keeps its inputs for
# the backward products.
#' @noRd
merge_native_forward <- function(self, inputs, masks) {
  cls <- self$class_name
  if (!cls %in% c("Add", "Subtract", "Multiply") || is_float64(self)) return(NULL)
  xs <- merge_input_list(self, inputs)
  shapes <- lapply(xs, dim)
  if (length(unique(lapply(shapes, as.integer))) != 1L) return(NULL)
  masks <- merge_mask_list(masks, xs)
  if (identical(cls, "Multiply") && !all(vapply(masks, is.null, logical(1)))) return(NULL)
  if (!isTRUE(self$built)) merge_build(self, lapply(shapes, batchless_shape))
  out <- shapes[[1L]]
  y <- if (identical(cls, "Add")) cpp_add_forward(xs, FALSE, mh_threads())
       else cpp_merge_native_forward(cls, xs, mh_threads())
  list(output = y,
       cache = list(shapes = shapes, padded = shapes, out_dims = out,
                    native_factors = if (identical(cls, "Multiply")) xs),
       mask = merge_or_mask(masks, shapes, out[-length(out)]))
}

#' @noRd
merge_backward <- function(self, cache, grad_output) {
  none <- named_weight_grads(self, list())
  if (!is.null(cache$native_factors)) {  # a Multiply run on native tensors: the gradients in C++
    g <- check_grad_output(grad_output, cache$out_dims)
    return(list(inputs = cpp_merge_native_backward("Multiply", cache$native_factors, g, mh_threads()),
                weights = none))
  }
  if (self$class_name %in% c("Add", "Subtract") && is_native_tensor(grad_output) &&
      all(vapply(cache$shapes, function(d) identical(as.integer(d), as.integer(cache$out_dims)), logical(1)))) {
    g <- check_grad_output(grad_output, cache$out_dims)  # float32 already: the first input's gradient as it is
    ins <- if (identical(self$class_name, "Add")) rep(list(g), length(cache$shapes))
           else c(list(g), cpp_merge_native_backward("Subtract", list(), g, mh_threads()))
    return(list(inputs = ins, weights = none))
  }
  grad_output <- native_as_array(grad_output)
  if (identical(self$class_name, "Concatenate")) concat_backward(self, cache, grad_output)
  else elementwise_merge_backward(self, cache, grad_output)
}

#' @noRd
merge_output_shape <- function(self, input_shape, args = list()) {
  if (identical(self$class_name, "Concatenate")) {
    return(concat_shapes(self, merge_shape_list(self, input_shape), "input_shape")$out)
  }
  elementwise_merge_output_shape(self, input_shape)
}

#' @noRd
merge_build <- function(self, input_shape) {
  merge_output_shape(self, input_shape)  # validates the shapes
  shapes <- merge_shape_list(self, input_shape)
  check_not_built(self)
  self$build_shapes <- shapes[[1L]]
  self$built <- TRUE
  invisible(NULL)
}

# Keras's `axis` of Concatenate is 0-based for the non-negative values
# (keras3's R axis 2 is Keras's 1); negative values are the same in both.
#' @noRd
keras_axis_from_r <- function(a) if (a > 0L) a - 1L else a

#' @noRd
r_axis_from_keras <- function(a) if (a >= 0L) as.integer(a) + 1L else as.integer(a)

#' @noRd
register_merge_layers <- function() {
  ctors <- list(Add = layer_add, Subtract = layer_subtract, Multiply = layer_multiply, Average = layer_average)
  for (cls in names(ctors)) {
    local({
      ctor <- ctors[[cls]]
      register_protocol_layer(
        cls,
        properties = list(),
        describe = function(self) describe_built(self, ""),
        get_config = base_layer_config,
        from_config = function(config) {
          args <- config[intersect(names(config), base_layer_options())]
          do.call(ctor, args, quote = TRUE)
        },
        build = merge_build, compute_output_shape = merge_output_shape,
        forward = merge_forward, backward = merge_backward,
        native_tensors = cls %in% c("Add", "Subtract", "Multiply"))
    })
  }
  register_protocol_layer(
    "Concatenate",
    properties = list(axis = function(self) self$config$axis),
    describe = function(self) describe_built(self, sprintf("axis=%d", self$config$axis)),
    get_config = function(self) c(base_layer_config(self), list(axis = keras_axis_from_r(self$config$axis))),
    from_config = function(config) {
      args <- config[intersect(names(config), base_layer_options())]
      if (!is.null(config$axis)) args$axis <- r_axis_from_keras(check_whole(config$axis, "config$axis",
                                                                            min = -.Machine$integer.max))
      do.call(layer_concatenate, args, quote = TRUE)
    },
    build = merge_build, compute_output_shape = merge_output_shape,
    forward = merge_forward, backward = merge_backward)
}
