# Outputs, scores and gradients of every multi-head attention path against
# the numbers recorded before the core's paths were consolidated
# (helper-mha-pinned.R describes the cases): the same to float rounding.

pinned <- readRDS(test_path("fixtures", "mha-pinned", "mha-pinned.rds"))$results

# every array of `got` within `tol` of `want` (relative to its largest
# entry). The key bias's gradient is zero up to rounding (softmax is
# shift-invariant): it is compared in absolute terms, against `scale`.
expect_same_arrays <- function(got, want, tol, label, scale = 1) {
  if (is.list(want)) {
    expect_identical(names(got), names(want), label = paste(label, "names"))
    for (nm in names(want)) expect_same_arrays(got[[nm]], want[[nm]], tol, paste0(label, "$", nm), scale)
    return(invisible())
  }
  if (is.null(want)) return(expect_null(got, label = label))
  expect_identical(dim(got), dim(want), label = paste(label, "dim"))
  if (endsWith(label, "key/bias")) {
    expect_lte(max(abs(got - want)), 10 * tol * scale, label = label)
  } else {
    expect_lte(rel_err(got, want), tol, label = label)
  }
}

test_that("the recorded cases cover both kernels, both dtypes, scores and both input routes", {
  cases <- mha_pinned_cases()
  expect_identical(names(cases), names(pinned))
  expect_length(cases, 48L)
})

test_that("every multi-head attention path reproduces the recorded outputs and gradients", {
  cases <- mha_pinned_cases()
  for (nm in names(cases)) {
    case <- cases[[nm]]
    tol <- if (case$dtype == "float64") 1e-13 else 2e-6
    got <- mha_pinned_run(case)
    want <- pinned[[nm]]
    expect_same_arrays(got$output, want$output, tol, paste(nm, "output"))
    expect_same_arrays(got$scores, want$scores, tol, paste(nm, "scores"))
    expect_same_arrays(got$bp_output, want$bp_output, tol, paste(nm, "backprop output"))
    # weight gradients are named "<layer name>/<weight>": the layer's name
    # depends on how many layers the session created before
    strip <- function(g) { names(g$weights) <- sub("^[^/]+/", "", names(g$weights)); g }
    got$grads <- strip(got$grads)
    want$grads <- strip(want$grads)
    scale <- max(abs(unlist(want$grads$weights)))
    expect_same_arrays(got$grads, want$grads, tol, paste(nm, "grads"), scale)
  }
})

test_that("the pinned comparison can fail: a changed weight is noticed", {
  case <- mha_pinned_cases()[["plain/float64/flash"]]
  case$layer$key_dim <- 5
  got <- mha_pinned_run(case)
  expect_false(identical(dim(got$grads$weights[[1]]), dim(pinned[["plain/float64/flash"]]$grads$weights[[1]])))
})
