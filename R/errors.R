# Conditions raised by multihead. Every user-facing error goes through
# abort_arg() (a bad argument, named) or abort_msg() (anything else), so that
# messages have one style and tests can match on the condition class.

#' @noRd
abort_msg <- function(message, class = NULL, call = NULL) {
  cond <- structure(
    class = c(class, "multihead_error", "error", "condition"),
    list(message = message, call = call)
  )
  stop(cond)
}

# `arg` is the argument's name as the user typed it; `expected` says what was
# wanted; `got` (optional) describes what was received.
#' @noRd
abort_arg <- function(arg, expected, got = NULL, call = NULL) {
  msg <- sprintf("`%s` must be %s", arg, expected)
  if (!is.null(got)) msg <- paste0(msg, "; got ", got)
  abort_msg(paste0(msg, "."), class = "multihead_error_argument", call = call)
}

# A short description of a value for error messages: "a character vector of
# length 2", "NA", "1.5", "NULL".
#' @noRd
describe_value <- function(x) {
  if (is.null(x)) return("NULL")
  if (is_symbolic(x)) return(sprintf("a symbolic tensor %s", format(x)))
  if (inherits(x, "multihead_layer")) return(sprintf("a %s layer", class(x)[1L]))
  if (is.function(x)) return("a function")
  if (is.environment(x)) return(if (is.object(x)) sprintf("a %s object", class(x)[1L]) else "an environment")
  if (!is.atomic(x) && !is.list(x)) return(sprintf("an object of type %s", typeof(x)))
  if (is.atomic(x) && length(x) == 1L && is.null(dim(x))) {
    if (is.na(x)) return("NA")
    if (is.character(x)) return(sprintf("\"%s\"", x))
    return(format(x))
  }
  if (!is.null(dim(x))) {
    return(sprintf("a %s array of shape (%s)", typeof(x), paste(dim(x), collapse = ", ")))
  }
  sprintf("a %s of length %d", if (is.list(x)) "list" else paste(typeof(x), "vector"), length(x))
}

# The shape of an array (its dim, or its length for a plain vector), and
# shapes and names as they appear in messages: "2, 3" and "\"a\", \"b\"".
#' @noRd
shape_of <- function(x) if (is.null(dim(x))) length(x) else dim(x)

#' @noRd
format_shape <- function(shape) paste(shape, collapse = ", ")

#' @noRd
quote_names <- function(x) paste0("\"", x, "\"", collapse = ", ")
