# Custom layers (Layer() / new_layer_class()): construction, attributes and
# tracking, weights, eager and symbolic calls, gradients, masks, training,
# saving, and bad input.

layer_scale_shift <- Layer("ScaleShift",
  initialize = function(units = NULL, ...) {
    super$initialize(...)
    self$units <- units
  },
  build = function(input_shape) {
    n <- input_shape[length(input_shape)]
    self$scale <- self$add_weight(shape = n, initializer = "random_normal", name = "scale")
    self$count <- self$add_weight(shape = NULL, initializer = "zeros", trainable = FALSE, name = "count")
    self$shift <- self$add_weight(shape = n, initializer = "zeros", name = "shift")
  },
  call = function(inputs) inputs * self$scale + self$shift
)

layer_two_dense <- Layer("TwoDense",
  initialize = function(units, dtype = NULL, ...) {
    super$initialize(dtype = dtype, ...)
    self$units <- units
    self$inner <- list(layer_dense(units = units, activation = "tanh", dtype = dtype),
                       layer_dense(units = units, dtype = dtype))
    self$stack <- keras_model_sequential() |> layer_dense(units, dtype = dtype) |> layer_dense(units, dtype = dtype)
  },
  call = function(x, training = NULL, reverse = FALSE) {
    h <- self$inner[[1]](x)
    h <- if (reverse) self$stack(h) else self$inner[[2]](h)
    h + x
  },
  get_config = function() {
    cfg <- super$get_config()
    cfg$units <- self$units
    cfg
  }
)

test_that("Layer() makes a composing constructor; names, attributes and config follow keras3", {
  l <- layer_scale_shift(units = 3)
  expect_s3_class(l, c("ScaleShift", "multihead_custom_layer", "multihead_layer"))
  expect_match(l$name, "^scale_shift(_[0-9]+)?$")
  expect_identical(l$units, 3)
  expect_false(l$built)
  named <- layer_scale_shift(name = "ss")
  expect_identical(named$name, "ss")
  x <- array(rnorm(2 * 4 * 3), c(2, 4, 3))
  y <- layer_scale_shift(x)                     # called at once on an array
  expect_identical(dim(y), dim(x))
  expect_identical(new_layer_class, Layer)
  cfg <- get_config(named)
  expect_identical(cfg$name, "ss")
  expect_identical(cfg$dtype, "float32")
  td <- layer_two_dense(units = 4, name = "td")
  cfg <- get_config(td)
  expect_identical(cfg$units, 4)
  expect_identical(cfg$name, "td")
  td2 <- from_config(cfg)
  expect_s3_class(td2, "TwoDense")
  expect_identical(td2$units, 4)
})

test_that("add_weight(): variables, trainable before non-trainable, count_params, get/set_weights", {
  l <- layer_scale_shift(name = "ss2")
  x <- array(rnorm(2 * 3), c(2, 3))
  l(x)
  expect_true(l$built)
  expect_s3_class(l$scale, "multihead_variable")
  expect_identical(l$scale$shape, 3L)
  expect_identical(l$scale$path, "ss2/scale")
  expect_true(l$scale$trainable)
  expect_false(l$count$trainable)
  expect_identical(names(l$weights), c("ss2/scale", "ss2/shift", "ss2/count"))
  expect_identical(names(l$trainable_weights), c("ss2/scale", "ss2/shift"))
  expect_identical(names(l$non_trainable_weights), "ss2/count")
  expect_identical(count_params(l), 7)
  w <- get_weights(l)
  expect_identical(lengths(w), c(3L, 3L, 1L))
  set_weights(l, list(c(1, 2, 3), c(0, 0, 1), 5))
  expect_equal(l(x), sweep(x, 2, c(1, 2, 3), `*`) + rep(c(0, 0, 1), each = 2), tolerance = 1e-6)
  expect_equal(as.vector(as.array(l$count)), 5)
  expect_identical(l$count$shape, integer())
  l$scale$assign(c(2, 2, 2))
  expect_equal(as.vector(as.array(l$scale)), c(2, 2, 2))
  expect_error(l$scale$assign(1:2), "`value` must be a numeric array of shape \\(3\\)", class = "multihead_error")
})

test_that("sub-layers in attributes and lists are tracked; summary shows the custom layer on one row", {
  td <- layer_two_dense(units = 4, name = "td_tracked")
  x <- keras_input(shape = c(5, 4))
  model <- keras_model(x, td(x) |> layer_global_average_pooling_1d() |> layer_dense(1, name = "head"))
  expect_length(td$layers, 3L)   # two dense layers in a list, one sequential model
  expect_identical(count_params(td), 2 * (4 * 4 + 4))   # the sequential model is not built yet
  paths <- names(model$weights)
  expect_true(all(startsWith(paths[1:4], "td_tracked/")))
  expect_identical(paths[5:6], c("head/kernel", "head/bias"))
  out <- capture.output(summary(model))
  row <- grep("td_tracked \\(TwoDense\\)", out, value = TRUE)
  expect_length(row, 1L)
  expect_match(row, "40")
  expect_length(grep("\\(Dense\\)", out), 1L)   # only the head: inner layers are not rows
  td(array(1, c(1, 5, 4)), reverse = TRUE)
  expect_identical(count_params(td), 4 * (4 * 4 + 4))
})

test_that("an eager call equals the symbolic call (a model) and backprop() equals finite differences", {
  set.seed(3)
  td <- layer_two_dense(units = 3, dtype = "float64")
  expect_s3_class(td$inner[[1]], "Dense")  # attribute access into a tracked list
  x <- array(rnorm(2 * 4 * 3), c(2, 4, 3))
  eager <- td(x)
  inp <- keras_input(shape = c(4, 3), dtype = "float64")
  model <- keras_model(inp, td(inp))
  expect_equal(model(x), eager, tolerance = 1e-12)
  expect_equal(td(x, reverse = TRUE), keras_model(inp, td(inp, reverse = TRUE))(x), tolerance = 1e-12)
  w <- array(rnorm(length(eager)), dim(eager))
  g <- backprop(td, x, grad_output = w)
  expect_equal(g$output, eager)
  ws <- get_weights(td)
  loss <- function() sum(w * td(x))
  for (i in seq_along(ws)) {
    fd <- ws[[i]]
    for (k in seq_along(fd)) {
      a <- ws; a[[i]][k] <- ws[[i]][k] + 1e-6; set_weights(td, a); up <- loss()
      a[[i]][k] <- ws[[i]][k] - 1e-6; set_weights(td, a); dn <- loss()
      fd[k] <- (up - dn) / 2e-6
    }
    set_weights(td, ws)
    expect_equal(as.vector(g$grads$weights[[i]]), as.vector(fd), tolerance = 1e-6, label = names(ws)[i])
  }
  fdx <- x
  for (k in seq_along(x)) {
    up <- x; up[k] <- x[k] + 1e-6; dn <- x; dn[k] <- x[k] - 1e-6
    fdx[k] <- (sum(w * td(up)) - sum(w * td(dn))) / 2e-6
  }
  expect_equal(g$grads$inputs$x, fdx, tolerance = 1e-6)
  expect_null(g$grads$inputs$reverse)
})

test_that("a custom layer with add_weight() trains inside a model; gradients match finite differences", {
  set.seed(4)
  inp <- keras_input(shape = c(3), dtype = "float64")
  ss <- layer_scale_shift(dtype = "float64")
  model <- keras_model(inp, ss(inp) |> layer_dense(1, dtype = "float64"))
  x <- array(rnorm(8 * 3), c(8, 3))
  w <- array(rnorm(8), c(8, 1))
  g <- backprop(model, x, grad_output = w)
  ws <- get_weights(model)
  for (i in seq_along(ws)) {
    fd <- ws[[i]]
    for (k in seq_along(fd)) {
      a <- ws; a[[i]][k] <- ws[[i]][k] + 1e-6; set_weights(model, a); up <- sum(w * model(x))
      a[[i]][k] <- ws[[i]][k] - 1e-6; set_weights(model, a); dn <- sum(w * model(x))
      fd[k] <- (up - dn) / 2e-6
    }
    set_weights(model, ws)
    expect_equal(as.vector(g$grads$weights[[i]]), as.vector(fd), tolerance = 1e-6, label = names(ws)[i])
  }
  # training updates the trainable weights only
  model |> compile(optimizer = optimizer_sgd(0.1), loss = "mse")
  y <- x %*% c(1, -2, 0.5)
  before <- get_weights(model)
  model |> fit(x, y, epochs = 3, batch_size = 4, verbose = 0)
  after <- get_weights(model)
  expect_false(isTRUE(all.equal(before[[1]], after[[1]])))
  expect_identical(before[[3]], after[[3]])   # the non-trainable count
})

test_that("nesting: a custom layer holding a sequential model holding dense layers, inside another custom layer", {
  layer_outer <- Layer("Outer",
    initialize = function(...) {
      super$initialize(...)
      self$block <- layer_two_dense(units = 2)
      self$norm <- layer_layer_normalization()
    },
    call = function(inputs) self$norm(self$block(inputs, reverse = TRUE) + inputs))
  o <- layer_outer()
  x <- array(rnorm(3 * 2), c(3, 2))
  inp <- keras_input(shape = 2)
  model <- keras_model(inp, o(inp))
  expect_equal(model(x), o(x), tolerance = 1e-6)
  model |> compile(optimizer = "adam", loss = "mse")
  h <- model |> fit(x, x, epochs = 2, verbose = 0)
  expect_length(h$metrics$loss, 2L)
  # the block's first dense layer and its sequential model (reverse = TRUE) are built; its second
  # dense layer is never called, so it has no weights yet
  expect_identical(length(get_weights(o)), 2L + 4L + 2L)
})

test_that("call() arguments: extra tensors by position and name, flags, training filled from fit()", {
  seen <- new.env()
  layer_cross <- Layer("Cross",
    initialize = function(...) {
      super$initialize(...)
      self$attn <- layer_multi_head_attention(num_heads = 1, key_dim = 2)
      self$drop <- layer_dropout(rate = 0.5)
    },
    call = function(x, context, training = NULL, scale = 1) {
      seen$training <- c(seen$training, if (is.null(training)) NA else training)
      self$drop(self$attn(x, context), training = training) * scale
    })
  l <- layer_cross()
  q <- keras_input(shape = c(3, 4))
  ctx <- keras_input(shape = c(5, 4))
  model <- keras_model(list(q, ctx), l(q, context = ctx, scale = 2))
  xq <- array(rnorm(2 * 3 * 4), c(2, 3, 4))
  xc <- array(rnorm(2 * 5 * 4), c(2, 5, 4))
  p1 <- predict(model, list(xq, xc), verbose = 0)
  expect_equal(p1, model(list(xq, xc)))
  expect_false(any(seen$training %in% TRUE))
  model |> compile(optimizer = "sgd", loss = "mse")
  model |> fit(list(xq, xc), array(0, c(2, 3, 4)), epochs = 1, verbose = 0)
  expect_true(any(seen$training %in% TRUE))
  g <- backprop(model, list(xq, xc), grad_output = array(1, c(2, 3, 4)))
  expect_identical(dim(g$grads$inputs[[2]]), dim(xc))
  expect_gt(sum(abs(g$grads$inputs[[2]])), 0)
})

test_that("masks: compute_mask(), supports_masking passthrough and the `mask` argument filled from implicit masks", {
  got <- new.env()
  layer_double <- Layer("Double",
    initialize = function(passthrough = TRUE, ...) {
      super$initialize(...)
      self$supports_masking <- passthrough
    },
    call = function(inputs, mask = NULL) {
      got$mask <- mask
      inputs * 2
    })
  layer_mark_zero <- Layer("MarkZero",
    call = function(inputs) inputs + 0,
    compute_mask = function(inputs, mask = NULL) inputs != 0)
  set.seed(6)
  ids <- keras_input(shape = c(4), dtype = "int32")
  emb <- layer_embedding(input_dim = 10, output_dim = 3, mask_zero = TRUE)
  mha <- layer_multi_head_attention(num_heads = 1, key_dim = 3)
  h <- layer_double()(emb(ids))
  model <- keras_model(ids, mha(h, h))
  x <- array(c(1L, 2L, 0L, 0L, 3L, 4L, 5L, 0L), c(2, 4))
  res <- model(x)
  expect_s3_class(got$mask, "multihead_tensor")      # traced with the embedding's mask
  expect_identical(got$mask$dtype, "bool")
  expect_identical(got$mask$shape, c(2L, 4L))
  # the mask passed through: the attention ignores the padded keys as when the built-in path carries it
  h2 <- emb(ids) * 2
  ref <- keras_model(ids, mha(h2, h2))
  expect_equal(res, ref(x), tolerance = 1e-6)
  # without passthrough the output has no mask: padded keys are attended to, a different result
  h3 <- layer_double(passthrough = FALSE)(emb(ids))
  expect_false(isTRUE(all.equal(keras_model(ids, mha(h3, h3))(x), res, tolerance = 1e-4)))
  # compute_mask() gives the output's mask
  z <- keras_input(shape = c(3))
  mz <- keras_model(z, layer_mark_zero()(z))
  fw <- multihead:::model_graph_forward(multihead:::layer_self(mz), array(c(1, 0, 2, 0, 0, 3), c(2, 3)))
  expect_identical(fw$mask, array(c(TRUE, FALSE, TRUE, FALSE, FALSE, TRUE), c(2, 3)))
})

test_that("saveRDS() of a model with custom layers, read back in a fresh R process, predicts the same", {
  set.seed(5)
  inp <- keras_input(shape = c(4, 3))
  model <- keras_model(inp, inp |> layer_two_dense(units = 3) |> layer_scale_shift() |>
                         layer_global_average_pooling_1d() |> layer_dense(1))
  x <- array(rnorm(2 * 4 * 3), c(2, 4, 3))
  expected <- model(x)
  dir <- tempfile("rds"); dir.create(dir)
  saveRDS(model, file.path(dir, "model.rds"))
  saveRDS(x, file.path(dir, "x.rds"))
  script <- file.path(dir, "read.R")
  writeLines(c(sprintf(".libPaths(%s)", paste(deparse(.libPaths()), collapse = "")),
               "library(multihead)",
               sprintf("m <- readRDS(%s)", deparse(file.path(dir, "model.rds"))),
               sprintf("x <- readRDS(%s)", deparse(file.path(dir, "x.rds"))),
               sprintf("saveRDS(m(x), %s)", deparse(file.path(dir, "out.rds")))), script)
  status <- system2(file.path(R.home("bin"), "Rscript"), script, stdout = FALSE, stderr = FALSE)
  expect_identical(status, 0L)
  expect_identical(readRDS(file.path(dir, "out.rds")), expected)
})

test_that("bad input: clear errors naming the argument", {
  expect_error(Layer(), "`classname` must be supplied", class = "multihead_error_argument")
  expect_error(Layer(NA_character_), "`classname`", class = "multihead_error_argument")
  expect_error(Layer(c("A", "B")), "`classname`", class = "multihead_error_argument")
  expect_error(Layer("1bad"), "`classname`", class = "multihead_error_argument")
  expect_error(Layer("Dense"), "built-in layer class", class = "multihead_error_argument")
  expect_error(Layer("X", call = 3), "`call` must be a function or NULL", class = "multihead_error_argument")
  expect_error(Layer("X", initialize = "f"), "`initialize` must be a function", class = "multihead_error_argument")
  expect_error(Layer("X", public = list(1)), "`public` must be a named list", class = "multihead_error_argument")
  expect_error(Layer("X", private = 1), "`private` must be a named list", class = "multihead_error_argument")
  expect_error(Layer("X", active = list(a = 1)), "`active` must be a named list of functions",
               class = "multihead_error_argument")
  expect_error(Layer("X", inherit = layer_dense), "`inherit` must be NULL or a layer constructor",
               class = "multihead_error_argument")
  expect_error(Layer("X", parent_env = 1), "`parent_env` must be an environment", class = "multihead_error_argument")
  expect_error(Layer("X", NULL, function(x) x, NULL, NULL, NULL, NULL, 3), "`...` must be named methods or fields",
               class = "multihead_error_argument")
  no_call <- Layer("NoCall")
  expect_error(no_call()(array(1, c(2, 2))), "has no call\\(\\) method", class = "multihead_error")
  l <- layer_scale_shift()
  expect_error(l(array(1, c(2, 2)), bogus = 1), "unknown argument `bogus`", class = "multihead_error_argument")
  expect_error(layer_scale_shift(bogus = 1), "Unknown argument.*`bogus`", class = "multihead_error_argument")
  expect_error(layer_scale_shift(name = 3), "`name`", class = "multihead_error_argument")
  expect_error(layer_scale_shift(dtype = "float16x"), "`dtype`", class = "multihead_error_argument")
  bad_shape <- Layer("BadW", build = function(input_shape) self$add_weight(shape = c(NA, 2)),
                     call = function(x) x)
  expect_error(bad_shape()(array(1, c(2, 2))), "`shape` must be a vector of whole numbers", class = "multihead_error")
  bad_out <- Layer("BadOut", call = function(x) "a")
  inp <- keras_input(shape = 2)
  expect_error(bad_out()(inp), "must return tensors", class = "multihead_error_argument")
  ro <- layer_scale_shift()
  expect_error(ro$weights <- list(), "read-only", class = "multihead_error_readonly")
  expect_error(ro$nonexistent_method(), "has no attribute, property or method `nonexistent_method`",
               class = "multihead_error")
  expect_error(backprop(layer_scale_shift(), array(1, c(2, 2))), "`grad_output` must be supplied",
               class = "multihead_error_argument")
  cap <- Layer("Captures", call = function(x) x + outer_tensor)
  outer_tensor <- keras_input(shape = 2)
  expect_error(cap()(keras_input(shape = 2)), "Graph disconnected", class = "multihead_error")
})

test_that("tied embeddings: a weight used by a layer call and in %*% t() gets both gradients", {
  set.seed(7)
  layer_tied <- Layer("TiedEmbedding",
    initialize = function(vocab, dim, ...) {
      super$initialize(...)
      self$token_embeddings <- layer_embedding(input_dim = vocab, output_dim = dim, dtype = "float64")
    },
    call = function(inputs, reverse = FALSE) {
      if (reverse) return(inputs %*% t(self$token_embeddings$embeddings))
      self$token_embeddings(inputs)
    })
  tied <- layer_tied(vocab = 5, dim = 3, dtype = "float64")
  ids <- keras_input(shape = 4, dtype = "int32")
  h <- tied(ids) |> layer_dense(3, activation = "tanh", dtype = "float64")
  model <- keras_model(ids, tied(h, reverse = TRUE))
  expect_identical(model$output$shape, c(NA, 4L, 5L))
  x <- matrix(c(0L, 1L, 2L, 3L, 4L, 4L, 3L, 0L), 2, 4)
  out <- model(x)
  w <- array(rnorm(length(out)), dim(out))
  g <- backprop(model, x, grad_output = w)
  ws <- get_weights(model)
  expect_identical(names(g$grads$weights)[1], paste0(tied$name, "/", tied$token_embeddings$name, "/embeddings"))
  for (i in seq_along(ws)) {
    fd <- ws[[i]]
    for (k in seq_along(fd)) {
      a <- ws; a[[i]][k] <- ws[[i]][k] + 1e-6; set_weights(model, a); up <- sum(w * model(x))
      a[[i]][k] <- ws[[i]][k] - 1e-6; set_weights(model, a); dn <- sum(w * model(x))
      fd[k] <- (up - dn) / 2e-6
    }
    set_weights(model, ws)
    expect_equal(as.vector(g$grads$weights[[i]]), as.vector(fd), tolerance = 1e-6, label = names(ws)[i])
  }
})

test_that("an op without a gradient on the path to the loss is an error at fit() naming the op and the layer", {
  multihead:::register_op("test_no_grad", "TestNoGrad",
    infer = function(specs, params) multihead:::op_spec(specs[[1]]$shape, specs[[1]]$dtype),
    forward = function(values, params) list(output = values[[1]] * 2, cache = NULL))
  layer_bad <- Layer("NoGradLayer", call = function(x) multihead:::op_call("test_no_grad", list(x = x)) + x)
  inp <- keras_input(shape = 3)
  model <- keras_model(inp, layer_bad(name = "nograd")(inp) |> layer_dense(1))
  model |> compile(optimizer = "sgd", loss = "mse")
  expect_error(model |> fit(array(1, c(4, 3)), array(0, c(4, 1)), epochs = 1, verbose = 0),
               "Operation \"test_no_grad.*\" \\(TestNoGrad\\) has no gradient.*inside layer \"nograd\"",
               class = "multihead_error_no_gradient")
})

test_that("add_loss() inside call() is part of the training loss", {
  layer_penalized <- Layer("Penalized",
    build = function(input_shape) self$w <- self$add_weight(shape = input_shape[2], initializer = "ones", name = "w"),
    call = function(x) {
      self$add_loss(op_multiply(self$w, self$w) * 0.5)   # 0.5 * w^2 per weight: gradient w
      x * self$w
    })
  inp <- keras_input(shape = 2, dtype = "float64")
  pen <- layer_penalized(dtype = "float64")
  model <- keras_model(inp, pen(inp))
  model |> compile(optimizer = optimizer_sgd(0.1), loss = "mse")
  # with zero data, only the penalty moves w: w <- w - 0.1 * w
  model |> fit(array(0, c(4, 2)), array(0, c(4, 2)), epochs = 1, batch_size = 4, verbose = 0)
  expect_equal(as.vector(as.array(pen$w)), c(0.9, 0.9), tolerance = 1e-12)
  ev <- evaluate(model, array(0, c(4, 2)), array(0, c(4, 2)), verbose = 0)
  expect_equal(ev[["loss"]], 2 * 0.5 * 0.81, tolerance = 1e-12)
})

test_that("inherit, super to the parent's methods, public methods, private and active fields", {
  layer_base <- Layer("BaseScaler",
    initialize = function(factor = 2, ...) {
      super$initialize(...)
      self$factor <- factor
      private$calls <- 0
    },
    call = function(x) {
      private$calls <- private$calls + 1
      x * self$factor
    },
    describe_me = function() sprintf("scale by %s", self$factor),
    private = list(calls = 0),
    active = list(double_factor = function(value) {
      if (missing(value)) return(self$factor * 2)
      self$factor <- value / 2
    })
  )
  layer_shifted <- Layer("ShiftedScaler",
    initialize = function(factor = 2, shift = 1, ...) {
      super$initialize(factor = factor, ...)
      self$shift <- shift
    },
    call = function(x) super$call(x) + self$shift,
    inherit = layer_base
  )
  s <- layer_shifted(factor = 3, shift = 10)
  x <- array(1:4, c(2, 2)) + 0
  expect_equal(s(x), x * 3 + 10)
  expect_identical(s$describe_me(), "scale by 3")     # a public method of the parent
  expect_identical(s$double_factor, 6)
  s$double_factor <- 10                             # active binding assignment
  expect_identical(s$factor, 5)
  expect_equal(s(x), x * 5 + 10)
  p <- layer_base()
  p(x); p(x)
  expect_false(exists("calls", envir = multihead:::layer_self(s)$attrs))   # private is not an attribute
  expect_identical(get("calls", envir = multihead:::layer_self(p)$private), 2)
  expect_output(print(layer_shifted), "ShiftedScaler")
})

test_that("compute_output_shape(): the user's method, or a trace; layer$call() is the raw call", {
  layer_pair <- Layer("PairOut",
    call = function(x) list(a = x * 2, b = op_sum(x, axis = -1)))
  l <- layer_pair()
  inp <- keras_input(shape = c(3, 4))
  out <- l(inp)
  expect_named(out, c("a", "b"))
  expect_identical(out$a$shape, c(NA, 3L, 4L))
  expect_identical(out$b$shape, c(NA, 3L))
  expect_identical(l$compute_output_shape(c(5, 3, 4)), list(a = c(5L, 3L, 4L), b = c(5L, 3L)))
  declared <- Layer("Declared", call = function(x) x[, 1:2],
                    compute_output_shape = function(input_shape) c(input_shape[1], 2L))
  d <- declared()
  expect_identical(d(keras_input(shape = 5))$shape, c(NA, 2L))
  m <- keras_model(inp, out)
  res <- m(array(1, c(2, 3, 4)))
  expect_identical(dim(res$a), c(2L, 3L, 4L))
  expect_equal(res$b, array(4, c(2, 3)))
  raw <- l$call(array(1, c(1, 2)))     # the user's call() on arrays, eagerly
  expect_equal(raw$a, array(2, c(1, 2)))
})

test_that("add_weight() regularizers join layer$losses and the training loss; constraints apply after updates", {
  layer_reg <- Layer("RegW",
    build = function(input_shape) {
      self$w <- self$add_weight(shape = input_shape[2], initializer = "ones", regularizer = regularizer_l2(0.1),
                                constraint = constraint_nonneg(), name = "w")
    },
    call = function(x) x * self$w)
  l <- layer_reg(dtype = "float64")
  inp <- keras_input(shape = 2, dtype = "float64")
  model <- keras_model(inp, l(inp))
  expect_equal(unlist(l$losses), 0.1 * 2, tolerance = 1e-12)          # 0.1 * sum(w^2), w = (1, 1)
  model |> compile(optimizer = optimizer_sgd(1), loss = "mse")
  ev <- evaluate(model, array(0, c(4, 2)), array(0, c(4, 2)), verbose = 0)
  expect_equal(ev[["loss"]], 0.2, tolerance = 1e-12)
  # one SGD step of lr 1 on the penalty alone: w - 1 * 0.2 * w = 0.8; then a push below zero is clipped
  model |> fit(array(0, c(4, 2)), array(0, c(4, 2)), epochs = 1, batch_size = 4, verbose = 0)
  expect_equal(as.vector(as.array(l$w)), c(0.8, 0.8), tolerance = 1e-12)
  model |> fit(array(1, c(4, 2)), array(-100, c(4, 2)), epochs = 1, batch_size = 4, verbose = 0)
  expect_true(all(as.array(l$w) >= 0))
  expect_s3_class(l$w$regularizer, "multihead_regularizer")
  expect_s3_class(l$w$constraint, "multihead_constraint")
})
