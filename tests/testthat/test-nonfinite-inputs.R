# NA, NaN and +-Inf in query, value, key and grad_output: cpp_mha_call()
# finds them while it converts the inputs (the column-major flash path checks
# inside the conversion, the other paths scan first) and the R error names
# the argument. Every path, both dtypes, values at the first element, inside
# a vector body and in the scalar tail of a column run.

nonfinite_case <- function() {
  set.seed(21)
  list(q = rand_array(3, 37, 16), v = rand_array(3, 29, 12), k = rand_array(3, 29, 10),
       g = rand_array(3, 37, 16))
}

# Positions in a (3, 37, 16) or (3, 29, d) array: first element, one inside
# the first column's vector body, the last element of a column run (B*T rows,
# its tail after the last full group of 8) and the very last element.
bad_positions <- function(a) {
  n_rows <- prod(dim(a)[-length(dim(a))])
  c(1L, 10L, n_rows, n_rows + 5L, length(a))
}

poke <- function(a, pos, value) {
  a[pos] <- value
  a
}

# The layer variants: flash (column-major path), materialised, and scores
# requested (materialised with probabilities).
nonfinite_layers <- function(dtype) {
  list(
    flash = list(layer = layer_multi_head_attention(num_heads = 2, key_dim = 4, dtype = dtype,
                                                    flash_attention = TRUE),
                 scores = FALSE),
    materialised = list(layer = layer_multi_head_attention(num_heads = 2, key_dim = 4, dtype = dtype,
                                                           flash_attention = FALSE),
                        scores = FALSE),
    scores = list(layer = layer_multi_head_attention(num_heads = 2, key_dim = 4, dtype = dtype,
                                                     flash_attention = FALSE),
                  scores = TRUE)
  )
}

# The plain-R reference output for a built layer of 2 heads, key_dim 4.
layer_reference <- function(mha, q, v, k) {
  w <- get_weights(mha)
  names(w) <- weight_names
  ref_mha(q, v, k, weights = w, num_heads = 2, key_dim = 4)$output
}

expect_nonfinite_error <- function(expr, arg, info) {
  err <- expect_error(expr, "NA, NaN or Inf", fixed = TRUE, class = "multihead_error", info = info)
  expect_match(conditionMessage(err), sprintf("`%s`", arg), fixed = TRUE, info = info)
}

test_that("NA/NaN/Inf in query, value, key or grad_output name the argument on every path and dtype", {
  x <- nonfinite_case()
  for (dtype in c("float32", "float64")) {
    for (variant in names(nonfinite_layers(dtype))) {
      lv <- nonfinite_layers(dtype)[[variant]]
      mha <- lv$layer
      sc <- lv$scores
      for (value in list(NA_real_, NaN, Inf, -Inf)) {
        for (arg in c("query", "value", "key", "grad_output")) {
          a <- switch(arg, query = x$q, value = x$v, key = x$k, grad_output = x$g)
          for (pos in bad_positions(a)) {
            bad <- poke(a, pos, value)
            info <- sprintf("%s %s %s=%s at %d", dtype, variant, arg, format(value), pos)
            q <- if (arg == "query") bad else x$q
            v <- if (arg == "value") bad else x$v
            k <- if (arg == "key") bad else x$k
            g <- if (arg == "grad_output") bad else x$g
            if (arg != "grad_output") {
              expect_nonfinite_error(mha(q, v, k, return_attention_scores = sc), arg, info)
            }
            expect_nonfinite_error(backprop(mha, q, v, k, return_attention_scores = sc, grad_output = g),
                                   arg, info)
          }
        }
      }
      # after the errors the layer still gives the reference answer
      w <- get_weights(mha)
      want <- layer_reference(mha, x$q, x$v, x$k)
      got <- mha(x$q, x$v, x$k)
      expect_equal(got, want, tolerance = if (dtype == "float32") 1e-5 else 1e-12,
                   info = paste(dtype, variant))
      expect_identical(get_weights(mha), w)
    }
  }
})

test_that("one array passed twice, key left out, and several bad inputs: the first argument is named", {
  x <- nonfinite_case()
  for (flash in c(TRUE, FALSE)) {
    mha <- layer_multi_head_attention(num_heads = 2, key_dim = 4, flash_attention = flash)
    qn <- poke(x$q, 40L, NaN)
    expect_nonfinite_error(mha(qn, qn), "query", "self-attention")
    expect_nonfinite_error(mha(qn, qn, qn), "query", "self-attention, key given")
    mha2 <- layer_multi_head_attention(num_heads = 2, key_dim = 4, flash_attention = flash)
    vn <- poke(x$v, 7L, Inf)
    expect_nonfinite_error(mha2(x$q, vn), "value", "key left out")
    expect_nonfinite_error(backprop(mha2, x$q, vn, grad_output = x$g), "value", "key left out, backprop")
    mha3 <- layer_multi_head_attention(num_heads = 2, key_dim = 4, flash_attention = flash)
    kn <- poke(x$k, 3L, -Inf)
    expect_nonfinite_error(mha3(qn, vn, kn), "query", "query first")
    expect_nonfinite_error(mha3(x$q, vn, kn), "value", "value before key")
    expect_nonfinite_error(backprop(mha3, x$q, x$v, kn, grad_output = poke(x$g, 1L, NA)), "key",
                           "inputs before grad_output")
    # integer arrays (another conversion path) with NA
    qi <- array(as.integer(round(x$q * 10)), dim(x$q))
    qi[5] <- NA_integer_
    expect_nonfinite_error(mha3(qi, x$v, x$k), "query", "integer query")
  }
})

test_that("large finite values are not mistaken for non-finite ones", {
  x <- nonfinite_case()
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 4, dtype = "float64")
  q <- poke(x$q, 10L, 3e5)
  q[1] <- -2e5
  out <- mha(q, x$v, x$k)
  expect_true(all(is.finite(out)))
  expect_equal(out, layer_reference(mha, q, x$v, x$k), tolerance = 1e-10)
})
