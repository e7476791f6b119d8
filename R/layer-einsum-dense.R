# EinsumDense: the class of the attention layer's four (five) projection
# sub-layers. It holds a kernel and an optional bias and computes
#   output = einsum(equation, inputs, kernel) + bias
# for "dense-like" equations, where the kernel's leading axes contract the
# trailing axes of the input and its remaining axes are appended to the
# output, e.g. "abc,cde->abde" (query: (B, T, E) x (E, N, H) -> (B, T, N, H))
# and "abcd,cde->abe" (output: (B, T, N, Hv) x (N, Hv, E) -> (B, T, E)).

# Keras's _build_proj_equation: `free` letters shared by input and output,
# `bound` letters contracted, `out` letters shared by kernel and output.
#' @noRd
projection_equation <- function(free, bound, out) {
  l <- letters
  f <- l[seq_len(free)]
  b <- l[free + seq_len(bound)]
  o <- l[free + bound + seq_len(out)]
  sprintf("%s,%s->%s", paste(c(f, b), collapse = ""), paste(c(b, o), collapse = ""),
          paste(c(f, o), collapse = ""))
}

# Creates a built EinsumDense sub-layer.
#   kernel_shape: (contracted..., out...); bias_shape: out... or NULL
#   fan_in / fan_out: Keras >= 3.15 fans (product of input / output axes)
#   salt: distinguishes sub-layers' random draws under one seeded initializer
#' @noRd
new_einsum_dense <- function(name, equation, kernel_shape, bias_shape, n_contract,
                             kernel_initializer, bias_initializer,
                             kernel_regularizer = NULL, bias_regularizer = NULL,
                             kernel_constraint = NULL, bias_constraint = NULL,
                             activation = NULL, dtype = "float32", trainable = TRUE,
                             salt = 0L, output_shape = NULL) {
  self <- new.env(parent = emptyenv())
  self$class_name <- "EinsumDense"
  self$name <- name
  self$dtype <- dtype
  self$trainable <- trainable
  self$equation <- equation
  self$n_contract <- as.integer(n_contract)
  self$activation <- activation
  self$output_shape <- output_shape
  self$kernel_initializer <- kernel_initializer
  self$bias_initializer <- bias_initializer
  self$kernel_regularizer <- kernel_regularizer
  self$bias_regularizer <- bias_regularizer
  self$kernel_constraint <- kernel_constraint
  self$bias_constraint <- bias_constraint
  self$sublayers <- list()
  self$activity_losses <- list()
  fan_in <- prod(kernel_shape[seq_len(n_contract)])
  fan_out <- prod(kernel_shape[-seq_len(n_contract)])
  self$variables <- list(kernel = store_weight(
    initializer_sample(kernel_initializer, kernel_shape, fan_in, fan_out, salt = salt),
    kernel_shape, dtype))
  self$regularizers <- list(kernel = kernel_regularizer)
  self$constraints <- list(kernel = kernel_constraint)
  self$variable_names <- "kernel"
  if (!is.null(bias_shape)) {
    self$variables$bias <- store_weight(
      initializer_sample(bias_initializer, bias_shape, prod(bias_shape), prod(bias_shape),
                         salt = salt + 100L),
      bias_shape, dtype)
    self$regularizers["bias"] <- list(bias_regularizer)
    self$constraints["bias"] <- list(bias_constraint)
    self$variable_names <- c("kernel", "bias")
  }
  self$built <- TRUE
  new_layer_object(self, function(inputs) einsum_dense_call(self, inputs))
}

# Forward pass: contracts the trailing `n_contract` axes of `inputs` with the
# kernel's leading axes (one GEMM in the C++ core).
#' @noRd
einsum_dense_call <- function(self, inputs) {
  check_numeric_array(inputs, "inputs", min_rank = self$n_contract + 1L)
  kernel <- self$variables$kernel
  kd <- dim(kernel)
  xd <- dim(inputs)
  nc <- self$n_contract
  contracted <- xd[(length(xd) - nc + 1L):length(xd)]
  if (!identical(as.integer(contracted), as.integer(kd[seq_len(nc)]))) {
    abort_arg("inputs", sprintf("an array whose last %d axes have sizes %s (layer \"%s\", equation %s)",
                                nc, fmt_shape(kd[seq_len(nc)]), self$name, self$equation),
              sprintf("shape %s", fmt_shape(xd)))
  }
  out <- cpp_dense_call(inputs, nc, kernel, self$variables$bias,
                        identical(self$dtype, "float64"), mh_threads())
  if (identical(self$activation, "sigmoid")) out[] <- 1 / (1 + exp(-out))
  out
}

#' @noRd
einsum_dense_properties <- function() c(common_layer_properties, list(
  kernel = function(self) layer_variable_handle(self, "kernel"),
  bias = function(self) layer_variable_handle(self, "bias"),
  equation = function(self) self$equation,
  activation = function(self) if (is.null(self$activation)) "linear" else self$activation,
  output_shape = function(self) self$output_shape
))

#' @noRd
einsum_dense_config <- function(self) {
  list(name = self$name, trainable = self$trainable, dtype = self$dtype,
       output_shape = self$output_shape, equation = self$equation,
       activation = if (is.null(self$activation)) "linear" else self$activation,
       bias_axes = einsum_bias_axes(self),
       kernel_initializer = config_or_null(self$kernel_initializer, initializer_config),
       bias_initializer = config_or_null(self$bias_initializer, initializer_config),
       kernel_regularizer = config_or_null(self$kernel_regularizer, regularizer_config),
       bias_regularizer = config_or_null(self$bias_regularizer, regularizer_config),
       activity_regularizer = config_or_null(self$activity_regularizer, regularizer_config),
       kernel_constraint = config_or_null(self$kernel_constraint, constraint_config),
       bias_constraint = config_or_null(self$bias_constraint, constraint_config))
}

# Keras's bias_axes: the trailing output letters the bias spans.
#' @noRd
einsum_bias_axes <- function(self) {
  if (!is.null(self$bias_axes)) return(self$bias_axes)
  if (!("bias" %in% self$variable_names)) return(NULL)
  out_spec <- sub(".*->", "", self$equation)
  k <- length(dim(self$variables$bias))
  substr(out_spec, nchar(out_spec) - k + 1L, nchar(out_spec))
}

#' @noRd
register_einsum_dense <- function() {
  register_protocol_layer(
    "EinsumDense",
    properties = einsum_dense_properties(),
    describe = function(self) {
      s <- sprintf("equation=%s", self$equation)
      if (!is.null(self$variables$kernel)) s <- paste0(s, ", kernel ", fmt_shape(dim(self$variables$kernel)))
      if (!is.null(self$activation) && self$activation != "linear") s <- paste0(s, ", activation=", self$activation)
      describe_built(self, s)
    },
    get_config = einsum_dense_config,
    from_config = function(config) {
      if (is.null(config$output_shape)) {
        abort_arg("config", "an EinsumDense configuration with an `output_shape`", "output_shape = NULL")
      }
      layer_from_config(layer_einsum_dense, config, c(
        "equation", "output_shape", "activation", "bias_axes", "kernel_initializer",
        "bias_initializer", "kernel_regularizer", "bias_regularizer", "kernel_constraint",
        "bias_constraint", "activity_regularizer"))
    },
    build = einsum_dense_build, compute_output_shape = einsum_dense_compute_output_shape,
    forward = einsum_dense_forward, backward = function(self, cache, grad_output, need_inputs = TRUE) {
      projection_run_backward(self, cache, grad_output, need_inputs)
    },
    backward_skips_inputs = TRUE,
    keras_object = keras_object_adjust(add = list(quantization_config = NULL)))
}

# ---- the user layer: layer_einsum_dense() ------------------------------------

#' Einsum dense layer
#'
#' Creates an `EinsumDense` layer with the keras3 signature and Keras 3
#' semantics: `output = activation(einsum(equation, inputs, kernel) + bias)`,
#' computed in C++ as one matrix product. This is the class of the projection
#' sub-layers of [layer_multi_head_attention()].
#'
#' @section Supported equations:
#' `equation` is `"<input>,<kernel>-><output>"` with one letter per axis.
#' Supported are the "dense-like" equations: every input letter is either kept
#' in the output (a free axis) or contracted with the kernel, every kernel
#' letter is either contracted or appears in the output, and the output starts
#' with the input's first (batch) letter. The order of letters is free, so
#' for example `"ab,bc->ac"` (a dense layer), `"abc,cd->abd"` (a dense layer
#' applied at every step), `"abc,cde->abde"` (projection to heads),
#' `"abcd,cde->abe"` (heads back to features) and `"abc,dc->abd"` all work.
#' A leading ellipsis in the input and output, as in `"...b,bc->...c"`,
#' stands for any number of leading axes (the batch axis first). Letters that
#' appear in all three terms (batched products), in only one term
#' (reductions), and other ellipsis positions are errors.
#'
#' @section Weights:
#' `kernel` has one axis per kernel letter, sized from the input (contracted
#' letters) or from `output_shape` (output letters). With `bias_axes`, `bias`
#' spans the output from its first bias letter to the end, with size 1 on
#' the axes of that span that are not bias letters (Keras's rule). The
#' kernel's Glorot fans are the products of its input and of its output axes
#' (Keras >= 3.15). The weights are created when the layer is first called or
#' by `layer$build(input_shape)`; after that the input must have the same
#' rank and contracted sizes. The layer does not propagate masks.
#'
#' @inheritParams layer_dense
#' @param equation The einsum equation, a string (see the section above).
#' @param output_shape The output's shape without the batch axis and without
#'   the axes covered by an ellipsis: whole numbers, with `NA` (or `NULL` in a
#'   list) for free axes whose size comes from the input. A single number is
#'   enough for a one-axis output.
#' @param bias_axes `NULL` (no bias) or a string of output letters the bias
#'   spans, e.g. `"d"`.
#' @param ... Named layer options: `name` (default `"einsum_dense"`,
#'   `"einsum_dense_1"`, ...), `dtype` (`"float32"` or `"float64"`),
#'   `trainable`, `activity_regularizer` (as for [layer_dense()]).
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object`.
#' @export
#' @examples
#' # a dense layer applied at every step: (batch, time, 8) -> (batch, time, 4)
#' ed <- layer_einsum_dense(equation = "abc,cd->abd", output_shape = c(NA, 4),
#'                          bias_axes = "d")
#' x <- array(rnorm(2 * 5 * 8), c(2, 5, 8))
#' dim(ed(x))
#'
#' # projection to 2 heads of size 3: (batch, time, 8) -> (batch, time, 2, 3)
#' heads <- layer_einsum_dense(x, "abc,cde->abde", output_shape = c(NA, 2, 3))
#' dim(heads)
layer_einsum_dense <- function(object, equation, output_shape, activation = NULL, bias_axes = NULL,
                               kernel_initializer = "glorot_uniform", bias_initializer = "zeros",
                               kernel_regularizer = NULL, bias_regularizer = NULL,
                               kernel_constraint = NULL, bias_constraint = NULL, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  if (missing(equation)) abort_arg("equation", "supplied: an einsum equation such as \"abc,cd->abd\"")
  if (missing(output_shape)) abort_arg("output_shape", "supplied: the output's shape without the batch axis")
  extra <- check_layer_dots(list(...), c(base_layer_options(), "activity_regularizer"),
                            "layer_einsum_dense()")
  spec <- parse_einsum_equation(equation)
  output_shape <- check_einsum_output_shape(output_shape, spec)
  bias_axes <- check_einsum_bias_axes(bias_axes, spec)
  activation <- as_activation(activation)
  inits <- as_weight_specs(list(
    kernel_initializer = kernel_initializer, bias_initializer = bias_initializer,
    kernel_regularizer = kernel_regularizer, bias_regularizer = bias_regularizer,
    activity_regularizer = extra$activity_regularizer, kernel_constraint = kernel_constraint,
    bias_constraint = bias_constraint))
  self <- new_layer_state("EinsumDense", "einsum_dense", extra$name, extra$dtype, extra$trainable)
  # The same fields as the attention's sub-layers (new_einsum_dense()).
  self$equation <- spec$equation
  self$spec <- spec
  self$output_shape <- output_shape
  self$bias_axes <- bias_axes
  self$activation <- activation
  for (k in names(inits)) self[[k]] <- inits[[k]]
  compose_layer(object, new_layer_object(self, protocol_layer_function))
}

# Parses "<input>,<kernel>-><output>" into letter vectors and checks that the
# equation is dense-like (see ?layer_einsum_dense).
#' @noRd
parse_einsum_equation <- function(equation, arg = "equation") {
  equation <- check_string(equation, arg)
  eq <- gsub("[[:space:]]", "", equation)
  m <- regmatches(eq, regexec("^([A-Za-z.]+),([A-Za-z]+)->([A-Za-z.]+)$", eq))[[1L]]
  if (!length(m)) {
    abort_arg(arg, "an einsum equation \"<input>,<kernel>-><output>\" such as \"abc,cd->abd\"",
              describe_value(equation))
  }
  unsupported <- function(why) {
    abort_arg(arg, paste0("a dense-like einsum equation (each input letter kept in the output or ",
                          "contracted with the kernel, each kernel letter contracted or in the output, ",
                          "the output starting with the input's batch letter; an ellipsis only at the ",
                          "start of the input and output), such as \"abc,cd->abd\" or \"abc,cde->abde\""),
              sprintf("\"%s\" (%s)", equation, why))
  }
  input <- m[2L]; kernel <- m[3L]; output <- m[4L]
  elided <- startsWith(input, "...") && startsWith(output, "...")
  if (elided) {
    input <- substring(input, 4L)
    output <- substring(output, 4L)
  }
  if (grepl(".", input, fixed = TRUE) || grepl(".", output, fixed = TRUE)) {
    unsupported("an ellipsis other than at the start of both the input and the output")
  }
  chars <- function(s) if (nzchar(s)) strsplit(s, "")[[1L]] else character()
  i <- chars(input); k <- chars(kernel); o <- chars(output)
  for (term in list(list(i, "input"), list(k, "kernel"), list(o, "output"))) {
    if (anyDuplicated(term[[1L]])) {
      unsupported(sprintf("letter \"%s\" repeated in the %s", term[[1L]][anyDuplicated(term[[1L]])],
                          term[[2L]]))
    }
  }
  for (ch in unique(c(i, k, o))) {
    where <- c(ch %in% i, ch %in% k, ch %in% o)
    if (all(where)) unsupported(sprintf("letter \"%s\" is in the input, kernel and output", ch))
    if (sum(where) == 1L) {
      unsupported(sprintf("letter \"%s\" appears only in the %s", ch,
                          c("input", "kernel", "output")[where]))
    }
  }
  if (!elided && (!length(i) || !length(o) || i[1L] != o[1L])) {
    unsupported("the output must start with the input's first (batch) letter")
  }
  if (!any(k %in% i)) unsupported("the kernel contracts no input axis")
  list(equation = equation, input = i, kernel = k, output = o, elided = elided)
}

# The explicit output letters output_shape describes: all but the batch
# letter, or all of them after an ellipsis.
#' @noRd
einsum_shape_letters <- function(spec) if (spec$elided) spec$output else spec$output[-1L]

#' @noRd
check_einsum_output_shape <- function(output_shape, spec, arg = "output_shape") {
  if (is.list(output_shape) && !is.object(output_shape)) {
    output_shape <- unlist(lapply(output_shape, function(s) if (is.null(s)) NA else s))
  }
  want <- einsum_shape_letters(spec)
  ok <- (is.numeric(output_shape) || (is.logical(output_shape) && all(is.na(output_shape)))) &&
    is.null(dim(output_shape)) && length(output_shape) == length(want)
  if (ok) {
    k <- output_shape[!is.na(output_shape)]
    ok <- all(is.finite(k)) && all(k == round(k)) && all(k >= 1) && all(k <= .Machine$integer.max)
  }
  if (ok) {
    kernel_out <- want %in% spec$kernel
    ok <- !anyNA(output_shape[kernel_out])
  }
  if (!ok) {
    abort_arg(arg, sprintf(paste0("%d positive whole number%s (or NA where the size comes from the input), ",
                                  "one per output letter %s of \"%s\"; sizes of kernel letters must be given"),
                           length(want), if (length(want) == 1L) "" else "s",
                           paste0("\"", want, "\"", collapse = ", "), spec$equation),
              describe_value(output_shape))
  }
  as.integer(output_shape)
}

#' @noRd
check_einsum_bias_axes <- function(bias_axes, spec, arg = "bias_axes") {
  if (is.null(bias_axes)) return(NULL)
  allowed <- einsum_shape_letters(spec)
  chars <- if (is.character(bias_axes) && length(bias_axes) == 1L && !is.na(bias_axes) && nzchar(bias_axes))
    strsplit(bias_axes, "")[[1L]] else NULL
  if (is.null(chars) || !all(chars %in% allowed) || anyDuplicated(chars)) {
    abort_arg(arg, sprintf("NULL or a string of distinct output letters of \"%s\" (from %s)",
                           spec$equation, paste0("\"", allowed, "\"", collapse = ", ")),
              describe_value(bias_axes))
  }
  bias_axes
}

# The equation's letters for an input of rank r: elided axes get labels
# ".1", ".2", ... prepended to the input and the output.
#' @noRd
einsum_labels <- function(spec, r, self = NULL, arg = "inputs") {
  i <- spec$input; o <- spec$output
  if (spec$elided) {
    n_el <- r - length(i)
    if (n_el < 1L) {
      abort_arg(arg, sprintf("an array of rank at least %d for equation \"%s\" (a batch axis and one axis per letter)",
                             length(i) + 1L, spec$equation), sprintf("rank %d", r))
    }
    el <- paste0(".", seq_len(n_el))
    i <- c(el, i); o <- c(el, o)
  } else if (r != length(i)) {
    abort_arg(arg, sprintf("an array of rank %d for equation \"%s\" (one axis per input letter)",
                           length(i), spec$equation), sprintf("rank %d", r))
  }
  list(input = i, kernel = spec$kernel, output = o)
}

# The size of every letter from the input shape and output_shape (NA where
# unknown). Errors when a given output size contradicts the input.
#' @noRd
einsum_letter_sizes <- function(spec, labels, input_shape, output_shape) {
  sizes <- stats::setNames(input_shape, labels$input)
  given <- stats::setNames(output_shape, einsum_shape_letters(spec))
  for (ch in names(given)) {
    if (ch %in% labels$input) {
      if (!is.na(given[[ch]]) && !is.na(sizes[[ch]]) && given[[ch]] != sizes[[ch]]) {
        abort_msg(sprintf(paste0("`output_shape` gives size %d to letter \"%s\" of \"%s\", but the input ",
                                 "has size %d on that axis (input shape %s)."),
                          given[[ch]], ch, spec$equation, sizes[[ch]], fmt_shape(input_shape)),
                  class = "multihead_error_shape")
      }
    } else {
      sizes[[ch]] <- given[[ch]]
    }
  }
  sizes
}

#' @noRd
einsum_dense_build <- function(self, input_shape) {
  input_shape <- as_input_shape(input_shape, min_rank = 2L)
  check_not_built(self)
  spec <- self$spec
  labels <- einsum_labels(spec, length(input_shape), arg = "input_shape")
  sizes <- einsum_letter_sizes(spec, labels, input_shape, self$output_shape)
  contracted <- intersect(labels$kernel, labels$input)
  if (anyNA(sizes[contracted])) {
    abort_arg("input_shape", sprintf("a shape whose contracted axes (letters %s of \"%s\") are known",
                                     paste0("\"", contracted, "\"", collapse = ", "), spec$equation),
              fmt_shape(input_shape))
  }
  kernel_shape <- unname(sizes[labels$kernel])
  fan_in <- prod(sizes[contracted])
  fan_out <- prod(sizes[setdiff(labels$kernel, contracted)])
  add_layer_weight(self, "kernel", kernel_shape, self$kernel_initializer, self$kernel_regularizer,
                   self$kernel_constraint, fan_in = fan_in, fan_out = fan_out, size_arg = "output_shape")
  if (!is.null(self$bias_axes)) {
    bias_letters <- strsplit(self$bias_axes, "")[[1L]]
    span <- labels$output[min(match(bias_letters, labels$output)):length(labels$output)]
    bias_shape <- ifelse(span %in% bias_letters, sizes[span], 1L)
    if (anyNA(bias_shape)) {
      abort_arg("input_shape", sprintf("a shape in which the bias axes \"%s\" of \"%s\" have known sizes",
                                       self$bias_axes, spec$equation), fmt_shape(input_shape))
    }
    add_layer_weight(self, "bias", as.integer(bias_shape), self$bias_initializer, self$bias_regularizer,
                     self$bias_constraint)
  }
  self$build_shapes <- input_shape
  self$built <- TRUE
  invisible(NULL)
}

#' @noRd
einsum_dense_compute_output_shape <- function(self, input_shape, args = list()) {
  input_shape <- as_input_shape(input_shape, min_rank = 2L)
  spec <- einsum_spec(self)
  labels <- einsum_labels(spec, length(input_shape), arg = "input_shape")
  if (isTRUE(self$built) && !is.null(self$variables$kernel)) {
    check_einsum_contracted(self, spec, labels, input_shape,
                            stats::setNames(dim(self$variables$kernel), labels$kernel))
  }
  sizes <- einsum_letter_sizes(spec, labels, input_shape, einsum_output_sizes(self, spec))
  unname(sizes[labels$output])
}

# Errors unless the input's contracted axes (dims d, NA = unknown) have the
# kernel's sizes kd (named by letter).
#' @noRd
check_einsum_contracted <- function(self, spec, labels, d, kd) {
  sizes <- stats::setNames(as.integer(d), labels$input)
  contracted <- intersect(labels$kernel, labels$input)
  bad <- contracted[!is.na(sizes[contracted]) & sizes[contracted] != kd[contracted]]
  if (length(bad)) {
    ax <- match(bad[1L], labels$input)
    abort_arg("inputs", sprintf(paste0("an array with size %d on axis %d (letter \"%s\" of \"%s\", contracted ",
                                       "with the kernel), as when layer \"%s\" was built%s"),
                                kd[[bad[1L]]], ax, bad[1L], spec$equation, self$name,
                                if (is.null(self$build_shapes)) "" else
                                  sprintf(" (input shape %s)", fmt_shape(self$build_shapes))),
              sprintf("%d (shape %s)", d[ax], fmt_shape(d)))
  }
}

# The parsed equation of a user layer or of an attention sub-layer.
#' @noRd
einsum_spec <- function(self) {
  if (is.null(self$spec)) self$spec <- parse_einsum_equation(self$equation)
  self$spec
}

# output_shape for the letters of einsum_shape_letters(): the user's, or (for
# the attention's sub-layers, built from their kernel) the kernel's sizes.
#' @noRd
einsum_output_sizes <- function(self, spec) {
  if (!is.null(self$output_shape) && length(self$output_shape) == length(einsum_shape_letters(spec))) {
    return(self$output_shape)
  }
  letters_out <- einsum_shape_letters(spec)
  kd <- stats::setNames(dim(self$variables$kernel), spec$kernel)
  unname(ifelse(letters_out %in% spec$kernel, kd[letters_out], NA_integer_))
}

# The axis orders under which the C++ core computes the call as one GEMM:
# input as (free..., contracted...), kernel as (contracted..., out...),
# output as (free..., out...); plus the periodic bias (see
# core/projection.h) and how to fold its gradient back to the bias's shape.
#' @noRd
einsum_call_plan <- function(self, d) {
  spec <- einsum_spec(self)
  kernel <- self$variables$kernel
  if (!is.null(self$build_shapes)) check_input_rank(self, d, "inputs", length(self$build_shapes))
  labels <- einsum_labels(spec, length(d), self)
  sizes <- stats::setNames(as.integer(d), labels$input)
  kd <- stats::setNames(dim(kernel), labels$kernel)
  contracted <- intersect(labels$kernel, labels$input)
  check_einsum_contracted(self, spec, labels, d, kd)
  free <- labels$input[labels$input %in% labels$output]
  out_letters <- labels$kernel[labels$kernel %in% labels$output]
  all_sizes <- c(sizes, kd[out_letters])
  core_out <- c(free, out_letters)
  plan <- list(x_order = match(c(free, contracted), labels$input) - 1L,
               n_contract = length(contracted),
               k_order = match(c(contracted, out_letters), labels$kernel) - 1L,
               n_kernel_in = length(contracted),
               out_dims = unname(all_sizes[labels$output]),
               out_order = match(core_out, labels$output) - 1L,
               bias = NULL, bias_fold = NULL)
  bias <- self$variables$bias
  if (!is.null(bias)) {
    bias_letters <- strsplit(einsum_bias_axes(self), "")[[1L]]
    plan[c("bias", "bias_fold")] <- periodic_bias(bias, bias_letters, labels$output, core_out, all_sizes)
  }
  plan
}

# The bias as the periodic vector of core/projection.h. The bias spans the
# output letters from its first bias letter on (size 1 where not a bias
# letter); the core's output is row-major over `core_out`. The vector covers
# the smallest trailing block of core axes holding every bias letter, in
# row-major order; `fold` sums a gradient of that vector back into the
# bias's values.
#' @noRd
periodic_bias <- function(bias, bias_letters, out_letters, core_out, sizes) {
  bl <- out_letters[out_letters %in% bias_letters]           # bias letters, output order
  block <- core_out[min(match(bl, core_out)):length(core_out)]
  target <- rev(block)                                       # column-major over rev = row-major
  td <- sizes[target]
  coords <- arrayInd(seq_len(prod(td)), td)
  strides <- cumprod(c(1, sizes[bl]))[seq_along(bl)]
  index <- 1 + as.vector((coords[, match(bl, target), drop = FALSE] - 1) %*% strides)
  values <- as.vector(bias)
  list(values[index], function(db) as.vector(rowsum(as.vector(db), index, reorder = TRUE)))
}

#' @noRd
einsum_dense_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  x <- check_layer_input(inputs, min_rank = 2L)
  d <- dim(x)
  single_input_mask(masks, d)
  if (!isTRUE(self$built)) einsum_dense_build(self, batchless_shape(d))
  activation <- if (is.null(self$activation)) "linear" else self$activation
  plan <- einsum_call_plan(self, d)
  check_size(plan$out_dims, "inputs", sprintf("the output of layer \"%s\"", self$name))
  projection_run_forward(self, x, plan, activation, self$activity_regularizer,
                         mask = NULL)
}
