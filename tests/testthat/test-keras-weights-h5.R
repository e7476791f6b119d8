# Keras 3 ".weights.h5" files (R/keras-weights-h5.R). The fixtures in
# fixtures/keras-weights/ were written with h5py, independently of
# multihead, by make-keras-weights-h5.py, which also computed the expected
# outputs in plain NumPy.

kw_fixture <- function(name) {
  dir <- file.path(fixture_dir(), "keras-weights")
  fx <- jsonlite::fromJSON(file.path(dir, paste0(name, ".json")), simplifyVector = TRUE,
                           simplifyDataFrame = FALSE, simplifyMatrix = FALSE)
  list(h5 = file.path(dir, paste0(name, ".weights.h5")), input = fx_array(fx$input),
       output = fx_array(fx$output), paths = fx$paths)
}

# Every group and dataset path of an HDF5 file, sorted (as h5py's visit()).
h5_paths <- function(path) {
  f <- hdf5r::H5File$new(path, mode = "r")
  on.exit(f$close_all())
  sort(f$ls(recursive = TRUE)$name)
}

functional_mha_dense <- function(dtype = "float64", key_dim = 3) {
  x <- keras_input(shape = c(3, 4), dtype = dtype)
  y <- layer_multi_head_attention(num_heads = 2, key_dim = key_dim, value_dim = 2, dtype = dtype)(x, x)
  keras_model(x, layer_dense(y, 2, dtype = dtype))
}

sequential_gate_norm <- function(dtype = "float64") {
  keras_model_sequential(input_shape = c(3, 4)) |>
    layer_multi_head_attention(num_heads = 2, key_dim = 2, use_gate = TRUE, dtype = dtype) |>
    layer_layer_normalization(dtype = dtype) |>
    layer_dense(3, dtype = dtype) |>
    layer_dense(1, dtype = dtype)
}

test_that("a functional model loads an independently written Keras weights file and matches NumPy", {
  fx <- kw_fixture("functional-mha-dense")
  model <- functional_mha_dense()
  load_model_weights(model, fx$h5)
  expect_equal(model(fx$input), fx$output, tolerance = 1e-12)
  # the same file into float32 layers: float32 rounding only
  model32 <- functional_mha_dense("float32")
  load_model_weights(model32, fx$h5)
  expect_equal(model32(fx$input), fx$output, tolerance = 1e-5)
})

test_that("a sequential model (gate, layer normalization, two dense layers) loads the Keras layout", {
  fx <- kw_fixture("sequential-gate-norm")
  model <- sequential_gate_norm()
  load_model_weights(model, fx$h5)
  expect_equal(model(fx$input), fx$output, tolerance = 1e-12)
})

# Keras orders a functional model's layers by depth, not by creation: here
# the group "dense" holds `b`'s weights (see make-keras-weights-h5.py).
functional_branches <- function(dtype = "float64") {
  x <- keras_input(shape = c(3, 4), dtype = dtype)
  a <- layer_dense(x, 4, dtype = dtype)
  b <- layer_dense(x, 4, dtype = dtype)
  c <- layer_dense(b, 4, dtype = dtype)
  y <- layer_multi_head_attention(num_heads = 2, key_dim = 2, dtype = dtype)(a, c)
  keras_model(x, y + x)
}

test_that("a functional model with branches takes Keras's layer order", {
  fx <- kw_fixture("functional-branches")
  model <- functional_branches()
  load_model_weights(model, fx$h5)
  expect_equal(model(fx$input), fx$output, tolerance = 1e-12)
  order <- vapply(multihead:::keras_layer_order(multihead:::layer_self(model)), function(l) l$name, "")
  created <- vapply(model$layers, function(l) l$name, "")
  expect_identical(order, created[c(1, 3, 2, 4, 5)])
})

test_that("files we write have exactly Keras's groups and datasets", {
  for (case in list(list("functional-mha-dense", functional_mha_dense),
                    list("sequential-gate-norm", sequential_gate_norm),
                    list("functional-branches", functional_branches))) {
    fx <- kw_fixture(case[[1]])
    path <- tempfile(fileext = ".weights.h5")
    save_model_weights(case[[2]]("float32"), path)
    expect_identical(h5_paths(path), sort(fx$paths))
  }
  mha <- "layers/multi_head_attention/"
  proj <- function(p) paste0(mha, p, c("", "/vars", "/vars/0", "/vars/1"))
  expected <- c("layers", "layers/dense", "layers/dense/vars", "layers/dense/vars/0", "layers/dense/vars/1",
                "layers/input_layer", "layers/input_layer/vars", "layers/multi_head_attention",
                paste0(mha, c("_dropout_layer", "_dropout_layer/vars", "_softmax", "_softmax/vars", "vars")),
                proj("key_dense"), proj("output_dense"), proj("query_dense"), proj("value_dense"), "vars")
  path <- tempfile(fileext = ".weights.h5")
  model <- functional_mha_dense("float32")
  save_model_weights(model, path)
  expect_identical(h5_paths(path), sort(expected))
  f <- hdf5r::H5File$new(path, mode = "r")
  on.exit(f$close_all())
  # Keras's shapes (row-major), float32, and the name attributes of newer Keras
  expect_identical(rev(f[[paste0(mha, "output_dense/vars/0")]]$dims), c(2L, 2L, 4L))
  expect_identical(rev(f[[paste0(mha, "query_dense/vars/0")]]$dims), c(4L, 2L, 3L))
  expect_identical(f[["layers/dense/vars/0"]]$get_type()$to_text(), "H5T_IEEE_F32LE")
  expect_identical(hdf5r::h5attr(f[[paste0(mha, "query_dense/vars")]], "name"), "query")
  expect_identical(hdf5r::h5attr(f[["vars"]], "name"), model$name)
  w <- get_weights(model)
  expect_equal(aperm(f[[paste0(mha, "query_dense/vars/0")]]$read(), 3:1), w[[1]], ignore_attr = TRUE)
})

test_that(".weights.h5 round trips into a model with other layer names and nested models", {
  make <- function() {
    x <- keras_input(shape = c(3, 4))
    sub <- keras_model_sequential(input_shape = c(3, 4)) |> layer_dense(4) |> layer_layer_normalization()
    y <- layer_multi_head_attention(num_heads = 2, key_dim = 2, use_bias = FALSE)(sub(x), x)
    keras_model(x, layer_dense(y, 1))
  }
  a <- make()
  b <- make()
  expect_false(identical(get_weights(a), get_weights(b)))
  path <- tempfile(fileext = ".weights.h5")
  expect_identical(save_model_weights(a, path), path)
  expect_true("layers/sequential/layers/layer_normalization/vars/1" %in% h5_paths(path))
  expect_identical(load_model_weights(b, path), b)
  expect_identical(get_weights(a), get_weights(b))
  x <- array(rnorm(2 * 3 * 4), c(2, 3, 4))
  expect_identical(a(x), b(x))
})

test_that("mismatched weights are errors naming the layer and the path; skip_mismatch skips them", {
  fx <- kw_fixture("functional-mha-dense")
  model <- functional_mha_dense(key_dim = 2)
  before <- get_weights(model)
  expect_error(load_model_weights(model, fx$h5),
               "weight \"key/kernel\" of layer \"multi_head_attention[_0-9]*/key\" has shape \\(4, 2, 2\\) but \"layers/multi_head_attention/key_dense/vars/0\" of \".*functional-mha-dense.weights.h5\" has shape \\(4, 2, 3\\)",
               class = "multihead_error_weights")
  expect_identical(get_weights(model), before)  # nothing changed
  warnings <- capture_warnings(load_model_weights(model, fx$h5, skip_mismatch = TRUE))
  expect_length(warnings, 2L)
  expect_match(warnings, "^Skipping layer \"multi_head_attention[_0-9]*/(query|key)\": weight")
  after <- get_weights(model)
  expect_identical(after[1:4], before[1:4])          # query and key kept (both mismatch)
  expect_false(identical(after[[5]], before[[5]]))   # value loaded
  expect_false(identical(after[[9]], before[[9]]))   # dense loaded
  # a different number of weights
  x <- keras_input(shape = c(3, 4))
  y <- layer_multi_head_attention(num_heads = 2, key_dim = 3, value_dim = 2)(x, x)
  nobias <- keras_model(x, layer_dense(y, 2, use_bias = FALSE))
  expect_error(load_model_weights(nobias, fx$h5),
               "layer \"dense[_0-9]*\" has 1 weights but .* has 2 for it \\(at \"layers/dense/vars\"\\)",
               class = "multihead_error_weights")
  # a layer the file does not have
  extra <- keras_model(x, layer_dense(layer_dense(y, 2), 2))
  expect_error(load_model_weights(extra, fx$h5), "no group \"layers/dense_1/vars\"")
})

test_that("files that are not Keras weights files are clear errors", {
  not_h5 <- tempfile(fileext = ".weights.h5")
  writeLines("hello", not_h5)
  model <- functional_mha_dense("float32")
  expect_error(load_model_weights(model, not_h5), "is not an HDF5 file", class = "multihead_error_file")
  other <- tempfile(fileext = ".weights.h5")
  f <- hdf5r::H5File$new(other, mode = "w")
  f[["model_weights"]] <- 1:3
  f$close_all()
  expect_error(load_model_weights(model, other), "not a Keras 3 weights file", class = "multihead_error_file")
})

test_that("group names are Keras's snake_case of the class names", {
  classes <- c("MultiHeadAttention", "EinsumDense", "LayerNormalization", "GlobalAveragePooling1D", "InputLayer",
               "Dense", "Functional", "Sequential", "Add")
  expect_identical(multihead:::keras_snake_case(classes),
                   c("multi_head_attention", "einsum_dense", "layer_normalization", "global_average_pooling1d",
                     "input_layer", "dense", "functional", "sequential", "add"))
})

test_that("a missing hdf5r is an error saying how to install it", {
  expect_error(multihead:::check_suggested_package("hdf5rNotInstalledXYZ", "read Keras weights"),
               "Package \"hdf5rNotInstalledXYZ\" is needed to read Keras weights. Install it with install.packages\\(\"hdf5rNotInstalledXYZ\"\\)",
               class = "multihead_error_dependency")
  expect_true(multihead:::check_suggested_package("stats", "x"))
})

test_that("Embedding, EinsumDense and weightless layers get Keras's groups and round trip", {
  make <- function() {
    keras_model_sequential(input_shape = 5, input_dtype = "int32") |>
      layer_embedding(10, 4) |>
      layer_dropout(0.1) |>
      layer_einsum_dense("abc,cd->abd", output_shape = c(NA, 3), bias_axes = "d") |>
      layer_flatten()
  }
  a <- make()
  b <- make()
  path <- tempfile(fileext = ".weights.h5")
  save_model_weights(a, path)
  expect_identical(h5_paths(path), c("layers", "layers/dropout", "layers/dropout/vars", "layers/einsum_dense",
                                     "layers/einsum_dense/vars", "layers/einsum_dense/vars/0",
                                     "layers/einsum_dense/vars/1", "layers/embedding", "layers/embedding/vars",
                                     "layers/embedding/vars/0", "layers/flatten", "layers/flatten/vars", "vars"))
  load_model_weights(b, path)
  expect_identical(get_weights(b), get_weights(a))
  ids <- matrix(c(1L, 4L, 9L, 0L, 2L, 3L, 3L, 7L, 5L, 6L), 2)
  expect_identical(b(ids), a(ids))
  # float64 layers write float64 datasets
  path64 <- tempfile(fileext = ".weights.h5")
  save_model_weights(functional_mha_dense("float64"), path64)
  f <- hdf5r::H5File$new(path64, mode = "r")
  on.exit(f$close_all())
  expect_identical(f[["layers/dense/vars/1"]]$get_type()$to_text(), "H5T_IEEE_F64LE")
})

test_that("older Keras files with the projections under `_query_dense` etc. load too", {
  fx <- kw_fixture("functional-mha-dense")
  old <- tempfile(fileext = ".weights.h5")
  file.copy(fx$h5, old)
  f <- hdf5r::H5File$new(old, mode = "r+")
  g <- f[["layers/multi_head_attention"]]
  for (p in c("query", "key", "value", "output")) {
    g$link_move_from(g, paste0(p, "_dense"), paste0("_", p, "_dense"))
  }
  f$close_all()
  # a compiled Keras model's file also holds the optimizer's variables: ignored
  f <- hdf5r::H5File$new(old, mode = "r+")
  opt <- f$create_group("optimizer")$create_group("vars")
  opt[["0"]] <- 3L
  f$close_all()
  expect_true(all(c("layers/multi_head_attention/_query_dense/vars/0", "optimizer/vars/0") %in% h5_paths(old)))
  model <- functional_mha_dense()
  load_model_weights(model, old)
  expect_equal(model(fx$input), fx$output, tolerance = 1e-12)
})
