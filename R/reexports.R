# Helpers keras3 re-exports, taken from the same packages: zeallot's
# multiple assignment `%<-%`, magrittr's pipe `%>%` and dotty's `.` for
# destructuring (`.[b, t, ..] <- op_shape(x)`). dotty's `[<-` method for
# `.` assigns in the caller's environment, so it works wherever `.` is
# found (here: multihead's exports, once the package is attached).

#' Pipe operator
#'
#' See \code{\link[magrittr:pipe]{\%>\%}} for more details.
#'
#' @name %>%
#' @rdname pipe
#' @keywords internal
#' @returns The result of calling the right-hand side with the left-hand side
#'   as its first argument: `rhs(lhs)`.
#' @importFrom magrittr %>%
#' @export
#' @usage lhs \%>\% rhs
#' @examples
#' c(1, 4, 9) %>% sqrt()
NULL

#' Assign values to names
#'
#' See \code{\link[zeallot]{\%<-\%}} for more details.
#'
#' @name %<-%
#' @rdname multi-assign
#' @keywords internal
#' @returns The right-hand side, invisibly; called to assign its parts to the
#'   names on the left in the current environment.
#' @importFrom zeallot %<-%
#' @export
#' @usage x \%<-\% value
#' @examples
#' c(a, b) %<-% list(1, 2)
#' a + b
NULL

#' Destructuring assignment with `.`
#'
#' See [dotty::.] for more details: `.[a, b] <- value` assigns the parts of
#' `value` to `a` and `b` in the current environment; `..` skips the
#' remaining parts, as in `.[batch, ..] <- op_shape(x)`.
#'
#' @name .
#' @rdname dot
#' @keywords internal
#' @returns `.` is an object whose `[<-` method does the assignment.
#' @importFrom dotty .
#' @export
#' @examples
#' .[b, t] <- c(2L, 3L)
#' b * t
NULL
