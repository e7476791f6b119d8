# layer_text_vectorization(): Keras's documented outputs, and every step
# against a plain-R reference written here (character codes, loops): ASCII
# lower-casing and punctuation stripping, whitespace / character splitting,
# ngrams, the vocabulary order (count, then token bytes, high to low), the
# output modes and tf_idf weights log(1 + num_docs / (1 + df)).

# ---- the reference ------------------------------------------------------------

ref_punct <- utf8ToInt("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")

ref_standardize <- function(x, mode = "lower_and_strip_punctuation") {
  vapply(x, function(s) {
    cp <- utf8ToInt(s)
    if (mode %in% c("lower", "lower_and_strip_punctuation")) cp <- ifelse(cp >= 65 & cp <= 90, cp + 32L, cp)
    if (mode %in% c("strip_punctuation", "lower_and_strip_punctuation")) cp <- cp[!cp %in% ref_punct]
    intToUtf8(cp)
  }, character(1), USE.NAMES = FALSE)
}

ref_split <- function(s, split = "whitespace") {
  cp <- utf8ToInt(s)
  if (split == "character") return(vapply(cp, intToUtf8, character(1)))
  out <- character()
  cur <- integer()
  for (c in c(cp, 32L)) {
    if (c %in% c(32L, 9L, 10L, 11L, 12L, 13L)) {
      if (length(cur)) out <- c(out, intToUtf8(cur))
      cur <- integer()
    } else {
      cur <- c(cur, c)
    }
  }
  out
}

ref_ngrams <- function(tokens, widths) {
  out <- character()
  for (w in widths) {
    if (w > length(tokens)) next
    for (i in seq_len(length(tokens) - w + 1L)) out <- c(out, paste(tokens[i:(i + w - 1L)], collapse = " "))
  }
  out
}

ref_tokens <- function(texts, standardize = "lower_and_strip_punctuation", split = "whitespace", ngrams = NULL) {
  lapply(texts, function(s) {
    t <- ref_split(ref_standardize(s, standardize), split)
    if (is.null(ngrams)) t else ref_ngrams(t, if (length(ngrams) == 1L) seq_len(ngrams) else ngrams)
  })
}

# bytes as hex: comparing these ASCII strings compares the UTF-8 bytes
ref_bytes_key <- function(x) vapply(x, function(s) paste(sprintf("%02x", as.integer(charToRaw(s))), collapse = ""),
                                    character(1), USE.NAMES = FALSE)

# tokens by count, high to low, ties by token bytes, high to low (Keras's lexsort, reversed)
ref_vocabulary <- function(docs, max_learned = Inf) {
  all <- unlist(docs)
  u <- unique(all)
  cnt <- vapply(u, function(t) sum(all == t), numeric(1))
  keys <- ref_bytes_key(u)
  # selection sort with an explicit comparison
  out <- character()
  left <- seq_along(u)
  while (length(left) && length(out) < max_learned) {
    best <- left[1L]
    for (j in left[-1L]) {
      if (cnt[j] > cnt[best] || (cnt[j] == cnt[best] && keys[j] > keys[best])) best <- j
    }
    out <- c(out, u[best])
    left <- setdiff(left, best)
  }
  out
}

ref_idf <- function(docs, vocab) {
  n <- length(docs)
  vapply(vocab, function(t) log(1 + n / (1 + sum(vapply(docs, function(d) t %in% d, logical(1))))), numeric(1),
         USE.NAMES = FALSE)
}

f32 <- function(x) readBin(writeBin(as.double(x), raw(), size = 4), "double", n = length(x), size = 4)

corpus <- c("The cat sat on the mat.", "The dog ate my homework!", "A cat, a dog; a bird?",
            "  Leading and trailing   spaces  ", "tabs\tand\nnewlines\rhere", "Caf\u00e9 na\u00efve \u00c9T\u00c9",
            "\u0416\u0443\u043a \u0436\u0443\u043a, \u0416\u0423\u041a", "", "!!!", "the the the cat")

# ---- Keras's own outputs ----------------------------------------------------------

test_that("Keras's documented adapt and call example gives Keras's output", {
  layer <- layer_text_vectorization(max_tokens = 5000, output_mode = "int", output_sequence_length = 4)
  adapt(layer, c("foo bar", "bar baz", "baz bada boom"))
  expect_identical(get_vocabulary(layer), c("", "[UNK]", "baz", "bar", "foo", "boom", "bada"))
  out <- layer(rbind("foo qux bar", "qux baz"))
  expect_identical(out, rbind(c(4L, 1L, 3L, 0L), c(1L, 2L, 0L, 0L)))
  expect_identical(layer(c("foo qux bar", "qux baz")), out)
  fixed <- layer_text_vectorization(max_tokens = 5000, output_sequence_length = 4,
                                    vocabulary = c("baz", "bar", "foo"))
  expect_identical(fixed(rbind("foo qux bar", "qux baz")), out)
  set_layer <- layer_text_vectorization(max_tokens = 5000, output_sequence_length = 4)
  set_vocabulary(set_layer, c("baz", "bar", "foo"))
  expect_identical(set_layer(rbind("foo qux bar", "qux baz")), out)
  v <- layer_text_vectorization(vocabulary = c("earth", "wind", "and", "fire"), output_sequence_length = 4)
  expect_identical(get_vocabulary(v), c("", "[UNK]", "earth", "wind", "and", "fire"))
})

test_that("lower-casing is ASCII-only as in Keras (keras-team/keras#19668's outputs)", {
  layer <- layer_text_vectorization(split = "character", standardize = "lower_and_strip_punctuation")
  adapt(layer, "Zz, Aa")
  expect_identical(get_vocabulary(layer), c("", "[UNK]", "z", "a", " "))
  adapt(layer, "\u042f\u044f, \u0410\u0430")   # Cyrillic capitals are not lowered by TensorFlow
  expect_identical(get_vocabulary(layer), c("", "[UNK]", "\u044f", "\u0430", "\u042f", "\u0410", " "))
  # R's Unicode lower-casing through a standardize function
  uni <- layer_text_vectorization(split = "character", standardize = function(x) tolower(x))
  adapt(uni, "\u042f\u044f\u0410\u0430")
  expect_identical(get_vocabulary(uni), c("", "[UNK]", "\u044f", "\u0430"))
})

# ---- against the reference -------------------------------------------------------

test_that("standardize and split match the reference for ASCII and UTF-8 text", {
  for (std in list("lower_and_strip_punctuation", "lower", "strip_punctuation", NULL)) {
    for (sp in c("whitespace", "character")) {
      layer <- layer_text_vectorization(standardize = std, split = sp)
      adapt(layer, corpus)
      docs <- ref_tokens(corpus, if (is.null(std)) "none" else std, sp)
      expect_identical(get_vocabulary(layer, include_special_tokens = FALSE), ref_vocabulary(docs),
                       info = paste(std, sp))
      out <- layer(corpus)
      vocab <- get_vocabulary(layer)
      for (i in seq_along(corpus)) {
        ids <- match(docs[[i]], vocab) - 1L
        expect_identical(out[i, seq_along(ids)], ids, info = paste(std, sp, i))
        expect_true(all(out[i, -seq_along(ids)] == 0L))
      }
    }
  }
  # the fixed tokens of the UTF-8 texts
  layer <- layer_text_vectorization()
  adapt(layer, corpus[6:7])
  expect_setequal(get_vocabulary(layer, FALSE), c("caf\u00e9", "na\u00efve", "\u00c9t\u00c9",
                                                   "\u0416\u0443\u043a", "\u0436\u0443\u043a", "\u0416\u0423\u041a"))
})

test_that("the C++ tokenizer and the R steps (used for R-function options) agree on random text", {
  set.seed(3)
  alphabet <- c(letters, LETTERS, " ", " ", " ", "\t", "\n", ",", ".", "!", "'", "-", "\u00e9", "\u00c9", "\u0436",
                "\u0416", "\u20ac", "\U0001F600", "0", "9")
  texts <- vapply(1:300, function(i) paste(sample(alphabet, sample(0:30, 1), replace = TRUE), collapse = ""),
                  character(1))
  self_of <- function(l) multihead:::layer_self(l)
  for (std in list("lower_and_strip_punctuation", NULL)) {
    for (sp in list("whitespace", "character", NULL)) {
      for (ng in list(NULL, 2L, c(1L, 3L))) {
        for (mode in c("int", "count", "tf_idf")) {
          layer <- layer_text_vectorization(standardize = std, split = sp, ngrams = ng, output_mode = mode)
          adapt(layer, texts)
          s <- self_of(layer)
          fast <- multihead:::lookup_finalize(s$lookup, multihead:::tv_batch_counts(s, texts, TRUE), "t")
          slow <- multihead:::lookup_finalize(s$lookup, multihead:::tv_batch_counts(s, texts, FALSE), "t")
          info <- paste(format(std), format(sp), format(ng), mode)
          expect_identical(fast$tokens, slow$tokens, info = info)
          expect_identical(fast$idf, slow$idf, info = info)
          expect_identical(multihead:::tv_vectorize(s, texts, TRUE), multihead:::tv_vectorize(s, texts, FALSE),
                           info = info)
        }
      }
    }
  }
})

test_that("ngrams: sizes in the given order, then positions; vocabulary and indices as the reference", {
  texts <- c("a b c d", "b c", "a", "c d c d")
  for (ng in list(2L, 3L, c(2L, 1L), c(3L, 1L))) {
    layer <- layer_text_vectorization(ngrams = ng)
    adapt(layer, texts)
    docs <- ref_tokens(texts, ngrams = ng)
    expect_identical(get_vocabulary(layer, FALSE), ref_vocabulary(docs), info = format(ng))
    out <- layer(texts)
    vocab <- get_vocabulary(layer)
    for (i in seq_along(texts)) {
      expect_identical(out[i, seq_along(docs[[i]])], match(docs[[i]], vocab) - 1L)
    }
  }
  layer <- layer_text_vectorization(ngrams = 2, vocabulary = c("a b", "a", "b"))
  expect_identical(layer("a b b"), rbind(c(3L, 4L, 4L, 2L, 1L)))   # a, b, b, "a b", "b b"
})

test_that("max_tokens keeps the most frequent tokens (ties by token, high to low)", {
  texts <- c("x y z w", "y z w", "z w", "w", "q r s")
  for (mode in c("int", "multi_hot")) {
    specials <- if (mode == "int") 2L else 1L
    layer <- layer_text_vectorization(max_tokens = 5, output_mode = mode)
    adapt(layer, texts)
    expect_identical(get_vocabulary(layer, FALSE), ref_vocabulary(ref_tokens(texts), 5 - specials))
    expect_length(get_vocabulary(layer), 5L)
  }
})

test_that("split = NULL: each text is a token; a (batch, k) array gives k tokens per row", {
  layer <- layer_text_vectorization(split = NULL, vocabulary = c("a b", "b"))
  expect_identical(layer(c("A b!", "b", "")), rbind(2L, 3L, 0L))          # "" is the mask token
  expect_identical(layer(rbind(c("a b", "zz"), c("b", "a b"))), rbind(c(2L, 1L), c(3L, 2L)))
  multi <- layer_text_vectorization(split = NULL, vocabulary = c("a", "b"), output_mode = "multi_hot")
  expect_identical(multi(rbind(c("a", "q", ""), c("b", "b", "b"))), rbind(c(1, 1, 0), c(0, 0, 1)))
})

test_that("output_sequence_length pads and truncates; without it rows pad to the longest text", {
  layer <- layer_text_vectorization(vocabulary = c("a", "b", "c"), output_sequence_length = 3)
  expect_identical(layer(c("a b c a b", "c", "")), rbind(c(2L, 3L, 4L), c(4L, 0L, 0L), c(0L, 0L, 0L)))
  free <- layer_text_vectorization(vocabulary = c("a", "b", "c"))
  expect_identical(free(c("a b z", "c")), rbind(c(2L, 3L, 1L), c(4L, 0L, 0L)))
  expect_identical(dim(free(c("", ""))), c(2L, 0L))
  zero <- layer_text_vectorization(vocabulary = c("a"), output_sequence_length = 0)
  expect_identical(dim(zero(c("a", "a a"))), c(2L, 0L))
})

test_that("multi_hot, count and tf_idf outputs match the reference; pad_to_max_tokens widens them", {
  layer_c <- layer_text_vectorization(output_mode = "count")
  layer_m <- layer_text_vectorization(output_mode = "multi_hot")
  layer_t <- layer_text_vectorization(output_mode = "tf_idf")
  for (l in list(layer_c, layer_m, layer_t)) adapt(l, corpus)
  docs <- ref_tokens(corpus)
  vocab <- ref_vocabulary(docs)
  full <- c("[UNK]", vocab)
  expect_identical(get_vocabulary(layer_c), full)
  new <- c("the cat and the zebra", "zebra zebra", "", "a cat")
  nd <- ref_tokens(new)
  ref_count <- t(vapply(nd, function(d) {
    c(sum(!d %in% vocab), vapply(vocab, function(t) sum(d == t), numeric(1)))
  }, numeric(length(full))))
  dimnames(ref_count) <- NULL
  expect_identical(layer_c(new), ref_count)
  expect_identical(layer_m(new), (ref_count > 0) * 1)
  idf <- f32(ref_idf(docs, vocab))
  w <- c(f32(mean(idf)), idf)
  expect_equal(layer_t(new), sweep(ref_count, 2, w, `*`), tolerance = 1e-7)
  expect_equal(multihead:::layer_self(layer_t)$lookup$idf, w, tolerance = 1e-7)

  padded <- layer_text_vectorization(output_mode = "count", max_tokens = 50, pad_to_max_tokens = TRUE)
  adapt(padded, corpus)
  out <- padded(new)
  expect_identical(dim(out), c(4L, 50L))
  expect_identical(out[, seq_along(full)], ref_count)
  expect_true(all(out[, -seq_along(full)] == 0))
  tpad <- layer_text_vectorization(output_mode = "tf_idf", max_tokens = 50, pad_to_max_tokens = TRUE)
  adapt(tpad, corpus)
  expect_equal(tpad(new)[, seq_along(full)], sweep(ref_count, 2, w, `*`), tolerance = 1e-7)
})

test_that("tf_idf with a given vocabulary: idf weights of the tokens, their mean for [UNK]", {
  layer <- layer_text_vectorization(output_mode = "tf_idf", vocabulary = c("a", "b"), idf_weights = c(0.5, 2))
  expect_identical(get_vocabulary(layer), c("[UNK]", "a", "b"))
  expect_equal(layer(c("a b b z", "z")), rbind(c(1.25, 0.5, 4), c(1.25, 0, 0)))
  with_special <- layer_text_vectorization(output_mode = "tf_idf", vocabulary = c("[UNK]", "a", "b"),
                                           idf_weights = c(9, 0.5, 2))
  expect_equal(with_special("z a"), rbind(c(9, 0.5, 0)))
  expect_error(layer_text_vectorization(output_mode = "tf_idf", vocabulary = c("a", "b")), "idf_weights")
  expect_error(layer_text_vectorization(output_mode = "tf_idf", vocabulary = c("a", "b"), idf_weights = 1),
               "idf_weights")
})

test_that("set_vocabulary() / get_vocabulary() round trip and Keras's vocabulary checks", {
  layer <- layer_text_vectorization()
  set_vocabulary(layer, c("", "[UNK]", "x", "y"))
  expect_identical(get_vocabulary(layer), c("", "[UNK]", "x", "y"))
  set_vocabulary(layer, get_vocabulary(layer))
  expect_identical(get_vocabulary(layer), c("", "[UNK]", "x", "y"))
  expect_identical(get_vocabulary(layer, include_special_tokens = FALSE), c("x", "y"))
  expect_identical(layer$vocabulary_size(), 4L)
  expect_error(set_vocabulary(layer, c("x", "x")), "distinct")
  expect_error(set_vocabulary(layer, c("x", "[UNK]")), "OOV token")
  expect_error(set_vocabulary(layer, c("x", "")), "mask token")
  expect_error(set_vocabulary(layer, character()), "vocabulary")
  expect_error(set_vocabulary(layer, c("a", NA)), "NA")
  small <- layer_text_vectorization(max_tokens = 3)
  expect_error(set_vocabulary(small, c("a", "b")), "max_tokens")
  f <- tempfile(fileext = ".txt")
  writeLines(c("earth", "wind", "fire", ""), f)
  from_file <- layer_text_vectorization(vocabulary = f)
  expect_identical(get_vocabulary(from_file), c("", "[UNK]", "earth", "wind", "fire"))
  expect_null(get_config(from_file)$vocabulary)
  expect_error(adapt(layer_text_vectorization(vocabulary = "a"), "a b"), "cannot be adapted")
})

test_that("adapt() in batches, on a list of batches and with steps gives the whole data's vocabulary", {
  texts <- rep(corpus, 3)
  whole <- layer_text_vectorization(output_mode = "tf_idf")
  adapt(whole, texts)
  batched <- layer_text_vectorization(output_mode = "tf_idf")
  adapt(batched, texts, batch_size = 4)
  expect_identical(get_vocabulary(batched), get_vocabulary(whole))
  expect_equal(multihead:::layer_self(batched)$lookup$idf, multihead:::layer_self(whole)$lookup$idf)
  listed <- layer_text_vectorization()
  adapt(listed, list(texts[1:10], texts[11:30]))
  expect_identical(get_vocabulary(listed), get_vocabulary(layer_text_vectorization() |> (\(l) { adapt(l, texts); l })()))
  first <- layer_text_vectorization()
  adapt(first, texts, batch_size = 10, steps = 1)
  expect_identical(get_vocabulary(first, FALSE), ref_vocabulary(ref_tokens(texts[1:10])))
  expect_identical(adapt(first, texts), first)
})

test_that("latin1 and UTF-8 spellings of the same text give the same tokens", {
  u <- c("Caf\u00e9 cr\u00e8me", "na\u00efve caf\u00e9")
  l1 <- iconv(u, "UTF-8", "latin1")
  expect_identical(Encoding(l1), c("latin1", "latin1"))
  a <- layer_text_vectorization(); adapt(a, u)
  b <- layer_text_vectorization(); adapt(b, l1)
  expect_identical(get_vocabulary(a), get_vocabulary(b))
  expect_identical(a(l1), a(u))
  expect_error(a(c("ok", rawToChar(as.raw(c(0x61, 0xff))))), "UTF-8")
})

test_that("standardize and split as R functions", {
  layer <- layer_text_vectorization(standardize = function(x) gsub("[0-9]", "#", tolower(x)),
                                    split = function(x) strsplit(x, ",", fixed = TRUE))
  adapt(layer, c("A1,b2,A1", "c3"))
  expect_identical(get_vocabulary(layer), c("", "[UNK]", "a#", "c#", "b#"))
  expect_identical(layer("B9,q"), rbind(c(4L, 1L)))
  bad <- layer_text_vectorization(standardize = function(x) 1)
  expect_error(bad("a"), "standardize")
  bad_split <- layer_text_vectorization(split = function(x) 1:3)
  expect_error(bad_split("a"), "split")
})

test_that("config round trip, saveRDS() and save_model() keep the vocabulary and idf weights", {
  layer <- layer_text_vectorization(max_tokens = 20, output_mode = "tf_idf", ngrams = c(1, 2), name = "tv")
  adapt(layer, corpus)
  cfg <- get_config(layer)
  expect_identical(names(cfg), c("name", "trainable", "dtype", "max_tokens", "standardize", "split", "ngrams",
                                 "output_mode", "output_sequence_length", "pad_to_max_tokens", "sparse", "ragged",
                                 "vocabulary", "idf_weights", "encoding", "vocabulary_size"))
  expect_null(cfg$vocabulary)          # an adapted vocabulary is an asset in Keras's archives
  expect_identical(cfg$vocabulary_size, 20L)
  rebuilt <- from_config(cfg)   # without the vocabulary (as Keras's from_config() without the archive's assets)
  expect_identical(get_config(rebuilt)[names(cfg) != "vocabulary_size"], cfg[names(cfg) != "vocabulary_size"])
  multihead:::lookup_load_assets(multihead:::layer_self(rebuilt),
                                 multihead:::lookup_save_assets(multihead:::layer_self(layer)))
  expect_identical(get_config(rebuilt), cfg)
  expect_identical(rebuilt(corpus), layer(corpus))
  path <- tempfile(fileext = ".rds")
  saveRDS(layer, path)
  back <- readRDS(path)
  expect_identical(back(corpus), layer(corpus))

  given <- layer_text_vectorization(vocabulary = c("a", "b"), output_sequence_length = 3)
  expect_identical(get_config(given)$vocabulary, c("a", "b"))
  expect_identical(from_config(get_config(given))("b a z"), given("b a z"))

  inp <- keras_input(shape = 1, dtype = "string")
  model <- keras_model(inp, inp |> layer() |> layer_dense(2))
  mpath <- tempfile(fileext = ".rds")
  save_model(model, mpath)
  loaded <- load_model(mpath)
  expect_identical(predict(loaded, corpus, verbose = 0), predict(model, corpus, verbose = 0))
  expect_identical(get_vocabulary(get_layer(loaded, "tv")), get_vocabulary(layer))

  fn <- layer_text_vectorization(standardize = function(x) x, output_sequence_length = 2)
  adapt(fn, "a b")
  fm <- keras_model(inp, fn(inp))
  expect_error(save_model(fm, tempfile(fileext = ".rds")), "saveRDS")
})

test_that("a model taking text: fit() and predict() on character vectors", {
  set.seed(5)
  vec <- layer_text_vectorization(max_tokens = 30, output_sequence_length = 6)
  words <- c("good", "bad", "movie", "plot", "actor", "the", "a", "very")
  make <- function(n) {
    y <- rbinom(n, 1, 0.5)
    x <- vapply(y, function(p) paste(c(sample(words[3:8], 4, TRUE), if (p) "good" else "bad")[sample(5)],
                                     collapse = " "), character(1))
    list(x = x, y = y)
  }
  train <- make(400)
  adapt(vec, train$x)
  inp <- keras_input(shape = 1, dtype = "string")
  expect_identical(inp$dtype, "string")
  out <- inp |> vec() |> layer_embedding(30, 8) |> layer_global_average_pooling_1d() |>
    layer_dense(1, activation = "sigmoid")
  model <- keras_model(inp, out)
  expect_identical(vec(inp)$dtype, "int64")
  expect_identical(shape(vec(inp)), c(NA, 6L))
  compile(model, optimizer = "adam", loss = "binary_crossentropy", metrics = "accuracy")
  fit(model, train$x, train$y, epochs = 30, batch_size = 32, verbose = 0)
  test <- make(200)
  p <- predict(model, test$x, verbose = 0)
  expect_identical(dim(p), c(200L, 1L))
  expect_gt(mean((p > 0.5) == test$y), 0.9)
  expect_equal(predict(model, matrix(test$x[1:3]), verbose = 0), p[1:3, , drop = FALSE], tolerance = 1e-6)
  expect_error(predict(model, 1:3, verbose = 0), "character")
  expect_error(predict(model, c("a", NA), verbose = 0), "NA")
  expect_error(fit(model, rbind(c("a", "b")), 1, verbose = 0), "shape")
})

test_that("sequential models with text vectorization first (Keras's tests: first layer, ngrams and tf_idf saved)", {
  vocab_layer <- function() layer_text_vectorization(max_tokens = 10, output_sequence_length = 3,
                                                     vocabulary = c("baz", "bar", "foo"))
  x <- rbind("foo qux bar", "qux baz")
  first_call <- keras_model_sequential(layers = list(vocab_layer(), layer_embedding(input_dim = 5, output_dim = 4)))
  expect_identical(dim(first_call(x)), c(2L, 3L, 4L))
  declared <- keras_model_sequential(input_shape = 1, input_dtype = "string") |>
    layer_text_vectorization(ngrams = c(1, 2))
  data <- c("foo bar", "bar baz", "baz bada boom")
  adapt(declared$layers[[1]], data)
  out <- declared(data)
  path <- tempfile(fileext = ".rds")
  save_model(declared, path)
  expect_identical(load_model(path)(data), out)
  tfidf <- keras_model_sequential(input_shape = integer(), input_dtype = "string") |>
    layer_text_vectorization(max_tokens = 100, output_mode = "tf_idf")
  adapt(tfidf$layers[[1]], data)
  out <- tfidf(data)
  expect_identical(dim(out), c(3L, 6L))
  save_model(tfidf, path, overwrite = TRUE)
  expect_identical(load_model(path)(data), out)
})

test_that("bad arguments are errors naming the argument", {
  expect_error(layer_text_vectorization(output_mode = "multi_hot", output_sequence_length = 3),
               "output_sequence_length")
  expect_error(layer_text_vectorization(output_mode = "ints"), "output_mode")
  expect_error(layer_text_vectorization(standardize = "upper"), "standardize")
  expect_error(layer_text_vectorization(split = 2), "split")
  expect_error(layer_text_vectorization(ngrams = 0), "ngrams")
  expect_error(layer_text_vectorization(max_tokens = 1), "max_tokens")
  expect_error(layer_text_vectorization(pad_to_max_tokens = TRUE, output_mode = "count"), "max_tokens")
  expect_error(layer_text_vectorization(sparse = TRUE), "sparse")
  expect_error(layer_text_vectorization(ragged = TRUE), "ragged")
  expect_error(layer_text_vectorization(encoding = "latin1"), "encoding")
  expect_error(layer_text_vectorization(idf_weights = 1), "idf_weights")
  expect_error(layer_text_vectorization(foo = 1), "foo")
  layer <- layer_text_vectorization()
  expect_error(layer(1:3), "inputs")
  expect_error(layer(c("a", NA)), "NA")
  expect_error(layer(matrix("a", 2, 2)), "shape")
  expect_error(adapt(layer), "data")
  expect_error(adapt(layer, 1:3), "data")
  expect_error(adapt(layer, "a", batch_size = 0), "batch_size")
  expect_error(adapt(layer_dense(units = 2), "a"), "object")
  expect_error(get_vocabulary(layer, include_special_tokens = NA), "include_special_tokens")
  expect_error(layer_text_vectorization(output_mode = "count")("a"), "adapt")
  counts <- layer_text_vectorization(output_mode = "count")
  adapt(counts, "a b")
  expect_error(adapt(counts, "a b c"), "cannot change")
})

# ---- "Deep Learning with R", chapter 11: the text-classification Transformer -------------

test_that("Deep Learning with R (ch. 11): TextVectorization + adapt + positional embedding + encoder learns", {
  set.seed(21)
  # CHANGED (data): a synthetic review corpus instead of IMDB's files; a review is positive when it has
  # more "good"-words than "bad"-words.
  good <- c("good", "great", "wonderful", "superb")
  bad <- c("bad", "awful", "boring", "terrible")
  filler <- c("the", "movie", "film", "plot", "actor", "was", "and", "a", "story", "scene", "music", "but")
  make_reviews <- function(n) {
    y <- integer(n); x <- character(n)
    for (i in seq_len(n)) {
      k_good <- sample(0:3, 1); k_bad <- sample(0:3, 1)
      if (k_good == k_bad) k_bad <- (k_bad + 1) %% 4
      w <- c(sample(good, k_good, TRUE), sample(bad, k_bad, TRUE), sample(filler, sample(4:10, 1), TRUE))
      w <- w[sample(length(w))]
      x[i] <- paste0(toupper(substr(w[1], 1, 1)), substring(paste(w, collapse = " "), 2), ".")
      y[i] <- as.integer(k_good > k_bad)
    }
    list(x = x, y = y)
  }
  train <- make_reviews(2000)
  test <- make_reviews(400)

  max_length <- 20   # CHANGED (sizes): 600 / 20000 in the book
  max_tokens <- 40
  text_vectorization <- layer_text_vectorization(
    max_tokens = max_tokens,
    output_mode = "int",
    output_sequence_length = max_length
  )
  adapt(text_vectorization, train$x)   # CHANGED (data loading): a character vector, not a TF Dataset
  int_train_x <- text_vectorization(train$x)   # CHANGED (data loading): instead of dataset_map()
  int_test_x <- text_vectorization(test$x)

  layer_transformer_encoder <- new_layer_class(
    classname = "TransformerEncoder",
    initialize = function(embed_dim, dense_dim, num_heads, ...) {
      super$initialize(...)
      self$embed_dim <- embed_dim
      self$dense_dim <- dense_dim
      self$num_heads <- num_heads
      self$attention <- layer_multi_head_attention(num_heads = num_heads, key_dim = embed_dim)
      self$dense_proj <- keras_model_sequential() %>%
        layer_dense(dense_dim, activation = "relu") %>%
        layer_dense(embed_dim)
      self$layernorm_1 <- layer_layer_normalization()
      self$layernorm_2 <- layer_layer_normalization()
    },
    call = function(inputs, mask = NULL) {
      if (!is.null(mask))
        mask <- mask[, newaxis, ]   # CHANGED: tf$newaxis in the book's TensorFlow-era listing
      inputs %>%
        { self$attention(., ., attention_mask = mask) + . } %>%
        self$layernorm_1() %>%
        { self$dense_proj(.) + . } %>%
        self$layernorm_2()
    },
    get_config = function() {
      config <- super$get_config()
      for (name in c("embed_dim", "num_heads", "dense_dim"))
        config[[name]] <- self[[name]]
      config
    }
  )

  layer_positional_embedding <- new_layer_class(
    classname = "PositionalEmbedding",
    initialize = function(sequence_length, input_dim, output_dim, ...) {
      super$initialize(...)
      self$token_embeddings <- layer_embedding(input_dim = input_dim, output_dim = output_dim)
      self$position_embeddings <- layer_embedding(input_dim = sequence_length, output_dim = output_dim)
      self$sequence_length <- sequence_length
      self$input_dim <- input_dim
      self$output_dim <- output_dim
    },
    call = function(inputs) {
      length <- op_shape(inputs)[[2]]   # CHANGED: tf$shape(inputs)[-1]
      positions <- op_arange(start = 0L, end = length, step = 1L, include_end = FALSE)  # CHANGED: tf$range()
      embedded_tokens <- self$token_embeddings(inputs)
      embedded_positions <- self$position_embeddings(positions)
      embedded_tokens + embedded_positions
    },
    compute_mask = function(inputs, mask = NULL) {
      inputs != 0
    },
    get_config = function() {
      config <- super$get_config()
      for (name in c("output_dim", "sequence_length", "input_dim"))
        config[[name]] <- self[[name]]
      config
    }
  )

  vocab_size <- max_tokens
  sequence_length <- max_length
  embed_dim <- 16   # CHANGED (sizes): 256 / 32 / 2 in the book
  num_heads <- 2
  dense_dim <- 32

  inputs <- layer_input(shape(NULL), dtype = "int64")
  outputs <- inputs %>%
    layer_positional_embedding(sequence_length, vocab_size, embed_dim) %>%
    layer_transformer_encoder(embed_dim, dense_dim, num_heads) %>%
    layer_global_max_pooling_1d() %>%
    layer_dropout(0.5) %>%
    layer_dense(1, activation = "sigmoid")
  model <- keras_model(inputs, outputs)
  model %>% compile(optimizer = "rmsprop", loss = "binary_crossentropy", metrics = "accuracy")
  model %>% fit(int_train_x, train$y, validation_split = 0.1, epochs = 8, batch_size = 64, verbose = 0)
  res <- model %>% evaluate(int_test_x, test$y, verbose = 0)
  expect_gt(res[["accuracy"]], 0.8)   # chance: about 0.5

  # "Processing strings inside the model" (the book's inference model on raw strings)
  inputs <- layer_input(shape = c(1), dtype = "string")
  processed_inputs <- text_vectorization(inputs)
  outputs <- model(processed_inputs)
  inference_model <- keras_model(inputs, outputs)
  raw_predictions <- predict(inference_model, test$x, verbose = 0)
  expect_equal(raw_predictions, predict(model, int_test_x, verbose = 0))
  expect_gt(mean((raw_predictions > 0.5) == test$y), 0.8)
})
