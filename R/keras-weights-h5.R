# Keras 3 ".weights.h5" files: the HDF5 layout that Keras's
# model.save_weights() writes and model.load_weights() reads, read and
# written through the suggested package hdf5r.
#
# Layout followed (learnt from keras-team/keras, not copied):
# - keras/src/saving/saving_lib.py (revision b470eee6 and the newer one with
#   ShardedH5IOStore): save_weights_only() and load_weights_only() walk the
#   model with _save_state() / _load_state(); every object visited gets the
#   group "<inner path>/vars" (the model itself "/vars"), created even when
#   the object owns no variables (H5Entry in older versions creates it on
#   make(); newer H5IOStore.make() creates it at once because layers pass
#   metadata {"name": layer.name}, written as the attribute "name" of the
#   vars group). _walk_saveable() visits a Sequential or Functional model's
#   `layers` first (as the container "layers"), then the object's other
#   attributes sorted by name with private ("_") names last, skipping the
#   attributes every plain Layer has; an object already visited is skipped
#   (so MultiHeadAttention's `_query_dense` is saved once, under the public
#   property `query_dense`). _save_container_state() names each element of
#   a list by the snake_case of its class (naming.to_snake_case), adding
#   "_1", "_2", ... for further elements of the same class: layer names
#   never appear in paths (keras/src/utils/naming.py to_snake_case()).
# - keras/src/layers/layer.py save_own_variables(): a layer's own variables
#   (trainable, then non-trainable, in creation order) as datasets "0",
#   "1", ... of its vars group; sub-layers' variables are not its own.
#   load_own_variables() requires the same count; assigning checks shapes.
#   keras/src/layers/core/dense.py and einsum_dense.py override them with
#   variable_serialization_spec: unquantized, "kernel" then "bias" (when
#   there is one) as "0", "1". Dropout's SeedGenerator
#   (keras/src/random/seed_generator.py) is neither a saveable nor one of
#   the layer's own variables, so dropout layers have empty vars groups.
# - keras/src/models/sequential.py `layers` omits the InputLayer;
#   keras/src/models/functional.py `layers` (the Layers among the
#   operations) includes the InputLayers, in the order of
#   keras/src/ops/function.py map_graph() (see keras_layer_order()).
# - keras/src/layers/attention/multi_head_attention.py: properties
#   query_dense, key_dense, value_dense, output_dense; private _gate_dense
#   (use_gate), _softmax and _dropout_layer (weightless, always built).
#
# So a functional model input -> MultiHeadAttention -> Dense is stored as
#   /vars                                             (attr name = model name)
#   /layers/input_layer/vars
#   /layers/multi_head_attention/vars
#   /layers/multi_head_attention/key_dense/vars/0     kernel (Dk, N, H)
#   /layers/multi_head_attention/key_dense/vars/1     bias (N, H)
#   /layers/multi_head_attention/output_dense/vars/{0,1}
#   /layers/multi_head_attention/query_dense/vars/{0,1}
#   /layers/multi_head_attention/value_dense/vars/{0,1}
#   /layers/multi_head_attention/_dropout_layer/vars
#   /layers/multi_head_attention/_gate_dense/vars/{0,1}   (use_gate only)
#   /layers/multi_head_attention/_softmax/vars
#   /layers/dense/vars/{0,1}                          kernel (E, units), bias
# and a custom layer (Layer()) with `self$norm` and a list `self$blocks` of two
# Dense layers, at <path>, as
#   <path>/vars/{0,1,...}                             its own variables
#   <path>/blocks/dense/vars/{0,1}, <path>/blocks/dense_1/vars/{0,1}
#   <path>/norm/vars/{0,1}
# The groups below a layer's own come from its class's `h5_children`
# (register_layer_class()): MultiHeadAttention's (mha_h5_children(),
# layer-multi-head-attention.R) and custom layers' (custom_h5_children()).
# Datasets hold the arrays in Keras's (row-major) axis order; hdf5r shows
# them with the axes reversed, so arrays are permuted on the way in and out.
# Files written by Keras for a compiled model also hold "optimizer" and
# metric groups; reading ignores groups it does not need, and writing
# writes the layers only (as Keras does for a model that is not compiled).

# ---- the walk: which group holds which variables ------------------------------

# Keras's naming.to_snake_case() (keras/src/utils/naming.py) for class
# names: "GlobalAveragePooling1D" -> "global_average_pooling1d".
#' @noRd
keras_snake_case <- function(x) {
  x <- gsub("[^A-Za-z0-9_]+", "", x)
  x <- gsub("(.)([A-Z][a-z]+)", "\\1_\\2", x)
  tolower(gsub("([a-z])([A-Z])", "\\1_\\2", x))
}

# One entry per vars group: list(path = group path without "/vars" (""
# for the root), alt = other paths to try when reading, name = the name
# attribute, label = the layer named in messages, slots = the variables
# it owns, as layer_variable_slots() records).
# A layer's groups below its own come from its class's `h5_children`
# (register_layer_class()); `visited` holds the layer states already
# given a group: as Keras's visited_saveables, a layer reached again (a
# shared sub-layer) is saved once, where it was first reached.
#' @noRd
keras_h5_entries <- function(self, path = "", label = self$name, visited = new.env(parent = emptyenv())) {
  own_slots <- function(s) lapply(s$variable_names, function(v) list(self = s, name = v))
  entry <- function(p, name, label, slots = list(), alt = character(), state = NULL) {
    list(path = p, alt = alt, name = name, label = label, slots = slots, state = state)
  }
  join <- function(a, b) if (nzchar(a)) paste0(a, "/", b) else b
  h5_mark_visited(visited, self)
  if (is_model_self(self)) {
    out <- list(entry(path, self$name, label))
    used <- list()
    for (l in keras_layer_order(self)) {
      s <- layer_self(l)
      key <- keras_snake_case(s$class_name)
      n <- used[[key]]
      used[[key]] <- if (is.null(n)) 0L else n + 1L
      if (h5_visited(visited, s)) next
      child <- join(join(path, "layers"), if (is.null(n)) key else paste0(key, "_", n + 1L))
      out <- c(out, keras_h5_entries(s, child, s$name, visited))
    }
    return(out)
  }
  out <- list(entry(path, self$name, label, own_slots(self), state = self))
  children <- layer_class_def(self)$h5_children
  if (is.null(children)) {
    if (length(self$sublayers)) {
      abort_msg(sprintf("Layer \"%s\" (%s) has sub-layers that the Keras weights layout of multihead does not cover.",
                        self$name, self$class_name), class = "multihead_error_unsupported")
    }
    return(out)
  }
  for (ch in children(self)) {
    p <- join(path, ch$path)
    alt <- vapply(as.character(ch$alt), function(a) join(path, a), character(1), USE.NAMES = FALSE)
    if (is.null(ch$layer)) {  # a weightless group
      out <- c(out, list(entry(p, ch$name, label, alt = alt)))
      next
    }
    s <- layer_self(ch$layer)
    if (h5_visited(visited, s)) next
    sub <- keras_h5_entries(s, p, paste0(label, "/", s$name), visited)
    sub[[1L]]$alt <- alt
    out <- c(out, sub)
  }
  for (l in self$sublayers) {
    s <- layer_self(l)
    if (!h5_visited(visited, s)) {
      abort_msg(sprintf(paste0("Sub-layer \"%s\" of layer \"%s\" (%s) has no place in the Keras weights layout ",
                               "of multihead."), s$name, self$name, self$class_name),
                class = "multihead_error_unsupported")
    }
  }
  out
}

#' @noRd
h5_mark_visited <- function(visited, s) {
  visited$states <- c(visited$states, list(s))
  invisible(NULL)
}

#' @noRd
h5_visited <- function(visited, s) {
  for (v in visited$states) if (identical(v, s)) return(TRUE)
  FALSE
}

# The `h5_children` of custom layers (Layer()), as Keras 3 saves a layer
# subclass (keras/src/saving/saving_lib.py): _walk_saveable() visits the
# layer's attributes sorted by name (Python's code-point order, names
# starting with "_" last: _name_key()), skipping those every Layer has;
# _save_state() saves a layer held by an attribute at "<path>/<attribute>"
# and _save_container_state() each layer in a list (or the values of a
# dict: R's named lists) held by an attribute at
# "<path>/<attribute>/<snake_case class>", "_1", "_2", ... counting the
# layers of that class in the list, visited or not. Layers deeper in
# nested lists are not saved by Keras: such a sub-layer (or one no
# attribute holds any more) is an error. Attributes holding layers that are
# not tracked (class fields) are not the layer's weights and are left out.
#' @noRd
custom_h5_children <- function(self) {
  attrs <- self$attrs
  nms <- ls(attrs, all.names = TRUE, sorted = FALSE)
  nms <- nms[order(ifelse(startsWith(nms, "_"), paste0("~", nms), nms), method = "radix")]
  subs <- lapply(self$sublayers, layer_self)
  tracked <- function(l) {
    s <- layer_self(l)
    for (t in subs) if (identical(t, s)) return(TRUE)
    FALSE
  }
  out <- list()
  for (nm in nms) {
    v <- get(nm, envir = attrs, inherits = FALSE)
    if (is_layer(v)) {
      if (tracked(v)) out[[length(out) + 1L]] <- list(path = nm, layer = v)
    } else if (is.list(v) && !is.object(v)) {
      used <- list()
      for (el in v) {
        if (!is_layer(el)) next
        key <- keras_snake_case(layer_self(el)$class_name)
        n <- used[[key]]
        used[[key]] <- if (is.null(n)) 0L else n + 1L
        if (tracked(el)) {
          out[[length(out) + 1L]] <- list(path = paste0(nm, "/", if (is.null(n)) key else paste0(key, "_", n + 1L)),
                                          layer = el)
        }
      }
    }
  }
  reached <- lapply(out, function(ch) layer_self(ch$layer))
  for (i in seq_along(subs)) {
    if (any(vapply(reached, identical, logical(1), subs[[i]]))) next
    abort_msg(sprintf(paste0("Sub-layer \"%s\" of layer \"%s\" (%s), tracked from attribute `%s`, has no place ",
                             "in Keras's weights layout: Keras saves the layers held by attributes and those ",
                             "in lists held by attributes, not layers in nested lists or no longer held by an ",
                             "attribute."), subs[[i]]$name, self$name, self$class_name,
                      self$sublayer_attrs[i]), class = "multihead_error_unsupported")
  }
  out
}

#' @noRd
is_model_self <- function(s) !is.null(s$graph) || identical(s$class_name, "Sequential")

# The order of Keras's `model.layers`, which decides the names "dense",
# "dense_1", ... of the groups. Sequential: the layers as added (no
# InputLayer). Functional (keras/src/ops/function.py map_graph() and
# _build_map()): a depth-first walk from the outputs numbers each
# operation when first reached and lists the nodes in post-order; going
# back over that list, a node's depth is the longest path to an output and
# an operation's depth the largest of its nodes'; operations are sorted by
# depth (largest first), then by that number; inputs not connected to an
# output come first among depth 0. Elementwise operations count in the
# depths but are not layers; with `layers_only = FALSE` they are listed
# too (the operations of a functional config.json), and a sequential
# model's graph is walked the same way.
#' @noRd
keras_layer_order <- function(self, layers_only = TRUE) {
  if (!identical(self$class_name, "Functional") && layers_only) return(self$layers)
  graph <- self$graph
  input_ids <- vapply(graph$inputs, function(t) t$id, character(1))
  index <- new.env(parent = emptyenv())      # operation name -> first visit
  finished <- new.env(parent = emptyenv())   # node id -> TRUE
  post <- list()
  visit <- function(t) {
    node <- t$node
    if (!is.null(finished[[node$id]])) return(invisible())
    op <- callee_name(node$callee)
    if (is.null(index[[op]])) assign(op, length(ls(index)), envir = index)
    if (!identical(node$kind, "input") && !(t$id %in% input_ids)) {
      for (u in c(node$inputs, node$arg_tensors)) visit(u)
    }
    assign(node$id, TRUE, envir = finished)
    post[[length(post) + 1L]] <<- node
  }
  for (t in graph$outputs) visit(t)
  node_depth <- new.env(parent = emptyenv())
  op_depth <- list()
  callees <- list()
  for (node in rev(post)) {
    op <- callee_name(node$callee)
    d <- max(if (is.null(node_depth[[node$id]])) 0 else node_depth[[node$id]],
             if (is.null(op_depth[[op]])) 0 else op_depth[[op]])
    op_depth[[op]] <- d
    callees[[op]] <- node
    if (identical(node$kind, "input")) next
    for (u in c(node$inputs, node$arg_tensors)) {
      prev <- node_depth[[u$node$id]]
      assign(u$node$id, max(d + 1, if (is.null(prev)) 0 else prev), envir = node_depth)
    }
  }
  for (t in graph$inputs) {
    op <- callee_name(t$node$callee)
    if (is.null(op_depth[[op]])) {
      op_depth[[op]] <- 0
      assign(op, -1L, envir = index)
      callees[[op]] <- t$node
    }
  }
  ops <- names(op_depth)
  ord <- order(-unlist(op_depth[ops]), vapply(ops, function(o) as.numeric(index[[o]]), numeric(1)))
  layers <- lapply(callees[ops[ord]], function(node) node$callee)
  unname(Filter(function(l) !inherits(l, "multihead_variable") && (!layers_only || !inherits(l, "multihead_op")),
                layers))
}

# ---- writing ----------------------------------------------------------------------

# The file is built in memory (HDF5's core driver without backing store)
# and its bytes are written by R: HDF5 never writes to the disk, so a write
# that fails part-way (disk full) is an R error on the temporary file and
# never a failed H5Fclose(), which leaves HDF5 in a state where the handle's
# later release crashes R. Every handle is closed once (close_all() after
# the image is taken, or on error). hdf5r has no R-level API for the core
# driver or file images, so its registered wrappers of H5Pset_fapl_core()
# and H5Fget_file_image() are called by name with PACKAGE = "hdf5r" (R CMD
# check reports these as foreign function calls to a different package: a
# known NOTE, the price of the in-memory file).
#' @noRd
# `extra`: NULL, or function(file) adding further groups (a .keras archive's
# optimizer variables).
write_keras_weights_h5 <- function(self, filepath, extra = NULL) {
  check_suggested_package("hdf5r", "read and write Keras \".weights.h5\" files")
  entries <- keras_h5_entries(self)
  image <- tryCatch(h5_file_image(entries, extra), error = function(e) {
    if (inherits(e, "multihead_error")) stop(e)
    abort_msg(sprintf("Could not write \"%s\": HDF5 failed to build the file (%s).", filepath,
                      h5_short_message(e)), class = "multihead_error_file_write")
  })
  write_file_atomically(filepath, function(tmp) write_raw_file(image, tmp))
  invisible(filepath)
}

# The bytes of a Keras weights file holding `entries` (keras_h5_entries()).
#' @noRd
h5_file_image <- function(entries, extra = NULL) {
  fapl <- hdf5r::H5P_FILE_ACCESS$new()
  on.exit(fapl$close(), add = TRUE)
  .Call("R_H5Pset_fapl_core", fapl$id, 1048576, FALSE, PACKAGE = "hdf5r")
  file <- hdf5r::H5File$new(tempfile(fileext = ".h5"), mode = "w", file_access_pl = fapl)
  closed <- FALSE
  on.exit(if (!closed) {
    closed <- TRUE
    try(file$close_all(), silent = TRUE)
  }, add = TRUE, after = FALSE)
  # names: scalar variable-length UTF-8 strings, as h5py writes Keras's metadata
  string_type <- hdf5r::H5T_STRING$new(size = Inf)$set_cset(hdf5r::h5const$H5T_CSET_UTF8)
  scalar <- hdf5r::H5S$new(type = "scalar")
  for (e in entries) {
    group <- h5_ensure_group(file, if (nzchar(e$path)) paste0(e$path, "/vars") else "vars")
    group$create_attr("name", robj = e$name, space = scalar, dtype = string_type)
    for (i in seq_along(e$slots)) {
      s <- e$slots[[i]]
      value <- s$self$variables[[s$name]]
      dtype <- if (identical(s$self$dtype, "float64")) hdf5r::h5types$H5T_IEEE_F64LE else
        hdf5r::h5types$H5T_IEEE_F32LE
      # a weight without dims holding one number is a scalar (shape ()), written as Keras does
      space <- if (is.null(dim(value)) && length(value) == 1L) hdf5r::H5S$new(type = "scalar")
      group$create_dataset(as.character(i - 1L), robj = to_h5_order(value), dtype = dtype, space = space,
                           chunk_dims = NULL, gzip_level = 0)
    }
  }
  if (!is.null(extra)) extra(file)
  file$flush()
  n <- as.double(.Call("R_H5Fget_file_image", file$id, raw(0), 0, FALSE, PACKAGE = "hdf5r")$return_val)
  if (!(is.finite(n) && n > 0)) stop("no file image", call. = FALSE)
  image <- .Call("R_H5Fget_file_image", file$id, raw(n), n, TRUE, PACKAGE = "hdf5r")
  if (as.double(image$return_val) != n) stop("incomplete file image", call. = FALSE)
  closed <- TRUE
  file$close_all()
  image$buf_ptr
}

# Writes `bytes` to `path`; a short write or a failed close is an error.
#' @noRd
write_raw_file <- function(bytes, path) {
  con <- file(path, "wb")
  open_con <- TRUE
  on.exit(if (open_con) close(con), add = TRUE)
  withCallingHandlers(writeBin(bytes, con), warning = function(w) stop(conditionMessage(w), call. = FALSE))
  open_con <- FALSE
  withCallingHandlers(close(con), warning = function(w) stop(conditionMessage(w), call. = FALSE))
  if (!identical(as.double(file.size(path)), as.double(length(bytes)))) {
    stop("the file written is incomplete", call. = FALSE)
  }
  invisible(path)
}

# The first line of an hdf5r error (its HDF5 error stack is not ours to show).
#' @noRd
h5_short_message <- function(e) {
  msg <- strsplit(conditionMessage(e), "\n", fixed = TRUE)[[1L]]
  msg <- if (length(msg)) trimws(msg[[1L]]) else "unknown error"
  if (grepl("^HDF5-API Errors", msg)) "an HDF5 library error" else msg
}

# The group at `path` ("a/b/c"), creating the missing ones.
#' @noRd
h5_ensure_group <- function(file, path) {
  g <- file
  for (part in strsplit(path, "/", fixed = TRUE)[[1L]]) {
    g <- if (g$exists(part)) g[[part]] else g$create_group(part)
  }
  g
}

# Keras's row-major arrays <-> R arrays: hdf5r reverses the axes.
#' @noRd
to_h5_order <- function(x) {
  d <- shape_of(x)
  if (length(d) <= 1L) return(as.vector(x))
  aperm(array(x, d), rev(seq_along(d)))
}

#' @noRd
from_h5_order <- function(x) {
  d <- dim(x)
  if (length(d) <= 1L) return(as.vector(x))
  aperm(x, rev(seq_along(d)))
}

# ---- reading ---------------------------------------------------------------------

# Reads the variables of every entry of `self` from a Keras weights file
# and assigns them (see assign_loaded_weights()). Before a dataset is read,
# its place (a dataset where a group is expected and the reverse are
# errors), type (float32 or float64) and declared shape (the weight's) are
# checked, so a few-KB file declaring a huge dataset allocates nothing.
# Any failure of hdf5r (truncated or corrupt file) is our error naming the
# file and the object being read; the file is closed once, on exit.
#' @noRd
read_keras_weights_h5 <- function(self, filepath, skip_mismatch) {
  check_suggested_package("hdf5r", "read and write Keras \".weights.h5\" files")
  bad <- function(why) {
    abort_msg(sprintf("\"%s\" is not a valid Keras weights file: %s.", filepath, why), class = "multihead_error_file")
  }
  file <- tryCatch(hdf5r::H5File$new(filepath, mode = "r"), error = function(e) {
    abort_msg(sprintf("\"%s\" is not an HDF5 file, or it is truncated or corrupt.", filepath),
              class = "multihead_error_file")
  })
  on.exit(try(file$close_all(), silent = TRUE), add = TRUE)
  ctx <- new.env(parent = emptyenv())
  ctx$where <- "its root group"
  loads <- tryCatch(h5_collect_loads(self, file, filepath, ctx, bad), error = function(e) {
    if (inherits(e, "multihead_error")) stop(e)
    bad(sprintf("reading %s failed (the file is truncated or corrupt)", ctx$where))
  })
  assign_loaded_weights(loads, skip_mismatch, filepath)
}

#' @noRd
h5_collect_loads <- function(self, file, filepath, ctx, bad) {
  if (!h5_is_group(file, "vars", ctx) && !h5_is_group(file, "layers", ctx)) {
    abort_msg(sprintf(paste0("\"%s\" is an HDF5 file but not a Keras 3 weights file: it has no \"vars\" or ",
                             "\"layers\" group (Keras 2 \".h5\" files are not supported)."), filepath),
              class = "multihead_error_file")
  }
  loads <- list()
  for (e in keras_h5_entries(self)) {
    if (!length(e$slots)) next
    where <- NULL
    for (p in c(e$path, e$alt)) {
      vp <- if (nzchar(p)) paste0(p, "/vars") else "vars"
      kind <- h5_kind(file, vp, ctx)
      if (identical(kind, "dataset")) bad(sprintf("\"%s\" is a dataset where a group was expected", vp))
      if (identical(kind, "link")) bad(sprintf("\"%s\" goes through a soft or external link (to elsewhere in the file or to another file)", vp))
      if (identical(kind, "group")) {
        where <- vp
        break
      }
    }
    ld <- list(label = e$label, where = if (is.null(where)) paste0(e$path, "/vars") else where, slots = e$slots,
               values = NULL)
    if (!is.null(where)) {
      ld <- h5_read_vars(file, where, ld, filepath, ctx, bad)
    }
    loads[[length(loads) + 1L]] <- ld
  }
  loads
}

# The datasets "0", "1", ... of group `where`: checked (place, type,
# declared shape against the layer's weights), then read. A count or shape
# that differs from the model's is a mismatch (ld$problem: an error, or
# skipped with skip_mismatch), not a read.
#' @noRd
h5_read_vars <- function(file, where, ld, filepath, ctx, bad) {
  ctx$where <- sprintf("group \"%s\"", where)
  group <- file[[where]]
  keys <- group$names
  idx <- suppressWarnings(as.integer(keys))
  if (anyNA(idx) || !setequal(idx, seq_along(idx) - 1L) || anyDuplicated(idx)) {
    bad(sprintf("group \"%s\" holds %s, not datasets \"0\", \"1\", ...", where, quote_names(keys)))
  }
  n_model <- length(ld$slots)
  if (length(keys) != n_model) {
    ld$problem <- sprintf("layer \"%s\" has %d weights but \"%s\" has %d for it (at \"%s\").", ld$label, n_model,
                          filepath, length(keys), where)
    return(ld)
  }
  datasets <- list()
  for (i in seq_len(n_model)) {
    path <- sprintf("%s/%d", where, i - 1L)
    ctx$where <- sprintf("\"%s\"", path)
    if (!h5_hard_link(group, as.character(i - 1L))) {
      bad(sprintf("\"%s\" is a soft or external link (to elsewhere in the file or to another file), not a dataset", path))
    }
    obj <- group[[as.character(i - 1L)]]
    if (!inherits(obj, "H5D")) bad(sprintf("\"%s\" is a group where a dataset was expected", path))
    type <- obj$get_type()
    tclass <- as.character(type$get_class())
    tsize <- type$get_size()
    if (!identical(tclass, "H5T_FLOAT") || !(tsize %in% c(4, 8))) {
      what <- switch(tclass, H5T_INTEGER = "integer", H5T_STRING = "string", H5T_FLOAT = sprintf("%d-byte float", tsize),
                     tolower(sub("^H5T_", "", tclass)))
      bad(sprintf("dataset \"%s\" holds %s values, not float32 or float64", path, what))
    }
    declared <- rev(as.double(obj$dims))       # Keras's (row-major) order
    s <- ld$slots[[i]]
    expected <- as.double(shape_of(s$self$variables[[s$name]]))
    same <- (length(declared) == length(expected) && all(declared == expected)) ||
      (length(declared) == 0L && identical(expected, 1))
    if (!same) {
      ld$problem <- sprintf("weight \"%s\" of layer \"%s\" has shape (%s) but \"%s\" of \"%s\" has shape (%s).",
                            paste0(s$self$name, "/", s$name), ld$label, format_shape(expected), path, filepath,
                            paste(sprintf("%.0f", declared), collapse = ", "))
      return(ld)
    }
    datasets[[i]] <- obj
  }
  ld$values <- lapply(seq_len(n_model), function(i) {
    ctx$where <- sprintf("\"%s/%d\"", where, i - 1L)
    ds <- datasets[[i]]
    d <- ds$dims
    # read() drops axes of length 1; scalars have no dims
    if (length(d) > 1L) from_h5_order(array(ds$read(), dim = d)) else as.vector(ds$read())
  })
  ld
}

# "group", "dataset", "other", "link" (a soft or external link on the way)
# or NULL (absent) for `path`, following groups only.
#' @noRd
h5_kind <- function(file, path, ctx) {
  g <- file
  parts <- strsplit(path, "/", fixed = TRUE)[[1L]]
  parts <- parts[nzchar(parts)]
  for (i in seq_along(parts)) {
    ctx$where <- sprintf("\"%s\"", paste(parts[seq_len(i)], collapse = "/"))
    if (!inherits(g, c("H5File", "H5Group"))) return(NULL)
    if (!g$exists(parts[[i]])) return(NULL)
    if (!h5_hard_link(g, parts[[i]])) return("link")
    g <- g[[parts[[i]]]]
  }
  if (inherits(g, c("H5File", "H5Group"))) "group" else if (inherits(g, "H5D")) "dataset" else "other"
}

# Whether `name` in group `g` is a hard link: soft and external links (to
# other places or other files) are not followed.
#' @noRd
h5_hard_link <- function(g, name) identical(as.character(g$link_info(name)$type), "H5L_TYPE_HARD")

#' @noRd
h5_is_group <- function(file, path, ctx) identical(h5_kind(file, path, ctx), "group")

# ---- suggested packages --------------------------------------------------------------

# An error saying how to install `pkg` when it is missing.
#' @noRd
check_suggested_package <- function(pkg, purpose) {
  if (!requireNamespace(pkg, quietly = TRUE)) {
    abort_msg(sprintf("Package \"%s\" is needed to %s. Install it with install.packages(\"%s\").",
                      pkg, purpose, pkg), class = "multihead_error_dependency")
  }
  invisible(TRUE)
}
