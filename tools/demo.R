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
