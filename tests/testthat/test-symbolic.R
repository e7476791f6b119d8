# Symbolic tensors: keras_input(), shape(), elementwise operations, layers
# called on symbolic tensors (multi-head attention's full dispatch, Keras
# tests B3, B5 and B25: symbolic shapes equal eager shapes).

test_that("keras_input() gives shape, dtype and name, and prints on one line", {
  x <- keras_input(shape = c(10, 16), name = "tokens_in")
  expect_s3_class(x, "multihead_tensor")
  expect_identical(x$shape, c(NA, 10L, 16L))
  expect_identical(shape(x), c(NA, 10L, 16L))
  expect_identical(x$dtype, "float32")
  expect_identical(x$name, "tokens_in")
  expect_identical(format(x), "<KerasTensor shape=(NA, 10, 16), dtype=float32, name=tokens_in>")
  expect_output(print(x), "^<KerasTensor shape=\\(NA, 10, 16\\), dtype=float32, name=tokens_in>$")
  expect_identical(keras_input(shape = 8, batch_size = 4)$shape, c(4L, 8L))
  expect_identical(keras_input(batch_shape = c(2, NA, 3), dtype = "float64")$shape, c(2L, NA, 3L))
  expect_identical(keras_input(shape = list(NULL, 5))$shape, c(NA, NA, 5L))
  for (dt in c("float32", "float64", "int32", "int64", "bool")) {
    expect_identical(keras_input(shape = 3, dtype = dt)$dtype, dt)
  }
  expect_identical(layer_input, keras_input)
  t <- keras_input(shape = 3)
  expect_identical(keras_input(tensor = t), t)
  a <- keras_input(shape = 2); b <- keras_input(shape = 2)
  expect_false(identical(a$name, b$name))
})

test_that("keras_input() rejects bad arguments, naming them", {
  expect_error(keras_input(), "`shape` must be supplied", class = "multihead_error_argument")
  expect_error(keras_input(shape = c(4, -1)), "`shape` must be a shape")
  expect_error(keras_input(shape = 1.5), "`shape` must be a shape")
  expect_error(keras_input(shape = "a"), "`shape` must be a shape")
  expect_error(keras_input(shape = 3, dtype = "float16"), "`dtype` must be one of")
  expect_error(keras_input(shape = 3, batch_shape = c(1, 3)), "`batch_shape` must be NULL when `shape`")
  expect_error(keras_input(batch_shape = c(1, 3), batch_size = 2), "`batch_size` must be NULL")
  expect_error(keras_input(shape = 3, batch_size = 0), "`batch_size` must be a positive whole number")
  expect_error(keras_input(shape = 3, sparse = TRUE), "`sparse` must be NULL or FALSE")
  expect_error(keras_input(shape = 3, name = 5), "`name` must be a single non-empty string")
  expect_error(keras_input(tensor = array(1, c(2, 3))), "`tensor` must be NULL or a symbolic tensor")
  expect_error(keras_input(shape = 3, optional = NA), "`optional` must be TRUE or FALSE")
})

test_that("shape() builds shapes from sizes and reads arrays", {
  expect_identical(shape(NA, 16), c(NA, 16L))
  expect_identical(shape(NULL, 4, 8), c(NA, 4L, 8L))
  expect_identical(shape(array(0, c(2, 3, 4))), c(2L, 3L, 4L))
  expect_error(shape(2, keras_input(shape = 3)), "`..2` must be a size")
  expect_error(shape(1.5), "`..1` must be a shape")
})

test_that("+ - * / record elementwise nodes with Keras broadcasting", {
  x <- keras_input(shape = c(4, 8))
  y <- keras_input(shape = c(1, 8))
  z <- keras_input(shape = 8)
  expect_identical((x + y)$shape, c(NA, 4L, 8L))
  expect_identical((x * z)$shape, c(NA, 4L, 8L))
  expect_identical((2 - x)$shape, c(NA, 4L, 8L))
  expect_identical((x / 3)$shape, c(NA, 4L, 8L))
  expect_identical((-x)$shape, c(NA, 4L, 8L))
  expect_identical((+x), x)
  expect_identical((x + array(1, c(4, 1)))$shape, c(NA, 4L, 8L))
  expect_identical((keras_input(batch_shape = c(2, 1)) * keras_input(batch_shape = c(NA, 5)))$shape,
                   c(2L, 5L))
  expect_match(format(x + y), "name=add")
  expect_identical((x + y)$dtype, "float32")
  expect_identical((keras_input(shape = 2, dtype = "float64") * 2)$dtype, "float64")
  expect_error(x + keras_input(shape = c(4, 7)), "op_add\\(\\): the shapes of its operands do not broadcast",
               class = "multihead_error_shape")
  expect_error(x + "a", "`e2` must be a tensor")
  expect_error(x + NA_real_, "`e2` must be free of NA")
})

test_that("^, comparisons, logical operators and Math functions record op nodes", {
  x <- keras_input(shape = c(4, 8))
  y <- keras_input(shape = c(1, 8))
  p <- x^2
  expect_s3_class(p, "multihead_tensor")
  expect_identical(p$shape, c(NA, 4L, 8L))
  expect_identical(p$dtype, "float32")
  expect_match(format(p), "name=power")
  g <- x > y
  expect_identical(g$shape, c(NA, 4L, 8L))
  expect_identical(g$dtype, "bool")
  expect_match(format(g), "name=greater")
  n <- !(x <= 0) & (x != y)
  expect_identical(n$shape, c(NA, 4L, 8L))
  expect_identical(n$dtype, "bool")
  e <- exp(keras_input(shape = 3, dtype = "float64"))
  expect_identical(e$shape, c(NA, 3L))
  expect_identical(e$dtype, "float64")
  expect_identical(sqrt(keras_input(shape = 3, dtype = "int32"))$dtype, "float32")
  expect_identical((x %% 3)$shape, c(NA, 4L, 8L))
  expect_error(x^keras_input(shape = c(4, 7)), "op_power\\(\\): the shapes of its operands do not broadcast",
               class = "multihead_error_shape")
  m <- keras_model(x, list(x^2, x > 0.5))
  xa <- rand_array(2, 4, 8)
  out <- m(xa)
  expect_equal(out[[1]], xa^2, tolerance = 1e-6)
  expect_identical(out[[2]], xa > 0.5)
})

test_that("elementwise nodes compute and differentiate with broadcasting", {
  set.seed(1)
  x <- keras_input(shape = c(3, 4), dtype = "float64")
  b <- keras_input(shape = c(1, 4), dtype = "float64")
  m <- keras_model(list(x, b), list((x - b) * x / (b + 3) - 1, 2 * x))
  xa <- rand_array(2, 3, 4); ba <- array(runif(8), c(2, 1, 4))
  out <- m(list(xa, ba))
  bb <- ba[, rep(1, 3), , drop = FALSE]
  expect_equal(out[[1]], (xa - bb) * xa / (bb + 3) - 1, tolerance = 1e-12)
  expect_equal(out[[2]], 2 * xa)
  G <- list(rand_array(2, 3, 4), rand_array(2, 3, 4))
  g <- backprop(m, list(xa, ba), grad_output = G)
  loss <- function(xv, bv) { o <- m(list(xv, bv)); sum(o[[1]] * G[[1]]) + sum(o[[2]] * G[[2]]) }
  expect_lt(rel_err(g$grads$inputs[[1]], fd_grad(function(v) loss(v, ba), xa)), 1e-7)
  expect_lt(rel_err(g$grads$inputs[[2]], fd_grad(function(v) loss(xa, v), ba)), 1e-7)
  # float32 tensors round like float32
  y <- keras_input(shape = 2)
  expect_identical(keras_model(y, y / 3)(array(1, c(1, 2))), array(as.double(multihead:::round_float32(1 / 3)), c(1, 2)))
})

test_that("a layer called on symbolic tensors records a node and computes nothing", {
  x <- keras_input(shape = c(5, 8))
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 4)
  y <- mha(x, x)
  expect_s3_class(y, "multihead_tensor")
  expect_identical(y$shape, c(NA, 5L, 8L))
  expect_true(mha$built)                       # built from the shapes, as Keras does
  expect_equal(mha$count_params(), 4 * (8 * 2 * 4 + 8))
  expect_identical(y$node$callee, mha)
  expect_error(mha(x, keras_input(shape = c(5, 7))), "`value` must be a tensor with 8 features")
  expect_error(mha(keras_input(shape = c(5, 3, 8)), x), "`query` must be a tensor of rank 3")
  expect_error(mha(x, array(0, c(2, 5, 8))), "`inputs` must be symbolic tensors")
  expect_error(mha(x, x, bogus = 1), "Unknown argument in a call of a MultiHeadAttention layer: `bogus`")
  expect_error(mha(x, x, return_attention_scores = NA), "`return_attention_scores` must be TRUE or FALSE")
})

test_that("layer_multi_head_attention() dispatch: every case", {
  set.seed(2)
  q <- keras_input(shape = c(8, 16)); v <- keras_input(shape = c(4, 6)); k <- keras_input(shape = c(4, 3))
  # missing / NULL: the layer
  expect_s3_class(layer_multi_head_attention(num_heads = 2, key_dim = 2), "MultiHeadAttention")
  expect_s3_class(layer_multi_head_attention(NULL, num_heads = 2, key_dim = 2), "MultiHeadAttention")
  # symbolic tensor: self-attention
  y <- layer_multi_head_attention(q, num_heads = 2, key_dim = 2, name = "self_attn")
  expect_identical(y$shape, c(NA, 8L, 16L))
  expect_identical(lapply(y$node$inputs, `[[`, "id"), list(query = q$id, value = q$id))
  # unnamed list (query, value) and (query, value, key)
  y2 <- layer_multi_head_attention(list(q, v), num_heads = 2, key_dim = 2)
  expect_identical(y2$shape, c(NA, 8L, 16L))
  expect_identical(names(y2$node$inputs), c("query", "value"))
  y3 <- layer_multi_head_attention(list(q, v, k), num_heads = 2, key_dim = 2, output_shape = 5)
  expect_identical(y3$shape, c(NA, 8L, 5L))
  expect_identical(y3$node$inputs$key$id, k$id)
  # named list with call arguments: scores (B, N, T, S)
  res <- layer_multi_head_attention(list(query = q, value = v, key = k, return_attention_scores = TRUE,
                                         use_causal_mask = TRUE),
                                    num_heads = 3, key_dim = 2)
  expect_length(res, 2L)
  expect_identical(res[[1]]$shape, c(NA, 8L, 16L))
  expect_identical(res[[2]]$shape, c(NA, 3L, 8L, 4L))
  expect_identical(res[[1]]$node$args$use_causal_mask, TRUE)
  # arrays: self-attention, unnamed and named lists
  xa <- rand_array(2, 8, 16); va <- rand_array(2, 4, 6)
  expect_identical(dim(layer_multi_head_attention(xa, num_heads = 2, key_dim = 2)), c(2L, 8L, 16L))
  expect_identical(dim(layer_multi_head_attention(list(xa, va), num_heads = 2, key_dim = 2)), c(2L, 8L, 16L))
  r <- layer_multi_head_attention(list(query = xa, value = va, return_attention_scores = TRUE),
                                  num_heads = 2, key_dim = 2)
  expect_identical(dim(r$scores), c(2L, 2L, 8L, 4L))
  # a sequential model: added in place, returned invisibly, self-attention
  model <- keras_model_sequential(input_shape = c(8, 16))
  expect_invisible(out <- layer_multi_head_attention(model, num_heads = 2, key_dim = 2))
  expect_identical(out, model)
  expect_length(model$layers, 1L)
  mha <- model$layers[[1]]
  expect_equal(model(xa), mha(xa, xa))
  # bad inputs name the argument
  expect_error(layer_multi_head_attention(list(q), num_heads = 2, key_dim = 2), "`inputs` must be a list holding")
  expect_error(layer_multi_head_attention("a", num_heads = 2, key_dim = 2), "`inputs` must be NULL, a sequential")
})

test_that("symbolic calls through the layer object: positional and named arguments", {
  q <- keras_input(shape = c(3, 4)); v <- keras_input(shape = c(6, 4))
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 2)
  res <- mha(q, v, return_attention_scores = TRUE)
  expect_identical(res$scores$shape, c(NA, 2L, 3L, 6L))
  res2 <- mha(query = q, value = v, key = v, return_attention_scores = TRUE, training = FALSE)
  expect_identical(res2$output$shape, c(NA, 3L, 4L))
  expect_identical(res2$output$node$training, FALSE)
  flash <- layer_multi_head_attention(num_heads = 2, key_dim = 2, flash_attention = TRUE)
  expect_error(flash(q, v, return_attention_scores = TRUE),
               "Returning attention scores is not supported when flash attention is enabled")
})

# Keras test B3 (test_high_dim_attention): symbolic output (and scores)
# shapes equal the eager ones, with and without the gate.
test_that("B3: high-dimensional attention, symbolic shapes equal eager shapes", {
  cases <- list(
    list(q = c(3, 4), v = c(3, 2), axes = 2),
    list(q = c(3, 4), v = c(3, 2), axes = c(1, 2)),
    list(q = c(5, 3, 4), v = c(5, 3, 2), axes = c(2, 3)))
  for (cs in cases) for (gate in c(FALSE, TRUE)) {
    set.seed(3)
    mk <- function() layer_multi_head_attention(num_heads = 2, key_dim = 2, attention_axes = cs$axes,
                                                use_gate = gate)
    qs <- keras_input(shape = c(cs$q, 8), batch_size = 3); vs <- keras_input(shape = c(cs$v, 8), batch_size = 3)
    sym <- mk()(qs, vs, return_attention_scores = TRUE)
    eager <- mk()(rand_array(3, cs$q, 8), rand_array(3, cs$v, 8), return_attention_scores = TRUE)
    expect_identical(sym$output$shape, dim(eager$output))
    expect_identical(sym$scores$shape, dim(eager$scores))
    expect_identical(sym$output$shape, as.integer(c(3, cs$q, 8)))
    lay <- mk(); lay(keras_input(shape = c(cs$q, 8)), keras_input(shape = c(cs$v, 8)))
    expect_length(lay$trainable_weights, if (gate) 10L else 8L)
  }
})

# Keras test B5 (test_compute_output_shape).
test_that("B5: symbolic output shapes equal compute_output_shape() and the eager call", {
  cases <- list(
    list(q = c(4, 8), v = c(2, 8), k = NULL, out = NULL),
    list(q = c(4, 8), v = c(2, 8), k = c(2, 3), out = NULL),
    list(q = c(4, 8), v = c(2, 8), k = NULL, out = c(3, 4)),
    list(q = c(4, 8), v = c(2, 8), k = c(2, 3), out = c(1, 5)),
    list(q = c(4, 2, 3, 8), v = c(1, 1, 5, 8), k = c(1, 1, 5, 2), out = NULL),
    list(q = c(4, 2, 3, 8), v = c(1, 1, 5, 8), k = c(1, 1, 5, 2), out = c(3, 2)),
    list(q = c(4, 2, 3, 8), v = c(4, 2, 3, 7), k = c(4, 2, 3, 8), out = NULL))
  for (cs in cases) {
    mk <- function() layer_multi_head_attention(num_heads = 2, key_dim = 2, value_dim = 2,
                                                output_shape = cs$out)
    k_sym <- if (!is.null(cs$k)) keras_input(shape = cs$k, batch_size = 7)
    sym <- mk()(keras_input(shape = cs$q, batch_size = 7), keras_input(shape = cs$v, batch_size = 7), k_sym)
    k_arr <- if (!is.null(cs$k)) array(1, c(7, cs$k))
    eager <- mk()(array(1, c(7, cs$q)), array(1, c(7, cs$v)), k_arr)
    expected <- mk()$compute_output_shape(c(7, cs$q), c(7, cs$v), if (!is.null(cs$k)) c(7, cs$k))
    expect_identical(sym$shape, dim(eager))
    expect_identical(sym$shape, as.integer(expected))
  }
})

# Keras test B25 (test_symbolic_return_attention_scores), plus T != S where
# Keras's symbolic scores shape is wrong.
test_that("B25: symbolic return_attention_scores gives (B, N, T, S) as the eager call", {
  for (shp in list(c(1, 2, 3), c(2, 3, 5))) {
    x <- keras_input(batch_shape = shp); y <- keras_input(batch_shape = shp)
    mha <- layer_multi_head_attention(num_heads = 4, key_dim = 2)
    sym <- mha(x, y, return_attention_scores = TRUE)
    expect_length(sym, 2L)
    eager <- mha(array(runif(prod(shp)), shp), array(runif(prod(shp)), shp), return_attention_scores = TRUE)
    expect_identical(sym[[1]]$shape, dim(eager[[1]]))
    expect_identical(sym[[2]]$shape, dim(eager[[2]]))
  }
  q <- keras_input(shape = c(6, 4)); v <- keras_input(shape = c(9, 4))
  s <- layer_multi_head_attention(num_heads = 3, key_dim = 2)(q, v, return_attention_scores = TRUE)[[2]]
  expect_identical(s$shape, c(NA, 3L, 6L, 9L))
})

# Every supporting layer: the four dispatch cases of its constructor
# (missing/NULL, sequential model, symbolic tensor, array), and the symbolic
# shape equals the eager shape.
supporting_layer_cases <- function() list(
  dense = list(make = function(object, ...) layer_dense(object, units = 3, activation = "relu", ...),
               shape = c(5, 4)),
  dense_2d = list(make = function(object, ...) layer_dense(object, units = 2, ...), shape = 6),
  einsum_dense = list(make = function(object, ...) layer_einsum_dense(object, "abc,cd->abd",
                                                                       output_shape = c(NA, 6),
                                                                       bias_axes = "d", ...),
                      shape = c(5, 4)),
  activation = list(make = function(object, ...) layer_activation(object, "tanh", ...), shape = c(3, 4)),
  dropout = list(make = function(object, ...) layer_dropout(object, rate = 0.5, ...), shape = c(3, 4)),
  flatten = list(make = function(object, ...) layer_flatten(object, ...), shape = c(3, 2, 4)),
  pooling = list(make = function(object, ...) layer_global_average_pooling_1d(object, ...), shape = c(5, 4)),
  pooling_keep = list(make = function(object, ...) layer_global_average_pooling_1d(object, keepdims = TRUE, ...),
                      shape = c(5, 4)),
  layer_norm = list(make = function(object, ...) layer_layer_normalization(object, ...), shape = c(5, 4)),
  layer_norm_2axes = list(make = function(object, ...) layer_layer_normalization(object, axis = c(-2, -1), ...),
                          shape = c(5, 4)),
  embedding = list(make = function(object, ...) layer_embedding(object, input_dim = 7, output_dim = 3, ...),
                   shape = 5, ids = TRUE)
)

test_that("supporting layers: every dispatch case, symbolic shapes equal eager shapes", {
  for (nm in names(supporting_layer_cases())) {
    cs <- supporting_layer_cases()[[nm]]
    set.seed(5)
    xa <- if (isTRUE(cs$ids)) array(sample(0:6, 2 * prod(cs$shape), TRUE), c(2, cs$shape)) else rand_array(2, cs$shape)
    dtype <- if (isTRUE(cs$ids)) "int32" else "float32"
    # missing / NULL: a layer object
    lay <- cs$make()
    expect_s3_class(lay, "multihead_layer")
    expect_s3_class(cs$make(NULL), class(lay)[1])
    # array: applied
    eager <- cs$make(xa)
    expect_true(is.array(eager), label = nm)
    # symbolic tensor: a node, same shape as eager but the batch
    sym <- cs$make(keras_input(shape = cs$shape, dtype = dtype))
    expect_s3_class(sym, "multihead_tensor")
    expect_identical(sym$shape, c(NA, dim(eager)[-1]), label = nm)
    sym2 <- cs$make(keras_input(batch_shape = c(2, cs$shape), dtype = dtype))
    expect_identical(sym2$shape, dim(eager), label = nm)
    # calling the layer object on a symbolic tensor
    expect_identical(lay(keras_input(batch_shape = c(2, cs$shape), dtype = dtype))$shape, dim(eager), label = nm)
    # sequential model: added in place, returned invisibly; same result as the layer
    model <- keras_model_sequential(input_shape = cs$shape, input_dtype = dtype)
    expect_invisible(cs$make(model))
    expect_length(model$layers, 1L)
    expect_identical(model$output_shape, c(NA, dim(eager)[-1]), label = nm)
    expect_equal(model(xa), model$layers[[1]](xa), label = nm)
  }
})

test_that("layer_add(): lists of symbolic tensors, unnamed and named, and every dispatch case", {
  a <- keras_input(shape = c(3, 4)); b <- keras_input(shape = c(3, 4))
  expect_s3_class(layer_add(), "Add")
  expect_s3_class(layer_add(NULL), "Add")
  s1 <- layer_add(list(a, b))
  s2 <- layer_add(a, b)
  s3 <- layer_add(list(first = a, second = b))
  for (s in list(s1, s2, s3)) expect_identical(s$shape, c(NA, 3L, 4L))
  model <- keras_model(list(a, b), list(s1, s2, s3))
  xa <- rand_array(2, 3, 4); xb <- rand_array(2, 3, 4)
  out <- model(list(xa, xb))
  for (o in out) expect_equal(o, xa + xb, tolerance = 1e-6)
  expect_equal(layer_add(list(xa, xb)), xa + xb, tolerance = 1e-6)
  expect_identical(dim(layer_add(list(xa, xb))), dim(out[[1]]))
  expect_error(layer_add(list(a, keras_input(shape = c(3, 5)))), "must be arrays of one shape")
})

test_that("a built layer called on a symbolic tensor of the wrong feature size names the input", {
  d <- layer_dense(units = 3)
  d(array(1, c(2, 4)))
  expect_error(d(keras_input(shape = 5)), class = "multihead_error", regexp = "`inputs`.*4 features")
  expect_equal(shape(d(keras_input(shape = c(7, 4)))), c(NA, 7L, 3L))  # Dense takes any rank >= 2

  ln <- layer_layer_normalization()
  ln(array(1:8, c(2, 4)))
  expect_error(ln(keras_input(shape = 5)), class = "multihead_error", regexp = "`inputs`.*size 4")
  expect_error(ln(keras_input(shape = c(3, 4))), class = "multihead_error", regexp = "rank 2")

  ed <- layer_einsum_dense(equation = "abc,cd->abd", output_shape = c(NA, 3))
  ed(array(1, c(2, 5, 4)))
  expect_error(ed(keras_input(shape = c(5, 6))), class = "multihead_error", regexp = "size 4 on axis 3")
  expect_equal(shape(ed(keras_input(shape = c(9, 4)))), c(NA, 9L, 3L))
})

test_that("a layer's symbolic guard tests its own arguments; the generic guard of older saved layers still works", {
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 4)
  guard <- body(unclass(mha))[[2]]
  expect_true(is.call(guard) && identical(guard[[1]], as.name("if")))
  guard_text <- gsub("\\s+", " ", paste(deparse(guard[[2]]), collapse = " "))
  for (a in c("query", "value", "key", "attention_mask")) {
    expect_match(guard_text, sprintf("!missing(%s) && contains_symbolic(%s)", a, a), fixed = TRUE)
  }
  set.seed(3)
  x <- array(rnorm(2 * 5 * 8), c(2, 5, 8))
  y <- mha(x, x)
  q <- keras_input(shape = c(5, 8))
  expect_true(multihead:::is_symbolic(mha(q, q)))
  # a symbolic argument in second place is seen too (and mixing is refused)
  expect_error(mha(x, value = q), "mixing symbolic tensors and arrays")

  # A layer object saved before the guard was written out calls
  # frame_has_symbolic(environment()) instead: same results.
  old <- mha
  f <- unclass(old)
  body(f)[[2]] <- quote(if (frame_has_symbolic(environment()))
    return(call_layer_symbolically(sys.function(), environment())))
  attributes(f) <- attributes(unclass(mha))
  class(f) <- class(mha)
  expect_identical(f(x, x), y)
  expect_true(multihead:::is_symbolic(f(q, q)))
})
