# Functional models: outputs equal composing the layers by hand, shared
# layers share weights, input/output structures, nesting, weights, configs,
# get_layer(), predict(), summaries and errors.

test_that("a functional model's output equals composing its layers by hand", {
  set.seed(21)
  x <- keras_input(shape = c(5, 6), dtype = "float64")
  m <- keras_input(shape = c(3, 4), dtype = "float64")
  a1 <- mha64(num_heads = 2, key_dim = 3)
  a2 <- mha64(num_heads = 3, key_dim = 2, output_shape = 7)
  h <- a1(x, x, use_causal_mask = TRUE) + x
  y <- a2(h, m, return_attention_scores = TRUE)
  model <- keras_model(list(x, m), y)
  xa <- rand_array(2, 5, 6); ma <- rand_array(2, 3, 4)
  got <- model(list(xa, ma))
  h_hand <- a1(xa, xa, use_causal_mask = TRUE) + xa
  want <- a2(h_hand, ma, return_attention_scores = TRUE)
  expect_identical(names(got), c("output", "scores"))
  expect_equal(got$output, want$output, tolerance = 1e-13)
  expect_equal(got$scores, want$scores, tolerance = 1e-13)
  expect_identical(dim(got$output), c(2L, 5L, 7L))
})

test_that("a layer called twice shares its weights", {
  set.seed(22)
  x <- keras_input(shape = c(4, 6), dtype = "float64")
  shared <- mha64(num_heads = 2, key_dim = 2, name = "shared")
  model <- keras_model(x, shared(shared(x, x), x))
  expect_length(model$layers, 2L)          # input layer + the shared layer, once
  expect_length(get_weights(model), 8L)
  expect_equal(count_params(model), shared$count_params())
  xa <- rand_array(2, 4, 6)
  expect_equal(model(xa), shared(shared(xa, xa), xa), tolerance = 1e-13)
  w <- get_weights(shared)
  w[[8]][] <- 5                             # output bias
  set_weights(shared, w)
  expect_equal(model(xa), shared(shared(xa, xa), xa), tolerance = 1e-13)
  expect_equal(get_weights(model)[[8]], w[[8]])
})

test_that("inputs and outputs as lists and named lists; models nest", {
  set.seed(23)
  q <- keras_input(shape = c(3, 4), name = "q")
  v <- keras_input(shape = c(5, 4), name = "v")
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 2)
  o <- mha(q, v)
  model <- keras_model(list(query = q, value = v), list(out = o, twice = o * 2))
  qa <- rand_array(2, 3, 4); va <- rand_array(2, 5, 4)
  r <- model(list(value = va, query = qa))
  expect_identical(names(r), c("out", "twice"))
  expect_equal(r$out, mha(qa, va))
  expect_equal(r$twice, 2 * r$out)
  expect_equal(model(list(qa, va)), r)          # positional also works
  expect_identical(names(model$input), c("query", "value"))
  expect_identical(model$output_shape, list(out = c(NA, 3L, 4L), twice = c(NA, 3L, 4L)))
  # a length-1 unnamed list is a single tensor (as keras3)
  single <- keras_model(list(q), list(q * 1))
  expect_equal(single(qa), single(list(qa)))
  q3 <- keras_input(shape = c(3, 4))
  expect_identical(single(list(q3))$shape, single(q3)$shape)
  # the model as a layer: on symbolic tensors and inside another model
  q2 <- keras_input(shape = c(3, 4)); v2 <- keras_input(shape = c(5, 4))
  inner <- keras_model(list(q, v), o)
  outer_out <- inner(list(q2, v2)) + q2
  expect_identical(outer_out$shape, c(NA, 3L, 4L))
  outer <- keras_model(list(q2, v2), outer_out)
  expect_equal(outer(list(qa, va)), mha(qa, va) + qa, tolerance = 1e-6)
  expect_equal(inner(list(qa, va)), mha(qa, va))
  expect_identical(get_weights(outer), get_weights(mha))
  expect_identical(vapply(outer$layers, function(l) l$name, ""), c(q2$name, v2$name, inner$name))
})

test_that("bad model calls name the input and the expected shape", {
  q <- keras_input(shape = c(3, 4), name = "query_in")
  v <- keras_input(shape = c(NA, 4), name = "value_in")
  model <- keras_model(list(query = q, value = v), layer_multi_head_attention(list(q, v), num_heads = 1, key_dim = 2),
                       name = "attn_model")
  expect_error(model(list(query = array(0, c(2, 3, 5)), value = array(0, c(2, 7, 4)))),
               "`inputs\\$query` must be an array of shape \\(NA, 3, 4\\) for input \"query_in\" of model \"attn_model\"; got an array of shape \\(2, 3, 5\\)",
               class = "multihead_error_argument")
  expect_error(model(list(query = array(0, c(2, 3, 4)), value = array(0, c(2, 4)))),
               "`inputs\\$value` must be an array of shape \\(NA, NA, 4\\)")
  expect_error(model(list(query = array(0, c(2, 3, 4)))), "`inputs` must be a named list with the inputs")
  expect_error(model(array(0, c(2, 3, 4))), "`inputs` must be a named list of 2 arrays")
  expect_error(model(list(query = array(NA_real_, c(2, 3, 4)), value = array(0, c(2, 7, 4)))),
               "`inputs\\$query` must be finite")
  expect_error(model(), "`inputs` must be supplied")
  expect_error(model(list(query = array(0, c(2, 3, 4)), value = array(0, c(2, 7, 4))), training = "yes"),
               "`training` must be TRUE, FALSE or NULL")
  ids <- keras_input(shape = 3, dtype = "int32")
  emb_model <- keras_model(ids, ids * 1)
  expect_error(emb_model(matrix(1.5, 2, 3)), "`inputs` must be whole numbers \\(input .* has dtype int32\\)")
  expect_error(model(list(query = keras_input(shape = c(3, 5)), value = v)),
               "`inputs\\[\\[1\\]\\]` must be a tensor of shape \\(NA, 3, 4\\) for input \"query_in\"")
})

test_that("keras_model() errors: disconnected graphs name the tensor; bad arguments", {
  a <- keras_input(shape = c(2, 4), name = "a")
  b <- keras_input(shape = c(2, 4), name = "b_missing")
  y <- layer_multi_head_attention(list(a, b), num_heads = 1, key_dim = 2, name = "cross")
  expect_error(keras_model(a, y), "Graph disconnected.*name=b_missing.*needed by layer \"cross\"",
               class = "multihead_error_graph")
  expect_error(keras_model(a), "`outputs` must be supplied")
  expect_error(keras_model(outputs = y), "`inputs` must be supplied")
  expect_error(keras_model(array(1, c(2, 2)), y), "`inputs` must be a symbolic tensor or a \\(named\\) list")
  expect_error(keras_model(list(a, 3), y), "`inputs\\[\\[2\\]\\]` must be a symbolic tensor")
  expect_error(keras_model(list(a, a), a), "`inputs` must be distinct tensors")
  expect_error(keras_model(list(x = a, x = b), y), "`inputs` must be a list whose elements are all named")
  expect_error(keras_model(a, a, name = 3), "`name` must be a single non-empty string")
  expect_error(keras_model(a, a, bogus = 1), "Unknown argument passed to keras_model\\(\\): `bogus`")
  l1 <- layer_multi_head_attention(num_heads = 1, key_dim = 2, name = "same")
  l2 <- layer_multi_head_attention(num_heads = 1, key_dim = 2, name = "same")
  expect_error(keras_model(a, l2(l1(a, a), a)), "layer names in a model must be unique.*\"same\"")
})

test_that("get_layer(), $layers, weights, count_params() and configs of a model", {
  set.seed(24)
  x <- keras_input(shape = c(4, 6), name = "x_in")
  a1 <- layer_multi_head_attention(num_heads = 2, key_dim = 2, name = "att1")
  a2 <- layer_multi_head_attention(num_heads = 1, key_dim = 3, name = "att2")
  y <- a2(a1(x, x) + x, x, use_causal_mask = TRUE)
  model <- keras_model(x, y, name = "two_attn")
  expect_identical(model$name, "two_attn")
  expect_identical(vapply(model$layers, function(l) l$name, ""), c("x_in", "att1", "att2"))
  expect_s3_class(model$layers[[1]], "InputLayer")
  expect_identical(get_layer(model, "att2"), a2)
  expect_identical(get_layer(model, index = 2), a1)
  expect_error(get_layer(model, "nope"), "`name` must be the name of a layer of model \"two_attn\"")
  expect_error(get_layer(model, index = 9), "`index` must be at most 3")
  expect_error(get_layer(model), "`name` must be given, or `index`")
  expect_error(get_layer(a1, "att1"), "`object` must be a model")
  expect_identical(model$get_layer("att1"), a1)
  expect_equal(count_params(model), count_params(a1) + count_params(a2))
  w <- get_weights(model)
  expect_identical(w, c(get_weights(a1), get_weights(a2)))
  expect_identical(names(model$weights), c(names(a1$weights), names(a2$weights)))
  w2 <- lapply(w, function(v) v * 0 + 0.01)
  expect_invisible(set_weights(model, w2))
  expect_equal(get_weights(a2)[[1]], w2[[9]], tolerance = 1e-6)
  expect_error(set_weights(model, w2[-1]), "`weights` must be a list of 16 arrays")
  # config round trip: same structure, same outputs once the weights are copied
  cfg <- get_config(model)
  expect_identical(attr(cfg, "class_name"), "Functional")
  expect_identical(vapply(cfg$layers, `[[`, "", "class_name"), c("InputLayer", "MultiHeadAttention",
                                                                  "MultiHeadAttention"))
  clone <- from_config(cfg)
  expect_s3_class(clone, "Functional")
  set_weights(clone, get_weights(model))
  xa <- rand_array(2, 4, 6)
  expect_equal(clone(xa), model(xa))
  expect_identical(get_layer(clone, "att2")$num_heads, 1L)
  expect_false(identical(get_layer(clone, "att2"), a2))
  # trainable filter
  expect_length(get_weights(model, trainable = TRUE), 16L)
  expect_length(get_weights(model, trainable = FALSE), 0L)
  expect_length(model$trainable_weights, 16L)
})

test_that("predict() runs in batches and equals the model call", {
  set.seed(25)
  x <- keras_input(shape = c(3, 4))
  model <- keras_model(x, list(a = layer_multi_head_attention(x, num_heads = 2, key_dim = 2), b = x * 2))
  xa <- rand_array(10, 3, 4)
  full <- model(xa)
  p <- predict(model, xa, batch_size = 3)
  expect_equal(p, full, tolerance = 1e-6)   # float32: batch sizes change GEMM rounding
  expect_identical(predict(model, xa, batch_size = 100, verbose = 0), full)
  expect_error(predict(model, xa, batch_size = 0), "`batch_size` must be a positive whole number")
  expect_error(predict(model, xa, verbose = "loud"), "`verbose` must be \"auto\", 0, 1 or 2")
  expect_error(predict(model, xa, 3, "auto", 4), "`...` must be empty")
  expect_error(predict(model, array(0, c(2, 3, 5))), "`inputs` must be an array of shape \\(NA, 3, 4\\)")
  # the progress bar (shown at once here; by default after a couple of seconds)
  local({
    old <- options(cli.progress_show_after = 0, cli.dynamic = FALSE)
    on.exit(options(old))
    msgs <- capture_messages(predict(model, xa, batch_size = 2))
    expect_match(msgs, "Predicting", all = FALSE)
    expect_match(msgs, "100%", all = FALSE)
    expect_length(capture_messages(predict(model, xa, batch_size = 2, verbose = 0)), 0L)
    expect_length(capture_messages(predict(model, xa, batch_size = 2, verbose = 2)), 0L)
    expect_length(capture_messages(predict(model, xa, batch_size = 20)), 0L)   # one batch: no bar
  })
  # several inputs
  q <- keras_input(shape = c(2, 4)); v <- keras_input(shape = c(3, 4))
  m2 <- keras_model(list(q = q, v = v), layer_multi_head_attention(list(q, v), num_heads = 1, key_dim = 2))
  qa <- rand_array(5, 2, 4); va <- rand_array(5, 3, 4)
  expect_equal(predict(m2, list(q = qa, v = va), batch_size = 2), m2(list(q = qa, v = va)), tolerance = 1e-6)
})

test_that("summary() and print() show a keras3-like table", {
  old <- options(cli.unicode = FALSE)
  on.exit(options(old))
  x <- keras_input(shape = c(8, 16), name = "tokens")
  s <- keras_input(shape = c(4, 16), name = "source")
  att <- layer_multi_head_attention(num_heads = 2, key_dim = 2, name = "cross_attention")
  res <- att(x, s, return_attention_scores = TRUE)
  model <- keras_model(list(x, s), res, name = "demo")
  expect_identical(format(model), c(
    "Model: \"demo\"",
    "+======================================+===============+=========+==============+",
    "| Layer (type)                         | Output Shape  | Param # | Connected to |",
    "+======================================+===============+=========+==============+",
    "| tokens (InputLayer)                  | (NA, 8, 16)   |       0 | -            |",
    "+--------------------------------------+---------------+---------+--------------+",
    "| source (InputLayer)                  | (NA, 4, 16)   |       0 | -            |",
    "+--------------------------------------+---------------+---------+--------------+",
    "| cross_attention (MultiHeadAttention) | (NA, 8, 16)   |     284 | tokens[0][0] |",
    "|                                      | (NA, 2, 8, 4) |         | source[0][0] |",
    "+--------------------------------------+---------------+---------+--------------+",
    " Total params: 284 (1.11 KB)",
    " Trainable params: 284 (1.11 KB)",
    " Non-trainable params: 0 (0.00 B)"))
  expect_output(print(model), "Total params: 284 \\(1.11 KB\\)")
  expect_output(expect_invisible(summary(model)), "Trainable params")
  expect_identical(capture.output(print(model)), format(model))
  expect_identical(capture.output(summary(model)), format(model))
  # elementwise operations get a row; a shared layer appears once with all its inputs
  shared <- layer_multi_head_attention(num_heads = 1, key_dim = 2, name = "shared_attention")
  y <- shared(shared(x, x), x) + x
  lines <- format(keras_model(x, y))
  expect_length(grep("shared_attention \\(MultiHeadAttention\\)", lines), 1L)
  expect_length(grep("shared_attention\\[1\\]\\[0\\]|shared_attention\\[0\\]\\[0\\]", lines), 2L)
  expect_length(grep(paste0("^\\| ", y$name, " \\(Add\\) "), lines), 1L)
  # unicode box drawing when the output is UTF-8
  options(cli.unicode = TRUE)
  expect_match(format(model)[2], "^\u250f\u2501+\u2533")
})

test_that("symbolic call arguments (attention_mask) and optional inputs", {
  set.seed(26)
  q <- keras_input(shape = c(4, 6)); v <- keras_input(shape = c(3, 6))
  am <- keras_input(shape = c(4, 3), dtype = "bool")
  k <- keras_input(shape = c(3, 6), optional = TRUE)
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 2)
  model <- keras_model(list(q = q, v = v, k = k, m = am), mha(q, v, k, attention_mask = am))
  qa <- rand_array(2, 4, 6); va <- rand_array(2, 3, 6); ka <- rand_array(2, 3, 6)
  mask <- array(runif(24) > 0.3, c(2, 4, 3))
  expect_identical(model(list(q = qa, v = va, k = ka, m = mask)), mha(qa, va, ka, attention_mask = mask))
  # the optional key may be NULL: the layer then uses the value as key
  expect_identical(model(list(q = qa, v = va, k = NULL, m = mask)), mha(qa, va, attention_mask = mask))
  expect_error(model(list(q = NULL, v = va, k = NULL, m = mask)), "`inputs\\$q` must be an array of shape")
  expect_error(model(list(q = qa, v = va, k = ka, m = array(2, c(2, 4, 3)))),
               "`inputs\\$m` must be logical or 0/1 values")
  # backprop: no gradient for the boolean mask input
  g <- backprop(model, list(q = qa, v = va, k = ka, m = mask), grad_output = array(1, c(2, 4, 6)))
  expect_null(g$grads$inputs$m)
  expect_identical(dim(g$grads$inputs$k), c(2L, 3L, 6L))
})

# Keras tests B9 and B10: masks from layer_embedding(mask_zero = TRUE) flow
# into multi-head attention as query/value masks; the output carries the
# query's mask, which pooling then respects.
test_that("implicit masks: embedding -> attention (B9, B10) -> residual -> pooling", {
  set.seed(27)
  q_ids <- rbind(c(1, 2, 3, 0, 0), c(3, 3, 1, 1, 2), c(1, 0, 0, 0, 0))
  v_ids <- rbind(c(5, 4, 0), c(3, 0, 0), c(2, 1, 1))
  qi <- keras_input(shape = 5, dtype = "int32"); vi <- keras_input(shape = 3, dtype = "int32")
  emb_q <- layer_embedding(input_dim = 4, output_dim = 8, mask_zero = TRUE, dtype = "float64")
  emb_v <- layer_embedding(input_dim = 6, output_dim = 8, mask_zero = TRUE, dtype = "float64")
  mha <- mha64(num_heads = 2, key_dim = 2)
  eq <- emb_q(qi); ev <- emb_v(vi)
  for (causal in c(FALSE, TRUE)) {
    att <- mha(eq, ev, use_causal_mask = causal)
    pooled <- layer_global_average_pooling_1d(att + eq, dtype = "float64")
    model <- keras_model(list(qi, vi), list(att = att, pooled = pooled))
    got <- model(list(q_ids, v_ids))
    # by hand: the explicit mask outer(query mask, value mask) (AND causal)
    qm <- q_ids != 0; vm <- v_ids != 0
    explicit <- array(FALSE, c(3, 5, 3))
    for (b in 1:3) explicit[b, , ] <- outer(qm[b, ], vm[b, ], `&`) & (!causal | outer(1:5, 1:3, `>=`))
    want <- mha(emb_q(q_ids), emb_v(v_ids), attention_mask = explicit)
    expect_equal(got$att, want, tolerance = 1e-12, ignore_attr = "keras_mask")
    h <- want + emb_q(q_ids)
    by_hand <- t(vapply(1:3, function(b) colMeans(h[b, qm[b, ], , drop = FALSE][1, , , drop = TRUE] |>
                                                     matrix(ncol = 8)), numeric(8)))
    expect_equal(got$pooled, by_hand, tolerance = 1e-12)
  }
  # the model's output mask is the query's mask (Keras's test_query_mask_propagation)
  run <- multihead:::run_graph_forward(multihead:::layer_self(keras_model(list(qi, vi), mha(eq, ev)))$graph,
                                       list(q_ids, v_ids))
  expect_identical(run$output_masks[[1]], q_ids != 0)
})

test_that("a transformer encoder block equals its layers composed by hand; config round trip", {
  set.seed(28)
  ids <- keras_input(shape = NA, dtype = "int32")
  emb <- layer_embedding(input_dim = 9, output_dim = 8, mask_zero = TRUE, dtype = "float64")
  att <- mha64(num_heads = 2, key_dim = 4)
  ln1 <- layer_layer_normalization(dtype = "float64"); ln2 <- layer_layer_normalization(dtype = "float64")
  d1 <- layer_dense(units = 16, activation = "gelu", dtype = "float64")
  d2 <- layer_dense(units = 8, dtype = "float64")
  pool <- layer_global_average_pooling_1d(dtype = "float64")
  x <- emb(ids)
  h <- ln1(x + att(x, x))
  out <- pool(ln2(h + d2(d1(h))))
  model <- keras_model(ids, out)
  tokens <- rbind(c(1, 4, 8, 2), c(3, 3, 0, 0))
  got <- model(tokens)
  # by hand on arrays: the padding mask is given explicitly
  mask <- tokens != 0
  xa <- emb(tokens)
  ha <- ln1(xa + att(xa, xa, query_mask = mask, value_mask = mask))
  ya <- ln2(ha + d2(d1(ha)))
  want <- t(vapply(1:2, function(b) colMeans(matrix(ya[b, mask[b, ], ], ncol = 8)), numeric(8)))
  expect_equal(got, want, tolerance = 1e-12)
  # get_config() / from_config() rebuild the same graph with new layers
  clone <- from_config(get_config(model))
  set_weights(clone, get_weights(model))
  expect_equal(clone(tokens), got, tolerance = 1e-12)
  expect_identical(vapply(clone$layers, function(l) class(l)[1], ""),
                   vapply(model$layers, function(l) class(l)[1], ""))
})

test_that("models survive saveRDS()/readRDS() and keep working with new tensors", {
  set.seed(29)
  x <- keras_input(shape = c(3, 4))
  att <- layer_multi_head_attention(num_heads = 2, key_dim = 2, name = "att")
  model <- keras_model(x, layer_layer_normalization(att(x, x) + x))
  xa <- rand_array(2, 3, 4)
  path <- tempfile(fileext = ".rds")
  saveRDS(model, path)
  back <- readRDS(path)
  expect_identical(back(xa), model(xa))
  expect_identical(get_weights(back), get_weights(model))
  # the restored model nests in a new graph
  y <- keras_input(shape = c(3, 4))
  outer <- keras_model(y, back(y) * 2)
  expect_equal(outer(xa), 2 * model(xa))
  expect_identical(format(back), format(model))
})
