# The run-time SIMD dispatch: multihead_build_info() reports the path, and
# the portable path (forced with MULTIHEAD_SIMD=portable in a fresh R
# process, since the choice is made once per process) computes the same
# numbers as the default path to float rounding; each path is bitwise the
# same with 1 and 2 threads.

# Outputs and gradients of a representative set of calls, with `threads`
# threads: multi-head attention forward + backward on the flash and the
# materialised paths (float32, and float64 flash), a dense layer, layer
# normalization, and one fit() epoch of a small model (its weights after).
# Self-contained: it is also deparsed into the child process's script.
simd_dispatch_calls <- function(threads) {
  old <- multihead::set_num_threads(threads)
  on.exit(multihead::set_num_threads(old))
  rnd <- function(...) array(stats::rnorm(prod(c(...))), c(...))
  out <- list()
  set.seed(7)
  q <- rnd(2, 70, 48)
  v <- rnd(2, 90, 48)
  for (flash in list(NULL, FALSE)) {
    for (dtype in c("float32", "float64")) {
      if (dtype == "float64" && !is.null(flash)) next
      set.seed(11)
      mha <- multihead::layer_multi_head_attention(num_heads = 3, key_dim = 20, dtype = dtype,
                                                   flash_attention = flash,
                                                   bias_initializer = "random_normal", name = "mha")
      y <- mha(q, v)
      set.seed(12)
      g <- rnd(dim(y))
      key <- paste("mha", if (is.null(flash)) "flash" else "materialised", dtype)
      out[[key]] <- multihead::backprop(mha, query = q, value = v, use_causal_mask = TRUE,
                                        grad_output = g)
    }
  }
  set.seed(13)
  x <- rnd(4, 37, 300)
  d <- multihead::layer_dense(units = 70, activation = "tanh", dtype = "float32",
                              bias_initializer = "random_normal", name = "dense")
  y <- d(x)
  out$dense <- multihead::backprop(d, x, grad_output = rnd(dim(y)))
  ln <- multihead::layer_layer_normalization(dtype = "float32", name = "ln")
  y <- ln(x)
  out$layer_norm <- multihead::backprop(ln, x, grad_output = rnd(dim(y)))
  set.seed(14)
  xs <- rnd(64, 12, 16)
  ys <- matrix(stats::rnorm(64), 64, 1)
  inp <- multihead::keras_input(shape = c(12, 16))
  h <- multihead::layer_multi_head_attention(num_heads = 2, key_dim = 8, name = "fit_mha")(inp, inp)
  h <- multihead::layer_dense(units = 24, activation = "relu", name = "fit_dense")(h)
  h <- multihead::layer_global_average_pooling_1d(name = "fit_pool")(h)
  model <- multihead::keras_model(inp, multihead::layer_dense(units = 1, name = "fit_out")(h))
  multihead::compile(model, optimizer = "adam", loss = "mse")
  multihead::fit(model, xs, ys, batch_size = 16, epochs = 1, verbose = 0, shuffle = FALSE)
  out$fit <- multihead::get_weights(model)
  out
}

# Every numeric leaf of two results, flattened in the same order.
numeric_leaves <- function(x) {
  if (is.list(x)) return(unlist(lapply(x, numeric_leaves), use.names = FALSE))
  if (is.numeric(x)) return(as.numeric(x))
  numeric(0)
}

# simd_dispatch_calls() with 1 and 2 threads and multihead_build_info() in a
# fresh Rscript with the given MULTIHEAD_SIMD value.
run_child <- function(simd_env) {
  script <- tempfile(fileext = ".R")
  res <- tempfile(fileext = ".rds")
  on.exit(unlink(c(script, res)))
  writeLines(c(
    sprintf(".libPaths(%s)", paste(deparse(.libPaths()), collapse = "")),
    "suppressPackageStartupMessages(library(multihead))",
    paste("simd_dispatch_calls <-", paste(deparse(simd_dispatch_calls), collapse = "\n")),
    sprintf("saveRDS(list(info = multihead_build_info(), one = simd_dispatch_calls(1), two = simd_dispatch_calls(2)), %s)",
            deparse(res))), script)
  status <- system2(file.path(R.home("bin"), "Rscript"), c("--vanilla", script),
                    stdout = FALSE, stderr = FALSE, env = paste0("MULTIHEAD_SIMD=", simd_env))
  expect_identical(status, 0L)
  readRDS(res)
}

test_that("multihead_build_info() reports the SIMD path and why it was chosen", {
  info <- multihead_build_info()
  expect_named(info, c("simd", "simd_compiled", "simd_cpu", "simd_forced", "eigen_simd", "openmp",
                       "threads", "eigen_version", "malloc_tuned"))
  expect_true(info$simd %in% c("avx2+fma", "portable"))
  for (f in c("simd_compiled", "simd_cpu", "simd_forced", "openmp")) {
    expect_true(is.logical(info[[f]]) && length(info[[f]]) == 1L && !is.na(info[[f]]), info = f)
  }
  expect_identical(info$simd == "avx2+fma", info$simd_compiled && info$simd_cpu && !info$simd_forced)
  expect_identical(info$simd_forced, Sys.getenv("MULTIHEAD_SIMD") == "portable")
  expect_true(is.character(info$eigen_simd) && length(info$eigen_simd) == 1L)
})

test_that("MULTIHEAD_SIMD=portable forces the portable path; both paths agree to float rounding", {
  default <- run_child("")
  portable <- run_child("portable")
  expect_identical(portable$info$simd, "portable")
  expect_true(portable$info$simd_forced)
  expect_false(default$info$simd_forced)
  expect_identical(default$info$simd_cpu, portable$info$simd_cpu)
  expect_identical(default$info$simd,
                   if (default$info$simd_compiled && default$info$simd_cpu) "avx2+fma" else "portable")
  # other values of the variable are ignored
  expect_identical(run_child("avx512")$info$simd, default$info$simd)

  # each path: bitwise the same with 1 and 2 threads
  expect_identical(default$one, default$two)
  expect_identical(portable$one, portable$two)
  # this process (default path unless the variable is set here) computes the same as its child
  if (Sys.getenv("MULTIHEAD_SIMD") == "") expect_identical(simd_dispatch_calls(2), default$two)

  # the paths against each other, case by case (float32 cases to 1e-5 relative
  # to each case's scale, float64 to 1e-12)
  expect_identical(names(default$one), names(portable$one))
  for (case in names(default$one)) {
    a <- numeric_leaves(default$one[[case]])
    b <- numeric_leaves(portable$one[[case]])
    expect_identical(length(a), length(b))
    expect_true(all(is.finite(a)) && all(is.finite(b)), info = case)
    tol <- if (grepl("float64", case)) 1e-12 else 1e-5
    err <- max(abs(a - b)) / max(1, max(abs(b)))
    expect_lt(err, tol, label = case)
  }
})

test_that("the allocator thresholds are set on glibc unless MULTIHEAD_MALLOC_TUNING=off", {
  glibc <- grepl("linux-gnu", R.version$os, fixed = TRUE)
  child <- function(env) {
    script <- tempfile(fileext = ".R")
    res <- tempfile(fileext = ".rds")
    on.exit(unlink(c(script, res)))
    writeLines(c(sprintf(".libPaths(%s)", paste(deparse(.libPaths()), collapse = "")),
                 "suppressPackageStartupMessages(library(multihead))",
                 # a loop of fresh arrays of one size computes what it should either way
                 "x <- array(seq_len(3e5) / 7, c(300, 1000)); s <- 0",
                 "for (i in 1:20) s <- s + sum(multihead:::cpp_take_rows(x, 300:1, 1L))",
                 sprintf("saveRDS(list(tuned = multihead_build_info()$malloc_tuned, s = s), %s)", deparse(res))),
               script)
    status <- system2(file.path(R.home("bin"), "Rscript"), c("--vanilla", script), stdout = FALSE, stderr = FALSE,
                      env = env)
    expect_identical(status, 0L)
    readRDS(res)
  }
  on <- child("MULTIHEAD_MALLOC_TUNING=")
  off <- child("MULTIHEAD_MALLOC_TUNING=off")
  expect_identical(on$tuned, glibc)
  expect_false(off$tuned)
  expect_equal(on$s, 20 * sum(seq_len(3e5) / 7))
  expect_identical(on$s, off$s)
  expect_identical(multihead_build_info()$malloc_tuned,
                   glibc && !identical(tolower(Sys.getenv("MULTIHEAD_MALLOC_TUNING")), "off"))
})
