# Weight constraints with Keras 3 semantics and keras3's R names.
#
# A constraint is a spec object list(class_name =, config =) of class
# "multihead_constraint"; apply_constraint() projects a weight after each
# optimiser update. Norm constraints take `axis` the keras3 way: 1-based
# positive axis numbers (R's axis k is Keras's axis k - 1), negative numbers
# counting from the end as in Python (-1 = last axis). The config keeps the R
# axis numbers, so it round-trips through as_constraint(); subtract 1 from
# positive axes when writing a Keras config.

# Keras's backend epsilon, added to norms before dividing by them.
constraint_epsilon <- 1e-7

#' Non-negative weight constraint
#'
#' Sets the negative entries of the weight to 0 after each update.
#'
#' @returns A constraint: a list of class `"multihead_constraint"` with
#'   elements `class_name` (the Keras class name) and `config` (a named list
#'   of its arguments), to pass as a layer's `kernel_constraint` or
#'   `bias_constraint`.
#' @examples
#' constraint_nonneg()
#' @family constraints
#' @export
constraint_nonneg <- function() {
  new_constraint("NonNeg", list())
}

#' Maximum-norm weight constraint
#'
#' Rescales the weight so that the Euclidean norm of each slice along `axis`
#' is at most `max_value`: with `n` the slice's norm, every entry is
#' multiplied by `min(n, max_value) / (n + 1e-7)`.
#'
#' @param max_value A non-negative finite number: the largest norm allowed.
#' @param axis Whole number(s): the axes the norms are taken over, 1-based as
#'   everywhere in R (keras3's convention: `axis = 1` is Keras's `axis = 0`).
#'   Negative numbers count from the end, as in Python: `-1` is the last
#'   axis. For a dense kernel of shape `(input_dim, units)`, `axis = 1`
#'   constrains the incoming weight vector of each unit; for an attention
#'   projection kernel `(E, H, Kd)`, `axis = 1` constrains each vector over
#'   `E`; `axis = c(1, 2)` takes one norm over the first two axes.
#' @inherit constraint_nonneg return
#' @examples
#' constraint_maxnorm()
#' constraint_maxnorm(max_value = 3, axis = c(1, 2))
#' @family constraints
#' @export
constraint_maxnorm <- function(max_value = 2, axis = 1) {
  new_constraint("MaxNorm", list(
    max_value = check_number(max_value, "max_value", lower = 0),
    axis = check_constraint_axis(axis)
  ))
}

#' Unit-norm weight constraint
#'
#' Rescales each slice of the weight along `axis` to Euclidean norm 1:
#' entries are divided by `n + 1e-7`, `n` being the slice's norm.
#'
#' @inheritParams constraint_maxnorm
#' @inherit constraint_nonneg return
#' @examples
#' constraint_unitnorm()
#' @family constraints
#' @export
constraint_unitnorm <- function(axis = 1) {
  new_constraint("UnitNorm", list(axis = check_constraint_axis(axis)))
}

#' Min-max-norm weight constraint
#'
#' Moves the Euclidean norm `n` of each slice of the weight along `axis`
#' towards the interval `[min_value, max_value]`: entries are multiplied by
#' `d / (n + 1e-7)` with
#' `d = rate * min(max(n, min_value), max_value) + (1 - rate) * n`.
#' `rate = 1` enforces the interval strictly; a smaller rate moves the norms
#' only part of the way at each update.
#'
#' @param min_value A non-negative finite number: the smallest norm.
#' @param max_value A finite number, at least `min_value`: the largest norm.
#' @param rate A number between 0 and 1: how far each update moves the norms.
#' @inheritParams constraint_maxnorm
#' @inherit constraint_nonneg return
#' @examples
#' constraint_minmaxnorm(min_value = 0.5, max_value = 1, rate = 0.5)
#' @family constraints
#' @export
constraint_minmaxnorm <- function(min_value = 0, max_value = 1, rate = 1, axis = 1) {
  min_value <- check_number(min_value, "min_value", lower = 0)
  max_value <- check_number(max_value, "max_value")
  if (max_value < min_value) {
    abort_arg("max_value", sprintf("a number >= `min_value` (%s)", format(min_value)),
              describe_value(max_value))
  }
  new_constraint("MinMaxNorm", list(
    min_value = min_value, max_value = max_value,
    rate = check_number(rate, "rate", lower = 0, upper = 1),
    axis = check_constraint_axis(axis)
  ))
}

#' @export
print.multihead_constraint <- function(x, ...) {
  cat(format_spec(x, "constraint"), "\n", sep = "")
  invisible(x)
}

#' @noRd
new_constraint <- function(class_name, config) {
  structure(list(class_name = class_name, config = config),
            class = "multihead_constraint")
}

# A bare R function(w) used as a constraint; its result must have w's shape.
#' @noRd
constraint_from_function <- function(fn) {
  if (!is.function(fn)) abort_arg("fn", "a function", describe_value(fn))
  new_constraint("RFunction", list(fn = fn))
}

# Axis numbers: non-zero, distinct whole numbers (negative from the end).
#' @noRd
check_constraint_axis <- function(axis, arg = "axis") {
  axis <- check_whole_vector(axis, arg, allow_negative = TRUE)
  if (any(axis == 0L) || anyDuplicated(axis)) {
    abort_arg(arg, "distinct non-zero whole numbers (1-based axes; -1 is the last axis)",
              describe_value(axis))
  }
  axis
}

# Keras class name -> constructor ("RFunction" wraps an R function).
constraint_constructors <- function() {
  list(NonNeg = constraint_nonneg, MaxNorm = constraint_maxnorm,
       UnitNorm = constraint_unitnorm, MinMaxNorm = constraint_minmaxnorm,
       RFunction = constraint_from_function)
}

# Keras's snake_case names (listed in errors), then keras3-style aliases.
constraint_aliases <- function() {
  c(non_neg = "NonNeg", max_norm = "MaxNorm", unit_norm = "UnitNorm",
    min_max_norm = "MinMaxNorm",
    nonneg = "NonNeg", maxnorm = "MaxNorm", unitnorm = "UnitNorm",
    minmaxnorm = "MinMaxNorm")
}

# Turns a user's `*_constraint` argument into a constraint object or NULL (no
# constraint). `x` is NULL, a constraint object, a name ("non_neg",
# "max_norm", "unit_norm", "min_max_norm", a class name such as "MaxNorm",
# or "nonneg"/"maxnorm"/"unitnorm"/"minmaxnorm"), a config list
# list(class_name =, config =), or an R function(w) returning an array of w's
# shape (wrapped as class_name "RFunction"); `arg` names the argument.
#' @noRd
as_constraint <- function(x, arg) {
  if (is.null(x)) return(NULL)
  if (is.function(x)) return(constraint_from_function(x))
  if (identical(x, "RFunction")) {   # only meaningful with a function in its config
    abort_arg(arg, spec_expectation("constraint", constraint_aliases(), "a function(w)"),
              describe_value(x))
  }
  as_spec(x, arg, kind = "constraint", cls = "multihead_constraint",
          ctors = constraint_constructors(), aliases = constraint_aliases(),
          also = "a function(w)")
}

# list(class_name =, config =) of a constraint (NULL for NULL); as_constraint()
# turns it back into the same object. Serialisable except for "RFunction",
# whose config holds the function.
#' @noRd
constraint_config <- function(con) {
  if (is.null(con)) return(NULL)
  check_constraint_object(con)
  spec_config(con)
}

# The constrained weight: a double array with the attributes (dim) of `w`
# (a numeric vector or array of any rank); `w` itself when `con` is NULL.
#' @noRd
apply_constraint <- function(con, w) {
  check_numeric_weight(w)
  if (is.null(con)) return(w)
  check_constraint_object(con)
  cfg <- con$config
  if (con$class_name == "RFunction") return(apply_function_constraint(cfg$fn, w))
  out <- w
  storage.mode(out) <- "double"
  if (con$class_name == "NonNeg") {
    out[] <- pmax(as.vector(w), 0)
    return(out)
  }
  norms <- slice_norms(w, cfg$axis)             # same length as w
  desired <- switch(con$class_name,
    MaxNorm = pmin(norms, cfg$max_value),
    UnitNorm = 1,
    MinMaxNorm = cfg$rate * pmin(pmax(norms, cfg$min_value), cfg$max_value) +
      (1 - cfg$rate) * norms
  )
  out[] <- as.vector(w) * desired / (constraint_epsilon + norms)
  out
}

# For every entry of w, the Euclidean norm of its slice over `axis` (Keras's
# sqrt(sum(w^2, axis, keepdims = TRUE)) broadcast back): a plain vector in
# w's column-major order. The reduced axes are permuted to the end, so that
# the norms (one per kept position) recycle over them.
#' @noRd
slice_norms <- function(w, axis) {
  dims <- if (is.null(dim(w))) length(w) else dim(w)
  axes <- resolve_constraint_axis(axis, length(dims))
  keep <- setdiff(seq_along(dims), axes)
  perm <- c(keep, axes)
  wp <- aperm(array(as.vector(w), dims), perm)   # (kept..., reduced...)
  n_keep <- prod(dims[keep])
  norms <- sqrt(rowSums(matrix(wp^2, nrow = n_keep)))   # one per kept position
  full <- array(rep(norms, length.out = length(wp)), dims[perm])
  as.vector(aperm(full, order(perm)))
}

# R axis numbers -> positions 1..rank (negative count from the end).
#' @noRd
resolve_constraint_axis <- function(axis, rank) {
  pos <- ifelse(axis < 0L, rank + 1L + axis, axis)
  if (any(pos < 1L | pos > rank) || anyDuplicated(pos)) {
    abort_arg("axis", sprintf("distinct axes of a weight of rank %d (1 to %d, or -1 to -%d)",
                              rank, rank, rank), describe_value(axis))
  }
  as.integer(pos)
}

# Calls a user's constraint function and checks that it kept w's shape.
#' @noRd
apply_function_constraint <- function(fn, w) {
  res <- fn(w)
  ok <- is.numeric(res) && length(res) == length(w) && identical(dim(res), dim(w))
  if (!ok) {
    shape <- if (is.null(dim(w))) sprintf("a vector of length %d", length(w)) else
      sprintf("an array of shape (%s)", paste(dim(w), collapse = ", "))
    abort_arg("con", sprintf("a function returning a numeric %s, like its input",
                             sub("^an? ", "", shape)), describe_value(res))
  }
  storage.mode(res) <- "double"
  res
}

check_constraint_object <- function(con) {
  if (!inherits(con, "multihead_constraint")) {
    abort_arg("con", "a constraint object or NULL", describe_value(con))
  }
  invisible(con)
}
