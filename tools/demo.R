# The README's demo command: installs what is missing, installs multihead
# from this source tree, and runs a short example.
# Run from the package root:  Rscript tools/demo.R
source(file.path("tools", "install-deps.R"))
install_missing(description_deps())
install_multihead()

library(multihead)
set.seed(1)
cat("multihead", format(utils::packageVersion("multihead")), "--",
    multihead_build_info()$simd, "\n\n")

# Self-attention over a batch of 2 sequences of 6 steps with 16 features.
x <- array(rnorm(2 * 6 * 16), dim = c(2, 6, 16))
mha <- layer_multi_head_attention(num_heads = 4, key_dim = 8)
res <- mha(x, x, use_causal_mask = TRUE, return_attention_scores = TRUE)
print(mha)
cat("output shape:", dim(res$output), "\n")
cat("scores shape:", dim(res$scores), "(batch, heads, query, key)\n\n")
cat("Head 1's causal attention for the first sequence:\n")
print(round(res$scores[1, 1, , ], 3))

# A tiny version of vignette("transformer-from-scratch"): does token A (1)
# come before token B (2) in a sequence of filler tokens? A bag of tokens
# cannot tell; a transformer block with position embeddings learns it.
cat("\nTraining a tiny transformer: does A come before B?\n")
len <- 12
make_sequences <- function(n) {
  ids <- matrix(sample(3:9, n * len, replace = TRUE), n, len)
  pos_a <- sample.int(len, n, replace = TRUE)
  pos_b <- (pos_a + sample.int(len - 1, n, replace = TRUE) - 1) %% len + 1
  ids[cbind(seq_len(n), pos_a)] <- 1
  ids[cbind(seq_len(n), pos_b)] <- 2
  list(x = list(ids, matrix(rep(0:(len - 1), each = n), n, len)), y = as.numeric(pos_a < pos_b))
}
train <- make_sequences(3000)
test <- make_sequences(1000)
tokens <- keras_input(shape = len, dtype = "int32")
positions <- keras_input(shape = len, dtype = "int32")
h <- layer_embedding(tokens, input_dim = 10, output_dim = 16) +
  layer_embedding(positions, input_dim = len, output_dim = 16)
h <- layer_layer_normalization(h + layer_multi_head_attention(h, num_heads = 2, key_dim = 8))
h <- layer_layer_normalization(h + (h |> layer_dense(32, activation = "relu") |> layer_dense(16)))
prob <- h |> layer_global_average_pooling_1d() |> layer_dense(1, activation = "sigmoid")
model <- keras_model(list(tokens, positions), prob)
model |> compile(optimizer = optimizer_adam(learning_rate = 3e-3), loss = "binary_crossentropy",
                 metrics = "accuracy")
old_threads <- set_num_threads(1)   # a model this small runs fastest on one thread
seconds <- system.time(fit(model, train$x, train$y, epochs = 10, batch_size = 64, verbose = 2))[["elapsed"]]
set_num_threads(old_threads)
accuracy <- evaluate(model, test$x, test$y, verbose = 0)[["accuracy"]]
cat(sprintf("Trained in %.0f s; held-out accuracy %.1f%% on %d new sequences (chance: 50%%).\n",
            seconds, 100 * accuracy, length(test$y)))

# keras3-style custom layers: a layer of your own whose call() uses op_*()
# functions and a weight made with add_weight(); it trains inside models too
# (see vignette("custom-layers")).
layer_gated <- Layer("Gated",
  build = function(input_shape) {
    self$gate <- self$add_weight(shape = input_shape[length(input_shape)], initializer = "zeros", name = "gate")
  },
  call = function(inputs) inputs * op_sigmoid(self$gate))
gated <- layer_gated()
cat("\nA custom layer (gates start at sigmoid(0) = 0.5):\n")
print(gated(array(1, c(2, 3))))
print(gated)
