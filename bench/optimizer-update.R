# The optimizer's step: the R rules against the fused C++ rules.
#
#   Rscript bench/optimizer-update.R [--lib LIB] [--rounds 7] [--steps 20]
#                                    [--threads 2]
#
# The weights are those of issue 20's encoder block (input (32, 128, 256) ->
# multi-head attention, 8 heads of 32 -> add -> layer norm -> dense 512 relu
# -> dense 256 -> add -> layer norm -> global average pooling -> dense 1;
# 16 variables, ~0.53M parameters); the gradients are random arrays of their
# shapes (the optimizer does not look at where they come from). For Adam,
# AdamW, SGD with momentum and RMSprop, each round times `steps` calls of
# optimizer_apply() (what fit() calls once per batch: checks, clipping,
# update, slots) on the R rules and on the fused rules, alternating within
# the round; the summary is the median over rounds of ms per step and of the
# ratio R / fused.
#
# A second line isolates what the fused glue's fresh result vectors cost
# (its choice, which keeps R's value semantics): cpp_optimizer_update() as
# optimizer_apply() uses it (fresh weights and slots) against the same core
# call writing into arrays the benchmark owns (cpp_optimizer_update_in_place(),
# which exists for this measurement only).
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))),
                 "bench-setup.R"))  # args, opt(), lib; multihead loaded
rounds <- as.integer(opt("rounds", 7))
steps <- as.integer(opt("steps", 20))
threads <- as.integer(opt("threads", 2))
set_num_threads(threads)

inp <- keras_input(shape = c(128, 256))
att <- layer_multi_head_attention(num_heads = 8, key_dim = 32)(inp, inp)
x <- layer_layer_normalization(layer_add(list(inp, att)))
ff <- x |> layer_dense(512, activation = "relu") |> layer_dense(256)
x <- layer_layer_normalization(layer_add(list(x, ff)))
out <- x |> layer_global_average_pooling_1d() |> layer_dense(1)
model <- keras_model(inp, out)
weights <- get_weights(model)
names(weights) <- sprintf("v%02d", seq_along(weights))
set.seed(1)
grads <- lapply(weights, function(w) {
  g <- w
  g[] <- rnorm(length(w), sd = 1e-2)
  g
})
cat(sprintf("%d variables, %d parameters, %d threads, %d rounds of %d steps\n",
            length(weights), sum(lengths(weights)), threads, rounds, steps))

apply_steps <- function(make, fused) {
  old <- options(multihead.optimizer_fused = fused)
  on.exit(options(old))
  o <- make()
  w <- multihead:::optimizer_apply(o, weights, grads)  # slots exist from here
  gc(FALSE)
  t0 <- proc.time()[["elapsed"]]
  for (i in seq_len(steps)) w <- multihead:::optimizer_apply(o, w, grads)
  1000 * (proc.time()[["elapsed"]] - t0) / steps
}

makers <- list(
  Adam = function() optimizer_adam(1e-3),
  AdamW = function() optimizer_adamw(1e-3, weight_decay = 0.01),
  `SGD momentum` = function() optimizer_sgd(1e-2, momentum = 0.9),
  RMSprop = function() optimizer_rmsprop(1e-3)
)
rows <- list()
for (nm in names(makers)) {
  r <- f <- numeric(rounds)
  for (k in seq_len(rounds)) {
    if (k %% 2 == 1) {
      r[k] <- apply_steps(makers[[nm]], FALSE)
      f[k] <- apply_steps(makers[[nm]], TRUE)
    } else {
      f[k] <- apply_steps(makers[[nm]], TRUE)
      r[k] <- apply_steps(makers[[nm]], FALSE)
    }
  }
  rows[[nm]] <- data.frame(optimizer = nm, r_ms = median(r), fused_ms = median(f), ratio = median(r / f))
}
res <- do.call(rbind, rows)
rownames(res) <- NULL
cat("\noptimizer_apply() per step (median of rounds, ms):\n")
print(res, digits = 3, row.names = FALSE)

# Fresh result vectors against an in-place update of arrays the benchmark
# owns: the Adam core call alone.
upd <- multihead:::cpp_optimizer_update
ws <- unname(weights)
gs <- unname(grads)
params <- list(learning_rate = 1e-3, weight_decay = NULL, alpha = 1e-3, beta_1 = 0.9, beta_2 = 0.999,
               epsilon = 1e-7, amsgrad = FALSE)
slots <- list(lapply(ws, function(w) w * 0), lapply(ws, function(w) w * 0 + 1e-4), NULL)
time_calls <- function(f) {
  gc(FALSE)
  t0 <- proc.time()[["elapsed"]]
  for (i in seq_len(steps)) f()
  1000 * (proc.time()[["elapsed"]] - t0) / steps
}
fresh <- inplace <- numeric(rounds)
own_w <- lapply(ws, function(w) w + 0)
own_s <- lapply(slots, function(s) if (!is.null(s)) lapply(s, function(x) x + 0))
for (k in seq_len(rounds)) {
  fresh[k] <- time_calls(function() upd("adam", ws, gs, slots, params, threads))
  inplace[k] <- time_calls(function() multihead:::cpp_optimizer_update_in_place("adam", own_w, gs, own_s, params,
                                                                               threads))
}
cat(sprintf(paste0("\nAdam core call, %d variables: fresh result vectors %.2f ms, in place %.2f ms ",
                   "(median of rounds; ratio %.2f)\n"),
            length(ws), median(fresh), median(inplace), median(fresh / inplace)))
