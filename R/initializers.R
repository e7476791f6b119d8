# Weight initializers with Keras 3 semantics and keras3's R names.
#
# An initializer is a small spec object: list(class_name = <Keras class name>,
# config = <named list of its arguments>) with class "multihead_initializer".
# The layers never call it directly: they call initializer_sample() with the
# weight's shape and its fans. The bottom of this file also holds helpers that
# regularizers.R and constraints.R share (spec objects, printing, parsing of
# names and config lists).

# ---- Exported constructors ---------------------------------------------------

#' Glorot (Xavier) uniform initializer
#'
#' Draws from the uniform distribution on `[-limit, limit]` with
#' `limit = sqrt(6 / (fan_in + fan_out))`, i.e. a variance-scaling
#' initializer with scale 1 and mode `"fan_avg"`.
#'
#' `fan_in` and `fan_out` are the numbers of input and output units of the
#' weight; the layer that owns the weight supplies them (for the projections
#' of multi-head attention they follow Keras's `EinsumDense` rules).
#'
#' @param seed `NULL` or a whole number. With `NULL`, values come from R's
#'   random number generator, so call [set.seed()] first for reproducible
#'   weights. With a number, the values are fixed by the seed (and by the
#'   weight the layer draws them for) and R's random number stream is left
#'   exactly as it was.
#' @returns An initializer: a list of class `"multihead_initializer"` with
#'   elements `class_name` (the Keras class name) and `config` (a named list
#'   of the arguments, with Keras's names), to pass as a layer's
#'   `kernel_initializer` or `bias_initializer`.
#' @references Glorot, X. and Bengio, Y. (2010). Understanding the difficulty
#'   of training deep feedforward neural networks. *AISTATS*.
#' @examples
#' initializer_glorot_uniform()
#' initializer_glorot_uniform(seed = 42)
#' @family initializers
#' @export
initializer_glorot_uniform <- function(seed = NULL) {
  new_initializer("GlorotUniform", list(seed = check_seed(seed)))
}

#' Glorot (Xavier) normal initializer
#'
#' Draws from a normal distribution centred on 0, truncated at two standard
#' deviations, whose standard deviation after truncation is
#' `sqrt(2 / (fan_in + fan_out))` (variance scaling with scale 1, mode
#' `"fan_avg"`).
#'
#' @inheritParams initializer_glorot_uniform
#' @inherit initializer_glorot_uniform return references
#' @examples
#' initializer_glorot_normal(seed = 1)
#' @family initializers
#' @export
initializer_glorot_normal <- function(seed = NULL) {
  new_initializer("GlorotNormal", list(seed = check_seed(seed)))
}

#' He uniform initializer
#'
#' Draws from the uniform distribution on `[-limit, limit]` with
#' `limit = sqrt(6 / fan_in)` (variance scaling with scale 2, mode
#' `"fan_in"`).
#'
#' @inheritParams initializer_glorot_uniform
#' @inherit initializer_glorot_uniform return
#' @references He, K., Zhang, X., Ren, S. and Sun, J. (2015). Delving deep into
#'   rectifiers. *ICCV*. <https://arxiv.org/abs/1502.01852>
#' @examples
#' initializer_he_uniform()
#' @family initializers
#' @export
initializer_he_uniform <- function(seed = NULL) {
  new_initializer("HeUniform", list(seed = check_seed(seed)))
}

#' He normal initializer
#'
#' Draws from a normal distribution centred on 0, truncated at two standard
#' deviations, with standard deviation `sqrt(2 / fan_in)` after truncation
#' (variance scaling with scale 2, mode `"fan_in"`).
#'
#' @inheritParams initializer_glorot_uniform
#' @inherit initializer_he_uniform return references
#' @examples
#' initializer_he_normal(seed = 7)
#' @family initializers
#' @export
initializer_he_normal <- function(seed = NULL) {
  new_initializer("HeNormal", list(seed = check_seed(seed)))
}

#' LeCun uniform initializer
#'
#' Draws from the uniform distribution on `[-limit, limit]` with
#' `limit = sqrt(3 / fan_in)` (variance scaling with scale 1, mode
#' `"fan_in"`).
#'
#' @inheritParams initializer_glorot_uniform
#' @inherit initializer_glorot_uniform return
#' @references Klambauer, G., Unterthiner, T., Mayr, A. and Hochreiter, S.
#'   (2017). Self-normalizing neural networks. *NeurIPS*.
#'   <https://arxiv.org/abs/1706.02515>
#' @examples
#' initializer_lecun_uniform()
#' @family initializers
#' @export
initializer_lecun_uniform <- function(seed = NULL) {
  new_initializer("LecunUniform", list(seed = check_seed(seed)))
}

#' LeCun normal initializer
#'
#' Draws from a normal distribution centred on 0, truncated at two standard
#' deviations, with standard deviation `sqrt(1 / fan_in)` after truncation
#' (variance scaling with scale 1, mode `"fan_in"`).
#'
#' @inheritParams initializer_glorot_uniform
#' @inherit initializer_lecun_uniform return references
#' @examples
#' initializer_lecun_normal(seed = 3)
#' @family initializers
#' @export
initializer_lecun_normal <- function(seed = NULL) {
  new_initializer("LecunNormal", list(seed = check_seed(seed)))
}

#' Random normal initializer
#'
#' Draws each value independently from a normal distribution.
#'
#' @param mean A finite number: the mean of the values.
#' @param stddev A positive finite number: their standard deviation.
#' @inheritParams initializer_glorot_uniform
#' @inherit initializer_glorot_uniform return
#' @examples
#' initializer_random_normal()
#' initializer_random_normal(mean = 0, stddev = 1, seed = 10)
#' @family initializers
#' @export
initializer_random_normal <- function(mean = 0, stddev = 0.05, seed = NULL) {
  new_initializer("RandomNormal", list(
    mean = check_number(mean, "mean"),
    stddev = check_positive_number(stddev, "stddev"),
    seed = check_seed(seed)
  ))
}

#' Random uniform initializer
#'
#' Draws each value independently from the uniform distribution on
#' `[minval, maxval)`.
#'
#' @param minval A finite number: the lower bound.
#' @param maxval A finite number greater than `minval`: the upper bound.
#' @inheritParams initializer_glorot_uniform
#' @inherit initializer_glorot_uniform return
#' @examples
#' initializer_random_uniform()
#' initializer_random_uniform(minval = 0, maxval = 1, seed = 10)
#' @family initializers
#' @export
initializer_random_uniform <- function(minval = -0.05, maxval = 0.05, seed = NULL) {
  minval <- check_number(minval, "minval")
  maxval <- check_number(maxval, "maxval")
  if (maxval <= minval) {
    abort_arg("maxval", sprintf("greater than `minval` (%s)", format(minval)),
              describe_value(maxval))
  }
  new_initializer("RandomUniform", list(minval = minval, maxval = maxval,
                                        seed = check_seed(seed)))
}

#' Truncated normal initializer
#'
#' Like [initializer_random_normal()], except that values more than two
#' standard deviations away from the mean are discarded and drawn again, so
#' every value lies in `[mean - 2 * stddev, mean + 2 * stddev]`. `stddev` is
#' the standard deviation *before* truncation (the values' actual standard
#' deviation is about `0.88 * stddev`).
#'
#' @inheritParams initializer_random_normal
#' @inherit initializer_glorot_uniform return
#' @examples
#' initializer_truncated_normal(stddev = 0.02)
#' @family initializers
#' @export
initializer_truncated_normal <- function(mean = 0, stddev = 0.05, seed = NULL) {
  new_initializer("TruncatedNormal", list(
    mean = check_number(mean, "mean"),
    stddev = check_positive_number(stddev, "stddev"),
    seed = check_seed(seed)
  ))
}

#' Initializer of zeros
#'
#' Fills the weight with 0. Keras's default for biases.
#'
#' @inherit initializer_glorot_uniform return
#' @examples
#' initializer_zeros()
#' @family initializers
#' @export
initializer_zeros <- function() {
  new_initializer("Zeros", list())
}

#' Initializer of ones
#'
#' Fills the weight with 1.
#'
#' @inherit initializer_glorot_uniform return
#' @examples
#' initializer_ones()
#' @family initializers
#' @export
initializer_ones <- function() {
  new_initializer("Ones", list())
}

#' Constant initializer
#'
#' Fills the weight with one value.
#'
#' @param value A finite number (a scalar, as in Keras).
#' @inherit initializer_glorot_uniform return
#' @examples
#' initializer_constant(0.1)
#' @family initializers
#' @export
initializer_constant <- function(value = 0) {
  new_initializer("Constant", list(value = check_number(value, "value")))
}

#' Orthogonal initializer
#'
#' Draws an orthogonal matrix from the QR decomposition of a matrix of
#' standard normal values. A weight of shape `(d1, ..., dn)` is treated as a
#' matrix of `d1 * ... * d(n-1)` rows and `dn` columns (the last axis); the
#' columns are orthonormal when there are at least as many rows as columns,
#' otherwise the rows are. The result is multiplied by `gain`. The weight must
#' have at least two axes.
#'
#' @param gain A finite number multiplying the orthogonal matrix.
#' @inheritParams initializer_glorot_uniform
#' @inherit initializer_glorot_uniform return
#' @references Saxe, A. M., McClelland, J. L. and Ganguli, S. (2014). Exact
#'   solutions to the nonlinear dynamics of learning in deep linear neural
#'   networks. *ICLR*. <https://arxiv.org/abs/1312.6120>
#' @examples
#' initializer_orthogonal()
#' initializer_orthogonal(gain = 2, seed = 5)
#' @family initializers
#' @export
initializer_orthogonal <- function(gain = 1, seed = NULL) {
  new_initializer("Orthogonal", list(gain = check_number(gain, "gain"),
                                     seed = check_seed(seed)))
}

#' @export
print.multihead_initializer <- function(x, ...) {
  cat(format_spec(x, "initializer"), "\n", sep = "")
  invisible(x)
}

# ---- Lookup tables -----------------------------------------------------------

# Keras class name -> constructor.
initializer_constructors <- function() {
  list(
    GlorotUniform = initializer_glorot_uniform, GlorotNormal = initializer_glorot_normal,
    HeUniform = initializer_he_uniform, HeNormal = initializer_he_normal,
    LecunUniform = initializer_lecun_uniform, LecunNormal = initializer_lecun_normal,
    RandomNormal = initializer_random_normal, RandomUniform = initializer_random_uniform,
    TruncatedNormal = initializer_truncated_normal, Zeros = initializer_zeros,
    Ones = initializer_ones, Constant = initializer_constant,
    Orthogonal = initializer_orthogonal
  )
}

# Other accepted names -> Keras class name: Keras's snake_case names (listed in
# error messages) and its aliases (not listed).
initializer_aliases <- function() {
  c(
    glorot_uniform = "GlorotUniform", glorot_normal = "GlorotNormal",
    he_uniform = "HeUniform", he_normal = "HeNormal",
    lecun_uniform = "LecunUniform", lecun_normal = "LecunNormal",
    random_normal = "RandomNormal", random_uniform = "RandomUniform",
    truncated_normal = "TruncatedNormal", zeros = "Zeros", ones = "Ones",
    constant = "Constant", orthogonal = "Orthogonal",
    # Keras's aliases
    uniform = "RandomUniform", normal = "RandomNormal", one = "Ones",
    zero = "Zeros", OrthogonalInitializer = "Orthogonal",
    orthogonal_initializer = "Orthogonal"
  )
}

# Variance-scaling initializers: scale, mode (which fan) and distribution.
variance_scaling_rules <- function() {
  list(
    GlorotUniform = list(scale = 1, mode = "fan_avg", distribution = "uniform"),
    GlorotNormal = list(scale = 1, mode = "fan_avg", distribution = "truncated_normal"),
    HeUniform = list(scale = 2, mode = "fan_in", distribution = "uniform"),
    HeNormal = list(scale = 2, mode = "fan_in", distribution = "truncated_normal"),
    LecunUniform = list(scale = 1, mode = "fan_in", distribution = "uniform"),
    LecunNormal = list(scale = 1, mode = "fan_in", distribution = "truncated_normal")
  )
}

# ---- Internal API used by the layers ----------------------------------------

# Turns a user's `*_initializer` argument into an initializer object. `x` is an
# initializer object, a name ("glorot_uniform", "GlorotUniform", ...) or a
# config list(class_name =, config =) as from initializer_config(); `arg` is
# the argument's name for error messages.
#' @noRd
as_initializer <- function(x, arg) {
  as_spec(x, arg, kind = "initializer", cls = "multihead_initializer",
          ctors = initializer_constructors(), aliases = initializer_aliases())
}

# Plain, serialisable list(class_name =, config =) of an initializer;
# as_initializer() turns it back into the same object.
#' @noRd
initializer_config <- function(init) {
  if (!inherits(init, "multihead_initializer")) {
    abort_arg("init", "an initializer object", describe_value(init))
  }
  spec_config(init)
}

# Draws the initial values of a weight: a double array with dim = `shape`
# (also for a 1-D shape). `fan_in`/`fan_out` (numbers >= 0) are used by the
# variance-scaling initializers only; when missing or NULL they default to
# Keras's compute_fans(shape) (see initializer_fans()). With a NULL seed the
# values come from R's RNG (`salt` is then unused); with an integer seed they
# depend only on (seed, salt) and .Random.seed is restored afterwards.
#' @noRd
initializer_sample <- function(init, shape, fan_in, fan_out, salt = 0L) {
  if (!inherits(init, "multihead_initializer")) {
    abort_arg("init", "an initializer object", describe_value(init))
  }
  shape <- check_whole_vector(shape, "shape", min = 0L)
  salt <- check_whole(salt, "salt", min = 0L)
  if (missing(fan_in)) fan_in <- NULL
  if (missing(fan_out)) fan_out <- NULL
  fans <- resolve_fans(shape, fan_in, fan_out)
  draw <- function() initializer_values(init, shape, fans)
  seed <- init$config$seed
  values <- if (is.null(seed)) draw() else
    with_local_rng_seed(derive_seed(seed, salt), draw())
  array(as.double(values), dim = shape)
}

# Keras's default fans for a weight shape: c(fan_in, fan_out). Rank 1: both
# are the length; rank 2 (in, out): the two sizes; rank > 2 (conv kernels
# (..., in, out)): the last two sizes times the product of the others.
#' @noRd
initializer_fans <- function(shape) {
  shape <- as.double(shape)
  k <- length(shape)
  if (k == 0L) return(c(1, 1))
  if (k == 1L) return(c(shape, shape))
  field <- prod(shape[seq_len(k - 2L)])
  c(shape[k - 1L] * field, shape[k] * field)
}

# c(fan_in, fan_out) from the caller's values, or Keras's defaults for shape.
resolve_fans <- function(shape, fan_in, fan_out) {
  fans <- initializer_fans(shape)
  fan_in <- check_number(fan_in, "fan_in", lower = 0, null_ok = TRUE)
  fan_out <- check_number(fan_out, "fan_out", lower = 0, null_ok = TRUE)
  if (!is.null(fan_in)) fans[1] <- fan_in
  if (!is.null(fan_out)) fans[2] <- fan_out
  fans
}

# The values (a plain double vector, length prod(shape), column-major order)
# of one initializer, drawn from the current RNG state.
initializer_values <- function(init, shape, fans) {
  n <- prod(shape)
  cfg <- init$config
  rule <- variance_scaling_rules()[[init$class_name]]
  if (!is.null(rule)) return(draw_variance_scaling(n, rule, fans))
  switch(init$class_name,
    Zeros = rep(0, n),
    Ones = rep(1, n),
    Constant = rep(cfg$value, n),
    RandomNormal = stats::rnorm(n, cfg$mean, cfg$stddev),
    RandomUniform = stats::runif(n, cfg$minval, cfg$maxval),
    TruncatedNormal = draw_truncated_normal(n, cfg$mean, cfg$stddev),
    Orthogonal = draw_orthogonal(shape, cfg$gain),
    abort_arg("init", "an initializer object", sprintf("class_name \"%s\"", init$class_name))
  )
}

# Keras's VarianceScaling: n = max(1, fan); uniform on +/- sqrt(3 * scale / n),
# or truncated normal whose sd after truncation is sqrt(scale / n).
draw_variance_scaling <- function(n, rule, fans) {
  fan <- switch(rule$mode, fan_in = fans[1], fan_out = fans[2],
                fan_avg = (fans[1] + fans[2]) / 2)
  scale <- rule$scale / max(1, fan)
  if (rule$distribution == "uniform") {
    limit <- sqrt(3 * scale)
    return(stats::runif(n, -limit, limit))
  }
  # 0.8796... is the sd of a standard normal truncated to [-2, 2].
  draw_truncated_normal(n, 0, sqrt(scale) / 0.87962566103423978)
}

# n normal values with sd `stddev`, those beyond 2 sd from the mean redrawn
# until none is left (as TensorFlow's truncated_normal).
draw_truncated_normal <- function(n, mean, stddev) {
  z <- stats::rnorm(n)
  out <- which(abs(z) > 2)
  while (length(out) > 0L) {
    z[out] <- stats::rnorm(length(out))
    out <- out[abs(z[out]) > 2]
  }
  mean + stddev * z
}

# Keras's Orthogonal: the weight as a (prod(shape[-last]), shape[last]) matrix
# with orthonormal columns (or rows, when it is wide), times `gain`. Returned
# column-major, so array(., dim = shape) keeps the last axis as the columns.
draw_orthogonal <- function(shape, gain) {
  if (length(shape) < 2L) {
    abort_arg("shape", "of length 2 or more for the Orthogonal initializer",
              describe_value(shape))
  }
  rows <- prod(shape[-length(shape)])
  cols <- shape[length(shape)]
  if (rows * cols == 0) return(numeric(0))
  a <- matrix(stats::rnorm(max(rows, cols) * min(rows, cols)),
              max(rows, cols), min(rows, cols))
  dec <- qr(a)
  q <- qr.Q(dec)                               # (max, min), orthonormal columns
  d <- diag(qr.R(dec))
  q <- q * rep(ifelse(d < 0, -1, 1), each = nrow(q))   # columns times sign(d)
  if (rows < cols) q <- t(q)                   # (rows, cols)
  gain * q
}

# ---- RNG helpers ---------------------------------------------------------------

# The R seed used for sub-stream `salt` of an integer `seed`: the seed itself
# for salt 0, otherwise a mix of both modulo the prime 2^31 - 1 (distinct for
# distinct salts of one seed). All arithmetic stays exact in doubles.
#' @noRd
derive_seed <- function(seed, salt) {
  if (salt == 0L) return(as.integer(seed))
  p <- 2147483647
  s <- as.double(seed) %% p
  as.integer((s * 48271 + as.double(salt) * 1000003 + 12345) %% p)
}

# Evaluates `expr` after set.seed(seed) and then puts the global RNG state back
# as it was: .Random.seed is restored, or removed again if it did not exist.
# The RNG kind is not changed.
#' @noRd
with_local_rng_seed <- function(seed, expr) {
  env <- globalenv()
  had_seed <- exists(".Random.seed", envir = env, inherits = FALSE)
  if (had_seed) old <- get(".Random.seed", envir = env, inherits = FALSE)
  on.exit({
    if (had_seed) {
      assign(".Random.seed", old, envir = env)
    } else if (exists(".Random.seed", envir = env, inherits = FALSE)) {
      rm(".Random.seed", envir = env)
    }
  })
  set.seed(seed)
  expr
}

# ---- Spec objects shared by initializers, regularizers and constraints -------

# A positive finite number, or abort_arg() naming `arg`.
#' @noRd
check_positive_number <- function(x, arg) {
  x <- check_number(x, arg)
  if (x <= 0) abort_arg(arg, "a positive number", describe_value(x))
  x
}

#' @noRd
new_initializer <- function(class_name, config) {
  structure(list(class_name = class_name, config = config),
            class = "multihead_initializer")
}

# list(class_name =, config =) without the class attribute.
#' @noRd
spec_config <- function(x) {
  list(class_name = x$class_name, config = x$config)
}

# One line such as "<initializer RandomNormal mean=0 stddev=0.05 seed=NULL>".
#' @noRd
format_spec <- function(x, kind) {
  cfg <- x$config
  parts <- vapply(names(cfg), function(nm) {
    paste0(nm, "=", format_config_value(cfg[[nm]]))
  }, character(1))
  paste0("<", paste(c(kind, x$class_name, parts), collapse = " "), ">")
}

#' @noRd
format_config_value <- function(v) {
  if (is.null(v)) return("NULL")
  if (is.function(v)) return("<function>")
  s <- vapply(v, function(e) if (is.character(e)) sprintf("\"%s\"", e) else format(e),
              character(1))
  if (length(s) == 1L) s else paste0("c(", paste(s, collapse = ", "), ")")
}

# The shared engine of as_initializer(), as_regularizer() and as_constraint().
# `ctors`: Keras class name -> constructor; `aliases`: other accepted names ->
# class name (its first entries up to the first alias named in the messages
# are Keras's snake_case names). A spec object is rebuilt from its config (so
# a hand-edited object is validated again); a string is looked up; a config
# list is rebuilt with its constructor.
#' @noRd
as_spec <- function(x, arg, kind, cls, ctors, aliases, also = NULL) {
  if (inherits(x, cls) || is_config_list(x)) {
    return(spec_from_config(x, arg, kind, ctors, aliases))
  }
  if (is.character(x) && length(x) == 1L && !is.na(x)) {
    name <- lookup_spec_name(x, ctors, aliases)
    if (!is.null(name)) return(ctors[[name]]())
  }
  abort_arg(arg, spec_expectation(kind, aliases, also), describe_value(x))
}

#' @noRd
is_config_list <- function(x) {
  is.list(x) && !is.object(x) && !is.null(names(x)) && "class_name" %in% names(x)
}

# Keras class name for an accepted name, or NULL.
#' @noRd
lookup_spec_name <- function(x, ctors, aliases) {
  if (x %in% names(ctors)) return(x)
  if (x %in% names(aliases)) return(unname(aliases[[x]]))
  NULL
}

# What a `*_initializer` / `*_regularizer` / `*_constraint` argument accepts.
# `also` names further accepted forms (e.g. "a function(w)").
#' @noRd
spec_expectation <- function(kind, aliases, also = NULL) {
  listed <- names(aliases)[!duplicated(aliases)]
  article <- if (grepl("^[aeiou]", kind)) "an" else "a"
  forms <- paste(c(sprintf("%s %s object", article, kind), also,
                   "a list(class_name =, config =)"), collapse = ", ")
  sprintf("%s or one of %s", forms, paste0("\"", listed, "\"", collapse = ", "))
}

# Rebuilds a spec from list(class_name =, config =); Keras's extra top-level
# keys "module" and "registered_name" are ignored.
#' @noRd
spec_from_config <- function(x, arg, kind, ctors, aliases) {
  extra <- setdiff(names(x), c("class_name", "config", "module", "registered_name"))
  if (length(extra) > 0L) {
    abort_arg(arg, sprintf("a %s config with entries class_name and config", kind),
              sprintf("entries %s", paste0("`", extra, "`", collapse = ", ")))
  }
  cn <- x$class_name
  name <- if (is.character(cn) && length(cn) == 1L && !is.na(cn)) {
    lookup_spec_name(cn, ctors, aliases)
  }
  if (is.null(name)) {
    abort_arg(paste0(arg, "$class_name"),
              sprintf("one of %s", paste0("\"", names(ctors), "\"", collapse = ", ")),
              describe_value(cn))
  }
  cfg <- spec_config_args(x$config, arg, name, ctors[[name]])
  tryCatch(do.call(ctors[[name]], cfg, quote = TRUE), multihead_error_argument = function(e) {
    abort_msg(sprintf("Invalid `%s` (%s): %s", arg, name, conditionMessage(e)),
              class = "multihead_error_argument")
  })
}

# The checked argument list of a config: NULL means no arguments, names must
# be `ctor`'s, and JSON's empty object `{}` (read back as an empty list)
# stands for NULL.
#' @noRd
spec_config_args <- function(cfg, arg, name, ctor) {
  if (is.null(cfg)) return(list())
  named <- is.list(cfg) && !is.object(cfg) &&
    (length(cfg) == 0L || (!is.null(names(cfg)) && all(nzchar(names(cfg)))))
  if (!named) abort_arg(paste0(arg, "$config"), "a named list", describe_value(cfg))
  allowed <- names(formals(ctor))
  unknown <- setdiff(names(cfg), allowed)
  if (length(unknown) > 0L) {
    abort_arg(paste0(arg, "$config"),
              sprintf("a list of %s's arguments (%s)", name, paste(allowed, collapse = ", ")),
              sprintf("unknown %s", paste0("`", unknown, "`", collapse = ", ")))
  }
  lapply(cfg, function(v) if (is.list(v) && length(v) == 0L) NULL else v)
}
