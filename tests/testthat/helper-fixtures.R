# Test helpers: reading the reference fixtures, finite differences, errors.
#
# The fixtures (tests/testthat/fixtures/*.json, see fixtures/README.md) were
# produced in float64 by a PyTorch port of Keras 3's MultiHeadAttention.
# Every array is stored as {shape, dtype, data} with `data` flattened in
# row-major (C) order. fx_read() turns each one into an R array whose dim is
# the Keras shape, so that x[b, t, e] in R is x[b-1, t-1, e-1] in Python.
#
# Only base R and jsonlite are used (jsonlite is in Suggests).

# Directory holding the fixtures. testthat::test_path() resolves it during
# test runs (and from the package root interactively); when run by hand from
# inside tests/testthat (test_path() then errors) fall back to ./fixtures.
fixture_dir <- function() {
  p <- tryCatch(testthat::test_path("fixtures"), error = function(e) NULL)
  if (is.null(p) || !dir.exists(p)) p <- "fixtures"
  p
}

# Path of fixtures/<name>.json ("name" may be given with or without ".json").
fixture_path <- function(name) {
  name <- sub("\\.json$", "", name)
  file.path(fixture_dir(), paste0(name, ".json"))
}

# Convert one {shape, dtype, data} object (row-major) to an R array with
# dim = shape (Keras axis order). NULL stays NULL. Booleans become logical.
# 1-D arrays keep a dim attribute of length 1; a 0-D array becomes a scalar.
fx_array <- function(x) {
  if (is.null(x)) return(NULL)
  shp <- as.integer(unlist(x$shape))
  d <- unlist(x$data)
  if (identical(x$dtype, "bool")) {
    d <- as.logical(d)
  } else {
    d <- as.double(d)
  }
  if (length(d) != prod(shp)) {
    stop(sprintf("fixture array has %d values for shape (%s)",
                 length(d), paste(shp, collapse = ", ")))
  }
  if (length(shp) == 0L) return(d)
  if (length(shp) == 1L) return(array(d, dim = shp))
  # array(d, rev(shp)) is the same array with its axes reversed (column-major
  # reading of row-major data); aperm restores the natural order.
  aperm(array(d, dim = rev(shp)), rev(seq_along(shp)))
}

# Read one fixture. Returns
#   list(name, description, layer, call,
#        inputs  = list(query, key, value, attention_mask),
#        weights = named list of the 8 weights (NULL where absent),
#        R, expected = list(output, attention_scores),
#        grads   = named list (query, key, value and the 8 weights),
#        checks)
# with all arrays converted by fx_array(). `layer` and `call` are the plain
# lists from the file (layer$attention_axes is in Keras numbering, 0 = batch).
fx_read <- function(name) {
  fx <- jsonlite::fromJSON(fixture_path(name), simplifyVector = TRUE,
                           simplifyDataFrame = FALSE, simplifyMatrix = FALSE)
  conv <- function(lst, nms) {
    out <- lapply(nms, function(n) fx_array(lst[[n]]))
    names(out) <- nms
    out
  }
  weight_names <- c("query_kernel", "query_bias", "key_kernel", "key_bias",
                    "value_kernel", "value_bias", "output_kernel", "output_bias")
  list(
    name = fx$name,
    description = fx$description,
    layer = fx$layer,
    call = fx$call,
    inputs = conv(fx$inputs, c("query", "key", "value", "attention_mask")),
    weights = conv(fx$weights, weight_names),
    R = fx_array(fx$R),
    expected = conv(fx$expected, c("output", "attention_scores")),
    grads = conv(fx$grads, c("query", "key", "value", weight_names)),
    checks = fx$checks
  )
}

# Fixture names (without ".json") in the order of fixtures/index.json.
fixture_names <- function() {
  idx <- jsonlite::fromJSON(file.path(fixture_dir(), "index.json"),
                            simplifyVector = TRUE, simplifyDataFrame = FALSE,
                            simplifyMatrix = FALSE)
  sub("\\.json$", "", vapply(idx, function(e) e$file, character(1)))
}

# Central finite-difference gradient of a scalar function f at x:
#   g[i] = (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)
# One pair of evaluations per element; the result has x's dim (if any).
# For well-scaled double-precision problems eps = 1e-6 gives about 1e-9
# relative accuracy (truncation O(eps^2), rounding O(1e-16 |f| / eps)).
fd_grad <- function(f, x, eps = 1e-6) {
  g <- numeric(length(x))
  for (i in seq_along(x)) {
    xp <- x; xp[i] <- xp[i] + eps
    xm <- x; xm[i] <- xm[i] - eps
    g[i] <- (f(xp) - f(xm)) / (2 * eps)
  }
  if (!is.null(dim(x))) dim(g) <- dim(x)
  g
}

# Relative error of a against the reference b:
#   max |a - b| / max(1e-300, max |b|)
# i.e. the largest absolute difference scaled by the largest reference
# magnitude (a norm-wise, not element-wise, relative error, so tiny entries
# of b do not blow it up). Shapes must agree (dims compared when both have
# one). rel_err(NULL, NULL) is 0. NaN/NA anywhere gives Inf.
rel_err <- function(a, b) {
  if (is.null(a) && is.null(b)) return(0)
  if (is.null(a) || is.null(b)) stop("rel_err: one argument is NULL")
  if (length(a) != length(b)) stop("rel_err: lengths differ")
  if (!is.null(dim(a)) && !is.null(dim(b)) &&
      !identical(as.integer(dim(a)), as.integer(dim(b)))) {
    stop("rel_err: dims differ")
  }
  a <- as.double(a); b <- as.double(b)
  if (anyNA(a) || anyNA(b)) return(Inf)
  if (length(b) == 0L) return(0)
  max(abs(a - b)) / max(1e-300, max(abs(b)))
}
