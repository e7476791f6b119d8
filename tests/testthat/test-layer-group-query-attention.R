# layer_group_query_attention(): against real Keras 3.15.1 (fixtures gqa,
# gqa_mqa), a plain-R reference written here, multi-head attention with the
# key/value heads repeated (Keras's definition), finite differences in
# float64 on both kernels, thread-count determinism, fit(), bad input.

keras_case <- function(name) {
  jsonlite::fromJSON(file.path(fixture_dir(), "keras-3.15.1", paste0(name, ".json")),
                     simplifyVector = TRUE, simplifyDataFrame = FALSE, simplifyMatrix = FALSE)
}

with_flash <- function(flash, expr) {
  old <- if (flash) config_enable_flash_attention() else config_disable_flash_attention()
  on.exit(if (old) config_enable_flash_attention() else config_disable_flash_attention())
  force(expr)
}

# Grouped-query attention in plain R, float64: weights as get_weights() gives
# them (query kernel (E, Nq, H), bias (Nq, H), key kernel (Dk, Nkv, H), bias,
# [gate kernel (E, Nq, H), bias,] value kernel (Dv, Nkv, H), bias, output
# kernel (Nq, H, E), bias (E)); allowed(b, t, s) says whether query t may see
# key s. A row with no allowed key has zero probabilities.
gqa_reference <- function(q, v, k, w, Nq, Nkv, H, allowed = function(b, t, s) TRUE, gate = FALSE) {
  B <- dim(q)[1]; T <- dim(q)[2]; S <- dim(v)[2]; E <- dim(q)[3]
  R <- Nq / Nkv
  wi <- 0
  nxt <- function() { wi <<- wi + 1; w[[wi]] }
  Wq <- nxt(); bq <- nxt(); Wk <- nxt(); bk <- nxt()
  if (gate) { Wg <- nxt(); bg <- nxt() }
  Wv <- nxt(); bv <- nxt(); Wo <- nxt(); bo <- nxt()
  O <- dim(Wo)[3]
  out <- array(0, c(B, T, O)); scores <- array(0, c(B, Nq, T, S))
  for (b in seq_len(B)) {
    xq <- matrix(q[b, , ], T); xk <- matrix(k[b, , ], S); xv <- matrix(v[b, , ], S)
    acc <- matrix(bo, T, O, byrow = TRUE)
    for (n in seq_len(Nq)) {
      g <- (n - 1) %/% R + 1
      Q <- xq %*% Wq[, n, ] + matrix(bq[n, ], T, H, byrow = TRUE)
      K <- xk %*% Wk[, g, ] + matrix(bk[g, ], S, H, byrow = TRUE)
      V <- xv %*% Wv[, g, ] + matrix(bv[g, ], S, H, byrow = TRUE)
      L <- Q %*% t(K) / sqrt(H)
      P <- matrix(0, T, S)
      for (t in seq_len(T)) {
        ok <- vapply(seq_len(S), function(s) allowed(b, t, s), logical(1))
        if (!any(ok)) next
        e <- exp(L[t, ok] - max(L[t, ok]))
        P[t, ok] <- e / sum(e)
      }
      scores[b, n, , ] <- P
      ctx <- P %*% V
      if (gate) ctx <- ctx * plogis(xq %*% Wg[, n, ] + matrix(bg[n, ], T, H, byrow = TRUE))
      acc <- acc + ctx %*% Wo[n, , ]
    }
    out[b, , ] <- acc
  }
  list(output = out, scores = scores)
}

new_gqa <- function(..., dtype = "float64", bias_initializer = "random_normal") {
  layer_group_query_attention(..., dtype = dtype, bias_initializer = bias_initializer)
}

test_that("real Keras 3.15.1: outputs and scores of GroupQueryAttention (2 and 1 key/value heads)", {
  for (name in c("gqa", "gqa_mqa")) {
    fx <- keras_case(name)
    cf <- fx$config
    x <- fx_array(fx$inputs$x)
    w <- lapply(fx$weights, fx_array)
    want <- fx_array(fx$expected$outputs[[1]])
    want_scores <- fx_array(fx$expected$attention_scores)
    for (flash in c(TRUE, FALSE)) {
      with_flash(flash, {
        l <- layer_group_query_attention(head_dim = cf$D, num_query_heads = cf$Hq,
                                         num_key_value_heads = cf$Hkv, name = "gqa")
        l$build(dim(x), dim(x))
        expect_identical(names(l$weights), vapply(fx$weights, function(v) v$path, ""))
        expect_identical(lapply(get_weights(l), dim), lapply(w, dim))
        set_weights(l, w)
        got <- l(x, x)
        expect_lte(max(abs(got - want)) / max(1, max(abs(want))), 1e-5)
        expect_lte(max(abs(got - want) / pmax(1, abs(want))), 1e-5)
        sc <- l(x, x, return_attention_scores = TRUE)
        expect_identical(dim(sc$scores), dim(want_scores))
        expect_lte(max(abs(sc$scores - want_scores) / pmax(1, abs(want_scores))), 1e-5)
        # and a functional model of it, as Keras built the fixture
        inp <- keras_input(c(cf$T, cf$E))
        m <- keras_model(inp, l(inp, inp))
        expect_lte(max(abs(m(x) - want) / pmax(1, abs(want))), 1e-5)
      })
    }
  }
})

test_that("get_config() has exactly Keras's keys and values, and from_config() round-trips", {
  fx <- keras_case("gqa")
  tmp <- tempfile()
  dir.create(tmp)
  utils::unzip(file.path(fixture_dir(), "keras-3.15.1", "gqa.keras"), "config.json", exdir = tmp)
  kcfg <- jsonlite::fromJSON(file.path(tmp, "config.json"), simplifyVector = FALSE)
  layer_cfg <- Filter(function(l) l$class_name != "InputLayer", kcfg$config$layers)[[1]]$config
  l <- layer_group_query_attention(head_dim = 4, num_query_heads = 4, num_key_value_heads = 2, name = "gqa")
  cfg <- get_config(l)
  expect_setequal(names(cfg), names(layer_cfg))
  for (nm in c("name", "head_dim", "num_query_heads", "num_key_value_heads", "use_bias", "use_gate",
               "dropout", "seed", "sliding_window", "kernel_regularizer")) {
    expect_equal(cfg[[nm]], layer_cfg[[nm]], label = nm)
  }
  expect_identical(class(l)[1], "GroupedQueryAttention")
  l2 <- layer_group_query_attention(head_dim = 3, num_query_heads = 6, num_key_value_heads = 3, dropout = 0.2,
                                    use_bias = FALSE, seed = 4, use_gate = TRUE, sliding_window = 5,
                                    dtype = "float64")
  back <- from_config(get_config(l2))
  expect_identical(get_config(back), get_config(l2))
  expect_identical(c(back$head_dim, back$num_query_heads, back$num_key_value_heads, back$num_repeats),
                   c(3L, 6L, 3L, 2L))
})

test_that("the h5 groups are Keras's (_query_dense, _key_dense, _value_dense, _output_dense) and load", {
  skip_if_not_installed("hdf5r")
  fx <- keras_case("gqa")
  cf <- fx$config
  inp <- keras_input(c(cf$T, cf$E), name = "x")
  l <- layer_group_query_attention(head_dim = cf$D, num_query_heads = cf$Hq,
                                   num_key_value_heads = cf$Hkv, name = "gqa")
  m <- keras_model(inp, l(inp, inp), name = "gqa")
  load_model_weights(m, file.path(fixture_dir(), "keras-3.15.1", "gqa.weights.h5"))
  want <- fx_array(fx$expected$outputs[[1]])
  x <- fx_array(fx$inputs$x)
  expect_lte(max(abs(m(x) - want) / pmax(1, abs(want))), 1e-5)
  path <- tempfile(fileext = ".weights.h5")
  save_model_weights(m, path)
  f <- hdf5r::H5File$new(path, mode = "r")
  on.exit(f$close_all())
  names_written <- f$ls(recursive = TRUE)$name
  for (g in c("_query_dense", "_key_dense", "_value_dense", "_output_dense")) {
    expect_true(paste0("layers/grouped_query_attention/", g, "/vars/0") %in% names_written, label = g)
  }
  expect_identical(dim(f[["layers/grouped_query_attention/_key_dense/vars/0"]]$read()),
                   rev(c(cf$E, cf$Hkv, cf$D)))
})

test_that("both kernels equal a plain-R reference: masks, causal, sliding window, gate, T != S", {
  set.seed(41)
  B <- 2; T <- 7; S <- 9; E <- 6
  q <- rand_array(B, T, E); v <- rand_array(B, S, 5); k <- rand_array(B, S, 4)
  m3 <- array(runif(B * T * S) < 0.7, c(B, T, S))
  m3[, , 1] <- TRUE  # no fully masked row
  vmask <- matrix(TRUE, B, S); vmask[2, 8:9] <- FALSE
  cases <- list(
    list(layer = list(), call = list(), allowed = function(b, t, s) TRUE),
    list(layer = list(), call = list(attention_mask = m3, value_mask = vmask),
         allowed = function(b, t, s) m3[b, t, s] && vmask[b, s]),
    list(layer = list(sliding_window = 3, use_gate = TRUE), call = list(use_causal_mask = TRUE),
         allowed = function(b, t, s) s <= t && abs(t - s) < 3),
    list(layer = list(use_gate = TRUE), call = list(use_causal_mask = 1),
         allowed = function(b, t, s) s <= t))
  for (heads in list(c(6, 2), c(6, 1), c(4, 4), c(6, 3))) {
    for (cs in cases) {
      for (flash in c(TRUE, FALSE)) {
        with_flash(flash, {
          l <- do.call(new_gqa, c(list(head_dim = 3, num_query_heads = heads[1],
                                       num_key_value_heads = heads[2]), cs$layer))
          res <- do.call(l, c(list(q, v, k), cs$call))
          ref <- gqa_reference(q, v, k, get_weights(l), heads[1], heads[2], 3, cs$allowed,
                               gate = isTRUE(cs$layer$use_gate))
          expect_lt(rel_err(res, ref$output), 1e-12)
          if (!flash) {
            sc <- do.call(l, c(list(q, v, k, return_attention_scores = TRUE), cs$call))$scores
            expect_lt(rel_err(sc, ref$scores), 1e-12)
          }
        })
      }
    }
  }
})

test_that("grouped heads equal multi-head attention with the key/value heads repeated (outputs, gradients)", {
  # Keras's definition: key and value are repeated num_repeats times along the
  # heads axis; their weight gradients are then the sums over each group.
  set.seed(42)
  q <- rand_array(2, 150, 5); v <- rand_array(2, 140, 4)  # crosses the flash tiles
  Nq <- 4; Nkv <- 2; H <- 3; R <- Nq / Nkv
  for (flash in c(TRUE, FALSE)) {
    with_flash(flash, {
      g <- new_gqa(head_dim = H, num_query_heads = Nq, num_key_value_heads = Nkv)
      g$build(dim(q), dim(v))
      m <- layer_multi_head_attention(num_heads = Nq, key_dim = H, dtype = "float64")
      m$build(dim(q), dim(v))
      wg <- get_weights(g)
      rep_heads <- function(a, axis) {  # repeat each head R times along `axis`
        idx <- rep(seq_len(dim(a)[axis]), each = R)
        if (axis == 1) a[idx, , drop = FALSE] else a[, idx, , drop = FALSE]
      }
      wm <- wg
      wm[[3]] <- rep_heads(wg[[3]], 2); wm[[4]] <- rep_heads(wg[[4]], 1)
      wm[[5]] <- rep_heads(wg[[5]], 2); wm[[6]] <- rep_heads(wg[[6]], 1)
      set_weights(m, wm)
      G <- rand_array(2, 150, 5)
      bg <- backprop(g, q, v, grad_output = G, use_causal_mask = TRUE)
      bm <- backprop(m, q, v, grad_output = G, use_causal_mask = TRUE)
      expect_lt(rel_err(bg$output, bm$output), 1e-12)
      expect_lt(rel_err(bg$grads$query, bm$grads$query), 1e-12)
      expect_lt(rel_err(bg$grads$value, bm$grads$value), 1e-12)
      sum_groups <- function(a, axis) {
        if (axis == 1) {
          Reduce(`+`, lapply(seq_len(R), function(r) a[seq(r, by = R, length.out = Nkv), , drop = FALSE]))
        } else {
          Reduce(`+`, lapply(seq_len(R), function(r) a[, seq(r, by = R, length.out = Nkv), , drop = FALSE]))
        }
      }
      wgm <- bm$grads$weights
      expect_lt(rel_err(bg$grads$weights[[1]], wgm[[1]]), 1e-12)
      expect_lt(rel_err(bg$grads$weights[[3]], sum_groups(wgm[[3]], 2)), 1e-12)
      expect_lt(max(abs(bg$grads$weights[[4]] - sum_groups(wgm[[4]], 1))), 1e-10)  # ~0: shift invariance
      expect_lt(rel_err(bg$grads$weights[[5]], sum_groups(wgm[[5]], 2)), 1e-12)
      expect_lt(rel_err(bg$grads$weights[[6]], sum_groups(wgm[[6]], 1)), 1e-12)
      expect_lt(rel_err(bg$grads$weights[[7]], wgm[[7]]), 1e-12)
    })
  }
})

test_that("every gradient matches finite differences in float64 on both kernels (masks, gate, dropout)", {
  set.seed(43)
  q <- rand_array(2, 5, 4); v <- rand_array(2, 6, 3); k <- rand_array(2, 6, 2)
  vmask <- matrix(TRUE, 2, 6); vmask[1, 6] <- FALSE
  R <- array(rnorm(2 * 5 * 4), c(2, 5, 4))
  for (flash in c(TRUE, FALSE)) {
    for (dropout in c(0, 0.3)) {
      with_flash(flash, {
        proto <- new_gqa(head_dim = 2, num_query_heads = 4, num_key_value_heads = 2, use_gate = TRUE,
                         dropout = dropout, seed = 9)
        proto$build(dim(q), dim(v), dim(k))
        w <- get_weights(proto)
        fresh <- function(weights = w) {  # the first training call of each: one dropout mask
          l <- from_config(get_config(proto))
          l$build(dim(q), dim(v), dim(k))
          set_weights(l, weights)
          l
        }
        args <- list(value_mask = vmask, use_causal_mask = TRUE, training = TRUE)
        g <- do.call(backprop, c(list(fresh(), q, v, k), args, list(grad_output = R)))
        loss <- function(qq = q, vv = v, kk = k, weights = w) {
          sum(do.call(fresh(weights), c(list(qq, vv, kk), args)) * R)
        }
        expect_lt(rel_err(g$grads$query, fd_grad(function(x) loss(qq = x), q)), 1e-6)
        expect_lt(rel_err(g$grads$value, fd_grad(function(x) loss(vv = x), v)), 1e-6)
        expect_lt(rel_err(g$grads$key, fd_grad(function(x) loss(kk = x), k)), 1e-6)
        for (i in seq_along(w)) {
          num <- fd_grad(function(x) { w2 <- w; w2[[i]] <- x; loss(weights = w2) }, w[[i]])
          if (i == 4) {  # key bias: zero up to rounding (softmax is shift-invariant)
            expect_lt(max(abs(g$grads$weights[[i]] - num)), 1e-7)
          } else {
            expect_lt(rel_err(g$grads$weights[[i]], num), 1e-6, label = names(g$grads$weights)[i])
          }
        }
        if (dropout > 0) {  # dropout really acted
          g0 <- do.call(backprop, c(list(fresh(), q, v, k), modifyList(args, list(training = FALSE)),
                                    list(grad_output = R)))
          expect_gt(rel_err(g$output, g0$output), 1e-3)
        }
      })
    }
  }
})

test_that("outputs and gradients are bitwise identical for 1 and 2 threads on both kernels", {
  set.seed(44)
  q <- rand_array(3, 300, 8); v <- rand_array(3, 270, 8)
  G <- rand_array(3, 300, 8)
  old <- get_num_threads()
  on.exit(set_num_threads(old))
  for (dtype in c("float32", "float64")) {
    for (flash in c(TRUE, FALSE)) {
      with_flash(flash, {
        l <- layer_group_query_attention(head_dim = 16, num_query_heads = 8, num_key_value_heads = 2,
                                         dtype = dtype, bias_initializer = "random_normal")
        run <- function(n) {
          set_num_threads(n)
          backprop(l, q, v, grad_output = G, use_causal_mask = TRUE)
        }
        expect_identical(run(1), run(2))
      })
    }
  }
})

test_that("a model with grouped-query attention trains with fit() and dropout", {
  set.seed(45)
  inp <- keras_input(c(6, 8))
  h <- layer_group_query_attention(inp, head_dim = 4, num_query_heads = 4, num_key_value_heads = 2,
                                   dropout = 0.1, seed = 1)
  out <- layer_dense(layer_global_average_pooling_1d(h), 1)
  m <- keras_model(inp, out)
  compile(m, optimizer = optimizer_adam(0.01), loss = "mse")
  x <- rand_array(32, 6, 8); y <- matrix(rowMeans(matrix(x, 32)), 32, 1)
  hist <- fit(m, x, y, epochs = 15, batch_size = 8, verbose = 0)
  loss <- hist$metrics$loss
  expect_true(all(is.finite(loss)))
  expect_lt(loss[length(loss)], loss[1] * 0.8)
})

test_that("bad arguments give errors naming the argument", {
  expect_error(layer_group_query_attention(head_dim = 4, num_query_heads = 6, num_key_value_heads = 4),
               "num_query_heads", class = "multihead_error_argument")
  expect_error(layer_group_query_attention(head_dim = 4, num_query_heads = 4),
               "num_key_value_heads", class = "multihead_error_argument")
  expect_error(layer_group_query_attention(head_dim = 0, num_query_heads = 4, num_key_value_heads = 2),
               "head_dim", class = "multihead_error_argument")
  expect_error(layer_group_query_attention(head_dim = 4, num_query_heads = 4, num_key_value_heads = 1.5),
               "num_key_value_heads", class = "multihead_error_argument")
  expect_error(layer_group_query_attention(head_dim = 4, num_query_heads = 4, num_key_value_heads = 2,
                                           flash_attention = TRUE, dropout = 0.1),
               "Dropout is not supported", class = "multihead_error_argument")
  expect_error(layer_group_query_attention(head_dim = 4, num_query_heads = 4, num_key_value_heads = 2,
                                           bogus = 1), "bogus", class = "multihead_error_argument")
  l <- layer_group_query_attention(head_dim = 4, num_query_heads = 4, num_key_value_heads = 2)
  x4 <- array(rnorm(2 * 3 * 4 * 8), c(2, 3, 4, 8))
  expect_error(l(x4, x4), "query_shape", class = "multihead_error_argument")
  x <- array(rnorm(2 * 5 * 8), c(2, 5, 8))
  expect_error(l(x, x, bogus = 2), "GroupedQueryAttention", class = "multihead_error_argument")
  expect_error(l(x, x, attention_mask = array(TRUE, c(2, 5, 4))), class = "multihead_error")
  expect_error(l$compute_output_shape(c(NA, 5, 8), c(NA, 5, 6)), "last dimension",
               class = "multihead_error_shape")
  bad <- x; bad[1] <- NaN
  expect_error(l(bad, x), "query", class = "multihead_error_argument")
})

test_that("a model with grouped-query attention round-trips through save_model()", {
  set.seed(46)
  inp <- keras_input(c(5, 8))
  m <- keras_model(inp, layer_group_query_attention(inp, head_dim = 4, num_query_heads = 4,
                                                    num_key_value_heads = 2, use_gate = TRUE))
  x <- rand_array(2, 5, 8)
  f <- tempfile(fileext = ".rds")
  save_model(m, f)
  m2 <- load_model(f)
  expect_identical(m2(x), m(x))
  expect_identical(class(m2$layers[[length(m2$layers)]])[1], "GroupedQueryAttention")
})
