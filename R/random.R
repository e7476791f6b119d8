# keras3's random functions (random_uniform(), random_normal(), ...), seed
# generators and set_random_seed().
#
# Seeds, as in Keras 3. Every draw is keyed by a pair (seed, counter):
#   * an integer `seed` gives the key (seed, 0): the same values on every
#     call (a generator made with that seed gives them on its first draw);
#   * a seed generator (random_seed_generator()) gives (its seed, its
#     counter) and advances the counter, so each draw differs and the
#     sequence is reproducible from the generator's seed;
#   * `seed = NULL` draws from the package's global generator, made on first
#     use with a seed taken from R's RNG, and reset by set_random_seed().
# The values of a key come from R's Mersenne-Twister (inversion normals,
# rejection sampling) seeded with a hash of the key; R's own stream
# (.Random.seed, and the RNG kind) is saved before and restored after, so
# drawing never disturbs it.
#
# A generator is an environment (reference semantics: it advances wherever
# it is used) of plain R data, so saveRDS() of a layer holding one keeps it.
#
# Random functions are graph ops: on symbolic operands, or whenever a custom
# layer's call() is being traced (even with no tensor operand), they record
# a node whose forward draws a new key on every run (the generator or the
# global generator advances; an integer seed repeats its values, as in
# Keras). Eagerly they return R arrays.

.random_state <- new.env(parent = emptyenv())

# ---- seed generators ----------------------------------------------------------

#' Seed generators
#'
#' `random_seed_generator()` makes a seed generator (Keras's
#' `SeedGenerator`): pass it as the `seed` of the random functions
#' ([random_normal()], [random_uniform()], ...) to get different values on
#' every call, reproducibly from the generator's seed. An integer `seed`
#' instead gives the same values on every call, and `seed = NULL` uses a
#' global generator (see [set_random_seed()]).
#'
#' The generator is state that advances on each draw (also inside a model or
#' a custom layer's `call()`: every run of the graph draws new values). It is
#' plain R data, so a layer holding one can be saved with [saveRDS()]. Its
#' fields: `$seed`, `$counter` (draws so far), `$name`, `$state` (both, as
#' Keras's state variable), `$get_config()`.
#'
#' @param seed `NULL` or a whole number: the initial seed. With `NULL` it is
#'   drawn from R's random number generator (so [set.seed()] makes it
#'   reproducible).
#' @param name `NULL` or a string, the generator's name.
#' @param ... For compatibility: `backend` is accepted and ignored.
#' @returns A seed generator (class `multihead_seed_generator`).
#' @family random
#' @export
#' @examples
#' gen <- random_seed_generator(seed = 42)
#' a <- random_normal(c(2, 3), seed = gen)
#' b <- random_normal(c(2, 3), seed = gen)   # different values
#' gen$counter
random_seed_generator <- function(seed = NULL, name = NULL, ...) {
  dots <- list(...)
  extra <- setdiff(names(dots), "backend")
  if (length(dots) && (is.null(names(dots)) || any(!nzchar(names(dots))) || length(extra))) {
    bad <- if (is.null(names(dots)) || any(!nzchar(names(dots)))) "unnamed arguments" else
      paste0("`", extra, "`", collapse = ", ")
    abort_arg("...", "empty (random_seed_generator() takes `seed` and `name`; `backend` is ignored)", bad)
  }
  seed <- check_seed(seed, "seed")
  name <- check_string(name, "name", null_ok = TRUE)
  if (is.null(seed)) seed <- draw_seed()
  new_seed_generator(seed, if (is.null(name)) unique_layer_name("seed_generator") else name)
}

#' @noRd
new_seed_generator <- function(seed, name) {
  g <- new.env(parent = emptyenv())
  g$seed <- as.integer(seed)
  g$counter <- 0
  g$name <- name
  class(g) <- "multihead_seed_generator"
  g
}

#' @noRd
is_seed_generator <- function(x) inherits(x, "multihead_seed_generator") && is.environment(x)

#' @export
`$.multihead_seed_generator` <- function(x, name) {
  switch(name,
    state = c(.subset2(x, "seed"), .subset2(x, "counter")),
    get_config = function() list(seed = .subset2(x, "seed"), name = .subset2(x, "name")),
    `next` = function() seed_key(x),
    {
      if (!exists(name, envir = x, inherits = FALSE)) {
        abort_msg(sprintf("A seed generator has no field `%s`. Available: counter, get_config, name, next, seed, state.",
                          name))
      }
      .subset2(x, name)
    })
}

#' @export
format.multihead_seed_generator <- function(x, ...) {
  sprintf("<SeedGenerator name=%s seed=%d counter=%.0f>", .subset2(x, "name"), .subset2(x, "seed"),
          .subset2(x, "counter"))
}

#' @export
print.multihead_seed_generator <- function(x, ...) {
  cat(format(x), "\n", sep = "")
  invisible(x)
}

# Op params as plain data for configs (get_config(), save_model()): a seed
# generator becomes list(seed, counter, name) with class
# "multihead_seed_generator_config"; random_params_from_config() makes a
# generator from it again (with that state), as Keras rebuilds a
# SeedGenerator from its config.
#' @noRd
random_params_to_config <- function(params) {
  for (i in seq_along(params)) {
    g <- params[[i]]
    if (is_seed_generator(g)) {
      params[[i]] <- structure(list(seed = .subset2(g, "seed"), counter = .subset2(g, "counter"),
                                    name = .subset2(g, "name")), class = "multihead_seed_generator_config")
    }
  }
  params
}

#' @noRd
random_params_from_config <- function(params) {
  for (i in seq_along(params)) {
    cfg <- params[[i]]
    if (inherits(cfg, "multihead_seed_generator_config")) {
      # read from a model file: plain values of the expected types, or our error
      ok <- is.numeric(cfg$seed) && length(cfg$seed) == 1L && is.finite(cfg$seed) &&
        abs(cfg$seed) <= .Machine$integer.max && cfg$seed == round(cfg$seed) &&
        is.numeric(cfg$counter) && length(cfg$counter) == 1L && is.finite(cfg$counter) && cfg$counter >= 0 &&
        (is.null(cfg$name) || (is.character(cfg$name) && length(cfg$name) == 1L && !is.na(cfg$name)))
      if (!ok) {
        abort_msg("The model file is not valid: a seed generator's record has a bad seed, counter or name.",
                  class = "multihead_error_file")
      }
      g <- new_seed_generator(cfg$seed, cfg$name)
      g$counter <- as.double(cfg$counter)
      params[[i]] <- g
    }
  }
  params
}

# The global generator, made on first use from R's RNG.
#' @noRd
global_seed_generator <- function() {
  g <- .random_state$global
  if (is.null(g)) {
    g <- new_seed_generator(draw_seed(), "global_seed_generator")
    .random_state$global <- g
  }
  g
}

#' Set the random seeds
#'
#' As keras3's `set_random_seed()`: one call makes a program reproducible.
#' It sets R's seed with [set.seed()] (which is what layer initializers,
#' dropout layers and `fit()`'s shuffling draw from when they have no seed
#' of their own) and resets the global seed generator used by the random
#' functions called with `seed = NULL` ([random_normal()] and the others),
#' to a state determined by `seed`.
#'
#' @param seed A whole number.
#' @returns `NULL`, invisibly.
#' @family random
#' @export
#' @examples
#' set_random_seed(1)
#' a <- random_uniform(3)
#' set_random_seed(1)
#' identical(a, random_uniform(3))
set_random_seed <- function(seed) {
  if (missing(seed)) abort_arg("seed", "supplied: a whole number")
  seed <- check_whole(seed, "seed", min = -.Machine$integer.max)
  set.seed(seed)
  .random_state$global <- new_seed_generator(derive_seed(seed, 1L), "global_seed_generator")
  invisible(NULL)
}

# ---- keys and R's RNG -------------------------------------------------------

# A `seed` argument: NULL, a whole number or a seed generator.
#' @noRd
check_random_seed <- function(seed, fun) {
  if (is.null(seed) || is_seed_generator(seed)) return(seed)
  ok <- is.numeric(seed) && length(seed) == 1L && is.null(dim(seed)) && !is.object(seed) && !is.na(seed) &&
    is.finite(seed) && seed == round(seed) && abs(seed) <= .Machine$integer.max
  if (!ok) {
    abort_arg("seed", sprintf("NULL, a whole number or a seed generator (random_seed_generator()) in %s()", fun),
              describe_value(seed))
  }
  as.integer(seed)
}

# The key c(seed, counter) of the next draw for a checked `seed`; advances a
# generator.
#' @noRd
seed_key <- function(seed) {
  if (is.null(seed)) seed <- global_seed_generator()
  if (is.environment(seed)) {
    count <- .subset2(seed, "counter")
    key <- c(.subset2(seed, "seed"), count)
    assign("counter", count + 1, envir = seed)
    return(key)
  }
  c(seed, 0)
}

# The R seed of a key: a hash of (seed, counter) modulo 2^31 - 1, distinct for
# the distinct counters of one seed. Exact in doubles.
#' @noRd
key_rng_seed <- function(key) {
  p <- 2147483647
  h <- ((key[1L] %% p) * 48271 + 12345) %% p
  as.integer((h * 16807 + (key[2L] %% p) * 69621 + 1) %% p)
}

# Evaluates `expr` with R's RNG (Mersenne-Twister, inversion, rejection)
# seeded from `key`, then puts R's RNG state and kind back.
#' @noRd
with_rng_key <- function(key, expr) {
  env <- globalenv()
  old <- get0(".Random.seed", envir = env, inherits = FALSE)
  if (is.null(old)) {
    kinds <- RNGkind()
    on.exit({
      suppressWarnings(RNGkind(kinds[1L], kinds[2L], kinds[3L]))
      if (exists(".Random.seed", envir = env, inherits = FALSE)) rm(".Random.seed", envir = env)
    })
  } else {
    on.exit(assign(".Random.seed", old, envir = env))
  }
  s <- key_rng_seed(key)
  # 10403: Mersenne-Twister, Inversion, Rejection already (the default kinds)
  if (!is.null(old) && old[1L] == 10403L) set.seed(s) else
    set.seed(s, kind = "Mersenne-Twister", normal.kind = "Inversion", sample.kind = "Rejection")
  expr
}

# ---- argument checks ----------------------------------------------------------

# `shape` of a draw: a vector (or list) of whole numbers >= 0, or a symbolic
# rank-1 integer tensor (a shape known when the graph runs). Returns
# list(shape = <integer vector or NULL>, operand = <symbolic tensor or NULL>).
#' @noRd
check_random_shape <- function(shape, fun) {
  if (is_symbolic(shape)) {
    if (length(shape$shape) != 1L || is.na(shape$shape) || !is_int_dtype(shape$dtype)) {
      abort_arg("shape", sprintf("a shape in %s(): whole numbers, or a rank-1 integer tensor of known length",
                                 fun), describe_value(shape))
    }
    return(list(shape = NULL, operand = shape))
  }
  if (is.list(shape) && !is.object(shape)) {
    if (!all(vapply(shape, function(e) is.numeric(e) && length(e) == 1L, logical(1)))) {
      abort_arg("shape", sprintf("a shape in %s(): a vector of whole numbers >= 0", fun), describe_value(shape))
    }
    shape <- unlist(shape)
    if (is.null(shape)) shape <- integer()
  }
  ok <- is.numeric(shape) && !is.object(shape) && is.null(dim(shape)) && !anyNA(shape) &&
    all(is.finite(shape)) && all(shape == round(shape)) && all(shape >= 0) &&
    all(shape <= .Machine$integer.max)
  if (!ok) {
    hint <- if (is.numeric(shape) && anyNA(shape)) " (every size known: no NA)" else ""
    abort_arg("shape", sprintf("a shape in %s(): a vector of whole numbers >= 0%s", fun, hint),
              describe_value(shape))
  }
  check_size(shape, "shape", sprintf("the result of %s()", fun))
  list(shape = as.integer(shape), operand = NULL)
}

#' @noRd
check_random_float_dtype <- function(dtype, fun) {
  if (is.null(dtype)) return(config_floatx())
  if (!(is.character(dtype) && length(dtype) == 1L && !is.na(dtype) && is_float_dtype(dtype))) {
    abort_arg("dtype", sprintf("NULL, \"float32\" or \"float64\" in %s()", fun), describe_value(dtype))
  }
  dtype
}

#' @noRd
check_random_int_dtype <- function(dtype, fun) {
  if (!(is.character(dtype) && length(dtype) == 1L && !is.na(dtype) && is_int_dtype(dtype))) {
    abort_arg("dtype", sprintf("\"int32\" or \"int64\" in %s()", fun), describe_value(dtype))
  }
  dtype
}

#' @noRd
random_check_number <- function(x, arg, fun) {
  if (!(is.numeric(x) && length(x) == 1L && is.null(dim(x)) && !is.object(x) && !is.na(x) && is.finite(x))) {
    abort_arg(arg, sprintf("a finite number in %s()", fun), describe_value(x))
  }
  as.double(x)
}

# A distribution parameter: a number or an array of numbers broadcastable to
# the draw's shape, each finite and within [lower, upper] (lower excluded
# when `open_lower`), whole numbers when `whole`.
#' @noRd
random_check_param <- function(x, arg, fun, lower = -Inf, upper = Inf, open_lower = FALSE, whole = FALSE) {
  if (is_variable(x)) x <- variable_value(x)
  what <- sprintf("%s %s%s in %s()", if (whole) "whole numbers" else "numbers",
                  if (open_lower) sprintf("> %s", lower) else if (is.finite(lower)) sprintf(">= %s", lower) else "",
                  if (is.finite(upper)) sprintf(" and <= %s", upper) else "", fun)
  if (!(is.numeric(x) && length(x) >= 1L && (!is.object(x) || is.array(x)))) {
    abort_arg(arg, paste("a number or an array of", what), describe_value(x))
  }
  bad <- is.na(x) | !is.finite(x) | x < lower | x > upper | (open_lower & x == lower) | (whole & x != round(x))
  if (any(bad)) abort_arg(arg, paste("made of", what), sprintf("a value %s", format(x[which(bad)[1L]])))
  storage.mode(x) <- "double"
  x
}

# A parameter as a vector over the draw's elements (broadcast to `shape`).
#' @noRd
random_param <- function(p, shape, arg, fun) {
  if (length(p) == 1L) return(as.vector(p))
  ps <- value_shape(p)
  ok <- tryCatch(identical(as.integer(broadcast_shapes(ps, shape)), as.integer(shape)),
                 multihead_error = function(e) FALSE)
  if (!ok) {
    abort_arg(arg, sprintf("broadcastable to `shape` %s in %s()", fmt_shape(shape), fun),
              sprintf("shape %s", fmt_shape(ps)))
  }
  as.vector(broadcast_value(p, ps, shape))
}

# Records the op while a trace is active (even without a symbolic operand, so
# every run of the trace draws anew); otherwise op_call().
#' @noRd
random_call <- function(name, operands, params) {
  if (trace_active()) return(op_record(op_def(name), operands, params))
  op_call(name, operands, params)
}

# Calls a "shaped" random op (uniform, normal, truncated normal, integer).
#' @noRd
random_shaped_call <- function(name, shape, params) {
  params$shape <- shape$shape
  operands <- if (is.null(shape$operand)) list() else list(shape = shape$operand)
  random_call(name, operands, params)
}

# The output shape of a shaped op from its specs and params.
#' @noRd
random_output_shape <- function(specs, params) {
  s <- specs$shape
  if (is.null(s)) return(params$shape)
  rep(NA_integer_, s$shape)
}

# The run-time shape of a shaped op.
#' @noRd
random_runtime_shape <- function(values, params, fun) {
  s <- values$shape
  if (is.null(s)) return(params$shape)
  check_random_shape(as.vector(s), fun)$shape
}

#' @noRd
random_shape_value <- function(x, shape) {
  if (length(shape)) dim(x) <- shape
  x
}

# ---- the ops --------------------------------------------------------------------

# A random op drawing a tensor of a given shape: draw(n, shape, params)
# returns the n values (R's RNG already seeded from the draw's key).
#' @noRd
register_shaped_random <- function(name, class_name, draw) {
  force(draw)
  register_op(name, class_name, fun = name,
    infer = function(specs, params) op_spec(random_output_shape(specs, params), params$dtype),
    forward = function(values, params) {
      shape <- random_runtime_shape(values, params, name)
      n <- prod(shape)
      out <- with_rng_key(seed_key(params$seed), draw(n, shape, params))
      list(output = random_shape_value(out, shape), cache = list(n_operands = length(values)))
    },
    # no gradient flows into a draw (nor into an integer shape operand)
    backward = function(grad, cache, params) list(shape = NULL)[seq_len(cache$n_operands)])
}

#' @noRd
register_random_ops <- function() {
  register_shaped_random("random_uniform", "RandomUniform", function(n, shape, params) {
    params$minval + (params$maxval - params$minval) * stats::runif(n)
  })
  register_shaped_random("random_normal", "RandomNormal", function(n, shape, params) {
    params$mean + params$stddev * stats::rnorm(n)
  })
  register_shaped_random("random_truncated_normal", "RandomTruncatedNormal", function(n, shape, params) {
    draw_truncated_normal(n, params$mean, params$stddev)
  })
  register_shaped_random("random_integer", "RandomInteger", function(n, shape, params) {
    k <- sample.int(as.double(params$maxval) - params$minval, n, replace = TRUE)
    as.integer(k + (params$minval - 1))
  })
  register_shaped_random("random_gamma", "RandomGamma", function(n, shape, params) {
    stats::rgamma(n, shape = params$alpha)
  })
  register_shaped_random("random_beta", "RandomBeta", function(n, shape, params) {
    stats::rbeta(n, random_param(params$alpha, shape, "alpha", "random_beta"),
                 random_param(params$beta, shape, "beta", "random_beta"))
  })
  register_shaped_random("random_binomial", "RandomBinomial", function(n, shape, params) {
    as.double(stats::rbinom(n, random_param(params$counts, shape, "counts", "random_binomial"),
                            random_param(params$probabilities, shape, "probabilities", "random_binomial")))
  })

  register_op("random_categorical", "RandomCategorical", fun = "random_categorical",
    infer = function(specs, params) {
      s <- specs$logits
      if (is.null(s)) abort_arg("logits", "supplied: a 2-D tensor (batch_size, num_classes)")
      if (length(s$shape) != 2L) {
        abort_op("random_categorical", "`logits` must be 2-D (batch_size, num_classes)", specs)
      }
      if (identical(s$dtype, "bool")) abort_op("random_categorical", "`logits` must be numeric", specs)
      if (!is.na(s$shape[2L]) && s$shape[2L] == 0L) {
        abort_op("random_categorical", "`logits` must have at least one class", specs)
      }
      op_spec(c(s$shape[1L], params$num_samples), params$dtype)
    },
    forward = function(values, params) {
      list(output = random_draw_categorical(values$logits, params), cache = NULL)
    })

  register_op("random_shuffle", "RandomShuffle", fun = "random_shuffle",
    infer = function(specs, params) {
      s <- specs$x
      if (is.null(s)) abort_arg("x", "supplied: a tensor")
      if (length(s$shape) == 0L) abort_op("random_shuffle", "`x` must have at least one axis", specs)
      normalize_axis(params$axis, length(s$shape), "axis", "random_shuffle")
      op_spec(s$shape, s$dtype)
    },
    forward = function(values, params) {
      x <- values$x
      d <- value_shape(x)
      ax <- normalize_axis(params$axis, length(d), "axis", "random_shuffle") + 1L
      perm <- with_rng_key(seed_key(params$seed), sample.int(d[ax]))
      list(output = random_take_along(x, d, ax, perm), cache = list(perm = perm, ax = ax, d = d))
    },
    backward = function(grad, cache, params) {
      list(x = random_take_along(grad, cache$d, cache$ax, order(cache$perm)))
    })

  register_op("random_dropout", "RandomDropout", fun = "random_dropout",
    infer = function(specs, params) {
      s <- specs$inputs
      if (is.null(s)) abort_arg("inputs", "supplied: a float tensor")
      if (!is_float_dtype(s$dtype)) {
        abort_op("random_dropout", "`inputs` must be a float tensor (float32 or float64)", specs)
      }
      ns <- params$noise_shape
      if (!is.null(ns)) random_noise_dims(ns, s$shape, unknown_ok = TRUE)
      op_spec(s$shape, s$dtype)
    },
    forward = function(values, params) {
      x <- values$inputs
      d <- value_shape(x)
      ns <- if (is.null(params$noise_shape)) d else random_noise_dims(params$noise_shape, d)
      keep <- 1 - params$rate
      u <- with_rng_key(seed_key(params$seed), stats::runif(prod(ns)))
      m <- broadcast_value(u < keep, ns, d)
      out <- x / keep
      out[!m] <- 0
      if (length(d)) dim(out) <- d else dim(out) <- NULL
      list(output = out, cache = list(scale = m / keep))
    },
    backward = function(grad, cache, params) list(inputs = grad * cache$scale))
}

# A noise shape against an input shape `d`: same rank, each entry 1, NA (the
# input's size) or the input's size. Returns the filled-in noise dims.
#' @noRd
random_noise_dims <- function(ns, d, unknown_ok = FALSE) {
  if (length(ns) != length(d)) {
    abort_arg("noise_shape", sprintf("of the input's rank %d in random_dropout() (input shape %s)", length(d),
                                     fmt_shape(d)), fmt_shape(ns))
  }
  ns[is.na(ns)] <- d[is.na(ns)]
  bad <- !is.na(ns) & !is.na(d) & ns != 1L & ns != d
  if (!unknown_ok) bad <- bad | is.na(ns)
  if (any(bad)) {
    abort_arg("noise_shape", sprintf("1, NA or the input's size on each axis in random_dropout() (input shape %s)",
                                     fmt_shape(d)), fmt_shape(ns))
  }
  ns
}

# x indexed with `idx` along axis `ax` (1-based) of dims d.
#' @noRd
random_take_along <- function(x, d, ax, idx) {
  if (length(d) == 1L) {
    out <- x[idx]
    if (!is.null(dim(x))) dim(out) <- d
    return(out)
  }
  args <- rep(list(quote(expr = )), length(d))
  args[[ax]] <- idx
  do.call(`[`, c(list(array(x, d)), args, list(drop = FALSE)))
}

# Samples of a categorical distribution per row of `logits` (B, K): the
# Gumbel-max trick, argmax_k(logits + Gumbel noise), over the (row, sample)
# pairs of the (B, num_samples) result in column-major order, in blocks of
# about 2^22 noise values.
#' @noRd
random_draw_categorical <- function(logits, params) {
  d <- value_shape(logits)
  b <- d[1L]; k <- d[2L]; s <- params$num_samples
  lg <- matrix(as.double(logits), b, k)
  if (anyNA(lg) || any(lg == Inf)) {
    abort_arg("logits", "finite numbers or -Inf (a class that is never drawn) in random_categorical()",
              "NaN, NA or Inf values")
  }
  if (b && any(rowSums(lg == -Inf) == k)) {
    abort_arg("logits", "a row with at least one finite logit in random_categorical()", "a row of -Inf only")
  }
  check_size(c(b, s), "num_samples", "the result of random_categorical()")
  out <- matrix(0L, b, s)
  pairs <- as.double(b) * s
  if (pairs == 0) return(categorical_index(out, params))
  block <- max(1, floor(2^22 / k))
  with_rng_key(seed_key(params$seed), {
    for (start in seq(1, pairs, by = block)) {
      idx <- seq(start, min(pairs, start + block - 1))
      rows <- (idx - 1) %% b + 1
      g <- matrix(-log(-log(stats::runif(length(idx) * k))), length(idx), k)
      out[idx] <- max.col(lg[rows, , drop = FALSE] + g, ties.method = "first")
    }
  })
  categorical_index(out, params)
}

#' @noRd
categorical_index <- function(out, params) {
  if (isTRUE(params$zero_indexed)) out <- out - 1L
  out
}

# ---- the user-facing functions ------------------------------------------------

#' Draw random values
#'
#' keras3's random functions. `random_uniform()`: uniform on
#' \[`minval`, `maxval`). `random_normal()`: normal with mean `mean` and
#' standard deviation `stddev`. `random_truncated_normal()`: normal, values
#' more than two standard deviations from the mean drawn again.
#' `random_integer()`: whole numbers uniform on \[`minval`, `maxval`)
#' (`maxval` excluded, as in Keras; a fractional `maxval` is rounded up, as
#' keras3 does).
#'
#' `seed`: an integer gives the same values on every call; a generator from
#' [random_seed_generator()] gives new values on every call, reproducibly;
#' `NULL` uses the global generator (reset by [set_random_seed()]). Drawing
#' never changes R's own random stream (`.Random.seed`).
#'
#' Inside a custom layer's `call()` (or with a symbolic `shape`), the draw
#' is an operation of the model's graph: each run draws new values from the
#' generator (or the same ones for an integer seed). Otherwise the result is
#' an R array.
#'
#' @param shape The shape of the result: a vector of whole numbers (`integer()` for
#'   a single number), or a rank-1 integer symbolic tensor.
#' @param minval,maxval The range: `minval` included, `maxval` excluded.
#' @param mean,stddev The mean and standard deviation (`stddev >= 0`).
#' @param dtype The result's dtype: `NULL` ([config_floatx()]), `"float32"`
#'   or `"float64"`; for `random_integer()` `"int32"` or `"int64"`.
#' @param seed `NULL`, a whole number, or a seed generator
#'   ([random_seed_generator()]).
#' @returns An array of the given shape (a single number for an empty
#'   shape), or a symbolic tensor.
#' @family random
#' @export
#' @examples
#' random_uniform(c(2, 3), seed = 1)
#' random_normal(c(2, 2), mean = 10, stddev = 0.1, seed = 1)
#' random_truncated_normal(5, seed = 1)
#' random_integer(10, minval = 1, maxval = 7, seed = 1)   # dice
random_uniform <- function(shape, minval = 0, maxval = 1, dtype = NULL, seed = NULL) {
  if (missing(shape)) abort_arg("shape", "supplied: the shape of the result")
  shape <- check_random_shape(shape, "random_uniform")
  minval <- random_check_number(minval, "minval", "random_uniform")
  maxval <- random_check_number(maxval, "maxval", "random_uniform")
  if (maxval < minval) {
    abort_arg("maxval", sprintf("at least `minval` (%s) in random_uniform()", format(minval)), format(maxval))
  }
  random_shaped_call("random_uniform", shape,
                     list(minval = minval, maxval = maxval, dtype = check_random_float_dtype(dtype, "random_uniform"),
                          seed = check_random_seed(seed, "random_uniform")))
}

#' @rdname random_uniform
#' @export
random_normal <- function(shape, mean = 0, stddev = 1, dtype = NULL, seed = NULL) {
  if (missing(shape)) abort_arg("shape", "supplied: the shape of the result")
  shape <- check_random_shape(shape, "random_normal")
  mean <- random_check_number(mean, "mean", "random_normal")
  stddev <- random_check_number(stddev, "stddev", "random_normal")
  if (stddev < 0) abort_arg("stddev", "a number >= 0 in random_normal()", format(stddev))
  random_shaped_call("random_normal", shape,
                     list(mean = mean, stddev = stddev, dtype = check_random_float_dtype(dtype, "random_normal"),
                          seed = check_random_seed(seed, "random_normal")))
}

#' @rdname random_uniform
#' @export
random_truncated_normal <- function(shape, mean = 0, stddev = 1, dtype = NULL, seed = NULL) {
  fun <- "random_truncated_normal"
  if (missing(shape)) abort_arg("shape", "supplied: the shape of the result")
  shape <- check_random_shape(shape, fun)
  mean <- random_check_number(mean, "mean", fun)
  stddev <- random_check_number(stddev, "stddev", fun)
  if (stddev < 0) abort_arg("stddev", sprintf("a number >= 0 in %s()", fun), format(stddev))
  random_shaped_call(fun, shape, list(mean = mean, stddev = stddev, dtype = check_random_float_dtype(dtype, fun),
                                      seed = check_random_seed(seed, fun)))
}

#' @rdname random_uniform
#' @export
random_integer <- function(shape, minval, maxval, dtype = "int32", seed = NULL) {
  fun <- "random_integer"
  if (missing(shape)) abort_arg("shape", "supplied: the shape of the result")
  if (missing(minval)) abort_arg("minval", "supplied: the smallest value (included)")
  if (missing(maxval)) abort_arg("maxval", "supplied: the upper bound (excluded)")
  shape <- check_random_shape(shape, fun)
  minval <- random_check_number(minval, "minval", fun)
  maxval <- random_check_number(maxval, "maxval", fun)
  if (minval != round(minval) || abs(minval) > .Machine$integer.max) {
    abort_arg("minval", sprintf("a whole number in the integer range in %s()", fun), format(minval))
  }
  maxval <- ceiling(maxval)
  if (abs(maxval - 1) > .Machine$integer.max) {
    abort_arg("maxval", sprintf("at most 2^31 in %s() (values are 32-bit integers)", fun), format(maxval))
  }
  if (maxval <= minval) {
    abort_arg("maxval", sprintf("greater than `minval` (%s) in %s() (the range [minval, maxval) must not be empty)",
                                format(minval), fun), format(maxval))
  }
  random_shaped_call(fun, shape, list(minval = minval, maxval = maxval, dtype = check_random_int_dtype(dtype, fun),
                                      seed = check_random_seed(seed, fun)))
}

#' Draw from the gamma, beta and binomial distributions
#'
#' keras3's `random_gamma()` (shape parameter `alpha`, scale 1),
#' `random_beta()` and `random_binomial()` (`counts` trials of success
#' probability `probabilities`; the counts are returned as floats, as in
#' Keras). The parameters are numbers or arrays broadcastable to `shape`.
#' Seeds as in [random_uniform()].
#'
#' @inheritParams random_uniform
#' @param alpha,beta Positive numbers (or arrays broadcastable to `shape`).
#' @param counts Whole numbers >= 0, the numbers of trials.
#' @param probabilities Numbers in \[0, 1\], the success probabilities.
#' @param dtype `NULL` ([config_floatx()]), `"float32"` or `"float64"`.
#' @returns An array of the given shape, or a symbolic tensor.
#' @family random
#' @export
#' @examples
#' random_gamma(5, alpha = 2, seed = 1)
#' random_beta(c(2, 3), alpha = 2, beta = 5, seed = 1)
#' random_binomial(4, counts = 10, probabilities = c(0.1, 0.5, 0.9, 1), seed = 1)
random_gamma <- function(shape, alpha, dtype = NULL, seed = NULL) {
  fun <- "random_gamma"
  if (missing(shape)) abort_arg("shape", "supplied: the shape of the result")
  if (missing(alpha)) abort_arg("alpha", "supplied: the shape parameter of the distribution (> 0)")
  shape <- check_random_shape(shape, fun)
  alpha <- random_check_param(alpha, "alpha", fun, lower = 0, open_lower = TRUE)
  if (!is.null(shape$shape)) random_param(alpha, shape$shape, "alpha", fun)
  random_shaped_call(fun, shape, list(alpha = alpha, dtype = check_random_float_dtype(dtype, fun),
                                      seed = check_random_seed(seed, fun)))
}

#' @rdname random_gamma
#' @export
random_beta <- function(shape, alpha, beta, dtype = NULL, seed = NULL) {
  fun <- "random_beta"
  if (missing(shape)) abort_arg("shape", "supplied: the shape of the result")
  if (missing(alpha)) abort_arg("alpha", "supplied: the first parameter of the distribution (> 0)")
  if (missing(beta)) abort_arg("beta", "supplied: the second parameter of the distribution (> 0)")
  shape <- check_random_shape(shape, fun)
  alpha <- random_check_param(alpha, "alpha", fun, lower = 0, open_lower = TRUE)
  beta <- random_check_param(beta, "beta", fun, lower = 0, open_lower = TRUE)
  if (!is.null(shape$shape)) {
    random_param(alpha, shape$shape, "alpha", fun)
    random_param(beta, shape$shape, "beta", fun)
  }
  random_shaped_call(fun, shape, list(alpha = alpha, beta = beta, dtype = check_random_float_dtype(dtype, fun),
                                      seed = check_random_seed(seed, fun)))
}

#' @rdname random_gamma
#' @export
random_binomial <- function(shape, counts, probabilities, dtype = NULL, seed = NULL) {
  fun <- "random_binomial"
  if (missing(shape)) abort_arg("shape", "supplied: the shape of the result")
  if (missing(counts)) abort_arg("counts", "supplied: the numbers of trials")
  if (missing(probabilities)) abort_arg("probabilities", "supplied: the success probabilities")
  shape <- check_random_shape(shape, fun)
  counts <- random_check_param(counts, "counts", fun, lower = 0, upper = .Machine$integer.max, whole = TRUE)
  probabilities <- random_check_param(probabilities, "probabilities", fun, lower = 0, upper = 1)
  if (!is.null(shape$shape)) {
    random_param(counts, shape$shape, "counts", fun)
    random_param(probabilities, shape$shape, "probabilities", fun)
  }
  random_shaped_call(fun, shape, list(counts = counts, probabilities = probabilities,
                                      dtype = check_random_float_dtype(dtype, fun),
                                      seed = check_random_seed(seed, fun)))
}

#' Draw from categorical distributions
#'
#' keras3's `random_categorical()`: `logits` is a 2-D tensor (batch_size,
#' num_classes) of unnormalised log-probabilities, one distribution per row;
#' the result (batch_size, num_samples) holds independent class draws of each
#' row: 1-based class indices by default (keras3's convention), 0-based with
#' `zero_indexed = TRUE`. A logit of `-Inf` marks a class that is never drawn.
#'
#' @param logits A 2-D tensor (array, symbolic tensor or variable).
#' @param num_samples The number of draws per row (a whole number >= 0).
#' @param dtype `"int32"` or `"int64"`.
#' @param seed `NULL`, a whole number, or a seed generator (see
#'   [random_uniform()]).
#' @param zero_indexed `FALSE` (1 is the first class) or `TRUE` (0 is).
#' @returns An integer matrix (batch_size, num_samples), or a symbolic tensor.
#' @family random
#' @export
#' @examples
#' logits <- log(rbind(c(0.7, 0.2, 0.1), c(0, 0.5, 0.5)))
#' random_categorical(logits, num_samples = 8, seed = 1)
random_categorical <- function(logits, num_samples, dtype = "int32", seed = NULL, zero_indexed = FALSE) {
  fun <- "random_categorical"
  if (missing(logits)) abort_arg("logits", "supplied: a 2-D tensor (batch_size, num_classes)")
  if (missing(num_samples)) abort_arg("num_samples", "supplied: the number of draws per row")
  num_samples <- check_whole(num_samples, "num_samples", min = 0L)
  random_call(fun, list(logits = logits),
              list(num_samples = num_samples, dtype = check_random_int_dtype(dtype, fun),
                   seed = check_random_seed(seed, fun), zero_indexed = check_flag(zero_indexed, "zero_indexed")))
}

#' Shuffle along an axis
#'
#' keras3's `random_shuffle()`: the slices of `x` along `axis` in a random
#' order (a uniformly random permutation). The gradient flows back through
#' the same permutation.
#'
#' @param x A tensor of rank >= 1.
#' @param axis The axis to shuffle: 1-based, negative from the end (keras3's
#'   convention); default 1, the batch axis.
#' @param seed `NULL`, a whole number, or a seed generator (see
#'   [random_uniform()]).
#' @returns An array like `x`, or a symbolic tensor.
#' @family random
#' @export
#' @examples
#' random_shuffle(1:10, seed = 1)
#' random_shuffle(matrix(1:6, 2), axis = 2, seed = 1)   # columns shuffled
random_shuffle <- function(x, axis = 1L, seed = NULL) {
  if (missing(x)) abort_arg("x", "supplied: a tensor")
  if (!is.numeric(axis) || length(axis) != 1L || is.na(axis) || axis != round(axis) || is.object(axis)) {
    abort_arg("axis", "a single whole number (1-based axis; -1 is the last) in random_shuffle()",
              describe_value(axis))
  }
  random_call("random_shuffle", list(x = x),
              list(axis = as.integer(axis), seed = check_random_seed(seed, "random_shuffle")))
}

#' Random dropout
#'
#' keras3's `random_dropout()`: each element of `inputs` is set to 0 with
#' probability `rate` and the others are divided by `1 - rate` (inverted
#' dropout), whatever the training mode (layers decide when to call it). The
#' gradient is the same mask times `1 / (1 - rate)`.
#'
#' @param inputs A float tensor.
#' @param rate The probability of dropping an element, in \[0, 1).
#' @param noise_shape `NULL` (one draw per element) or the shape of the
#'   random mask, one entry per axis of `inputs`: 1 (the mask is shared
#'   along that axis), `NA` or the input's size.
#' @param seed `NULL`, a whole number, or a seed generator (see
#'   [random_uniform()]).
#' @returns An array like `inputs`, or a symbolic tensor.
#' @family random
#' @export
#' @examples
#' random_dropout(array(1, c(2, 5)), rate = 0.5, seed = 1)
#' random_dropout(array(1, c(2, 5)), rate = 0.5, noise_shape = c(1, NA), seed = 1)
random_dropout <- function(inputs, rate, noise_shape = NULL, seed = NULL) {
  fun <- "random_dropout"
  if (missing(inputs)) abort_arg("inputs", "supplied: a float tensor")
  if (missing(rate)) abort_arg("rate", "supplied: a number in [0, 1)")
  if (!(is.numeric(rate) && length(rate) == 1L && is.null(dim(rate)) && !is.object(rate) && !is.na(rate) &&
        rate >= 0 && rate < 1)) {
    abort_arg("rate", "a number in [0, 1) in random_dropout()", describe_value(rate))
  }
  if (!is.null(noise_shape)) {
    if (is.list(noise_shape) && !is.object(noise_shape)) {
      noise_shape <- unlist(lapply(noise_shape, function(s) if (is.null(s)) NA else s))
    }
    ok <- (is.numeric(noise_shape) || (is.logical(noise_shape) && all(is.na(noise_shape)))) &&
      !is.object(noise_shape) && is.null(dim(noise_shape)) && length(noise_shape) >= 1L
    k <- if (ok) noise_shape[!is.na(noise_shape)] else NULL
    if (!ok || !all(is.finite(k) & k == round(k) & k >= 1 & k <= .Machine$integer.max)) {
      abort_arg("noise_shape", "NULL or a vector of positive whole numbers or NA, one per axis of `inputs`",
                describe_value(noise_shape))
    }
    noise_shape <- as.integer(noise_shape)
  }
  random_call(fun, list(inputs = inputs),
              list(rate = as.double(rate), noise_shape = noise_shape, seed = check_random_seed(seed, fun)))
}
