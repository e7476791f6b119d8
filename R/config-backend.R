# keras3's backend and dtype configuration, as far as it means something
# here: use_backend() and py_require() are accepted (keras3 code calls them
# first thing) and do nothing but say once that multihead needs no Python;
# config_floatx() / config_set_floatx() and config_dtype_policy() /
# config_set_dtype_policy() set the default dtype of new layers and of the
# random functions.

.config_state <- new.env(parent = emptyenv())
.config_state$floatx <- "float32"
.config_state$policy <- NULL          # NULL: the policy follows floatx
.config_state$backend_noted <- FALSE
.config_state$mixed_noted <- FALSE

# Says once per session that no Python backend is used.
#' @noRd
note_native_backend <- function(fun) {
  if (isTRUE(.config_state$backend_noted)) return(invisible(FALSE))
  .config_state$backend_noted <- TRUE
  message(sprintf(paste0("%s(): multihead runs natively (C++ through Rcpp), with no Python backend; ",
                         "there is nothing to configure or install. (This note is shown once per session.)"),
                  fun))
  invisible(TRUE)
}

#' Backend selection (accepted for keras3 code)
#'
#' keras3 scripts often start with `use_backend("jax")` or
#' `py_require(...)`. multihead computes natively, with no Python, so both
#' are accepted and do nothing; the first call of the session says so in a
#' message.
#'
#' @param backend A string such as `"tensorflow"`, `"jax"`, `"torch"` or
#'   `"numpy"` (ignored).
#' @param gpu `NA`, `TRUE` or `FALSE` (ignored).
#' @returns `use_backend()`: `backend`, invisibly.
#' @family config
#' @export
#' @examples
#' use_backend("jax")
use_backend <- function(backend, gpu = NA) {
  if (missing(backend)) abort_arg("backend", "supplied: a string such as \"tensorflow\" or \"jax\"")
  backend <- check_string(backend, "backend")
  if (!(is.logical(gpu) && length(gpu) == 1L)) abort_arg("gpu", "NA, TRUE or FALSE", describe_value(gpu))
  note_native_backend("use_backend")
  invisible(backend)
}

#' @rdname use_backend
#' @param packages `NULL` or Python package requirements (a character vector;
#'   ignored).
#' @param python_version `NULL` or a Python version requirement (ignored).
#' @param ... Must be empty (as in reticulate).
#' @param exclude_newer `NULL` or a date string (ignored).
#' @param action `"add"`, `"remove"` or `"set"` (ignored).
#' @returns `py_require()`: with no arguments, the (empty) requirements as
#'   reticulate lists them (`packages`, `python_version`, `exclude_newer`,
#'   `history`); otherwise that list, invisibly.
#' @export
#' @examples
#' py_require("keras")
py_require <- function(packages = NULL, python_version = NULL, ..., exclude_newer = NULL,
                       action = c("add", "remove", "set")) {
  if (...length()) abort_arg("...", "empty in py_require()", sprintf("%d extra argument(s)", ...length()))
  if (!is.null(packages) && !(is.character(packages) && !anyNA(packages))) {
    abort_arg("packages", "NULL or a character vector of Python requirements", describe_value(packages))
  }
  for (nm in c("python_version", "exclude_newer")) {
    v <- get(nm)
    if (!is.null(v) && !(is.character(v) && !anyNA(v))) abort_arg(nm, "NULL or a string", describe_value(v))
  }
  if (!(is.character(action) && length(action) >= 1L && !anyNA(action) && action[1L] %in% c("add", "remove", "set"))) {
    abort_arg("action", "one of \"add\", \"remove\", \"set\"", describe_value(action))
  }
  manifest <- list(python_version = NULL, packages = NULL, exclude_newer = NULL, history = list())
  if (missing(packages) && missing(python_version) && missing(exclude_newer)) return(manifest)
  note_native_backend("py_require")
  invisible(manifest)
}

# ---- floatx and the dtype policy ------------------------------------------------

#' Default float type
#'
#' keras3's `config_floatx()` / `config_set_floatx()`: the default float
#' dtype of new layers (unless a dtype policy is set, see
#' [config_set_dtype_policy()]) and of the random functions
#' ([random_uniform()]...). multihead computes in
#' `"float32"` or `"float64"`.
#'
#' @param value `"float32"` or `"float64"`.
#' @returns `config_floatx()`: the default float type, a string.
#'   `config_set_floatx()`: the previous one, invisibly.
#' @family config
#' @export
#' @examples
#' config_floatx()
#' old <- config_set_floatx("float64")
#' config_floatx()
#' config_set_floatx(old)
config_floatx <- function() .config_state$floatx

#' @rdname config_floatx
#' @export
config_set_floatx <- function(value) {
  if (missing(value)) abort_arg("value", "supplied: \"float32\" or \"float64\"")
  if (!(is.character(value) && length(value) == 1L && !is.na(value) && value %in% c("float32", "float64"))) {
    why <- if (is.character(value) && length(value) == 1L && value %in% c("float16", "bfloat16")) {
      sprintf(" (multihead has no %s kernels)", value)
    } else ""
    abort_arg("value", sprintf("\"float32\" or \"float64\"%s", why), describe_value(value))
  }
  old <- .config_state$floatx
  .config_state$floatx <- value
  invisible(old)
}

.dtype_policies <- list(
  float32 = c(compute = "float32", variable = "float32"),
  float64 = c(compute = "float64", variable = "float64"),
  mixed_float16 = c(compute = "float32", variable = "float32"),
  mixed_bfloat16 = c(compute = "float32", variable = "float32")
)

#' @noRd
new_dtype_policy <- function(name) {
  p <- .dtype_policies[[name]]
  structure(list(name = name, compute_dtype = unname(p["compute"]), variable_dtype = unname(p["variable"])),
            class = "multihead_dtype_policy")
}

#' Default dtype policy
#'
#' keras3's `config_dtype_policy()` / `config_set_dtype_policy()`: the dtype
#' policy of new layers created without a `dtype`. `"float32"` and
#' `"float64"` compute and store weights in that type. The mixed-precision
#' policies `"mixed_float16"` and `"mixed_bfloat16"` are accepted so that
#' keras3 code runs, but multihead has no half-precision kernels: such
#' layers compute in float32 (a message says so once per session). Until a
#' policy is set, the policy follows [config_floatx()].
#'
#' @param policy `"float32"`, `"float64"`, `"mixed_float16"`,
#'   `"mixed_bfloat16"`, or a policy returned by `config_dtype_policy()`.
#' @returns `config_dtype_policy()`: the policy, a list with `name`,
#'   `compute_dtype` and `variable_dtype` (class `multihead_dtype_policy`).
#'   `config_set_dtype_policy()`: the previous policy, invisibly.
#' @family config
#' @export
#' @examples
#' config_dtype_policy()
#' old <- config_set_dtype_policy("float64")
#' config_dtype_policy()$compute_dtype
#' config_set_dtype_policy(old)
config_dtype_policy <- function() {
  name <- .config_state$policy
  new_dtype_policy(if (is.null(name)) .config_state$floatx else name)
}

#' @rdname config_dtype_policy
#' @export
config_set_dtype_policy <- function(policy) {
  if (missing(policy)) abort_arg("policy", "supplied: a dtype policy name such as \"float32\"")
  if (inherits(policy, "multihead_dtype_policy")) policy <- policy$name
  if (!(is.character(policy) && length(policy) == 1L && !is.na(policy) && policy %in% names(.dtype_policies))) {
    abort_arg("policy", paste0("one of ", paste0("\"", names(.dtype_policies), "\"", collapse = ", "),
                               " (or a policy from config_dtype_policy())"), describe_value(policy))
  }
  old <- config_dtype_policy()
  if (startsWith(policy, "mixed_") && !isTRUE(.config_state$mixed_noted)) {
    .config_state$mixed_noted <- TRUE
    message(sprintf(paste0("config_set_dtype_policy(\"%s\"): multihead has no half-precision kernels; layers ",
                           "compute and keep their weights in float32. (This note is shown once per session.)"),
                    policy))
  }
  .config_state$policy <- policy
  invisible(old)
}

#' @export
format.multihead_dtype_policy <- function(x, ...) {
  sprintf("<DTypePolicy \"%s\" compute_dtype=%s variable_dtype=%s>", x$name, x$compute_dtype, x$variable_dtype)
}

#' @export
print.multihead_dtype_policy <- function(x, ...) {
  cat(format(x), "\n", sep = "")
  invisible(x)
}

# The dtype of a new layer created without one: the policy's variable dtype
# (the policy follows floatx until one is set).
#' @noRd
current_default_dtype <- function() {
  name <- .config_state$policy
  if (is.null(name)) .config_state$floatx else unname(.dtype_policies[[name]]["variable"])
}
