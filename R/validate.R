# Argument checks shared by every constructor. Each returns the cleaned value
# (integers as integer, flags as logical) or raises abort_arg() naming `arg`.

#' @noRd
check_whole <- function(x, arg, min = 1L, null_ok = FALSE) {
  if (is.null(x) && null_ok) return(NULL)
  ok <- is.numeric(x) && length(x) == 1L && is.null(dim(x)) && !is.na(x) &&
    is.finite(x) && x == round(x) && x >= min && abs(x) <= .Machine$integer.max
  if (!ok) {
    what <- if (min >= 1L) "a positive whole number" else sprintf("a whole number >= %d", min)
    if (null_ok) what <- paste(what, "or NULL")
    abort_arg(arg, what, describe_value(x))
  }
  as.integer(x)
}

#' @noRd
check_whole_vector <- function(x, arg, min = 1L, null_ok = FALSE, allow_negative = FALSE) {
  if (is.null(x) && null_ok) return(NULL)
  # a list of single numbers, as keras3 code writes shapes; anything else stays a list and fails
  if (is.list(x) && !is.object(x) && all(lengths(x) == 1L)) x <- unlist(x)
  ok <- is.numeric(x) && length(x) >= 1L && is.null(dim(x)) && !anyNA(x) &&
    all(is.finite(x)) && all(x == round(x)) && all(abs(x) <= .Machine$integer.max) &&
    (allow_negative || all(x >= min))
  if (!ok) {
    what <- if (allow_negative) "a vector of whole numbers" else
      if (min >= 1L) "a vector of positive whole numbers" else sprintf("a vector of whole numbers >= %d", min)
    if (null_ok) what <- paste(what, "or NULL")
    abort_arg(arg, what, describe_value(x))
  }
  as.integer(x)
}

#' @noRd
check_flag <- function(x, arg, null_ok = FALSE) {
  if (is.null(x) && null_ok) return(NULL)
  if (!(is.logical(x) && length(x) == 1L && !is.na(x))) {
    abort_arg(arg, if (null_ok) "TRUE, FALSE or NULL" else "TRUE or FALSE", describe_value(x))
  }
  x
}

#' @noRd
check_number <- function(x, arg, lower = -Inf, upper = Inf, null_ok = FALSE) {
  if (is.null(x) && null_ok) return(NULL)
  ok <- is.numeric(x) && length(x) == 1L && is.null(dim(x)) && !is.na(x) &&
    is.finite(x) && x >= lower && x <= upper
  if (!ok) {
    rng <- if (is.finite(lower) && is.finite(upper)) sprintf("a number between %s and %s", lower, upper)
      else if (is.finite(lower)) sprintf("a number >= %s", lower)
      else if (is.finite(upper)) sprintf("a number <= %s", upper)
      else "a finite number"
    if (null_ok) rng <- paste(rng, "or NULL")
    abort_arg(arg, rng, describe_value(x))
  }
  as.double(x)
}

#' @noRd
check_string <- function(x, arg, null_ok = FALSE) {
  if (is.null(x) && null_ok) return(NULL)
  if (!(is.character(x) && length(x) == 1L && !is.na(x) && nzchar(x))) {
    abort_arg(arg, if (null_ok) "a single non-empty string or NULL" else "a single non-empty string",
              describe_value(x))
  }
  x
}

# A seed: NULL or a whole number that fits a 32-bit integer (negative allowed).
#' @noRd
check_seed <- function(x, arg = "seed") {
  if (is.null(x)) return(NULL)
  check_whole(x, arg, min = -.Machine$integer.max)
}

# One of a set of strings.
#' @noRd
check_choice <- function(x, arg, choices) {
  if (!(is.character(x) && length(x) == 1L && !is.na(x) && x %in% choices)) {
    abort_arg(arg, sprintf("one of %s", paste0("\"", choices, "\"", collapse = ", ")), describe_value(x))
  }
  x
}

# The largest number of elements of any array multihead allocates (weights,
# outputs, work buffers): options(multihead.max_tensor_elements), by default
# 2^31 - 1 (16 GiB of doubles), the largest size a 32-bit index reaches.
#' @noRd
max_tensor_elements <- function() {
  limit <- getOption("multihead.max_tensor_elements", .Machine$integer.max)
  if (!(is.numeric(limit) && length(limit) == 1L && !is.na(limit) && limit >= 1)) {
    abort_arg("options(multihead.max_tensor_elements)", "a number >= 1", describe_value(limit))
  }
  limit
}

# Errors naming `arg` when an array of shape `dims` (NA sizes, unknown, count
# as 1) would have more than max_tensor_elements() elements. The product is
# taken in double precision, so it cannot overflow: call this BEFORE
# allocating. `what` names the array ("the kernel of layer \"dense\"").
# `limit`: max_tensor_elements(), passed in by callers checking several arrays.
#' @noRd
check_size <- function(dims, arg, what, limit = max_tensor_elements()) {
  n <- prod(as.double(dims), na.rm = TRUE)
  if (n > limit) {
    abort_arg(arg, sprintf(paste0("small enough that %s has at most %s elements (the limit set by ",
                                  "options(multihead.max_tensor_elements))"),
                           what, format(limit, big.mark = ",", scientific = FALSE)),
              sprintf("%s elements for shape %s", format(n, big.mark = ",", scientific = FALSE),
                      fmt_shape(dims)))
  }
  invisible(n)
}
