# Native tensors (R/native-tensor.R, src/glue_native.cpp): float32 layers of
# a training step, an evaluation or predict() exchange C++ buffers. The
# results must be those of the same run on R arrays
# (options(multihead.native_tensors = FALSE)), every tensor must be released
# when the run is over, and nothing else may ever see one.

native_off <- function(code) {
  old <- options(multihead.native_tensors = FALSE)
  on.exit(options(old))
  code
}

encoder_model <- function(seed = 1, ff_activation = "relu", optimizer = "adam") {
  set.seed(seed)
  inp <- keras_input(shape = c(6, 8))
  a <- layer_multi_head_attention(num_heads = 2, key_dim = 4)(inp, inp)
  x <- layer_layer_normalization(layer_add(list(inp, a)))
  f <- x |> layer_dense(16, activation = ff_activation) |> layer_dense(8)
  x <- layer_layer_normalization(layer_add(list(x, f)))
  m <- keras_model(inp, x |> layer_global_average_pooling_1d() |> layer_dense(1))
  compile(m, optimizer = optimizer, loss = "mse")
  m
}

test_that("a native tensor converts both ways and reports its shape", {
  x <- array(rnorm(2 * 3 * 4), c(2, 3, 4))
  t <- multihead:::cpp_native_from_array(x, 1L)
  expect_true(multihead:::is_native_tensor(t))
  expect_identical(dim(t), c(2L, 3L, 4L))
  expect_equal(length(t), 24)
  expect_output(print(t), "native float32 tensor of shape \\(2, 3, 4\\)")
  expect_identical(multihead:::cpp_native_to_array(t, 2L), multihead:::round_float32(x))
  s <- multihead:::cpp_native_add(t, x, 1L)
  expect_identical(multihead:::native_as_array(s),
                   array(as.double(as.vector(multihead:::round_float32(x)) * 2), dim(x)))
  expect_error(multihead:::cpp_native_add(t, array(0, c(2, 4, 3)), 1L), "shapes differ")
  expect_true(multihead:::cpp_native_release_all() >= 2L)
  expect_error(multihead:::cpp_native_to_array(t, 1L), "used after its step ended")
  expect_identical(multihead:::cpp_native_release_all(), 0L)
})

test_that("fit() on native tensors trains to the weights of the R-array run", {
  # (SGD: Adam's normalised steps would turn float rounding of near-zero gradients into steps of lr;
  # the attention's projections group their float sums differently on R arrays and on native tensors)
  set.seed(21)
  x <- array(rnorm(16 * 6 * 8), c(16, 6, 8))
  y <- array(rnorm(16), c(16, 1))
  for (act in c("relu", "gelu", "linear", "sigmoid", "tanh")) {
    m1 <- encoder_model(ff_activation = act, optimizer = optimizer_sgd(0.05))
    h1 <- fit(m1, x, y, batch_size = 4, epochs = 2, shuffle = FALSE, verbose = 0)
    m2 <- encoder_model(ff_activation = act, optimizer = optimizer_sgd(0.05))
    h2 <- native_off(fit(m2, x, y, batch_size = 4, epochs = 2, shuffle = FALSE, verbose = 0))
    w1 <- get_weights(m1)
    w2 <- get_weights(m2)
    for (i in seq_along(w1)) expect_equal(w1[[i]], w2[[i]], tolerance = 1e-4, info = paste(act, i))
    expect_equal(h1$metrics$loss, h2$metrics$loss, tolerance = 1e-5)
    expect_false(isTRUE(all.equal(w1, get_weights(encoder_model(ff_activation = act)), tolerance = 1e-4)))  # it trained
  }
  expect_identical(multihead:::cpp_native_release_all(), 0L)  # nothing left alive
})

test_that("the gradients of one native step equal the R-array step's", {
  m <- encoder_model(seed = 3)
  x <- array(rnorm(4 * 6 * 8), c(4, 6, 8))
  self <- multihead:::layer_self(m)
  grads <- function(native) {
    run <- multihead:::run_graph_forward(self$graph, list(x), training = TRUE, keep = TRUE, native = native)
    on.exit(multihead:::release_natives())
    g <- array(seq(-1, 1, length.out = 4), c(4, 1))
    back <- multihead:::run_graph_backward(self$graph, run, list(g), input_grads = TRUE)
    n_native <- sum(vapply(ls(run$values), function(id) multihead:::is_native_tensor(run$values[[id]]), logical(1)))
    list(out = run$outputs[[1]], w = multihead:::model_weight_grads(self, back$weights), x = back$inputs[[1]],
         n_native = n_native)
  }
  a <- grads(TRUE)
  b <- grads(FALSE)
  expect_gte(a$n_native, 7L)  # attention, add, layer norm, dense, dense, add, layer norm
  expect_identical(b$n_native, 0L)
  expect_false(multihead:::is_native_tensor(a$out))
  expect_equal(a$out, b$out, tolerance = 1e-6)
  expect_false(multihead:::is_native_tensor(a$x))
  expect_equal(a$x, b$x, tolerance = 1e-5)
  for (i in seq_along(a$w)) expect_equal(a$w[[i]], b$w[[i]], tolerance = 1e-5, info = names(a$w)[i])
  # a float64 copy of the model runs on R arrays only: its layers never see a native tensor
  expect_false(multihead:::node_takes_native(list(kind = "layer", callee = layer_dense(units = 2, dtype = "float64"))))
  expect_true(multihead:::node_takes_native(list(kind = "layer", callee = layer_dense(units = 2))))
  expect_true(multihead:::node_takes_native(list(kind = "layer", callee = layer_multi_head_attention(num_heads = 1, key_dim = 2))))
  expect_false(multihead:::node_takes_native(list(kind = "layer", callee = layer_conv_1d(filters = 2, kernel_size = 1))))
  expect_false(multihead:::node_takes_native(list(kind = "op", callee = NULL)))
})

test_that("predict() and evaluate() give the R-array results; masks and broadcasting still work", {
  m <- encoder_model(seed = 5)
  x <- array(rnorm(10 * 6 * 8), c(10, 6, 8))
  y <- array(rnorm(10), c(10, 1))
  expect_equal(predict(m, x, batch_size = 4, verbose = 0), native_off(predict(m, x, batch_size = 4, verbose = 0)),
               tolerance = 1e-6)
  expect_equal(evaluate(m, x, y, batch_size = 4, verbose = 0), native_off(evaluate(m, x, y, batch_size = 4, verbose = 0)),
               tolerance = 1e-6)
  # masks from an embedding through dense, add and pooling; an add that broadcasts
  set.seed(6)
  ids <- keras_input(shape = 5, dtype = "int32")
  e <- layer_embedding(input_dim = 7, output_dim = 4, mask_zero = TRUE)(ids)
  d <- layer_dense(e, 4, activation = "tanh")
  inp2 <- keras_input(shape = c(1, 4))
  b <- layer_dense(inp2, 4)
  s <- layer_add(list(d, b))
  out <- s |> layer_layer_normalization() |> layer_global_average_pooling_1d() |> layer_dense(1)
  m2 <- keras_model(list(ids, inp2), out)
  compile(m2, optimizer = optimizer_sgd(0.1), loss = "mse")
  xi <- array(c(1, 2, 0, 0, 3, 4, 5, 6, 0, 0), c(2, 5))
  xb <- array(rnorm(2 * 4), c(2, 1, 4))
  yy <- array(c(0.5, -0.5), c(2, 1))
  expect_equal(predict(m2, list(xi, xb), verbose = 0), native_off(predict(m2, list(xi, xb), verbose = 0)),
               tolerance = 1e-6)
  w0 <- get_weights(m2)
  fit(m2, list(xi, xb), yy, epochs = 2, verbose = 0)
  w1 <- get_weights(m2)
  set_weights(m2, w0)
  native_off(fit(m2, list(xi, xb), yy, epochs = 2, verbose = 0))
  expect_equal(get_weights(m2), w1, tolerance = 1e-5)
  expect_identical(multihead:::cpp_native_release_all(), 0L)
})

test_that("a layer never returns a native tensor to a user", {
  m <- encoder_model(seed = 7)
  x <- array(rnorm(2 * 6 * 8), c(2, 6, 8))
  expect_false(multihead:::is_native_tensor(m(x)))
  l <- layer_dense(units = 3)
  expect_false(multihead:::is_native_tensor(l(x)))
  g <- backprop(m, x, grad_output = array(1, c(2, 1)))
  expect_false(any(vapply(g$grads$weights, multihead:::is_native_tensor, logical(1))))
})

test_that("attention in the middle of a model takes and returns native tensors, gradients included", {
  set.seed(8)
  inp <- keras_input(shape = c(5, 8))
  mem <- keras_input(shape = c(7, 8))
  h <- layer_dense(inp, 8)
  m1 <- layer_dense(mem, 8, activation = "tanh")
  a <- layer_multi_head_attention(num_heads = 2, key_dim = 4)(h, h)                 # self-attention, native q = v = k
  h <- layer_layer_normalization(layer_add(list(h, a)))
  c1 <- layer_multi_head_attention(num_heads = 2, key_dim = 3)(h, m1, layer_dense(mem, 6))  # cross, separate key
  g <- layer_group_query_attention(head_dim = 4, num_query_heads = 4, num_key_value_heads = 2)(c1, c1)
  out <- layer_global_average_pooling_1d(layer_add(list(c1, g))) |> layer_dense(2)
  m <- keras_model(list(inp, mem), out)
  self <- multihead:::layer_self(m)
  xs <- list(array(rnorm(3 * 5 * 8), c(3, 5, 8)), array(rnorm(3 * 7 * 8), c(3, 7, 8)))
  grads <- function(native) {
    run <- multihead:::run_graph_forward(self$graph, xs, training = TRUE, keep = TRUE, native = native)
    on.exit(multihead:::release_natives())
    n_native <- sum(vapply(ls(run$values), function(id) multihead:::is_native_tensor(run$values[[id]]), logical(1)))
    back <- multihead:::run_graph_backward(self$graph, run, list(array(c(1, -2, 0.5, 1, 0, -1), c(3, 2))))
    list(out = run$outputs[[1]], w = multihead:::model_weight_grads(self, back$weights), x = back$inputs,
         n_native = n_native)
  }
  a <- grads(TRUE)
  b <- grads(FALSE)
  expect_gte(a$n_native, 8L)
  expect_equal(a$out, b$out, tolerance = 1e-6)
  for (k in 1:2) {
    expect_false(multihead:::is_native_tensor(a$x[[k]]))
    expect_equal(a$x[[k]], b$x[[k]], tolerance = 1e-5)
  }
  expect_identical(names(a$w), names(b$w))
  for (i in seq_along(a$w)) expect_equal(a$w[[i]], b$w[[i]], tolerance = 1e-5, info = names(a$w)[i])
  expect_identical(multihead:::cpp_native_release_all(), 0L)
})

test_that("native results stay protected while the glue makes further R objects (gctorture)", {
  # In a fresh R process: gctorture() collects at every allocation, so an
  # unprotected native result in the glue is freed and its later use fails.
  # (Its time grows with the heap: a long test session's would take minutes.)
  script <- tempfile(fileext = ".R")
  on.exit(unlink(script))
  writeLines(c(
    sprintf(".libPaths(%s)", paste(deparse(.libPaths()), collapse = "")),
    "suppressMessages(library(multihead))",
    "set.seed(9)",
    "inp <- keras_input(shape = c(3, 4))",
    "h <- layer_dense(inp, 4, activation = 'relu')",
    "a <- layer_multi_head_attention(num_heads = 1, key_dim = 2)(h, h)",
    "h <- layer_layer_normalization(layer_add(list(h, a)))",
    "m <- keras_model(inp, layer_global_average_pooling_1d(h) |> layer_dense(1))",
    "self <- multihead:::layer_self(m)",
    "x <- array(rnorm(2 * 3 * 4), c(2, 3, 4))",
    "step <- function(native) {",
    "  run <- multihead:::run_graph_forward(self$graph, list(x), training = TRUE, keep = TRUE, native = native)",
    "  back <- multihead:::run_graph_backward(self$graph, run, list(array(1, c(2, 1))), input_grads = TRUE)",
    "  out <- list(run$outputs[[1]], back$inputs[[1]], multihead:::model_weight_grads(self, back$weights))",
    "  multihead:::release_natives()",
    "  out",
    "}",
    "want <- step(FALSE)",
    "gctorture(TRUE)",
    "got <- step(TRUE)",
    "gctorture(FALSE)",
    "cat(if (isTRUE(all.equal(got, want, tolerance = 1e-5))) 'SAME' else 'DIFFERENT', '\\n')"
  ), script)
  out <- suppressWarnings(system2(file.path(R.home("bin"), "Rscript"), c("--vanilla", script),
                                  stdout = TRUE, stderr = TRUE))
  expect_true(any(grepl("^SAME", out)), info = paste(out, collapse = "\n"))
})

test_that("a backward pass frees each node's native tensors once the nodes before it no longer need them", {
  # one tensor read by three nodes (two dense layers and a residual add), an
  # add whose backward passes one gradient to both inputs, attention reading
  # its input twice, a non-native layer (conv) in between
  set.seed(5)
  inp <- keras_input(shape = c(6, 8))
  h <- layer_dense(inp, 8, activation = "relu")
  s <- layer_add(list(h, layer_dense(h, 8), layer_dense(h, 8, activation = "gelu")))
  s <- layer_layer_normalization(s)
  a <- layer_multi_head_attention(num_heads = 2, key_dim = 4)(s, s)
  cv <- layer_conv_1d(layer_add(list(a, s)), filters = 8, kernel_size = 1)
  out <- layer_dense(layer_global_average_pooling_1d(layer_add(list(cv, h))), 1)
  m <- keras_model(inp, out)
  self <- multihead:::layer_self(m)
  x <- array(rnorm(3 * 6 * 8), c(3, 6, 8))
  g <- array(c(0.5, -1, 2), c(3, 1))
  grads <- function(native) {
    multihead:::cpp_native_release_all()
    run <- multihead:::run_graph_forward(self$graph, list(x), training = TRUE, keep = TRUE, native = native)
    live_after_forward <- length(Filter(multihead:::is_native_tensor, as.list(run$values)))
    back <- multihead:::run_graph_backward(self$graph, run, list(g), input_grads = TRUE)
    list(w = multihead:::model_weight_grads(self, back$weights), x = back$inputs[[1]],
         live_after_forward = live_after_forward, live_after_backward = multihead:::cpp_native_release_all())
  }
  a <- grads(TRUE)
  b <- grads(FALSE)
  expect_gte(a$live_after_forward, 9L)
  # left for the end of the run: the graph input's native copy and its gradient
  expect_lte(a$live_after_backward, 2L)
  expect_equal(a$x, b$x, tolerance = 1e-5)
  for (i in seq_along(a$w)) expect_equal(a$w[[i]], b$w[[i]], tolerance = 1e-5, info = names(a$w)[i])
  # the glue frees only what `keep` does not hold, each tensor once
  t1 <- multihead:::cpp_native_from_array(array(1, c(2, 2)), 1L)
  t2 <- multihead:::cpp_native_from_array(array(2, c(2, 2)), 1L)
  expect_identical(multihead:::cpp_native_release_unshared(list(t1, list(t2, t1)), list(list(t2))), 1L)
  expect_error(multihead:::cpp_native_to_array(t1, 1L), "used after its step ended")
  expect_identical(multihead:::cpp_native_to_array(t2, 1L), array(2, c(2, 2)))
  expect_identical(multihead:::cpp_native_release_unshared(list(t1, t2, 3), list()), 1L)  # t1 already gone
  expect_identical(multihead:::cpp_native_release_all(), 0L)
})

test_that("batches are taken straight into native tensors for inputs only native layers read", {
  take <- multihead:::cpp_native_take_rows
  for (d in list(c(7, 5), c(7, 3, 4), c(9, 2, 3, 5))) {
    x <- array(rnorm(prod(d)), d)
    idx <- c(3L, 1L, 7L, 3L)
    for (threads in c(1L, 2L)) {
      t <- take(x, idx, threads)
      expect_identical(dim(t), c(4L, as.integer(d[-1])))
      ref <- do.call(`[`, c(list(x, idx), rep(list(TRUE), length(d) - 1L), list(drop = FALSE)))
      expect_identical(multihead:::cpp_native_to_array(t, 1L), multihead:::round_float32(ref))
    }
  }
  expect_error(take(array(1, c(3, 2)), c(1L, 4L), 1L), "row out of range")
  expect_error(take(array(1L, c(3, 2)), 1L, 1L), "double array")
  multihead:::cpp_native_release_all()

  gni <- function(m) multihead:::graph_native_inputs(multihead:::layer_self(m)$graph)
  inp <- keras_input(shape = c(6, 8))
  a <- layer_multi_head_attention(num_heads = 2, key_dim = 4)(inp, inp)
  expect_identical(gni(keras_model(inp, layer_add(list(inp, a)))), TRUE)
  # read by a layer without native tensors (conv) as well: no
  expect_identical(gni(keras_model(inp, layer_add(list(a, layer_conv_1d(inp, filters = 8, kernel_size = 1))))), FALSE)
  # returned as an output too: no
  expect_identical(gni(keras_model(inp, list(a, inp))), FALSE)
  # a float64 layer: no; two inputs, one of each kind
  inp2 <- keras_input(shape = c(6, 8))
  m <- keras_model(list(inp, inp2), layer_add(list(layer_dense(inp, 3), layer_dense(inp2, 3, dtype = "float64"))))
  expect_identical(gni(m), c(TRUE, FALSE))
  native_off(expect_identical(gni(m), c(FALSE, FALSE)))
  # and the runs agree with R-array batches (fit, evaluate, predict)
  set.seed(8)
  x1 <- array(rnorm(10 * 6 * 8), c(10, 6, 8))
  x2 <- array(rnorm(10 * 6 * 8), c(10, 6, 8))
  y <- array(rnorm(10 * 6 * 3), c(10, 6, 3))
  run <- function(native) {
    old <- options(multihead.native_tensors = native)
    on.exit(options(old))
    set.seed(9)
    i1 <- keras_input(shape = c(6, 8))
    i2 <- keras_input(shape = c(6, 8))
    mm <- keras_model(list(i1, i2), layer_add(list(layer_dense(i1, 3), layer_dense(i2, 3, dtype = "float64"))))
    compile(mm, optimizer = optimizer_sgd(0.1), loss = "mse")
    h <- fit(mm, list(x1, x2), y, batch_size = 4, epochs = 2, shuffle = FALSE, verbose = 0)
    list(loss = h$metrics$loss, w = get_weights(mm), p = predict(mm, list(x1, x2), batch_size = 3, verbose = 0),
         e = evaluate(mm, list(x1, x2), y, batch_size = 3, verbose = 0))
  }
  r1 <- run(TRUE)
  r2 <- run(FALSE)
  expect_equal(r1, r2, tolerance = 1e-6)
  expect_identical(multihead:::cpp_native_release_all(), 0L)
})

test_that("a native dense layer whose activation's backward reads its output keeps no copy of it", {
  m <- encoder_model(seed = 4, ff_activation = "relu")
  self <- multihead:::layer_self(m)
  x <- array(rnorm(2 * 6 * 8), c(2, 6, 8))
  run <- multihead:::run_graph_forward(self$graph, list(x), training = TRUE, keep = TRUE, native = TRUE)
  on.exit(multihead:::release_natives())
  dense_nodes <- Filter(function(n) identical(n$kind, "layer") &&
                          identical(multihead:::layer_self(n$callee)$class_name, "Dense") &&
                          identical(multihead:::layer_self(n$callee)$config$activation, "relu"), self$graph$nodes)
  expect_length(dense_nodes, 1L)
  node <- dense_nodes[[1]]
  cache <- run$caches[[node$id]]
  out <- run$values[[multihead:::node_output_ids(node)[1]]]
  expect_true(multihead:::is_native_tensor(cache$saved))
  expect_true(identical(cache$saved, out))  # the same external pointer
  # on R arrays the saved values are a copy (the output is an R array)
  run2 <- native_off(multihead:::run_graph_forward(self$graph, list(x), training = TRUE, keep = TRUE, native = FALSE))
  expect_false(multihead:::is_native_tensor(run2$caches[[node$id]]$saved))
  expect_equal(as.vector(run2$caches[[node$id]]$saved), as.vector(aperm(multihead:::native_as_array(out), 3:1)),
               tolerance = 1e-6)
})

test_that("Subtract and Multiply run on native tensors: outputs and gradients of the R-array run", {
  # a gated feed-forward block (GLU-style): dense(x) * sigmoid(dense(x)), a residual
  # Subtract, a three-way Multiply, then a layer norm
  gated_model <- function(seed = 5, dtype = "float32") {
    set.seed(seed)
    inp <- keras_input(shape = c(5, 8))
    u <- layer_dense(inp, 8, name = "u", dtype = dtype)
    v <- layer_dense(inp, 8, activation = "sigmoid", name = "v", dtype = dtype)
    w <- layer_dense(inp, 8, activation = "tanh", name = "w", dtype = dtype)
    gate <- layer_multiply(list(u, v), name = "gate", dtype = dtype)
    three <- layer_multiply(list(u, v, w), name = "three", dtype = dtype)
    d <- layer_subtract(list(inp, gate), name = "diff", dtype = dtype)
    x <- layer_layer_normalization(layer_add(list(d, three), dtype = dtype), dtype = dtype)
    m <- keras_model(inp, x |> layer_global_average_pooling_1d(dtype = dtype) |> layer_dense(1, dtype = dtype))
    compile(m, optimizer = optimizer_sgd(0.05), loss = "mse")
    m
  }
  m <- gated_model()
  self <- multihead:::layer_self(m)
  x <- array(rnorm(4 * 5 * 8), c(4, 5, 8))
  grads <- function(native) {
    run <- multihead:::run_graph_forward(self$graph, list(x), training = TRUE, keep = TRUE, native = native)
    on.exit(multihead:::release_natives())
    back <- multihead:::run_graph_backward(self$graph, run, list(array(c(-1, 0.5, 2, 1), c(4, 1))),
                                           input_grads = TRUE)
    kinds <- vapply(self$graph$nodes, function(n) {
      v <- run$values[[multihead:::node_output_ids(n)[1]]]
      if (multihead:::is_native_tensor(v)) "native" else "array"
    }, "")
    names(kinds) <- vapply(self$graph$nodes, function(n) multihead:::layer_self(n$callee)$name, "")
    list(out = run$outputs[[1]], w = multihead:::model_weight_grads(self, back$weights), x = back$inputs[[1]],
         kinds = kinds)
  }
  a <- grads(TRUE)
  b <- grads(FALSE)
  expect_identical(unname(a$kinds[c("gate", "three", "diff")]), rep("native", 3))
  expect_equal(a$out, b$out, tolerance = 1e-6)
  expect_equal(a$x, b$x, tolerance = 1e-5)
  for (i in seq_along(a$w)) expect_equal(a$w[[i]], b$w[[i]], tolerance = 1e-5, info = names(a$w)[i])
  # the input gradient against central differences of the same model in float64
  m64 <- gated_model(dtype = "float64")
  set_weights(m64, get_weights(m))
  f <- function(xx) sum(predict(m64, xx, verbose = 0) * c(-1, 0.5, 2, 1))
  for (idx in list(c(1, 1, 1), c(2, 3, 5), c(4, 5, 8))) {
    h <- 1e-5
    xp <- x; xp[idx[1], idx[2], idx[3]] <- xp[idx[1], idx[2], idx[3]] + h
    xm <- x; xm[idx[1], idx[2], idx[3]] <- xm[idx[1], idx[2], idx[3]] - h
    expect_equal(a$x[idx[1], idx[2], idx[3]], (f(xp) - f(xm)) / (2 * h), tolerance = 1e-4,
                 info = paste(idx, collapse = ","))
  }
  # training and the thread count: the same weights as the R-array run, bitwise across threads
  y <- array(rnorm(4), c(4, 1))
  train <- function(native, threads) {
    old <- set_num_threads(threads)
    on.exit(set_num_threads(old))
    mm <- gated_model()
    if (native) fit(mm, x, y, batch_size = 2, epochs = 2, shuffle = FALSE, verbose = 0)
    else native_off(fit(mm, x, y, batch_size = 2, epochs = 2, shuffle = FALSE, verbose = 0))
    get_weights(mm)
  }
  w1 <- train(TRUE, 1L)
  expect_identical(train(TRUE, 2L), w1)
  w_ref <- train(FALSE, 1L)
  for (i in seq_along(w1)) expect_equal(w1[[i]], w_ref[[i]], tolerance = 1e-4, info = i)
  # a Multiply with masked inputs, and broadcasting, still take the R-array path (and agree)
  inp <- keras_input(shape = c(5, 8))
  one <- keras_input(shape = c(1, 8))
  mb <- keras_model(list(inp, one), layer_multiply(list(layer_dense(inp, 8), layer_dense(one, 8))) |>
                      layer_global_average_pooling_1d())
  xo <- array(rnorm(4 * 8), c(4, 1, 8))
  expect_equal(predict(mb, list(x, xo), verbose = 0), native_off(predict(mb, list(x, xo), verbose = 0)),
               tolerance = 1e-6)
  expect_identical(multihead:::cpp_native_release_all(), 0L)
})

test_that("an inactive Dropout passes native tensors through; an active one gives the R-array run's mask", {
  dropout_model <- function() {
    set.seed(7)
    inp <- keras_input(shape = c(5, 8))
    h <- inp |> layer_dense(16, activation = "relu") |> layer_dropout(0.3, seed = 11, name = "drop") |>
      layer_dense(8)
    x <- layer_layer_normalization(layer_add(list(inp, h)))
    m <- keras_model(inp, x |> layer_global_average_pooling_1d() |> layer_dense(1))
    compile(m, optimizer = optimizer_sgd(0.05), loss = "mse")
    m
  }
  set.seed(8)
  x <- array(rnorm(8 * 5 * 8), c(8, 5, 8))
  y <- array(rnorm(8), c(8, 1))
  m <- dropout_model()
  self <- multihead:::layer_self(m)
  drop_id <- multihead:::node_output_ids(Filter(function(n) identical(multihead:::layer_self(n$callee)$name, "drop"),
                                                self$graph$nodes)[[1]])[1]
  run <- multihead:::run_graph_forward(self$graph, list(x), training = FALSE, keep = FALSE, native = TRUE)
  expect_true(multihead:::is_native_tensor(run$values[[drop_id]]))
  multihead:::release_natives()
  expect_equal(predict(m, x, verbose = 0), native_off(predict(m, x, verbose = 0)), tolerance = 1e-6)
  expect_equal(evaluate(m, x, y, verbose = 0), native_off(evaluate(m, x, y, verbose = 0)), tolerance = 1e-6)
  # training: the same masks (seeded, counted per call) on both runs, so the same weights
  m1 <- dropout_model()
  m2 <- dropout_model()
  fit(m1, x, y, batch_size = 4, epochs = 3, shuffle = FALSE, verbose = 0)
  native_off(fit(m2, x, y, batch_size = 4, epochs = 3, shuffle = FALSE, verbose = 0))
  w1 <- get_weights(m1)
  w2 <- get_weights(m2)
  for (i in seq_along(w1)) expect_equal(w1[[i]], w2[[i]], tolerance = 1e-5, info = i)
  expect_false(isTRUE(all.equal(w1, get_weights(dropout_model()), tolerance = 1e-4)))  # it trained
  # a training-mode forward really drops: about 30% of the nonzero inputs of the dropout node
  drop_node <- Filter(function(n) identical(multihead:::layer_self(n$callee)$name, "drop"), self$graph$nodes)[[1]]
  run <- multihead:::run_graph_forward(self$graph, list(x), training = TRUE, keep = TRUE, native = TRUE)
  before <- multihead:::native_as_array(run$values[[drop_node$inputs[[1]]$id]])
  dropped <- multihead:::native_as_array(run$values[[drop_id]])
  multihead:::release_natives()
  kept <- before != 0
  expect_gt(mean(dropped[kept] == 0), 0.15)
  expect_lt(mean(dropped[kept] == 0), 0.45)
  expect_equal(dropped[kept & dropped != 0], before[kept & dropped != 0] / 0.7, tolerance = 1e-6)
  expect_identical(multihead:::cpp_native_release_all(), 0L)
})
