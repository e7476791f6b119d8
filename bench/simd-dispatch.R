# Two installed builds of multihead side by side, each case in a fresh Rscript
# per build, the builds alternating within every round: the mha.R shapes
# (forward and forward+backward, flash path, float32, 2 threads), a dense
# layer (forward + backprop) and a small fit(). Prints per case the median ms
# of each build over the rounds and the ratio new / base (median of the
# per-round ratios, with their range). Written for the run-time SIMD dispatch
# (base: the old -mavx2 -mfma build; new: the portable build that dispatches
# to its AVX2 kernels), but any two libraries can be compared.
#
# Usage (from the package root):
#   Rscript bench/simd-dispatch.R --base /tmp/simd-base-lib --new /tmp/simd-lib \
#     [--rounds 5] [--min-time 1] [--threads 2] [--cases mha,dense,fit] [--portable] [--clock cpu]
# --portable adds a third column: the new build with MULTIHEAD_SIMD=portable.
# --clock cpu times the process's CPU time (user + system) instead of the
# wall clock: with --threads 1 on a machine shared with other jobs, that is
# the work each build does, much less disturbed by the others.
# --one LIB CASE (internal): times one case in this process and prints "ms <value> ...".

args <- commandArgs(trailingOnly = TRUE)
opt <- function(name, default) {
  i <- match(paste0("--", name), args)
  if (is.na(i)) default else args[i + 1L]
}
flag <- function(name) paste0("--", name) %in% args

cpu_clock <- identical(opt("clock", "wall"), "cpu")
now <- if (cpu_clock) function() sum(proc.time()[c("user.self", "sys.self")]) else
  function() as.numeric(Sys.time())
# Median seconds of f() over at least 5 runs and min_time seconds (after one
# warm-up call).
time_median <- function(f, min_time) {
  f()
  ts <- numeric(0)
  start <- now()
  while (length(ts) < 5 || (now() - start < min_time && length(ts) < 200)) {
    t0 <- now()
    f()
    ts <- c(ts, now() - t0)
  }
  stats::median(ts)
}

mha_shapes <- list(c(32, 128, 256, 8, 32), c(8, 512, 512, 8, 64), c(2, 2048, 256, 4, 64),
                   c(1, 4096, 128, 2, 64))

# The cases: name -> function(min_time) returning median seconds.
case_fn <- function(case) {
  if (startsWith(case, "mha")) {
    parts <- strsplit(case, "_")[[1]]  # mha_B_T_E_H_Kd_mode
    s <- as.numeric(parts[2:6])
    mode <- parts[7]
    return(function(min_time) {
      set.seed(1)
      B <- s[1]; T <- s[2]; E <- s[3]
      q <- array(rnorm(B * T * E), c(B, T, E))
      R <- array(rnorm(B * T * E), c(B, T, E))
      mha <- layer_multi_head_attention(num_heads = s[4], key_dim = s[5], dtype = "float32")
      mha$build(dim(q), dim(q), dim(q))
      step <- if (mode == "fwd") function() mha(q, q, q) else
        function() backprop(mha, q, q, q, grad_output = R)
      time_median(step, min_time)
    })
  }
  if (case == "dense") {
    return(function(min_time) {
      set.seed(1)
      x <- array(rnorm(64 * 128 * 256), c(64, 128, 256))
      d <- layer_dense(units = 512, activation = "relu", dtype = "float32")
      y <- d(x)
      R <- array(rnorm(length(y)), dim(y))
      time_median(function() backprop(d, x, grad_output = R), min_time)
    })
  }
  if (case == "fit") {
    return(function(min_time) {
      set.seed(1)
      n <- 512
      x <- array(rnorm(n * 32 * 64), c(n, 32, 64))
      y <- matrix(rnorm(n), n, 1)
      inp <- keras_input(shape = c(32, 64))
      h <- layer_multi_head_attention(num_heads = 4, key_dim = 16)(inp, inp)
      h <- layer_layer_normalization()(layer_add()(list(inp, h)))
      h <- layer_dense(units = 128, activation = "relu")(h)
      h <- layer_global_average_pooling_1d()(h)
      out <- layer_dense(units = 1)(h)
      model <- keras_model(inp, out)
      compile(model, optimizer = "adam", loss = "mse")
      time_median(function() fit(model, x, y, batch_size = 64, epochs = 1, verbose = 0,
                                 shuffle = FALSE), min_time)
    })
  }
  stop("unknown case ", case)
}

if (flag("one")) {
  i <- match("--one", args)
  lib <- args[i + 1L]
  case <- args[i + 2L]
  .libPaths(c(lib, .libPaths()))
  suppressPackageStartupMessages(library(multihead))
  set_num_threads(as.integer(opt("threads", "2")))
  sec <- case_fn(case)(as.numeric(opt("min-time", "1")))
  cat(sprintf("ms %.4f simd %s\n", sec * 1e3, multihead_build_info()$simd))
  quit(save = "no")
}

base <- opt("base", NULL)
new <- opt("new", NULL)
if (is.null(base) || is.null(new)) stop("usage: --base LIB --new LIB [--rounds N] ...")
rounds <- as.integer(opt("rounds", "5"))
min_time <- opt("min-time", "1")
threads <- opt("threads", "2")
groups <- strsplit(opt("cases", "mha,dense,fit"), ",")[[1]]
cases <- character(0)
if ("mha" %in% groups)
  for (s in mha_shapes) for (m in c("fwd", "fwdbwd")) cases <- c(cases, paste(c("mha", s, m), collapse = "_"))
cases <- c(cases, intersect(c("dense", "fit"), groups))

script <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
rscript <- file.path(R.home("bin"), "Rscript")
run_one <- function(lib, case, portable = FALSE) {
  env <- if (portable) "MULTIHEAD_SIMD=portable" else "MULTIHEAD_SIMD="
  out <- system2(rscript, c(script, "--one", lib, case, "--min-time", min_time, "--threads", threads,
                           "--clock", opt("clock", "wall")),
                 stdout = TRUE, env = env)
  line <- grep("^ms ", out, value = TRUE)
  if (length(line) != 1L) stop("case ", case, " failed:\n", paste(out, collapse = "\n"))
  as.numeric(strsplit(line, " ")[[1]][2])
}

builds <- c("base", "new", if (flag("portable")) "portable")
res <- array(NA_real_, c(length(cases), length(builds), rounds), list(cases, builds, NULL))
for (r in seq_len(rounds)) {
  for (case in cases) {
    # alternate the order between rounds
    order <- if (r %% 2 == 1) builds else rev(builds)
    for (b in order) {
      res[case, b, r] <- switch(b, base = run_one(base, case), new = run_one(new, case),
                                portable = run_one(new, case, portable = TRUE))
    }
  }
  cat(sprintf("round %d of %d done\n", r, rounds))
}
cat(sprintf("\n%-32s %10s %10s %8s %17s%s\n", "case (median ms over rounds)", "base", "new",
            "new/base", "per-round range", if (flag("portable")) "   portable  port/base" else ""))
for (case in cases) {
  ratio <- res[case, "new", ] / res[case, "base", ]
  line <- sprintf("%-32s %10.2f %10.2f %8.3f   [%.3f, %.3f]", case, stats::median(res[case, "base", ]),
                  stats::median(res[case, "new", ]), stats::median(ratio), min(ratio), max(ratio))
  if (flag("portable"))
    line <- paste0(line, sprintf(" %10.2f %9.3f", stats::median(res[case, "portable", ]),
                                 stats::median(res[case, "portable", ] / res[case, "base", ])))
  cat(line, "\n")
}
