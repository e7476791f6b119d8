# Benchmark of multihead's MultiHeadAttention on the CPU: forward and
# forward+backward (backprop()), median milliseconds, GFLOP/s and peak
# resident memory. FLOPs are counted as ../shared/bench/torch_mha_ref.py counts
# them (dense: the causal mask is not subtracted; forward+backward = 3 x
# forward), so the figures compare directly with its output.
#
# Usage (from the package root, with multihead installed in .libPaths()):
#   Rscript bench/mha.R                         # the standard table, each case in a fresh Rscript
#   Rscript bench/mha.R --B 8 --T 512 --E 512 --H 8 --Kd 64 --threads 2 [--causal] [--mode fwd,fwdbwd]
#   Rscript bench/mha.R --big                   # T = S = 16384 forward+backward peak-memory case
# Options: --lib DIR (library holding multihead), --dtype float32|float64,
#   --min-time SECONDS (timed runs per mode, default 1.5), --flash TRUE|FALSE,
#   --jsonl FILE (append one JSON record per mode), --buffer-cache MIB (the
#   large-buffer cache's size, set_buffer_cache_size(); default 48).
# One case per process: the peak-RSS figure (VmHWM, reset through
# /proc/self/clear_refs after set-up) then belongs to that case alone.

parse_args <- function(argv) {
  a <- list(B = NULL, T = NULL, S = NULL, E = NULL, H = NULL, Kd = NULL, threads = 2L,
            causal = FALSE, mode = "fwd,fwdbwd", dtype = "float32", min_time = 1.5,
            min_reps = 5L, max_reps = 100L, lib = NULL, flash = TRUE, jsonl = NULL, big = FALSE,
            buffer_cache = NULL)
  i <- 1L
  while (i <= length(argv)) {
    key <- sub("^--", "", argv[i])
    key <- gsub("-", "_", key)
    if (key %in% c("causal", "big")) {
      a[[key]] <- TRUE
      i <- i + 1L
      next
    }
    val <- argv[i + 1L]
    a[[key]] <- if (key %in% c("mode", "dtype", "lib", "jsonl")) val else
      if (key == "flash") as.logical(val) else as.numeric(val)
    i <- i + 2L
  }
  a
}

status_kb <- function(field) {
  line <- grep(paste0("^", field, ":"), readLines("/proc/self/status"), value = TRUE)
  as.numeric(strsplit(trimws(sub(".*:", "", line)), " +")[[1]][1])
}
reset_hwm <- function() {
  tryCatch({ cat("5", file = "/proc/self/clear_refs"); TRUE }, error = function(e) FALSE)
}

flops_fwd <- function(B, T, S, E, H, Kd) {
  2 * B * T * E * H * Kd + 2 * B * S * E * H * Kd + 2 * B * S * E * H * Kd +
    2 * B * H * T * S * Kd + 2 * B * H * T * S * Kd + 2 * B * T * H * Kd * E
}

# Seconds on a microsecond clock (proc.time()'s elapsed counts whole
# milliseconds here, which put every median on a whole millisecond).
now <- function() as.numeric(Sys.time())

time_it <- function(f, a) {
  if (!isTRUE(a$big)) f()  # warm-up
  ts <- numeric(0)
  start <- now()
  while (length(ts) < a$max_reps &&
         (length(ts) < a$min_reps || now() - start < a$min_time)) {
    if (isTRUE(a$big)) gc()  # one call's results at a time
    t0 <- now()
    f()
    ts <- c(ts, now() - t0)
  }
  ts
}

run_case <- function(a) {
  if (!is.null(a$lib)) .libPaths(c(a$lib, .libPaths()))
  suppressPackageStartupMessages(library(multihead))
  set_num_threads(a$threads)
  if (!is.null(a$buffer_cache)) set_buffer_cache_size(a$buffer_cache * 2^20)
  B <- a$B; T <- a$T; S <- if (is.null(a$S)) T else a$S; E <- a$E; H <- a$H; Kd <- a$Kd
  set.seed(1)
  q <- array(rnorm(B * T * E), c(B, T, E))
  k <- array(rnorm(B * S * E), c(B, S, E))
  v <- array(rnorm(B * S * E), c(B, S, E))
  R <- array(rnorm(B * T * E), c(B, T, E))
  mha <- layer_multi_head_attention(num_heads = H, key_dim = Kd, dtype = a$dtype,
                                    flash_attention = if (isTRUE(a$flash)) NULL else FALSE)
  mha$build(dim(q), dim(v), dim(k))
  fl <- flops_fwd(B, T, S, E, H, Kd)
  gc(full = TRUE)
  can_reset <- reset_hwm()
  base <- status_kb("VmRSS")
  for (mode in strsplit(a$mode, ",")[[1]]) {
    if (mode == "fwd") {
      step <- function() mha(q, v, k, use_causal_mask = a$causal)
      mult <- 1
    } else {
      step <- function() backprop(mha, q, v, k, use_causal_mask = a$causal, grad_output = R)
      mult <- 3
    }
    ts <- time_it(step, a)
    hwm <- status_kb("VmHWM")
    med <- stats::median(ts)
    rec <- list(impl = if (isTRUE(a$flash)) "multihead-flash" else "multihead-materialised",
                mode = mode, dtype = a$dtype, threads = a$threads, causal = a$causal,
                B = B, T = T, S = S, E = E, H = H, Kd = Kd, flops = fl * mult, reps = length(ts),
                median_ms = med * 1e3, min_ms = min(ts) * 1e3, gflops = fl * mult / med / 1e9,
                rss_base_MB = base / 1024, peak_rss_MB = hwm / 1024, hwm_reset = can_reset)
    cat(sprintf(paste0("%-22s %-7s %s thr=%d causal=%d B=%d T=%d S=%d E=%d H=%d Kd=%d: ",
                       "median %9.2f ms  (%6.1f GFLOP/s, n=%d)  peakRSS %7.1f MB (base %.1f)\n"),
                rec$impl, mode, a$dtype, a$threads, as.integer(a$causal), B, T, S, E, H, Kd,
                rec$median_ms, rec$gflops, rec$reps, rec$peak_rss_MB, rec$rss_base_MB))
    if (!is.null(a$jsonl)) {
      json <- paste0("{", paste(sprintf("\"%s\": %s", names(rec), vapply(rec, function(x)
        if (is.character(x)) sprintf("\"%s\"", x) else if (is.logical(x)) tolower(x) else format(x, digits = 8),
        "")), collapse = ", "), "}")
      cat(json, "\n", file = a$jsonl, append = TRUE, sep = "")
    }
  }
}

# The standard table: every shape, causal and not, 1 and 2 threads; each case
# in a fresh Rscript so that its peak RSS is its own.
standard_shapes <- list(c(B = 32, T = 128, E = 256, H = 8, Kd = 32),
                        c(B = 8, T = 512, E = 512, H = 8, Kd = 64),
                        c(B = 2, T = 2048, E = 256, H = 4, Kd = 64),
                        c(B = 1, T = 4096, E = 128, H = 2, Kd = 64))

main <- function() {
  argv <- commandArgs(trailingOnly = TRUE)
  a <- parse_args(argv)
  if (isTRUE(a$big)) {
    a$B <- 1; a$T <- 16384; a$E <- 128; a$H <- 2; a$Kd <- 64; a$mode <- "fwdbwd"
    a$min_reps <- 1; a$max_reps <- 3; a$min_time <- 0
    return(run_case(a))
  }
  if (!is.null(a$B)) return(run_case(a))
  script <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
  rscript <- file.path(R.home("bin"), "Rscript")
  for (shape in standard_shapes) for (causal in c(FALSE, TRUE)) for (thr in c(1, 2)) {
    args <- c(script, sprintf("--%s %d", names(shape), shape), "--threads", thr,
              if (causal) "--causal", "--min-time", a$min_time, "--dtype", a$dtype,
              if (!is.null(a$lib)) c("--lib", a$lib), if (!is.null(a$jsonl)) c("--jsonl", a$jsonl))
    system2(rscript, unlist(strsplit(args, " ")))
  }
  args <- c(script, "--big", if (!is.null(a$lib)) c("--lib", a$lib),
            if (!is.null(a$jsonl)) c("--jsonl", a$jsonl))
  system2(rscript, args)
}

main()
