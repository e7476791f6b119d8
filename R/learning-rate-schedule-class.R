# keras3's LearningRateSchedule(): custom learning rate schedules (the class
# machinery is in callback-class.R). An instance is a function of the
# optimizer step, as the built-in schedules (learning-rate-schedules.R):
# optimizers call it with their iteration count (0 for the first update, as
# Keras passes `optimizer$iterations`) before each update.

#' Define a custom learning rate schedule class
#'
#' keras3's `LearningRateSchedule()` (also
#' `new_learning_rate_schedule_class()`): returns a constructor of schedules
#' to pass as an optimizer's `learning_rate`.
#'
#' `call(step)` returns the learning rate at optimizer step `step`, a whole
#' number that is 0 for the first update (as in Keras); compute it with R's
#' arithmetic or `op_*()` functions. Implement `get_config()` (a named list)
#' to describe the schedule. Calling an instance, `schedule(step)`, runs
#' `call(step)`.
#'
#' Methods see `self`, `super`, `private` and the class as for [Callback()].
#'
#' @inheritParams Callback
#' @param call `NULL` or `function(step)` returning the learning rate.
#' @param initialize `NULL` or a function setting up the schedule (its
#'   arguments become the constructor's).
#' @param get_config `NULL` or a function returning the schedule's
#'   configuration (a named list).
#' @param inherit `NULL` (subclass Keras's `LearningRateSchedule`) or a
#'   constructor made by `LearningRateSchedule()` to subclass.
#' @returns A constructor: a function whose arguments are those of
#'   `initialize` (none by default) returning a schedule.
#' @examples
#' schedule_inverse_time <- LearningRateSchedule("InverseTime",
#'   initialize = function(initial_learning_rate) {
#'     self$initial_learning_rate <- initial_learning_rate
#'   },
#'   call = function(step) self$initial_learning_rate / (step + 1),
#'   get_config = function() list(initial_learning_rate = self$initial_learning_rate)
#' )
#' schedule <- schedule_inverse_time(0.1)
#' schedule(0:3)
#' optimizer_sgd(learning_rate = schedule)
#' @family learning rate schedules
#' @export
LearningRateSchedule <- function(classname, call = NULL, initialize = NULL, get_config = NULL, ...,
                                 public = list(), private = list(), inherit = NULL,
                                 parent_env = parent.frame()) {
  if (missing(classname)) abort_arg("classname", "supplied: the name of the new class (a string)")
  dots <- list(...)
  if ("__call__" %in% names(dots)) {
    if (!is.null(call)) abort_arg("__call__", "left out when `call` is given (they are the same method)", "both")
    call <- dots[["__call__"]]
    dots[["__call__"]] <- NULL
  }
  new_class_generator("learning_rate_schedule", classname,
                      list(call = call, initialize = initialize, get_config = get_config),
                      dots, public, private, inherit, parent_env)
}

#' @rdname LearningRateSchedule
#' @export
new_learning_rate_schedule_class <- LearningRateSchedule

# Keras's LearningRateSchedule base class.
#' @noRd
lr_schedule_base_members <- function() {
  members <- list(
    initialize = function() invisible(NULL),
    call = function(step) {
      abort_msg(sprintf("Learning rate schedule class \"%s\" must implement call(step).", class(self)[[1L]]),
                class = "multihead_error_not_implemented")
    },
    get_config = function() {
      abort_msg(sprintf(paste0("Learning rate schedule \"%s\" must override get_config() in order to be ",
                               "serializable."), class(self)[[1L]]),
                class = "multihead_error_not_implemented")
    }
  )
  list(members = members, formals = NULL,
       handle = function(step) {
         if (missing(step)) abort_arg("step", "supplied: the optimizer step (0 for the first update)")
         custom_schedule_call(.self, step)
       })
}

# call(step) with the step checked, and its result as numbers.
#' @noRd
custom_schedule_call <- function(schedule, step) {
  step <- check_step(step)
  if (all(step == round(step)) && all(step <= .Machine$integer.max)) step <- as.integer(step)
  lr <- schedule$call(step)
  if (is_variable(lr)) lr <- variable_value(lr)
  ok <- (is.numeric(lr) || is.logical(lr)) && !is.object(lr) && length(lr) >= 1L && !anyNA(lr) &&
    all(is.finite(lr))
  if (!ok) {
    abort_msg(sprintf(paste0("call() of learning rate schedule \"%s\" must return the learning rate (a finite ",
                             "number); for step %s it returned %s."),
                      class(schedule)[[1L]], paste(step, collapse = ", "), describe_value(lr)),
              class = "multihead_error_argument")
  }
  as.vector(as.double(lr))
}
