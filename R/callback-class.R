# Custom classes: keras3's Callback(), Metric(), Loss() and
# LearningRateSchedule() generators (this file: the machinery they share,
# then Callback(); metric-class.R, loss-class.R and
# learning-rate-schedule-class.R hold the other three).
#
# keras3 builds Python subclasses; here a class is plain R data.
#
# A class definition (class_def) is an environment of class
# "multihead_class_def":
#   classname    the class's name (the user's `classname`)
#   kind         "callback", "metric", "loss" or "learning_rate_schedule"
#   members      named list: methods (functions), active properties
#                (functions marked with active_property()) and class
#                attributes (any other value, e.g. `__doc__`)
#   private      named list: each instance's private members
#   parent       the parent class's definition (NULL for the base classes
#                Callback, Metric, Loss, LearningRateSchedule defined here)
#   parent_env   the environment the methods' scopes are children of
#   constructor  the function the generator returned (NULL for base classes)
#
# An instance is an R function (callable as the Keras object is: a metric
# updates and returns its result, a loss returns the reduced loss, a schedule
# the learning rate) of class c(<classname>, <its ancestors' names>,
# "multihead_class_instance", <"multihead_metric" etc.>, "function"). Its
# environment holds:
#   .self     the instance itself
#   .def      its class definition
#   .state    an environment: the instance's attributes (`self$x <- value`)
#   .methods  named list of the methods, bound (see below)
#   .active   named list of the active properties, bound
#   .args     the arguments it was created with (to clone it)
#   and what the kind adds (a metric's variables, a loss's traced graphs, a
#   callback's training context).
# Methods are bound per instance and class level: each is a copy whose
# environment is a scope (child of the level's parent_env) binding `self`
# (the instance), `super` (the parent level's methods, bound to the same
# instance), `private` (the level's private environment of this instance),
# `__class__` and the class's name (its constructor). `self$name` looks up an
# active property, then an attribute, then a method; `self$name <- value`
# sets an active property or an attribute. Everything is plain R data and
# closures, so saveRDS() / readRDS() round-trip an instance.

#' Create an active property for a custom class
#'
#' Marks a function as an active property of a class made by [Callback()],
#' [Metric()], [Loss()] or [LearningRateSchedule()], as keras3's
#' `active_property()`: reading `self$name` calls `fn()`, assigning
#' `self$name <- value` calls `fn(value)`.
#'
#' @param fn A function of one optional argument `value` (missing when the
#'   property is read).
#' @returns `fn`, marked as an active property.
#' @examples
#' Counter <- Callback("Counter",
#'   initialize = function() private$n <- 0,
#'   on_epoch_end = function(epoch, logs = NULL) private$n <- private$n + 1,
#'   count = active_property(function(value) {
#'     if (!missing(value)) stop("`count` is read-only")
#'     private$n
#'   })
#' )
#' Counter()$count
#' @export
active_property <- function(fn) {
  if (!is.function(fn)) abort_arg("fn", "a function", describe_value(fn))
  attr(fn, "multihead_active") <- TRUE
  fn
}

#' @noRd
is_active_member <- function(x) is.function(x) && isTRUE(attr(x, "multihead_active", exact = TRUE))

#' @noRd
is_class_instance <- function(x) inherits(x, "multihead_class_instance")

#' @noRd
is_class_constructor <- function(x) inherits(x, "multihead_class_constructor")

# ---- generators ----------------------------------------------------------------

# What the four generators share. `methods`: the named method arguments of
# the generator (NULL when not given); `dots`: list(...). Returns the
# constructor.
#' @noRd
new_class_generator <- function(kind, classname, methods, dots, public, private, inherit, parent_env,
                                keep_null_dots = TRUE) {
  classname <- check_string(classname, "classname")
  if (!grepl("^[A-Za-z.][A-Za-z0-9._]*$", classname)) {
    abort_arg("classname", "a syntactic name (letters, digits, `.` and `_`, starting with a letter)",
              describe_value(classname))
  }
  for (nm in names(methods)) {
    m <- methods[[nm]]
    if (!is.null(m) && !is.function(m)) abort_arg(nm, "NULL or a function", describe_value(m))
  }
  members <- Filter(Negate(is.null), methods)
  where <- stats::setNames(names(members), names(members))
  if (length(dots)) {
    nms <- names(dots)
    if (is.null(nms) || any(!nzchar(nms))) {
      abort_arg("...", "named members of the class (methods or values)", "an unnamed argument")
    }
    if (anyDuplicated(nms)) abort_arg("...", "members with distinct names", sprintf("`%s` twice", nms[anyDuplicated(nms)]))
    members <- utils::modifyList(members, dots, keep.null = keep_null_dots)
    where[nms] <- nms
  }
  if (!is.list(public) || is.object(public) || (length(public) && !class_named_list(public))) {
    abort_arg("public", "a named list of members (methods or values)", describe_value(public))
  }
  if (length(public)) {
    members <- utils::modifyList(members, public, keep.null = TRUE)
    where[names(public)] <- paste0("public$", names(public))
  }
  if (!is.list(private) || is.object(private) || (length(private) && !class_named_list(private))) {
    abort_arg("private", "a named list of private members", describe_value(private))
  }
  if (!is.environment(parent_env)) abort_arg("parent_env", "an environment", describe_value(parent_env))
  if (all(c("initialize", "__init__") %in% names(members))) {
    abort_arg("__init__", "left out when `initialize` is given (they are the same method)", "both")
  }
  names(members)[names(members) == "__init__"] <- "initialize"
  names(where)[names(where) == "__init__"] <- "initialize"
  for (nm in intersect(names(members), class_method_names(kind))) {
    if (!is.function(members[[nm]])) {
      abort_arg(where[[nm]], sprintf("a function (the %s method `%s`)", class_kind_label(kind), nm),
                describe_value(members[[nm]]))
    }
  }
  parent <- if (is.null(inherit)) class_base_def(kind) else {
    def <- if (is_class_constructor(inherit)) class_constructor_def(inherit)
    if (is.null(def) || !identical(def$kind, kind)) {
      abort_arg("inherit", sprintf("NULL or a class made by %s()", class_kind_generator(kind)),
                describe_value(inherit))
    }
    def
  }
  def <- new_class_def(classname, kind, members, private, parent, parent_env)
  def$constructor <- class_constructor(def)
  def$constructor
}

#' @noRd
class_named_list <- function(x) {
  nms <- names(x)
  !is.null(nms) && all(nzchar(nms)) && !anyDuplicated(nms)
}

#' @noRd
new_class_def <- function(classname, kind, members, private, parent, parent_env) {
  def <- new.env(parent = emptyenv())
  def$classname <- classname
  def$kind <- kind
  def$members <- members
  def$private <- private
  def$parent <- parent
  def$parent_env <- parent_env
  def$constructor <- NULL
  class(def) <- "multihead_class_def"
  def
}

# Per kind: the methods a class may define (given as something else they are
# an error), names for messages, the base class and the instance's classes.
#' @noRd
class_method_names <- function(kind) {
  common <- c("initialize", "get_config", "from_config")
  switch(kind,
         callback = c(common, callback_all_hooks(), "on_batch_begin", "on_batch_end", "set_model",
                      "set_params"),
         metric = c(common, "update_state", "result", "reset_state"),
         loss = c(common, "call"),
         learning_rate_schedule = c(common, "call"))
}

#' @noRd
class_kind_label <- function(kind) {
  switch(kind, callback = "Callback", metric = "Metric", loss = "Loss",
         learning_rate_schedule = "LearningRateSchedule")
}

#' @noRd
class_kind_generator <- function(kind) class_kind_label(kind)

#' @noRd
class_kind_classes <- function(kind) {
  switch(kind, callback = "multihead_callback", metric = "multihead_metric", loss = "multihead_loss",
         learning_rate_schedule = "multihead_learning_rate_schedule")
}

# The base class of a kind (made once per session).
.class_bases <- new.env(parent = emptyenv())

#' @noRd
class_base_def <- function(kind) {
  def <- .class_bases[[kind]]
  if (is.null(def)) {
    spec <- switch(kind, callback = callback_base_members(), metric = metric_base_members(),
                   loss = loss_base_members(), learning_rate_schedule = lr_schedule_base_members())
    def <- new_class_def(class_kind_label(kind), kind, spec$members, list(), NULL, asNamespace("multihead"))
    def$default_formals <- spec$formals
    def$handle <- spec$handle
    assign(kind, def, envir = .class_bases)
  }
  def
}

# The class and its ancestors, most derived first.
#' @noRd
class_chain <- function(def) {
  chain <- list()
  while (!is.null(def)) {
    chain[[length(chain) + 1L]] <- def
    def <- def$parent
  }
  chain
}

#' @noRd
class_root <- function(def) {
  while (!is.null(def$parent)) def <- def$parent
  def
}

#' @noRd
class_constructor_def <- function(ctor) get(".__def__", envir = environment(ctor), inherits = FALSE)

# The constructor: its formals are those of the nearest `initialize` (without
# a leading `self`), or the base class's defaults; it passes the arguments
# given to initialize().
#' @noRd
class_constructor <- function(def) {
  fmls <- NULL
  for (d in class_chain(def)) {
    init <- d$members$initialize
    if (is.function(init)) {
      fmls <- formals(init)
      break
    }
  }
  if (is.null(fmls)) fmls <- class_root(def)$default_formals
  if (length(fmls) && identical(names(fmls)[[1L]], "self")) fmls <- fmls[-1L]
  env <- new.env(parent = asNamespace("multihead"))
  env$.__def__ <- def
  env$.__formal_names__ <- names(fmls)
  body <- quote(class_instantiate(.__def__, class_call_args(environment(), .__formal_names__)))
  ctor <- as.function(c(if (is.null(fmls)) list() else as.list(fmls), body), envir = env)
  structure(ctor, class = c("multihead_class_constructor", "function"))
}

# The arguments given in a constructor's call: the supplied formals by name,
# then `...` as given.
#' @noRd
class_call_args <- function(frame, formal_names) {
  args <- list()
  for (nm in formal_names) {
    if (nm == "...") {
      args <- c(args, eval(quote(list(...)), frame))
      next
    }
    if (eval(call("missing", as.name(nm)), frame)) next
    args[nm] <- list(get(nm, envir = frame, inherits = FALSE))
  }
  args
}

#' @export
print.multihead_class_constructor <- function(x, ...) {
  def <- class_constructor_def(x)
  fmls <- names(formals(x))
  cat(sprintf("<%s class generator \"%s\"> (%s)\n", class_kind_label(def$kind), def$classname,
              if (length(fmls)) paste(fmls, collapse = ", ") else "no arguments"))
  invisible(x)
}

# ---- instances -----------------------------------------------------------------

# Creates an instance of `def` and runs its initialize() with `args`.
#' @noRd
class_instantiate <- function(def, args) {
  chain <- class_chain(def)
  root <- chain[[length(chain)]]
  env <- new.env(parent = asNamespace("multihead"))
  handle <- root$handle
  environment(handle) <- env
  class(handle) <- c(vapply(chain, function(d) d$classname, character(1)), "multihead_class_instance",
                     class_kind_classes(def$kind), "function")
  state <- new.env(parent = emptyenv())
  env$.self <- handle
  env$.def <- def
  env$.state <- state
  env$.args <- args
  methods <- list()
  active <- list()
  for (d in rev(chain)) {
    scope <- new.env(parent = d$parent_env)
    scope$self <- handle
    scope$super <- new_class_super(methods, active, d$classname)
    scope$private <- class_private_env(d$private, scope)
    if (!is.null(d$constructor)) {
      scope$`__class__` <- d$constructor
      assign(d$classname, d$constructor, envir = scope)
    }
    for (nm in names(d$members)) {
      m <- d$members[[nm]]
      if (is.function(m)) {
        bound <- class_bind(m, scope)
        if (is_active_member(m)) {
          active[[nm]] <- bound
          methods[nm] <- list(NULL)
        } else {
          methods[[nm]] <- bound
          active[nm] <- list(NULL)
        }
      } else {
        assign(nm, m, envir = state)
      }
    }
  }
  env$.methods <- methods
  env$.active <- active
  class_kind_setup(def$kind, handle)
  do.call(methods$initialize, args, quote = TRUE)
  class_kind_check(def$kind, handle)
  handle
}

# A method's copy whose environment is `scope` (a leading `self` formal is
# dropped: `self` is in scope).
#' @noRd
class_bind <- function(fn, scope) {
  if (is.primitive(fn)) return(fn)
  f <- formals(fn)
  if (length(f) && identical(names(f)[[1L]], "self")) formals(fn) <- f[-1L]
  environment(fn) <- scope
  attr(fn, "multihead_active") <- NULL
  fn
}

#' @noRd
class_private_env <- function(private, scope) {
  p <- new.env(parent = emptyenv())
  for (nm in names(private)) {
    v <- private[[nm]]
    assign(nm, if (is.function(v)) class_bind(v, scope) else v, envir = p)
  }
  p
}

# `super`: the parent level's methods bound to the instance. `super$m(...)`
# and `super()$m(...)` both work, as in keras3.
#' @noRd
new_class_super <- function(methods, active, classname) {
  env <- new.env(parent = asNamespace("multihead"))
  env$.methods <- methods
  env$.active <- active
  env$.classname <- classname
  f <- function(...) .super
  environment(f) <- env
  f <- structure(f, class = c("multihead_super", "function"))
  env$.super <- f
  f
}

#' @export
`$.multihead_super` <- function(x, name) {
  env <- environment(x)
  act <- env$.active[[name]]
  if (!is.null(act)) return(act())
  m <- env$.methods[[name]]
  if (is.null(m)) {
    abort_msg(sprintf("The parent class of \"%s\" has no method `%s`.", env$.classname, name),
              class = "multihead_error_attribute")
  }
  m
}

#' @export
`[[.multihead_super` <- function(x, i, ...) `$.multihead_super`(x, i)

#' @export
print.multihead_super <- function(x, ...) {
  cat(sprintf("<super of \"%s\">\n", environment(x)$.classname))
  invisible(x)
}

#' @noRd
class_instance_env <- function(x) environment(x)

#' @export
`$.multihead_class_instance` <- function(x, name) {
  env <- environment(x)
  act <- env$.active[[name]]
  if (!is.null(act)) return(act())
  state <- env$.state
  if (exists(name, envir = state, inherits = FALSE)) return(get(name, envir = state, inherits = FALSE))
  m <- env$.methods[[name]]
  if (!is.null(m)) return(m)
  abort_msg(sprintf("%s object has no attribute or method `%s`.", class(x)[[1L]], name),
            class = "multihead_error_attribute")
}

#' @export
`[[.multihead_class_instance` <- function(x, i, ...) {
  if (!(is.character(i) && length(i) == 1L && !is.na(i))) {
    abort_arg("i", "the name of an attribute or method (a single string)", describe_value(i))
  }
  `$.multihead_class_instance`(x, i)
}

#' @export
`$<-.multihead_class_instance` <- function(x, name, value) {
  env <- environment(x)
  act <- env$.active[[name]]
  if (!is.null(act)) {
    act(value)
    return(x)
  }
  assign(name, value, envir = env$.state)
  x
}

#' @export
`[[<-.multihead_class_instance` <- function(x, i, value) {
  if (!(is.character(i) && length(i) == 1L && !is.na(i))) {
    abort_arg("i", "the name of an attribute (a single string)", describe_value(i))
  }
  `$<-.multihead_class_instance`(x, i, value)
}

#' @export
names.multihead_class_instance <- function(x) {
  env <- environment(x)
  sort(unique(c(ls(env$.state, all.names = TRUE), names(Filter(Negate(is.null), env$.methods)),
                names(Filter(Negate(is.null), env$.active)))))
}

#' @exportS3Method utils::.DollarNames
.DollarNames.multihead_class_instance <- function(x, pattern = "") {
  grep(pattern, names.multihead_class_instance(x), value = TRUE)
}

#' @export
print.multihead_class_instance <- function(x, ...) {
  env <- environment(x)
  def <- env$.def
  extra <- switch(def$kind,
                  metric = ,
                  loss = if (exists("name", envir = env$.state)) sprintf(" name=\"%s\"", env$.state$name) else "",
                  "")
  cat(sprintf("<%s (%s)%s>\n", def$classname, class_kind_label(def$kind), extra))
  invisible(x)
}

# A fresh instance made with the same arguments (for a metric used twice in
# compile()).
#' @noRd
class_instance_clone <- function(x) {
  env <- environment(x)
  class_instantiate(env$.def, env$.args)
}

# Per-kind set-up before initialize() runs and checks after it.
#' @noRd
class_kind_setup <- function(kind, handle) {
  switch(kind,
         callback = callback_instance_setup(handle),
         metric = metric_instance_setup(handle),
         loss = loss_instance_setup(handle),
         invisible(NULL))
}

#' @noRd
class_kind_check <- function(kind, handle) {
  switch(kind,
         metric = metric_instance_check(handle),
         loss = loss_instance_check(handle),
         invisible(NULL))
}

# ---- Callback() ------------------------------------------------------------------

#' Define a custom callback class
#'
#' keras3's `Callback()` (also `new_callback_class()`): returns a constructor
#' of callbacks whose methods run at the stages of `fit()`. Each method
#' given overrides Keras's do-nothing default.
#'
#' Methods see `self` (the callback), `super` (the parent class's methods,
#' e.g. `super$initialize()`), `private` (an environment private to the
#' instance), and `__class__` and `classname` (the constructor). Attributes
#' set with `self$x <- value` are kept in the instance.
#'
#' During `fit()`, `self$model` is the model being trained and `self$params`
#' the training parameters (`verbose`, `epochs`, `steps`). Setting
#' `self$model$stop_training <- TRUE` stops training after the current batch
#' (in a batch method) or epoch. Epoch and batch numbers start at 1, as in
#' keras3. `logs` is a named list: the loss and metrics so far (at the end of
#' an epoch, with the `val_` ones). A method returning a named list updates
#' the logs passed to the callbacks after it, as in keras3.
#'
#' `fit()` calls `on_train_begin`, `on_epoch_begin`, `on_train_batch_begin`
#' (by default calling `on_batch_begin`), `on_train_batch_end` (by default
#' calling `on_batch_end`), `on_epoch_end` and `on_train_end`. The
#' `on_test_*` and `on_predict_*` methods are accepted; multihead's
#' `evaluate()` and `predict()` do not take callbacks yet, and `fit()` does
#' not call them during validation.
#'
#' Instances are plain R data and closures, so `saveRDS()` keeps them.
#'
#' @param classname A string: the name of the class.
#' @param on_epoch_begin,on_epoch_end `NULL` or `function(epoch, logs = NULL)`.
#' @param on_train_begin,on_train_end,on_test_begin,on_test_end,on_predict_begin,on_predict_end
#'   `NULL` or `function(logs = NULL)`.
#' @param on_train_batch_begin,on_train_batch_end,on_test_batch_begin,on_test_batch_end,on_predict_batch_begin,on_predict_batch_end
#'   `NULL` or `function(batch, logs = NULL)`.
#' @param ... Further named members: methods (for example `initialize`, whose
#'   arguments become the constructor's), active properties (see
#'   [active_property()]) or values (class attributes, such as `__doc__`).
#' @param public A named list of further members, as `...`.
#' @param private A named list of members of each instance's `private`
#'   environment (functions there see `self` and `private` too).
#' @param inherit `NULL` (subclass Keras's `Callback`) or a constructor made
#'   by `Callback()` to subclass.
#' @param parent_env The environment the methods' scopes are children of
#'   (where they find other variables).
#' @returns A constructor: a function whose arguments are those of
#'   `initialize` (none by default) returning a callback to pass in
#'   `fit()`'s `callbacks`.
#' @examples
#' set.seed(1)
#' x <- matrix(rnorm(64 * 3), 64)
#' y <- x %*% c(1, -2, 0.5)
#' model <- keras_model_sequential(input_shape = 3) |> layer_dense(1)
#' model |> compile(optimizer = optimizer_sgd(0.1), loss = "mse")
#'
#' callback_stop_below <- Callback("StopBelow",
#'   initialize = function(threshold) {
#'     super$initialize()
#'     self$threshold <- threshold
#'   },
#'   on_epoch_end = function(epoch, logs = NULL) {
#'     if (logs$loss < self$threshold) {
#'       self$stopped_at <- epoch
#'       self$model$stop_training <- TRUE
#'     }
#'   }
#' )
#' cb <- callback_stop_below(0.05)
#' history <- model |> fit(x, y, epochs = 50, callbacks = list(cb), verbose = 0)
#' cb$stopped_at
#' @family callbacks
#' @export
Callback <- function(classname, on_epoch_begin = NULL, on_epoch_end = NULL, on_train_begin = NULL,
                     on_train_end = NULL, on_train_batch_begin = NULL, on_train_batch_end = NULL,
                     on_test_begin = NULL, on_test_end = NULL, on_test_batch_begin = NULL,
                     on_test_batch_end = NULL, on_predict_begin = NULL, on_predict_end = NULL,
                     on_predict_batch_begin = NULL, on_predict_batch_end = NULL, ...,
                     public = list(), private = list(), inherit = NULL, parent_env = parent.frame()) {
  if (missing(classname)) abort_arg("classname", "supplied: the name of the new class (a string)")
  methods <- list(on_epoch_begin = on_epoch_begin, on_epoch_end = on_epoch_end,
                  on_train_begin = on_train_begin, on_train_end = on_train_end,
                  on_train_batch_begin = on_train_batch_begin, on_train_batch_end = on_train_batch_end,
                  on_test_begin = on_test_begin, on_test_end = on_test_end,
                  on_test_batch_begin = on_test_batch_begin, on_test_batch_end = on_test_batch_end,
                  on_predict_begin = on_predict_begin, on_predict_end = on_predict_end,
                  on_predict_batch_begin = on_predict_batch_begin,
                  on_predict_batch_end = on_predict_batch_end)
  new_class_generator("callback", classname, methods, list(...), public, private, inherit, parent_env,
                      keep_null_dots = FALSE)
}

#' @rdname Callback
#' @export
new_callback_class <- Callback

# Keras's Callback base class: stores the model and the parameters; every
# hook does nothing (on_train_batch_begin / _end call the older
# on_batch_begin / _end, as Keras does).
#' @noRd
callback_base_members <- function() {
  nothing_logs <- function(logs = NULL) invisible(NULL)
  nothing_index <- function(index, logs = NULL) invisible(NULL)
  members <- list(
    initialize = function() {
      self$model <- NULL
      self$params <- NULL
      invisible(NULL)
    },
    set_model = function(model) {
      self$model <- model
      invisible(NULL)
    },
    set_params = function(params) {
      self$params <- params
      invisible(NULL)
    },
    on_train_batch_begin = function(batch, logs = NULL) self$on_batch_begin(batch, logs),
    on_train_batch_end = function(batch, logs = NULL) self$on_batch_end(batch, logs),
    on_batch_begin = nothing_index,
    on_batch_end = nothing_index
  )
  for (h in c("on_train_begin", "on_train_end", "on_test_begin", "on_test_end", "on_predict_begin",
              "on_predict_end")) {
    members[[h]] <- nothing_logs
  }
  for (h in c("on_epoch_begin", "on_epoch_end", "on_test_batch_begin", "on_test_batch_end",
              "on_predict_batch_begin", "on_predict_batch_end")) {
    members[[h]] <- nothing_index
  }
  list(members = members, formals = NULL,
       handle = function(...) {
         abort_msg(sprintf("A %s callback cannot be called; pass it in fit()'s `callbacks`.",
                           class(.self)[[1L]]), class = "multihead_error_argument")
       })
}

#' @noRd
callback_instance_setup <- function(handle) {
  state <- environment(handle)$.state
  state$model <- NULL
  state$params <- NULL
  invisible(handle)
}

# Runs hook `hook` of a custom callback (callback_call() in callbacks.R hands
# custom callbacks here). Before the first hook of a training run, the
# callback gets the model (whose `stop_training` reads and sets the
# context's) and the parameters through set_model() / set_params(). Returns
# the logs, updated by a named list the method returned.
#' @noRd
custom_callback_call <- function(cb, hook, index, logs, context) {
  env <- environment(cb)
  if (!identical(env$.context, context)) {
    env$.context <- context
    model <- callback_context_model(context)
    cb$set_model(if (is.null(model)) NULL else training_model(model, context))
    cb$set_params(context$params)
  }
  method <- cb[[hook]]
  if (!is.function(method)) {
    abort_msg(sprintf("`%s` of callback %s must be a function; it is %s.", hook, class(cb)[[1L]],
                      describe_value(method)), class = "multihead_error_argument")
  }
  res <- if (is.null(index)) method(logs) else method(index, logs)
  if (is.list(res) && !is.object(res) && length(res) && class_named_list(res)) {
    logs <- utils::modifyList(if (is.null(logs)) list() else logs, res)
  }
  if (hook == "on_train_end") {
    # keep the model (with its final stop_training) but not the training run
    model <- env$.state$model
    if (inherits(model, "multihead_training_model")) {
      flag <- new.env(parent = emptyenv())
      flag$stop_training <- isTRUE(context$stop_training)
      attr(model, "multihead_training_context") <- flag
      env$.state$model <- model
    }
    env$.context <- NULL
  }
  logs
}

# The model of a training run: the context's, else (contexts made by a fit()
# that does not pass it) the model whose weights the context reads.
#' @noRd
callback_context_model <- function(context) context$model

# The model as callbacks see it: the same model whose `stop_training`
# reads and sets the training context's flag.
#' @noRd
training_model <- function(model, context) {
  if (inherits(model, "multihead_training_model")) {
    attr(model, "multihead_training_context") <- context
    return(model)
  }
  cls <- class(model)
  attr(model, "multihead_training_context") <- context
  class(model) <- c(cls[[1L]], "multihead_training_model", cls[-1L])
  model
}

#' @export
`$.multihead_training_model` <- function(x, name) {
  if (identical(name, "stop_training")) {
    return(isTRUE(attr(x, "multihead_training_context", exact = TRUE)$stop_training))
  }
  NextMethod()
}

# `self$model$optimizer$learning_rate <- lr` assigns the optimizer (an
# environment, changed in place) back to the model: a no-op.
#' @export
`$<-.multihead_training_model` <- function(x, name, value) {
  if (identical(name, "stop_training")) {
    ctx <- attr(x, "multihead_training_context", exact = TRUE)
    ctx$stop_training <- check_flag(value, "stop_training")
    return(x)
  }
  if (identical(name, "optimizer") && identical(value, layer_self(x)$compiled$optimizer)) return(x)
  NextMethod()
}

# Names bound in the scopes of the base classes' methods and instances.
utils::globalVariables(c(".self", ".super", "super"))
