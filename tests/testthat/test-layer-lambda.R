# layer_lambda(): traced op_* bodies against plain R, gradients by finite
# differences, masks as Keras, models and fit(), the refusal to put R code
# in a configuration or model file, bad input.

r32 <- function(x) multihead:::round_float32(x)

test_that("values: op_* bodies against plain R; arguments; lists of inputs; float32 rounds each op", {
  set.seed(81)
  x <- rand_array(2, 3, 4); y <- rand_array(2, 3, 4)
  sm <- layer_lambda(f = function(x) op_softmax(x, axis = -1), dtype = "float64")
  ref <- aperm(apply(x, c(1, 2), function(v) exp(v) / sum(exp(v))), c(2, 3, 1))
  expect_equal(sm(x), ref, tolerance = 1e-12)
  sc <- layer_lambda(f = function(x, k, shift) x * k + shift, arguments = list(k = 3, shift = -1), dtype = "float64")
  expect_equal(sc(x), 3 * x - 1)
  two <- layer_lambda(f = function(inputs) op_tanh(inputs[[1]]) * inputs[[2]], dtype = "float64")
  expect_equal(two(list(x, y)), tanh(x) * y)
  expect_equal(layer_lambda(x, function(x) op_sum(x, axis = 2), dtype = "float64"), apply(x, c(1, 3), sum))
  expect_equal(layer_lambda(x, function(x) x[, 2, ], dtype = "float64"), x[, 2, ])
  # float32: inputs rounded, each op's result rounded
  expect_identical(layer_lambda(x, function(x) x * 3 + 1), r32(r32(r32(x) * 3) + 1))
})

test_that("gradients by finite differences (one input, a list of inputs, arguments)", {
  set.seed(82)
  x <- rand_array(2, 3, 4); y <- rand_array(2, 3, 4)
  check_layer_gradients(layer_lambda(f = function(x) op_softmax(x * x, axis = -1), dtype = "float64"), x)
  check_layer_gradients(layer_lambda(f = function(i) op_sum(op_exp(i[[1]]) * i[[2]], axis = -1, keepdims = TRUE),
                                     dtype = "float64"), list(x, y))
  # an input the function ignores gets a zero gradient
  g <- backprop(layer_lambda(f = function(i) i[[1]] * 2, dtype = "float64"), list(x, y), grad_output = x)
  expect_identical(g$grads$inputs[[2]], array(0, dim(y)))
  expect_equal(g$grads$inputs[[1]], 2 * x)
})

test_that("masks: dropped by default; `mask` as a function or a constant; `f` gets mask and training", {
  x <- array(1:12 + 0, c(2, 3, 2))
  m <- matrix(c(TRUE, TRUE, FALSE, TRUE, TRUE, FALSE), 2)
  fw <- function(l, mask = NULL, training = FALSE) {
    layer_protocol(l)$forward(layer_state(l), x, list(), training, mask)
  }
  plain <- layer_lambda(f = function(x) x * 2)
  expect_null(fw(plain, m)$mask)
  expect_false(plain$supports_masking)
  keep <- layer_lambda(f = function(x) x * 2, mask = function(inputs, mask) mask)
  expect_identical(fw(keep, m)$mask, m)
  expect_true(keep$supports_masking)
  computed <- layer_lambda(f = function(x) x, mask = function(inputs, mask) op_greater(op_sum(inputs, axis = -1), 10))
  expect_identical(fw(computed)$mask, apply(x, c(1, 2), sum) > 10)
  const <- layer_lambda(f = function(x) x, mask = m)
  expect_identical(fw(const)$mask, m)
  masked_sum <- layer_lambda(f = function(x, mask) {
    if (is.null(mask)) return(op_sum(x, axis = 2))
    op_sum(x * op_expand_dims(op_cast(mask, "float64"), -1), axis = 2)
  }, dtype = "float64")
  expect_equal(fw(masked_sum, m)$output, apply(x * array(m, dim(x)), c(1, 3), sum))
  expect_equal(fw(masked_sum)$output, apply(x, c(1, 3), sum))
  flag <- layer_lambda(f = function(x, training) if (isTRUE(training)) x * 0 else x, dtype = "float64")
  expect_identical(fw(flag, training = TRUE)$output, x * 0)
  expect_identical(fw(flag, training = FALSE)$output, x)
  # in a model: Embedding's mask reaches `f`
  ids <- keras_input(shape = 3, dtype = "int32")
  e <- layer_embedding(ids, input_dim = 5, output_dim = 2, mask_zero = TRUE, dtype = "float64")
  # (Keras infers the output shape with mask = NULL, so `f` must accept it)
  out <- layer_lambda(e, function(x, mask) {
    if (is.null(mask)) return(op_sum(x, axis = 2))
    op_sum(x * op_expand_dims(op_cast(mask, "float64"), -1), axis = 2)
  }, dtype = "float64")
  model <- keras_model(ids, out)
  tok <- matrix(c(1, 2, 0, 3, 0, 0), 2, byrow = TRUE)
  W <- get_weights(model)[[1]]
  expect_equal(model(tok), rbind(W[2, ] + W[3, ], W[4, ]))
})

test_that("in models: output shapes inferred, given or computed; summary; gradients; fit() trains", {
  set.seed(83)
  inp <- keras_input(shape = c(3, 4), dtype = "float64")
  flat <- layer_lambda(inp, function(x) op_reshape(x, c(-1, 12)), dtype = "float64")
  expect_identical(flat$shape, c(NA, 12L))
  given <- layer_lambda(inp, function(x) op_reshape(x, c(-1, 12)), output_shape = 12, dtype = "float64")
  expect_identical(given$shape, c(NA, 12L))
  by_fun <- layer_lambda(inp, function(x) op_reshape(x, c(-1, 12)),
                         output_shape = function(s) c(s[1], prod(s[-1])), dtype = "float64")
  expect_identical(by_fun$shape, c(NA, 12L))
  h <- layer_dense(inp, 5, dtype = "float64") |>
    layer_lambda(function(x) op_sqrt(op_square(x) + 1), dtype = "float64") |>
    layer_lambda(function(x) op_mean(x, axis = 2), dtype = "float64") |>
    layer_dense(1, dtype = "float64")
  model <- keras_model(inp, h)
  expect_output(summary(model), "Lambda")
  x <- rand_array(4, 3, 4)
  check_model_gradients(model, x)
  xs <- rand_array(32, 3, 4); y <- matrix(apply(xs, 1, max), 32)
  model |> compile(optimizer = optimizer_adam(0.05), loss = "mse")
  hist <- model |> fit(xs, y, epochs = 20, batch_size = 8, verbose = 0)
  expect_lt(tail(hist$metrics$loss, 1), hist$metrics$loss[1] / 2)
  l <- layer_lambda(f = function(x) op_concatenate(list(x, x), axis = -1))
  expect_equal(l$compute_output_shape(c(NA, 3, 4)), c(NA, 3L, 8L))
  # an op without a gradient on the path to the loss is an error naming the Lambda
  bad <- keras_model(inp, layer_lambda(inp, function(x) op_argmax(x, axis = -1)) |>
                       layer_dense(1, dtype = "float64"))
  bad |> compile(optimizer = "sgd", loss = "mse")
  expect_error(bad |> fit(x, matrix(0, 4, 1), epochs = 1, verbose = 0), "Lambda layer",
               class = "multihead_error_no_gradient")
})

test_that("R code stays out of model files: get_config() and save_model() refuse; saveRDS() and from_config() work", {
  l <- layer_lambda(f = function(x) x * 2, name = "doubler")
  expect_error(get_config(l), "Lambda layer \"doubler\" holds an R function", class = "multihead_error_unsupported")
  inp <- keras_input(shape = 3)
  model <- keras_model(inp, l(inp))
  expect_error(save_model(model, tempfile(fileext = ".rds")), "unsafe deserialization",
               class = "multihead_error_unsupported")
  p <- tempfile(fileext = ".rds")
  saveRDS(model, p)
  x <- matrix(1:6 + 0, 2)
  expect_identical(readRDS(p)(x), model(x))
  cfg <- structure(list(name = "again", trainable = TRUE, dtype = "float64", `function` = function(x) x + 1,
                        arguments = list()), class_name = "Lambda")
  again <- from_config(cfg)
  expect_s3_class(again, "Lambda")
  expect_identical(again(x), x + 1)
  expect_identical(again$name, "again")
})

test_that("bad input: f, output_shape, mask, arguments; bodies that fail or return no tensor", {
  x <- array(1, c(2, 3))
  expect_arg_error(layer_lambda(), "f")
  expect_arg_error(layer_lambda(f = 3), "f")
  expect_arg_error(layer_lambda(f = identity, output_shape = "a"), "output_shape")
  expect_arg_error(layer_lambda(f = identity, output_shape = -2), "output_shape")
  expect_arg_error(layer_lambda(f = identity, mask = "a"), "mask")
  expect_arg_error(layer_lambda(f = identity, mask = c(0.5, 1)), "mask")
  expect_arg_error(layer_lambda(f = identity, arguments = list(1)), "arguments")
  expect_arg_error(layer_lambda(f = identity, arguments = 3), "arguments")
  expect_error(layer_lambda(x, function(x) 1), "must return one tensor", class = "multihead_error_argument")
  expect_error(layer_lambda(x, function(x) list(x, x)), "must return one tensor")
  expect_error(layer_lambda(x, function(x) stop("boom")), "failed on inputs of shape \\(2, 3\\): boom",
               class = "multihead_error_argument")
  expect_error(layer_lambda(x, function(x) op_reshape(x, c(-1, 4))), "op_reshape",
               class = "multihead_error_argument")
  expect_error(layer_lambda(keras_input(shape = 3), function(x) op_matmul(x, matrix(1, 4, 2))),
               "Give `output_shape`", class = "multihead_error_shape")
  expect_arg_error(layer_lambda(x * NA, function(x) x), "inputs")
  expect_arg_error(layer_lambda(list("a"), function(x) x), "inputs[[1]]")
  expect_arg_error(layer_lambda(f = function(x) x)(array(1, c(2, 3, 2)), mask = matrix(TRUE, 3, 3)), "mask")
  expect_arg_error(backprop(layer_lambda(f = function(x) x * 2), x, grad_output = array(1, c(3, 2))), "grad_output")
  expect_error(layer_lambda(f = identity, foo = 1), "`foo`")
})
