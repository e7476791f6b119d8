# The schema of multihead's own model and weights files (format version 1,
# documented in save_model() and save_model_weights()), checked on the
# whole record before any field is used, and the rebuilding of compiled
# objects (optimizer, learning-rate schedule, losses, metrics) from a
# checked record through our own tables of constructors.
#
# A record comes from read_plain_rds(), so it holds plain data only; the
# schema then says which fields exist, their types and attributes:
#   record      named list: format, format_version, package_version,
#               r_version, saved_at (strings), class_name ("Functional" or
#               "Sequential"), config (a configuration tree), layers,
#               compile (NULL or a compile record); a weights file has no
#               class_name, config or compile.
#   config tree NULL, logical / integer / double / character vectors
#               (attributes names, dim), or lists (attributes names and
#               class_name, a string) of configuration trees. A list
#               list(class_name = "RFunction", ...) (an R function used as a
#               constraint) is refused: functions never come from a file.
#   layers      list of records: name, class_name (strings), weights (a
#               named list of double / integer arrays, attribute dim only),
#               state (model files: NULL or list(dropout_seed, call_counter),
#               numbers).
#   compile     optimizer (class_name one of optimizer_update_rules(),
#               name, learning_rate a number or list(class_name, config) of a
#               built-in schedule, config, weight_decay, clipnorm,
#               clipvalue, global_clipnorm (NULL or numbers), iterations (a
#               whole number), slots (named lists of named numeric arrays)),
#               losses (per output NULL or list(class_name, config)),
#               loss_weights (numbers), metric_specs and weighted_specs (per
#               output, metric names or metric records: class_name, name,
#               dtype, config, direction, total, count), output_labels
#               (strings).
# Strings from a file are only looked up in our tables (optimizer, loss,
# metric and schedule classes here; layer classes in the registry); objects
# are rebuilt by calling our constructors, which check every argument.

# ---- predicates --------------------------------------------------------------

#' @noRd
schema_is_string <- function(x) is.character(x) && length(x) == 1L && !is.na(x) && is.null(attributes(x))

#' @noRd
schema_is_number <- function(x) {
  (is.double(x) || is.integer(x)) && length(x) == 1L && !is.na(x) && is.finite(x) && is.null(attributes(x))
}

# A list whose names are exactly some of `allowed` (all of `required`), no
# other attributes.
#' @noRd
schema_check_fields <- function(x, where, allowed, required, fail) {
  if (!is.list(x) || is.null(names(x)) || !identical(names(attributes(x)), "names")) {
    fail(sprintf("%s is %s, not a named list", where, schema_describe(x)))
  }
  nms <- names(x)
  if (anyNA(nms) || any(!nzchar(nms)) || anyDuplicated(nms)) fail(sprintf("%s has empty or repeated field names", where))
  unknown <- setdiff(nms, allowed)
  if (length(unknown)) fail(sprintf("%s has the unknown field `%s`", where, unknown[[1L]]))
  missing <- setdiff(required, nms)
  if (length(missing)) fail(sprintf("%s has no field `%s`", where, missing[[1L]]))
  invisible(x)
}

#' @noRd
schema_describe <- function(x) {
  extra <- setdiff(names(attributes(x)), c("names", "dim"))
  if (length(extra)) return(sprintf("%s with the attribute \"%s\"", describe_value(unclass(x)), extra[[1L]]))
  describe_value(x)
}

#' @noRd
schema_field <- function(where, name) {
  if (make.names(name) == name) paste0(where, "$", name) else sprintf("%s[[\"%s\"]]", where, name)
}

# A configuration tree (see the header).
#' @noRd
schema_check_config <- function(x, where, fail) {
  if (is.null(x)) return(invisible())
  a <- names(attributes(x))
  if (is.list(x)) {
    extra <- setdiff(a, c("names", "class_name"))
    if (length(extra)) fail(sprintf("%s has the attribute \"%s\", which a configuration does not hold", where, extra[[1L]]))
    cn <- attr(x, "class_name", exact = TRUE)
    if (!is.null(cn) && !schema_is_string(cn)) fail(sprintf("the class name of %s is %s, not a string", where, describe_value(cn)))
    nms <- names(x)
    if (!is.null(nms) && anyNA(nms)) fail(sprintf("%s has NA names", where))
    if (!is.null(nms) && "class_name" %in% nms && identical(x[["class_name"]], "RFunction")) {
      fail(sprintf("%s is an R function (class \"RFunction\"); functions are never read from a file", where))
    }
    for (i in seq_along(x)) {
      sub <- if (!is.null(nms) && nzchar(nms[[i]])) schema_field(where, nms[[i]]) else sprintf("%s[[%d]]", where, i)
      schema_check_config(x[[i]], sub, fail)
    }
    return(invisible())
  }
  if (!(typeof(x) %in% c("logical", "integer", "double", "character"))) {
    fail(sprintf("%s is %s, not a configuration value", where, schema_describe(x)))
  }
  extra <- setdiff(a, c("names", "dim"))
  if (length(extra)) fail(sprintf("%s has the attribute \"%s\", which a configuration does not hold", where, extra[[1L]]))
  invisible()
}

# A numeric array: double or integer, attribute dim only.
#' @noRd
schema_check_array <- function(x, where, fail) {
  ok <- (is.double(x) || is.integer(x)) && all(names(attributes(x)) %in% "dim")
  if (!ok) fail(sprintf("%s is %s, not a numeric array", where, schema_describe(x)))
  invisible()
}

# A named list of numeric arrays (weights, optimizer slots).
#' @noRd
schema_check_array_list <- function(x, where, fail) {
  if (!is.list(x) || !all(names(attributes(x)) %in% "names")) {
    fail(sprintf("%s is %s, not a list of arrays", where, schema_describe(x)))
  }
  nms <- names(x)
  if (length(x) && (is.null(nms) || anyNA(nms) || any(!nzchar(nms)))) {
    fail(sprintf("%s has arrays without names", where))
  }
  for (i in seq_along(x)) schema_check_array(x[[i]], sprintf("%s[[\"%s\"]]", where, nms[[i]]), fail)
  invisible()
}

# ---- records ---------------------------------------------------------------------

# The whole record of a model (`format` "multihead.model") or weights file.
#' @noRd
schema_check_record <- function(rec, fail) {
  model <- identical(rec[["format"]], "multihead.model")
  common <- c("format", "format_version", "package_version", "r_version", "saved_at", "layers")
  allowed <- if (model) c(common, "class_name", "config", "compile") else common
  required <- if (model) c("format", "format_version", "class_name", "config", "layers") else
    c("format", "format_version", "layers")
  schema_check_fields(rec, "record", allowed, required, fail)
  for (f in c("package_version", "r_version", "saved_at")) {
    if (!is.null(rec[[f]]) && !schema_is_string(rec[[f]])) fail(sprintf("record$%s is %s, not a string", f, schema_describe(rec[[f]])))
  }
  if (model) {
    if (!(schema_is_string(rec[["class_name"]]) && rec[["class_name"]] %in% c("Functional", "Sequential"))) {
      fail(sprintf("record$class_name is %s, not \"Functional\" or \"Sequential\"", schema_describe(rec[["class_name"]])))
    }
    if (!is.list(rec[["config"]])) fail(sprintf("record$config is %s, not a model configuration", schema_describe(rec[["config"]])))
    schema_check_config(rec[["config"]], "record$config", fail)
    if (!is.null(rec[["compile"]])) schema_check_compile(rec[["compile"]], "record$compile", fail)
  }
  layers <- rec[["layers"]]
  if (!is.list(layers) || !is.null(attributes(layers))) fail(sprintf("record$layers is %s, not a list of layer records", schema_describe(layers)))
  for (i in seq_along(layers)) {
    where <- sprintf("record$layers[[%d]]", i)
    r <- layers[[i]]
    schema_check_fields(r, where, c("name", "class_name", "weights", if (model) c("state", "assets")),
                        c("name", "class_name", "weights"), fail)
    if (!is.null(r[["assets"]])) schema_check_config(r[["assets"]], paste0(where, "$assets"), fail)
    for (f in c("name", "class_name")) {
      if (!schema_is_string(r[[f]])) fail(sprintf("%s$%s is %s, not a string", where, f, schema_describe(r[[f]])))
    }
    schema_check_array_list(r[["weights"]], paste0(where, "$weights"), fail)
    if (!is.null(r[["state"]])) {
      st <- r[["state"]]
      schema_check_fields(st, paste0(where, "$state"), c("dropout_seed", "call_counter"), c("dropout_seed", "call_counter"), fail)
      for (f in c("dropout_seed", "call_counter")) {
        v <- st[[f]]
        ok <- (is.double(v) || is.integer(v)) && length(v) >= 1L && length(v) <= 8L && is.null(attributes(v)) &&
          all(is.finite(v)) && all(v == round(v)) && all(v >= 0)
        if (!ok) fail(sprintf("%s$state$%s is %s, not whole numbers", where, f, schema_describe(v)))
      }
    }
  }
  invisible(rec)
}

#' @noRd
schema_check_compile <- function(rec, where, fail) {
  schema_check_fields(rec, where, c("optimizer", "losses", "loss_weights", "metric_specs", "weighted_specs",
                                    "output_labels"),
                      c("optimizer", "losses", "loss_weights", "metric_specs", "weighted_specs", "output_labels"), fail)
  opt <- rec[["optimizer"]]
  ow <- paste0(where, "$optimizer")
  schema_check_fields(opt, ow, optimizer_fields(), optimizer_fields(), fail)
  if (!(schema_is_string(opt[["class_name"]]) && opt[["class_name"]] %in% names(schema_optimizer_table()))) {
    fail(sprintf("%s$class_name is %s, not one of %s", ow, schema_describe(opt[["class_name"]]),
                 quote_names(names(schema_optimizer_table()))))
  }
  if (!schema_is_string(opt[["name"]])) fail(sprintf("%s$name is %s, not a string", ow, schema_describe(opt[["name"]])))
  lr <- opt[["learning_rate"]]
  if (is.list(lr)) {
    schema_check_fields(lr, paste0(ow, "$learning_rate"), c("class_name", "config"), c("class_name", "config"), fail)
    if (!(schema_is_string(lr[["class_name"]]) && lr[["class_name"]] %in% names(schema_schedule_table()))) {
      fail(sprintf("%s$learning_rate$class_name is %s, not one of %s", ow, schema_describe(lr[["class_name"]]),
                   quote_names(names(schema_schedule_table()))))
    }
    schema_check_config(lr[["config"]], paste0(ow, "$learning_rate$config"), fail)
  } else if (!schema_is_number(lr)) {
    fail(sprintf("%s$learning_rate is %s, not a number or a schedule record", ow, schema_describe(lr)))
  }
  schema_check_config(opt[["config"]], paste0(ow, "$config"), fail)
  for (f in c("weight_decay", "clipnorm", "clipvalue", "global_clipnorm")) {
    if (!is.null(opt[[f]]) && !schema_is_number(opt[[f]])) fail(sprintf("%s$%s is %s, not NULL or a number", ow, f, schema_describe(opt[[f]])))
  }
  it <- opt[["iterations"]]
  if (!(schema_is_number(it) && it >= 0 && it == round(it) && it <= .Machine$integer.max)) {
    fail(sprintf("%s$iterations is %s, not a whole number", ow, schema_describe(it)))
  }
  slots <- opt[["slots"]]
  if (!is.list(slots) || !all(names(attributes(slots)) %in% "names") || (length(slots) && is.null(names(slots)))) {
    fail(sprintf("%s$slots is %s, not a named list", ow, schema_describe(slots)))
  }
  for (k in names(slots)) schema_check_array_list(slots[[k]], sprintf("%s$slots[[\"%s\"]]", ow, k), fail)
  per_output <- function(x, w) {
    if (!is.list(x) || !all(names(attributes(x)) %in% "names")) {
      fail(sprintf("%s is %s, not a list with one entry per output", w, schema_describe(x)))
    }
  }
  per_output(rec[["losses"]], paste0(where, "$losses"))
  for (i in seq_along(rec[["losses"]])) {
    l <- rec[["losses"]][[i]]
    if (is.null(l)) next
    lw <- sprintf("%s$losses[[%d]]", where, i)
    schema_check_fields(l, lw, c("class_name", "config"), c("class_name", "config"), fail)
    if (!(schema_is_string(l[["class_name"]]) && l[["class_name"]] %in% names(schema_loss_table()))) {
      fail(sprintf("%s$class_name is %s, not one of %s", lw, schema_describe(l[["class_name"]]),
                   quote_names(names(schema_loss_table()))))
    }
    schema_check_config(l[["config"]], paste0(lw, "$config"), fail)
  }
  lws <- rec[["loss_weights"]]
  if (!((is.double(lws) || is.integer(lws)) && all(names(attributes(lws)) %in% "names") && all(is.finite(lws)) &&
         all(lws >= 0)) &&
      !(is.list(lws) && all(names(attributes(lws)) %in% "names") && all(vapply(lws, schema_is_number, logical(1))))) {
    fail(sprintf("%s$loss_weights is %s, not non-negative numbers", where, schema_describe(lws)))
  }
  for (f in c("metric_specs", "weighted_specs")) {
    specs <- rec[[f]]
    per_output(specs, paste0(where, "$", f))
    for (i in seq_along(specs)) {
      sw <- sprintf("%s$%s[[%d]]", where, f, i)
      per_output(specs[[i]], sw)
      for (j in seq_along(specs[[i]])) {
        m <- specs[[i]][[j]]
        mw <- sprintf("%s[[%d]]", sw, j)
        if (is.character(m)) {
          if (!(schema_is_string(m) && m %in% names(metric_names()))) {
            fail(sprintf("%s is %s, not a metric name of multihead", mw, schema_describe(m)))
          }
          next
        }
        schema_check_fields(m, mw, c("class_name", "name", "dtype", "config", "direction", "total", "count"),
                            c("class_name", "name", "config", "total", "count"), fail)
        if (!(schema_is_string(m[["class_name"]]) && m[["class_name"]] %in% names(schema_metric_table()))) {
          fail(sprintf("%s$class_name is %s, not one of %s", mw, schema_describe(m[["class_name"]]),
                       quote_names(names(schema_metric_table()))))
        }
        if (!schema_is_string(m[["name"]])) fail(sprintf("%s$name is %s, not a string", mw, schema_describe(m[["name"]])))
        if (!is.null(m[["dtype"]]) && !schema_is_string(m[["dtype"]])) fail(sprintf("%s$dtype is %s, not a string", mw, schema_describe(m[["dtype"]])))
        if (!is.null(m[["direction"]]) && !schema_is_string(m[["direction"]])) fail(sprintf("%s$direction is %s, not a string", mw, schema_describe(m[["direction"]])))
        schema_check_config(m[["config"]], paste0(mw, "$config"), fail)
        if (!schema_is_number(m[["count"]])) {
          fail(sprintf("%s$count is %s, not a number", mw, schema_describe(m[["count"]])))
        }
        # a mean metric's total is a number; a confusion-matrix metric's (AUC,
        # Precision, Recall) a named list of count arrays
        if (is.list(m[["total"]])) {
          schema_check_array_list(m[["total"]], paste0(mw, "$total"), fail)
        } else if (!schema_is_number(m[["total"]])) {
          fail(sprintf("%s$total is %s, not a number or a list of count arrays", mw, schema_describe(m[["total"]])))
        }
        if (m[["count"]] < 0) fail(sprintf("%s$count is negative", mw))
      }
    }
  }
  ol <- rec[["output_labels"]]
  if (!(is.character(ol) && is.null(attributes(ol)) && !anyNA(ol))) {
    fail(sprintf("%s$output_labels is %s, not strings", where, schema_describe(ol)))
  }
  invisible(rec)
}

# ---- our tables: class names in files -> constructors ---------------------------

#' @noRd
schema_optimizer_table <- function() {
  list(SGD = optimizer_sgd, Adam = optimizer_adam, AdamW = optimizer_adamw, RMSprop = optimizer_rmsprop,
       Adagrad = optimizer_adagrad, Nadam = optimizer_nadam, Lion = optimizer_lion)
}

#' @noRd
schema_schedule_table <- function() {
  list(ExponentialDecay = learning_rate_schedule_exponential_decay, CosineDecay = learning_rate_schedule_cosine_decay)
}

#' @noRd
schema_loss_table <- function() {
  list(MeanSquaredError = loss_mean_squared_error, MeanAbsoluteError = loss_mean_absolute_error,
       BinaryCrossentropy = loss_binary_crossentropy, CategoricalCrossentropy = loss_categorical_crossentropy,
       SparseCategoricalCrossentropy = loss_sparse_categorical_crossentropy, Huber = loss_huber,
       KLDivergence = loss_kl_divergence, CategoricalFocalCrossentropy = loss_categorical_focal_crossentropy)
}

#' @noRd
schema_metric_table <- function() {
  list(BinaryAccuracy = metric_binary_accuracy, CategoricalAccuracy = metric_categorical_accuracy,
       SparseCategoricalAccuracy = metric_sparse_categorical_accuracy,
       MeanAbsoluteError = metric_mean_absolute_error, MeanSquaredError = metric_mean_squared_error,
       TopKCategoricalAccuracy = metric_top_k_categorical_accuracy,
       SparseTopKCategoricalAccuracy = metric_sparse_top_k_categorical_accuracy,
       AUC = metric_auc, Precision = metric_precision, Recall = metric_recall)
}

# Calls constructor `ctor` (a function from one of our tables) with the
# arguments `args` read from a file: only its named arguments (never
# y_true / y_pred, which would compute values, nor `...`), each value
# passed as is (quote = TRUE). Its argument errors become `fail()`s.
#' @noRd
schema_construct <- function(ctor, args, where, fail, extra = character()) {
  allowed <- c(setdiff(names(formals(ctor)), c("y_true", "y_pred", "...")), extra)
  nms <- names(args)
  if (length(args) && (is.null(nms) || any(!nzchar(nms)))) fail(sprintf("%s has unnamed arguments", where))
  if (anyDuplicated(nms)) fail(sprintf("%s gives the argument `%s` twice", where, nms[anyDuplicated(nms)]))
  unknown <- setdiff(nms, allowed)
  if (length(unknown)) fail(sprintf("%s has the unknown argument `%s`", where, unknown[[1L]]))
  args <- lapply(args, function(v) if (is.list(v) && length(v) == 0L) NULL else v)
  tryCatch(do.call(ctor, args, quote = TRUE), multihead_error = function(e) {
    fail(sprintf("%s is invalid: %s", where, conditionMessage(e)))
  })
}

# The compiled state of a checked compile record (schema_check_compile()).
#' @noRd
compiled_from_checked_record <- function(rec, fail) {
  w <- "record$compile"
  opt_rec <- rec[["optimizer"]]
  lr <- opt_rec[["learning_rate"]]
  if (is.list(lr)) {
    lr <- schema_construct(schema_schedule_table()[[lr[["class_name"]]]], lr[["config"]],
                           paste0(w, "$optimizer$learning_rate"), fail)
  }
  cls <- opt_rec[["class_name"]]
  args <- c(list(learning_rate = lr), opt_rec[["config"]],
            list(name = opt_rec[["name"]], weight_decay = opt_rec[["weight_decay"]], clipnorm = opt_rec[["clipnorm"]],
                 clipvalue = opt_rec[["clipvalue"]], global_clipnorm = opt_rec[["global_clipnorm"]]))
  opt <- schema_construct(schema_optimizer_table()[[cls]], args, paste0(w, "$optimizer"), fail,
                          extra = c("name", "weight_decay", "clipnorm", "clipvalue", "global_clipnorm"))
  opt$iterations <- as.integer(opt_rec[["iterations"]])
  opt$slots <- opt_rec[["slots"]]
  losses <- lapply(stats::setNames(seq_along(rec[["losses"]]), names(rec[["losses"]])), function(i) {
    l <- rec[["losses"]][[i]]
    if (is.null(l)) return(NULL)
    schema_construct(schema_loss_table()[[l[["class_name"]]]], l[["config"]], sprintf("%s$losses[[%d]]", w, i), fail)
  })
  specs <- function(f) lapply(stats::setNames(seq_along(rec[[f]]), names(rec[[f]])), function(i) {
    lapply(stats::setNames(seq_along(rec[[f]][[i]]), names(rec[[f]][[i]])), function(j) {
    m <- rec[[f]][[i]][[j]]
    if (is.character(m)) return(m)
    obj <- schema_construct(schema_metric_table()[[m[["class_name"]]]],
                            c(m[["config"]], list(name = m[["name"]], dtype = m[["dtype"]])),
                            sprintf("%s$%s[[%d]][[%d]]", w, f, i, j), fail)
    obj$total <- if (is.list(m[["total"]])) lapply(m[["total"]], function(v) {
      storage.mode(v) <- "double"
      v
    }) else as.double(m[["total"]])
    obj$count <- as.double(m[["count"]])
    obj
  })})
  list(optimizer = opt, losses = losses, loss_weights = rec[["loss_weights"]],
       metric_specs = specs("metric_specs"), weighted_specs = specs("weighted_specs"), metrics = NULL,
       output_labels = rec[["output_labels"]])
}
