# The vocabulary machinery shared by StringLookup, IntegerLookup and
# TextVectorization (Keras's IndexLookup, keras/src/layers/preprocessing/
# index_lookup.py): a vocabulary of tokens (strings, or whole numbers kept as
# doubles), the reserved indices before it, adapt()'s counting and ordering,
# the token -> index lookup and its inverse, and the output encodings.
#
# A lookup is plain data, a list held in the layer state as `self$lookup`:
#   kind               "string" or "int64" (the vocabulary's dtype)
#   mask_token         NULL or a token; in "int" output it owns index 0
#   oov_token          the token get_vocabulary() shows at the OOV indices
#   num_oov_indices    how many indices out-of-vocabulary tokens share
#   output_mode        "int", "one_hot", "multi_hot", "count" or "tf_idf"
#   max_tokens         NULL or the largest vocabulary size (special tokens included)
#   pad_to_max_tokens  whether encoded outputs have max_tokens columns
#   invert             whether the layer maps indices back to tokens
#   tokens             NULL (no vocabulary yet) or the learnt / set tokens in
#                      index order, without the special tokens
#   idf                NULL or the tf_idf weights, one per output column
#                      (float32 values), special indices included
#   frozen_size        NULL or the vocabulary size recorded when the
#                      vocabulary was last set (Keras's _frozen_vocab_size:
#                      the width of the encoded outputs)
#   has_input_vocabulary  TRUE when the constructor was given a vocabulary
#                      (such a layer cannot be adapted, as in Keras)
#
# Indices are 0-based as in Keras: with a mask token and "int" output, index
# 0 is the mask, then num_oov_indices OOV indices, then the tokens; in the
# other output modes the mask has no index (masked tokens are not counted)
# and the OOV indices come first.

#' @noRd
new_lookup <- function(kind, mask_token, oov_token, num_oov_indices, output_mode, max_tokens,
                       pad_to_max_tokens, invert, frozen_size = NULL) {
  list(kind = kind, mask_token = mask_token, oov_token = oov_token, num_oov_indices = num_oov_indices,
       output_mode = output_mode, max_tokens = max_tokens, pad_to_max_tokens = pad_to_max_tokens,
       invert = invert, tokens = NULL, idf = NULL, frozen_size = frozen_size,
       has_input_vocabulary = FALSE)
}

#' @noRd
lookup_oov_start <- function(lk) if (!is.null(lk$mask_token) && identical(lk$output_mode, "int")) 1L else 0L

#' @noRd
lookup_token_start <- function(lk) lookup_oov_start(lk) + lk$num_oov_indices

#' @noRd
lookup_vocabulary_size <- function(lk) lookup_token_start(lk) + length(lk$tokens)

# Keras's get_vocabulary(): the token of every index, or the tokens only.
#' @noRd
lookup_get_vocabulary <- function(lk, include_special_tokens = TRUE) {
  include_special_tokens <- check_flag(include_special_tokens, "include_special_tokens")
  empty <- if (identical(lk$kind, "string")) character() else numeric()
  tokens <- if (is.null(lk$tokens)) empty else lk$tokens
  if (!include_special_tokens) return(tokens)
  c(if (lookup_oov_start(lk) == 1L) lk$mask_token, rep(lk$oov_token, lk$num_oov_indices), tokens)
}

# The width of an encoded ("one_hot", "multi_hot", "count", "tf_idf") output.
#' @noRd
lookup_depth <- function(lk) if (isTRUE(lk$pad_to_max_tokens)) lk$max_tokens else lk$frozen_size

# Keras's _record_vocabulary_size(): encoded outputs keep their width once set.
#' @noRd
lookup_record_size <- function(lk, layer_name) {
  new_size <- lookup_vocabulary_size(lk)
  if (!identical(lk$output_mode, "int") && !isTRUE(lk$pad_to_max_tokens) && !is.null(lk$frozen_size) &&
      new_size != lk$frozen_size) {
    abort_msg(sprintf(paste0("The vocabulary size of layer \"%s\" cannot change with output_mode = \"%s\" and ",
                             "pad_to_max_tokens = FALSE: it was %d, the new vocabulary gives %d (set ",
                             "pad_to_max_tokens = TRUE and max_tokens, or create a new layer)."),
                      layer_name, lk$output_mode, lk$frozen_size, new_size),
              class = "multihead_error_argument")
  }
  lk$frozen_size <- new_size
  lk
}

# Tokens as given by a user (arg names the argument): a character vector
# (UTF-8) for string lookups, whole numbers (doubles) for integer lookups.
#' @noRd
check_tokens <- function(x, lk, arg, what = "tokens") {
  if (identical(lk$kind, "string")) {
    if (is.factor(x)) x <- as.character(x)
    if (!is.character(x) || is.object(x)) {
      abort_arg(arg, sprintf("a character vector or array of %s", what), describe_value(x))
    }
    if (anyNA(x)) abort_arg(arg, sprintf("%s without NA", what), sprintf("NA at position %d", which(is.na(x))[1L]))
    return(utf8_strings(x, arg))
  }
  if (!is.numeric(x) || is.object(x)) {
    abort_arg(arg, sprintf("a numeric vector or array of whole-number %s", what), describe_value(x))
  }
  bad <- is.na(x) | !is.finite(x) | x != round(x) | abs(x) > 2^53
  if (any(bad)) {
    i <- which(bad)[1L]
    abort_arg(arg, sprintf("whole-number %s", what), sprintf("%s at position %d", format(x[i]), i))
  }
  storage.mode(x) <- "double"
  x
}

# Strings as UTF-8 (latin1 and native strings converted; dims kept).
#' @noRd
utf8_strings <- function(x, arg = "inputs") {
  if (identical(Encoding(x), rep("unknown", length(x))) && l10n_info()$`UTF-8`) return(x)
  bytes <- Encoding(x) == "bytes"
  if (any(bytes)) {
    abort_arg(arg, "text in a known encoding (UTF-8, latin1 or native)",
              sprintf("a string marked \"bytes\" at position %d", which(bytes)[1L]))
  }
  d <- dim(x)
  x <- enc2utf8(as.vector(x))
  if (!is.null(d)) dim(x) <- d
  x
}

# ---- set_vocabulary() ---------------------------------------------------------

# Keras's set_vocabulary(): the special tokens may lead the vocabulary (then
# they are dropped), must not appear elsewhere; tokens are unique; the size
# respects max_tokens; tf_idf needs idf weights of the vocabulary's length
# (when the special tokens are not given, their weight is the mean weight;
# with pad_to_max_tokens the weights are padded with zeros).
#' @noRd
lookup_set_vocabulary <- function(lk, vocabulary, idf_weights = NULL, layer_name = "") {
  tf_idf <- identical(lk$output_mode, "tf_idf")
  if (tf_idf && is.null(idf_weights)) {
    abort_arg("idf_weights", "supplied (a vector of weights, one per vocabulary entry) when output_mode is \"tf_idf\"")
  }
  if (!tf_idf && !is.null(idf_weights)) {
    abort_arg("idf_weights", sprintf("NULL unless output_mode is \"tf_idf\" (it is \"%s\")", lk$output_mode),
              describe_value(idf_weights))
  }
  if (is.list(vocabulary) && !is.object(vocabulary) && all(lengths(vocabulary) == 1L)) {
    vocabulary <- unlist(vocabulary, use.names = FALSE)
  }
  if (is.character(vocabulary) && length(vocabulary) == 1L && identical(lk$kind, "string") &&
      !is.na(vocabulary) && file.exists(vocabulary) && !dir.exists(vocabulary)) {
    if (tf_idf) abort_arg("vocabulary", "a vector (output_mode \"tf_idf\" does not read a vocabulary file)",
                          sprintf("the file \"%s\"", vocabulary))
    vocabulary <- read_vocabulary_file(vocabulary)
  }
  if (is.null(vocabulary) || length(vocabulary) == 0L) {
    abort_arg("vocabulary", "a non-empty vector of tokens", describe_value(vocabulary))
  }
  vocabulary <- as.vector(check_tokens(vocabulary, lk, "vocabulary"))
  oov_start <- lookup_oov_start(lk)
  token_start <- lookup_token_start(lk)
  special <- c(if (oov_start == 1L) lk$mask_token, rep(lk$oov_token, lk$num_oov_indices))
  found_special <- token_start > 0L && length(vocabulary) >= token_start &&
    identical(unname(vocabulary[seq_len(token_start)]), if (is.null(special)) vocabulary[0] else
      `storage.mode<-`(special, typeof(vocabulary)))
  tokens <- if (found_special) vocabulary[-seq_len(token_start)] else vocabulary
  if (anyDuplicated(tokens)) {
    abort_arg("vocabulary", "a vector of distinct tokens",
              sprintf("repeated tokens %s", paste(format_tokens(unique(tokens[duplicated(tokens)])), collapse = ", ")))
  }
  show_special <- paste(format_tokens(special), collapse = ", ")
  if (!is.null(lk$mask_token) && lk$mask_token %in% tokens) {
    abort_arg("vocabulary", sprintf(paste0("a vector without the mask token %s, or with the special tokens ",
                                           "only at its start, in this order: %s"),
                                    format_tokens(lk$mask_token), show_special),
              sprintf("the mask token at position %d", max(which(vocabulary == lk$mask_token))))
  }
  if (!is.null(lk$oov_token) && lk$oov_token %in% tokens) {
    abort_arg("vocabulary", sprintf(paste0("a vector without the OOV token %s, or with the special tokens ",
                                           "only at its start, in this order: %s"),
                                    format_tokens(lk$oov_token), show_special),
              sprintf("the OOV token at position %d", max(which(vocabulary == lk$oov_token))))
  }
  size <- token_start + length(tokens)
  if (!is.null(lk$max_tokens) && size > lk$max_tokens) {
    abort_arg("vocabulary", sprintf("at most max_tokens = %d entries with the special tokens", lk$max_tokens),
              sprintf("a vocabulary of size %d", size))
  }
  idf <- NULL
  if (tf_idf) {
    if (!is.numeric(idf_weights) || is.object(idf_weights) || length(dim(idf_weights)) > 1L ||
        anyNA(idf_weights) || !all(is.finite(idf_weights))) {
      abort_arg("idf_weights", "a finite numeric vector", describe_value(idf_weights))
    }
    if (length(idf_weights) != length(vocabulary)) {
      abort_arg("idf_weights", sprintf("of the vocabulary's length (%d)", length(vocabulary)),
                sprintf("length %d", length(idf_weights)))
    }
    w <- as.double(idf_weights)
    if (!found_special) w <- c(rep(mean(w), token_start), w)
    if (isTRUE(lk$pad_to_max_tokens)) {
      check_size(lk$max_tokens, "max_tokens", "the idf weights (pad_to_max_tokens = TRUE)")
      w <- c(w, rep(0, lk$max_tokens - length(w)))
    }
    idf <- round_float32(w)
  }
  lk$tokens <- tokens
  lk$idf <- idf
  lookup_record_size(lk, layer_name)
}

#' @noRd
read_vocabulary_file <- function(path) {
  lines <- readLines(path, encoding = "UTF-8", warn = FALSE)
  while (length(lines) && !nzchar(lines[length(lines)])) lines <- lines[-length(lines)]
  lines
}

#' @noRd
format_tokens <- function(x) if (is.character(x)) paste0("\"", x, "\"") else format(x, scientific = FALSE)

# ---- adapt() ------------------------------------------------------------------

# Counts of one batch of tokens: `values` the tokens (flat), `docs` the
# document (row) of each token, `n_docs` the number of documents. Returns
# list(values, counts, doc_counts, n_docs): each distinct token with its
# number of occurrences and of documents it occurs in.
#' @noRd
lookup_count <- function(values, docs, n_docs) {
  u <- unique(values)
  code <- match(values, u)
  counts <- tabulate(code, length(u))
  first <- !duplicated(as.double(docs) * length(u) + code)     # one occurrence per (document, token)
  doc_counts <- tabulate(code[first], length(u))
  list(values = u, counts = counts, doc_counts = doc_counts, n_docs = n_docs)
}

# The counts of several batches (lookup_count() results) added up; NULL
# when there are none.
#' @noRd
lookup_merge_counts <- function(parts) {
  if (length(parts) == 0L) return(NULL)
  if (length(parts) == 1L) return(parts[[1L]])
  values <- unlist(lapply(parts, `[[`, "values"), use.names = FALSE)
  u <- unique(values)
  k <- match(values, u)
  sum_by <- function(field) {
    s <- rowsum(unlist(lapply(parts, `[[`, field), use.names = FALSE), k, reorder = TRUE)
    out <- numeric(length(u))
    out[as.integer(rownames(s))] <- s[, 1L]
    out
  }
  list(values = u, counts = sum_by("counts"), doc_counts = sum_by("doc_counts"),
       n_docs = sum(vapply(parts, function(p) as.double(p$n_docs), numeric(1))))
}

# Keras's finalize_state(): the mask and OOV tokens are dropped from the
# counts; tokens are ordered by count, high to low, ties by the token itself,
# high to low (byte order of the UTF-8 strings, as NumPy orders bytes; numbers
# by value); at most max_tokens - (number of special indices) are kept; tf_idf
# weights are log(1 + num_documents / (1 + document_count)) in float32, the
# special indices get their mean, padding columns 0.
#' @noRd
lookup_finalize <- function(lk, acc, layer_name = "") {
  if (isTRUE(lk$has_input_vocabulary) || is.null(acc) || length(acc$values) == 0L) {
    return(lookup_record_size(lk, layer_name))
  }
  keep <- rep(TRUE, length(acc$values))
  if (!is.null(lk$mask_token)) keep <- keep & acc$values != lk$mask_token
  if (!is.null(lk$oov_token)) keep <- keep & acc$values != lk$oov_token
  values <- acc$values[keep]
  counts <- acc$counts[keep]
  ord <- order(counts, values, decreasing = TRUE, method = "radix")
  token_start <- lookup_token_start(lk)
  if (!is.null(lk$max_tokens)) ord <- ord[seq_len(min(length(ord), max(lk$max_tokens - token_start, 0L)))]
  lk$tokens <- values[ord]
  if (identical(lk$output_mode, "tf_idf")) {
    idf <- round_float32(log(1 + acc$n_docs / (1 + acc$doc_counts[keep][ord])))
    w <- c(rep(round_float32(mean(idf)), token_start), idf)
    if (isTRUE(lk$pad_to_max_tokens) && !is.null(lk$max_tokens)) {
      check_size(lk$max_tokens, "max_tokens", "the idf weights (pad_to_max_tokens = TRUE)")
      w <- c(w, rep(0, lk$max_tokens - length(w)))
    }
    lk$idf <- w
  }
  lookup_record_size(lk, layer_name)
}

# ---- lookup and encodings -----------------------------------------------------

# Indices (doubles, 0-based) of the tokens `values` (a flat vector of the
# lookup's kind): masked tokens -> 0 in "int" output, NA otherwise (not
# counted); out-of-vocabulary tokens -> the OOV index (with several OOV
# indices, integer tokens go to oov_start + token %% num_oov_indices, as
# Keras's "floormod"); with no OOV index an unknown token is an error.
#' @noRd
lookup_index <- function(lk, values, arg = "inputs") {
  tokens <- if (is.null(lk$tokens)) values[0] else lk$tokens
  idx <- match(values, tokens) - 1 + lookup_token_start(lk)
  oov <- is.na(idx)
  if (any(oov)) {
    oov_start <- lookup_oov_start(lk)
    if (lk$num_oov_indices == 0L) {
      bad <- if (is.null(lk$mask_token)) values[oov] else values[oov & values != lk$mask_token]
      if (length(bad)) {
        abort_arg(arg, paste0("tokens of the vocabulary (num_oov_indices = 0; set num_oov_indices = 1 to map ",
                              "unknown tokens to an OOV index)"),
                  sprintf("unknown token%s %s", if (length(unique(bad)) > 1L) "s" else "",
                          paste(format_tokens(utils::head(unique(bad), 5L)), collapse = ", ")))
      }
    } else if (lk$num_oov_indices == 1L) {
      idx[oov] <- oov_start
    } else {
      idx[oov] <- oov_start + values[oov] %% lk$num_oov_indices
    }
  }
  if (!is.null(lk$mask_token)) {
    masked <- values == lk$mask_token
    idx[masked] <- if (identical(lk$output_mode, "int")) 0 else NA_real_
  }
  idx
}

# The tokens of indices `ids` (whole numbers, flat): the inverse lookup.
# Index 0 is the mask token when there is one; OOV indices and indices past
# the vocabulary give the OOV token.
#' @noRd
lookup_invert <- function(lk, ids) {
  tokens <- if (is.null(lk$tokens)) vector(if (identical(lk$kind, "string")) "character" else "double") else lk$tokens
  pos <- ids - lookup_token_start(lk) + 1
  out <- rep(lk$oov_token, length(ids))
  ok <- pos >= 1 & pos <= length(tokens)
  out[ok] <- tokens[pos[ok]]
  if (!is.null(lk$mask_token)) out[ids == 0] <- lk$mask_token
  out
}

# Encoded outputs of indices `idx` (an array of dims `d`; NA = not counted):
#   one_hot    one row per index, `depth` columns: dims c(d, depth) (the last
#              axis replaced when it has size 1)
#   multi_hot, count, tf_idf
#              the last axis is a sample's tokens: dims c(d[-last], depth)
# Indices >= depth (possible with a fixed depth) are not counted.
#' @noRd
lookup_encode <- function(lk, idx, d, layer_name) {
  depth <- lookup_depth(lk)
  if (is.null(depth)) {
    abort_msg(sprintf(paste0("Layer \"%s\" has no vocabulary yet: with output_mode = \"%s\" and ",
                             "pad_to_max_tokens = FALSE, pass `vocabulary` or call adapt() before calling it."),
                      layer_name, lk$output_mode), class = "multihead_error_argument")
  }
  mode <- lk$output_mode
  valid <- !is.na(idx) & idx < depth
  if (identical(mode, "one_hot")) {
    od <- if (length(d) > 1L && d[length(d)] == 1L) c(d[-length(d)], depth) else c(d, depth)
    rows <- length(idx)
    out <- numeric(rows * depth)
    out[which(valid) + rows * idx[valid]] <- 1
    check_size(od, "inputs", sprintf("the output of layer \"%s\"", layer_name))
    return(array(out, od))
  }
  L <- d[length(d)]
  lead <- d[-length(d)]
  rows <- if (length(lead)) prod(lead) else 1
  od <- c(lead, depth)
  check_size(od, "inputs", sprintf("the output of layer \"%s\"", layer_name))
  r <- (seq_along(idx) - 1) %% rows + 1
  cell <- r[valid] + rows * idx[valid]
  out <- tabulate(cell, rows * depth)
  out <- as.double(if (identical(mode, "multi_hot")) out > 0 else out)
  if (identical(mode, "tf_idf")) out <- out * rep(lk$idf, each = rows)
  array(out, od)
}

# ---- layer methods shared by the three classes -------------------------------

# A new vocabulary for a layer (its $set_vocabulary() method).
#' @noRd
layer_set_lookup_vocabulary <- function(self, vocabulary, idf_weights = NULL) {
  if (missing(vocabulary)) abort_arg("vocabulary", "supplied: a vector of tokens")
  self$lookup <- lookup_set_vocabulary(self$lookup, vocabulary, idf_weights, self$name)
  invisible(NULL)
}

# The batches of adapt()'s data (samples on the first axis): batch_size NULL
# means all at once. `steps` limits the number of batches.
#' @noRd
adapt_batches <- function(n, batch_size, steps) {
  batch_size <- check_whole(batch_size, "batch_size", null_ok = TRUE)
  steps <- check_whole(steps, "steps", null_ok = TRUE)
  if (n == 0L) return(list())
  size <- if (is.null(batch_size)) n else batch_size
  starts <- seq(1, n, by = size)
  if (!is.null(steps)) starts <- utils::head(starts, steps)
  lapply(starts, function(s) s:min(n, s + size - 1))
}

# Plain-data state of a lookup layer for model files: the vocabulary when
# it did not come from the constructor (Keras writes it to the archive's
# assets/vocabulary.txt) and the tf_idf weights (Keras's "idf_weights"
# variable of the layer's own store).
#' @noRd
lookup_save_assets <- function(self) {
  lk <- self$lookup
  out <- list()
  if (!isTRUE(lk$has_input_vocabulary) && !is.null(lk$tokens)) {
    out$vocabulary <- lookup_get_vocabulary(lk, include_special_tokens = TRUE)
  }
  if (identical(lk$output_mode, "tf_idf") && !is.null(lk$idf)) out$idf_weights <- lk$idf
  out
}

#' @noRd
lookup_load_assets <- function(self, assets) {
  lk <- self$lookup
  if (!is.null(assets$vocabulary) && !isTRUE(lk$has_input_vocabulary)) {
    idf <- if (identical(lk$output_mode, "tf_idf")) assets$idf_weights
    lk$frozen_size <- NULL
    lk <- lookup_set_vocabulary(lk, assets$vocabulary, idf, self$name)
  }
  if (identical(lk$output_mode, "tf_idf") && !is.null(assets$idf_weights)) {
    w <- assets$idf_weights
    if (!is.numeric(w) || anyNA(w)) abort_msg(sprintf("The idf weights saved for layer \"%s\" are not numbers.",
                                                      self$name), class = "multihead_error_file")
    lk$idf <- round_float32(as.double(w))
  }
  self$lookup <- lk
  invisible(NULL)
}

# ---- string inputs of models ----------------------------------------------------

# A model input of dtype "string" (keras_input(dtype = "string")): a
# character vector or array whose shape matches the input's; a plain vector
# for an input of shape (NA, 1) becomes a one-column matrix (Keras adds the
# last axis of size 1 in the same case). Called by model_check_input().
#' @noRd
model_check_string_input <- function(self, value, tensor, arg) {
  spec <- tensor$shape
  expected <- sprintf("a character array of shape %s for input \"%s\" of model \"%s\"", fmt_shape(spec),
                      tensor$name, self$name)
  if (is.factor(value)) value <- array(as.character(value), shape_of(value))
  if (!is.character(value) || is.object(value)) abort_arg(arg, expected, describe_value(value))
  if (anyNA(value)) abort_arg(arg, "text without NA", sprintf("NA at position %d", which(is.na(value))[1L]))
  d <- shape_of(value)
  if (is.null(dim(value)) && length(spec) == 2L && identical(spec[2L], 1L)) d <- c(length(value), 1L)
  if (length(d) != length(spec) || any(!is.na(spec) & spec != d)) {
    abort_arg(arg, expected, sprintf("an array of shape %s", fmt_shape(d)))
  }
  dim(value) <- d
  value
}
