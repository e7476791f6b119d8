# Sequential models: layers added in place by piping, lazy building by the
# first call, self-attention inside, nesting, summaries, configs, errors.

test_that("piping adds layers in place and returns the model invisibly", {
  set.seed(31)
  model <- keras_model_sequential(input_shape = c(5, 8), name = "seq")
  expect_s3_class(model, c("Sequential", "multihead_sequential", "multihead_model"))
  expect_invisible(model |> layer_multi_head_attention(num_heads = 2, key_dim = 4, name = "att_a"))
  ret <- model |> layer_multi_head_attention(num_heads = 1, key_dim = 2, name = "att_b")
  expect_identical(ret, model)
  expect_identical(vapply(model$layers, function(l) l$name, ""), c("att_a", "att_b"))
  expect_true(model$built)
  expect_true(model$layers[[2]]$built)      # built when added to a model with an input shape
  expect_identical(model$output_shape, c(NA, 5L, 8L))
  x <- rand_array(3, 5, 8)
  a <- get_layer(model, "att_a"); b <- get_layer(model, "att_b")
  h <- a(x, x)
  expect_equal(model(x), b(h, h))           # self-attention on the previous output
  expect_equal(count_params(model), count_params(a) + count_params(b))
  expect_error(model(rand_array(3, 5, 7)), "`inputs` must be an array of shape \\(NA, 5, 8\\) for input")
})

test_that("a sequential model without an input shape is built by its first call", {
  set.seed(32)
  model <- keras_model_sequential()
  layer_multi_head_attention(model, num_heads = 2, key_dim = 2)
  expect_false(model$built)
  expect_false(model$layers[[1]]$built)
  expect_error(model$output_shape, "has no output shape yet")
  expect_output(print(model), "\\? +\\| +0 \\(unbuilt\\)|\\? .* 0 \\(unbuilt\\)")
  x <- rand_array(2, 6, 4)
  y <- model(x)
  expect_true(model$built)
  expect_identical(model$input_shape, c(NA, 6L, 4L))
  expect_equal(y, model$layers[[1]](x, x))
  # sequential models built from symbolic tensors, and nested in functional models
  inner <- keras_model_sequential(layers = list(layer_multi_head_attention(num_heads = 1, key_dim = 3)))
  inp <- keras_input(shape = c(NA, 4))
  out <- inner(inp) + inp
  expect_identical(out$shape, c(NA, NA, 4L))
  outer <- keras_model(inp, out)
  expect_equal(outer(x), inner(x) + x, tolerance = 1e-6)
  expect_identical(get_weights(outer), get_weights(inner))
  # $build() with a shape (batch first), as Keras's Sequential.build()
  explicit <- keras_model_sequential(layers = layer_multi_head_attention(num_heads = 1, key_dim = 2))
  expect_error(count_params(explicit), "is not built yet")
  explicit$build(c(NA, 6, 4))
  expect_identical(explicit$output_shape, c(NA, 6L, 4L))
  expect_equal(count_params(explicit), 3 * (4 * 2 + 2) + (2 * 4 + 4))   # q, k, v (4x1x2 + 2), output (1x2x4 + 4)
  # predict() builds too
  lazy <- keras_model_sequential(layers = layer_multi_head_attention(num_heads = 1, key_dim = 2))
  expect_identical(dim(predict(lazy, x)), dim(x))
})

test_that("sequential models: errors name the problem", {
  m <- keras_model_sequential()
  expect_error(m(rand_array(2, 3, 4)), "Sequential model \"sequential[_0-9]*\" has no layers")
  expect_error(keras_model_sequential(input_shape = c(3, -4)), "`shape` must be a shape")
  expect_error(keras_model_sequential(layers = list(1)), "`layers\\[\\[1\\]\\]` must be a layer")
  expect_error(keras_model_sequential(layers = "a"), "`layers` must be a list of layers")
  expect_error(keras_model_sequential(bogus = 1), "Unknown argument passed to keras_model_sequential\\(\\)")
  expect_error(keras_model_sequential(name = NA), "`name` must be a single non-empty string")
  l <- layer_multi_head_attention(num_heads = 1, key_dim = 2, name = "dup")
  m2 <- keras_model_sequential(input_shape = c(3, 4), layers = list(l))
  expect_error(m2$add(l), "Layer \"dup\" is already in sequential model")
  expect_error(layer_multi_head_attention(m2, num_heads = 1, key_dim = 2, name = "dup"),
               "already has a layer named \"dup\"")
  mq <- keras_model_sequential(input_shape = c(3, 4))
  res_layer <- layer_multi_head_attention(num_heads = 1, key_dim = 2)
  expect_error(multihead:::sequential_add(mq, res_layer, function(layer, x) layer(x, x, return_attention_scores = TRUE)),
               "Layers in a sequential model must have one output")
  expect_length(mq$layers, 0L)             # a failed add leaves the model unchanged
})

test_that("input options, summary and config of sequential models", {
  old <- options(cli.unicode = FALSE)
  on.exit(options(old))
  model <- keras_model_sequential(input_shape = c(4, 6), name = "stack", input_batch_size = 2,
                                  input_name = "feat")
  model |> layer_multi_head_attention(num_heads = 2, key_dim = 3, name = "self_att")
  expect_identical(model$input_shape, c(2L, 4L, 6L))
  expect_identical(model$input$name, "feat")
  expect_identical(format(model), c(
    "Model: \"stack\"",
    "+===============================+==============+=========+",
    "| Layer (type)                  | Output Shape | Param # |",
    "+===============================+==============+=========+",
    "| self_att (MultiHeadAttention) | (2, 4, 6)    |     168 |",
    "+-------------------------------+--------------+---------+",
    " Total params: 168 (672.00 B)",
    " Trainable params: 168 (672.00 B)",
    " Non-trainable params: 0 (0.00 B)"))
  cfg <- get_config(model)
  expect_identical(attr(cfg, "class_name"), "Sequential")
  expect_true(cfg$layers[[1]]$self_attention)
  clone <- from_config(cfg)
  expect_identical(clone$input_shape, c(2L, 4L, 6L))
  set_weights(clone, get_weights(model))
  x <- rand_array(2, 4, 6)
  expect_equal(clone(x), model(x))
  # non-trainable models
  frozen <- keras_model_sequential(input_shape = c(4, 6), trainable = FALSE,
                                   layers = list(layer_multi_head_attention(num_heads = 1, key_dim = 2)))
  expect_length(get_weights(frozen, trainable = TRUE), 0L)
  expect_length(get_weights(frozen, trainable = FALSE), 8L)
  expect_match(format(frozen), "Non-trainable params: 60 ", all = FALSE)
})

test_that("a sequential text classifier: embedding masks reach attention and pooling", {
  set.seed(33)
  model <- keras_model_sequential()
  model |>
    layer_embedding(input_dim = 10, output_dim = 6, mask_zero = TRUE) |>
    layer_multi_head_attention(num_heads = 2, key_dim = 3) |>
    layer_global_average_pooling_1d() |>
    layer_dense(2, activation = "softmax")
  tokens <- rbind(c(4, 2, 7, 0, 0, 0), c(1, 9, 9, 3, 5, 8))
  p <- model(tokens)                               # builds the model (ids given as doubles)
  expect_identical(dim(p), c(2L, 2L))
  expect_equal(rowSums(p), c(1, 1), tolerance = 1e-6)
  expect_identical(model$input$dtype, "float32")
  expect_error(model(tokens[, 1:3]), "`inputs` must be an array of shape \\(NA, 6\\)")  # built for length 6
  # the same layers in a model for sequences of any length
  ids_model <- keras_model_sequential(input_shape = NA, input_dtype = "int32",
                                      layers = lapply(model$layers, identity))
  expect_equal(ids_model(tokens), p)
  expect_identical(ids_model$input$dtype, "int32")
  expect_equal(ids_model(tokens[1, 1:3, drop = FALSE])[1, ], p[1, ], tolerance = 1e-6)  # padding is ignored
})

test_that("piping creates layers in pipe order (earlier layers get the earlier default names)", {
  model <- keras_model_sequential(input_shape = c(5, 8))
  model |> layer_dense(4) |> layer_multi_head_attention(num_heads = 2, key_dim = 2) |> layer_dense(3) |>
    layer_layer_normalization() |> layer_dropout(0.1) |> layer_activation("relu") |> layer_flatten()
  nms <- vapply(model$layers, function(l) l$name, "")
  num <- function(n) { k <- suppressWarnings(as.integer(sub(".*_", "", n))); ifelse(is.na(k), 0L, k) }
  expect_lt(num(nms[grepl("^dense", nms)][1]), num(nms[grepl("^dense", nms)][2]))
  expect_identical(vapply(model$layers, function(l) class(l)[1], ""),
                   c("Dense", "MultiHeadAttention", "Dense", "LayerNormalization", "Dropout", "Activation",
                     "Flatten"))
  expect_identical(model$output_shape, c(NA, 15L))
})
