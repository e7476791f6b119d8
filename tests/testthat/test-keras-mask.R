# Implicit masks in eager calls: arrays carry the mask a layer computed
# (attribute "keras_mask"), the next layer uses it, and eager results equal
# the same layers in a model (where masks flow along the graph).

test_that("an embedding's mask travels with its eager output and is used by the next layers", {
  set.seed(5)
  ids <- rbind(c(4, 2, 0, 0), c(7, 5, 3, 0))
  emb <- layer_embedding(input_dim = 10, output_dim = 3, mask_zero = TRUE)
  dense <- layer_dense(units = 2)
  pool <- layer_global_average_pooling_1d()
  h <- emb(ids)
  expect_identical(get_keras_mask(h), ids != 0)
  d <- dense(h)
  expect_identical(get_keras_mask(d), ids != 0)          # Dense passes its input's mask on
  pooled <- pool(d)
  expect_null(get_keras_mask(pooled))                     # pooling consumes it
  # the mask is used: the average runs over the unmasked steps only (plain R)
  plain <- t(sapply(1:2, function(b) colMeans(matrix(d[b, ids[b, ] != 0, ], ncol = 2))))
  expect_equal(unclass(pooled), plain, tolerance = 1e-6, ignore_attr = TRUE)
  # the same layers in a model give the same numbers
  inp <- keras_input(4, dtype = "int32")
  model <- keras_model(inp, pool(dense(emb(inp))))
  expect_equal(model(ids), pooled, ignore_attr = TRUE)
  # an explicit mask wins over the implicit one
  all_on <- array(TRUE, c(2, 4))
  expect_equal(pool(d, mask = all_on), pool(set_keras_mask(d, NULL)))
  expect_false(isTRUE(all.equal(pool(d, mask = all_on), pooled)))
})

test_that("merge layers combine the masks their eager inputs carry", {
  set.seed(6)
  a <- set_keras_mask(array(rnorm(2 * 3 * 2), c(2, 3, 2)), rbind(c(TRUE, TRUE, FALSE), c(TRUE, FALSE, FALSE)))
  b <- set_keras_mask(array(rnorm(2 * 3 * 2), c(2, 3, 2)), rbind(c(TRUE, FALSE, FALSE), c(TRUE, TRUE, TRUE)))
  s <- layer_add()(list(a, b))
  expect_equal(as.vector(s), as.vector(a) + as.vector(b), tolerance = 1e-6)
  # Keras 3.15's merge layers: the OR of the inputs' masks
  expect_identical(get_keras_mask(s), get_keras_mask(a) | get_keras_mask(b))
  # and no mask when one input has none
  expect_null(get_keras_mask(layer_add()(list(a, set_keras_mask(b, NULL)))))
})

test_that("set_keras_mask() checks its arguments", {
  x <- array(0, c(2, 3, 4))
  expect_identical(get_keras_mask(set_keras_mask(x, matrix(TRUE, 2, 3))), matrix(TRUE, 2, 3))
  expect_null(get_keras_mask(set_keras_mask(set_keras_mask(x, matrix(TRUE, 2, 3)), NULL)))
  expect_error(set_keras_mask(x, matrix(TRUE, 3, 2)), "`mask`", class = "multihead_error_argument")
  expect_error(set_keras_mask(x, matrix(NA, 2, 3)), "`mask`", class = "multihead_error_argument")
  expect_error(set_keras_mask("a", NULL), "`x`", class = "multihead_error_argument")
})

test_that("attention layers use the masks their eager inputs carry and pass the query's on", {
  set.seed(8)
  ids <- rbind(c(4, 2, 0, 0), c(7, 5, 3, 0))
  emb <- layer_embedding(input_dim = 10, output_dim = 4, mask_zero = TRUE)
  h <- emb(ids)
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 2)
  out <- mha(h, h)
  expect_identical(get_keras_mask(out), ids != 0)   # Keras: the output mask is the query mask
  explicit <- mha(set_keras_mask(h, NULL), set_keras_mask(h, NULL), query_mask = ids != 0, value_mask = ids != 0)
  expect_equal(out, explicit, ignore_attr = TRUE)   # the implicit masks were used
  unmasked <- mha(set_keras_mask(h, NULL), set_keras_mask(h, NULL))
  expect_false(isTRUE(all.equal(unclass(out), unclass(unmasked), check.attributes = FALSE)))
  res <- mha(h, h, return_attention_scores = TRUE)
  expect_identical(unname(apply(res$scores[1, 1, , ], 1, function(r) r[3] + r[4])), c(0, 0, 0, 0))
  # the same in a model
  inp <- keras_input(4, dtype = "int32")
  e <- emb(inp)
  model <- keras_model(inp, mha(e, e))
  expect_equal(model(ids), out, ignore_attr = TRUE, tolerance = 1e-6)
  att <- layer_attention()
  a <- att(list(h, h), return_attention_scores = TRUE)
  expect_identical(get_keras_mask(a[[1]]), ids != 0)
  expect_identical(dim(as.data.frame(as_attention_scores(a[[2]]))), c(2L * 4L * 4L, 5L))
})

test_that("half-precision dtypes compute in float32, with one note per session", {
  notes <- multihead:::.dtype_notes  # an environment: reset the once-per-session note
  rm(list = intersect("half", ls(notes)), envir = notes)
  expect_message(d <- layer_dense(units = 2, dtype = "float16"), "no half-precision kernels")
  expect_identical(d$dtype, "float32")
  expect_silent(m <- layer_multi_head_attention(num_heads = 2, key_dim = 2, dtype = "bfloat16"))
  expect_identical(m$dtype, "float32")
  x <- array(rnorm(2 * 3 * 4), c(2, 3, 4))
  ref <- layer_multi_head_attention(num_heads = 2, key_dim = 2)
  ref(x, x)
  m(x, x)
  set_weights(m, get_weights(ref))
  expect_identical(m(x, x), ref(x, x))
  expect_error(layer_dense(units = 2, dtype = "int8"), "`dtype`", class = "multihead_error_argument")
})

test_that("an array without an implicit mask passes through the attention call uncopied", {
  skip_if_not(capabilities("profmem"), "R built without memory profiling (tracemem)")
  x <- array(rnorm(2 * 5 * 8), c(2, 5, 8))
  l <- layer_multi_head_attention(num_heads = 2, key_dim = 4)
  invisible(l(x, x))
  copies <- utils::capture.output({
    tracemem(x)
    invisible(multihead:::drop_implicit_masks(x))
    invisible(l(x, x))
    untracemem(x)
  })
  expect_identical(copies, character(0))
})
