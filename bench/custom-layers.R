# Custom layers against built-in composition, and the cost of an eager op.
#
#   Rscript bench/custom-layers.R [--lib LIB] [--rounds 5] [--steps 20]
#                                 [--shape B,T,E,H] [--threads 2]
#
# 1. A one-block transformer encoder (multi-head self-attention, residual,
#    layer norm, dense relu, dense, residual, layer norm, global average
#    pooling, dense 1; MSE; Adam) built twice with the same weights: from
#    built-in layers in keras_model(), and with a TransformerEncoder written
#    with Layer() (keras3's tutorial layer). fit() time per step, the two
#    builds alternating within each round; the summary is the median of the
#    per-round ratios custom / built-in (target: <= 1.10).
# 2. Eager op_*() calls on small arrays (bench::mark medians, microseconds;
#    target: under 20 us).
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))),
                 "bench-setup.R"))  # args, opt(), lib; multihead loaded
rounds <- as.integer(opt("rounds", 5))
steps <- as.integer(opt("steps", 20))
shape <- as.integer(strsplit(opt("shape", "32,128,256,8"), ",")[[1]])
threads <- as.integer(opt("threads", 2))
set_num_threads(threads)
B <- shape[1]; Tn <- shape[2]; E <- shape[3]; H <- shape[4]

layer_transformer_encoder <- Layer("BenchTransformerEncoder",
  initialize = function(embed_dim, dense_dim, num_heads, ...) {
    super$initialize(...)
    self$attention <- layer_multi_head_attention(num_heads = num_heads, key_dim = embed_dim %/% num_heads)
    self$dense_proj <- keras_model_sequential() |>
      layer_dense(dense_dim, activation = "relu") |>
      layer_dense(embed_dim)
    self$layernorm_1 <- layer_layer_normalization()
    self$layernorm_2 <- layer_layer_normalization()
  },
  call = function(inputs) {
    proj_input <- self$layernorm_1(inputs + self$attention(inputs, inputs))
    self$layernorm_2(proj_input + self$dense_proj(proj_input))
  })

build_builtin <- function() {
  x <- keras_input(shape = c(Tn, E))
  a <- layer_multi_head_attention(num_heads = H, key_dim = E %/% H)(x, x)
  h <- layer_layer_normalization(x + a)
  f <- h |> layer_dense(2 * E, activation = "relu") |> layer_dense(E)
  h <- layer_layer_normalization(h + f)
  keras_model(x, h |> layer_global_average_pooling_1d() |> layer_dense(1))
}
build_custom <- function() {
  x <- keras_input(shape = c(Tn, E))
  h <- x |> layer_transformer_encoder(E, 2 * E, H)
  keras_model(x, h |> layer_global_average_pooling_1d() |> layer_dense(1))
}

set.seed(1)
builtin <- build_builtin()
custom <- build_custom()
# the same weights (same order: attention, norm 1, dense, dense, norm 2, head)
set_weights(custom, get_weights(builtin)[c(1:8, 11:14, 9:10, 15:18)])
n <- B * steps
x <- array(rnorm(n * Tn * E), c(n, Tn, E))
y <- rnorm(n)
stopifnot(isTRUE(all.equal(custom(x[1:2, , , drop = FALSE]), builtin(x[1:2, , , drop = FALSE]),
                           tolerance = 1e-5)))
for (m in list(builtin, custom)) compile(m, optimizer = "adam", loss = "mse")

time_fit <- function(model) {
  fit(model, x[1:B, , , drop = FALSE], y[1:B], batch_size = B, epochs = 1, verbose = 0)  # warm-up
  t0 <- proc.time()[["elapsed"]]
  fit(model, x, y, batch_size = B, epochs = 1, verbose = 0, shuffle = FALSE)
  (proc.time()[["elapsed"]] - t0) / steps * 1000
}
res <- data.frame(round = integer(), builtin_ms = numeric(), custom_ms = numeric())
for (r in seq_len(rounds)) {
  order <- if (r %% 2L) c("builtin", "custom") else c("custom", "builtin")
  t <- c(builtin = NA, custom = NA)
  for (k in order) t[[k]] <- time_fit(if (k == "builtin") builtin else custom)
  res[r, ] <- list(r, t[["builtin"]], t[["custom"]])
}
res$ratio <- res$custom_ms / res$builtin_ms
cat(sprintf("encoder block B=%d T=%d E=%d heads=%d, %d steps per fit, %d threads\n", B, Tn, E, H, steps, threads))
print(res, row.names = FALSE, digits = 4)
cat(sprintf("median ratio custom / built-in: %.3f (range %.3f-%.3f)\n\n", stats::median(res$ratio),
            min(res$ratio), max(res$ratio)))

a <- array(rnorm(12), c(3, 4)); b <- rnorm(4); s <- array(rnorm(12), c(3, 4))
marks <- bench::mark(op_add = op_add(a, s), op_add_broadcast = op_add(a, b), op_multiply = op_multiply(a, 2),
                     plus_base = a + s, check = FALSE, min_iterations = 5000)
print(data.frame(expression = names(marks$expression), median_us = as.numeric(marks$median) * 1e6), digits = 3)
