# Where fit()'s time goes on the encoder block of bench/train-step.R case a
# (B = 32, T = 128, E = 256, 8 heads of 32, ff 512; MSE, Adam; float32):
# Rprof(interval = 0.005) over --steps training steps (after a warm-up
# epoch), then
#   1. summaryRprof's top functions by self and by total time;
#   2. every sample put in one category, by the innermost frame that names
#      one (so an as.double() inside the dense layer's R code counts as a
#      conversion, the dense layer's .Call as dense):
#        attention      MultiHeadAttention's core calls (cpp_mha_*) and its R code
#        dense          Dense layers' core calls (cpp_projection_*, cpp_dense_call)
#        layer norm     cpp_layer_norm_*
#        elementwise    Add's core call, broadcasting, cpp_as_dtype, pooling,
#                       the loss and its gradient
#        conversions    as.double / storage.mode / round_float32 /
#                       cpp_round_float32 / finiteness scans (cpp_all_finite,
#                       is.finite) / array copies (aperm, array, dim<-)
#        optimizer      optimizer_apply and its helpers, store_weight
#        fit overhead   batch slicing, callbacks, loss tracker, metrics,
#                       logs, progress
#        graph runner   the rest of run_graph_forward / run_graph_backward /
#                       node_* / layer dispatch in R
#        gc             R's garbage collector (Rprof's <GC> with gc profiling)
#        other          what is left
# Prints both tables and ms per step for each category.
#
# Usage: Rscript bench/profile-fit.R [--lib LIB] [--threads 2] [--steps 12]
#          [--out /tmp/profile-fit.out]
args <- commandArgs(TRUE)
opt <- function(name, default) {
  i <- match(paste0("--", name), args)
  if (is.na(i)) default else args[i + 1L]
}
lib <- opt("lib", NULL)
if (!is.null(lib)) .libPaths(c(lib, .libPaths()))
suppressPackageStartupMessages(library(multihead))
threads <- as.integer(opt("threads", 2))
steps <- as.integer(opt("steps", 12))
out <- opt("out", tempfile("profile-fit-", fileext = ".out"))
set_num_threads(threads)

B <- 32L; T <- 128L; E <- 256L
set.seed(1)
inputs <- keras_input(shape = c(T, E))
a <- layer_multi_head_attention(num_heads = 8, key_dim = 32)(inputs, inputs)
x <- layer_layer_normalization(layer_add(list(inputs, a)))
f <- x |> layer_dense(512, activation = "relu") |> layer_dense(E)
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

s <- summaryRprof(out)
cat(sprintf("fit(): %d steps, %.1f ms per step (elapsed), %d threads, sampled %.2f s\n\n",
            steps, elapsed / steps * 1e3, threads, s$sampling.time))
cat("Top 20 by self time:\n")
print(utils::head(s$by.self, 20))
cat("\nTop 25 by total time:\n")
print(utils::head(s$by.total, 25))

# ---- categories: the innermost frame that matches a rule decides
rules <- list(
  gc = "^<GC>$",
  conversions = paste0("^(as\\.double|as\\.numeric|storage\\.mode<-|round_float32|cpp_round_float32|",
                       "cpp_all_finite|is\\.finite|all|aperm|aperm\\.default|array|dim<-|as\\.vector|",
                       "unlist|check_finite.*|check_float32.*)$"),
  attention = "^(cpp_mha_.*|mha_.*|.*multi_head_attention.*|.*MultiHeadAttention.*)$",
  dense = "^(cpp_projection_.*|cpp_dense_call|dense_.*|.*einsum_dense.*)$",
  `layer norm` = "^(cpp_layer_norm_.*|layer_norm.*|.*layer_normalization.*)$",
  elementwise = paste0("^(cpp_add_forward|cpp_as_dtype|merge_.*|cpp_average_steps_.*|cpp_pool|pool.*|",
                       "broadcast.*|batch_loss|loss_.*|.*mean_squared.*|mse.*|\\+|-|\\*|/|sweep|rowSums|colSums)$"),
  optimizer = "^(optimizer_.*|adam.*|store_weight|apply_constraint|layer_weights_changed)$",
  `fit overhead` = paste0("^(data_subset|array_epoch_batches|callbacks_call|tracker_update|update_metrics|",
                          "current_logs|progress_.*|new_array_source|model_data|normalize_model_.*|",
                          "check_targets_fit_loss|fit_validation_.*|history_.*|\\[|\\[\\.default)$"),
  `graph runner` = "^(run_graph_forward|run_graph_backward|node_forward|node_backward|train_step|model_weight_grads|regularization_loss|run_layer_forward|protocol_.*)$"
)
lines <- readLines(out)[-1]
lines <- lines[nzchar(lines) & !grepl("^#", lines)]
classify <- function(line) {
  frames <- gsub("\"", "", regmatches(line, gregexpr("\"[^\"]*\"", line))[[1]])
  if (grepl("^<GC>", line)) return("gc")
  for (fr in frames) for (nm in names(rules)) if (grepl(rules[[nm]], fr)) return(nm)
  "other"
}
cats <- vapply(lines, classify, character(1), USE.NAMES = FALSE)
tab <- sort(table(cats), decreasing = TRUE)
interval <- 0.005
res <- data.frame(category = names(tab), samples = as.integer(tab),
                  pct = round(100 * as.integer(tab) / length(cats), 1),
                  ms_per_step = round(as.integer(tab) * interval / steps * 1e3, 1))
cat(sprintf("\nCategories (%d samples of %.0f ms; innermost matching frame decides):\n", length(cats),
            interval * 1e3))
print(res, row.names = FALSE)
other <- vapply(lines[cats == "other"], function(l) {
  sub("^\"([^\"]*)\".*", "\\1", l)
}, character(1), USE.NAMES = FALSE)
if (length(other)) {
  cat("\nInnermost frames of 'other':\n")
  print(utils::head(sort(table(other), decreasing = TRUE), 15))
}
cat(sprintf("\nprofile file: %s\n", out))
