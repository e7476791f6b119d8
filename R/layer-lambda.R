# The Lambda layer (keras3's layer_lambda(), Keras's
# keras/src/layers/core/lambda_layer.py): an R function of tensors as a
# layer. The function is traced, as a custom layer's call() is
# (layer-custom-trace.R): it runs once per input signature on placeholders
# while a trace frame is active, so its op_*() calls (and arithmetic, `[`,
# layers it calls) record a graph; forward and backward run that graph with
# the graph runner (model-graph.R), so every op_* body is differentiable and
# a float32 Lambda computes what Keras's float32 ops compute. Traces are
# cached per (input shapes, dtypes, mask shapes, training), the last 16 kept.
#
# Masks (as Keras): without `mask` the layer does not support masking and
# drops the input mask; `mask` a function (inputs, mask) is traced with the
# body and gives the output mask; any other `mask` is the output mask as is.
# A function whose formals include `mask` / `training` receives the input
# mask (a bool tensor, or NULL) / the training flag.
#
# The function is R code, not data: get_config() refuses (as Keras refuses
# to load a Python lambda in safe mode), so save_model() does too; the layer
# itself survives saveRDS().

.lambda_trace_limit <- 16L

#' Lambda layer
#'
#' Wraps an R function of tensors as a layer, as Keras's `Lambda`. The
#' function `f(inputs, ...)` receives the layer's input (a tensor, or a
#' list of tensors when the layer is called on a list) and should compute
#' with `op_*()` functions, arithmetic and indexing; it is traced into a
#' graph, so the layer works on arrays, in models and in [fit()], with
#' gradients. The layer has no weights.
#'
#' If `f` has an argument `mask`, it receives the input's mask (a logical
#' tensor of the input's shape without its last axis, or `NULL`); if it has
#' an argument `training`, the training flag. By default the layer drops
#' the input mask (Keras's Lambda does not support masking); give `mask` to
#' set the output mask.
#'
#' Saving: `f` is R code, and model files hold data only, so [get_config()]
#' and [save_model()] refuse a model with a Lambda layer (as Keras refuses to
#' load Python lambdas unless unsafe deserialization is enabled). Save its
#' weights with [save_model_weights()], or the whole object with
#' [saveRDS()]; or write a custom layer with [Layer()], whose code is
#' defined in the session that loads it.
#'
#' @inheritParams layer_dense
#' @param f A function of the input tensor(s): `f(inputs, ...)`, with
#'   further arguments from `arguments` and, if it has them, `mask` and
#'   `training`.
#' @param output_shape `NULL` (inferred by tracing `f`), the output shape
#'   without the batch axis (`NA` for unknown sizes), or a function of the
#'   input shape (batch first) returning the output shape (batch first).
#' @param mask `NULL` (no output mask), a function `function(inputs, mask)`
#'   of tensors returning the output mask (traced like `f`), or a fixed
#'   logical mask.
#' @param arguments `NULL` or a named list of further arguments of `f`.
#' @param ... Named layer options: `name` (default `"lambda"`, ...),
#'   `dtype` (`"float32"` or `"float64"`), `trainable`.
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object`.
#' @export
#' @examples
#' x <- array(rnorm(2 * 3 * 4), c(2, 3, 4))
#' scale <- layer_lambda(f = function(x, k) x * k, arguments = list(k = 2))
#' all.equal(scale(x), 2 * x, tolerance = 1e-6)
#' layer_lambda(x, function(x) op_sum(x, axis = -1))   # (2, 3)
layer_lambda <- function(object, f, output_shape = NULL, mask = NULL, arguments = NULL, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  if (missing(f)) abort_arg("f", "supplied: a function of the input tensor(s), e.g. function(x) x * 2")
  if (!is.function(f)) {
    abort_arg("f", "an R function of the input tensor(s), e.g. function(x) op_exp(x)", describe_value(f))
  }
  if (!is.null(output_shape) && !is.function(output_shape)) output_shape <- normalize_shape(output_shape, "output_shape")
  if (!is.null(mask) && !is.function(mask)) {
    ok <- (is.logical(mask) || is.numeric(mask)) && !is.object(mask) && !anyNA(mask) &&
      (is.logical(mask) || all(mask == 0 | mask == 1))
    if (!ok) abort_arg("mask", "NULL, a function(inputs, mask) or a logical mask", describe_value(mask))
  }
  if (is.null(arguments)) arguments <- list()
  if (!is.list(arguments) || is.object(arguments) ||
      (length(arguments) && (is.null(names(arguments)) || any(!nzchar(names(arguments)))))) {
    abort_arg("arguments", "NULL or a named list of further arguments of `f`", describe_value(arguments))
  }
  extra <- check_layer_dots(list(...), base_layer_options(), "layer_lambda()")
  cfg <- list(f = f, output_shape = output_shape, mask = mask, arguments = arguments)
  self <- new_layer_state("Lambda", "lambda", extra$name, extra$dtype, extra$trainable, cfg)
  self$traces <- list()
  compose_layer(object, new_layer_object(self, protocol_layer_function))
}

# ---- tracing --------------------------------------------------------------------

# A trace of f (and of the mask function) for inputs `specs` (list of
# list(shape, dtype)), input mask shapes `mask_shapes` (aligned with the
# inputs, NULL entries) and `training`. Returns list(graph, n_inputs,
# n_masks, mask_out (TRUE when the graph's second output is the output
# mask), out_shape, out_dtype).
#' @noRd
lambda_make_trace <- function(self, specs, list_input, mask_shapes, training) {
  cfg <- self$config
  f <- cfg$f
  fmls <- names(formals(f))
  phs <- lapply(seq_along(specs), function(i) {
    new_placeholder_tensor(specs[[i]]$shape, specs[[i]]$dtype, paste0(self$name, "/input_", i))
  })
  mask_phs <- list()
  mask_arg <- NULL
  has_mask <- !all(vapply(mask_shapes, is.null, logical(1)))
  if (has_mask) {
    mask_arg <- vector("list", length(specs))
    for (i in seq_along(mask_shapes)) {
      if (is.null(mask_shapes[[i]])) next
      ph <- new_placeholder_tensor(mask_shapes[[i]], "bool", paste0(self$name, "/mask_", i))
      mask_phs[[length(mask_phs) + 1L]] <- ph
      mask_arg[i] <- list(ph)
    }
    if (!list_input) mask_arg <- mask_arg[[1L]]
  }
  inputs <- if (list_input) phs else phs[[1L]]
  args <- c(list(inputs), cfg$arguments)
  if ("mask" %in% fmls && !("mask" %in% names(cfg$arguments))) args["mask"] <- list(mask_arg)
  if ("training" %in% fmls && !("training" %in% names(cfg$arguments))) args$training <- training
  res <- with_trace_frame({
    frame <- trace_frame()
    frame$losses <- list()
    out <- tryCatch(do.call(f, args),
      error = function(e) {
        abort_msg(sprintf("The function of Lambda layer \"%s\" failed on inputs of shape %s: %s", self$name,
                          paste(vapply(specs, function(s) fmt_shape(s$shape), ""), collapse = ", "),
                          conditionMessage(e)), class = "multihead_error_argument")
      })
    out_mask <- if (is.function(cfg$mask)) cfg$mask(inputs, mask_arg) else NULL
    list(out = out, mask = out_mask)
  })
  out <- res$out
  if (is_variable(out)) out <- variable_tensor(out)
  if (!is_symbolic(out)) {
    abort_msg(sprintf(paste0("The function of Lambda layer \"%s\" must return one tensor computed from its ",
                             "inputs with op_*() functions; it returned %s."), self$name, describe_value(out)),
              class = "multihead_error_argument")
  }
  outs <- list(out)
  m <- res$mask
  if (is_variable(m)) m <- variable_tensor(m)
  mask_out <- is_symbolic(m)
  if (mask_out) outs[[2L]] <- m
  graph <- build_graph(c(phs, mask_phs), outs, self$name)
  list(graph = graph, n_inputs = length(phs), n_masks = length(mask_phs), mask_out = mask_out,
       out_shape = out$shape, out_dtype = out$dtype)
}

#' @noRd
lambda_cached_trace <- function(self, key, specs, list_input, mask_shapes, training) {
  for (t in self$traces) if (identical(t$key, key)) return(t$trace)
  tr <- lambda_make_trace(self, specs, list_input, mask_shapes, training)
  traces <- c(self$traces, list(list(key = key, trace = tr)))
  if (length(traces) > .lambda_trace_limit) traces <- traces[-1L]
  self$traces <- traces
  tr
}

# ---- the protocol ------------------------------------------------------------------

#' @noRd
lambda_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  list_input <- is.list(inputs) && !is.object(inputs)
  xs <- if (list_input) inputs else list(inputs)
  if (!length(xs)) abort_arg("inputs", "an array or a non-empty list of arrays", "an empty list")
  for (i in seq_along(xs)) {
    x <- xs[[i]]
    if (!((is.numeric(x) || is.logical(x)) && !is.object(x))) {
      abort_arg(if (list_input) sprintf("inputs[[%d]]", i) else "inputs", "a numeric or logical array",
                describe_value(x))
    }
    if (is.null(dim(x))) dim(x) <- length(x)
    if (is.double(x)) {
      if (!cpp_all_finite(x, mh_threads())) {
        abort_arg(if (list_input) sprintf("inputs[[%d]]", i) else "inputs", "finite: it contains NA, NaN or Inf")
      }
      if (!is_float64(self)) x <- round_float32(x)
    }
    xs[[i]] <- x
  }
  if (!is.null(masks) && !list_input) masks <- list(masks)
  mlist <- vector("list", length(xs))
  if (!is.null(masks)) {
    if (!is.list(masks) || is.object(masks) || length(masks) != length(xs)) {
      abort_arg("mask", sprintf("NULL or a list of %d masks (NULL entries allowed), one per input", length(xs)),
                describe_value(masks))
    }
    for (i in seq_along(xs)) {
      if (is.null(masks[[i]])) next
      d <- dim(xs[[i]])
      mlist[[i]] <- check_position_mask(masks[[i]], d[-length(d)], if (list_input) sprintf("mask[[%d]]", i) else "mask")
    }
  }
  if (!isTRUE(self$built)) {
    self$build_shapes <- batchless_shape(dim(xs[[1L]]))
    self$built <- TRUE
  }
  specs <- lapply(xs, function(x) list(shape = as.integer(dim(x)), dtype = eager_tensor_dtype(x, self$dtype)))
  mask_shapes <- lapply(mlist, function(m) if (!is.null(m)) as.integer(dim(m)))
  training <- isTRUE(training)
  key <- list(specs, list_input, mask_shapes, training)
  tr <- lambda_cached_trace(self, key, specs, list_input, mask_shapes, training)
  vals <- c(xs, Filter(Negate(is.null), mlist))
  run <- run_graph_forward(tr$graph, vals, training = training, keep = TRUE)
  out <- run$outputs[[1L]]
  mask <- NULL
  m <- self$config$mask
  if (tr$mask_out) mask <- as.logical_array(run$outputs[[2L]])
  else if (!is.null(m) && !is.function(m)) mask <- as.logical_array(m)
  list(output = out, mask = mask,
       cache = list(run = run, trace = tr, list_input = list_input, in_dims = lapply(xs, dim),
                    in_float = vapply(xs, is.double, logical(1)), out_dims = value_shape(out)))
}

#' @noRd
lambda_backward <- function(self, cache, grad_output) {
  g <- check_grad_output(grad_output, cache$out_dims)
  tr <- cache$trace
  grads <- list(g)
  if (tr$mask_out) grads[2L] <- list(NULL)
  back <- withCallingHandlers(run_graph_backward(tr$graph, cache$run, grads),
    multihead_error_no_gradient = function(e) {
      abort_msg(sprintf("%s (inside Lambda layer \"%s\")", conditionMessage(e), self$name),
                class = "multihead_error_no_gradient")
    })
  dx <- lapply(seq_len(tr$n_inputs), function(i) {
    gi <- back$inputs[[i]]
    if (!cache$in_float[i]) return(NULL)  # integer or logical inputs: no gradient
    if (is.null(gi)) return(array(0, cache$in_dims[[i]]))  # f does not use this input
    array(as.double(gi), cache$in_dims[[i]])
  })
  weights <- if (length(ls(back$weights, all.names = TRUE))) back$weights else named_weight_grads(self, list())
  list(inputs = if (cache$list_input) dx else dx[[1L]], weights = weights)
}

#' @noRd
lambda_output_shape <- function(self, input_shape, args = list()) {
  os <- self$config$output_shape
  list_input <- is.list(input_shape) && !is.object(input_shape)  # a list of shapes: a call on a list
  shapes <- if (list_input) lapply(input_shape, as_input_shape) else list(as_input_shape(input_shape))
  if (is.function(os)) {
    res <- os(if (list_input) shapes else shapes[[1L]])
    return(as_input_shape(res, "output_shape"))
  }
  if (!is.null(os)) return(c(shapes[[1L]][1L], os))
  specs <- lapply(shapes, function(s) list(shape = s, dtype = self$dtype))
  tr <- tryCatch(lambda_make_trace(self, specs, list_input, vector("list", length(shapes)), FALSE),
                 multihead_error = function(e) {
                   abort_msg(sprintf(paste0("Could not infer the output shape of Lambda layer \"%s\" for input ",
                                            "shape %s (%s) Give `output_shape` to layer_lambda()."),
                                     self$name, paste(vapply(shapes, fmt_shape, ""), collapse = ", "),
                                     conditionMessage(e)), class = "multihead_error_shape")
                 })
  tr$out_shape
}

#' @noRd
lambda_refuse_config <- function(self) {
  abort_msg(sprintf(paste0("Lambda layer \"%s\" holds an R function (`f`), which a configuration or model file ",
                           "cannot hold: model files are data, as Keras refuses to load Python lambdas unless ",
                           "unsafe deserialization is enabled. Save the weights with save_model_weights(), the ",
                           "whole object with saveRDS(), or write a custom layer with Layer()."), self$name),
            class = "multihead_error_unsupported")
}

#' @noRd
register_lambda_layer <- function() {
  register_protocol_layer(
    "Lambda",
    properties = list(f = function(self) self$config$f,
                      arguments = function(self) self$config$arguments,
                      output_shape = function(self) self$config$output_shape,
                      mask = function(self) self$config$mask),
    describe = function(self) describe_built(self, ""),
    get_config = lambda_refuse_config,
    # from a list built in R: Keras's keys, `function` holding the R function
    from_config = function(config) {
      args <- config[intersect(names(config), c(base_layer_options(), "output_shape", "mask", "arguments"))]
      args$f <- config[["function"]]
      do.call(layer_lambda, c(list(NULL), args), quote = TRUE)
    },
    build = function(self, input_shape) {
      check_not_built(self)
      self$build_shapes <- if (is.list(input_shape)) as_input_shape(input_shape[[1L]]) else as_input_shape(input_shape)
      self$built <- TRUE
      invisible(NULL)
    },
    compute_output_shape = lambda_output_shape,
    forward = lambda_forward, backward = lambda_backward)
  override_layer_property("Lambda", "supports_masking", function(self) !is.null(self$config$mask))
}
