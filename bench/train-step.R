# Whole-model benchmarks of multihead (float32): the keras3-style training
# step, predict() and grouped-query attention, one case per process; the
# PyTorch side is bench/train_step_torch.py and bench/compare-models.sh runs
# both in alternating rounds.
#
# Cases (--case):
#   a        encoder block: input (32, 128, 256) -> multi-head self-attention
#            (8 heads of 32) -> add -> layer norm -> dense 512 relu -> dense
#            256 -> add -> layer norm -> global average pooling -> dense 1;
#            MSE, Adam; fit() time per training step
#   b        4 such blocks at B = 8, T = 512, E = 512, 8 heads of 64, ff 2048
#   c        one block at B = 64, T = 16, E = 32, 2 heads of 16, ff 64
#   d        predict() of model a on --n-predict sequences (10 000), batch 128
#   gqa      layer_group_query_attention(head_dim = E / 8, num_query_heads = 8,
#            num_key_value_heads = 2) forward and forward+backward (backprop())
#            at --B --T --E [--causal]
# Every case reports the process's peak resident memory (VmHWM at the end)
# and its resident memory after set-up (VmRSS before the warm-up); for d the
# peak is reset after set-up (/proc/self/clear_refs), so it is predict()'s own
# on top of the 2.6 GB input array.
#
# Timing: a training case runs fit(epochs = 1) over --steps batches
# (a: 4, b: 1, c: 20 by default) once as a warm-up, then again until
# --min-time seconds have passed (at least --min-reps calls); the figure is
# the median over calls of the call's time / steps (so fit()'s own per-call
# cost is in it, as it is in every Keras epoch). gqa: mha.R's loop (calls
# for --min-time seconds, at least 5, median). d: one timed call after a
# warm-up predict() of 256 sequences.
#
# Usage: Rscript bench/train-step.R --case a [--lib DIR] [--threads 2]
#          [--min-time 3] [--steps N] [--n-predict 10000] [--jsonl FILE]
#          [--tag TEXT] [--B --T --E --causal (gqa)]

source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))),
                 "bench-setup.R"))  # args, opt(), lib; multihead loaded
flag <- function(name) paste0("--", name) %in% args
case <- opt("case", "a")
threads <- as.integer(opt("threads", 2))
min_time <- as.numeric(opt("min-time", 3))
min_reps <- as.integer(opt("min-reps", if (case == "gqa") 5 else 2))
jsonl <- opt("jsonl", NULL)
tag <- opt("tag", "")
set_num_threads(threads)

# Seconds on a microsecond clock.
now <- function() as.numeric(Sys.time())
status_kb <- function(field) {
  line <- grep(paste0("^", field, ":"), readLines("/proc/self/status"), value = TRUE)
  as.numeric(strsplit(trimws(sub(".*:", "", line)), " +")[[1]][1])
}
reset_hwm <- function() tryCatch({ cat("5", file = "/proc/self/clear_refs"); TRUE }, error = function(e) FALSE)
write_record <- function(rec) {
  line <- sprintf("%-10s %-8s %-7s %s: median %9.2f ms (n=%d)  peakRSS %7.1f MB (base %.1f)\n",
                  "multihead", rec$case, rec$mode, rec$shape, rec$median_ms, rec$reps,
                  rec$peak_rss_MB, rec$rss_base_MB)
  cat(line)
  if (is.null(jsonl)) return(invisible())
  json <- paste0("{", paste(sprintf("\"%s\": %s", names(rec), vapply(rec, function(x)
    if (is.character(x)) sprintf("\"%s\"", x) else if (is.logical(x)) tolower(x) else format(x, digits = 8),
    "")), collapse = ", "), "}")
  cat(json, "\n", file = jsonl, append = TRUE, sep = "")
}
record <- function(mode, shape, ts, base_kb, extra = list()) {
  c(list(impl = "multihead", case = case, mode = mode, shape = shape, threads = threads, tag = tag,
         reps = length(ts), median_ms = stats::median(ts) * 1e3, min_ms = min(ts) * 1e3,
         max_ms = max(ts) * 1e3, rss_base_MB = base_kb / 1024, peak_rss_MB = status_kb("VmHWM") / 1024,
         load1 = as.numeric(strsplit(readLines("/proc/loadavg"), " ")[[1]][1]),
         omp_wait_policy = Sys.getenv("OMP_WAIT_POLICY")),
    extra)
}
# Calls of f until min_time seconds have passed and at least min_reps calls
# ran (after one warm-up call); seconds per call divided by `per`.
time_loop <- function(f, per = 1, warmup = TRUE) {
  if (warmup) f()
  ts <- numeric(0)
  start <- now()
  while (length(ts) < min_reps || now() - start < min_time) {
    t0 <- now()
    f()
    ts <- c(ts, (now() - t0) / per)
  }
  ts
}

# The encoder model of cases a-d: `blocks` post-norm transformer blocks,
# then pooling and a dense head.
build_model <- function(T, E, H, Kd, ff, blocks) {
  inputs <- keras_input(shape = c(T, E))
  x <- inputs
  for (i in seq_len(blocks)) {
    a <- layer_multi_head_attention(num_heads = H, key_dim = Kd)(x, x)
    x <- layer_layer_normalization(layer_add(list(x, a)))
    f <- x |> layer_dense(ff, activation = "relu") |> layer_dense(E)
    x <- layer_layer_normalization(layer_add(list(x, f)))
  }
  outputs <- x |> layer_global_average_pooling_1d() |> layer_dense(1)
  model <- keras_model(inputs, outputs)
  compile(model, optimizer = "adam", loss = "mse")
  model
}

cases <- list(a = c(B = 32, T = 128, E = 256, H = 8, Kd = 32, ff = 512, blocks = 1, steps = 4),
              b = c(B = 8, T = 512, E = 512, H = 8, Kd = 64, ff = 2048, blocks = 4, steps = 1),
              c = c(B = 64, T = 16, E = 32, H = 2, Kd = 16, ff = 64, blocks = 1, steps = 20))

if (case %in% c("a", "b", "c")) {
  p <- as.list(cases[[case]])
  steps <- as.integer(opt("steps", p$steps))
  set.seed(1)
  model <- build_model(p$T, p$E, p$H, p$Kd, p$ff, p$blocks)
  n <- p$B * steps
  x <- array(rnorm(n * p$T * p$E), c(n, p$T, p$E))
  y <- array(rnorm(n), c(n, 1))
  gc(full = TRUE)
  base <- status_kb("VmRSS")
  ts <- time_loop(function() fit(model, x, y, batch_size = p$B, epochs = 1, verbose = 0, shuffle = FALSE),
                  per = steps)
  write_record(record("train", sprintf("B=%d T=%d E=%d H=%d Kd=%d ff=%d blocks=%d", p$B, p$T, p$E, p$H,
                                       p$Kd, p$ff, p$blocks), ts, base, list(steps = steps)))
} else if (case == "d") {
  p <- as.list(cases$a)
  n <- as.integer(opt("n-predict", 10000))
  set.seed(1)
  model <- build_model(p$T, p$E, p$H, p$Kd, p$ff, p$blocks)
  # 1000 random sequences repeated (drawing 327M normals would take longer
  # than the timed call), in one indexing step (no transient copies)
  m <- min(n, 1000L)
  x <- array(rnorm(m * p$T * p$E), c(m, p$T, p$E))[rep_len(seq_len(m), n), , , drop = FALSE]
  gc(full = TRUE)
  # the peak of predict() itself: VmHWM restarts from here
  hwm_reset <- reset_hwm()
  base <- status_kb("VmRSS")
  predict(model, x[1:256, , , drop = FALSE], batch_size = 128, verbose = 0)
  t0 <- now()
  out <- predict(model, x, batch_size = 128, verbose = 0)
  ts <- now() - t0
  stopifnot(identical(dim(out), c(n, 1L)), all(is.finite(out)))
  write_record(record("predict", sprintf("n=%d B=128 T=%d E=%d", n, p$T, p$E), ts, base,
                      list(n = n, hwm_reset = hwm_reset)))
} else if (case == "gqa") {
  B <- as.integer(opt("B", 32)); T <- as.integer(opt("T", 128)); E <- as.integer(opt("E", 256))
  causal <- flag("causal")
  hd <- E %/% 8L
  set.seed(1)
  q <- array(rnorm(B * T * E), c(B, T, E))
  k <- array(rnorm(B * T * E), c(B, T, E))
  v <- array(rnorm(B * T * E), c(B, T, E))
  R <- array(rnorm(B * T * E), c(B, T, E))
  gqa <- layer_group_query_attention(head_dim = hd, num_query_heads = 8, num_key_value_heads = 2)
  gqa$build(dim(q), dim(v), dim(k))
  gc(full = TRUE)
  base <- status_kb("VmRSS")
  shape <- sprintf("B=%d T=%d E=%d Nq=8 Nkv=2 hd=%d causal=%d", B, T, E, hd, as.integer(causal))
  for (mode in c("fwd", "fwdbwd")) {
    step <- if (mode == "fwd") function() gqa(q, v, k, use_causal_mask = causal) else
      function() backprop(gqa, q, v, k, use_causal_mask = causal, grad_output = R)
    ts <- time_loop(step)
    write_record(record(mode, shape, ts, base, list(causal = causal)))
  }
} else {
  stop("--case must be a, b, c, d or gqa")
}
