# The Embedding layer (keras3's layer_embedding()): a lookup of rows of an
# (input_dim, output_dim) table by integer ids from 0, forward and backward
# (a deterministic scatter-add) in C++ (src/core/embedding.h).

#' Embedding layer
#'
#' Turns integer ids into dense vectors: an input of shape (batch, ...) of
#' ids in `0, ..., input_dim - 1` (Keras's 0-based ids; whole numbers stored
#' as doubles are accepted) gives an output of shape (batch, ...,
#' `output_dim`) whose entries are rows of the `embeddings` weight
#' (`input_dim`, `output_dim`). Ids outside that range, non-integers and NA
#' are errors.
#'
#' With `mask_zero = TRUE`, id 0 is padding: the output carries a mask,
#' `TRUE` where the id is not 0, which layers that support masking use
#' (e.g. [layer_global_average_pooling_1d()] averages over the unmasked steps
#' only; [layer_dense()], [layer_dropout()] and [layer_layer_normalization()]
#' pass it on). [backprop()] returns the gradient with respect to the
#' embeddings (rows of repeated ids summed) and `NULL` for the ids.
#'
#' @inheritParams layer_dense
#' @param input_dim Size of the vocabulary: ids run from 0 to `input_dim - 1`.
#' @param output_dim Size of each embedding vector.
#' @param embeddings_initializer Initializer of the table (default
#'   `"uniform"`: uniform on \[-0.05, 0.05\]).
#' @param embeddings_regularizer Regularizer of the table, or `NULL`.
#' @param embeddings_constraint Constraint of the table, or `NULL`.
#' @param mask_zero Whether id 0 is padding that produces a mask.
#' @param weights `NULL`, or an (`input_dim`, `output_dim`) matrix of
#'   initial embeddings (the layer is then built at once).
#' @param ... Named layer options: `name` (default `"embedding"`, ...),
#'   `dtype` (`"float32"` or `"float64"`, the dtype of the embeddings),
#'   `trainable`.
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object`.
#' @export
#' @examples
#' emb <- layer_embedding(input_dim = 10, output_dim = 4, mask_zero = TRUE)
#' ids <- rbind(c(3, 7, 0, 0), c(1, 2, 9, 0))   # (batch, steps), 0 = padding
#' dim(emb(ids))                                # 2 4 4
#' dim(get_weights(emb)[[1]])                   # 10 4
layer_embedding <- function(object, input_dim, output_dim, embeddings_initializer = "uniform",
                            embeddings_regularizer = NULL, embeddings_constraint = NULL,
                            mask_zero = FALSE, weights = NULL, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  if (missing(input_dim)) abort_arg("input_dim", "supplied: a positive whole number (the vocabulary size)")
  if (missing(output_dim)) abort_arg("output_dim", "supplied: a positive whole number")
  extra <- check_layer_dots(list(...), base_layer_options(), "layer_embedding()")
  cfg <- c(list(input_dim = check_whole(input_dim, "input_dim"),
                output_dim = check_whole(output_dim, "output_dim")),
           as_weight_specs(list(embeddings_initializer = embeddings_initializer,
                                embeddings_regularizer = embeddings_regularizer,
                                embeddings_constraint = embeddings_constraint)),
           list(mask_zero = check_flag(mask_zero, "mask_zero")))
  check_size(c(cfg$input_dim, cfg$output_dim), "output_dim", "the embeddings table (input_dim, output_dim)")
  if (!is.null(weights)) {
    wd <- dim(weights)
    if (!is.numeric(weights) || is.object(weights) || length(wd) != 2L ||
        any(wd != c(cfg$input_dim, cfg$output_dim)) || !cpp_all_finite(weights)) {
      abort_arg("weights", sprintf("NULL or a finite numeric matrix of shape (%d, %d) (input_dim, output_dim)",
                                   cfg$input_dim, cfg$output_dim),
                if (is.numeric(weights)) sprintf("shape %s", fmt_shape(if (is.null(wd)) length(weights) else wd))
                else describe_value(weights))
    }
  }
  self <- new_layer_state("Embedding", "embedding", extra$name, extra$dtype, extra$trainable, cfg)
  if (!is.null(weights)) {
    embedding_build(self)
    self$variables$embeddings <- store_weight(weights, dim(weights), self$dtype)
  }
  compose_layer(object, new_layer_object(self, protocol_layer_function))
}

# The table does not depend on the input shape (which is only recorded).
#' @noRd
embedding_build <- function(self, input_shape = NULL) {
  if (!is.null(input_shape)) input_shape <- as_input_shape(input_shape)
  check_not_built(self)
  cfg <- self$config
  add_layer_weight(self, "embeddings", c(cfg$input_dim, cfg$output_dim), cfg$embeddings_initializer,
                   cfg$embeddings_regularizer, cfg$embeddings_constraint)
  self$build_shapes <- input_shape
  self$built <- TRUE
  invisible(NULL)
}

# Ids: whole numbers in [0, input_dim).
#' @noRd
check_ids <- function(x, input_dim, arg = "inputs") {
  what <- sprintf("an array of integer ids in [0, %d) (input_dim = %d), batch first", input_dim, input_dim)
  if (!is.numeric(x) || is.object(x) || length(x) == 0L) abort_arg(arg, what, describe_value(x))
  if (anyNA(x)) abort_arg(arg, what, "NA")
  bad <- x < 0 | x >= input_dim | x != round(x)
  if (any(bad)) {
    i <- which(bad)[1L]
    abort_arg(arg, what, sprintf("%s at position %d", format(x[i]), i))
  }
  if (is.null(dim(x))) dim(x) <- length(x)
  x
}

#' @noRd
embedding_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  ids <- check_ids(inputs, self$config$input_dim)
  if (!isTRUE(self$built)) embedding_build(self, batchless_shape(dim(ids)))
  check_size(c(dim(ids), self$config$output_dim), "inputs", sprintf("the output of layer \"%s\"", self$name))
  out <- cpp_embedding_forward(ids, self$variables$embeddings, is_float64(self), mh_threads(), self)
  mask <- if (self$config$mask_zero) array(ids != 0, dim(ids)) else NULL
  list(output = out, cache = list(ids = ids, out_dims = dim(out)), mask = mask)
}

#' @noRd
embedding_backward <- function(self, cache, grad_output) {
  g <- check_grad_output(grad_output, cache$out_dims)
  dtable <- cpp_embedding_backward(cache$ids, g, self$variables$embeddings, is_float64(self), mh_threads())
  list(inputs = NULL, weights = named_weight_grads(self, list(embeddings = dtable)))
}

#' @noRd
register_embedding <- function() {
  register_protocol_layer(
    "Embedding",
    properties = list(input_dim = function(self) self$config$input_dim,
                      output_dim = function(self) self$config$output_dim,
                      mask_zero = function(self) self$config$mask_zero,
                      embeddings = function(self) layer_variable_handle(self, "embeddings")),
    describe = function(self) {
      cfg <- self$config
      s <- sprintf("input_dim=%d, output_dim=%d", cfg$input_dim, cfg$output_dim)
      if (cfg$mask_zero) s <- paste0(s, ", mask_zero")
      describe_built(self, s)
    },
    get_config = function(self) {
      cfg <- self$config
      c(base_layer_config(self), list(input_dim = cfg$input_dim, output_dim = cfg$output_dim),
        spec_configs(cfg, c("embeddings_initializer", "embeddings_regularizer", "embeddings_constraint")),
        list(mask_zero = cfg$mask_zero))
    },
    from_config = function(config) {
      layer_from_config(layer_embedding, config, c("input_dim", "output_dim", "embeddings_initializer",
                                                   "embeddings_regularizer", "embeddings_constraint",
                                                   "mask_zero"))
    },
    build = embedding_build,
    compute_output_shape = function(self, input_shape, args = list()) {
      c(as_input_shape(input_shape), self$config$output_dim)
    },
    forward = embedding_forward, backward = embedding_backward,
    keras_object = keras_object_adjust(add = list(activity_regularizer = NULL, quantization_config = NULL)))
}
