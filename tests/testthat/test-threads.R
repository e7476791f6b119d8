# Thread control, and bitwise-identical results for any thread count on the
# flash and the materialised paths.

# Output and every gradient of one backprop() call with `threads` threads.
run_with_threads <- function(threads, flash, layer_args, call_args, dtype = "float32") {
  old_threads <- set_num_threads(threads)
  on.exit(set_num_threads(old_threads))
  set.seed(42)
  mha <- do.call(layer_multi_head_attention,
                 c(layer_args, list(dtype = dtype, flash_attention = flash, name = "mha",
                                    bias_initializer = "random_normal")))
  out <- do.call(mha, call_args[setdiff(names(call_args), "training")])
  backprop(mha, query = call_args$query, value = call_args$value,
           use_causal_mask = isTRUE(call_args$use_causal_mask), training = call_args$training,
           grad_output = array(rnorm(length(out)), dim(out)))
}

test_that("outputs and gradients are identical with 1 and 2 threads on both paths", {
  set.seed(1)
  # B * N = 2 makes the flash backward split keys into chunks; 300 rows make
  # the projections split into row blocks; T is not a multiple of a tile.
  x <- rand_array(1, 300, 64)
  cases <- list(
    list(layer = list(num_heads = 2, key_dim = 32), call = list(query = x, value = x)),
    list(layer = list(num_heads = 2, key_dim = 32),
         call = list(query = x, value = x, use_causal_mask = TRUE)),
    list(layer = list(num_heads = 3, key_dim = 16, dropout = 0.2, seed = 3),
         call = list(query = rand_array(3, 200, 64), value = rand_array(3, 260, 64), training = TRUE)))
  for (case in cases) {
    for (flash in if (is.null(case$layer$dropout)) c(TRUE, FALSE) else list(NULL, FALSE)) {
      one <- run_with_threads(1, flash, case$layer, case$call)
      two <- run_with_threads(2, flash, case$layer, case$call)
      expect_identical(one, two)
    }
  }
  one <- run_with_threads(1, NULL, cases[[1]]$layer, cases[[1]]$call, dtype = "float64")
  two <- run_with_threads(2, NULL, cases[[1]]$layer, cases[[1]]$call, dtype = "float64")
  expect_identical(one, two)
})

test_that("set_num_threads() validates its argument and returns the old value", {
  old <- get_num_threads()
  on.exit(set_num_threads(old))
  for (bad in list(0, 1.5, NA, "a", -1, c(1, 2))) {
    expect_error(set_num_threads(bad), "`n`", class = "multihead_error_argument")
  }
  expect_identical(get_num_threads(), old)
  expect_identical(set_num_threads(1), old)
  expect_identical(get_num_threads(), 1L)
  expect_identical(set_num_threads(NULL), 1L)
  expect_identical(get_num_threads(), multihead:::default_threads())
})

test_that("the default thread count honours OMP_THREAD_LIMIT and OMP_NUM_THREADS", {
  saved <- Sys.getenv(c("OMP_THREAD_LIMIT", "OMP_NUM_THREADS"), unset = NA)
  on.exit({
    for (v in names(saved)) {
      if (is.na(saved[[v]])) Sys.unsetenv(v) else do.call(Sys.setenv, as.list(saved[v]))
    }
  })
  Sys.unsetenv(c("OMP_THREAD_LIMIT", "OMP_NUM_THREADS"))
  all_cores <- multihead:::default_threads()
  expect_gte(all_cores, 1L)
  Sys.setenv(OMP_NUM_THREADS = "1")
  expect_identical(multihead:::default_threads(), 1L)
  Sys.setenv(OMP_NUM_THREADS = "1,4")  # nested list: the outer level counts
  expect_identical(multihead:::default_threads(), 1L)
  Sys.setenv(OMP_NUM_THREADS = "junk")
  expect_identical(multihead:::default_threads(), all_cores)
  Sys.unsetenv("OMP_NUM_THREADS")
  Sys.setenv(OMP_THREAD_LIMIT = "1")
  expect_identical(multihead:::default_threads(), 1L)
  Sys.setenv(OMP_THREAD_LIMIT = "1000")
  expect_identical(multihead:::default_threads(), all_cores)
})
