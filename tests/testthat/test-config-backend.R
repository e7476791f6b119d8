# use_backend() / py_require() (accepted, one note per session),
# config_floatx() and the dtype policy (the default dtype of new layers and
# random draws).

# A function restoring the dtype configuration and the one-time notes as
# they are now (called on exit of each test).
config_restorer <- function() {
  st <- multihead:::.config_state
  saved <- mget(c("floatx", "policy", "backend_noted", "mixed_noted"), envir = st)
  function() for (nm in names(saved)) assign(nm, saved[[nm]], envir = st)
}

test_that("use_backend() and py_require() are accepted, with one note per session", {
  restore <- config_restorer()
  on.exit(restore(), add = TRUE)
  st <- multihead:::.config_state
  st$backend_noted <- FALSE
  expect_message(res <- withVisible(use_backend("jax")), "natively")
  expect_identical(res, list(value = "jax", visible = FALSE))
  expect_no_message(use_backend("tensorflow", gpu = FALSE))
  expect_no_message(res <- withVisible(py_require(c("keras", "numpy"), python_version = "3.11")))
  expect_false(res$visible)
  st$backend_noted <- FALSE
  expect_message(py_require("jax"), "no Python backend")
  expect_no_message(py_require("jax", action = "remove"))
  m <- py_require()
  expect_named(m, c("python_version", "packages", "exclude_newer", "history"))
  expect_null(m$packages)
  expect_no_message(py_require(exclude_newer = "2025-01-01", action = "set"))
  # signatures as keras3 / reticulate
  expect_identical(names(formals(use_backend)), c("backend", "gpu"))
  expect_identical(names(formals(py_require)),
                   c("packages", "python_version", "...", "exclude_newer", "action"))
  expect_arg_error(use_backend(), "backend")
  expect_arg_error(use_backend(1), "backend")
  expect_arg_error(use_backend(c("jax", "torch")), "backend")
  expect_arg_error(use_backend("jax", gpu = "yes"), "gpu")
  expect_arg_error(py_require(1), "packages")
  expect_arg_error(py_require("keras", python_version = 3.11), "python_version")
  expect_arg_error(py_require("keras", exclude_newer = NA), "exclude_newer")
  expect_arg_error(py_require("keras", action = "drop"), "action")
  expect_arg_error(py_require("keras", NULL, "extra"), "...")
})

test_that("config_floatx(): float32 by default, float64 settable, sets the random functions' dtype", {
  restore <- config_restorer()
  on.exit(restore(), add = TRUE)
  expect_identical(config_floatx(), "float32")
  expect_identical(config_dtype_policy()$name, "float32")
  old <- config_set_floatx("float64")
  expect_identical(old, "float32")
  expect_identical(config_floatx(), "float64")
  expect_identical(config_dtype_policy()$name, "float64")
  expect_identical(multihead:::current_default_dtype(), "float64")
  traced <- multihead:::with_trace_frame(random_normal(c(2, 2)))
  expect_identical(traced$dtype, "float64")
  expect_identical(multihead:::with_trace_frame(random_normal(2, dtype = "float32"))$dtype, "float32")
  expect_invisible(config_set_floatx("float32"))
  expect_identical(multihead:::with_trace_frame(random_uniform(2))$dtype, "float32")
  expect_arg_error(config_set_floatx(), "value")
  expect_error(config_set_floatx("float16"), "no float16 kernels", class = "multihead_error_argument")
  expect_arg_error(config_set_floatx("float16"), "value")
  expect_arg_error(config_set_floatx("int32"), "value")
  expect_arg_error(config_set_floatx(NA), "value")
  expect_arg_error(config_set_floatx(c("float32", "float64")), "value")
  expect_identical(config_floatx(), "float32")
})

test_that("config_set_dtype_policy(): float32/float64, mixed policies compute in float32 (noted once)", {
  restore <- config_restorer()
  on.exit(restore(), add = TRUE)
  st <- multihead:::.config_state
  st$mixed_noted <- FALSE
  p <- config_dtype_policy()
  expect_s3_class(p, "multihead_dtype_policy")
  expect_identical(unclass(p), list(name = "float32", compute_dtype = "float32", variable_dtype = "float32"))
  expect_output(print(p), "DTypePolicy \"float32\"")
  old <- config_set_dtype_policy("float64")
  expect_identical(old$name, "float32")
  expect_identical(config_dtype_policy()$compute_dtype, "float64")
  expect_identical(multihead:::current_default_dtype(), "float64")
  expect_message(config_set_dtype_policy("mixed_float16"), "float32")
  expect_identical(config_dtype_policy()$name, "mixed_float16")
  expect_identical(config_dtype_policy()$compute_dtype, "float32")
  expect_identical(multihead:::current_default_dtype(), "float32")
  expect_no_message(config_set_dtype_policy("mixed_bfloat16"))
  expect_identical(multihead:::current_default_dtype(), "float32")
  # a policy object is accepted back (restoring)
  expect_invisible(config_set_dtype_policy(old))
  expect_identical(config_dtype_policy()$name, "float32")
  # a set policy wins over floatx
  config_set_floatx("float64")
  config_set_dtype_policy("float32")
  expect_identical(multihead:::current_default_dtype(), "float32")
  expect_arg_error(config_set_dtype_policy(), "policy")
  expect_arg_error(config_set_dtype_policy("float16"), "policy")
  expect_arg_error(config_set_dtype_policy("mixed"), "policy")
  expect_arg_error(config_set_dtype_policy(NA_character_), "policy")
  expect_arg_error(config_set_dtype_policy(32), "policy")
  expect_arg_error(config_set_dtype_policy(list(name = "float32")), "policy")
  expect_identical(config_dtype_policy()$name, "float32")
})
