# Keras 3 ".keras" archives: a zip holding metadata.json, config.json (the
# model's configuration, keras-config.R / keras-config-graph.R) and
# model.weights.h5 (the weights, keras-weights-h5.R), as Keras's
# saving_lib.save_model() writes them. Needs the suggested packages hdf5r,
# jsonlite and zip.
#
# Reading treats the file as data: the archive's member list is checked
# (names, sizes) before anything is extracted, only the three known members
# are extracted into a fresh temporary folder, the JSON's size and nesting
# are bounded before it is parsed, and the configuration only names
# classes that are looked up in our registries.

.keras_format_version <- "3.15.1"   # the Keras version whose archives we write
.keras_archive_members <- c("metadata.json", "config.json", "model.weights.h5")

# Custom classes registered with register_keras_serializable(), by
# registered name ("package>Name").
.keras_serializables <- new.env(parent = emptyenv())

#' Register a custom layer class for saving and loading
#'
#' Registers a layer class made by [Layer()] (or [new_layer_class()]) under
#' the name `"<package>><name>"`, as keras3's `register_keras_serializable()`
#' does, so that [save_model()] writes that name into a `.keras` archive and
#' [load_model()] finds the class again without `custom_objects`. A model
#' saved by Keras with a layer registered there as, say,
#' `"demo>PositionalEmbedding"` loads once the R class is registered with
#' `package = "demo"`.
#'
#' @param object A layer class (the constructor returned by [Layer()]).
#' @param name The name to register under: by default the class name.
#' @param package The package part of the registered name: by default the
#'   name of the package calling this function, or `"Custom"` from the
#'   global environment.
#' @returns `object`, invisibly.
#' @seealso [load_model()] (`custom_objects`).
#' @export
#' @examples
#' Scale <- Layer("Scale", call = function(inputs) inputs * 2)
#' register_keras_serializable(Scale, package = "demo")
register_keras_serializable <- function(object, name = NULL, package = NULL) {
  cls <- attr(object, "multihead_layer_class", exact = TRUE)
  if (!is.environment(cls)) abort_arg("object", "a layer class made by Layer() or new_layer_class()",
                                      describe_value(object))
  name <- check_string(name, "name", null_ok = TRUE)
  package <- check_string(package, "package", null_ok = TRUE)
  if (is.null(name)) name <- cls$classname
  if (is.null(package)) {
    package <- environmentName(topenv(parent.frame()))
    if (package %in% c("", "base", "R_GlobalEnv")) package <- "Custom"
  }
  for (x in list(list(name, "name"), list(package, "package"))) {
    if (!nzchar(x[[1L]]) || grepl(">", x[[1L]], fixed = TRUE)) {
      abort_arg(x[[2L]], "a non-empty string without \">\"", describe_value(x[[1L]]))
    }
  }
  assign(paste0(package, ">", name), object, envir = .keras_serializables)
  invisible(object)
}

# ---- writing ----------------------------------------------------------------------------------

#' @noRd
check_keras_archive_packages <- function() {
  for (pkg in c("hdf5r", "jsonlite", "zip")) {
    check_suggested_package(pkg, "read and write Keras \".keras\" archives")
  }
}

# The archive of model `self` at `filepath` (written next to it, then
# renamed into place).
#' @noRd
write_keras_archive <- function(self, filepath) {
  check_keras_archive_packages()
  check_model_built(self)
  obj <- keras_model_object(self)
  obj$compile_config <- keras_compile_config(self$compiled)
  dir <- tempfile("keras-archive-", tmpdir = dirname(filepath))
  dir.create(dir)
  dir <- normalizePath(dir)  # zip::zip() works from `root`
  on.exit(unlink(dir, recursive = TRUE), add = TRUE)
  write_json_file(list(keras_version = .keras_format_version,
                       date_saved = format(Sys.time(), "%Y-%m-%d@%H:%M:%S")),
                  file.path(dir, "metadata.json"))
  write_json_file(obj, file.path(dir, "config.json"))
  write_keras_weights_h5(self, file.path(dir, "model.weights.h5"),
                         extra = if (!is.null(self$compiled)) keras_optimizer_h5_writer(self))
  assets <- write_keras_assets(self, dir)
  write_file_atomically(filepath, function(tmp) {
    tmp <- file.path(normalizePath(dirname(tmp)), basename(tmp))  # zip::zip() works from `root`
    zip::zip(tmp, files = c(.keras_archive_members, assets), root = dir, mode = "mirror",
             include_directories = FALSE)
  })
}

#' @noRd
write_json_file <- function(x, path) {
  txt <- jsonlite::toJSON(x, auto_unbox = TRUE, null = "null", na = "null", digits = NA, pretty = FALSE)
  writeLines(txt, path, useBytes = TRUE)
}

# Layers' assets (state that is neither config nor weights: a lookup
# layer's vocabulary) as Keras's saving_lib writes them: in
# "assets/<the layer's path in the weights file>/", a vocabulary as
# vocabulary.txt (the tokens, special ones included, one per line). Returns
# the member names written.
#' @noRd
write_keras_assets <- function(self, dir) {
  members <- character()
  for (e in keras_h5_entries(self)) {
    s <- e$state
    if (is.null(s) || is.null(layer_class_def(s)$save_assets)) next
    a <- layer_class_def(s)$save_assets(s)
    if (!is.null(a$idf_weights)) {
      abort_msg(sprintf(paste0("save_model() cannot write the tf_idf weights of layer \"%s\" to a .keras archive ",
                               "yet; save to \"*.rds\" instead."), s$name), class = "multihead_error_unsupported")
    }
    if (is.null(a$vocabulary)) next
    member <- paste0("assets/", e$path, "/vocabulary.txt")
    f <- file.path(dir, member)
    dir.create(dirname(f), recursive = TRUE, showWarnings = FALSE)
    tokens <- enc2utf8(as.character(a$vocabulary))
    if (any(grepl("\n", tokens, fixed = TRUE))) {
      abort_msg(sprintf("The vocabulary of layer \"%s\" has a token with a line break, which vocabulary.txt cannot hold.",
                        s$name), class = "multihead_error_unsupported")
    }
    writeBin(charToRaw(paste(tokens, collapse = "\n")), f)
    members <- c(members, member)
  }
  members
}

# Restores layers' assets from the extracted "assets" folder (only the
# vocabulary.txt of layers whose class has assets).
#' @noRd
read_keras_assets <- function(self, dir, filepath) {
  for (e in keras_h5_entries(self)) {
    s <- e$state
    if (is.null(s) || is.null(layer_class_def(s)$load_assets)) next
    f <- file.path(dir, "assets", e$path, "vocabulary.txt")
    if (!file.exists(f)) next
    bytes <- readBin(f, "raw", file.size(f))
    txt <- rawToChar(bytes[bytes != as.raw(0L)])
    Encoding(txt) <- "UTF-8"
    if (!validUTF8(txt)) {
      abort_msg(sprintf("\"%s\" is not a valid Keras model file: the vocabulary of layer \"%s\" is not UTF-8 text.",
                        filepath, s$name), class = "multihead_error_file")
    }
    layer_class_def(s)$load_assets(s, list(vocabulary = strsplit(txt, "\n", fixed = TRUE)[[1L]]))
  }
  invisible(NULL)
}

# ---- reading ----------------------------------------------------------------------------------

# The largest member sizes read from an archive (bytes).
#' @noRd
keras_archive_limits <- function() {
  weights <- getOption("multihead.max_file_bytes", 16 * 1024^3)
  c(config.json = 64 * 1024^2, metadata.json = 1024^2, model.weights.h5 = weights)
}

# The model in archive `filepath`.
#' @noRd
read_keras_archive <- function(filepath, custom_objects, compile) {
  check_keras_archive_packages()
  dir <- extract_keras_archive(filepath)
  on.exit(unlink(dir, recursive = TRUE), add = TRUE)
  meta <- read_json_file(file.path(dir, "metadata.json"), filepath, "metadata.json")
  config <- read_json_file(file.path(dir, "config.json"), filepath, "config.json")
  if (!is_json_object(config) || !json_string(config$class_name)) {
    abort_msg(sprintf("\"%s\" is not a valid Keras model file: its config.json does not describe a model.",
                      filepath), class = "multihead_error_file")
  }
  model <- tryCatch(keras_model_from_object(config, custom_objects),
                    multihead_error_file = function(e) {
                      abort_msg(sprintf("\"%s\" is not a valid Keras model file: %s", filepath,
                                        sub("^Not a valid Keras model configuration: ", "", conditionMessage(e))),
                                class = "multihead_error_file")
                    })
  self <- layer_self(model)
  read_keras_assets(self, dir, filepath)
  if (isTRUE(self$built)) {
    weights <- file.path(dir, "model.weights.h5")
    rename <- function(e) {
      msg <- gsub(weights, sprintf("%s (its model.weights.h5)", filepath), conditionMessage(e), fixed = TRUE)
      abort_msg(msg, class = setdiff(class(e), c("multihead_error", "error", "condition")))
    }
    tryCatch(read_keras_weights_h5(self, weights, skip_mismatch = FALSE), multihead_error = rename)
  }
  cc <- config$compile_config
  if (compile && is_json_object(cc) && length(cc)) {
    keras_compile_from_config(model, cc, file.path(dir, "model.weights.h5"), filepath)
  }
  invisible(meta)
  model
}

# Checks the member list of the zip at `filepath` and extracts the known
# members into a new temporary folder, which is returned.
#' @noRd
extract_keras_archive <- function(filepath) {
  bad <- function(why) {
    abort_msg(sprintf("\"%s\" is not a valid Keras model file: %s.", filepath, why), class = "multihead_error_file")
  }
  con <- file(filepath, "rb")
  magic <- readBin(con, "raw", 4L)
  close(con)
  if (!identical(magic, as.raw(c(0x50, 0x4b, 0x03, 0x04)))) bad("it is not a zip archive")
  members <- tryCatch(zip::zip_list(filepath), error = function(e) bad("its zip directory cannot be read"))
  names <- members$filename
  if (anyDuplicated(names)) bad(sprintf("member \"%s\" appears twice", names[anyDuplicated(names)]))
  unsafe <- grepl("^/|^[A-Za-z]:|\\\\|(^|/)\\.\\.(/|$)", names) | !nzchar(names)
  if (any(unsafe)) bad(sprintf("member \"%s\" has a path outside the archive's folder", names[which(unsafe)[1L]]))
  extra <- setdiff(names, .keras_archive_members)
  extra <- extra[!startsWith(extra, "assets/")]
  if (length(extra)) bad(sprintf("it holds members a Keras model archive does not have (%s)",
                                 paste0("\"", utils::head(extra, 3L), "\"", collapse = ", ")))
  for (m in c("config.json", "model.weights.h5")) if (!(m %in% names)) bad(sprintf("it has no %s", m))
  limits <- keras_archive_limits()
  for (m in intersect(.keras_archive_members, names)) {
    size <- members$uncompressed_size[match(m, names)]
    if (!is.finite(size) || size > limits[[m]]) {
      bad(sprintf("its %s declares %s bytes, more than the %s allowed%s", m, format(size, big.mark = ","),
                  format(limits[[m]], big.mark = ","),
                  if (m == "model.weights.h5") " (options(multihead.max_file_bytes))" else ""))
    }
  }
  dir <- tempfile("keras-archive-")
  dir.create(dir)
  vocab <- names[startsWith(names, "assets/") & endsWith(names, "/vocabulary.txt")]
  for (m in vocab) {
    size <- members$uncompressed_size[match(m, names)]
    if (!is.finite(size) || size > limits[["config.json"]]) {
      bad(sprintf("its %s declares %s bytes, more than the %s allowed", m, format(size, big.mark = ","),
                  format(limits[["config.json"]], big.mark = ",")))
    }
  }
  keep <- c(intersect(.keras_archive_members, names), vocab)
  ok <- tryCatch({
    zip::unzip(filepath, files = keep, exdir = dir, junkpaths = FALSE)
    TRUE
  }, error = function(e) FALSE)
  if (!ok) {
    unlink(dir, recursive = TRUE)
    bad("its members cannot be extracted (truncated or corrupted)")
  }
  for (m in keep) {
    if (!isTRUE(file.size(file.path(dir, m)) == members$uncompressed_size[match(m, names)])) {
      unlink(dir, recursive = TRUE)
      bad(sprintf("its %s does not have the size its zip directory declares", m))
    }
  }
  dir
}

# Parses a JSON member after bounding its nesting (jsonlite recurses per
# level).
#' @noRd
read_json_file <- function(path, filepath, member) {
  if (!file.exists(path)) return(NULL)
  bytes <- readBin(path, "raw", file.size(path))
  bad <- function(why) {
    abort_msg(sprintf("\"%s\" is not a valid Keras model file: its %s %s.", filepath, member, why),
              class = "multihead_error_file")
  }
  opens <- bytes == as.raw(0x5b) | bytes == as.raw(0x7b)
  closes <- bytes == as.raw(0x5d) | bytes == as.raw(0x7d)
  if (length(bytes) && max(cumsum(as.integer(opens) - as.integer(closes))) > 256L) bad("is nested too deeply")
  if (any(bytes == as.raw(0L))) bad("contains NUL bytes")
  txt <- rawToChar(bytes)
  Encoding(txt) <- "UTF-8"
  if (!validUTF8(txt)) bad("is not UTF-8 text")
  tryCatch(jsonlite::parse_json(txt, simplifyVector = FALSE),
           error = function(e) bad(sprintf("is not valid JSON (%s)", conditionMessage(e))))
}
