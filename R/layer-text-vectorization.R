# The TextVectorization layer (keras3's layer_text_vectorization()): text ->
# standardized -> split into tokens -> ngrams -> vocabulary indices (padded
# "int" sequences) or per-text encodings ("multi_hot", "count", "tf_idf"),
# with Keras's vocabulary (vocabulary.R: mask "" at index 0 and OOV "[UNK]"
# at index 1 in "int" output). Everything is vectorised R over all the
# texts of a call: a text's tokens are a run of a flat token vector
# (`values`) with its row number (`rows`).

#' Text vectorization layer
#'
#' Maps text to token indices, as Keras's `TextVectorization`: each text is
#' standardized (by default lower-cased and stripped of punctuation), split
#' into tokens (by default on whitespace), optionally combined into ngrams,
#' and each token replaced by its index in the layer's vocabulary. The
#' vocabulary is learnt from data with [adapt()] (tokens ordered by
#' frequency, ties by the token, high to low) or given with `vocabulary`
#' or [set_vocabulary()]. In `"int"` output, index 0 is padding (the token
#' `""`) and index 1 the out-of-vocabulary token `"[UNK]"`; the other modes
#' give one row per text with a column per vocabulary entry.
#'
#' Standardization follows Keras (TensorFlow's `tf.strings.lower()` and a
#' regular expression): `"lower"` lower-cases the ASCII letters A-Z only
#' (as TensorFlow does; other letters, such as accented or Cyrillic
#' capitals, are kept: pass `standardize = function(x) tolower(x)` for R's
#' Unicode lower-casing), and `"strip_punctuation"` removes the 32 ASCII
#' punctuation characters (those of Python's `string.punctuation`, which
#' Keras's regular expression lists). `"whitespace"` splits
#' on runs of ASCII whitespace (space, tab, newline, carriage return,
#' vertical tab, form feed), ignoring it at both ends; `"character"` splits
#' into Unicode characters. Text is handled as UTF-8 (latin1 and native
#' strings are converted).
#'
#' The layer can be the first layer of a model taking text:
#' `keras_input(shape = 1, dtype = "string")`; [fit()] and [predict()] then
#' take a character vector. It has no weights; its vocabulary (and idf
#' weights) are part of the layer, kept by [saveRDS()] and [save_model()].
#'
#' @param object `NULL` or missing (return the layer), a model (add the layer
#'   to it), or the input: a character vector (one text per element) or a
#'   character array of shape (batch, 1).
#' @param max_tokens `NULL` or the largest vocabulary size, the special
#'   tokens included (at least 2).
#' @param standardize `"lower_and_strip_punctuation"`, `"lower"`,
#'   `"strip_punctuation"`, `NULL` (none) or an R function taking and
#'   returning a character vector of the same length.
#' @param split `"whitespace"`, `"character"`, `NULL` (each text is one
#'   token) or an R function taking a character vector and returning a list
#'   with one character vector of tokens per text.
#' @param ngrams `NULL`, a whole number n (ngrams of 1 to n tokens) or a
#'   vector of ngram sizes. Ngram tokens are joined by a space; a text's
#'   tokens come by size (as given), then by position.
#' @param output_mode `"int"`, `"multi_hot"`, `"count"` or `"tf_idf"`.
#' @param output_sequence_length `NULL` or, in `"int"` output, the length of
#'   every output row (padded with 0 or truncated). `NULL`: the longest text
#'   of the call.
#' @param pad_to_max_tokens In `"multi_hot"`, `"count"` and `"tf_idf"`
#'   output, whether the output has `max_tokens` columns however small the
#'   vocabulary.
#' @param vocabulary `NULL`, a character vector of tokens (optionally
#'   starting with `""` and `"[UNK]"`), or the path of a text file with one
#'   token per line.
#' @param idf_weights With `output_mode = "tf_idf"` and a `vocabulary`: one
#'   inverse document frequency weight per vocabulary entry.
#' @param ragged,sparse `FALSE` (ragged and sparse tensors are TensorFlow's;
#'   `TRUE` is an error).
#' @param encoding `"utf-8"` (the only encoding).
#' @param name `NULL` or the layer's name.
#' @param ... `dtype` and `trainable` (layer options, kept in the
#'   configuration), and `vocabulary_size` (Keras's configuration entry).
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object`: in `"int"` output an integer
#'   matrix (texts, tokens) of indices, otherwise a double matrix (texts,
#'   vocabulary size).
#' @seealso [adapt()], [get_vocabulary()], [layer_string_lookup()].
#' @export
#' @examples
#' vectorize <- layer_text_vectorization(max_tokens = 5000, output_sequence_length = 4)
#' adapt(vectorize, c("foo bar", "bar baz", "baz bada boom"))
#' get_vocabulary(vectorize)
#' vectorize(c("foo qux bar", "qux baz"))
#'
#' counts <- layer_text_vectorization(output_mode = "count",
#'                                    vocabulary = c("earth", "wind", "and", "fire"))
#' counts("Wind and fire, and EARTH!")
layer_text_vectorization <- function(object, max_tokens = NULL, standardize = "lower_and_strip_punctuation",
                                     split = "whitespace", ngrams = NULL, output_mode = "int",
                                     output_sequence_length = NULL, pad_to_max_tokens = FALSE,
                                     vocabulary = NULL, idf_weights = NULL, sparse = FALSE, ragged = FALSE,
                                     encoding = "utf-8", name = NULL, ...) {
  if (!missing(object)) force(object)
  extra <- check_layer_dots(list(...), c("dtype", "trainable", "vocabulary_size", "has_input_vocabulary"),
                            "layer_text_vectorization()")
  max_tokens <- check_max_tokens(max_tokens)
  if (!is.null(standardize) && !is.function(standardize)) {
    standardize <- check_choice(standardize, "standardize", c("lower_and_strip_punctuation", "lower",
                                                               "strip_punctuation"))
  }
  if (!is.null(split) && !is.function(split)) split <- check_choice(split, "split", c("whitespace", "character"))
  if (!is.null(ngrams)) {
    ngrams <- if (length(ngrams) == 1L && !is.list(ngrams)) check_whole(ngrams, "ngrams")
      else check_whole_vector(ngrams, "ngrams")
  }
  if (identical(output_mode, "binary")) output_mode <- "multi_hot"
  if (identical(output_mode, "tf-idf")) output_mode <- "tf_idf"
  output_mode <- check_choice(output_mode, "output_mode", c("int", "multi_hot", "count", "tf_idf"))
  output_sequence_length <- check_whole(output_sequence_length, "output_sequence_length", min = 0L,
                                        null_ok = TRUE)
  if (!is.null(output_sequence_length) && output_mode != "int") {
    abort_arg("output_sequence_length", sprintf("NULL unless output_mode is \"int\" (it is \"%s\")", output_mode),
              describe_value(output_sequence_length))
  }
  pad_to_max_tokens <- check_flag(pad_to_max_tokens, "pad_to_max_tokens")
  if (pad_to_max_tokens && is.null(max_tokens)) {
    abort_arg("max_tokens", "set when pad_to_max_tokens = TRUE", "NULL")
  }
  if (!identical(check_flag(sparse, "sparse"), FALSE)) {
    abort_arg("sparse", "FALSE (sparse outputs are TensorFlow tensors; multihead returns dense arrays)", "TRUE")
  }
  if (!identical(check_flag(ragged, "ragged"), FALSE)) {
    abort_arg("ragged", "FALSE (ragged outputs are TensorFlow tensors; rows are padded with 0 instead)", "TRUE")
  }
  encoding <- check_encoding(encoding)
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
  cfg <- list(max_tokens = max_tokens, standardize = standardize, split = split, ngrams = ngrams,
              output_mode = output_mode, output_sequence_length = output_sequence_length,
              pad_to_max_tokens = pad_to_max_tokens, sparse = FALSE, ragged = FALSE,
              vocabulary = NULL, idf_weights = if (is.null(idf_weights)) NULL else as.double(idf_weights), encoding = encoding)
  self <- new_layer_state("TextVectorization", "text_vectorization", name, extra$dtype, extra$trainable, cfg)
  self$lookup <- new_lookup("string", mask_token = "", oov_token = "[UNK]", num_oov_indices = 1L,
                            output_mode = output_mode, max_tokens = max_tokens,
                            pad_to_max_tokens = pad_to_max_tokens, invert = FALSE,
                            frozen_size = vocabulary_size)
  if (!is.null(vocabulary)) {
    self$lookup <- lookup_set_vocabulary(self$lookup, vocabulary, idf_weights, self$name)
    if (is.character(vocabulary) && length(vocabulary) == 1L && file.exists(vocabulary)) {
      has_input_vocabulary <- FALSE       # a file: Keras keeps the vocabulary as an asset, not in the config
    } else {
      self$config$vocabulary <- as.vector(check_tokens(unlist(vocabulary), self$lookup, "vocabulary"))
    }
  }
  self$lookup$has_input_vocabulary <- has_input_vocabulary
  self$output_dtypes <- list(if (output_mode == "int") "int64" else config_floatx())
  self$built <- TRUE
  compose_layer(object, new_layer_object(self, protocol_layer_function))
}

#' @noRd
check_max_tokens <- function(max_tokens) {
  max_tokens <- check_whole(max_tokens, "max_tokens", null_ok = TRUE)
  if (!is.null(max_tokens) && max_tokens <= 1L) {
    abort_arg("max_tokens", "NULL or a whole number greater than 1", describe_value(max_tokens))
  }
  max_tokens
}

#' @noRd
check_encoding <- function(encoding) {
  if (!(is.character(encoding) && length(encoding) == 1L && !is.na(encoding) &&
        tolower(gsub("[-_]", "", encoding)) == "utf8")) {
    abort_arg("encoding", "\"utf-8\" (text is handled as UTF-8)", describe_value(encoding))
  }
  "utf-8"
}

# ---- standardize, split, ngrams -------------------------------------------------

# The texts of a call or of adapt(): a character vector or array of shape
# (batch) or (batch, 1) (with split = NULL any (batch, k): k tokens per text).
# Returns list(text = <character vector>, n = <rows>, per_row = <texts per row>).
#' @noRd
tv_texts <- function(self, x, arg = "inputs") {
  if (is.factor(x)) x <- array(as.character(x), shape_of(x))
  if (!is.character(x) || is.object(x)) {
    abort_arg(arg, "a character vector or a character array of shape (batch, 1) (one text per element)",
              describe_value(x))
  }
  if (anyNA(x)) abort_arg(arg, "text without NA", sprintf("NA at position %d", which(is.na(x))[1L]))
  d <- shape_of(x)
  per_row <- 1L
  if (length(d) > 1L) {
    if (!is.null(self$config$split) || length(d) > 2L) {
      if (length(d) > 2L || d[2L] != 1L) {
        abort_arg(arg, paste0("a character vector or an array of shape (batch, 1) when the layer splits ",
                              "text (rank 1, or last axis of size 1)"), sprintf("shape %s", fmt_shape(d)))
      }
    } else {
      per_row <- d[2L]
    }
  }
  text <- utf8_strings(as.vector(x), arg)
  bad <- !validUTF8(text)
  if (any(bad)) abort_arg(arg, "valid UTF-8 text", sprintf("invalid UTF-8 at position %d", which(bad)[1L]))
  if (per_row > 1L) text <- as.vector(t(matrix(text, d[1L], per_row)))  # row by row
  list(text = text, n = d[1L], per_row = per_row)
}

#' @noRd
tv_standardize <- function(self, text) {
  s <- self$config$standardize
  if (is.null(s)) return(text)
  if (is.function(s)) {
    out <- call_user_function(s, text, "standardize")
    if (!is.character(out) || length(out) != length(text) || anyNA(out)) {
      abort_arg("standardize", sprintf("a function returning a character vector of the input's length (%d) without NA",
                                       length(text)), sprintf("it returned %s", describe_value(out)))
    }
    return(utf8_strings(as.vector(out), "standardize"))
  }
  if (s %in% c("lower", "lower_and_strip_punctuation")) {
    text <- chartr("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz", text)   # ASCII only, as TF
  }
  if (s %in% c("strip_punctuation", "lower_and_strip_punctuation")) {
    # ASCII punctuation; on bytes (UTF-8 continuation bytes are never ASCII), then marked UTF-8 again
    text <- gsub("[][!\"#$%&'()*+,./:;<=>?@\\\\^_`{|}~-]", "", text, perl = TRUE, useBytes = TRUE)
    Encoding(text) <- "UTF-8"
  }
  text
}

# A user's standardize / split function on the texts; its errors name the argument.
#' @noRd
call_user_function <- function(f, text, arg) {
  tryCatch(f(text), error = function(e) {
    if (inherits(e, "multihead_error")) stop(e)
    abort_msg(sprintf("`%s` (an R function) failed on the texts: %s", arg, conditionMessage(e)),
              class = "multihead_error_argument")
  })
}

# Tokens of the texts: list(values = <flat character vector>, rows = <row of
# each token, in row order>), `n` rows of `per_row` texts.
#' @noRd
tv_split <- function(self, text, n, per_row) {
  sp <- self$config$split
  if (is.null(sp)) {
    return(list(values = text, rows = rep(seq_len(n), each = per_row)))
  }
  parts <- if (is.function(sp)) {
    out <- call_user_function(sp, text, "split")
    if (is.character(out) && length(out) == length(text) && is.null(dim(out))) out <- as.list(out)
    if (!is.list(out) || length(out) != length(text) ||
        !all(vapply(out, function(p) is.character(p) && !anyNA(p), logical(1)))) {
      abort_arg("split", sprintf(paste0("a function returning a list of %d character vectors (the tokens of each ",
                                        "text)"), length(text)),
                sprintf("it returned %s", describe_value(out)))
    }
    out
  } else if (identical(sp, "whitespace")) {
    strsplit(text, "[ \t\n\v\f\r]+", perl = TRUE)
  } else {
    strsplit(text, "", fixed = FALSE)
  }
  lens <- lengths(parts)
  values <- unlist(parts, use.names = FALSE)
  if (is.null(values)) values <- character()
  rows <- rep.int(seq_len(n), lens)
  if (identical(sp, "whitespace")) {
    # strsplit() gives "" before leading whitespace
    keep <- nzchar(values)
    values <- values[keep]
    rows <- rows[keep]
  }
  list(values = utf8_strings(values), rows = rows)
}

# Keras's tf.strings.ngrams(separator = " "): per row, the ngrams of each
# size in `widths` order (sizes longer than the row give none), each size's
# in position order.
#' @noRd
tv_ngrams <- function(tok, widths, n) {
  values <- tok$values
  rows <- tok$rows
  lens <- tabulate(rows, n)
  starts <- cumsum(c(1L, lens))[rows]     # flat index of each token's row start
  pos <- seq_along(values) - starts + 1L  # position in its row
  out_v <- list(); out_r <- list(); out_w <- list(); out_p <- list()
  for (k in seq_along(widths)) {
    w <- widths[k]
    ok <- which(pos + w - 1L <= lens[rows])
    g <- values[ok]
    if (w > 1L) for (o in seq_len(w - 1L)) g <- paste(g, values[ok + o], sep = " ")
    out_v[[k]] <- g; out_r[[k]] <- rows[ok]; out_w[[k]] <- rep(k, length(ok)); out_p[[k]] <- pos[ok]
  }
  v <- unlist(out_v, use.names = FALSE); r <- unlist(out_r); w <- unlist(out_w); p <- unlist(out_p)
  if (is.null(v)) return(list(values = character(), rows = integer()))
  ord <- order(r, w, p, method = "radix")
  list(values = utf8_strings(v[ord]), rows = r[ord])
}

# standardize -> split -> ngrams of a call's (or adapt()'s) data.
#' @noRd
tv_preprocess <- function(self, x, arg = "inputs") {
  tx <- tv_texts(self, x, arg)
  text <- tv_standardize(self, tx$text)
  tok <- tv_split(self, text, tx$n, tx$per_row)
  ng <- self$config$ngrams
  if (!is.null(ng)) {
    widths <- if (length(ng) == 1L) seq_len(ng) else ng
    tok <- tv_ngrams(tok, widths, tx$n)
  }
  tok$n <- tx$n
  tok
}

# ---- call --------------------------------------------------------------------

# The layer's output for `inputs`. `fast`: the C++ tokenizer (built-in
# standardize and split, one text per row); otherwise the R steps above
# (callables; also the tests' second implementation).
#' @noRd
tv_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  out <- tv_vectorize(self, inputs, fast = tv_can_be_fast(self))
  list(output = out, cache = list(out_dims = dim(out)), mask = NULL)
}

#' @noRd
tv_can_be_fast <- function(self) !is.function(self$config$standardize) && !is.function(self$config$split)

#' @noRd
tv_vectorize <- function(self, inputs, fast) {
  lk <- self$lookup
  int_mode <- identical(lk$output_mode, "int")
  if (fast) {
    tx <- tv_texts(self, inputs)
    if (tx$per_row == 1L) {
      a <- tv_fast_args(self)
      vocab <- if (is.null(lk$tokens)) character() else lk$tokens
      oov <- lookup_oov_start(lk)
      if (int_mode) {
        L <- self$config$output_sequence_length
        if (!is.null(L)) check_size(c(tx$n, L), "inputs", sprintf("the output of layer \"%s\"", self$name))
        return(cpp_text_index(tx$text, a$lower, a$strip, a$split, a$ngrams, vocab, lookup_token_start(lk), oov,
                              0L, if (is.null(L)) -1L else L))
      }
      res <- cpp_text_index(tx$text, a$lower, a$strip, a$split, a$ngrams, vocab, lookup_token_start(lk), oov,
                            NA_integer_, -2L)
      return(tv_encode_rows(self, as.double(res$index), rep.int(seq_len(tx$n), res$lens), tx$n))
    }
  }
  tok <- tv_preprocess(self, inputs)
  idx <- lookup_index(lk, tok$values)
  n <- tok$n
  if (int_mode) {
    lens <- tabulate(tok$rows, n)
    L <- self$config$output_sequence_length
    if (is.null(L)) L <- if (n) max(0L, lens) else 0L
    check_size(c(n, L), "inputs", sprintf("the output of layer \"%s\"", self$name))
    pos <- seq_along(idx) - (cumsum(c(0L, lens))[tok$rows])
    keep <- pos <= L
    out <- matrix(0L, n, L)
    out[cbind(tok$rows[keep], pos[keep])] <- as.integer(idx[keep])
    return(out)
  }
  tv_encode_rows(self, idx, tok$rows, n)
}

# Encoded output of flat indices `idx` (NA: not counted) of rows `rows`:
# a (rows, longest row) matrix of indices (NA where a row has no token),
# encoded along its last axis.
#' @noRd
tv_encode_rows <- function(self, idx, rows, n) {
  lens <- tabulate(rows, n)
  L <- max(1L, lens)
  m <- matrix(NA_real_, n, L)
  pos <- seq_along(idx) - (cumsum(c(0L, lens))[rows])
  m[cbind(rows, pos)] <- idx
  lookup_encode(self$lookup, m, c(n, L), self$name)
}

# The C++ tokenizer's options for a layer's built-in standardize / split.
#' @noRd
tv_fast_args <- function(self) {
  cfg <- self$config
  std <- if (is.null(cfg$standardize)) "" else cfg$standardize
  ng <- cfg$ngrams
  list(lower = std %in% c("lower", "lower_and_strip_punctuation"),
       strip = std %in% c("strip_punctuation", "lower_and_strip_punctuation"),
       split = if (is.null(cfg$split)) 0L else if (identical(cfg$split, "whitespace")) 1L else 2L,
       ngrams = if (is.null(ng)) integer() else if (length(ng) == 1L) seq_len(ng) else as.integer(ng))
}

# adapt()'s counts of one batch of texts.
#' @noRd
tv_batch_counts <- function(self, batch, fast, arg = "data") {
  if (fast) {
    tx <- tv_texts(self, batch, arg)
    if (tx$per_row == 1L) {
      a <- tv_fast_args(self)
      return(cpp_text_count(tx$text, a$lower, a$strip, a$split, a$ngrams))
    }
  }
  tok <- tv_preprocess(self, batch, arg)
  lookup_count(tok$values, tok$rows, tok$n)
}

#' @noRd
tv_compute_output_shape <- function(self, input_shape, args = list()) {
  input_shape <- as_input_shape(input_shape)
  lk <- self$lookup
  if (identical(lk$output_mode, "int")) {
    L <- self$config$output_sequence_length
    return(c(input_shape[1L], if (is.null(L)) NA_integer_ else L))
  }
  depth <- lookup_depth(lk)
  c(input_shape[1L], if (is.null(depth)) NA_integer_ else as.integer(depth))
}

# adapt(): the vocabulary of `data` (a character vector or (n, 1) array),
# batch by batch when batch_size is given (same result).
#' @noRd
tv_adapt <- function(self, data, batch_size = NULL, steps = NULL) {
  if (isTRUE(self$lookup$has_input_vocabulary)) {
    abort_msg(sprintf(paste0("Layer \"%s\" was created with a `vocabulary` and cannot be adapted (as in Keras): ",
                             "use set_vocabulary(), or create the layer without `vocabulary`."), self$name),
              class = "multihead_error_argument")
  }
  if (missing(data)) abort_arg("data", "supplied: a character vector of texts")
  if (is.list(data) && !is.object(data)) {
    batches <- data       # a list of batches (character vectors), as an R stand-in for a dataset
    if (!is.null(check_whole(steps, "steps", null_ok = TRUE))) batches <- utils::head(batches, steps)
  } else {
    if (!is.character(data) && !is.factor(data)) tv_texts(self, data, "data")  # the error naming `data`
    n <- shape_of(data)[1L]
    chunks <- adapt_batches(n, batch_size, steps)
    batches <- if (length(chunks) == 1L && length(chunks[[1L]]) == n) list(data)
      else lapply(chunks, function(i) slice_first_axis(as_rank_array(data), i))
  }
  parts <- vector("list", length(batches))
  for (b in seq_along(batches)) {
    counts <- tryCatch(tv_batch_counts(self, batches[[b]], tv_can_be_fast(self)),
                    multihead_error_argument = function(e) {
                      if (length(batches) > 1L && is.list(data) && !is.object(data)) {
                        e$message <- sub("^`data`", sprintf("`data[[%d]]`", b), conditionMessage(e))
                      }
                      stop(e)
                    })
    parts[[b]] <- counts
  }
  acc <- lookup_merge_counts(parts)
  self$lookup <- lookup_finalize(self$lookup, acc, self$name)
  invisible(NULL)
}

#' @noRd
as_rank_array <- function(x) {
  if (is.null(dim(x))) dim(x) <- length(x)
  x
}

#' @noRd
tv_get_config <- function(self) {
  cfg <- self$config
  c(base_layer_config(self),
    list(max_tokens = cfg$max_tokens, standardize = cfg$standardize, split = cfg$split, ngrams = cfg$ngrams,
         output_mode = cfg$output_mode, output_sequence_length = cfg$output_sequence_length,
         pad_to_max_tokens = cfg$pad_to_max_tokens, sparse = FALSE, ragged = FALSE,
         vocabulary = cfg$vocabulary, idf_weights = cfg$idf_weights, encoding = cfg$encoding,
         vocabulary_size = lookup_vocabulary_size(self$lookup)))
}

#' @noRd
register_text_vectorization <- function() {
  register_lookup_class(
    "TextVectorization",
    properties = list(
      output_mode = function(self) self$config$output_mode,
      max_tokens = function(self) self$config$max_tokens
    ),
    describe = function(self) {
      lk <- self$lookup
      s <- sprintf("output_mode=\"%s\", vocabulary_size=%d", lk$output_mode, lookup_vocabulary_size(lk))
      if (!is.null(self$config$output_sequence_length)) {
        s <- paste0(s, sprintf(", output_sequence_length=%d", self$config$output_sequence_length))
      }
      s
    },
    get_config = tv_get_config,
    from_config = function(config) {
      layer_from_config(layer_text_vectorization, config,
                        c("max_tokens", "standardize", "split", "ngrams", "output_mode", "output_sequence_length",
                          "pad_to_max_tokens", "vocabulary", "idf_weights", "sparse", "ragged", "encoding",
                          "vocabulary_size"))
    },
    compute_output_shape = tv_compute_output_shape, forward = tv_forward, adapt = tv_adapt,
    save_check = function(self) {
      for (a in c("standardize", "split")) {
        if (is.function(self$config[[a]])) {
          abort_msg(sprintf(paste0("Layer \"%s\" uses an R function as `%s`; save_model() writes data only ",
                                   "(no code). Save the model with saveRDS(), or use a built-in `%s`."),
                            self$name, a, a), class = "multihead_error_argument")
        }
      }
    })
}
