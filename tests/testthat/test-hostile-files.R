# Hostile model and weights files (R/file-plain-rds.R, R/file-schema.R,
# R/model-save.R, R/keras-weights-h5.R): every file here is forged,
# truncated or corrupted, and each load must end in multihead's own error
# (its class, the file named in the message) without running any code from
# the file: every payload tries to create a sentinel file, which must never
# appear, and none may crash R (the riskiest loads run in a child R).

hostile_sentinel <- function() tempfile("hostile-sentinel-")

# A small compiled model, its file, and the file's record (our own trusted
# file, so readRDS() is fine here).
hostile_model <- function() {
  model <- keras_model_sequential(input_shape = 3) |> layer_dense(2, kernel_constraint = "max_norm") |>
    layer_dropout(0.1) |> layer_dense(1)
  model |> compile(optimizer = "adam", loss = "mse", metrics = "mae")
  path <- tempfile(fileext = ".rds")
  save_model(model, path)
  list(model = model, path = path, record = readRDS(path))
}

hostile_write <- function(x, ...) {
  path <- tempfile(fileext = ".rds")
  saveRDS(x, path, ...)
  path
}

hostile_write_raw <- function(bytes, ext = ".rds") {
  path <- tempfile(fileext = ext)
  writeBin(bytes, path)
  path
}

# Our error: `class`, the file's path in the message, optionally `pattern`.
expect_file_error <- function(expr, path, pattern = NULL, class = "multihead_error_file") {
  err <- tryCatch({
    force(expr)
    NULL
  }, error = function(e) e)
  expect_s3_class(err, class)
  expect_true(grepl(path, conditionMessage(err), fixed = TRUE), info = conditionMessage(err))
  if (!is.null(pattern)) expect_match(conditionMessage(err), pattern)
  invisible(err)
}

# The serialization header of R >= 3.5 (XDR, version 3, native encoding
# "UTF-8"), followed by items written by hand.
xdr_int <- function(...) writeBin(as.integer(c(...)), raw(), size = 4L, endian = "big")
xdr_header <- function() c(charToRaw("X\n"), xdr_int(3L, 262402L, 197888L, 5L), charToRaw("UTF-8"))
xdr_charsxp <- function(s) c(xdr_int(0x00040009L, nchar(s, "bytes")), charToRaw(s))
xdr_symbol <- function(s) c(xdr_int(1L), xdr_charsxp(s))

test_that("models with functions, environments, promises, calls, byte code and S4 objects are refused", {
  h <- hostile_model()
  sentinel <- hostile_sentinel()
  payload <- function(w) {
    file.create(sentinel)
    w
  }
  with_field <- function(rec, value) {
    rec$config$layers[[1]]$config$kernel_constraint <- value
    rec
  }
  promise_env <- new.env()
  delayedAssign("value", file.create(sentinel), assign.env = promise_env)
  gen <- methods::setClass("HostileS4", representation(x = "numeric"), where = new.env())
  cases <- list(
    list(with_field(h$record, list(class_name = "RFunction", config = list(fn = payload))), "function \\(closure\\)"),
    list(with_field(h$record, payload), "function \\(closure\\)"),
    list(with_field(h$record, list(class_name = "RFunction", config = list(fn = "system"))), "RFunction"),
    list(with_field(h$record, promise_env), "an environment"),
    list(with_field(h$record, quote(file.create(sentinel))), "language object"),
    list(with_field(h$record, as.name("file.create")), "symbol"),
    list(with_field(h$record, expression(file.create(sentinel))), "expression vector"),
    list(with_field(h$record, compiler::compile(quote(file.create(sentinel)))), "byte code"),
    list(with_field(h$record, gen(x = 1)), "S4 object"),
    list(with_field(h$record, globalenv()), "global environment"),
    list(with_field(h$record, sum), "built-in function"),
    list(with_field(h$record, structure(list(), class = "multihead_layer")), "attribute \"class\"")
  )
  for (case in cases) {
    path <- hostile_write(case[[1]])
    expect_file_error(load_model(path), path, case[[2]])
    expect_file_error(load_model_weights(h$model, path), path, case[[2]])
    expect_false(file.exists(sentinel))
  }
  # the environment's delayed expression is still unevaluated: nothing touched it
  expect_false(file.exists(sentinel))
})

test_that("a file whose top-level object is a promise (CVE-2024-27322) is refused without running it", {
  sentinel <- hostile_sentinel()
  # PROMSXP (5) with a tag (its environment: the global environment, 253),
  # value unbound (252), expression file.create("<sentinel>") (LANGSXP 6:
  # symbol, then a pairlist (2) holding one string (16), ended by NULL 254)
  call <- c(xdr_int(6L), xdr_symbol("file.create"), xdr_int(2L), xdr_int(16L, 1L), xdr_charsxp(sentinel),
            xdr_int(254L))
  bytes <- c(xdr_header(), xdr_int(5L + 1024L, 253L, 252L), call)
  path <- hostile_write_raw(bytes)
  gz <- tempfile(fileext = ".rds")
  con <- gzfile(gz, "wb")
  writeBin(bytes, con)
  close(con)
  model <- keras_model_sequential(input_shape = 3) |> layer_dense(2)
  for (p in c(path, gz)) {
    expect_file_error(load_model(p), p, "record is a delayed expression \\(promise\\)")
    expect_file_error(load_model_weights(model, p), p, "promise")
  }
  expect_false(file.exists(sentinel))
  # the crafted bytes are a live payload: R's own readRDS() runs them before R 4.4
  if (getRversion() < "4.4.0") {
    other <- hostile_sentinel()
    live <- hostile_write_raw(c(xdr_header(), xdr_int(5L + 1024L, 253L, 252L), xdr_int(6L),
                                xdr_symbol("file.create"), xdr_int(2L), xdr_int(16L, 1L), xdr_charsxp(other),
                                xdr_int(254L)))
    out <- system2(file.path(R.home("bin"), "Rscript"), c("--vanilla", "-e", shQuote(sprintf(
      "x <- readRDS('%s'); invisible(x)", live))), stdout = TRUE, stderr = TRUE)
    expect_true(file.exists(other), info = paste(out, collapse = "\n"))
  }
})

test_that("truncated and bit-flipped model and weights files give our errors", {
  h <- hostile_model()
  weights <- tempfile(fileext = ".rds")
  save_model_weights(h$model, weights)
  plain <- hostile_write(h$record, compress = FALSE)
  for (src in c(h$path, weights, plain)) {
    bytes <- readBin(src, "raw", file.size(src))
    n <- length(bytes)
    # (the last 8 bytes of a gzip file are its checksum and size, which R's
    # gzfile() does not need: the content is complete without them)
    last <- if (identical(src, plain)) c(n - 5L, n - 1L) else c(n - 20L, n - 12L)
    for (cut in unique(c(0L, 1L, 2L, 10L, 23L, 30L, n %/% 3L, n %/% 2L, last))) {
      path <- hostile_write_raw(bytes[seq_len(cut)])
      expect_file_error(load_model(path), path)
      expect_file_error(load_model_weights(h$model, path), path)
    }
    # after the end of the data
    path <- hostile_write_raw(c(bytes, as.raw(0)))
    if (identical(src, plain)) expect_file_error(load_model(path), path, "after the end")
  }
  # bit flips at fixed positions of the uncompressed file: either still a
  # valid model file (e.g. a flipped weight) or our error, never another one
  bytes <- readBin(plain, "raw", file.size(plain))
  positions <- unique(round(seq(3, length(bytes), length.out = 40)))
  outcomes <- character()
  for (i in seq_along(positions)) {
    flipped <- bytes
    pos <- positions[[i]]
    flipped[pos] <- xor(flipped[pos], as.raw(bitwShiftL(1L, (i - 1L) %% 8L)))
    path <- hostile_write_raw(flipped)
    res <- tryCatch({
      load_model(path)
      "loaded"
    }, multihead_error = function(e) {
      expect_true(grepl(path, conditionMessage(e), fixed = TRUE), info = conditionMessage(e))
      "ours"
    }, error = function(e) paste("foreign:", conditionMessage(e)))
    outcomes <- c(outcomes, res)
  }
  expect_true(all(outcomes %in% c("loaded", "ours")), info = paste(unique(outcomes), collapse = " | "))
  expect_true(any(outcomes == "ours"))
  # a gzip file with corrupted compressed data
  gz <- readBin(h$path, "raw", file.size(h$path))
  gz[30:40] <- as.raw(0xff)
  path <- hostile_write_raw(gz)
  expect_file_error(load_model(path), path)
})

test_that("fields of the wrong type are refused by the schema, naming the field", {
  h <- hostile_model()
  rec <- h$record
  edit <- function(f) {
    r <- rec
    f(r)
  }
  cases <- list(
    list(edit(function(r) { r$layers <- "x"; r }), "record\\$layers is"),
    list(edit(function(r) { r$layers[[1]]$weights[[1]] <- "a"; r }), "not a numeric array"),
    list(edit(function(r) { r$layers[[1]]$weights[[1]] <- list(1, 2); r }), "not a numeric array"),
    list(edit(function(r) { r$layers[[1]]$name <- 1; r }), "record\\$layers\\[\\[1\\]\\]\\$name is 1, not a string"),
    list(edit(function(r) { r$layers[[1]]$extra <- 1; r }), "unknown field `extra`"),
    list(edit(function(r) { r$class_name <- "Dense"; r }), "record\\$class_name"),
    list(edit(function(r) { r$config$name <- 1i; r }), "not a configuration value"),
    list(edit(function(r) { r$config$layers[[1]] <- as.raw(1); r }), "not a configuration value"),
    list(edit(function(r) { r$compile$optimizer$class_name <- "print.default"; r }), "optimizer\\$class_name"),
    list(edit(function(r) { r$compile$optimizer$iterations <- -1; r }), "iterations"),
    list(edit(function(r) { r$compile$optimizer$config$beta_1 <- 7; r }), "beta_1"),
    list(edit(function(r) { r$compile$optimizer$config$y_true <- 7; r }), "unknown argument `y_true`"),
    list(edit(function(r) { r$compile$optimizer$learning_rate <- list(class_name = "Sys.time", config = list()); r }),
         "learning_rate\\$class_name"),
    list(edit(function(r) { r$compile$losses[[1]]$class_name <- "system"; r }), "losses\\[\\[1\\]\\]\\$class_name"),
    list(edit(function(r) { r$compile$losses[[1]]$config$y_true <- 1; r }), "unknown argument `y_true`"),
    list(edit(function(r) { r$compile$metric_specs[[1]][[1]] <- "eval"; r }), "not a metric name"),
    list(edit(function(r) { r$compile$loss_weights <- "1"; r }), "loss_weights"),
    list(edit(function(r) { r$layers[[2]]$state$call_counter <- -3; r }), "call_counter"),
    list(edit(function(r) { attr(r$config$layers[[1]]$config, "class_name") <- c("a", "b"); r }), "class name"),
    list(edit(function(r) { r$config$layers[[1]]$config$units <- "two"; r }), "configuration cannot be used: `units`")
  )
  for (case in cases) {
    path <- hostile_write(case[[1]])
    expect_file_error(load_model(path), path, case[[2]])
  }
  # the version is checked first, and a foreign RDS file is not ours
  path <- hostile_write(edit(function(r) { r$format_version <- "1"; r }))
  expect_file_error(load_model(path), path, "no valid format version")
  path <- hostile_write(list(format = "other"))
  expect_file_error(load_model(path), path, "not a multihead model file")
  path <- hostile_write(h$record, ascii = TRUE)
  expect_file_error(load_model(path), path, "ascii")
  path <- tempfile(fileext = ".rds")
  rec <- h$record
  save(rec, file = path)
  expect_file_error(load_model(path), path, "save\\(\\)")
})

test_that("oversized declared lengths are refused before anything is allocated", {
  model <- keras_model_sequential(input_shape = 3) |> layer_dense(2)
  cases <- list(
    list(c(xdr_header(), xdr_int(19L, .Machine$integer.max)), "needs 8589934588 bytes"),
    list(c(xdr_header(), xdr_int(14L, 1e9L), writeBin(1, raw(), endian = "big")), "needs 8e\\+09 bytes|needs 8000000000 bytes"),
    list(c(xdr_header(), xdr_int(16L, 5e8L)), "needs"),
    list(c(xdr_header(), xdr_int(19L, -1L, 4L, 0L)), "more than multihead's files hold"),
    list(c(xdr_header(), xdr_int(19L, 1L, 0x00040009L, .Machine$integer.max)), "bare string|needs")
  )
  for (case in cases) {
    path <- hostile_write_raw(case[[1]])
    expect_file_error(load_model(path), path, case[[2]])
    expect_file_error(load_model_weights(model, path), path)
  }
  # a compact sequence (ALTREP) declaring 1e12 elements in a few bytes
  seq_bytes <- serialize(list(format = "multihead.model", x = 1:10), NULL)
  at <- grepRaw(writeBin(10, raw(), endian = "big"), seq_bytes, fixed = TRUE)
  huge <- seq_bytes
  huge[at:(at + 7L)] <- writeBin(1e12, raw(), endian = "big")
  path <- hostile_write_raw(huge)
  expect_file_error(load_model(path), path, "compact sequence of 1000000000000 elements")
  # an ALTREP class that is not one of the plain-data forms
  other <- seq_bytes
  name_at <- grepRaw(charToRaw("compact_intseq"), other, fixed = TRUE)
  other[name_at:(name_at + 13L)] <- charToRaw("mmap_intseqxxx")
  path <- hostile_write_raw(other)
  expect_file_error(load_model(path), path, "ALTREP object of class \"mmap_intseqxxx\"")
  # deep nesting
  deep <- c(xdr_header(), rep(xdr_int(19L, 1L), 1000), xdr_int(254L))
  path <- hostile_write_raw(deep)
  expect_file_error(load_model(path), path, "nested more than")
})

# ---- Keras weights files ---------------------------------------------------------

hostile_h5_model <- function() keras_model_sequential(input_shape = 3) |> layer_dense(2)

# A weights file for hostile_h5_model() with `fill(vars_group)` writing the
# dense layer's datasets.
hostile_h5 <- function(fill, layers = TRUE) {
  path <- tempfile(fileext = ".weights.h5")
  f <- hdf5r::H5File$new(path, mode = "w")
  on.exit(f$close_all())
  f$create_group("vars")
  if (layers) fill(f$create_group("layers")$create_group("dense"))
  path
}

test_that("Keras weights files with wrong datasets give our errors before reading", {
  model <- hostile_h5_model()
  before <- get_weights(model)
  f32 <- hdf5r::h5types$H5T_IEEE_F32LE
  vars <- function(g) g$create_group("vars")
  # another HDF5 file that links must not reach
  other_h5 <- tempfile(fileext = ".h5")
  o <- hdf5r::H5File$new(other_h5, mode = "w")
  o[["x"]] <- c(1, 2)
  og <- o$create_group("g")
  og[["0"]] <- matrix(0, 2, 3)
  o$close_all()
  # a few-KB file declaring a 1e5 x 1e5 float32 dataset (chunked, allocated
  # late: nothing written), then a matching bias
  huge <- hostile_h5(function(g) {
    v <- vars(g)
    v$create_dataset("0", dtype = f32, space = hdf5r::H5S$new(dims = c(1e5, 1e5)), chunk_dims = c(100, 100),
                     gzip_level = 0)
    v$create_dataset("1", robj = c(0, 0), dtype = f32)
  })
  expect_lt(file.size(huge), 1e5)
  expect_file_error(load_model_weights(model, huge), huge, "has shape \\(3, 2\\) but .*has shape \\(100000, 100000\\)",
                    class = "multihead_error_weights")
  expect_warning(load_model_weights(model, huge, skip_mismatch = TRUE), "Skipping layer")
  cases <- list(
    list(function(g) { v <- vars(g); v[["0"]] <- matrix(1:6, 2, 3); v[["1"]] <- c(0, 0) }, "integer values", "multihead_error_file"),
    list(function(g) { v <- vars(g); v[["0"]] <- matrix(letters[1:6], 2, 3); v[["1"]] <- c(0, 0) }, "string values", "multihead_error_file"),
    list(function(g) { v <- vars(g); v[["0"]] <- array(0, c(1, 2, 3)); v[["1"]] <- c(0, 0) }, "has shape \\(3, 2, 1\\)", "multihead_error_weights"),
    list(function(g) { v <- vars(g); v[["0"]] <- matrix(0, 2, 3) }, "has 2 weights but .* has 1", "multihead_error_weights"),
    list(function(g) { v <- vars(g); v$create_group("0"); v[["1"]] <- c(0, 0) }, "is a group where a dataset was expected", "multihead_error_file"),
    list(function(g) { g[["vars"]] <- 1:3 }, "is a dataset where a group was expected", "multihead_error_file"),
    list(function(g) { v <- vars(g); v[["zero"]] <- 1 }, "not datasets \"0\", \"1\"", "multihead_error_file"),
    list(function(g) g$create_group("other"), "has none for it", "multihead_error_weights"),
    list(function(g) { v <- vars(g); v[["0"]] <- matrix(0, 2, 3); v$link_create_soft("/layers/dense/vars/0", "1") },
         "\"layers/dense/vars/1\" is a soft or external link", "multihead_error_file"),
    list(function(g) { v <- vars(g); v[["0"]] <- matrix(0, 2, 3); v$link_create_external(other_h5, "/x", "1") },
         "\"layers/dense/vars/1\" is a soft or external link", "multihead_error_file"),
    list(function(g) g$link_create_external(other_h5, "/g", "vars"), "goes through a soft or external link",
         "multihead_error_file")
  )
  for (case in cases) {
    path <- hostile_h5(case[[1]])
    expect_file_error(load_model_weights(model, path), path, case[[2]], class = case[[3]])
  }
  path <- hostile_h5(function(g) NULL, layers = FALSE)
  expect_file_error(load_model_weights(model, path), path, "has none for it", class = "multihead_error_weights")
  expect_identical(get_weights(model), before)
})

test_that("truncated and bit-flipped Keras weights files give our errors and never crash R (child R)", {
  model <- keras_model_sequential(input_shape = 4) |> layer_dense(3) |> layer_dense(2)
  good <- tempfile(fileext = ".weights.h5")
  save_model_weights(model, good)
  bytes <- readBin(good, "raw", file.size(good))
  n <- length(bytes)
  files <- character()
  for (cut in c(0L, 8L, 100L, n %/% 4L, n %/% 2L, n - 100L)) {
    files <- c(files, hostile_write_raw(bytes[seq_len(cut)], ".weights.h5"))
  }
  positions <- unique(round(seq(1, n, length.out = 18)))
  for (i in seq_along(positions)) {
    flipped <- bytes
    flipped[positions[[i]]] <- xor(flipped[positions[[i]]], as.raw(bitwShiftL(1L, (i - 1L) %% 8L)))
    files <- c(files, hostile_write_raw(flipped, ".weights.h5"))
  }
  list_file <- tempfile(fileext = ".txt")
  writeLines(files, list_file)
  script <- tempfile(fileext = ".R")
  writeLines(c(
    "suppressPackageStartupMessages(library(multihead))",
    "model <- keras_model_sequential(input_shape = 4) |> layer_dense(3) |> layer_dense(2)",
    sprintf("for (f in readLines('%s')) {", list_file),
    "  res <- tryCatch({ suppressWarnings(load_model_weights(model, f)); 'loaded' },",
    "    multihead_error = function(e) if (grepl(f, conditionMessage(e), fixed = TRUE)) 'ours' else 'unnamed',",
    "    error = function(e) paste('foreign', gsub('\\n', ' ', conditionMessage(e))))",
    "  cat(res, '\\n', sep = '')",
    "}",
    "cat('ALIVE\\n')"), script)
  out <- suppressWarnings(system2(file.path(R.home("bin"), "Rscript"), c("--vanilla", script), stdout = TRUE,
                                  stderr = FALSE, env = paste0("R_LIBS=", paste(.libPaths(), collapse = ":"))))
  expect_identical(tail(out, 1), "ALIVE")
  res <- head(out, -1)
  expect_length(res, length(files))
  expect_true(all(res %in% c("loaded", "ours")), info = paste(unique(res), collapse = " | "))
  expect_true(all(res[seq_len(6)] == "ours"))
})

# ---- failed writes -----------------------------------------------------------------

test_that("a write that fails part-way (file size limit) keeps the old file and R alive (child R)", {
  dir <- tempfile("hostile-write-")
  dir.create(dir)
  old_rds <- file.path(dir, "model.rds")
  old_h5 <- file.path(dir, "model.weights.h5")
  # old files larger than the limit below, written without the limit
  writeBin(as.raw(rep(1:255, 2000)), old_rds)
  writeBin(as.raw(rep(255:1, 2000)), old_h5)
  before_rds <- readBin(old_rds, "raw", file.size(old_rds))
  before_h5 <- readBin(old_h5, "raw", file.size(old_h5))
  script <- file.path(dir, "write.R")
  writeLines(c(
    "suppressPackageStartupMessages(library(multihead))",
    "model <- keras_model_sequential(input_shape = 200) |> layer_dense(300, dtype = 'float64')",
    "model |> compile(optimizer = 'adam', loss = 'mse')",
    sprintf("for (p in c('%s', '%s')) {", old_rds, old_h5),
    "  res <- tryCatch({ if (grepl('h5$', p)) save_model_weights(model, p, overwrite = TRUE) else",
    "                    save_model(model, p, overwrite = TRUE); 'written' },",
    "    error = function(e) paste(class(e)[1], conditionMessage(e)))",
    "  cat(res, '\\n', sep = '')",
    "}",
    "invisible(gc())",
    "cat('ALIVE\\n')"), script)
  # ulimit -f: at most 128 blocks (64 KiB or 128 KiB) per file; SIGXFSZ
  # ignored so that an oversized write fails with EFBIG, as on a full disk
  cmd <- sprintf("trap '' XFSZ; ulimit -f 128; exec '%s' --vanilla '%s'", file.path(R.home("bin"), "Rscript"), script)
  out <- suppressWarnings(system2("sh", c("-c", shQuote(cmd)), stdout = TRUE, stderr = FALSE,
                                  env = paste0("R_LIBS=", paste(.libPaths(), collapse = ":"))))
  expect_identical(tail(out, 1), "ALIVE")
  expect_length(out, 3L)
  for (line in head(out, 2)) {
    expect_match(line, "^multihead_error_file_write Could not write \"")
    expect_match(line, "the previous file, if any, is unchanged")
  }
  expect_identical(readBin(old_rds, "raw", file.size(old_rds)), before_rds)
  expect_identical(readBin(old_h5, "raw", file.size(old_h5)), before_h5)
  expect_setequal(list.files(dir, all.files = TRUE, no.. = TRUE), c("model.rds", "model.weights.h5", "write.R"))
})

test_that("an overwrite replaces the file only once the new one is complete", {
  model <- keras_model_sequential(input_shape = 3) |> layer_dense(2)
  dir <- tempfile("hostile-overwrite-")
  dir.create(dir)
  path <- file.path(dir, "m.rds")
  save_model(model, path)
  old <- readBin(path, "raw", file.size(path))
  # a writer that fails after writing part of the file leaves the old one
  expect_error(multihead:::write_file_atomically(path, function(tmp) {
    writeBin(as.raw(1:10), tmp)
    stop("disk full")
  }), "Could not write .*disk full.*unchanged", class = "multihead_error_file_write")
  expect_identical(readBin(path, "raw", file.size(path)), old)
  expect_identical(list.files(dir, all.files = TRUE, no.. = TRUE), "m.rds")
  set_weights(model, lapply(get_weights(model), function(w) w + 1))
  save_model(model, path, overwrite = TRUE)
  expect_equal(get_weights(load_model(path)), get_weights(model))
  expect_identical(list.files(dir, all.files = TRUE, no.. = TRUE), "m.rds")
})
