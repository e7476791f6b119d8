# Saving and loading models and weights: multihead's own versioned formats
# (whole models, weights) and the dispatch to Keras's ".weights.h5" layout
# (keras-weights-h5.R).
#
# Both own formats are RDS files of plain data: lists, character, numeric
# and logical vectors and arrays, never closures or environments, so that a
# file does not depend on the package's internals at the time it was
# written. Objects that are environments or functions in memory (models,
# optimizers, losses, metrics, learning rate schedules) are written as
# records of their fields and rebuilt on loading.

.model_format_version <- 1L
.weights_format_version <- 1L

#' Save and load a whole model
#'
#' `save_model()` writes a model: its configuration, its weights and, for a
#' compiled model, the compile configuration with the optimizer's state;
#' `load_model()` recreates it. A compiled model that is loaded continues
#' training exactly as the saved one would have. The argument names follow
#' keras3 (`load_model()`'s `model` is the file path).
#'
#' A path ending in `".keras"` means Keras 3's model archive, the file
#' Keras's `model.save()` writes and `keras.saving.load_model()` reads (a zip
#' of `metadata.json`, `config.json` and `model.weights.h5`; needs the
#' suggested packages hdf5r, jsonlite and zip): multihead writes it as Keras
#' 3.15 does, and reads the archives Keras writes, for every layer class this
#' package has. Custom layers ([Layer()]) are written with their class name and
#' [get_config()], under their registered name (see
#' [register_keras_serializable()]); loading finds them in `custom_objects` or
#' among the registered classes, never in the file. The dropout layers'
#' random state is not part of a Keras archive. Any other path (such as
#' `"*.rds"`) means multihead's own versioned format below, which also
#' keeps the dropout layers' random state. Legacy Keras 2 `.h5` model files are
#' not supported.
#'
#' Files are read as data: nothing in a model file is evaluated, and classes,
#' activations, initializers, optimizers and losses named in it are looked
#' up in this package's own tables (or `custom_objects`).
#'
#' @section File format (version 1):
#' An RDS file ([saveRDS()]) of a named list of plain data (no functions or
#' environments):
#' * `format`: `"multihead.model"`.
#' * `format_version`: `1L`. A file with a larger version than this package
#'   reads is an error naming both versions.
#' * `package_version`, `r_version`: the versions that wrote the file
#'   (strings); `saved_at`: the time, UTC.
#' * `class_name`: `"Functional"` or `"Sequential"`; `config`: the model's
#'   [get_config()] list (layer configurations nested, each with its
#'   `"class_name"` attribute).
#' * `layers`: one record per layer, weightless ones included, nested
#'   models flattened (their layers in place of the model), in the order of
#'   `model$layers`: `name`,
#'   `class_name`, `weights` (a list of arrays named by Keras weight path,
#'   e.g. `"dense/kernel"`, in Keras's order and shapes) and `state`
#'   (`NULL`, or `dropout_seed` and `call_counter` of dropout randomness).
#' * `compile`: `NULL` for a model that is not compiled, else `optimizer`
#'   (`class_name`, `name`, `learning_rate` (a number, or a list of
#'   `class_name` and `config` of a schedule), `config`, `weight_decay`,
#'   `clipnorm`, `clipvalue`, `global_clipnorm`, `iterations` and `slots`:
#'   per slot kind (e.g. `"momentum"`, `"velocity"`) a list of arrays named
#'   by weight path), `losses` (per output `NULL` or a list of `class_name`
#'   and `config`), `loss_weights`, `metric_specs` and `weighted_specs`
#'   (per output, metric names or metric records: `class_name`, `name`,
#'   `dtype`, `config`, `direction`, `total`, `count`) and `output_labels`.
#'
#' @param model For `save_model()`, a model ([keras_model()] or
#'   [keras_model_sequential()]). For `load_model()`, the path of a file
#'   written by `save_model()` or by Keras (`.keras`), or the raw bytes of a
#'   `.keras` archive (what `save_model(model)` returns).
#' @param filepath The path of the file to write; `NULL` (keras3's default)
#'   returns the bytes of a `.keras` archive instead.
#' @param overwrite `TRUE` or `FALSE`: whether an existing file may be
#'   replaced.
#' @param zipped `NULL` or `TRUE`: `.keras` archives are zip files (keras3's
#'   `zipped = FALSE`, an unzipped folder, is not supported).
#' @param ... Must be empty.
#' @param custom_objects `NULL`, or a list of custom layer classes made by
#'   [Layer()], named by the class names (or registered names, such as
#'   `"demo>PositionalEmbedding"`) a `.keras` file uses.
#' @param compile `TRUE` or `FALSE`: whether to restore the compile
#'   configuration and the optimizer's state (if the model was compiled).
#' @param safe_mode `TRUE` or `FALSE`, as in keras3. multihead never
#'   evaluates code from a file (Keras's `Lambda` layers, which hold Python
#'   code, are refused either way).
#' @returns `save_model()`: `model`, invisibly (as keras3), or the archive's
#'   bytes when `filepath` is `NULL`. `load_model()`: the model.
#' @seealso [save_model_weights()] for weights only, and Keras's weights
#'   files.
#' @export
#' @examples
#' model <- keras_model_sequential(input_shape = c(4, 8)) |>
#'   layer_multi_head_attention(num_heads = 2, key_dim = 4) |>
#'   layer_dense(1)
#' model |> compile(optimizer = "adam", loss = "mse")
#' path <- tempfile(fileext = ".rds")
#' save_model(model, path)
#' model2 <- load_model(path)
#' x <- array(rnorm(2 * 4 * 8), c(2, 4, 8))
#' all.equal(model(x), model2(x))
#' if (requireNamespace("hdf5r", quietly = TRUE) && requireNamespace("zip", quietly = TRUE)) {
#'   keras_file <- tempfile(fileext = ".keras")
#'   save_model(model, keras_file)
#'   model3 <- load_model(keras_file)
#'   all.equal(model(x), model3(x))
#' }
save_model <- function(model, filepath = NULL, overwrite = FALSE, zipped = NULL, ...) {
  self <- check_model_arg(model)
  check_dots_empty_here(list(...), "save_model()")
  if (!is.null(zipped) && !identical(zipped, TRUE)) {
    abort_arg("zipped", "NULL or TRUE (multihead writes .keras archives zipped, as Keras does by default)",
              describe_value(zipped))
  }
  if (is.null(filepath)) {  # keras3: the archive's bytes
    path <- tempfile(fileext = ".keras")
    on.exit(unlink(path), add = TRUE)
    write_keras_archive(self, path)
    return(readBin(path, "raw", file.size(path)))
  }
  filepath <- check_write_path(filepath, overwrite, "model")
  if (is_keras_archive_path(filepath)) {
    write_keras_archive(self, filepath)
    return(invisible(model))
  }
  record <- list(
    format = "multihead.model",
    format_version = .model_format_version,
    package_version = getNamespaceVersion("multihead")[[1L]],
    r_version = as.character(getRversion()),
    saved_at = format(Sys.time(), "%Y-%m-%d %H:%M:%S", tz = "UTC"),
    class_name = self$class_name,
    config = layer_get_config(self),
    layers = if (isTRUE(self$built)) layer_weight_records(self, state = TRUE) else list(),
    compile = if (is.null(self$compiled)) NULL else compile_record(self$compiled)
  )
  write_rds_file(record, filepath)
  invisible(model)
}

#' @rdname save_model
#' @export
load_model <- function(model, custom_objects = NULL, compile = TRUE, safe_mode = TRUE) {
  compile <- check_flag(compile, "compile")
  safe_mode <- check_flag(safe_mode, "safe_mode")
  custom_objects <- check_custom_objects(custom_objects)
  if (is.raw(model)) {  # keras3: the bytes of a .keras archive
    path <- tempfile(fileext = ".keras")
    on.exit(unlink(path), add = TRUE)
    writeBin(model, path)
    return(read_keras_archive(path, custom_objects, compile))
  }
  filepath <- check_read_path(model, "model", "load_model")
  if (is_keras_archive_path(filepath)) return(read_keras_archive(filepath, custom_objects, compile))
  record <- read_multihead_file(filepath, "multihead.model", .model_format_version, "model")
  if (!(identical(record$class_name, "Functional") || identical(record$class_name, "Sequential")) ||
      !is.list(record$config)) {
    abort_msg(sprintf("\"%s\" does not hold a model configuration.", filepath), class = "multihead_error_file")
  }
  config <- record$config
  attr(config, "class_name") <- record$class_name
  obj <- from_config(config)
  self <- layer_self(obj)
  if (length(record$layers)) {
    assign_weight_records(self, record$layers, skip_mismatch = FALSE, filepath = filepath, state = TRUE)
  }
  if (compile && !is.null(record$compile)) self$compiled <- compiled_from_record(record$compile)
  obj
}

# `custom_objects` of load_model(): NULL, or a named list of layer classes
# made by Layer() (keras3 also accepts a list of classes named by their own
# class names).
#' @noRd
check_custom_objects <- function(custom_objects) {
  if (is.null(custom_objects)) return(list())
  if (is_layer_class_constructor(custom_objects)) custom_objects <- list(custom_objects)
  if (!is.list(custom_objects) || is.object(custom_objects)) {
    abort_arg("custom_objects", "NULL or a named list of layer classes made by Layer()",
              describe_value(custom_objects))
  }
  nms <- names(custom_objects)
  if (is.null(nms)) nms <- rep("", length(custom_objects))
  for (i in seq_along(custom_objects)) {
    obj <- custom_objects[[i]]
    if (!is_layer_class_constructor(obj)) {
      abort_arg(sprintf("custom_objects[[%d]]", i), "a layer class made by Layer() or new_layer_class()",
                describe_value(obj))
    }
    if (!nzchar(nms[[i]])) nms[[i]] <- attr(obj, "multihead_layer_class", exact = TRUE)$classname
  }
  stats::setNames(custom_objects, nms)
}

#' @noRd
is_layer_class_constructor <- function(x) is.function(x) && is.environment(attr(x, "multihead_layer_class", exact = TRUE))

#' @noRd
check_dots_empty_here <- function(dots, fun) {
  if (length(dots)) {
    nms <- names(dots)
    abort_arg(if (is.null(nms) || !nzchar(nms[[1L]])) "..." else nms[[1L]],
              sprintf("not given: %s takes no such argument", fun), describe_value(dots[[1L]]))
  }
}

#' Save and load a model's weights
#'
#' `save_model_weights()` writes the weights of a model; `load_model_weights()`
#' reads them into a model of the same architecture. A path ending in
#' `".weights.h5"` means Keras 3's HDF5 weights layout (the files Keras's
#' `model.save_weights()` writes and `model.load_weights()` reads; needs
#' the package hdf5r); any other path multihead's own versioned format.
#'
#' In a Keras weights file each layer's weights sit in the group
#' `layers/<class>/vars` (`<class>` is the snake_case class name, with
#' `_1`, `_2`, ... for further layers of the same class: layer names are not
#' used, so a model built in another session, or by Keras, with other layer
#' names loads fine), as datasets `"0"`, `"1"`, ... in Keras's weight order
#' and shapes; a multi-head attention layer's projections are in its
#' sub-groups `query_dense`, `key_dense`, `value_dense`, `output_dense` (and
#' `_gate_dense`). Layers are matched by their position among the layers of
#' their class in Keras's order of `model$layers`: for a sequential model the
#' order of adding; for a functional model Keras's topological order (the
#' layers farthest from the outputs first), which for branching graphs can
#' differ from the order of creation. Groups the model does not need (such as a
#' compiled Keras model's `optimizer`) are ignored; the optimizer's state is
#' not written.
#'
#' A layer whose number of weights or whose weight shapes differ from the
#' file's is an error naming the layer and the weight's path; with
#' `skip_mismatch = TRUE` such layers are left unchanged with a warning
#' instead, as in Keras.
#'
#' @section Own weights format (version 1):
#' An RDS file of a named list of plain data: `format` (`"multihead.weights"`),
#' `format_version` (`1L`), `package_version`, `r_version`, `saved_at`, and
#' `layers`: one record per layer, as in [save_model()]'s format, with
#' `name`, `class_name` and `weights` (a list of arrays named by Keras
#' weight path). Records are matched to the model's layers by position (the
#' classes must agree; names may differ). A file written by
#' [save_model()] can be read by `load_model_weights()` too.
#'
#' @param model A built model.
#' @param filepath The file's path. Ending in `".weights.h5"`: the Keras 3
#'   layout; anything else (except `".keras"` and `".h5"`, which are errors):
#'   multihead's own format.
#' @param overwrite `TRUE` or `FALSE`: whether an existing file may be
#'   replaced.
#' @param skip_mismatch `TRUE` or `FALSE`: whether to skip (with a warning)
#'   layers whose weights do not match instead of failing.
#' @returns `save_model_weights()`: `filepath`, invisibly.
#'   `load_model_weights()`: `model`, invisibly (changed in place).
#' @seealso [save_model()].
#' @export
#' @examples
#' model <- keras_model_sequential(input_shape = 3) |> layer_dense(2)
#' path <- tempfile(fileext = ".rds")
#' save_model_weights(model, path)
#' model2 <- keras_model_sequential(input_shape = 3) |> layer_dense(2)
#' load_model_weights(model2, path)
#' identical(get_weights(model), get_weights(model2))
#' if (requireNamespace("hdf5r", quietly = TRUE)) {
#'   h5 <- tempfile(fileext = ".weights.h5")
#'   save_model_weights(model, h5)
#'   load_model_weights(model2, h5)
#' }
save_model_weights <- function(model, filepath, overwrite = FALSE) {
  self <- check_model_arg(model)
  filepath <- check_write_path(filepath, overwrite, "weights")
  check_model_built(self)
  if (is_keras_weights_path(filepath)) {
    write_keras_weights_h5(self, filepath)
  } else {
    write_rds_file(list(format = "multihead.weights", format_version = .weights_format_version,
                        package_version = getNamespaceVersion("multihead")[[1L]],
                        r_version = as.character(getRversion()),
                        saved_at = format(Sys.time(), "%Y-%m-%d %H:%M:%S", tz = "UTC"),
                        layers = layer_weight_records(self, state = FALSE)),
                   filepath)
  }
  invisible(filepath)
}

#' @rdname save_model_weights
#' @export
load_model_weights <- function(model, filepath, skip_mismatch = FALSE) {
  self <- check_model_arg(model)
  filepath <- check_read_path(filepath, "weights", "load_model_weights")
  skip_mismatch <- check_flag(skip_mismatch, "skip_mismatch")
  check_model_built(self)
  if (is_keras_weights_path(filepath)) {
    read_keras_weights_h5(self, filepath, skip_mismatch)
  } else {
    record <- read_multihead_file(filepath, c("multihead.weights", "multihead.model"),
                                  c(multihead.weights = .weights_format_version,
                                    multihead.model = .model_format_version), "weights")
    assign_weight_records(self, record$layers, skip_mismatch, filepath, state = FALSE)
  }
  invisible(model)
}

# ---- arguments -------------------------------------------------------------------

#' @noRd
check_model_arg <- function(model) {
  if (!inherits(model, "multihead_model")) {
    abort_arg("model", "a model (from keras_model() or keras_model_sequential())", describe_value(model))
  }
  layer_self(model)
}

#' @noRd
check_model_built <- function(self) {
  if (!isTRUE(self$built)) {
    abort_msg(sprintf(paste0("Model \"%s\" is not built yet, so it has no weights: give it an input shape or ",
                             "call it on data first."), self$name), class = "multihead_error_argument")
  }
}

#' @noRd
is_keras_weights_path <- function(path) grepl("\\.weights\\.h5$", path, ignore.case = TRUE)

#' @noRd
is_keras_archive_path <- function(path) grepl("\\.keras$", path, ignore.case = TRUE)

# Paths of files this function does not read or write: legacy Keras ".h5"
# model files always; ".keras" archives as weights; ".weights.h5" as whole
# models.
#' @noRd
check_not_keras_archive <- function(filepath, what) {
  keras_archive <- is_keras_archive_path(filepath) && !identical(what, "model")
  legacy_h5 <- grepl("\\.(h5|hdf5)$", filepath, ignore.case = TRUE) && !is_keras_weights_path(filepath)
  whole_model_h5 <- identical(what, "model") && is_keras_weights_path(filepath)
  if (keras_archive || legacy_h5 || whole_model_h5) {
    kind <- if (keras_archive) "a Keras model archive (\".keras\")" else if (legacy_h5)
      "a legacy Keras HDF5 file (\".h5\", Keras 2)" else "a Keras weights file (\".weights.h5\")"
    abort_arg("filepath", sprintf(paste0(
      "the path of a %s file, not %s: %s"), what, kind,
      if (identical(what, "model")) paste0("save_model() and load_model() handle \".keras\" archives and ",
                                           "multihead's own format (e.g. \"*.rds\"); weights go to ",
                                           "\"*.weights.h5\" with save_model_weights()")
      else "weights files end in \".weights.h5\" (Keras's layout) or are multihead's own (e.g. \"*.rds\")"),
      sprintf("\"%s\"", filepath))
  }
}

#' @noRd
check_write_path <- function(filepath, overwrite, what) {
  filepath <- path.expand(check_string(filepath, "filepath"))  # hdf5r does not expand "~"
  overwrite <- check_flag(overwrite, "overwrite")
  check_not_keras_archive(filepath, what)
  if (dir.exists(filepath)) abort_arg("filepath", "the path of a file, not a directory", sprintf("\"%s\"", filepath))
  if (file.exists(filepath) && !overwrite) {
    abort_arg("filepath", "the path of a file that does not exist yet, or use overwrite = TRUE",
              sprintf("\"%s\", which exists", filepath))
  }
  if (!dir.exists(dirname(filepath))) {
    abort_arg("filepath", "a path in an existing directory", sprintf("\"%s\" (no directory \"%s\")", filepath,
                                                                     dirname(filepath)))
  }
  filepath
}

#' @noRd
check_read_path <- function(filepath, what, fun) {
  arg <- if (identical(fun, "load_model")) "model" else "filepath"
  if (!(is.character(filepath) && length(filepath) == 1L && !is.na(filepath) && nzchar(filepath))) {
    abort_arg(arg, sprintf("the path of a file to read (a single string)%s",
                           if (identical(arg, "model")) "; load_model() takes the file path, as in keras3" else ""),
              describe_value(filepath))
  }
  tryCatch(check_not_keras_archive(filepath, what), multihead_error_argument = function(e) {
    abort_msg(sub("^`filepath`", sprintf("`%s`", arg), conditionMessage(e)), class = "multihead_error_argument")
  })
  if (!file.exists(filepath) || dir.exists(filepath)) {
    abort_arg(arg, "the path of an existing file", sprintf("\"%s\"", filepath))
  }
  path.expand(filepath)
}

# ---- files -----------------------------------------------------------------------

# Writes next to the target, then renames: an interrupted write never
# leaves a truncated file under `filepath`. The record must be plain data.
#' @noRd
write_rds_file <- function(x, filepath) {
  bad <- first_non_plain(x)
  if (!is.null(bad)) {
    abort_msg(sprintf("Cannot save: `%s` is %s, which the file format (plain data) cannot hold.", bad$where,
                      if (is.environment(bad$value)) "an environment" else describe_value(bad$value)),
              class = "multihead_error_unsupported")
  }
  tmp <- tempfile(fileext = ".rds", tmpdir = dirname(filepath))
  on.exit(unlink(tmp), add = TRUE)
  saveRDS(x, tmp)
  move_into_place(tmp, filepath)
}

# The first function, environment or other reference object inside `x`, as
# list(where = its place ("record$a[[2]]$b"), value), or NULL when `x` is
# all plain data.
#' @noRd
first_non_plain <- function(x, where = "record") {
  if (is.function(x) || is.environment(x) || typeof(x) %in% c("externalptr", "S4", "weakref", "bytecode")) {
    return(list(where = where, value = x))
  }
  for (a in setdiff(names(attributes(x)), c("names", "dim", "dimnames", "class_name"))) {
    w <- first_non_plain(attr(x, a), sprintf("attr(%s, \"%s\")", where, a))
    if (!is.null(w)) return(w)
  }
  if (is.list(x)) {
    nms <- names(x)
    for (i in seq_along(x)) {
      sub <- if (!is.null(nms) && nzchar(nms[[i]]) && make.names(nms[[i]]) == nms[[i]]) {
        paste0(where, "$", nms[[i]])
      } else sprintf("%s[[%d]]", where, i)
      w <- first_non_plain(x[[i]], sub)
      if (!is.null(w)) return(w)
    }
  }
  NULL
}

#' @noRd
move_into_place <- function(tmp, filepath) {
  if (file.exists(filepath)) unlink(filepath)
  if (!file.rename(tmp, filepath)) {
    if (!file.copy(tmp, filepath, overwrite = TRUE)) abort_msg(sprintf("Could not write \"%s\".", filepath))
  }
  invisible(filepath)
}

# Reads one of our RDS files, checking that it is ours (`formats`) and of a
# version this package reads (`versions`, named by format).
#' @noRd
read_multihead_file <- function(filepath, formats, versions, what) {
  x <- tryCatch(readRDS(filepath), error = function(e) NULL, warning = function(w) NULL)
  format <- if (is.list(x) && !is.object(x)) x$format
  if (!(is.character(format) && length(format) == 1L && format %in% formats)) {
    abort_msg(sprintf("\"%s\" is not a multihead %s file: it was not written by %s.", filepath, what,
                      if (identical(what, "model")) "save_model()" else "save_model_weights() or save_model()"),
              class = "multihead_error_file")
  }
  v <- x$format_version
  known <- versions[[if (length(versions) > 1L) format else 1L]]
  if (!(is.numeric(v) && length(v) == 1L && !is.na(v) && v >= 1 && v == round(v))) {
    abort_msg(sprintf("\"%s\" has no valid format version.", filepath), class = "multihead_error_file")
  }
  if (v > known) {
    abort_msg(sprintf(paste0("\"%s\" was written in multihead's %s format version %d (by multihead %s), but ",
                             "this version of multihead (%s) reads format version %d only. Update multihead ",
                             "to read it."), filepath, format, as.integer(v), format(x$package_version),
                      getNamespaceVersion("multihead")[[1L]], known),
              class = "multihead_error_file_version")
  }
  x
}

# ---- weights -------------------------------------------------------------------

# Every layer of a model (weightless ones included), nested models replaced
# by their layers, in the order of get_weights().
#' @noRd
model_leaf_layers <- function(self) {
  out <- list()
  for (l in self$layers) {
    s <- layer_self(l)
    out <- if (is_model_self(s)) c(out, model_leaf_layers(s)) else c(out, list(s))
  }
  out
}

#' @noRd
layer_weight_records <- function(self, state) {
  lapply(model_leaf_layers(self), function(s) {
    rec <- list(name = s$name, class_name = s$class_name, weights = layer_variables(s))
    if (state) {
      rec["state"] <- list(if (!is.null(s$dropout_seed)) {
        list(dropout_seed = s$dropout_seed, call_counter = s$call_counter)
      })
    }
    rec
  })
}

#' @noRd
assign_weight_records <- function(self, records, skip_mismatch, filepath, state) {
  leaves <- model_leaf_layers(self)
  if (!is.list(records) || length(records) != length(leaves)) {
    abort_msg(sprintf("\"%s\" holds weights for %d layers but model \"%s\" has %d layers (%s).", filepath,
                      if (is.list(records)) length(records) else 0L, self$name, length(leaves),
                      paste(vapply(leaves, function(s) s$name, character(1)), collapse = ", ")),
              class = "multihead_error_weights")
  }
  loads <- list()
  states <- list()
  for (i in seq_along(leaves)) {
    s <- leaves[[i]]
    r <- records[[i]]
    if (!is.list(r)) r <- list()
    if (!identical(r$class_name, s$class_name)) {
      msg <- sprintf("Layer %d of the model, \"%s\", is a %s layer but the file's layer %d (\"%s\") is a %s layer.",
                     i, s$name, s$class_name, i, format(r$name), format(r$class_name))
      if (!skip_mismatch) abort_msg(msg, class = "multihead_error_weights")
      warning(sprintf("Skipping layer \"%s\": %s", s$name, msg), call. = FALSE)
      next
    }
    w <- if (is.list(r$weights)) r$weights else list()
    loads[[length(loads) + 1L]] <- list(label = s$name, where = sprintf("layers[[%d]]", i),
                                        value_names = if (is.null(names(w))) rep("", length(w)) else names(w),
                                        slots = layer_variable_slots(s), values = unname(w))
    if (state && is.list(r$state) && !is.null(s$dropout_seed)) states[[length(states) + 1L]] <- list(s, r$state)
  }
  assign_loaded_weights(loads, skip_mismatch, filepath)
  for (st in states) {
    st[[1L]]$dropout_seed <- st[[2L]]$dropout_seed
    st[[1L]]$call_counter <- st[[2L]]$call_counter
  }
  invisible(NULL)
}

# `loads`: list of list(label = the layer named in messages, where = the
# weights' place in the file (an HDF5 group, or "layers[[i]]" of our
# files), value_names = the names of the values in our files (NULL for
# HDF5, whose values are "<where>/0", "<where>/1", ...), slots =
# layer_variable_slots() records, values = list of arrays, or NULL when the
# file has nothing there). Checks every load (counts, shapes, finite values)
# before changing anything; a mismatch is an error, or with skip_mismatch a
# warning and that layer is left as it is.
#' @noRd
assign_loaded_weights <- function(loads, skip_mismatch, filepath) {
  accepted <- list()
  for (ld in loads) {
    problem <- weights_mismatch(ld, filepath)
    if (!is.null(problem)) {
      if (!skip_mismatch) abort_msg(problem, class = "multihead_error_weights")
      warning(paste0("Skipping layer \"", ld$label, "\": ", problem), call. = FALSE)
      next
    }
    accepted[[length(accepted) + 1L]] <- ld
  }
  touched <- list()
  for (ld in accepted) {
    for (i in seq_along(ld$slots)) {
      s <- ld$slots[[i]]
      current <- s$self$variables[[s$name]]
      value <- store_weight(ld$values[[i]], shape_of(current), s$self$dtype)
      if (is.null(dim(current))) dim(value) <- NULL  # a scalar weight (shape ()) stays a plain number
      s$self$variables[[s$name]] <- value
      touched[[length(touched) + 1L]] <- s$self
    }
  }
  for (s in touched) layer_weights_changed(s)
  invisible(length(accepted))
}

#' @noRd
weights_mismatch <- function(ld, filepath) {
  value_place <- function(i) {
    if (is.null(ld$value_names)) sprintf("\"%s/%d\"", ld$where, i - 1L)
    else sprintf("\"%s\" (%s)", ld$value_names[[i]], ld$where)
  }
  n_model <- length(ld$slots)
  if (is.null(ld$values)) {
    return(sprintf("layer \"%s\" has %d weights but \"%s\" has none for it (no group \"%s\").", ld$label,
                   n_model, filepath, ld$where))
  }
  n_file <- length(ld$values)
  if (n_file != n_model) {
    return(sprintf("layer \"%s\" has %d weights but \"%s\" has %d for it (at \"%s\").", ld$label, n_model,
                   filepath, n_file, ld$where))
  }
  for (i in seq_len(n_model)) {
    s <- ld$slots[[i]]
    expected <- shape_of(s$self$variables[[s$name]])
    v <- ld$values[[i]]
    got <- shape_of(v)
    path <- paste0(s$self$name, "/", s$name)
    if (!is.numeric(v) || length(got) != length(expected) || any(got != expected)) {
      return(sprintf("weight \"%s\" of layer \"%s\" has shape (%s) but the file's %s has shape (%s).", path,
                     ld$label, format_shape(expected), value_place(i), format_shape(got)))
    }
    if (!cpp_all_finite(as.double(v))) {
      return(sprintf("the file's %s for weight \"%s\" of layer \"%s\" contains NA, NaN or Inf.",
                     value_place(i), path, ld$label))
    }
  }
  NULL
}

# ---- compile state as plain data -------------------------------------------------

#' @noRd
compile_record <- function(compiled) {
  refuse_custom_objects(compiled)
  spec_records <- function(per_output) lapply(per_output, function(specs) lapply(specs, function(m) {
    if (is_metric(m)) metric_record(m) else m
  }))
  list(optimizer = optimizer_record(compiled$optimizer),
       losses = lapply(compiled$losses, function(l) if (is.null(l)) NULL else loss_self(l)),
       loss_weights = compiled$loss_weights,
       metric_specs = spec_records(compiled$metric_specs),
       weighted_specs = spec_records(compiled$weighted_specs),
       output_labels = compiled$output_labels)
}

# A model file holds data only: a loss, metric or learning-rate schedule made
# by Loss() / Metric() / LearningRateSchedule() is R code, which is not
# written to it.
#' @noRd
refuse_custom_objects <- function(compiled) {
  found <- character()
  for (l in compiled$losses) if (is_class_instance(l)) found <- c(found, sprintf("loss %s", class(l)[1L]))
  for (specs in c(compiled$metric_specs, compiled$weighted_specs)) {
    for (m in specs) if (is_class_instance(m)) found <- c(found, sprintf("metric %s", class(m)[1L]))
  }
  lr <- compiled$optimizer$learning_rate
  if (is_class_instance(lr)) found <- c(found, sprintf("learning-rate schedule %s", class(lr)[1L]))
  if (length(found)) {
    abort_msg(sprintf(paste0("save_model() writes data only, and the compiled model uses custom R code (%s). ",
                             "Save the weights with save_model_weights() or the whole object with saveRDS(), ",
                             "or compile() with built-in objects before saving."),
                      paste(unique(found), collapse = ", ")), class = "multihead_error_unsupported")
  }
  invisible(NULL)
}

#' @noRd
compiled_from_record <- function(rec) {
  spec_objects <- function(per_output) lapply(per_output, function(specs) lapply(specs, function(m) {
    if (is.list(m)) metric_from_record(m) else m
  }))
  list(optimizer = optimizer_from_record(rec$optimizer),
       losses = lapply(rec$losses, function(l) {
         if (is.null(l)) return(NULL)
         cfg <- l$config
         new_loss(l$class_name, cfg[setdiff(names(cfg), c("name", "reduction", "dtype"))], cfg$reduction,
                  cfg$name, cfg$dtype)
       }),
       loss_weights = rec$loss_weights,
       metric_specs = spec_objects(rec$metric_specs),
       weighted_specs = spec_objects(rec$weighted_specs),
       metrics = NULL,
       output_labels = rec$output_labels)
}

#' @noRd
optimizer_fields <- function() {
  c("class_name", "name", "learning_rate", "config", "weight_decay", "clipnorm", "clipvalue",
    "global_clipnorm", "iterations", "slots")
}

#' @noRd
optimizer_record <- function(opt) {
  rec <- mget(optimizer_fields(), envir = opt)
  if (is_lr_schedule(rec$learning_rate)) {
    rec$learning_rate <- list(class_name = lr_schedule_class(rec$learning_rate),
                              config = lr_schedule_config(rec$learning_rate))
  }
  rec
}

#' @noRd
optimizer_from_record <- function(rec) {
  lr <- rec$learning_rate
  if (is.list(lr)) {
    rate <- switch(lr$class_name, ExponentialDecay = exponential_decay_rate, CosineDecay = cosine_decay_rate,
                   abort_msg(sprintf("Unknown learning rate schedule \"%s\" in the file.", lr$class_name),
                             class = "multihead_error_file"))
    rec$learning_rate <- new_lr_schedule(lr$class_name, lr$config, rate)
  }
  opt <- list2env(rec[optimizer_fields()], envir = new.env(parent = emptyenv()))
  class(opt) <- c(rec$class_name, "multihead_optimizer")
  opt
}

#' @noRd
metric_record <- function(m) mget(c("class_name", "name", "dtype", "config", "direction", "total", "count"),
                                  envir = m)

#' @noRd
metric_from_record <- function(rec) {
  m <- list2env(rec, envir = new.env(parent = emptyenv()))
  class(m) <- c(rec$class_name, "multihead_metric")
  m
}
