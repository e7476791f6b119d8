# The lookup layers (keras3's layer_string_lookup() and
# layer_integer_lookup(), Keras's StringLookup / IntegerLookup over
# IndexLookup) on the vocabulary machinery of vocabulary.R; the registration
# the three vocabulary layers share (register_lookup_class()); and the
# exported adapt(), get_vocabulary() and set_vocabulary().

#' String and integer lookup layers
#'
#' Map tokens to vocabulary indices, as Keras's `StringLookup` and
#' `IntegerLookup`: strings (`layer_string_lookup()`) or whole numbers
#' (`layer_integer_lookup()`). The vocabulary is learnt with [adapt()]
#' (tokens ordered by frequency, ties by the token, high to low; the mask and
#' OOV tokens are never learnt) or given with `vocabulary` /
#' [set_vocabulary()]. Indices are 0-based as in Keras: in `"int"` output a
#' mask token (if any) has index 0, then come the `num_oov_indices`
#' out-of-vocabulary (OOV) indices, then the vocabulary. With `invert =
#' TRUE` the layer maps indices back to tokens (OOV indices and unknown
#' indices give `oov_token`).
#'
#' Output modes: `"int"` (the indices, the input's shape), `"one_hot"` (a
#' vocabulary-sized axis added, or replacing a last axis of size 1),
#' `"multi_hot"` and `"count"` (the last axis holds a sample's tokens and is
#' replaced by a vocabulary-sized axis of presence flags or counts) and
#' `"tf_idf"` (counts times the idf weights). In these modes the mask token
#' is not counted.
#'
#' @param object `NULL` or missing (return the layer), a model (add the
#'   layer to it), or the input: a character (string lookup) or numeric
#'   (integer lookup; ids with `invert = TRUE`) array.
#' @param max_tokens `NULL` or the largest vocabulary size, special tokens
#'   included (greater than 1).
#' @param num_oov_indices Number of OOV indices (a whole number >= 0). With
#'   0, an unknown token is an error; with more than 1, integer tokens go to
#'   OOV index `token %% num_oov_indices` (Keras's `"floormod"`); string
#'   lookups support 0 or 1 (Keras hashes strings with TensorFlow's
#'   FarmHash).
#' @param mask_token `NULL` or the token of masked (padding) inputs.
#' @param oov_token The token shown for OOV indices: `"[UNK]"` for strings,
#'   `-1` for integers.
#' @param vocabulary `NULL`, a vector of tokens (optionally starting with
#'   the special tokens, in order), or (string lookup) the path of a text
#'   file with one token per line.
#' @param idf_weights With `output_mode = "tf_idf"` and a `vocabulary`: one
#'   weight per vocabulary entry.
#' @param invert `TRUE` to map indices to tokens (`"int"` output only).
#' @param output_mode `"int"`, `"one_hot"`, `"multi_hot"`, `"count"` or
#'   `"tf_idf"`.
#' @param pad_to_max_tokens Whether encoded outputs have `max_tokens`
#'   columns however small the vocabulary.
#' @param sparse `FALSE` (sparse tensors are TensorFlow's; `TRUE` is an
#'   error).
#' @param encoding `"utf-8"`.
#' @param vocabulary_dtype `layer_string_lookup()`: `NULL` or `"string"`;
#'   `layer_integer_lookup()`: `"int64"` (as Keras).
#' @param name `NULL` or the layer's name.
#' @param ... `dtype`, `trainable` (layer options), and Keras's
#'   configuration entries `vocabulary_size`, `oov_method` (`"floormod"`)
#'   and `salt` (`NULL`).
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object`: integer indices, a double
#'   array of encodings, or (`invert = TRUE`) the tokens.
#' @seealso [adapt()], [get_vocabulary()], [layer_text_vectorization()].
#' @export
#' @examples
#' vocab <- c("a", "b", "c", "d")
#' data <- rbind(c("a", "c", "d"), c("d", "z", "b"))
#' layer <- layer_string_lookup(vocabulary = vocab)
#' layer(data)
#' inverse <- layer_string_lookup(vocabulary = vocab, invert = TRUE)
#' inverse(layer(data))
#'
#' ints <- layer_integer_lookup()
#' adapt(ints, c(12, 36, 1138, 12, 42))
#' get_vocabulary(ints)
#' ints(c(12, 1138, 7))
layer_string_lookup <- function(object, max_tokens = NULL, num_oov_indices = 1L, mask_token = NULL,
                                oov_token = "[UNK]", vocabulary = NULL, idf_weights = NULL, invert = FALSE,
                                output_mode = "int", pad_to_max_tokens = FALSE, sparse = FALSE,
                                encoding = "utf-8", name = NULL, ..., vocabulary_dtype = NULL) {
  if (!missing(object)) force(object)
  if (!is.null(vocabulary_dtype) && !identical(vocabulary_dtype, "string")) {
    abort_arg("vocabulary_dtype", "NULL or \"string\"", describe_value(vocabulary_dtype))
  }
  check_encoding(encoding)
  mask_token <- check_special_token(mask_token, "mask_token", "string", null_ok = TRUE)
  oov_token <- check_special_token(oov_token, "oov_token", "string")
  new_lookup_layer("StringLookup", "string_lookup", "string", object, max_tokens, num_oov_indices, mask_token,
                   oov_token, vocabulary, idf_weights, invert, output_mode, pad_to_max_tokens, sparse, name,
                   list(...), list(encoding = "utf-8"))
}

#' @rdname layer_string_lookup
#' @export
layer_integer_lookup <- function(object, max_tokens = NULL, num_oov_indices = 1L, mask_token = NULL,
                                 oov_token = -1L, vocabulary = NULL, vocabulary_dtype = "int64",
                                 idf_weights = NULL, invert = FALSE, output_mode = "int", sparse = FALSE,
                                 pad_to_max_tokens = FALSE, name = NULL, ...) {
  if (!missing(object)) force(object)
  if (!identical(vocabulary_dtype, "int64")) {
    abort_arg("vocabulary_dtype", "\"int64\" (the only vocabulary dtype of Keras's IntegerLookup)",
              describe_value(vocabulary_dtype))
  }
  mask_token <- check_special_token(mask_token, "mask_token", "int64", null_ok = TRUE)
  oov_token <- check_special_token(oov_token, "oov_token", "int64")
  new_lookup_layer("IntegerLookup", "integer_lookup", "int64", object, max_tokens, num_oov_indices, mask_token,
                   oov_token, vocabulary, idf_weights, invert, output_mode, pad_to_max_tokens, sparse, name,
                   list(...), list(vocabulary_dtype = "int64"))
}

#' @noRd
check_special_token <- function(x, arg, kind, null_ok = FALSE) {
  if (is.null(x) && null_ok) return(NULL)
  ok <- length(x) == 1L && is.null(dim(x)) && !is.na(x) &&
    (if (kind == "string") is.character(x) else is.numeric(x) && is.finite(x) && x == round(x))
  if (!ok) {
    what <- if (kind == "string") "a single string" else "a single whole number"
    abort_arg(arg, if (null_ok) paste(what, "or NULL") else what, describe_value(x))
  }
  if (kind == "string") utf8_strings(x, arg) else as.double(x)
}

#' @noRd
new_lookup_layer <- function(class_name, prefix, kind, object, max_tokens, num_oov_indices, mask_token,
                             oov_token, vocabulary, idf_weights, invert, output_mode, pad_to_max_tokens, sparse,
                             name, dots, own) {
  fun <- sprintf("layer_%s()", prefix)
  extra <- check_layer_dots(dots, c("dtype", "trainable", "vocabulary_size", "has_input_vocabulary",
                                    "oov_method", "salt"), fun)
  max_tokens <- check_max_tokens(max_tokens)
  num_oov_indices <- check_whole(num_oov_indices, "num_oov_indices", min = 0L)
  if (kind == "string" && num_oov_indices > 1L) {
    abort_arg("num_oov_indices", paste0("0 or 1 for strings (Keras spreads string OOV tokens over several ",
                                        "indices with TensorFlow's FarmHash, which multihead does not have)"),
              describe_value(num_oov_indices))
  }
  if (!is.null(extra$oov_method) && !identical(extra$oov_method, "floormod")) {
    abort_arg("oov_method", "\"floormod\" (\"farmhash\" is TensorFlow's hash, not available)",
              describe_value(extra$oov_method))
  }
  if (!is.null(extra$salt)) abort_arg("salt", "NULL (salt applies to FarmHash OOV hashing only)",
                                      describe_value(extra$salt))
  if (identical(output_mode, "binary")) output_mode <- "multi_hot"
  if (identical(output_mode, "tf-idf")) output_mode <- "tf_idf"
  output_mode <- check_choice(output_mode, "output_mode", c("int", "one_hot", "multi_hot", "count", "tf_idf"))
  invert <- check_flag(invert, "invert")
  if (invert && output_mode != "int") {
    abort_arg("invert", sprintf("FALSE unless output_mode is \"int\" (it is \"%s\")", output_mode), "TRUE")
  }
  pad_to_max_tokens <- check_flag(pad_to_max_tokens, "pad_to_max_tokens")
  if (pad_to_max_tokens && is.null(max_tokens)) abort_arg("max_tokens", "set when pad_to_max_tokens = TRUE", "NULL")
  if (!identical(check_flag(sparse, "sparse"), FALSE)) {
    abort_arg("sparse", "FALSE (sparse outputs are TensorFlow tensors; multihead returns dense arrays)", "TRUE")
  }
  if (!is.null(idf_weights) && output_mode != "tf_idf") {
    abort_arg("idf_weights", sprintf("NULL unless output_mode is \"tf_idf\" (it is \"%s\")", output_mode),
              describe_value(idf_weights))
  }
  has_input_vocabulary <- if (is.null(extra$has_input_vocabulary)) !is.null(vocabulary)
    else check_flag(extra$has_input_vocabulary, "has_input_vocabulary")
  if (output_mode == "tf_idf" && has_input_vocabulary && is.null(idf_weights)) {
    abort_arg("idf_weights", "supplied with `vocabulary` when output_mode is \"tf_idf\"")
  }
  vocabulary_size <- check_whole(extra$vocabulary_size, "vocabulary_size", min = 0L, null_ok = TRUE)
  cfg <- c(list(invert = invert, max_tokens = max_tokens, num_oov_indices = num_oov_indices,
                oov_token = oov_token, mask_token = mask_token, output_mode = output_mode, sparse = FALSE,
                pad_to_max_tokens = pad_to_max_tokens,
                idf_weights = if (is.null(idf_weights)) NULL else as.double(idf_weights),
                vocabulary = vocabulary), own)
  self <- new_layer_state(class_name, prefix, name, extra$dtype, extra$trainable, cfg)
  self$lookup <- new_lookup(kind, mask_token, oov_token, num_oov_indices, output_mode, max_tokens,
                            pad_to_max_tokens, invert)
  if (!is.null(vocabulary)) {
    from_file <- kind == "string" && is.character(vocabulary) && length(vocabulary) == 1L && file.exists(vocabulary)
    self$lookup <- lookup_set_vocabulary(self$lookup, vocabulary, idf_weights, self$name)
    if (from_file) {
      self$config$vocabulary <- NULL   # Keras keeps a file's vocabulary as an asset
      has_input_vocabulary <- FALSE
    } else {
      self$config$vocabulary <- as.vector(check_tokens(unlist(vocabulary), self$lookup, "vocabulary"))
    }
  } else if (!is.null(vocabulary_size)) {
    self$lookup$frozen_size <- vocabulary_size
  }
  self$config$vocabulary_size <- self$lookup$frozen_size
  self$lookup$has_input_vocabulary <- has_input_vocabulary
  self$output_dtypes <- list(if (output_mode != "int") config_floatx()
                             else if (invert && kind == "string") "string" else "int64")
  self$built <- TRUE
  compose_layer(object, new_layer_object(self, protocol_layer_function))
}

# ---- call --------------------------------------------------------------------

#' @noRd
lookup_layer_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  lk <- self$lookup
  d <- shape_of(inputs)
  if (lk$invert) {
    if (!is.numeric(inputs) || is.object(inputs) || anyNA(inputs) || any(inputs != round(inputs))) {
      abort_arg("inputs", "an array of whole-number indices (invert = TRUE)", describe_value(inputs))
    }
    out <- lookup_invert(lk, as.vector(inputs))
  } else {
    values <- as.vector(check_tokens(inputs, lk, "inputs"))
    idx <- lookup_index(lk, values)
    if (!identical(lk$output_mode, "int")) {
      out <- lookup_encode(lk, idx, d, self$name)
      return(list(output = out, cache = list(out_dims = dim(out)), mask = NULL))
    }
    out <- as.integer(idx)
  }
  out <- array(out, d)
  list(output = out, cache = list(out_dims = d), mask = NULL)
}

#' @noRd
lookup_layer_output_shape <- function(self, input_shape, args = list()) {
  input_shape <- as_input_shape(input_shape)
  lk <- self$lookup
  mode <- lk$output_mode
  if (identical(mode, "int")) return(input_shape)
  depth <- lookup_depth(lk)
  depth <- if (is.null(depth)) NA_integer_ else as.integer(depth)
  r <- length(input_shape)
  if (identical(mode, "one_hot")) {
    if (r > 1L && identical(input_shape[r], 1L)) return(c(input_shape[-r], depth))
    return(c(input_shape, depth))
  }
  c(input_shape[-r], depth)
}

# adapt() of a lookup layer: every element is a token; documents (for
# tf_idf) are the samples along the first axis.
#' @noRd
lookup_layer_adapt <- function(self, data, batch_size = NULL, steps = NULL) {
  lk <- self$lookup
  if (isTRUE(lk$has_input_vocabulary)) {
    abort_msg(sprintf(paste0("Layer \"%s\" was created with a `vocabulary` and cannot be adapted (as in Keras): ",
                             "use set_vocabulary(), or create the layer without `vocabulary`."), self$name),
              class = "multihead_error_argument")
  }
  if (missing(data)) abort_arg("data", "supplied: an array of tokens")
  values <- check_tokens(data, lk, "data")
  d <- shape_of(data)
  if (length(d) == 1L) d <- c(d, 1L)     # a vector: one token per document, as Keras expands it
  n <- d[1L]
  flat <- as.vector(values)
  parts <- lapply(adapt_batches(n, batch_size, steps), function(rows) {
    # elements of samples `rows` (first axis) in column-major order, and their sample
    m <- matrix(seq_along(flat), n)[rows, , drop = FALSE]
    lookup_count(flat[as.vector(m)], rep(seq_along(rows), ncol(m)), length(rows))
  })
  acc <- lookup_merge_counts(parts)
  self$lookup <- lookup_finalize(lk, acc, self$name)
  invisible(NULL)
}

#' @noRd
lookup_layer_config <- function(self) {
  cfg <- self$config
  out <- c(base_layer_config(self),
           list(invert = cfg$invert, max_tokens = cfg$max_tokens, num_oov_indices = cfg$num_oov_indices,
                oov_token = cfg$oov_token, mask_token = cfg$mask_token, output_mode = cfg$output_mode,
                sparse = FALSE, pad_to_max_tokens = cfg$pad_to_max_tokens),
           if (identical(self$class_name, "IntegerLookup")) list(vocabulary_dtype = "int64"),
           list(idf_weights = cfg$idf_weights, vocabulary = cfg$vocabulary,
                vocabulary_size = self$lookup$frozen_size, oov_method = "floormod", salt = NULL),
           if (identical(self$class_name, "StringLookup")) list(encoding = "utf-8"))
  out
}

#' @noRd
register_lookup_layers <- function() {
  keys <- c("max_tokens", "num_oov_indices", "mask_token", "oov_token", "vocabulary", "idf_weights", "invert",
            "output_mode", "pad_to_max_tokens", "sparse", "vocabulary_size", "oov_method", "salt")
  for (cls in c("StringLookup", "IntegerLookup")) {
    ctor <- if (cls == "StringLookup") layer_string_lookup else layer_integer_lookup
    register_lookup_class(
      cls,
      properties = list(invert = function(self) self$lookup$invert,
                        output_mode = function(self) self$lookup$output_mode,
                        max_tokens = function(self) self$lookup$max_tokens,
                        num_oov_indices = function(self) self$lookup$num_oov_indices,
                        mask_token = function(self) self$lookup$mask_token,
                        oov_token = function(self) self$lookup$oov_token),
      describe = function(self) {
        lk <- self$lookup
        sprintf("output_mode=\"%s\"%s, vocabulary_size=%d", lk$output_mode, if (lk$invert) ", invert" else "",
                lookup_vocabulary_size(lk))
      },
      get_config = lookup_layer_config,
      from_config = local({
        ctor <- ctor
        extra <- if (cls == "StringLookup") c("encoding", "vocabulary_dtype") else "vocabulary_dtype"
        function(config) {
          if (identical(config$oov_method, "floormod")) config$oov_method <- NULL
          layer_from_config(ctor, config, c(keys, extra))
        }
      }),
      compute_output_shape = lookup_layer_output_shape, forward = lookup_layer_forward,
      adapt = lookup_layer_adapt)
  }
}

# ---- registration shared with TextVectorization ------------------------------

# Registers a vocabulary layer class: no weights, no gradient (its inputs
# are tokens); the methods adapt(), get_vocabulary(), set_vocabulary(),
# vocabulary_size(); the vocabulary (when not from the constructor) and
# the idf weights as the class's assets for model files. `save_check`
# (optional) refuses what a model file cannot hold.
#' @noRd
register_lookup_class <- function(class_name, properties, describe, get_config, from_config,
                                  compute_output_shape, forward, adapt, save_check = NULL) {
  build <- function(self, input_shape) {
    if (!is.null(input_shape)) self$build_shapes <- as_input_shape(input_shape)
    self$built <- TRUE
    invisible(NULL)
  }
  backward <- function(self, cache, grad_output) {
    check_grad_output(grad_output, cache$out_dims)
    list(inputs = NULL, weights = list())
  }
  register_layer_class(
    class_name,
    properties = c(common_layer_properties, properties,
                   list(supports_masking = function(self) FALSE)),
    methods = c(common_layer_methods, list(
      build = function(self, input_shape) build(self, input_shape),
      compute_output_shape = function(self, input_shape) compute_output_shape(self, input_shape),
      adapt = function(self, data, batch_size = NULL, steps = NULL) adapt(self, data, batch_size, steps),
      get_vocabulary = function(self, include_special_tokens = TRUE) {
        lookup_get_vocabulary(self$lookup, include_special_tokens)
      },
      set_vocabulary = function(self, vocabulary, idf_weights = NULL) {
        layer_set_lookup_vocabulary(self, vocabulary, idf_weights)
      },
      vocabulary_size = function(self) lookup_vocabulary_size(self$lookup)
    )),
    describe = describe, get_config = get_config, from_config = from_config, build = build,
    compute_output_shape = compute_output_shape, forward = forward, backward = backward,
    backprop = protocol_layer_backprop,
    save_assets = function(self) {
      if (!is.null(save_check)) save_check(self)
      lookup_save_assets(self)
    },
    load_assets = lookup_load_assets)
}

# ---- exported methods ------------------------------------------------------------

#' Fit a preprocessing layer's state to data
#'
#' Computes the state of a preprocessing layer from data, as keras3's
#' `adapt()`: the vocabulary of [layer_text_vectorization()],
#' [layer_string_lookup()] and [layer_integer_lookup()] (and its idf weights
#' with `output_mode = "tf_idf"`). Adapting again replaces the state.
#'
#' @param object A preprocessing layer.
#' @param data The data: an R array (a character vector of texts for a text
#'   vectorization layer; tokens for a lookup layer, samples on the first
#'   axis), or for a text vectorization layer a list of such batches.
#' @param ... Unused; must be empty.
#' @param batch_size `NULL` (all data at once) or the number of samples per
#'   update (the result is the same).
#' @param steps `NULL` or the number of batches to use.
#' @returns `object`, invisibly.
#' @export
#' @examples
#' layer <- layer_string_lookup()
#' adapt(layer, c("a", "b", "b", "c", "c", "c"))
#' get_vocabulary(layer)
adapt <- function(object, data, ..., batch_size = NULL, steps = NULL) {
  if (...length()) abort_arg("...", "empty (adapt() takes object, data, batch_size and steps)",
                             sprintf("%d more argument(s)", ...length()))
  self <- vocabulary_layer_self(object, "adapt")
  if (missing(data)) abort_arg("data", "supplied: the data to adapt the layer to")
  layer_class_def(self)$methods$adapt(self, data, batch_size, steps)
  invisible(object)
}

#' A vocabulary layer's vocabulary
#'
#' `get_vocabulary()` returns the token of every index of a
#' [layer_text_vectorization()], [layer_string_lookup()] or
#' [layer_integer_lookup()] layer (index `i` is element `i + 1`: Keras's
#' indices are 0-based); `set_vocabulary()` replaces the vocabulary (and idf
#' weights) directly, as an alternative to [adapt()].
#'
#' @param object A text vectorization or lookup layer.
#' @param include_special_tokens `TRUE` to include the mask and OOV tokens
#'   (so that positions match indices), `FALSE` for the learnt tokens only.
#' @param vocabulary A vector of tokens (optionally starting with the
#'   special tokens), or the path of a text file with one token per line.
#' @param idf_weights With `output_mode = "tf_idf"`: one weight per
#'   vocabulary entry; otherwise `NULL`.
#' @param ... Unused; must be empty.
#' @returns `get_vocabulary()`: a character vector (a numeric vector for an
#'   integer lookup). `set_vocabulary()`: `object`, invisibly.
#' @export
#' @examples
#' layer <- layer_text_vectorization()
#' set_vocabulary(layer, c("earth", "wind", "and", "fire"))
#' get_vocabulary(layer)
#' get_vocabulary(layer, include_special_tokens = FALSE)
get_vocabulary <- function(object, include_special_tokens = TRUE) {
  self <- vocabulary_layer_self(object, "get_vocabulary")
  lookup_get_vocabulary(self$lookup, include_special_tokens)
}

#' @rdname get_vocabulary
#' @export
set_vocabulary <- function(object, vocabulary, idf_weights = NULL, ...) {
  if (...length()) abort_arg("...", "empty (set_vocabulary() takes object, vocabulary and idf_weights)",
                             sprintf("%d more argument(s)", ...length()))
  self <- vocabulary_layer_self(object, "set_vocabulary")
  if (missing(vocabulary)) abort_arg("vocabulary", "supplied: a vector of tokens")
  layer_set_lookup_vocabulary(self, vocabulary, idf_weights)
  invisible(object)
}

# The state of a layer whose class has method `method` (adapt, ...).
#' @noRd
vocabulary_layer_self <- function(object, method) {
  if (missing(object) || !is_layer(object)) {
    abort_arg("object", sprintf("a layer with a `%s` method (e.g. layer_text_vectorization())", method),
              if (missing(object)) "nothing" else describe_value(object))
  }
  self <- layer_self(object)
  if (is.null(layer_class_def(self)$methods[[method]])) {
    abort_arg("object", sprintf("a layer with a `%s` method (e.g. layer_text_vectorization())", method),
              sprintf("a %s layer", self$class_name))
  }
  self
}
