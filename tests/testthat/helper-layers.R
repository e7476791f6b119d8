# Helpers that build layers for the tests.

# Keras weight names in get_weights() order (no gate).
weight_names <- c("query_kernel", "query_bias", "key_kernel", "key_bias",
                  "value_kernel", "value_bias", "output_kernel", "output_bias")

# A built layer configured and weighted like fixture `fx`.
fixture_layer <- function(fx, dtype = "float64") {
  L <- fx$layer
  mha <- layer_multi_head_attention(
    num_heads = L$num_heads, key_dim = L$key_dim, value_dim = L$value_dim,
    output_shape = if (isTRUE(L$output_shape_is_default)) NULL else L$output_shape,
    use_bias = L$use_bias, attention_axes = L$attention_axes_argument, dtype = dtype)
  mha$build(dim(fx$inputs$query), dim(fx$inputs$value), dim(fx$inputs$key))
  set_weights(mha, unname(Filter(Negate(is.null), fx$weights[weight_names])))
  mha
}

# Random weights in Keras shapes for ref_mha(), and the same list in
# get_weights() order for set_weights().
random_weights <- function(E, Dk, Dv, N, H, Hv, out, use_bias = TRUE, use_gate = FALSE) {
  r <- function(...) array(rnorm(prod(c(...))) * 0.4, dim = c(...))
  w <- list(query_kernel = r(E, N, H), query_bias = if (use_bias) r(N, H),
            key_kernel = r(Dk, N, H), key_bias = if (use_bias) r(N, H),
            value_kernel = r(Dv, N, Hv), value_bias = if (use_bias) r(N, Hv),
            output_kernel = r(N, Hv, out), output_bias = if (use_bias) r(out))
  if (use_gate) {
    w$gate_kernel <- r(E, N, Hv)
    w$gate_bias <- if (use_bias) r(N, Hv)
  }
  order <- c("query_kernel", "query_bias", "key_kernel", "key_bias",
             if (use_gate) c("gate_kernel", "gate_bias"),
             "value_kernel", "value_bias", "output_kernel", "output_bias")
  list(ref = w, ordered = unname(Filter(Negate(is.null), w[order])))
}

rand_array <- function(...) array(rnorm(prod(c(...))), dim = c(...))
