# Where fit()'s time goes on the encoder block of bench/train-step.R case a
# (B = 32, T = 128, E = 256, 8 heads of 32, ff 512; MSE, Adam; float32):
# Rprof(interval = 0.005) over --steps training steps (after a warm-up
# epoch), then
#   1. summaryRprof's top functions by self and by total time;
#   2. a table of CPU ms per step: rows are the parts of the step (the
#      innermost frame naming a layer's or fit()'s function decides:
#      attention, dense, add (Keras broadcasting, merge), layer norm,
#      pooling, loss, optimizer, batch slicing, fit bookkeeping (callbacks,
#      loss tracker, metrics, logs), graph runner (node dispatch, gradient
#      accumulation)), columns the kind of work (the innermost frame, .Call
#      skipped): the C++ core, conversions (as.double, array, round_float32,
#      cpp_as_dtype, finiteness scans), R's garbage collector, other R code.
# Rprof samples CPU time of the whole process (both threads), so on a
# loaded machine its total is below the elapsed time.
#
# Usage: Rscript bench/profile-fit.R [--lib LIB] [--threads 2] [--steps 12]
#          [--shape B,T,E,heads,key_dim,ff (32,128,256,8,32,512; case c: 64,16,32,2,16,64)]
#          [--out /tmp/profile-fit.out] [--analyze PROFILE.out --steps N]
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))),
                 "bench-setup.R"))  # args, opt(), lib; multihead loaded
threads <- as.integer(opt("threads", 2))
steps <- as.integer(opt("steps", 12))
out <- opt("out", tempfile("profile-fit-", fileext = ".out"))
set_num_threads(threads)

analyze <- opt("analyze", NULL)  # an earlier run's profile file: tables only
if (is.null(analyze)) {
  shape <- as.integer(strsplit(opt("shape", "32,128,256,8,32,512"), ",")[[1]])
  B <- shape[1]; T <- shape[2]; E <- shape[3]
  set.seed(1)
  inputs <- keras_input(shape = c(T, E))
  a <- layer_multi_head_attention(num_heads = shape[4], key_dim = shape[5])(inputs, inputs)
  x <- layer_layer_normalization(layer_add(list(inputs, a)))
  f <- x |> layer_dense(shape[6], activation = "relu") |> layer_dense(E)
  x <- layer_layer_normalization(layer_add(list(x, f)))
  model <- keras_model(inputs, x |> layer_global_average_pooling_1d() |> layer_dense(1))
  compile(model, optimizer = "adam", loss = "mse")
  n <- B * steps
  xs <- array(rnorm(n * T * E), c(n, T, E))
  ys <- array(rnorm(n), c(n, 1))
  fit(model, xs[1:B, , , drop = FALSE], ys[1:B, , drop = FALSE], batch_size = B, epochs = 1, verbose = 0)

  Rprof(out, interval = 0.005, gc.profiling = TRUE)
  t0 <- proc.time()[["elapsed"]]
  fit(model, xs, ys, batch_size = B, epochs = 1, verbose = 0, shuffle = FALSE)
  elapsed <- proc.time()[["elapsed"]] - t0
  Rprof(NULL)
} else {
  out <- analyze
  elapsed <- NA_real_
}
s <- summaryRprof(out)
cat(sprintf("fit(): %d steps, %.1f ms per step (elapsed), %d threads, sampled %.2f s\n\n",
            steps, elapsed / steps * 1e3, threads, s$sampling.time))
cat("Top 20 by self time:\n")
print(utils::head(s$by.self, 20))
cat("\nTop 25 by total time:\n")
print(utils::head(s$by.total, 25))

# ---- every sample gets a part of the step (the innermost frame naming one)
# and a kind of work (its innermost frame, .Call skipped)
parts <- list(
  attention = "^(cpp_mha_.*|mha_.*)$",
  dense = "^(cpp_projection_.*|projection_.*|cpp_dense_call)$",
  `add (broadcast, merge)` = "^(elementwise_merge_.*|merge_.*|cpp_add_forward)$",
  `layer norm` = "^(cpp_layer_norm_.*|layer_norm.*)$",
  pooling = "^(cpp_average_steps_.*|cpp_pool|pool.*)$",
  `loss` = "^(batch_loss|loss_.*|compute_loss.*)$",
  optimizer = "^(optimizer_.*|store_weight|layer_weights_changed|check_grads|model_weight_grads)$",
  `batch slicing` = "^(data_subset|slice_first_axis|model_data|model_input_values|model_check_input|array_epoch_batches)$",
  `fit bookkeeping` = "^(callbacks_call|tracker_update|update_metrics|current_logs|progress_.*|history_.*)$",
  `graph runner` = "^(add_grad|run_graph_forward|run_graph_backward|node_forward|node_backward|train_step|regularization_loss)$")
kinds <- list(
  conversion = paste0("^(as\\.double|as\\.numeric|as\\.vector|array|aperm|dim<-|storage\\.mode<-|round_float32|",
                      "cpp_round_float32|cpp_as_dtype|cpp_all_finite|is\\.finite|all)$"),
  `core (C++)` = "^cpp_.*$")
lines <- readLines(out)[-1]
lines <- lines[nzchar(lines) & !grepl("^#", lines)]
frames_of <- function(line) gsub("\"", "", regmatches(line, gregexpr("\"[^\"]*\"", line))[[1]])
first_match <- function(frames, rules, default) {
  for (fr in frames) for (nm in names(rules)) if (grepl(rules[[nm]], fr)) return(nm)
  default
}
part <- character(length(lines)); kind <- character(length(lines))
for (i in seq_along(lines)) {
  fr <- frames_of(lines[i])
  gc <- length(fr) && fr[1] == "<GC>"
  fr <- fr[!fr %in% c("<GC>", ".Call")]
  part[i] <- first_match(fr, parts, "other")
  kind[i] <- if (gc) "gc" else if (length(fr) && grepl(kinds$conversion, fr[1])) "conversion" else
    if (length(fr) && grepl(kinds$`core (C++)`, fr[1])) "core (C++)" else "R code"
}
interval <- 0.005
tab <- table(factor(part, levels = c(names(parts), "other")), factor(kind, levels = c("core (C++)", "conversion", "gc", "R code")))
tab <- tab[rowSums(tab) > 0, , drop = FALSE]
tab <- tab[order(-rowSums(tab)), , drop = FALSE]
ms <- function(x) round(x * interval / steps * 1e3, 1)
pct <- function(x) round(100 * x / length(lines), 1)
res <- cbind(as.data.frame.matrix(ms(tab)), `total ms` = ms(rowSums(tab)), `total %` = pct(rowSums(tab)))
res <- rbind(res, all = c(ms(colSums(tab)), ms(length(lines)), 100))
cat(sprintf(paste0("\nCPU ms per step by part of the step (rows) and kind of work (columns); %d samples of %.0f ms ",
                   "of CPU time over %d steps:\n"), length(lines), interval * 1e3, steps))
print(res)
if (any(part == "other")) {
  cat("\nInnermost frames of 'other':\n")
  print(utils::head(sort(table(vapply(lines[part == "other"], function(l) frames_of(l)[1], "")),
                         decreasing = TRUE), 15))
}
cat(sprintf("\nprofile file: %s\n", out))
