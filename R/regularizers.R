# Weight regularizers with Keras 3 semantics and keras3's R names.
#
# A regularizer is a spec object list(class_name = "L1" | "L2" | "L1L2",
# config = list(l1 =, l2 =)) of class "multihead_regularizer". Its penalty on
# a weight w is l1 * sum(|w|) + l2 * sum(w^2); the layers add it to the loss
# through regularizer_loss() and its gradient through regularizer_gradient().

#' L1 weight regularizer
#'
#' Adds the penalty `l1 * sum(abs(w))` on a weight `w` to the loss. The name
#' `"l1"` given as a layer's regularizer means `regularizer_l1()` with the
#' default factor 0.01.
#'
#' @param l1 A non-negative finite number: the L1 factor.
#' @returns A regularizer: a list of class `"multihead_regularizer"` with
#'   elements `class_name` (the Keras class name) and `config` (a named list
#'   of the factors, with Keras's names), to pass as a layer's
#'   `kernel_regularizer`, `bias_regularizer` or `activity_regularizer`.
#' @examples
#' regularizer_l1()
#' regularizer_l1(l1 = 0.001)
#' @family regularizers
#' @export
regularizer_l1 <- function(l1 = 0.01) {
  new_regularizer("L1", list(l1 = check_number(l1, "l1", lower = 0)))
}

#' L2 weight regularizer
#'
#' Adds the penalty `l2 * sum(w^2)` on a weight `w` to the loss (there is no
#' factor 1/2). The name `"l2"` given as a layer's regularizer means
#' `regularizer_l2()` with the default factor 0.01.
#'
#' @param l2 A non-negative finite number: the L2 factor.
#' @inherit regularizer_l1 return
#' @examples
#' regularizer_l2()
#' regularizer_l2(l2 = 1e-4)
#' @family regularizers
#' @export
regularizer_l2 <- function(l2 = 0.01) {
  new_regularizer("L2", list(l2 = check_number(l2, "l2", lower = 0)))
}

#' Combined L1 and L2 weight regularizer
#'
#' Adds the penalty `l1 * sum(abs(w)) + l2 * sum(w^2)` on a weight `w` to the
#' loss. Both factors default to 0, as in Keras 3; so, as in Keras 3, the name
#' `"l1_l2"` given as a layer's regularizer adds no penalty: pass
#' `regularizer_l1_l2(l1 = , l2 = )` to choose the factors.
#'
#' @inheritParams regularizer_l1
#' @inheritParams regularizer_l2
#' @inherit regularizer_l1 return
#' @examples
#' regularizer_l1_l2(l1 = 0.01, l2 = 0.01)
#' @family regularizers
#' @export
regularizer_l1_l2 <- function(l1 = 0, l2 = 0) {
  new_regularizer("L1L2", list(l1 = check_number(l1, "l1", lower = 0),
                               l2 = check_number(l2, "l2", lower = 0)))
}

#' @export
print.multihead_regularizer <- function(x, ...) {
  cat(format_spec(x, "regularizer"), "\n", sep = "")
  invisible(x)
}

#' @noRd
new_regularizer <- function(class_name, config) {
  structure(list(class_name = class_name, config = config),
            class = "multihead_regularizer")
}

# Keras class name -> constructor.
regularizer_constructors <- function() {
  list(L1 = regularizer_l1, L2 = regularizer_l2, L1L2 = regularizer_l1_l2)
}

# Keras's snake_case names -> class name.
regularizer_aliases <- function() {
  c(l1 = "L1", l2 = "L2", l1_l2 = "L1L2")
}

# Turns a user's `*_regularizer` argument into a regularizer object or NULL
# (no penalty). `x` is NULL, a regularizer object, a name ("l1", "l2",
# "l1_l2", or a class name "L1", "L2", "L1L2") or a config list
# list(class_name =, config =); `arg` names the argument in errors.
#' @noRd
as_regularizer <- function(x, arg) {
  if (is.null(x)) return(NULL)
  as_spec(x, arg, kind = "regularizer", cls = "multihead_regularizer",
          ctors = regularizer_constructors(), aliases = regularizer_aliases())
}

# Plain, serialisable list(class_name =, config =) of a regularizer (NULL for
# NULL); as_regularizer() turns it back into the same object.
#' @noRd
regularizer_config <- function(reg) {
  if (is.null(reg)) return(NULL)
  check_regularizer_object(reg)
  spec_config(reg)
}

# The penalty on weight `w` (a numeric vector or array): a double scalar,
# l1 * sum(|w|) + l2 * sum(w^2); 0 when `reg` is NULL.
#' @noRd
regularizer_loss <- function(reg, w) {
  check_numeric_weight(w)
  if (is.null(reg)) return(0)
  f <- regularizer_factors(reg)
  loss <- 0
  if (f[["l1"]] != 0) loss <- loss + f[["l1"]] * sum(abs(w))
  if (f[["l2"]] != 0) loss <- loss + f[["l2"]] * sum(w^2)
  as.double(loss)
}

# d penalty / d w: a double array with the attributes (dim) of `w`,
# l1 * sign(w) + 2 * l2 * w (sign(0) = 0, the subgradient Keras uses); zeros
# when `reg` is NULL.
#' @noRd
regularizer_gradient <- function(reg, w) {
  check_numeric_weight(w)
  out <- w
  storage.mode(out) <- "double"
  if (is.null(reg)) {
    out[] <- 0
    return(out)
  }
  f <- regularizer_factors(reg)
  out[] <- f[["l1"]] * sign(w) + 2 * f[["l2"]] * w
  out
}

# c(l1 =, l2 =) of a regularizer object.
regularizer_factors <- function(reg) {
  check_regularizer_object(reg)
  cfg <- reg$config
  c(l1 = if (is.null(cfg$l1)) 0 else cfg$l1, l2 = if (is.null(cfg$l2)) 0 else cfg$l2)
}

check_regularizer_object <- function(reg) {
  if (!inherits(reg, "multihead_regularizer")) {
    abort_arg("reg", "a regularizer object or NULL", describe_value(reg))
  }
  invisible(reg)
}

check_numeric_weight <- function(w, arg = "w") {
  if (!is.numeric(w)) abort_arg(arg, "a numeric vector or array", describe_value(w))
  invisible(w)
}
