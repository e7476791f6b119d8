# Keras 3 ".keras" archives, against files written by real Keras 3.15.1
# (fixtures/keras-3.15.1, README there): load_model() and
# load_model_weights() reproduce Keras's outputs; save_model() writes what
# Keras writes (config keys, HDF5 tree); hostile archives give our errors.

kx_dir <- test_path("fixtures", "keras-3.15.1")

kx_case <- function(case) {
  jsonlite::fromJSON(file.path(kx_dir, paste0(case, ".json")), simplifyVector = TRUE,
                     simplifyDataFrame = FALSE, simplifyMatrix = FALSE)
}

# A fixture array (row-major data) as an R array in Keras's axis order.
kx_array <- function(a) {
  d <- as.integer(unlist(a$shape))
  v <- unlist(a$data)
  x <- if (length(d) <= 1L) v else aperm(array(v, rev(d)), rev(seq_along(d)))
  if (identical(a$dtype, "bool")) x[] <- as.logical(x)
  if (grepl("int", a$dtype)) storage.mode(x) <- "integer"
  x
}

kx_inputs <- function(fx) {
  ins <- lapply(fx$input_names, function(n) kx_array(fx$inputs[[n]]))
  if (length(ins) == 1L) ins[[1L]] else ins
}

kx_expect_outputs <- function(got, fx, case) {
  if (!is.list(got)) got <- list(got)
  expect_length(got, length(fx$expected$outputs))
  for (i in seq_along(got)) {
    want <- kx_array(fx$expected$outputs[[i]])
    expect_equal(dim(got[[i]]) %||% length(got[[i]]), dim(want) %||% length(want), info = case)
    err <- max(abs(got[[i]] - want) / pmax(1, abs(want)))
    expect_lt(err, 1e-5, label = sprintf("%s output %d: relative error %g", case, i, err))
  }
}

`%||%` <- function(a, b) if (is.null(a)) b else a
layer_self_of <- function(model) multihead:::layer_self(model)

# The R definition of the fixture's custom layer (its Python source is in
# custom_layer.json: token embedding + position embedding of arange(T)).
kx_positional_embedding <- function() {
  Layer("PositionalEmbedding",
    initialize = function(sequence_length, vocab_size, embed_dim, ...) {
      super$initialize(...)
      self$sequence_length <- sequence_length
      self$vocab_size <- vocab_size
      self$embed_dim <- embed_dim
      self$token_emb <- layer_embedding(input_dim = vocab_size, output_dim = embed_dim, name = "token_emb")
      self$position_emb <- layer_embedding(input_dim = sequence_length, output_dim = embed_dim,
                                           name = "position_emb")
    },
    call = function(inputs) {
      positions <- op_arange(0, op_shape(inputs)[[2]] - 1)
      self$token_emb(inputs) + self$position_emb(positions)
    },
    get_config = function() {
      config <- super$get_config()
      config$sequence_length <- self$sequence_length
      config$vocab_size <- self$vocab_size
      config$embed_dim <- self$embed_dim
      config
    })
}

# The cases whose layers this package has (every case once the attention
# family is complete).
kx_cases <- function() {
  index <- jsonlite::fromJSON(file.path(kx_dir, "index.json"), simplifyVector = FALSE)
  cases <- vapply(index$cases, function(c) c$case %||% c$name, character(1))
  have <- ls(multihead:::.layer_classes)
  needs <- list(gqa = "GroupedQueryAttention", gqa_mqa = "GroupedQueryAttention", attention_dot = "Attention",
                attention_concat = "Attention", additive = "AdditiveAttention")
  Filter(function(cs) is.null(needs[[cs]]) || needs[[cs]] %in% have, cases)
}

kx_load <- function(case, ...) {
  custom <- if (identical(case, "custom_layer")) list(PositionalEmbedding = kx_positional_embedding())
  load_model(file.path(kx_dir, paste0(case, ".keras")), custom_objects = custom, ...)
}

test_that("every Keras 3.15.1 archive loads and reproduces Keras's outputs", {
  skip_if_not_installed("hdf5r")
  cases <- kx_cases()
  expect_true(all(c("mha_self", "encoder", "decoder_shared", "sequential", "einsum", "custom_layer") %in% cases))
  for (case in cases) {
    fx <- kx_case(case)
    model <- kx_load(case)
    expect_s3_class(model, "multihead_model")
    expect_identical(model$name, fx$model_name)
    kx_expect_outputs(model(kx_inputs(fx)), fx, case)
  }
})

test_that("Keras's .weights.h5 files load into the model rebuilt from the archive's configuration", {
  skip_if_not_installed("hdf5r")
  for (case in kx_cases()) {
    fx <- kx_case(case)
    model <- kx_load(case)
    # scramble the weights, then read Keras's standalone weights file
    set_weights(model, lapply(get_weights(model), function(w) w * 0 + 0.5))
    load_model_weights(model, file.path(kx_dir, paste0(case, ".weights.h5")))
    kx_expect_outputs(model(kx_inputs(fx)), fx, case)
    # the weights are Keras's, in model.weights order
    w <- get_weights(model)
    expect_length(w, length(fx$weights))
  }
})

# Keys of nested JSON objects that differ between two configs, as paths.
kx_key_diff <- function(a, b, path = "") {
  if (!is.list(a) || !is.list(b)) return(character())
  if (!is.null(names(a)) || !is.null(names(b))) {
    out <- c(sprintf("%s/%s only in Keras's", path, setdiff(names(a), names(b))),
             sprintf("%s/%s only in ours", path, setdiff(names(b), names(a))))
    for (k in intersect(names(a), names(b))) out <- c(out, kx_key_diff(a[[k]], b[[k]], paste0(path, "/", k)))
    return(out)
  }
  if (length(a) != length(b)) return(sprintf("%s has %d entries in Keras's, %d in ours", path, length(a), length(b)))
  unlist(lapply(seq_along(a), function(i) kx_key_diff(a[[i]], b[[i]], sprintf("%s[%d]", path, i))))
}

kx_h5_tree <- function(path) {
  f <- hdf5r::H5File$new(path, mode = "r")
  on.exit(f$close_all())
  ls <- f$ls(recursive = TRUE, detailed = TRUE)
  sort(paste(ls$name, ls$obj_type, ls$dataset.dims, ls$dataset.type_class))
}

kx_unzip <- function(path) {
  d <- tempfile()
  zip::unzip(path, exdir = d)
  d
}

test_that("save_model() writes the archive Keras writes: members, config keys, HDF5 tree", {
  skip_if_not_installed("hdf5r")
  # keys Keras writes that carry nothing for a reader: the id of a dtype
  # object shared by several layers
  tolerated <- "shared_object_id"
  for (case in kx_cases()) {
    model <- kx_load(case)
    path <- tempfile(fileext = ".keras")
    save_model(model, path)
    expect_identical(sort(zip::zip_list(path)$filename), sort(c("metadata.json", "config.json", "model.weights.h5")))
    ours <- kx_unzip(path)
    keras <- kx_unzip(file.path(kx_dir, paste0(case, ".keras")))
    diff <- kx_key_diff(jsonlite::read_json(file.path(keras, "config.json")),
                        jsonlite::read_json(file.path(ours, "config.json")))
    diff <- diff[!grepl(tolerated, diff)]
    expect_identical(diff, character(), info = case)
    expect_identical(kx_h5_tree(file.path(ours, "model.weights.h5")), kx_h5_tree(file.path(keras, "model.weights.h5")),
                     info = case)
    meta <- jsonlite::read_json(file.path(ours, "metadata.json"))
    expect_identical(meta$keras_version, "3.15.1")
    # and it reads back to the same model
    fx <- kx_case(case)
    again <- load_model(path, custom_objects = if (identical(case, "custom_layer"))
      list(PositionalEmbedding = kx_positional_embedding()))
    expect_identical(again(kx_inputs(fx)), model(kx_inputs(fx)))
  }
})

test_that("the functional graph is written as Keras writes it: nodes, shared layers, op nodes, kwargs", {
  skip_if_not_installed("hdf5r")
  model <- kx_load("decoder_shared")
  ours <- jsonlite::read_json(file.path(kx_unzip({p <- tempfile(fileext = ".keras"); save_model(model, p); p}),
                                        "config.json"))
  keras <- jsonlite::read_json(file.path(kx_unzip(file.path(kx_dir, "decoder_shared.keras")), "config.json"))
  nodes <- function(cfg) lapply(cfg$config$layers, function(l) l$inbound_nodes)
  strip <- function(x) jsonlite::toJSON(x, auto_unbox = TRUE, null = "null")
  expect_identical(strip(nodes(ours)), strip(nodes(keras)))
  expect_identical(ours$config$input_layers, keras$config$input_layers)
  expect_identical(ours$config$output_layers, keras$config$output_layers)
  enc <- kx_load("encoder")
  cfg <- jsonlite::read_json(file.path(kx_unzip({p <- tempfile(fileext = ".keras"); save_model(enc, p); p}),
                                       "config.json"))
  classes <- vapply(cfg$config$layers, function(l) l$class_name, character(1))
  expect_true(all(c("NotEqual", "LogicalOr") %in% classes))
  gap <- cfg$config$layers[[which(classes == "GlobalAveragePooling1D")]]
  expect_identical(gap$inbound_nodes[[1]]$kwargs$mask$config$keras_history, list("logical_or_1", 0L, 0L))
})

test_that("a model built in R goes to a .keras archive and back, compiled, and resumes training exactly", {
  skip_if_not_installed("hdf5r")
  set.seed(3)
  x <- array(rnorm(24 * 4 * 8), c(24, 4, 8))
  y <- array(rnorm(24), c(24, 1))
  build <- function() {
    inp <- keras_input(c(4, 8), name = "x")
    h <- layer_multi_head_attention(num_heads = 2, key_dim = 4, name = "mha")(inp, inp, use_causal_mask = TRUE)
    h <- layer_layer_normalization(layer_add(list(inp, h)))
    out <- layer_dense(layer_global_average_pooling_1d(h), 1, name = "head")
    keras_model(inp, out, name = "block")
  }
  for (opt in list(optimizer_adam(amsgrad = TRUE), optimizer_sgd(momentum = 0.9),
                   optimizer_rmsprop(momentum = 0.5, centered = TRUE), optimizer_adagrad(), optimizer_nadam(),
                   optimizer_lion(), optimizer_adamw(learning_rate = 0.01))) {
    model <- build()
    compile(model, optimizer = opt, loss = "mse", metrics = list("mae", metric_mean_squared_error()))
    fit(model, x, y, epochs = 2, batch_size = 8, verbose = 0, shuffle = FALSE)
    path <- tempfile(fileext = ".keras")
    expect_identical(save_model(model, path), model)
    again <- load_model(path)
    expect_identical(again(x), model(x))
    expect_identical(class(again$optimizer)[1], class(opt)[1])
    fit(model, x, y, epochs = 1, batch_size = 8, verbose = 0, shuffle = FALSE)
    fit(again, x, y, epochs = 1, batch_size = 8, verbose = 0, shuffle = FALSE)
    expect_identical(get_weights(again), get_weights(model))
    # compile = FALSE leaves it uncompiled
    expect_null(layer_self_of(load_model(path, compile = FALSE))$compiled)
  }
  # the optimizer's variables sit where Keras puts them, in Keras's order
  d <- kx_unzip(path)
  f <- hdf5r::H5File$new(file.path(d, "model.weights.h5"), mode = "r")
  on.exit(f$close_all(), add = TRUE)
  n_trainable <- length(get_weights(model))
  # AdamW: iterations, learning_rate, then momentum and velocity of each weight
  expect_length(f[["optimizer/vars"]]$names, 2L + 2L * n_trainable)
  expect_identical(f[["optimizer/vars/0"]]$read(), 2L * 3L)  # 2 epochs of 3 steps when saved
  expect_equal(f[["optimizer/vars/1"]]$read(), 0.01)
})

test_that("save_model(filepath = NULL) returns the archive's bytes and load_model() reads them", {
  skip_if_not_installed("hdf5r")
  model <- kx_load("sequential")
  bytes <- save_model(model)
  expect_type(bytes, "raw")
  expect_identical(bytes[1:4], as.raw(c(0x50, 0x4b, 0x03, 0x04)))
  again <- load_model(bytes)
  fx <- kx_case("sequential")
  kx_expect_outputs(again(kx_inputs(fx)), fx, "sequential (bytes)")
})

test_that("custom layers load by custom_objects or by registered name, and unknown classes are named", {
  skip_if_not_installed("hdf5r")
  path <- file.path(kx_dir, "custom_layer.keras")
  err <- expect_error(load_model(path), class = "multihead_error_unknown_class")
  expect_match(conditionMessage(err), "PositionalEmbedding")
  expect_match(conditionMessage(err), "demo>PositionalEmbedding", fixed = TRUE)
  expect_match(conditionMessage(err), "MultiHeadAttention")  # lists what is known
  PositionalEmbedding <- kx_positional_embedding()
  register_keras_serializable(PositionalEmbedding, package = "demo")
  on.exit(rm(list = "demo>PositionalEmbedding", envir = multihead:::.keras_serializables), add = TRUE)
  fx <- kx_case("custom_layer")
  model <- load_model(path)
  kx_expect_outputs(model(kx_inputs(fx)), fx, "custom_layer (registered)")
  # our archive names the class by its registered name
  p <- tempfile(fileext = ".keras")
  save_model(model, p)
  cfg <- jsonlite::read_json(file.path(kx_unzip(p), "config.json"))
  expect_identical(cfg$config$layers[[2]]$registered_name, "demo>PositionalEmbedding")
  expect_null(cfg$config$layers[[2]]$module)
  expect_error(register_keras_serializable(function(x) x), "`object`", class = "multihead_error_argument")
  expect_error(register_keras_serializable(PositionalEmbedding, package = "a>b"), "`package`",
               class = "multihead_error_argument")
  expect_error(load_model(path, custom_objects = list(PositionalEmbedding = function(x) x)), "custom_objects",
               class = "multihead_error_argument")
})

test_that("arguments of save_model() and load_model() are checked", {
  model <- keras_model_sequential(input_shape = 3) |> layer_dense(2)
  p <- tempfile(fileext = ".keras")
  expect_error(save_model(model, p, zipped = FALSE), "`zipped`", class = "multihead_error_argument")
  expect_error(save_model(model, p, foo = 1), "`foo`", class = "multihead_error_argument")
  expect_error(save_model(model, tempfile(fileext = ".h5")), "legacy", class = "multihead_error_argument")
  expect_error(save_model_weights(model, tempfile(fileext = ".keras")), "archive", class = "multihead_error_argument")
  expect_error(load_model(p, safe_mode = NA), "`safe_mode`", class = "multihead_error_argument")
  expect_error(load_model(p), "`model`", class = "multihead_error_argument")
})

# ---- hostile archives -----------------------------------------------------------------

# Writes a zip holding `members` (name -> raw or character content).
kx_zip <- function(members) {
  d <- tempfile()
  dir.create(d)
  for (nm in names(members)) {
    f <- file.path(d, nm)
    dir.create(dirname(f), recursive = TRUE, showWarnings = FALSE)
    v <- members[[nm]]
    if (is.character(v)) writeLines(v, f, useBytes = TRUE) else writeBin(v, f)
  }
  out <- tempfile(fileext = ".keras")
  zip::zip(out, files = names(members), root = d, mode = "cherry-pick")
  out
}

kx_members <- function(case = "sequential") {
  d <- kx_unzip(file.path(kx_dir, paste0(case, ".keras")))
  list(metadata.json = readBin(file.path(d, "metadata.json"), "raw", 1e6),
       config.json = paste(readLines(file.path(d, "config.json"), warn = FALSE), collapse = "\n"),
       model.weights.h5 = readBin(file.path(d, "model.weights.h5"), "raw", 1e7))
}

test_that("hostile .keras archives give our error, run nothing and never crash", {
  skip_if_not_installed("hdf5r")
  sentinel <- tempfile("sentinel-")
  payload <- sprintf("file.create('%s')", sentinel)
  m <- kx_members()
  cfg <- jsonlite::parse_json(m$config.json)
  edit <- function(f) {
    c2 <- f(cfg)
    m2 <- m
    m2$config.json <- as.character(jsonlite::toJSON(c2, auto_unbox = TRUE, null = "null", digits = NA))
    kx_zip(m2)
  }
  good <- file.path(kx_dir, "sequential.keras")
  bytes <- readBin(good, "raw", file.size(good))
  truncated <- tempfile(fileext = ".keras")
  writeBin(bytes[seq_len(length(bytes) %/% 2)], truncated)
  flipped <- tempfile(fileext = ".keras")
  b2 <- bytes
  at <- seq(200L, length(b2) - 200L, by = 997L)
  b2[at] <- xor(b2[at], as.raw(0x5a))
  writeBin(b2, flipped)
  not_zip <- tempfile(fileext = ".keras")
  writeLines("hello", not_zip)
  deep <- m
  deep$config.json <- paste0(strrep("[", 5000), strrep("]", 5000))
  hostile <- list(
    truncated = truncated,
    bit_flipped = flipped,
    not_a_zip = not_zip,
    escaping_path = kx_zip(c(m, setNames(list("x"), "assets/../../escape.txt"))),
    unknown_member = kx_zip(c(m, list(evil.R = payload))),
    no_weights = kx_zip(m[c("metadata.json", "config.json")]),
    bad_json = kx_zip(replace(m, "config.json", list("{\"class_name\": "))),
    deep_json = kx_zip(deep),
    not_a_model = kx_zip(replace(m, "config.json", list("[1, 2, 3]"))),
    lambda_layer = edit(function(c) {
      c$config$layers[[2]] <- list(module = "keras.layers", class_name = "Lambda",
                                   config = list(name = "l", `function` = list(class_name = "__lambda__",
                                                                            config = list(code = payload))),
                                   registered_name = NULL)
      c
    }),
    function_as_constraint = edit(function(c) {
      c$config$layers[[2]]$config$kernel_constraint <- list(module = "builtins", class_name = "function",
                                                            config = payload, registered_name = "function")
      c
    }),
    unknown_initializer = edit(function(c) {
      c$config$layers[[2]]$config$kernel_initializer <- list(module = "keras.initializers",
                                                             class_name = "system", config = list(cmd = payload),
                                                             registered_name = NULL)
      c
    }),
    code_as_activation = edit(function(c) {
      c$config$layers[[2]]$config$activation <- payload
      c
    }),
    wrong_types = edit(function(c) {
      c$config$layers[[2]]$config$units <- list(a = 1)
      c
    }),
    unknown_op = edit(function(c) {
      c$class_name <- "Functional"
      c
    }),
    oversized_weights = kx_zip(replace(m, "model.weights.h5", list(as.raw(1:10))))
  )
  for (nm in names(hostile)) {
    err <- expect_error(load_model(hostile[[nm]]), class = "multihead_error", label = nm)
    expect_match(conditionMessage(err), "valid|Unknown|not support|Could not|does not have|not an HDF5 file", info = nm)
  }
  expect_false(file.exists(sentinel))
  expect_false(file.exists(file.path(dirname(tempdir()), "escape.txt")))
  # a member declaring more bytes than allowed is refused before extraction
  withr_opt <- options(multihead.max_file_bytes = 1000)
  on.exit(options(withr_opt), add = TRUE)
  err <- expect_error(load_model(good), class = "multihead_error_file")
  expect_match(conditionMessage(err), "multihead.max_file_bytes")
})

test_that("nested models and sequential self-attention go through .keras archives", {
  skip_if_not_installed("hdf5r")
  set.seed(2)
  x <- array(rnorm(3 * 4 * 8), c(3, 4, 8))
  # Keras's Sequential calls each layer on one tensor: self-attention makes it a functional graph
  s <- keras_model_sequential(input_shape = c(4, 8)) |>
    layer_multi_head_attention(num_heads = 2, key_dim = 4) |>
    layer_dense(3)
  p <- tempfile(fileext = ".keras")
  save_model(s, p)
  again <- load_model(p)
  expect_s3_class(again, "Functional")
  expect_identical(again(x), s(x))
  inner <- keras_model_sequential(input_shape = c(4, 8), name = "inner") |> layer_dense(5) |> layer_dense(2)
  inp <- keras_input(c(4, 8))
  mid <- keras_model(inp, inner(layer_dense(inp, 8)), name = "mid")
  inp2 <- keras_input(c(4, 8))
  model <- keras_model(inp2, layer_add(list(mid(inp2), layer_dense(inp2, 2))))
  p <- tempfile(fileext = ".keras")
  save_model(model, p)
  again <- load_model(p)
  expect_identical(again(x), model(x))
  f <- hdf5r::H5File$new(file.path(kx_unzip(p), "model.weights.h5"), mode = "r")
  on.exit(f$close_all(), add = TRUE)
  expect_true(f$exists("layers/functional/layers/sequential/layers/dense_1/vars/0"))
})

test_that("an adapted text vectorization layer keeps its vocabulary in the archive's assets", {
  skip_if_not_installed("hdf5r")
  set.seed(4)
  texts <- c("the cat sat", "the dog ran", "a cat ran", "the end")
  tv <- layer_text_vectorization(max_tokens = 20, output_sequence_length = 4)
  adapt(tv, texts)
  inp <- keras_input(shape = 1, dtype = "string")
  out <- inp |> tv() |> layer_embedding(input_dim = 20, output_dim = 3) |> layer_global_average_pooling_1d()
  model <- keras_model(inp, out)
  p <- tempfile(fileext = ".keras")
  save_model(model, p)
  members <- zip::zip_list(p)$filename
  vocab_member <- grep("^assets/layers/text_vectorization/vocabulary.txt$", members, value = TRUE)
  expect_length(vocab_member, 1L)
  d <- kx_unzip(p)
  expect_identical(readLines(file.path(d, vocab_member), warn = FALSE), get_vocabulary(tv))
  again <- load_model(p)
  expect_identical(again(matrix(texts, ncol = 1)), model(matrix(texts, ncol = 1)))
  tv2 <- get_layer(again, index = 2)
  expect_identical(get_vocabulary(tv2), get_vocabulary(tv))
})

test_that("without a suggested package, .keras files give an error saying how to install it", {
  err <- expect_error(multihead:::check_suggested_package("notapackage.xyz", "read and write Keras \".keras\" archives"),
                      class = "multihead_error_dependency")
  expect_match(conditionMessage(err), "install.packages(\"notapackage.xyz\")", fixed = TRUE)
})

# One small model per built-in layer class: every class goes to a .keras
# archive and back with the same outputs (a class added without an entry
# here fails the coverage check).
kx_class_models <- function() {
  seq_in <- function() keras_input(c(5, 6))
  one <- function(f) function() {
    i <- seq_in()
    keras_model(i, f(i))
  }
  list(
    Dense = one(function(i) layer_dense(i, 3, activation = "relu")),
    EinsumDense = one(function(i) layer_einsum_dense(i, "abc,cd->abd", output_shape = c(NA, 4), bias_axes = "d")),
    MultiHeadAttention = one(function(i) layer_multi_head_attention(num_heads = 2, key_dim = 3)(i, i, use_causal_mask = TRUE)),
    GroupedQueryAttention = one(function(i) {
      layer_group_query_attention(head_dim = 3, num_query_heads = 4, num_key_value_heads = 2)(i, i)
    }),
    Attention = one(function(i) layer_attention(list(i, i), use_scale = TRUE)),
    AdditiveAttention = one(function(i) layer_additive_attention(list(i, i))),
    Embedding = function() {
      i <- keras_input(5, dtype = "int32")
      keras_model(i, layer_embedding(i, 10, 4, mask_zero = TRUE))
    },
    LayerNormalization = one(function(i) layer_layer_normalization(i, axis = 3)),
    RMSNormalization = one(function(i) layer_rms_normalization(i)),
    UnitNormalization = one(function(i) layer_unit_normalization(i)),
    Dropout = one(function(i) layer_dropout(i, 0.3)),
    SpatialDropout1D = one(function(i) layer_spatial_dropout_1d(i, 0.3)),
    Activation = one(function(i) layer_activation(i, "tanh")),
    Flatten = one(function(i) layer_flatten(i)),
    GlobalAveragePooling1D = one(function(i) layer_global_average_pooling_1d(i)),
    GlobalMaxPooling1D = one(function(i) layer_global_max_pooling_1d(i)),
    AveragePooling1D = one(function(i) layer_average_pooling_1d(i, pool_size = 2, padding = "same")),
    MaxPooling1D = one(function(i) layer_max_pooling_1d(i, pool_size = 2)),
    Conv1D = one(function(i) layer_conv_1d(i, filters = 4, kernel_size = 3, padding = "causal", dilation_rate = 2)),
    Add = one(function(i) layer_add(list(i, i))),
    Subtract = one(function(i) layer_subtract(list(i, layer_dense(i, 6)))),
    Multiply = one(function(i) layer_multiply(list(i, i))),
    Average = one(function(i) layer_average(list(i, i))),
    Concatenate = one(function(i) layer_concatenate(list(i, i), axis = 2)),
    Reshape = one(function(i) layer_reshape(i, c(6, 5))),
    Permute = one(function(i) layer_permute(i, c(2, 1))),
    RepeatVector = one(function(i) layer_repeat_vector(layer_flatten(i), 2)),
    Identity = one(function(i) layer_identity(i)),
    Masking = one(function(i) layer_masking(i, mask_value = 0)),
    TimeDistributed = one(function(i) layer_time_distributed(i, layer_dense(units = 2))),
    TextVectorization = function() {
      i <- keras_input(1, dtype = "string")
      keras_model(i, layer_text_vectorization(i, vocabulary = c("a", "b", "c"), output_sequence_length = 3))
    },
    StringLookup = function() {
      i <- keras_input(2, dtype = "string")
      keras_model(i, layer_string_lookup(i, vocabulary = c("a", "b")))
    },
    IntegerLookup = function() {
      i <- keras_input(2, dtype = "int32")
      keras_model(i, layer_integer_lookup(i, vocabulary = c(3L, 7L)))
    }
  )
}

kx_class_input <- function(model) {
  t <- multihead:::layer_self(model)$graph$inputs[[1]]
  d <- c(2L, t$shape[-1])
  switch(t$dtype,
         string = array(sample(c("a", "b", "c", "d"), prod(d), TRUE), d),
         int32 = array(sample(0:9, prod(d), TRUE), d),
         array(round(rnorm(prod(d)), 2), d))
}

test_that("every built-in layer class goes to a .keras archive and back with the same outputs", {
  skip_if_not_installed("hdf5r")
  models <- kx_class_models()
  builtin <- setdiff(multihead:::.builtin_layer_classes(), c("Functional", "Sequential", "InputLayer", "Lambda"))
  expect_identical(setdiff(builtin, names(models)), character())
  set.seed(12)
  for (cls in intersect(names(models), builtin)) {
    model <- models[[cls]]()
    x <- kx_class_input(model)
    p <- tempfile(fileext = ".keras")
    save_model(model, p)
    again <- load_model(p)
    classes <- vapply(again$layers, function(l) class(l)[1], character(1))
    expect_true(cls %in% classes, info = cls)
    expect_identical(unclass(again(x)), unclass(model(x)), info = cls)
  }
})
