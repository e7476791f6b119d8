# The compile configuration of a ".keras" archive (config.json's
# "compile_config") and the optimizer's variables (model.weights.h5's group
# "optimizer/vars"), in both directions.
#
# Keras (keras/src/trainers/compile_utils.py, optimizers/base_optimizer.py;
# learnt from, not copied): compile_config is {optimizer, loss, loss_weights,
# metrics, weighted_metrics, run_eagerly, steps_per_execution, jit_compile}
# with the optimizer, losses and metrics as serialized objects (or the
# strings the user gave). The optimizer's variables, saved as datasets "0",
# "1", ... of optimizer/vars, are: iterations (int64 scalar), learning_rate
# (float32 scalar, absent with a schedule), then the slot variables created
# by the class's build() over the model's trainable variables: for each
# group of slot names the class adds together (Adam: momentum and velocity),
# the variables interleaved (momentum of w1, velocity of w1, momentum of
# w2, ...); groups one after the other.

# Slot-name groups in the order the class's build() creates them.
#' @noRd
keras_optimizer_slot_groups <- function(opt) {
  cfg <- opt$config
  switch(opt$class_name,
         SGD = if (!identical(cfg$momentum, 0)) list("momentum") else list(),
         Adam = , AdamW = c(list(c("momentum", "velocity")), if (isTRUE(cfg$amsgrad)) list("velocity_hat")),
         RMSprop = c(list("velocity"), if (cfg$momentum > 0) list("momentum"),
                     if (isTRUE(cfg$centered)) list("average_gradient")),
         Adagrad = list("accumulator"),
         Nadam = list(c("momentum", "velocity")),
         Lion = list("momentum"),
         NULL)
}

# The optimizer's own variables after the slots (Keras tracks them when the
# class's build() assigns them): Nadam's momentum cache.
#' @noRd
keras_optimizer_own_variables <- function(opt) {
  if (identical(opt$class_name, "Nadam")) {
    u <- opt$variables$u_product
    return(list(u_product = if (is.null(u)) nadam_u_product(opt$config$beta_1, opt$iterations) else u))
  }
  list()
}

# The optimizer's variables in Keras's order: a list of arrays, or NULL
# when the class's layout is not known here.
#' @noRd
keras_optimizer_variables <- function(opt, self) {
  groups <- keras_optimizer_slot_groups(opt)
  if (is.null(groups)) return(NULL)
  vars <- list(as.integer(opt$iterations))
  if (!is_lr_schedule(opt$learning_rate)) vars[[2L]] <- opt$learning_rate
  weights <- model_trainable_paths(self)
  for (g in groups) {
    for (p in names(weights)) {
      for (kind in g) {
        v <- opt$slots[[kind]][[p]]
        if (is.null(v)) {  # not updated yet: the slot's initial value
          v <- weights[[p]]
          v[] <- if (identical(kind, "accumulator")) opt$config$initial_accumulator_value else 0
        }
        vars[[length(vars) + 1L]] <- v
      }
    }
  }
  c(vars, unname(keras_optimizer_own_variables(opt)))
}

# The trainable weights of a model, named by weight path, in Keras's order
# (model.trainable_variables), as the optimizer's slots are keyed.
#' @noRd
model_trainable_paths <- function(self) {
  out <- list()
  for (s in model_trainable_slots(self)) out[[s$path]] <- s$self$variables[[s$name]]
  out
}

#' @noRd
keras_compile_config <- function(compiled) {
  if (is.null(compiled)) return(json_object())
  refuse_custom_objects(compiled)
  opt <- compiled$optimizer
  lr <- opt$learning_rate
  lr_json <- if (is_lr_schedule(lr)) {
    list(module = "keras.optimizers.schedules", class_name = lr_schedule_class(lr),
         config = json_object(lapply(lr_schedule_config(lr), keras_plain_out)), registered_name = NULL)
  } else lr
  opt_cfg <- c(list(name = opt$name, learning_rate = lr_json, weight_decay = opt$weight_decay,
                    clipnorm = opt$clipnorm, global_clipnorm = opt$global_clipnorm, clipvalue = opt$clipvalue,
                    use_ema = FALSE, ema_momentum = 0.99, ema_overwrite_frequency = NULL,
                    loss_scale_factor = NULL, gradient_accumulation_steps = NULL),
               lapply(opt$config, keras_plain_out))
  optimizer <- list(module = "keras.optimizers", class_name = opt$class_name, config = opt_cfg,
                    registered_name = NULL)
  loss_json <- lapply(compiled$losses, function(l) {
    if (is.null(l)) return(NULL)
    ls <- loss_self(l)
    list(module = "keras.losses", class_name = ls$class_name,
         config = json_object(lapply(ls$config, keras_plain_out)), registered_name = NULL)
  })
  metric_json <- function(per_output) lapply(per_output, function(specs) lapply(unname(specs), function(m) {
    if (!is_metric(m)) return(m)
    rec <- metric_record(m)
    list(module = "keras.metrics", class_name = rec$class_name,
         config = json_object(c(list(name = rec$name, dtype = rec$dtype), lapply(rec$config, keras_plain_out))),
         registered_name = NULL)
  }))
  one <- length(compiled$losses) == 1L
  pick <- function(x) if (one && length(x) == 1L) x[[1L]] else x
  metrics <- metric_json(compiled$metric_specs)
  weighted <- metric_json(compiled$weighted_specs)
  list(optimizer = optimizer, loss = pick(loss_json),
       loss_weights = if (is.null(compiled$loss_weights)) NULL else json_array(compiled$loss_weights),
       metrics = if (all(lengths(metrics) == 0L)) NULL else pick(metrics),
       weighted_metrics = if (all(lengths(weighted) == 0L)) NULL else pick(weighted),
       run_eagerly = FALSE, steps_per_execution = 1L, jit_compile = FALSE)
}

# Writes the optimizer's variables into the archive's weights file.
#' @noRd
write_keras_optimizer_h5 <- function(self, path) {
  vars <- keras_optimizer_variables(self$compiled$optimizer, self)
  if (is.null(vars)) {
    abort_msg(sprintf(paste0("save_model() cannot write the state of a %s optimizer to a .keras archive (its ",
                             "variable layout in Keras is not known to multihead); save to \"*.rds\" instead."),
                      self$compiled$optimizer$class_name), class = "multihead_error_unsupported")
  }
  file <- hdf5r::H5File$new(path, mode = "a")
  on.exit(file$close_all(), add = TRUE)
  group <- h5_ensure_group(file, "optimizer/vars")
  string_type <- hdf5r::H5T_STRING$new(size = Inf)$set_cset(hdf5r::h5const$H5T_CSET_UTF8)
  group$create_attr("name", robj = self$compiled$optimizer$name, space = hdf5r::H5S$new(type = "scalar"),
                    dtype = string_type)
  for (i in seq_along(vars)) {
    v <- vars[[i]]
    # our optimizer state is double: float64 datasets keep a resumed run
    # exact (Keras casts them to its variables' dtype when loading)
    dtype <- if (is.integer(v)) hdf5r::h5types$H5T_STD_I64LE else hdf5r::h5types$H5T_IEEE_F64LE
    if (length(shape_of(v)) == 0L) {
      group$create_dataset(as.character(i - 1L), robj = v, dtype = dtype, space = hdf5r::H5S$new(type = "scalar"),
                           chunk_dims = NULL)
    } else {
      group$create_dataset(as.character(i - 1L), robj = to_h5_order(v), dtype = dtype, chunk_dims = NULL,
                           gzip_level = 0)
    }
  }
  invisible(NULL)
}

# ---- reading ---------------------------------------------------------------------------------

# Compiles `model` from a Keras compile_config and restores the optimizer's
# variables from the weights file (when their count matches, as Keras does;
# otherwise with a warning).
#' @noRd
keras_compile_from_config <- function(model, cc, weights_path, filepath) {
  bad <- function(why) {
    abort_msg(sprintf("\"%s\" is not a valid Keras model file: its compile_config %s.", filepath, why),
              class = "multihead_error_file")
  }
  opt <- keras_optimizer_from_json(cc$optimizer, bad)
  loss <- keras_objects_from_json(cc$loss, "loss", bad)
  metrics <- keras_objects_from_json(cc$metrics, "metric", bad)
  weighted <- keras_objects_from_json(cc$weighted_metrics, "metric", bad)
  lw <- cc$loss_weights
  if (!is.null(lw) && !(is.list(lw) && all(vapply(lw, function(v) is.numeric(v) && length(v) == 1L, logical(1))))) {
    bad("has loss_weights that are not numbers")
  }
  args <- list(model, optimizer = opt, loss = loss, metrics = metrics)
  if (!is.null(weighted)) args$weighted_metrics <- weighted
  if (!is.null(lw)) args$loss_weights <- unlist(lw)
  tryCatch(do.call(compile, args), multihead_error = function(e) bad(sprintf("cannot be used: %s",
                                                                              conditionMessage(e))))
  keras_read_optimizer_h5(layer_self(model), opt, weights_path, filepath)
  invisible(model)
}

#' @noRd
keras_optimizer_from_json <- function(x, bad) {
  if (is.null(x)) return("rmsprop")
  if (json_string(x)) return(x)
  if (!is_json_object(x) || !json_string(x$class_name) || !is_json_object(x$config)) bad("has an invalid optimizer")
  ctor <- optimizer_constructors()[[tolower(x$class_name)]]
  if (is.null(ctor)) bad(sprintf("names the optimizer %s, which multihead does not have", describe_value(x$class_name)))
  cfg <- lapply(x$config, simplify_config_value)
  lr <- cfg$learning_rate
  if (is_json_object(lr) && json_string(lr$class_name)) {
    cfg$learning_rate <- keras_schedule_from_json(lr, bad)
  }
  defaults <- list(use_ema = FALSE, ema_momentum = 0.99, ema_overwrite_frequency = NULL, loss_scale_factor = NULL,
                   gradient_accumulation_steps = NULL)
  for (k in intersect(names(cfg), names(defaults))) {
    if (!identical(cfg[[k]], defaults[[k]]) && !(is.numeric(cfg[[k]]) && isTRUE(all.equal(cfg[[k]], defaults[[k]])))) {
      bad(sprintf("sets the optimizer's %s = %s, which multihead does not support", k, describe_value(cfg[[k]])))
    }
    cfg[[k]] <- NULL
  }
  for (k in setdiff(names(cfg), c(names(formals(ctor)), "name"))) if (is.null(cfg[[k]])) cfg[[k]] <- NULL
  unknown <- setdiff(names(cfg), c(names(formals(ctor)), "name"))
  if (length(unknown)) bad(sprintf("gives the %s optimizer unknown arguments (%s)", x$class_name,
                                   paste(unknown, collapse = ", ")))
  tryCatch(do.call(ctor, cfg, quote = TRUE), multihead_error = function(e) {
    bad(sprintf("has an invalid %s optimizer: %s", x$class_name, conditionMessage(e)))
  })
}

#' @noRd
keras_schedule_from_json <- function(x, bad) {
  ctor <- switch(x$class_name, ExponentialDecay = learning_rate_schedule_exponential_decay,
                 CosineDecay = learning_rate_schedule_cosine_decay,
                 bad(sprintf("names the learning-rate schedule %s, which multihead does not have",
                             describe_value(x$class_name))))
  cfg <- lapply(x$config, simplify_config_value)
  unknown <- setdiff(names(cfg), names(formals(ctor)))
  if (length(unknown)) bad(sprintf("gives the %s schedule unknown arguments (%s)", x$class_name,
                                   paste(unknown, collapse = ", ")))
  do.call(ctor, cfg, quote = TRUE)
}

# Losses or metrics of a compile_config: strings as they are, serialized
# objects through our loss_*() / metric_*() constructor of that class
# (named by the snake_case of the class name); lists per output.
#' @noRd
keras_objects_from_json <- function(x, kind, bad) {
  if (is.null(x) || json_string(x)) return(x)
  if (is_json_object(x) && json_string(x$class_name)) {
    cn <- x$class_name
    if (!grepl("^[A-Za-z][A-Za-z0-9]*$", cn)) bad(sprintf("names an invalid %s class", kind))
    fname <- paste0(kind, "_", keras_snake_case(cn))
    ns <- asNamespace("multihead")
    if (!(fname %in% getNamespaceExports(ns))) {
      bad(sprintf("names the %s %s, which multihead does not have", kind, describe_value(cn)))
    }
    ctor <- get(fname, envir = ns, mode = "function")
    cfg <- lapply(if (is.null(x$config)) list() else x$config, simplify_config_value)
    cfg <- cfg[intersect(names(cfg), names(formals(ctor)))]
    return(tryCatch(do.call(ctor, cfg, quote = TRUE), multihead_error = function(e) {
      bad(sprintf("has an invalid %s %s: %s", kind, cn, conditionMessage(e)))
    }))
  }
  if (is.list(x)) {
    out <- lapply(x, keras_objects_from_json, kind = kind, bad = bad)
    names(out) <- names(x)
    return(out)
  }
  bad(sprintf("has an invalid %s entry", kind))
}

# Restores the optimizer's variables from optimizer/vars of the weights file.
#' @noRd
keras_read_optimizer_h5 <- function(self, opt, path, filepath) {
  opt <- self$compiled$optimizer
  file <- hdf5r::H5File$new(path, mode = "r")
  on.exit(file$close_all(), add = TRUE)
  if (!h5_path_exists(file, "optimizer/vars")) return(invisible(FALSE))
  group <- file[["optimizer/vars"]]
  keys <- group$names
  expected <- keras_optimizer_variables(opt, self)
  if (is.null(expected) || length(keys) != length(expected) ||
      !setequal(keys, as.character(seq_along(expected) - 1L))) {
    warning(sprintf(paste0("Skipping the optimizer's state in \"%s\": it has %d variables where the %s ",
                           "optimizer has %d; training restarts the optimizer."), filepath, length(keys),
                    opt$class_name, length(expected)), call. = FALSE)
    return(invisible(FALSE))
  }
  values <- lapply(seq_along(expected), function(i) {
    ds <- group[[as.character(i - 1L)]]
    d <- ds$dims
    want <- shape_of(expected[[i]])
    if (length(d) != length(want) || any(d != rev(want))) {
      abort_msg(sprintf("\"%s\": optimizer variable %d has shape (%s) where (%s) is expected.", filepath, i - 1L,
                        format_shape(rev(d)), format_shape(want)), class = "multihead_error_file")
    }
    v <- ds$read()
    if (length(d) > 1L) from_h5_order(array(v, dim = d)) else as.vector(v)
  })
  opt$iterations <- as.integer(values[[1L]])
  k <- 2L
  if (!is_lr_schedule(opt$learning_rate)) {
    opt$learning_rate <- as.double(values[[2L]])
    k <- 3L
  }
  weights <- model_trainable_paths(self)
  for (g in keras_optimizer_slot_groups(opt)) {
    for (p in names(weights)) {
      for (kind in g) {
        set_optimizer_slot(opt, kind, p, array(as.double(values[[k]]), dim = dim(weights[[p]]) %||% length(weights[[p]])))
        k <- k + 1L
      }
    }
  }
  own <- keras_optimizer_own_variables(opt)
  for (nm in names(own)) {
    vars <- opt$variables
    vars[[nm]] <- as.double(values[[k]])
    opt$variables <- vars
    k <- k + 1L
  }
  invisible(TRUE)
}
