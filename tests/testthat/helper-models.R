# Helpers for the model tests.

# A float64 multi-head attention layer with random biases (so that bias
# gradients are not trivially zero).
mha64 <- function(...) layer_multi_head_attention(..., dtype = "float64", bias_initializer = "random_normal")
