# layer_string_lookup() and layer_integer_lookup(): Keras's documented
# outputs, and the vocabulary order, indices, inversion and encodings
# against a plain-R reference written here.

# tokens by count, high to low, ties by token, high to low (bytes for strings, value for numbers)
ref_order <- function(tokens) {
  u <- unique(tokens)
  cnt <- vapply(u, function(t) sum(tokens == t), numeric(1))
  key <- if (is.character(u)) vapply(u, function(s) paste(sprintf("%02x", as.integer(charToRaw(s))), collapse = ""),
                                     character(1)) else u
  out <- u[0]
  left <- seq_along(u)
  while (length(left)) {
    best <- left[1L]
    for (j in left[-1L]) if (cnt[j] > cnt[best] || (cnt[j] == cnt[best] && key[j] > key[best])) best <- j
    out <- c(out, u[best])
    left <- setdiff(left, best)
  }
  unname(out)
}

f32 <- function(x) readBin(writeBin(as.double(x), raw(), size = 4), "double", n = length(x), size = 4)

test_that("Keras's documented StringLookup and IntegerLookup examples", {
  vocab <- c("a", "b", "c", "d")
  data <- rbind(c("a", "c", "d"), c("d", "z", "b"))
  layer <- layer_string_lookup(vocabulary = vocab)
  expect_identical(layer(data), rbind(c(1L, 3L, 4L), c(4L, 0L, 2L)))
  adapted <- layer_string_lookup()
  adapt(adapted, data)
  expect_identical(get_vocabulary(adapted), c("[UNK]", "d", "z", "c", "b", "a"))
  two_oov <- layer_string_lookup(vocabulary = vocab, num_oov_indices = 0)
  expect_error(two_oov(data), "num_oov_indices")
  expect_identical(two_oov(c("a", "d")), array(c(0L, 3L)))
  one_hot <- layer_string_lookup(vocabulary = vocab, output_mode = "one_hot")
  expect_identical(one_hot(c("a", "b", "c", "d", "z")),
                   rbind(c(0, 1, 0, 0, 0), c(0, 0, 1, 0, 0), c(0, 0, 0, 1, 0), c(0, 0, 0, 0, 1), c(1, 0, 0, 0, 0)))
  multi <- layer_string_lookup(vocabulary = vocab, output_mode = "multi_hot")
  expect_identical(multi(rbind(c("a", "b", "a", "c"), c("d", "z", "z", "d"))),
                   rbind(c(0, 1, 1, 1, 0), c(1, 0, 0, 0, 1)))
  count <- layer_string_lookup(vocabulary = vocab, output_mode = "count")
  expect_identical(count(rbind(c("a", "b", "a", "c"), c("d", "z", "z", "d"))),
                   rbind(c(0, 2, 1, 1, 0), c(2, 0, 0, 0, 2)))
  tfidf <- layer_string_lookup(output_mode = "tf_idf", vocabulary = vocab, idf_weights = c(0.25, 0.75, 0.6, 0.4))
  expect_equal(tfidf(rbind(c("a", "b", "a", "c"), c("d", "z", "z", "d"))),
               rbind(c(0, 0.5, 0.75, 0.6, 0), c(1, 0, 0, 0, 0.8)), tolerance = 1e-7)
  # the [UNK] weight is the mean of the given weights
  expect_equal(tfidf("z"), array(c(0.5, 0, 0, 0, 0)))   # rank 1: one sample
  masked <- layer_string_lookup(vocabulary = vocab, mask_token = "")
  expect_identical(masked(rbind(c("a", "", "d"), c("d", "z", "b"))), rbind(c(2L, 0L, 5L), c(5L, 1L, 3L)))
  inverse <- layer_string_lookup(vocabulary = vocab, invert = TRUE)
  expect_identical(inverse(rbind(c(1, 3, 4), c(4, 0, 2))), rbind(c("a", "c", "d"), c("d", "[UNK]", "b")))
  expect_identical(inverse(layer(data)), rbind(c("a", "c", "d"), c("d", "[UNK]", "b")))

  ivocab <- c(12, 36, 1138, 42)
  idata <- rbind(c(12, 1138, 42), c(42, 1000, 36))
  ints <- layer_integer_lookup(vocabulary = ivocab)
  expect_identical(ints(idata), rbind(c(1L, 3L, 4L), c(4L, 0L, 2L)))
  iad <- layer_integer_lookup()
  adapt(iad, idata)
  expect_identical(get_vocabulary(iad), c(-1, 42, 1138, 1000, 36, 12))
  iinv <- layer_integer_lookup(vocabulary = ivocab, invert = TRUE)
  expect_identical(iinv(rbind(c(1, 3, 4), c(4, 0, 2))), rbind(c(12, 1138, 42), c(42, -1, 36)))
  imask <- layer_integer_lookup(vocabulary = ivocab, mask_token = 0)
  expect_identical(imask(rbind(c(12, 0, 42), c(42, 1000, 36))), rbind(c(2L, 0L, 5L), c(5L, 1L, 3L)))
})

test_that("adapt() order, max_tokens and special tokens against the reference", {
  set.seed(7)
  toks <- sample(c(letters[1:12], "\u00e9", "\u00c9", "Z", "aa", "a b"), 500, replace = TRUE, prob = c(1:17) / 17)
  data <- matrix(toks, 100)
  layer <- layer_string_lookup()
  adapt(layer, data)
  expect_identical(get_vocabulary(layer, FALSE), ref_order(toks))
  capped <- layer_string_lookup(max_tokens = 6, mask_token = "", num_oov_indices = 1)
  adapt(capped, c(data, "", "", "", "[UNK]", "[UNK]"))   # special tokens are never learnt
  expect_identical(get_vocabulary(capped), c("", "[UNK]", ref_order(toks)[1:4]))
  nums <- sample(c(-3, 0, 5, 7, 100, 2^40), 300, replace = TRUE, prob = c(3, 1, 3, 2, 2, 1))
  il <- layer_integer_lookup(mask_token = 0)
  adapt(il, nums)
  expect_identical(get_vocabulary(il), c(0, -1, ref_order(nums[nums != 0])))
  expect_identical(il(c(0, 5, 2^40, 8)), array(c(0L, match(c(5, 2^40), ref_order(nums[nums != 0])) + 1L, 1L)))
})

test_that("indices against the reference for every special-token layout", {
  vocab <- c("x", "y", "z")
  input <- c("z", "q", "x", "", "y", "q")
  for (mask in list(NULL, "")) {
    for (n_oov in 0:1) {
      layer <- layer_string_lookup(vocabulary = vocab, mask_token = mask, num_oov_indices = n_oov)
      start <- (if (is.null(mask)) 0L else 1L) + n_oov
      known <- input %in% vocab | (!is.null(mask) & input == "")
      if (n_oov == 0L && !all(known)) {
        expect_error(layer(input), "unknown token")
        next
      }
      ref <- ifelse(input %in% vocab, match(input, vocab) - 1L + start,
                    ifelse(!is.null(mask) & input == "", 0L, if (is.null(mask)) 0L else 1L))
      expect_identical(layer(input), array(as.integer(ref)), info = paste(format(mask), n_oov))
      expect_identical(get_vocabulary(layer)[as.vector(layer(input)[input %in% vocab]) + 1L], input[input %in% vocab])
    }
  }
  # integer floormod OOV buckets: oov_start + token %% num_oov_indices
  il <- layer_integer_lookup(vocabulary = c(10, 20), num_oov_indices = 3, mask_token = 0)
  x <- c(10, -7, 0, 20, 8, 4)
  expect_identical(il(x), array(as.integer(c(4, 1 + (-7 %% 3), 0, 5, 1 + (8 %% 3), 1 + (4 %% 3)))))
  expect_identical(get_vocabulary(il), c(0, -1, -1, -1, 10, 20))
})

test_that("encodings: one_hot shapes, multi_hot/count over the last axis, mask not counted, pad_to_max_tokens", {
  vocab <- c("a", "b", "c")
  oh <- layer_string_lookup(vocabulary = vocab, output_mode = "one_hot")
  expect_identical(dim(oh(matrix("a", 4, 1))), c(4L, 4L))
  expect_identical(dim(oh(matrix("a", 4, 2))), c(4L, 2L, 4L))
  x <- matrix(c("a", "b", "z", "c", "a", "a"), 3)
  o <- oh(x)
  for (i in 1:3) for (j in 1:2) {
    ref <- numeric(4); ref[(if (x[i, j] %in% vocab) match(x[i, j], vocab) else 0) + 1] <- 1
    expect_identical(o[i, j, ], ref)
  }
  cnt <- layer_string_lookup(vocabulary = vocab, output_mode = "count", mask_token = "")
  expect_identical(get_vocabulary(cnt), c("[UNK]", "a", "b", "c"))
  expect_identical(cnt(rbind(c("a", "", "a"), c("", "", "q"))), rbind(c(0, 2, 0, 0), c(1, 0, 0, 0)))
  expect_identical(cnt(c("a", "b", "b")), array(c(0, 1, 2, 0)))     # rank 1: one sample
  pad <- layer_string_lookup(vocabulary = vocab, output_mode = "multi_hot", max_tokens = 6, pad_to_max_tokens = TRUE)
  expect_identical(pad(rbind(c("a", "c"))), rbind(c(0, 1, 0, 1, 0, 0)))
  expect_identical(pad$compute_output_shape(c(NA, 2)), c(NA, 6L))
  expect_identical(oh$compute_output_shape(c(NA, 1)), c(NA, 4L))
  expect_identical(oh$compute_output_shape(c(NA, 3)), c(NA, 3L, 4L))
  i3 <- layer_integer_lookup(vocabulary = c(5, 6), output_mode = "count")
  expect_identical(i3(rbind(c(5, 5, 9), c(6, 9, 9))), rbind(c(1, 2, 0), c(2, 0, 1)))
})

test_that("tf_idf learnt by adapt(): log(1 + n_docs / (1 + df)) in float32, the mean for OOV", {
  docs <- rbind(c("a", "b", "a"), c("b", "c", "c"), c("a", "a", "a"), c("d", "b", "e"))
  layer <- layer_string_lookup(output_mode = "tf_idf")
  adapt(layer, docs)
  vocab <- get_vocabulary(layer, FALSE)
  expect_identical(vocab, ref_order(as.vector(docs)))
  df <- vapply(vocab, function(t) sum(apply(docs, 1, function(r) t %in% r)), numeric(1))
  idf <- f32(log(1 + nrow(docs) / (1 + df)))
  w <- unname(c(f32(mean(idf)), idf))
  expect_equal(multihead:::layer_self(layer)$lookup$idf, w, tolerance = 1e-7)
  x <- rbind(c("a", "a", "q"), c("e", "b", "b"))
  ref <- t(apply(x, 1, function(r) c(sum(!r %in% vocab), vapply(vocab, function(t) sum(r == t), numeric(1))))) 
  dimnames(ref) <- NULL
  expect_equal(layer(x), sweep(ref, 2, w, `*`), tolerance = 1e-7)
})

test_that("set/get_vocabulary round trip, config, from_config, saveRDS and save_model", {
  layer <- layer_string_lookup(mask_token = "<pad>", name = "lk")
  set_vocabulary(layer, c("<pad>", "[UNK]", "x", "y"))
  expect_identical(get_vocabulary(layer), c("<pad>", "[UNK]", "x", "y"))
  set_vocabulary(layer, c("y", "x"))
  expect_identical(get_vocabulary(layer), c("<pad>", "[UNK]", "y", "x"))
  cfg <- get_config(layer)
  expect_identical(names(cfg), c("name", "trainable", "dtype", "invert", "max_tokens", "num_oov_indices", "oov_token",
                                 "mask_token", "output_mode", "sparse", "pad_to_max_tokens", "idf_weights",
                                 "vocabulary", "vocabulary_size", "oov_method", "salt", "encoding"))
  icfg <- get_config(layer_integer_lookup(vocabulary = c(3, 1)))
  expect_identical(names(icfg), c("name", "trainable", "dtype", "invert", "max_tokens", "num_oov_indices",
                                  "oov_token", "mask_token", "output_mode", "sparse", "pad_to_max_tokens",
                                  "vocabulary_dtype", "idf_weights", "vocabulary", "vocabulary_size", "oov_method",
                                  "salt"))
  expect_identical(icfg$vocabulary, c(3, 1))
  expect_identical(icfg$vocabulary_size, 3L)
  expect_identical(from_config(icfg)(c(1, 3, 2)), array(c(2L, 1L, 0L)))
  path <- tempfile(fileext = ".rds")
  saveRDS(layer, path)
  expect_identical(readRDS(path)(c("x", "q", "<pad>")), layer(c("x", "q", "<pad>")))

  inp <- keras_input(shape = 3, dtype = "string")
  counts <- layer_string_lookup(output_mode = "tf_idf", name = "counts")
  adapt(counts, rbind(c("a", "b", "a"), c("c", "c", "b")))
  model <- keras_model(inp, inp |> counts() |> layer_dense(1))
  x <- rbind(c("a", "b", "q"), c("c", "c", "c"))
  mpath <- tempfile(fileext = ".rds")
  save_model(model, mpath)
  loaded <- load_model(mpath)
  expect_identical(loaded(x), model(x))
  expect_identical(get_vocabulary(get_layer(loaded, "counts")), get_vocabulary(counts))
  expect_identical(predict(loaded, x, verbose = 0), predict(model, x, verbose = 0))
})

test_that("lookups in models: integer ids in, strings back out (invert)", {
  ids <- keras_input(shape = 2, dtype = "int64")
  inv <- layer_string_lookup(vocabulary = c("a", "b"), invert = TRUE)
  out <- inv(ids)
  expect_identical(out$dtype, "string")
  m <- keras_model(ids, out)
  expect_identical(m(rbind(c(1, 2), c(0, 5))), rbind(c("a", "b"), c("[UNK]", "[UNK]")))
  s <- keras_input(shape = 2, dtype = "string")
  emb <- s |> layer_string_lookup(vocabulary = c("a", "b"), mask_token = "") |> layer_embedding(4, 2)
  expect_identical(shape(emb), c(NA, 2L, 2L))
})

test_that("bad arguments are errors naming the argument", {
  expect_error(layer_string_lookup(num_oov_indices = 2), "num_oov_indices")
  expect_error(layer_string_lookup(num_oov_indices = -1), "num_oov_indices")
  expect_error(layer_string_lookup(max_tokens = 1), "max_tokens")
  expect_error(layer_string_lookup(invert = TRUE, output_mode = "count"), "invert")
  expect_error(layer_string_lookup(output_mode = "hot"), "output_mode")
  expect_error(layer_string_lookup(mask_token = 1), "mask_token")
  expect_error(layer_string_lookup(oov_token = NA_character_), "oov_token")
  expect_error(layer_string_lookup(sparse = TRUE), "sparse")
  expect_error(layer_string_lookup(pad_to_max_tokens = TRUE), "max_tokens")
  expect_error(layer_string_lookup(vocabulary_dtype = "int64"), "vocabulary_dtype")
  expect_error(layer_string_lookup(idf_weights = 1), "idf_weights")
  expect_error(layer_string_lookup(vocabulary = c("a", "a")), "distinct")
  expect_error(layer_integer_lookup(vocabulary_dtype = "int32"), "vocabulary_dtype")
  expect_error(layer_integer_lookup(vocabulary = c(1.5, 2)), "vocabulary")
  expect_error(layer_integer_lookup(mask_token = "a"), "mask_token")
  expect_error(layer_integer_lookup(oov_method = "farmhash"), "oov_method")
  expect_error(layer_integer_lookup(salt = 3), "salt")
  s <- layer_string_lookup(vocabulary = "a")
  expect_error(s(1:2), "inputs")
  expect_error(s(c("a", NA)), "NA")
  i <- layer_integer_lookup(vocabulary = 1)
  expect_error(i("a"), "inputs")
  expect_error(i(c(1, NA)), "inputs")
  expect_error(i(1.5), "inputs")
  inv <- layer_integer_lookup(vocabulary = 1, invert = TRUE)
  expect_error(inv(0.5), "inputs")
  expect_error(adapt(s, "b"), "cannot be adapted")
  expect_error(adapt(layer_string_lookup(), 1:3), "data")
  expect_error(adapt(layer_string_lookup(), "a", 2), "\\.\\.\\.")
  expect_error(layer_string_lookup(output_mode = "multi_hot")("a"), "adapt")
  expect_error(set_vocabulary(layer_string_lookup(), c("a", "b"), idf_weights = c(1, 2)), "idf_weights")
  expect_error(set_vocabulary(layer_string_lookup(output_mode = "tf_idf"), c("a", "b")), "idf_weights")
  expect_error(get_vocabulary("a"), "object")
})
