# The core's cache of large work buffers (src/core/large_buffers.h): reused
# memory must never change a result. With poisoning on, every large buffer
# handed out is filled with NaN bytes first, so a kernel that read memory it
# had not written (or relied on fresh pages being zero) would change the
# output or gradients below.

cache <- function(action = "stats") multihead:::cpp_large_buffer_cache(action)

# Shapes whose projections, k^T tiles (S = 200 is not a multiple of the
# 128-key tile: padded) and gradients are all 4 MiB or more in float64.
large_case <- function(dtype) {
  set.seed(11)
  B <- 8L; T <- 300L; S <- 200L; E <- 24L; N <- 4L; H <- 64L
  q <- rand_array(B, T, E); v <- rand_array(B, S, E)
  w <- random_weights(E, E, E, N, H, H, E, use_gate = TRUE)
  mha <- layer_multi_head_attention(num_heads = N, key_dim = H, use_gate = TRUE, dtype = dtype)
  mha$build(dim(q), dim(v))
  set_weights(mha, w$ordered)
  kmask <- matrix(TRUE, B, S); kmask[2, 150:200] <- FALSE
  list(mha = mha, q = q, v = v, w = w, R = rand_array(B, T, E), kmask = kmask, N = N, H = H)
}

run_all <- function(x) {
  list(fwd = x$mha(x$q, x$v, use_causal_mask = TRUE),
       bwd = backprop(x$mha, x$q, x$v, grad_output = x$R, value_mask = x$kmask),
       scores = x$mha(x$q, x$v, return_attention_scores = TRUE),
       bwd_scores = backprop(x$mha, x$q, x$v, grad_output = x$R, return_attention_scores = TRUE))
}

test_that("reused and poisoned large buffers give the same bits as fresh memory", {
  on.exit(cache("poison_off"), add = TRUE)
  for (dtype in c("float64", "float32")) {
    x <- large_case(dtype)
    cache("clear")
    fresh <- run_all(x)
    hits0 <- cache()$hits
    again <- run_all(x)
    expect_gt(cache()$hits, hits0)  # the second round reused mappings
    expect_identical(again, fresh)
    cache("poison_on")
    poisoned <- run_all(x)
    cache("clear")
    poisoned_fresh <- run_all(x)
    cache("poison_off")
    expect_identical(poisoned, fresh)
    expect_identical(poisoned_fresh, fresh)
    expect_false(anyNA(unlist(poisoned)))
  }
})

test_that("results through the cache match the plain-R reference", {
  x <- large_case("float64")
  cache("clear")
  cache("poison_on")
  on.exit(cache("poison_off"), add = TRUE)
  run_all(x)  # fill the cache with poisoned, used mappings
  got <- backprop(x$mha, x$q, x$v, grad_output = x$R, value_mask = x$kmask)
  ref <- ref_mha_loss_grads(x$q, x$v, weights = x$w$ref, num_heads = x$N, key_dim = x$H,
                            value_mask = x$kmask, use_gate = TRUE, R = x$R)
  expect_lt(rel_err(got$output, ref$output), 1e-10)
  expect_lt(rel_err(got$grads$query, ref$grads$query), 1e-10)
  expect_lt(rel_err(got$grads$value, ref$grads$value + ref$grads$key), 1e-10)
})

test_that("the cache stays within its limits", {
  x <- large_case("float64")
  for (i in 1:3) run_all(x)
  s <- cache()
  expect_lte(s$blocks, 16)
  expect_lte(s$bytes, 128 * 2^20)
  expect_equal(s$bytes %% (2 * 2^20), 0)
  cache("clear")
  expect_identical(cache()[c("blocks", "bytes")], list(blocks = 0, bytes = 0))
  expect_error(cache("nonsense"), "unknown action")
})

test_that("set_buffer_cache_size() bounds the kept bytes, restores the default, never changes results", {
  old <- set_buffer_cache_size(NULL)
  on.exit(set_buffer_cache_size(old), add = TRUE)
  expect_identical(get_buffer_cache_size(), 128 * 2^20)  # the documented default
  x <- large_case("float64")
  cache("clear")
  want <- run_all(x)
  expect_gt(cache()$bytes, 0)

  # 0 keeps nothing: lowering the limit unmaps what is kept at once
  expect_identical(withVisible(set_buffer_cache_size(0))$visible, FALSE)
  expect_identical(get_buffer_cache_size(), 0)
  expect_identical(cache()$bytes, 0)
  hits0 <- cache()$hits
  expect_identical(run_all(x), want)
  expect_identical(cache()$bytes, 0)
  expect_identical(cache()$hits, hits0)  # nothing could be reused

  # a limit below one buffer keeps none either; a large one keeps more than the default
  set_buffer_cache_size(2^20)
  run_all(x)
  expect_identical(cache()$bytes, 0)
  set_buffer_cache_size(NULL)
  run_all(x)
  expect_lte(cache()$bytes, 128 * 2^20)
  expect_identical(set_buffer_cache_size(16 * 2^20), 128 * 2^20)
  run_all(x)
  kept_small <- cache()$bytes
  expect_lte(kept_small, 16 * 2^20)
  set_buffer_cache_size(512 * 2^20)
  run_all(x)
  expect_gt(cache()$bytes, kept_small)
  expect_lte(cache()$bytes, 512 * 2^20)
  expect_identical(run_all(x), want)
  # lowering to 8 MiB unmaps down to it
  set_buffer_cache_size(8 * 2^20)
  expect_lte(cache()$bytes, 8 * 2^20)
})

test_that("flash backward with few heads (partial dQs per key chunk) reads no unwritten memory", {
  # B * N = 2 < 4 (batch, head) tasks: the backward splits the keys into two
  # chunks; chunk 0 accumulates in dq, chunk 1 in an 8 MiB partial buffer
  # (B * N * T * H doubles) that it must zero itself. Keys past 128 are masked
  # for the second sample, so its chunk-1 partial is never written by a tile.
  set.seed(23)
  B <- 2L; T <- 2048L; S <- 300L; E <- 8L; N <- 1L; H <- 256L
  q <- rand_array(B, T, E); v <- rand_array(B, S, E)
  kmask <- matrix(TRUE, B, S); kmask[2, 129:S] <- FALSE
  R <- rand_array(B, T, E)
  mha <- layer_multi_head_attention(num_heads = N, key_dim = H, dtype = "float64")
  mha$build(dim(q), dim(v))
  run <- function() {
    backprop(mha, q, v, grad_output = R, value_mask = kmask)
  }
  on.exit(cache("poison_off"), add = TRUE)
  cache("clear")
  fresh <- run()
  cache("poison_on")
  poisoned <- run()
  poisoned_again <- run()  # reused, re-poisoned mappings
  cache("poison_off")
  expect_identical(poisoned, fresh)
  expect_identical(poisoned_again, fresh)
  expect_false(anyNA(unlist(fresh)))
  mat <- layer_multi_head_attention(num_heads = N, key_dim = H, dtype = "float64",
                                    flash_attention = FALSE)
  mat$build(dim(q), dim(v))
  set_weights(mat, get_weights(mha))
  ref <- backprop(mat, q, v, grad_output = R, value_mask = kmask)
  expect_lt(rel_err(fresh$output, ref$output), 1e-12)
  expect_lt(rel_err(fresh$grads$query, ref$grads$query), 1e-12)
  expect_lt(rel_err(fresh$grads$value, ref$grads$value), 1e-12)
  expect_lt(rel_err(fresh$grads$key, ref$grads$key), 1e-12)
})

test_that("set_buffer_cache_size(): bad values name `bytes`", {
  old <- get_buffer_cache_size()
  on.exit(set_buffer_cache_size(old), add = TRUE)
  expect_error(set_buffer_cache_size(), "`bytes`", class = "multihead_error")
  for (bad in list(NA, NA_real_, NaN, Inf, -1, 1.5, 2^49, "1", TRUE, c(1, 2), numeric(0), matrix(1),
                   list(1), factor(1))) {
    expect_error(set_buffer_cache_size(bad), "`bytes`", class = "multihead_error",
                 info = paste(deparse(bad), collapse = " "))
  }
  expect_identical(get_buffer_cache_size(), old)  # unchanged by the failed calls
})

test_that("result arrays of 4 MiB or more (mapped in before the threads write them) match the reference", {
  # output (4, 128, 1024) and each input gradient are 4 MiB of doubles: the
  # flash path populates them (populate_pages) before filling them
  set.seed(17)
  B <- 4L; T <- 128L; S <- 136L; E <- 1024L; N <- 2L; H <- 8L
  q <- rand_array(B, T, E); v <- rand_array(B, S, E); k <- rand_array(B, S, E)
  w <- random_weights(E, E, E, N, H, H, E)
  R <- rand_array(B, T, E)
  ref <- ref_mha_loss_grads(q, v, k, weights = w$ref, num_heads = N, key_dim = H,
                            use_causal_mask = TRUE, R = R)
  for (threads in c(1L, 2L)) {
    old <- set_num_threads(threads)
    mha <- layer_multi_head_attention(num_heads = N, key_dim = H, dtype = "float64")
    mha$build(dim(q), dim(v), dim(k))
    set_weights(mha, w$ordered)
    expect_gte(length(mha(q, v, k)) * 8, 4 * 2^20)
    out <- mha(q, v, k, use_causal_mask = TRUE)
    got <- backprop(mha, q, v, k, use_causal_mask = TRUE, grad_output = R)
    set_num_threads(old)
    expect_lt(rel_err(out, ref$output), 1e-10)
    expect_identical(got$output, out)
    expect_lt(rel_err(got$grads$query, ref$grads$query), 1e-10)
    expect_lt(rel_err(got$grads$key, ref$grads$key), 1e-10)
    expect_lt(rel_err(got$grads$value, ref$grads$value), 1e-10)
  }
})
