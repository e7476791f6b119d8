# layer_embedding(): lookup against the plain-R reference, masks from
# mask_zero, the scatter-add gradient, id validation, config.

test_that("looks up rows of the table for ids from 0, any input rank", {
  set.seed(81)
  emb <- layer_embedding(input_dim = 6, output_dim = 3, dtype = "float64")
  ids <- matrix(c(0, 5, 2, 2, 1, 0), 2)
  y <- emb(ids)
  table <- get_weights(emb)[[1]]
  expect_equal(dim(table), c(6L, 3L))
  expect_equal(dim(y), c(2L, 3L, 3L))
  expect_identical(y, ref_embedding(ids, table))
  expect_identical(emb(c(4, 1)), ref_embedding(c(4, 1), table))          # rank 1: (batch) -> (batch, 3)
  ids3 <- array(sample(0:5, 12, TRUE), c(2, 3, 2))
  expect_identical(emb(ids3), ref_embedding(ids3, table))
  expect_identical(emb(matrix(c(0L, 5L, 2L, 2L, 1L, 0L), 2)), y)        # integer ids
  expect_true(all(abs(table) <= 0.05))                                  # "uniform": [-0.05, 0.05]
})

test_that("mask_zero gives the mask ids != 0; it replaces an incoming mask", {
  emb <- layer_embedding(input_dim = 5, output_dim = 2, mask_zero = TRUE)
  ids <- matrix(c(3, 1, 0, 4, 0, 0), 2)
  res <- layer_protocol(emb)$forward(layer_state(emb), ids, list(), FALSE, NULL)
  expect_identical(res$mask, ids != 0)
  res2 <- layer_protocol(emb)$forward(layer_state(emb), ids, list(), FALSE, list(matrix(TRUE, 2, 3)))
  expect_identical(res2$mask, ids != 0)
  no_mask <- layer_embedding(input_dim = 5, output_dim = 2)
  expect_null(layer_protocol(no_mask)$forward(layer_state(no_mask), ids, list(), FALSE, NULL)$mask)
})

test_that("the embeddings gradient is a scatter-add; there is none for the ids", {
  set.seed(82)
  emb <- layer_embedding(input_dim = 5, output_dim = 3, dtype = "float64")
  ids <- matrix(c(1, 4, 1, 0, 4, 1), 2)                                 # repeated ids
  y <- emb(ids)
  R <- array(rnorm(length(y)), dim(y))
  g <- backprop(emb, ids, grad_output = R)
  expect_null(g$grads$inputs)
  expect_true("inputs" %in% names(g$grads))
  expect_named(g$grads$weights, paste0(emb$name, "/embeddings"))
  ref <- matrix(0, 5, 3)
  Rm <- matrix(R, ncol = 3)
  for (i in seq_along(ids)) ref[ids[i] + 1, ] <- ref[ids[i] + 1, ] + Rm[i, ]
  expect_equal(g$grads$weights[[1]], ref)
  check_layer_gradients(emb, ids, wrt_inputs = FALSE)
  # float32: the same result rounded
  e32 <- layer_embedding(input_dim = 5, output_dim = 3)
  e32(ids)
  g32 <- backprop(e32, ids, grad_output = R)
  expect_lt(rel_err(g32$grads$weights[[1]], ref), 1e-6)
})

test_that("ids out of range, non-integers and NA are errors naming inputs", {
  emb <- layer_embedding(input_dim = 4, output_dim = 2)
  expect_error(emb(matrix(c(0, 4), 1)), "ids in \\[0, 4\\).*got 4 at position 2", class = "multihead_error_argument")
  expect_arg_error(emb(matrix(c(-1, 1), 1)), "inputs")
  expect_arg_error(emb(matrix(c(1.5, 1), 1)), "inputs")
  expect_arg_error(emb(matrix(c(NA, 1), 1)), "inputs")
  expect_arg_error(emb(matrix(c(Inf, 1), 1)), "inputs")
  expect_arg_error(emb("a"), "inputs")
  expect_arg_error(emb(matrix(TRUE, 1, 2)), "inputs")
})

test_that("dispatch, weights, build, config and bad arguments", {
  expect_s3_class(layer_embedding(input_dim = 3, output_dim = 2), c("Embedding", "multihead_layer"))
  expect_equal(dim(layer_embedding(matrix(0, 2, 3), input_dim = 3, output_dim = 2)), c(2, 3, 2))
  e <- layer_embedding(input_dim = 7, output_dim = 4, name = "tok")
  expect_false(e$built)
  e$build(c(NA, 10))
  expect_named(e$weights, "tok/embeddings")
  expect_equal(count_params(e), 28)
  expect_equal(e$compute_output_shape(c(NA, 10)), c(NA, 10L, 4L))
  w <- matrix(as.double(1:6), 3)
  ew <- layer_embedding(input_dim = 3, output_dim = 2, weights = w)
  expect_true(ew$built)
  expect_equal(get_weights(ew)[[1]], w)
  expect_equal(ew(c(2, 0)), rbind(c(3, 6), c(1, 4)))
  ec <- layer_embedding(input_dim = 7, output_dim = 4, mask_zero = TRUE, embeddings_initializer = "ones",
                        embeddings_regularizer = "l2", dtype = "float64")
  cfg <- get_config(ec)
  expect_identical(cfg[c("input_dim", "output_dim", "mask_zero")],
                   list(input_dim = 7L, output_dim = 4L, mask_zero = TRUE))
  expect_config_round_trip(ec)
  ec(matrix(1, 1, 1))
  expect_equal(ec$losses[[1]], 0.01 * 28)
  expect_match(layer_embedding(input_dim = 2, output_dim = 2)$name, "^embedding(_[0-9]+)?$")
  expect_arg_error(layer_embedding(output_dim = 2), "input_dim")
  expect_arg_error(layer_embedding(input_dim = 2), "output_dim")
  for (bad in list(0, 1.5, NA, "a", c(2, 3))) {
    expect_arg_error(layer_embedding(input_dim = bad, output_dim = 2), "input_dim")
    expect_arg_error(layer_embedding(input_dim = 2, output_dim = bad), "output_dim")
  }
  for (bad in list(NA, 1, "yes")) expect_arg_error(layer_embedding(input_dim = 2, output_dim = 2, mask_zero = bad), "mask_zero")
  expect_arg_error(layer_embedding(input_dim = 2, output_dim = 2, embeddings_initializer = "nope"), "embeddings_initializer")
  expect_arg_error(layer_embedding(input_dim = 2, output_dim = 2, embeddings_regularizer = 1), "embeddings_regularizer")
  expect_arg_error(layer_embedding(input_dim = 2, output_dim = 2, embeddings_constraint = "nope"), "embeddings_constraint")
  expect_arg_error(layer_embedding(input_dim = 2, output_dim = 2, weights = matrix(0, 2, 3)), "weights")
  expect_arg_error(layer_embedding(input_dim = 2, output_dim = 2, weights = matrix(NA_real_, 2, 2)), "weights")
  expect_error(layer_embedding(input_dim = 2, output_dim = 2, input_length = 5), "`input_length`")
  expect_output(print(e), "<Embedding \"tok\": input_dim=7, output_dim=4, built for input (NA, 10), 28 params>",
                fixed = TRUE)
})
