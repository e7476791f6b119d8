# Cases of the multi-head attention layer whose outputs and gradients were
# recorded by the build before the core's paths were consolidated
# (fixtures/mha-pinned/mha-pinned.rds, written by fixtures/mha-pinned/make.R
# from these definitions). test-mha-pinned.R checks that today's build gives
# the same numbers to float rounding on every path: flash and materialised,
# R's column-major doubles read in place (3-D, double storage) and converted
# (integer storage, a 4-D input with one attention axis, scores), float32 and
# float64, masks, causal, sliding window, gate, dropout.

# Each case: layer arguments, call arguments (by name), flash switch.
mha_pinned_cases <- function() {
  set.seed(2022)
  B <- 2; T <- 9; S <- 7
  q <- array(rnorm(B * T * 6), c(B, T, 6))
  v <- array(rnorm(B * S * 5), c(B, S, 5))
  k <- array(rnorm(B * S * 4), c(B, S, 4))
  x <- array(rnorm(B * 70 * 8), c(B, 70, 8))   # crosses no tile edge but > 64 query rows
  qi <- array(sample(-3:3, B * T * 6, TRUE), c(B, T, 6))  # integer storage: converted path
  x4 <- array(rnorm(2 * 3 * 5 * 6), c(2, 3, 5, 6))
  m3 <- array(runif(B * T * S) < 0.7, c(B, T, S))
  m3[1, 2, ] <- FALSE  # a fully masked row
  qmask <- matrix(runif(B * T) < 0.8, B, T)
  vmask <- matrix(runif(B * S) < 0.8, B, S)
  L <- list(num_heads = 3, key_dim = 4, value_dim = 3)
  base <- list(
    plain = list(layer = L, call = list(query = q, value = v, key = k)),
    self_causal = list(layer = list(num_heads = 2, key_dim = 16), call = list(query = x, value = x,
                                                                             use_causal_mask = TRUE)),
    masks = list(layer = L, call = list(query = q, value = v, key = k, attention_mask = m3,
                                        query_mask = qmask, value_mask = vmask)),
    gate_window = list(layer = c(L, list(use_gate = TRUE, sliding_window = 3, output_shape = c(2, 3))),
                       call = list(query = q, value = q, use_causal_mask = TRUE)),
    dropout = list(layer = c(L, list(dropout = 0.3, seed = 7)),
                   call = list(query = q, value = v, training = TRUE)),
    integer_input = list(layer = L, call = list(query = qi, value = v)),
    axes4d = list(layer = list(num_heads = 2, key_dim = 3, attention_axes = 2),
                  call = list(query = x4, value = x4)),
    no_bias = list(layer = c(L, list(use_bias = FALSE)), call = list(query = q, value = v))
  )
  cases <- list()
  for (nm in names(base)) {
    for (dtype in c("float64", "float32")) {
      for (flash in c(TRUE, FALSE)) {
        cases[[sprintf("%s/%s/%s", nm, dtype, if (flash) "flash" else "materialised")]] <-
          c(base[[nm]], list(dtype = dtype, flash = flash, scores = FALSE))
      }
      # scores always take the materialised kernel
      cases[[sprintf("%s/%s/scores", nm, dtype)]] <-
        c(base[[nm]], list(dtype = dtype, flash = FALSE, scores = TRUE))
    }
  }
  cases
}

# Runs one case: a layer with weights drawn from a fixed seed, a forward call
# (output, scores) and backprop() with a fixed output gradient.
mha_pinned_run <- function(case) {
  old <- if (case$flash) config_enable_flash_attention() else config_disable_flash_attention()
  on.exit(if (old) config_enable_flash_attention() else config_disable_flash_attention())
  set.seed(31)
  layer <- do.call(layer_multi_head_attention,
                   c(case$layer, list(dtype = case$dtype, bias_initializer = "random_normal")))
  cl <- case$call
  fwd_args <- cl
  if (case$scores) fwd_args$return_attention_scores <- TRUE
  fwd <- do.call(layer, fwd_args)
  out <- if (case$scores) fwd$output else fwd
  set.seed(32)
  g <- array(rnorm(length(out)), dim(out))
  # the layer's dropout counter advanced with the forward call; backprop()
  # draws the next one, as a second training call would
  bp <- do.call(backprop, c(list(layer), fwd_args, list(grad_output = g)))
  list(output = out, scores = if (case$scores) fwd$scores, bp_output = bp$output,
       grads = bp$grads)
}
