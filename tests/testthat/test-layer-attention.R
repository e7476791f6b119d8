# layer_attention() and layer_additive_attention(): Keras 3.15.1's own
# numbers, a plain-R reference (scores, masks, causal, both score modes,
# scales, the 3-input form), finite-difference gradients in float64, dropout,
# models (implicit masks, training, saving) and bad input.

# ---- plain-R reference -----------------------------------------------------------

mm <- function(a, b) base::`%*%`(a, b)

# Keras's Attention / AdditiveAttention written out per batch entry.
# mode: "dot", "concat" or "additive"; scale: NULL, a number, or (additive) a
# vector; cw: the concat score weight. Returns list(output, scores).
ref_score_attention <- function(q, v, k = v, mode = "dot", scale = NULL, cw = 1, qmask = NULL,
                                vmask = NULL, causal = FALSE, bias = 1e9) {
  B <- dim(q)[1]; Tq <- dim(q)[2]; Tv <- dim(v)[2]; D <- dim(q)[3]; Dv <- dim(v)[3]
  out <- array(0, c(B, Tq, Dv)); W <- array(0, c(B, Tq, Tv))
  for (b in seq_len(B)) {
    Q <- matrix(q[b, , ], Tq, D); K <- matrix(k[b, , ], Tv, D); V <- matrix(v[b, , ], Tv, Dv)
    S <- matrix(0, Tq, Tv)
    for (i in seq_len(Tq)) for (j in seq_len(Tv)) {
      S[i, j] <- switch(mode,
        dot = sum(Q[i, ] * K[j, ]) * (if (is.null(scale)) 1 else scale),
        concat = cw * sum(tanh((if (is.null(scale)) 1 else scale) * (Q[i, ] + K[j, ]))),
        additive = sum((if (is.null(scale)) 1 else scale) * tanh(Q[i, ] + K[j, ])))
    }
    allowed <- matrix(TRUE, Tq, Tv)
    if (!is.null(vmask)) allowed <- allowed & matrix(vmask[b, ], Tq, Tv, byrow = TRUE)
    if (causal) allowed <- allowed & outer(seq_len(Tq), seq_len(Tv), ">=")
    S[!allowed] <- S[!allowed] - bias
    P <- exp(S - apply(S, 1, max))
    P <- P / rowSums(P)
    O <- mm(P, V)
    if (!is.null(qmask)) O[!qmask[b, ], ] <- 0
    out[b, , ] <- O
    W[b, , ] <- P
  }
  list(output = out, scores = W)
}

# A layer of the given kind, built for (q, v[, k]) with weights `w` (a list).
make_score_layer <- function(kind, use_scale, w = NULL, dtype = "float64", q, v, k = NULL, ...) {
  layer <- switch(kind,
    dot = layer_attention(use_scale = use_scale, dtype = dtype, ...),
    concat = layer_attention(use_scale = use_scale, score_mode = "concat", dtype = dtype, ...),
    additive = layer_additive_attention(use_scale = use_scale, dtype = dtype, ...))
  layer$build(c(list(dim(q), dim(v)), if (!is.null(k)) list(dim(k))))
  if (!is.null(w)) set_weights(layer, w)
  layer
}

# Weights for a kind: list(scale[, concat_score_weight]) as the layer orders them,
# and the matching reference arguments.
score_weights <- function(kind, use_scale, D) {
  sc <- if (!use_scale) NULL else if (kind == "additive") array(rnorm(D) * 0.7, D) else 0.8
  w <- c(if (use_scale) list(sc), if (kind == "concat") list(1.3))
  list(w = w, scale = if (is.null(sc)) NULL else as.vector(sc), cw = if (kind == "concat") 1.3 else 1)
}

fx315 <- function(case) {
  jsonlite::fromJSON(file.path(fixture_dir(), "keras-3.15.1", paste0(case, ".json")), simplifyVector = TRUE,
                     simplifyDataFrame = FALSE, simplifyMatrix = FALSE)
}

expect_close_to_keras <- function(got, expected, label) {
  expect_equal(dim(got), dim(expected))
  expect_lte(max(abs(got - expected) / pmax(1, abs(expected))), 1e-5, label = label)
}

# ---- Keras 3.15.1 -------------------------------------------------------------------

test_that("eager calls and models reproduce Keras 3.15.1 (dot with scale, concat, additive)", {
  skip_if_not_installed("jsonlite")
  ctor <- list(attention_dot = function(...) layer_attention(use_scale = TRUE, ...),
               attention_concat = function(...) layer_attention(score_mode = "concat", ...),
               additive = function(...) layer_additive_attention(...))
  for (case in names(ctor)) {
    fx <- fx315(case)
    q <- fx_array(fx$inputs$query); v <- fx_array(fx$inputs$value)
    w <- lapply(fx$weights, fx_array)
    expected <- lapply(fx$expected$outputs, fx_array)
    layer <- ctor[[case]](name = "attention")
    layer$build(list(dim(q), dim(v)))
    expect_identical(names(layer$weights), vapply(fx$weights, function(x) x$path, ""))
    set_weights(layer, w)
    res <- layer(list(q, v), return_attention_scores = TRUE)
    expect_close_to_keras(res$output, expected[[1]], paste(case, "output"))
    expect_close_to_keras(res$scores, expected[[2]], paste(case, "scores"))
    expect_identical(layer(list(q, v)), res$output)
    # the same model as Keras's, with the weights read from Keras's .weights.h5
    qi <- keras_input(shape = dim(q)[-1], name = "query"); vi <- keras_input(shape = dim(v)[-1], name = "value")
    out <- ctor[[case]](name = "attention")(list(qi, vi), return_attention_scores = TRUE)
    model <- keras_model(list(qi, vi), list(out$output, out$scores), name = case)
    if (requireNamespace("hdf5r", quietly = TRUE)) {
      load_model_weights(model, file.path(fixture_dir(), "keras-3.15.1", paste0(case, ".weights.h5")))
      expect_identical(unname(get_weights(model)), unname(get_weights(layer)))
    } else {
      set_weights(model, w)
    }
    p <- predict(model, list(q, v), verbose = 0)
    expect_close_to_keras(p[[1]], expected[[1]], paste(case, "model output"))
    expect_close_to_keras(p[[2]], expected[[2]], paste(case, "model scores"))
    # Keras's config keys, in Keras's order
    keys <- c("name", "trainable", "dtype", "use_scale", if (case != "additive") "score_mode", "dropout", "seed")
    expect_identical(names(get_config(layer)), keys)
    expect_config_round_trip(layer)
  }
})

test_that("weights have Keras's names, shapes and initial values", {
  q <- array(rnorm(2 * 3 * 5), c(2, 3, 5)); v <- array(rnorm(2 * 4 * 5), c(2, 4, 5))
  a <- layer_attention(use_scale = TRUE, score_mode = "concat", name = "attention")
  a(list(q, v))
  expect_identical(names(a$weights), c("attention/scale", "attention/concat_score_weight"))
  expect_identical(get_weights(a), list(1, 1))
  plain <- layer_attention()
  plain(list(q, v))
  expect_length(get_weights(plain), 0L)
  set.seed(3)
  ad <- layer_additive_attention()
  ad(list(q, v))
  s <- get_weights(ad)[[1]]
  expect_identical(dim(s), 5L)
  expect_true(all(abs(s) <= sqrt(6 / 10)) && length(unique(s)) == 5L)  # glorot uniform, fans (5, 5)
  plain <- layer_additive_attention(use_scale = FALSE)
  plain(list(q, v))
  expect_length(get_weights(plain), 0L)
  expect_identical(count_params(ad), 5)
})

# ---- plain-R reference ---------------------------------------------------------------

test_that("float64 calls match the reference: score modes, scales, masks, causal, 3 inputs", {
  set.seed(11)
  B <- 2; Tq <- 4; Tv <- 5; D <- 3; Dv <- 2
  q <- rand_array(B, Tq, D); v <- rand_array(B, Tv, Dv); k <- rand_array(B, Tv, D)
  qm <- matrix(c(TRUE, TRUE, FALSE, TRUE, TRUE, TRUE, TRUE, FALSE), B, Tq, byrow = TRUE)
  vm <- matrix(c(TRUE, FALSE, TRUE, TRUE, FALSE, TRUE, TRUE, TRUE, TRUE, TRUE), B, Tv, byrow = TRUE)
  for (kind in c("dot", "concat", "additive")) for (use_scale in c(FALSE, TRUE)) {
    sw <- score_weights(kind, use_scale, D)
    layer <- make_score_layer(kind, use_scale, sw$w, q = q, v = v, k = k)
    for (causal in c(FALSE, TRUE)) for (masked in c(FALSE, TRUE)) {
      mask <- if (masked) list(qm, vm)
      got <- layer(list(q, v, k), mask = mask, use_causal_mask = causal, return_attention_scores = TRUE)
      ref <- ref_score_attention(q, v, k, kind, sw$scale, sw$cw, if (masked) qm, if (masked) vm, causal)
      lab <- sprintf("%s scale=%s causal=%s masked=%s", kind, use_scale, causal, masked)
      expect_lt(rel_err(got$output, ref$output), 1e-12, label = lab)
      expect_lt(rel_err(got$scores, ref$scores), 1e-12, label = lab)
    }
    # key defaults to value (dot and additive need the query's features on the value)
    v3 <- rand_array(B, Tv, D)
    got <- layer(list(q, v3), mask = list(NULL, vm))
    expect_lt(rel_err(got, ref_score_attention(q, v3, v3, kind, sw$scale, sw$cw, vmask = vm)$output), 1e-12)
  }
  # named inputs, and a rank-4 input (leading axes are batch axes)
  layer <- layer_attention(dtype = "float64")
  expect_equal(layer(list(value = v, query = q, key = k)), layer(list(q, v, k)))
  q4 <- rand_array(2, 3, Tq, D); v4 <- rand_array(2, 3, Tv, Dv); k4 <- rand_array(2, 3, Tv, D)
  got4 <- layer(list(q4, v4, k4))
  expect_identical(dim(got4), as.integer(c(2, 3, Tq, Dv)))
  ref4 <- ref_score_attention(array(q4[2, 3, , ], c(1, Tq, D)), array(v4[2, 3, , ], c(1, Tv, Dv)),
                              array(k4[2, 3, , ], c(1, Tv, D)))
  expect_lt(rel_err(got4[2, 3, , ], ref4$output[1, , ]), 1e-12)
})

test_that("float32 layers compute in float32 within float32 rounding of the reference", {
  set.seed(12)
  q <- rand_array(3, 4, 6); v <- rand_array(3, 5, 6)
  vm <- matrix(TRUE, 3, 5); vm[2, 4:5] <- FALSE
  for (kind in c("dot", "concat", "additive")) {
    sw <- score_weights(kind, TRUE, 6)
    layer <- make_score_layer(kind, TRUE, sw$w, dtype = "float32", q = q, v = v)
    w32 <- get_weights(layer)
    got <- layer(list(q, v), mask = list(NULL, vm), use_causal_mask = TRUE, return_attention_scores = TRUE)
    expect_identical(got$output, multihead:::round_float32(got$output))
    ref <- ref_score_attention(multihead:::round_float32(q), multihead:::round_float32(v),
                               multihead:::round_float32(v), kind, as.vector(w32[[1]]),
                               if (kind == "concat") w32[[2]] else 1, vmask = vm, causal = TRUE)
    expect_lt(rel_err(got$output, ref$output), 2e-6, label = kind)
    expect_lt(rel_err(got$scores, ref$scores), 2e-6, label = kind)
  }
})

test_that("a row with every key masked gets Keras's weights (uniform in float32); the query mask zeroes rows", {
  q <- array(c(0.5, -1, 2, 0.25), c(1, 2, 2)); v <- array(c(1, 2, 3, -1, 0, 1), c(1, 3, 2))
  vm <- matrix(FALSE, 1, 3)
  s32 <- layer_attention()(list(q, v), mask = list(NULL, vm), return_attention_scores = TRUE)$scores
  expect_identical(s32, array(multihead:::round_float32(1 / 3), c(1, 2, 3)))  # s - 1e9 rounds to -1e9 in float32, as in Keras
  s64 <- layer_attention(dtype = "float64")(list(q, v), mask = list(NULL, vm), return_attention_scores = TRUE)
  ref <- ref_score_attention(q, v, v, vmask = vm)
  expect_lt(rel_err(s64$scores, ref$scores), 1e-6)  # float64 keeps s - 1e9 to about 1e-7
  out <- layer_attention(dtype = "float64")(list(q, v), mask = list(matrix(c(FALSE, TRUE), 1), NULL))
  expect_identical(out[1, 1, ], c(0, 0))
  expect_equal(out[1, 2, ], ref_score_attention(q, v)$output[1, 2, ])
})

# ---- gradients -------------------------------------------------------------------------

# Central differences of L = sum(output * R1) + sum(scores * R2) against
# backprop() for every input and weight.
check_score_gradients <- function(make, inputs, mask = NULL, causal = FALSE, training = NULL, tol = 1e-7) {
  out0 <- make()(inputs, mask = mask, use_causal_mask = causal, training = training,
                 return_attention_scores = TRUE)
  R1 <- array(rnorm(length(out0$output)), dim(out0$output))
  R2 <- array(rnorm(length(out0$scores)), dim(out0$scores))
  loss <- function(inp, lay = make()) {
    o <- lay(inp, mask = mask, use_causal_mask = causal, training = training, return_attention_scores = TRUE)
    sum(o$output * R1) + sum(o$scores * R2)
  }
  g <- backprop(make(), inputs, mask = mask, use_causal_mask = causal, training = training,
                return_attention_scores = TRUE, grad_output = list(output = R1, scores = R2))
  expect_equal(g$output, out0)
  expect_length(g$grads$inputs, length(inputs))
  for (i in seq_along(inputs)) {
    num <- fd_grad(function(x) { inp <- inputs; inp[[i]] <- x; loss(inp) }, inputs[[i]])
    expect_lt(rel_err(g$grads$inputs[[i]], num), tol, label = sprintf("d inputs[[%d]]", i))
  }
  w <- get_weights(make())
  expect_identical(sub(".*/", "", names(g$grads$weights)), sub(".*/", "", names(make()$weights)))
  for (i in seq_along(w)) {
    num <- fd_grad(function(x) { l <- make(); w2 <- w; w2[[i]] <- x; set_weights(l, w2); loss(inputs, l) }, w[[i]])
    expect_identical(dim(g$grads$weights[[i]]), dim(w[[i]]))
    expect_lt(rel_err(g$grads$weights[[i]], num), tol, label = names(g$grads$weights)[i])
  }
  # without the scores output: the gradient of the output alone
  g1 <- backprop(make(), inputs, mask = mask, use_causal_mask = causal, training = training, grad_output = R1)
  num <- fd_grad(function(x) sum(make()(list(x, inputs[[2]], inputs[[3]]), mask = mask, training = training,
                                        use_causal_mask = causal) * R1), inputs[[1]])
  expect_lt(rel_err(g1$grads$inputs[[1]], num), tol, label = "d query (output only)")
  invisible(g)
}

test_that("gradients for query, value, key and weights match finite differences (float64, masks, causal)", {
  set.seed(21)
  B <- 2; Tq <- 3; Tv <- 4; D <- 3; Dv <- 2
  q <- rand_array(B, Tq, D); v <- rand_array(B, Tv, Dv); k <- rand_array(B, Tv, D)
  # (no query row with every key masked: float64 keeps s - 1e9 only to ~1e-7, too coarse for differences)
  mask <- list(matrix(c(TRUE, FALSE, TRUE, TRUE, TRUE, TRUE), B, byrow = TRUE),
               matrix(c(TRUE, TRUE, FALSE, TRUE, TRUE, FALSE, TRUE, TRUE), B, byrow = TRUE))
  for (kind in c("dot", "concat", "additive")) for (use_scale in c(TRUE, FALSE)) {
    sw <- score_weights(kind, use_scale, D)
    make <- function() make_score_layer(kind, use_scale, sw$w, q = q, v = v, k = k)
    check_score_gradients(make, list(q, v, k), mask = mask, causal = TRUE)
    check_score_gradients(make, list(q, v, k))
  }
  # key = value: the value's gradient includes its use as key
  v3 <- rand_array(B, Tv, D)
  make <- function() make_score_layer("additive", TRUE, list(array(c(0.3, -0.5, 0.9), 3)), q = q, v = v3)
  R <- array(rnorm(B * Tq * D), c(B, Tq, D))
  g <- backprop(make(), list(q, v3), mask = mask, grad_output = R)
  expect_length(g$grads$inputs, 2L)
  num <- fd_grad(function(x) sum(make()(list(q, x), mask = mask) * R), v3)
  expect_lt(rel_err(g$grads$inputs[[2]], num), 1e-7)
  # named inputs give named gradients
  g <- backprop(make(), list(query = q, value = v3), grad_output = R)
  expect_named(g$grads$inputs, c("query", "value"))
})

# ---- dropout ---------------------------------------------------------------------------

test_that("dropout acts on the weights only in training, reproducibly, with its backward", {
  set.seed(31)
  q <- rand_array(2, 6, 4); v <- rand_array(2, 7, 3); k <- rand_array(2, 7, 4)
  make <- function() {
    l <- layer_attention(use_scale = TRUE, dropout = 0.4, seed = 7, dtype = "float64")
    l$build(list(dim(q), dim(v), dim(k)))
    set_weights(l, list(0.6))
    l
  }
  a <- make()
  inf <- a(list(q, v, k), return_attention_scores = TRUE)
  ref <- ref_score_attention(q, v, k, scale = 0.6)
  expect_lt(rel_err(inf$scores, ref$scores), 1e-12)
  t1 <- a(list(q, v, k), training = TRUE, return_attention_scores = TRUE)
  t2 <- a(list(q, v, k), training = TRUE, return_attention_scores = TRUE)
  kept <- t1$scores != 0
  expect_true(mean(!kept) > 0.2 && mean(!kept) < 0.6)
  expect_equal(t1$scores[kept], ref$scores[kept] / 0.6)  # inverted dropout of the weights
  w <- t1$scores
  out <- array(0, c(2, 6, 3))
  for (b in 1:2) out[b, , ] <- mm(w[b, , ], v[b, , ])
  expect_equal(t1$output, out)
  expect_false(identical(t1$scores, t2$scores))           # a new mask per training call
  expect_identical(make()(list(q, v, k), training = TRUE), t1$output)  # same seed, same first call
  set.seed(5); l1 <- layer_attention(dropout = 0.5, dtype = "float64")
  set.seed(5); l2 <- layer_attention(dropout = 0.5, dtype = "float64")
  expect_identical(l1(list(q, v, k), training = TRUE), l2(list(q, v, k), training = TRUE))
  # backward with the forward's mask, against differences of fresh layers (counter 1 each)
  check_score_gradients(make, list(q, v, k), mask = list(NULL, matrix(c(rep(TRUE, 12), FALSE, TRUE), 2)),
                        training = TRUE)
  # additive attention takes its seed through `...`
  ad <- layer_additive_attention(dropout = 0.3, seed = 9)
  expect_identical(ad$seed, 9L)
  expect_identical(get_config(ad)$seed, 9L)
})

# ---- models ----------------------------------------------------------------------------

test_that("implicit masks from embeddings flow in; models train and round-trip through files", {
  set.seed(41)
  qi <- keras_input(shape = 5, dtype = "int32"); vi <- keras_input(shape = 6, dtype = "int32")
  emb <- layer_embedding(input_dim = 9, output_dim = 4, mask_zero = TRUE)
  eq <- emb(qi); ev <- emb(vi)
  att <- layer_attention(use_scale = TRUE, score_mode = "concat", dropout = 0.1, name = "att")  # dropout in fit()
  res <- att(list(eq, ev), return_attention_scores = TRUE)
  add <- layer_additive_attention(list(eq, ev, ev), name = "add_att")
  pooled <- layer_global_average_pooling_1d(layer_add(list(res$output, add)))
  out <- layer_dense(pooled, 1)
  probe <- keras_model(list(qi, vi), list(res$output, res$scores, add))
  xq <- matrix(sample(0:8, 8 * 5, TRUE), 8); xv <- matrix(sample(1:8, 8 * 6, TRUE), 8)
  xq[1, 4:5] <- 0; xv[2, 5:6] <- 0; xv[3, 1] <- 0
  p <- predict(probe, list(xq, xv), verbose = 0)
  table <- get_weights(emb)[[1]]
  lookup <- function(ids) aperm(array(table[ids + 1, ], c(dim(ids), 4)), c(1, 2, 3))
  qm <- xq != 0; vm <- xv != 0
  w <- get_weights(att)
  ref <- ref_score_attention(lookup(xq), lookup(xv), mode = "concat", scale = w[[1]], cw = w[[2]], qmask = qm,
                             vmask = vm)
  expect_lt(rel_err(p[[1]], ref$output), 1e-5)
  expect_lt(rel_err(p[[2]], ref$scores), 1e-5)
  ref_add <- ref_score_attention(lookup(xq), lookup(xv), mode = "additive", scale = as.vector(get_weights(add_att <-
    get_layer(probe, "add_att"))[[1]]), qmask = qm, vmask = vm)
  expect_lt(rel_err(p[[3]], ref_add$output), 1e-5)

  model <- keras_model(list(qi, vi), out)
  compile(model, optimizer = optimizer_adam(0.05), loss = "mse")
  y <- matrix(rnorm(8), 8)
  before <- get_weights(model)
  h <- fit(model, list(xq, xv), y, epochs = 25, batch_size = 4, verbose = 0)
  expect_lt(h$metrics$loss[25], 0.5 * h$metrics$loss[1])
  changed <- mapply(function(a, b) !identical(a, b), before, get_weights(model))
  expect_true(all(changed))  # every weight trains, the attention scales included
  pred <- predict(model, list(xq, xv), verbose = 0)
  f <- tempfile(fileext = ".rds")
  h5 <- tempfile(fileext = ".weights.h5")
  on.exit(unlink(c(f, h5)), add = TRUE)
  save_model(model, f)
  again <- load_model(f)
  expect_identical(predict(again, list(xq, xv), verbose = 0), pred)
  expect_identical(class(get_layer(again, "att"))[1], "Attention")
  skip_if_not_installed("hdf5r")
  save_model_weights(model, h5)
  fresh <- keras_model(list(qi, vi), out)
  set_weights(fresh, lapply(get_weights(fresh), function(x) x * 0))
  load_model_weights(fresh, h5)
  expect_identical(get_weights(fresh), get_weights(model))
  file <- hdf5r::H5File$new(h5, mode = "r")
  on.exit(file$close_all(), add = TRUE)
  expect_identical(file[["layers/attention/vars/0"]]$dims, integer(0))  # scalars as Keras writes them
  expect_identical(file[["layers/attention/vars/1"]]$dims, integer(0))
  expect_identical(file[["layers/additive_attention/vars/0"]]$dims, 4L)
})

test_that("symbolic calls give Keras's shapes; sequential models attend over the previous output", {
  q <- keras_input(shape = c(5, 4)); v <- keras_input(shape = c(NA, 3)); k <- keras_input(shape = c(NA, 4))
  res <- layer_attention()(list(q, v, k), return_attention_scores = TRUE)
  expect_identical(res$output$shape, c(NA, 5L, 3L))
  expect_identical(res$scores$shape, c(NA, 5L, NA))
  expect_identical(layer_additive_attention(list(q, k))$shape, c(NA, 5L, 4L))
  expect_identical(layer_attention()$compute_output_shape(list(c(NA, 5, 4), c(NA, 7, 2), c(NA, 7, 4))),
                   c(NA, 5L, 2L))
  seq <- keras_model_sequential(input_shape = c(6, 4)) |> layer_additive_attention(dtype = "float64")
  x <- rand_array(2, 6, 4)
  expect_equal(predict(seq, x, verbose = 0),
               ref_score_attention(x, x, x, "additive", as.vector(get_weights(seq)[[1]]))$output, tolerance = 1e-6)
  expect_output(summary(seq), "AdditiveAttention")
})

test_that("results do not depend on the number of threads", {
  set.seed(51)
  q <- rand_array(16, 40, 24); v <- rand_array(16, 50, 24)
  for (kind in c("dot", "concat", "additive")) {
    layer <- make_score_layer(kind, TRUE, score_weights(kind, TRUE, 24)$w, dtype = "float32", q = q, v = v)
    run <- function(n) {
      old <- set_num_threads(n)
      on.exit(set_num_threads(old))
      list(layer(list(q, v), return_attention_scores = TRUE),
           backprop(layer, list(q, v), grad_output = q)$grads)
    }
    expect_identical(run(1), run(2), label = kind)
  }
})

# ---- bad input ---------------------------------------------------------------------------

test_that("bad inputs, masks and arguments give errors naming the argument", {
  q <- rand_array(2, 3, 4); v <- rand_array(2, 5, 4)
  att <- layer_attention()
  expect_arg_error(att(q), "inputs")
  expect_arg_error(att(list(q)), "inputs")
  expect_arg_error(att(list(q, v, v, v)), "inputs")
  expect_arg_error(att(list(q, rand_array(2, 5, 3))), "value")                    # dot needs D on the key
  expect_arg_error(att(list(q, v, rand_array(2, 5, 3))), "key")
  expect_arg_error(att(list(q, v, rand_array(2, 4, 4))), "key")                   # key and value lengths
  expect_arg_error(att(list(q, rand_array(3, 5, 4))), "value")                    # batch sizes
  expect_arg_error(att(list(q, matrix(1, 2, 4))), "value")
  expect_arg_error(att(list(q, array(NA_real_, c(2, 5, 4)))), "value")
  expect_arg_error(att(list(q, array(1e39, c(2, 5, 4)))), "value")                # beyond float32
  expect_arg_error(att(list(q, v), mask = matrix(TRUE, 2, 3)), "mask")
  expect_arg_error(att(list(q, v), mask = list(matrix(TRUE, 2, 4), NULL)), "mask[[1]]")
  expect_arg_error(att(list(q, v), mask = list(NULL, matrix(TRUE, 2, 3))), "mask[[2]]")
  expect_arg_error(att(list(q, v), mask = list(NULL, matrix(2, 2, 5))), "mask[[2]]")
  expect_arg_error(att(list(q, v), use_causal_mask = NA), "use_causal_mask")
  expect_arg_error(att(list(q, v), return_attention_scores = "yes"), "return_attention_scores")
  expect_arg_error(att(list(q, v), training = 1), "training")
  expect_error(att(list(q, v), attention_mask = TRUE), "attention_mask", class = "multihead_error_argument")
  expect_arg_error(layer_attention(score_mode = "add"), "score_mode")
  expect_arg_error(layer_attention(dropout = 1), "dropout")
  expect_arg_error(layer_attention(dropout = -0.1), "dropout")
  expect_arg_error(layer_additive_attention(dropout = 1.5), "dropout")
  expect_arg_error(layer_attention(use_scale = "no"), "use_scale")
  expect_arg_error(layer_attention(seed = 1.5), "seed")
  expect_arg_error(layer_additive_attention(seed = "a"), "seed")
  expect_error(layer_additive_attention(score_mode = "dot"), "score_mode", class = "multihead_error_argument")
  ad <- layer_additive_attention()
  ad(list(q, v))
  expect_arg_error(ad(list(rand_array(2, 3, 2), rand_array(2, 5, 2))), "query")   # built for 4 features
  expect_arg_error(backprop(ad, list(q, v), grad_output = array(1, c(2, 3, 2))), "grad_output")
  expect_arg_error(backprop(ad, list(q, v)), "grad_output")
  expect_error(att(list(q * 1e20, v * 1e20)), "overflow", class = "multihead_error")
  expect_arg_error(layer_attention()$build(list(c(NA, 3, 4))), "input_shape")
})

test_that("the output mask is the query mask (with scores: the output's only)", {
  q <- rand_array(2, 3, 4); v <- rand_array(2, 5, 4)
  qm <- matrix(c(TRUE, FALSE, TRUE, TRUE, TRUE, FALSE), 2); vm <- matrix(TRUE, 2, 5)
  att <- layer_attention()
  fw <- function(masks, args = list()) layer_protocol(att)$forward(layer_state(att), list(q, v), args, FALSE, masks)
  expect_identical(fw(list(qm, vm))$mask, qm)
  expect_null(fw(list(NULL, vm))$mask)
  expect_null(fw(NULL)$mask)
  expect_identical(fw(list(qm, NULL, vm), list(return_attention_scores = TRUE))$mask, list(output = qm, scores = NULL))
})
