# The graph protocol across the supporting layers: compute_output_shape()
# agrees with the eager output, the protocol's forward/backward agree with
# calls and backprop(), results do not depend on the thread count, layers
# survive saveRDS().

# One configured layer and a matching input per class.
protocol_cases <- function() {
  set.seed(101)
  x3 <- array(rnorm(2 * 5 * 4), c(2, 5, 4))
  list(
    dense = list(layer_dense(units = 3, activation = "relu", dtype = "float64"), x3),
    einsum = list(layer_einsum_dense(equation = "abc,cde->abde", output_shape = c(NA, 2, 3), bias_axes = "de",
                                     dtype = "float64"), x3),
    embedding = list(layer_embedding(input_dim = 6, output_dim = 4, mask_zero = TRUE, dtype = "float64"),
                     matrix(c(1, 2, 0, 5, 3, 0), 2)),
    layer_norm = list(layer_layer_normalization(dtype = "float64"), x3),
    dropout = list(layer_dropout(rate = 0.5, seed = 1, dtype = "float64"), x3),
    add = list(layer_add(dtype = "float64"), list(x3, x3 * 2)),
    pooling = list(layer_global_average_pooling_1d(dtype = "float64"), x3),
    flatten = list(layer_flatten(dtype = "float64"), x3),
    activation = list(layer_activation(activation = "softmax", dtype = "float64"), x3)
  )
}

test_that("compute_output_shape() gives the eager output's shape (batch unknown)", {
  for (nm in names(protocol_cases())) {
    case <- protocol_cases()[[nm]]
    layer <- case[[1]]; x <- case[[2]]
    in_shape <- if (is.list(x)) lapply(x, function(a) c(NA, dim(a)[-1])) else c(NA, dim(x)[-1])
    sym <- layer_protocol(layer)$compute_output_shape(layer_state(layer), in_shape, list())
    y <- layer(x)
    expect_identical(sym, c(NA_integer_, dim(y)[-1]), label = nm)
  }
})

test_that("protocol forward/backward equal calls and backprop()", {
  for (nm in names(protocol_cases())) {
    case <- protocol_cases()[[nm]]
    layer <- case[[1]]; x <- case[[2]]
    def <- layer_protocol(layer)
    self <- layer_state(layer)
    if (!isTRUE(self$built)) {
      def$build(self, if (is.list(x)) lapply(x, function(a) c(NA, dim(a)[-1])) else c(NA, dim(x)[-1]))
    }
    expect_true(self$built, label = nm)
    fw <- def$forward(self, x, list(), FALSE, NULL)
    expect_named(fw, c("output", "cache", "mask"))
    expect_identical(fw$output, set_keras_mask(layer(x), NULL), label = nm)  # eager outputs carry masks
    R <- array(rnorm(length(fw$output)), dim(fw$output))
    bw <- def$backward(self, fw$cache, R)
    expect_named(bw, c("inputs", "weights"))
    bp <- backprop(layer, x, grad_output = R)
    expect_identical(bw, bp$grads, label = nm)
    expect_identical(as.character(names(bw$weights)), as.character(names(layer$weights)), label = nm)
  }
})

test_that("results are bitwise identical for 1 and 2 threads", {
  old <- set_num_threads(1)
  on.exit(set_num_threads(old))
  set.seed(102)
  x <- array(rnorm(64 * 40 * 32), c(64, 40, 32))
  ids <- matrix(sample(0:99, 64 * 40, TRUE), 64)
  layers <- list(
    list(layer_dense(units = 48, activation = "gelu", bias_initializer = "random_normal"), x),
    list(layer_einsum_dense(equation = "abc,cd->abd", output_shape = c(40, 16), bias_axes = "bd",
                            bias_initializer = "random_normal"), x),
    list(layer_layer_normalization(axis = c(2, 3)), x),
    list(layer_layer_normalization(gamma_initializer = "random_normal"), x),
    list(layer_activation(activation = "softmax"), x),
    list(layer_activation(activation = "silu"), x),
    list(layer_embedding(input_dim = 100, output_dim = 32), ids),
    list(layer_global_average_pooling_1d(), x),
    list(layer_add(), list(x, x, x)),
    list(layer_dropout(rate = 0.3, seed = 9), x)
  )
  run <- function(case, threads) {
    set_num_threads(threads)
    layer <- case[[1]]
    if (inherits(layer, "Dropout")) layer <- layer_dropout(rate = 0.3, seed = 9, name = "d")
    y <- layer(case[[2]], training = TRUE)
    backprop(layer, case[[2]], training = TRUE, grad_output = array(sin(seq_along(y)), dim(y)))
  }
  for (case in layers) {
    expect_identical(run(case, 1), run(case, 2), label = class(case[[1]])[1])
  }
})

test_that("layers survive saveRDS() / readRDS() with their weights", {
  f <- tempfile(fileext = ".rds")
  on.exit(unlink(f))
  for (nm in names(protocol_cases())) {
    case <- protocol_cases()[[nm]]
    layer <- case[[1]]; x <- case[[2]]
    y <- layer(x)
    saveRDS(layer, f)
    again <- readRDS(f)
    expect_identical(again(x), y, label = nm)
    expect_identical(get_weights(again), get_weights(layer), label = nm)
  }
})
