# Bad input, table-driven. Every case must raise a "multihead_error" whose
# message names the offending argument (in backticks, as abort_arg() writes
# it) or quotes Keras's message; a case that returns a value (a silently
# recycled mask, a truncated number, ...) fails its expectation.
#
# A case is list(expr = <quoted call>, patterns = <strings the message must
# contain, the first one usually "`arg`">). Expressions are evaluated in
# `fixtures()`, where fresh() gives an unbuilt layer and built() a layer
# built for query x (2, 5, 8), value v (2, 3, 6) and key k (2, 3, 4).

case <- function(expr, ...) list(expr = substitute(expr), patterns = c(...))

# Cases `template` with `.bad` replaced by each value in `values` (a value
# or a quoted expression, evaluated in fixtures()), expecting `patterns`.
cases_for <- function(template, values, patterns) {
  template <- substitute(template)
  lapply(values, function(bad) {
    list(expr = do.call(substitute, list(template, list(.bad = bad))), patterns = patterns)
  })
}

fixtures <- function() {
  env <- new.env(parent = environment(case))
  set.seed(42)
  local(envir = env, {
    x <- rand_array(2, 5, 8); v <- rand_array(2, 3, 6); k <- rand_array(2, 3, 4)
    x4 <- rand_array(2, 5, 2, 8)
    fresh <- function(...) layer_multi_head_attention(num_heads = 2, key_dim = 2, ...)
    built <- function(...) {
      m <- fresh(...)
      m$build(dim(x), dim(v), dim(k))
      m
    }
    w <- get_weights(built())
    w_with <- function(i, value) { w[[i]] <- value; w }
    g <- array(1, dim(x))
  })
  env
}

run_cases <- function(cases) {
  env <- fixtures()
  for (cs in cases) {
    label <- paste(deparse(cs$expr, width.cutoff = 500L), collapse = " ")
    err <- expect_error(eval(cs$expr, env), cs$patterns[1], fixed = TRUE, class = "multihead_error",
                        info = label)
    for (p in cs$patterns[-1]) expect_match(conditionMessage(err), p, fixed = TRUE, info = label)
  }
}

bt <- function(arg) paste0("`", arg, "`")

with_na <- function(a, value = NA) {
  a[2] <- value
  a
}

# Bad values by kind.
bad_whole <- list(NULL, NA, NA_integer_, NaN, Inf, -Inf, 0, -2, 1.5, 2 + 1e-9, "2", TRUE, 2 + 0i,
                  c(2, 2), numeric(0), matrix(2), list(2), 2^31, factor("2"))
bad_flag <- list(NULL, NA, 1, 0, "TRUE", c(TRUE, FALSE), logical(0), list(TRUE))
bad_spec <- list(NA, "nope", "", 1, TRUE, c("zeros", "ones"), list(class_name = "Nope"),
                 list(class_name = "Zeros", config = list(foo = 1)), list(foo = 1))

ctor_bad <- list(
  num_heads = bad_whole,
  key_dim = bad_whole,
  value_dim = bad_whole[-1],
  dropout = list(NULL, NA, NaN, Inf, -Inf, -0.1, 1.1, "0.1", TRUE, c(0.1, 0.2), numeric(0),
                 matrix(0.1), list(0.1), 0.1 + 0i),
  use_bias = bad_flag,
  output_shape = list(NA, NaN, Inf, 0, -8, 8.5, "8", TRUE, c(8, NA), c(8, 1.5), c(8, 0), numeric(0),
                      matrix(8), list("8"), list(8, NULL), list(8, c(1, 2)), 2^31),
  attention_axes = list(NA, NaN, Inf, 1.5, 0, c(1, 0), "1", TRUE, c(1, 1), numeric(0), c(1, NA),
                        matrix(1), list(1, NULL), 2^31),
  flash_attention = list(NA, 1, 0, "TRUE", c(TRUE, TRUE), logical(0), list(TRUE)),
  kernel_initializer = c(list(NULL), bad_spec,
                         list(list(class_name = "RandomNormal", config = list(stddev = -1)))),
  bias_initializer = c(list(NULL), bad_spec),
  kernel_regularizer = c(bad_spec, list(list(class_name = "L1", config = list(l1 = -1)))),
  bias_regularizer = bad_spec,
  activity_regularizer = bad_spec,
  kernel_constraint = c(bad_spec, list("RFunction",
                                       list(class_name = "MaxNorm", config = list(max_value = -1)))),
  bias_constraint = bad_spec,
  seed = list(NA, NaN, Inf, 1.5, "1", TRUE, c(1, 2), numeric(0), 2^31, matrix(1), list(1)),
  name = list(NA, NA_character_, "", 1, TRUE, c("a", "b"), character(0), list("a")),
  dtype = list(NA, "int8", "float8", "double", "", 32, TRUE, c("float32", "float64"),
               character(0)),
  trainable = list(NA, 1, "yes", c(TRUE, FALSE), logical(0)),
  use_gate = list(NA, 1, "yes", c(TRUE, FALSE), logical(0)),
  sliding_window = list(NA, NaN, Inf, 0, -3, 1.5, "3", TRUE, c(2, 3), numeric(0), matrix(3), 2^31)
)

test_that("every constructor argument rejects wrong types, NA, lengths and values, naming it", {
  cases <- list()
  for (arg in names(ctor_bad)) {
    for (bad in ctor_bad[[arg]]) {
      args <- list(num_heads = 2, key_dim = 2)
      args[arg] <- list(bad)
      # spec arguments may be named with a part: `kernel_initializer$class_name`
      pattern <- if (grepl("_(initializer|regularizer|constraint)$", arg)) paste0("`", arg) else bt(arg)
      cases[[length(cases) + 1L]] <- list(expr = as.call(c(quote(layer_multi_head_attention), args)),
                                          patterns = pattern)
    }
  }
  expect_gt(length(cases), 200)
  run_cases(cases)
})

test_that("missing, unknown, unnamed and repeated constructor arguments are errors naming them", {
  run_cases(list(
    case(layer_multi_head_attention(key_dim = 2), "`num_heads`"),
    case(layer_multi_head_attention(num_heads = 2), "`key_dim`"),
    case(layer_multi_head_attention(), "`num_heads`"),
    case(layer_multi_head_attention(num_heads = 2, key_dim = 2, foo = 1), "`foo`"),
    case(layer_multi_head_attention(num_heads = 2, key_dim = 2, foo = 1, bar = 2), "`foo`", "`bar`"),
    case(layer_multi_head_attention(num_heads = 2, key_dim = 2, use_causal_mask = TRUE), "`use_causal_mask`"),
    case(layer_multi_head_attention(num_heads = 2, key_dim = 2, name = "a", name = "b"), "`...`", "name"),
    case(layer_multi_head_attention(NULL, 2, 2, NULL, 0, TRUE, NULL, NULL, NULL, "glorot_uniform", "zeros",
                                    NULL, NULL, NULL, NULL, NULL, NULL, 5), "`...`"),
    case(layer_multi_head_attention(num_heads = 2, key_dim = 2, flash_attention = TRUE, dropout = 0.1),
         "Dropout is not supported when flash attention is enabled", "set dropout to 0.0")
  ))
})

test_that("bad `inputs` are errors naming them (or the call argument they supply)", {
  run_cases(c(
    cases_for(layer_multi_head_attention(.bad, num_heads = 2, key_dim = 2),
              list("a", 1:3, TRUE, list(), quote(list(x)), quote(list(x, x, x, x)), data.frame(a = 1), sum),
              "`inputs`"),
    list(
      case(layer_multi_head_attention(list(query = x), num_heads = 2, key_dim = 2), "`value`"),
      case(layer_multi_head_attention(list(value = x), num_heads = 2, key_dim = 2), "`query`"),
      case(layer_multi_head_attention(list(query = x, value = x, foo = 1), num_heads = 2, key_dim = 2),
           "`foo`"),
      case(layer_multi_head_attention(list(x, with_na(x)), num_heads = 2, key_dim = 2), "`value`"),
      case(layer_multi_head_attention(array(1, c(2, 5)), num_heads = 2, key_dim = 2), "`query`")
    )
  ))
})

# Bad arrays for query, value and key of shape `d`.
bad_arrays <- function(d) {
  a <- array(1, d)
  list(NULL, "a", NA, 1, rep(1, prod(d)), matrix(1, d[1], d[length(d)]), array(TRUE, d),
       array(1 + 0i, d), array("1", d), list(a), data.frame(a = 1), factor(1:3),
       with_na(a), with_na(a, NaN), with_na(a, Inf), with_na(a, -Inf), with_na(a, NA_integer_),
       array(0, replace(d, 1, 0)), array(0, replace(d, 2, 0)), array(0, replace(d, length(d), 0)))
}

test_that("query, value and key: wrong type, rank, NA/NaN/Inf and zero-length axes name the argument", {
  q_bad <- bad_arrays(c(2, 5, 8)); v_bad <- bad_arrays(c(2, 3, 6)); k_bad <- bad_arrays(c(2, 3, 4))[-1]
  run_cases(c(
    cases_for(fresh()(.bad, v), q_bad, "`query`"),
    cases_for(built()(.bad, v, k), q_bad, "`query`"),
    cases_for(fresh()(x, .bad), v_bad, "`value`"),
    cases_for(built()(x, .bad, k), v_bad, "`value`"),
    cases_for(fresh()(x, v, .bad), k_bad, "`key`"),
    cases_for(built()(x, v, .bad), k_bad, "`key`"),
    cases_for(backprop(fresh(), .bad, v, grad_output = g), q_bad, "`query`"),
    cases_for(backprop(fresh(), x, .bad, grad_output = g), v_bad, "`value`"),
    cases_for(backprop(fresh(), x, v, .bad, grad_output = g), k_bad, "`key`")
  ))
})

test_that("mismatched shapes: Keras's 'must be equal' for key/value, batch, rank and feature mismatches", {
  equal <- "All dimensions of `value` and `key`, except the last one, must be equal"
  run_cases(list(
    case(fresh()(x, v, array(1, c(2, 4, 4))), equal),
    case(fresh()(x, v, array(1, c(3, 3, 4))), equal),
    case(fresh()(x, v, array(1, c(2, 3, 1, 4))), equal),
    case(fresh()(x, v, array(1, c(2, 4))), equal),
    case(fresh()(x, v, array(1, 2)), equal),
    case(built()(x, v, array(1, c(2, 4, 4))), equal),
    case(fresh()$compute_output_shape(dim(x), dim(v), c(2, 4, 4)), equal),
    case(fresh()$compute_output_shape(dim(x), dim(v), 2), equal),
    case(fresh()$build(dim(x), dim(v), c(2, 3, 1, 4)), equal),
    # query and value: batch axis, rank
    case(fresh()(array(1, c(3, 5, 8)), v), "`query` and `value` must agree on the batch axis"),
    case(built()(array(1, c(3, 5, 8)), v, k), "`query` and `value` must agree"),
    case(fresh(attention_axes = 2)(x4, array(1, c(2, 4, 3, 8))), "`query` and `value` must agree"),
    case(fresh()(x, array(1, c(2, 3, 1, 6))), "`query` and `value` must have the same rank"),
    case(fresh()$compute_output_shape(dim(x), c(3, 3, 6)), "`query` and `value` must agree"),
    case(fresh()$compute_output_shape(dim(x), c(2, 3, 1, 6)), "`query` and `value` must have the same rank"),
    # a built layer keeps its rank and feature sizes
    case(built()(x4, array(1, c(2, 3, 2, 6)), array(1, c(2, 3, 2, 4))), "`query`", "rank 3"),
    case(built()(array(1, c(2, 5, 7)), v, k), "`query`", "8 features"),
    case(built()(x, array(1, c(2, 3, 5)), k), "`value`", "6 features"),
    case(built()(x, v, array(1, c(2, 3, 3))), "`key`", "4 features"),
    case(built()(x, v), "`key`", "4 features"),
    # attention axes that do not fit the inputs, and options needing a single axis
    case(fresh(attention_axes = 2)(x, v), "`attention_axes`"),
    case(fresh(attention_axes = -1)(x, v), "`attention_axes`"),
    case(fresh(attention_axes = -3)(x, v), "`attention_axes`"),
    case(fresh(attention_axes = c(1, -2))(x, v), "`attention_axes`"),
    case(fresh(attention_axes = 3)$build(dim(x4), dim(x4)), "`attention_axes`"),
    case(fresh(attention_axes = 2)$compute_output_shape(dim(x), dim(v)), "`attention_axes`"),
    case(fresh()(x4, x4, use_causal_mask = TRUE), "`use_causal_mask`"),
    case(fresh(sliding_window = 2)(x4, x4), "`sliding_window`")
  ))
  # what is not a mismatch: other batch and sequence sizes on a built layer
  env <- fixtures()
  out <- with(env, built()(array(1, c(4, 7, 8)), array(1, c(4, 2, 6)), array(1, c(4, 2, 4))))
  expect_identical(dim(out), c(4L, 7L, 8L))
})

# Bad masks for dims `d`; the first ones are a mask of the right size but the
# wrong shape (which recycling would silently accept).
bad_masks <- function(d) {
  m <- array(TRUE, d)
  list(rep(TRUE, prod(d)), array(TRUE, rev(d)), TRUE, c(TRUE, FALSE), array(TRUE, c(d, 1)),
       array(TRUE, d + 1), array(TRUE, c(0, d[-1])), "a", list(m), data.frame(a = TRUE), factor(m),
       with_na(m), array(NA, d), array(2, d), array(0.5, d), array(-1, d), array(-Inf, d),
       with_na(m + 0, NaN), array(1 + 0i, d), array("1", d))
}

test_that("masks of the wrong shape, type or values are errors naming the mask", {
  att <- bad_masks(c(5, 3))
  att <- c(att[-c(3, 6)], list(matrix(TRUE, 5, 2), array(TRUE, c(3, 5, 3)), array(TRUE, c(2, 3, 5, 3)),
                               array(TRUE, c(2, 2, 2, 5, 3)), array(TRUE, c(1, 1, 1, 1, 1))))
  run_cases(c(
    cases_for(fresh()(x, v, attention_mask = .bad), att, "`attention_mask`"),
    cases_for(built()(x, v, k, attention_mask = .bad), att, "`attention_mask`"),
    cases_for(fresh()(x, v, query_mask = .bad), bad_masks(c(2, 5)), "`query_mask`"),
    cases_for(fresh()(x, v, value_mask = .bad), c(bad_masks(c(2, 3)), list(matrix(TRUE, 2, 5))),
              "`value_mask`"),
    cases_for(fresh()(x, v, k, key_mask = .bad), bad_masks(c(2, 3)), "`key_mask`"),
    cases_for(fresh()(x, v, key_mask = .bad), bad_masks(c(2, 3)), "`key_mask`"),
    cases_for(backprop(fresh(), x, v, attention_mask = .bad, grad_output = g), att[1:4], "`attention_mask`"),
    cases_for(backprop(fresh(), x, v, query_mask = .bad, grad_output = g), bad_masks(c(2, 5))[1:4],
              "`query_mask`")
  ))
})

test_that("flags and unknown call arguments are errors naming them", {
  run_cases(c(
    cases_for(fresh()(x, v, return_attention_scores = .bad), bad_flag, "`return_attention_scores`"),
    # 1 and 0 are accepted, as keras3 does
    cases_for(fresh()(x, v, use_causal_mask = .bad), Filter(Negate(is.numeric), bad_flag), "`use_causal_mask`"),
    cases_for(fresh()(x, v, training = .bad), bad_flag[-1], "`training`"),
    cases_for(backprop(fresh(), x, v, training = .bad, grad_output = g), bad_flag[-1], "`training`"),
    list(
      case(fresh()(), "`query`"),
      case(fresh()(x), "`value`"),
      case(fresh()(value = v), "`query`"),
      case(fresh()(x, v, foo = 1), "`foo`"),
      case(fresh()(x, v, atention_mask = TRUE), "`atention_mask`"),
      case(fresh()(x, v, foo = 1, bar = 2), "`foo`", "`bar`"),
      case(fresh()(x, v, k, NULL, FALSE, NULL, FALSE, 3), "an unnamed argument"),
      case(fresh()(x, v, grad_output = g), "`grad_output`"),
      case(fresh(flash_attention = TRUE)(x, v, return_attention_scores = TRUE),
           "Returning attention scores is not supported when flash attention is enabled")
    )
  ))
})

test_that("backprop(): grad_output missing, NULL, of the wrong shape or with NA; other bad arguments", {
  run_cases(c(
    cases_for(backprop(fresh(), x, v, grad_output = .bad),
              list(NULL, "a", 1, rep(1, 80), array(1, c(8, 5, 2)), array(1, c(2, 5, 7)),
                   array(1, c(2, 5, 8, 1)), array(1, c(1, 5, 8)), array(TRUE, c(2, 5, 8)),
                   list(array(1, c(2, 5, 8))), with_na(array(1, c(2, 5, 8))),
                   with_na(array(1, c(2, 5, 8)), NaN), with_na(array(1, c(2, 5, 8)), Inf)),
              "`grad_output`"),
    cases_for(backprop(.bad, x, v, grad_output = g), list(NULL, 1, "a", sum, list()), "`object`"),
    list(
      case(backprop(fresh(), x, v), "`grad_output`"),
      case(backprop(fresh(), x, v, output_shape = 4, grad_output = g), "`output_shape`"),
      case(backprop(fresh(), x, grad_output = g), "`value`"),
      case(backprop(fresh(), grad_output = g), "`query`"),
      case(backprop(fresh(output_shape = 4), x, v, grad_output = g), "`grad_output`", "(2, 5, 4)"),
      case(backprop(fresh(), x, v, return_attention_scores = TRUE, grad_output = list(g)), "`grad_output`")
    )
  ))
})

test_that("set_weights(), get_weights(), count_params(), get_config(): bad arguments name them", {
  run_cases(c(
    cases_for(set_weights(built(), .bad),
              list(NULL, "a", 1, quote(w[-1]), quote(c(w, list(1))), quote(w[[1]]), quote(unlist(w)),
                   list()),
              "`weights`"),
    cases_for(built()$set_weights(.bad), list(quote(w[-8]), quote(w[[8]])), "`weights`"),
    cases_for(set_weights(.bad, w), list(NULL, 1, quote(w)), "`object`"),
    cases_for(get_weights(built(), trainable = .bad),
              list(NULL, "a", 1, c(TRUE, FALSE), logical(0), list(TRUE)), "`trainable`"),
    cases_for(get_weights(.bad), list(NULL, 1, quote(w)), "`object`"),
    cases_for(count_params(.bad), list(NULL, 1, quote(w)), "`object`"),
    cases_for(get_config(.bad), list(NULL, 1, quote(w)), "`object`"),
    list(
      case(set_weights(built(), w_with(3, aperm(w[[3]], 3:1))), "`weights[[3]]`", "key/kernel", "(4, 2, 2)"),
      case(set_weights(built(), w_with(1, array(1, c(8, 2, 3)))), "`weights[[1]]`", "query/kernel"),
      case(set_weights(built(), w_with(2, as.vector(w[[2]]))), "`weights[[2]]`", "query/bias"),
      case(set_weights(built(), w_with(2, 1:5)), "`weights[[2]]`", "query/bias"),
      case(set_weights(built(), w_with(8, matrix(w[[8]], 1))), "`weights[[8]]`", "attention_output/bias"),
      case(set_weights(built(), w_with(8, numeric(0))), "`weights[[8]]`"),
      case(set_weights(built(), w_with(7, NULL)), "`weights`"),
      case(set_weights(built(), w_with(4, array("1", c(2, 2)))), "`weights[[4]]`", "key/bias"),
      case(set_weights(built(), w_with(4, array(TRUE, c(2, 2)))), "`weights[[4]]`"),
      case(set_weights(built(), w_with(5, list(w[[5]]))), "`weights[[5]]`"),
      case(set_weights(built(), w_with(1, with_na(w[[1]]))), "`weights[[1]]`", "query/kernel", "NA"),
      case(set_weights(built(), w_with(6, with_na(w[[6]], NaN))), "`weights[[6]]`", "value/bias"),
      case(set_weights(built(), w_with(7, with_na(w[[7]], Inf))), "`weights[[7]]`",
           "attention_output/kernel"),
      case(set_weights(built(), w_with(8, with_na(w[[8]], -Inf))), "`weights[[8]]`"),
      case(set_weights(built(use_bias = FALSE), w), "`weights`", "4 arrays"),
      case(set_weights(built(use_gate = TRUE), w), "`weights`", "10 arrays"),
      case(set_weights(fresh(), w), "not built yet", "set_weights()"),
      case(count_params(fresh()), "not built yet")
    )
  ))
})

test_that("a rejected set_weights() changes nothing", {
  env <- fixtures()
  mha <- env$built()
  before <- get_weights(mha)
  bad <- lapply(before, function(a) a + 1)
  bad[[8]][3] <- NA
  expect_error(set_weights(mha, bad), "`weights[[8]]`", fixed = TRUE, class = "multihead_error")
  expect_identical(get_weights(mha), before)
})

test_that("from_config(): configs that are not, or no longer, valid name the problem", {
  cfg_with <- function(...) {
    modifyList(get_config(layer_multi_head_attention(num_heads = 2, key_dim = 2)), list(...))
  }
  run_cases(c(
    cases_for(from_config(.bad),
              list(NULL, "a", 1, list(), list(num_heads = 2, key_dim = 2),
                   structure(list(2, 2), class_name = "MultiHeadAttention"),
                   structure(list(num_heads = 2, key_dim = 2), class_name = "Nope"),
                   structure(list(num_heads = 2, key_dim = 2), class_name = NA_character_),
                   cfg_with(foo = 1)),
              "`config`"),
    cases_for(from_config(.bad), list(cfg_with(num_heads = 0), cfg_with(num_heads = 1.5),
                                      structure(list(key_dim = 2), class_name = "MultiHeadAttention")),
              "`num_heads`"),
    cases_for(from_config(.bad), list(cfg_with(key_dim = NA), cfg_with(key_dim = "2")), "`key_dim`"),
    cases_for(from_config(.bad), list(cfg_with(dtype = "int8")), "`dtype`"),
    cases_for(from_config(.bad), list(cfg_with(output_shape = 0)), "`output_shape`"),
    cases_for(from_config(.bad), list(cfg_with(sliding_window = -1)), "`sliding_window`"),
    cases_for(from_config(.bad), list(cfg_with(kernel_initializer = list(class_name = "Nope"))),
              "`kernel_initializer"),
    cases_for(from_config(.bad), list(cfg_with(flash_attention = TRUE, dropout = 0.5)),
              "set dropout to 0.0")
  ))
})

bad_shapes <- list(NULL, "a", TRUE, c(2, 8), c(2, 8, NA), c(2, 8.5, 16), c(2, -1, 16), c(2, 0, 16),
                   c(0, 8, 16), c(2, 8, 0), c(2, Inf, 16), c(2, NaN, 16), list("a", 8, 16),
                   matrix(c(2, 8, 16), 1), character(0), c(2, 2^31, 16))

test_that("$build() and $compute_output_shape(): bad shapes name the shape argument", {
  run_cases(c(
    cases_for(fresh()$build(.bad, dim(v)), bad_shapes, "`query_shape`"),
    cases_for(fresh()$build(dim(x), .bad), bad_shapes, "`value_shape`"),
    cases_for(fresh()$build(dim(x), dim(v), .bad), bad_shapes[-1][-3], "`key_shape`"),
    cases_for(fresh()$compute_output_shape(.bad, dim(v)), bad_shapes, "`query_shape`"),
    cases_for(fresh()$compute_output_shape(dim(x), .bad), bad_shapes, "`value_shape`"),
    cases_for(fresh()$compute_output_shape(dim(x), dim(v), .bad), bad_shapes[-1][-3], "`key_shape`"),
    list(
      case(fresh()$build(), "`query_shape`"),
      case(fresh()$build(dim(x)), "`value_shape`"),
      case(fresh()$build(value_shape = dim(v)), "`query_shape`"),
      case(fresh()$compute_output_shape(), "`query_shape`"),
      case(fresh()$compute_output_shape(dim(x)), "`value_shape`"),
      case(fresh()$build(dim(x), dim(v), foo = 1), "`foo`", "$build()"),
      case(fresh()$build(dim(x), dim(v), dim(k), 1), "Too many arguments", "(got 4)",
           "query_shape, value_shape, key_shape"),
      case(fresh()$compute_output_shape(dim(x), dim(v), shape = 1), "`shape`"),
      case(built()$get_weights(1), "$get_weights() (got 1)", "Its arguments: none"),
      case(built()$count_params(trainable = TRUE), "`trainable`"),
      case(built()$set_weights(w, w), "(got 2)"),
      case(fresh()$build(dim(x), c(2, 3, 1, 6)), "`query` and `value` must have the same rank"),
      case(built()$build(dim(x), dim(v)), "already built")
    )
  ))
  # the key shape may be NA where the value's is: shapes, not sizes, are compared
  expect_identical(layer_multi_head_attention(num_heads = 2, key_dim = 2)$compute_output_shape(
    c(NA, 5, 8), c(NA, 3, 6), c(2, 3, 4)), c(NA, 5L, 8L))
})

ro_properties <- c("num_heads", "key_dim", "value_dim", "dropout", "use_bias", "output_shape",
                   "attention_axes", "query_dense", "key_dense", "value_dense", "output_dense", "name",
                   "built", "dtype", "weights", "trainable_weights", "losses", "use_gate", "sliding_window",
                   "seed", "flash_attention", "trainable", "build", "set_weights", "foo")

test_that("layer properties are read-only; unknown properties are errors naming them", {
  env <- fixtures()
  for (p in ro_properties) {
    mha <- env$built()
    before <- get_config(mha)
    assign_it <- substitute(mha$P <- 3, list(P = as.name(p)))
    expect_error(eval(assign_it), paste0("`", p, "` of a layer is read-only"), fixed = TRUE,
                 class = "multihead_error_readonly")
    expect_error(mha[[p]] <- 3, paste0("`", p, "` of a layer is read-only"), fixed = TRUE,
                 class = "multihead_error")
    expect_identical(get_config(mha), before)
    expect_true(is.function(mha) && mha$built)
  }
  mha <- env$fresh()
  expect_error(mha$foo, "`foo`", fixed = TRUE, class = "multihead_error")
  expect_error(mha[["num_head"]], "`num_head`", fixed = TRUE, class = "multihead_error")
  expect_error(mha$query_dense, "`query_dense`", fixed = TRUE, class = "multihead_error")
})

test_that("set_num_threads(): bad values name `n` and change nothing", {
  old <- get_num_threads()
  on.exit(set_num_threads(old), add = TRUE)
  for (bad in list(NA, NaN, Inf, 0, -1, 1.5, "2", TRUE, c(1, 2), numeric(0), list(1), matrix(1), 2^31)) {
    expect_error(set_num_threads(bad), "`n`", fixed = TRUE, class = "multihead_error",
                 info = paste(deparse(bad), collapse = ""))
    expect_identical(get_num_threads(), old)
  }
  expect_error(set_num_threads(), "`n`", fixed = TRUE, class = "multihead_error")
})

test_that("the EinsumDense sub-layers reject bad inputs, naming them", {
  run_cases(cases_for(built()$query_dense(.bad),
                      list("a", NULL, 1, array(1, c(2, 5, 7)), array(1, c(2, 5, 0)), array(TRUE, c(2, 5, 8)),
                           with_na(array(1, c(2, 5, 8)))),
                      "`inputs`"))
})
