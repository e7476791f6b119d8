# Learning rate schedules with Keras 3's formulas and keras3's R names.
#
# A schedule is an R function of the optimizer step (0 for the first update,
# as Keras passes `optimizer$iterations`) with class
# c(<Keras class name>, "multihead_learning_rate_schedule", "function"). Its
# configuration (Keras's names) is the list `config` in its environment, so
# saveRDS() round-trips it. Optimizers accept a schedule as `learning_rate`
# and call it with their iteration count before each update. Custom
# schedules (LearningRateSchedule(), learning-rate-schedule-class.R) are
# also "multihead_learning_rate_schedule" functions; their configuration is
# their get_config().

#' Exponential decay learning rate schedule
#'
#' The learning rate at optimizer step `step` (0 for the first update) is
#' `initial_learning_rate * decay_rate ^ (step / decay_steps)`, or, with
#' `staircase = TRUE`, `initial_learning_rate * decay_rate ^ floor(step /
#' decay_steps)`, as in Keras 3's `ExponentialDecay`.
#'
#' @param initial_learning_rate A non-negative number: the learning rate at
#'   step 0.
#' @param decay_steps A positive whole number: the number of steps over which
#'   the rate is multiplied by `decay_rate`.
#' @param decay_rate A non-negative number: the decay factor.
#' @param staircase `TRUE` or `FALSE`: whether to decay in discrete intervals.
#' @param name A string: the schedule's name.
#' @returns A schedule: a function of `step` (a vector of non-negative numbers)
#'   returning the learning rates, of class
#'   `"multihead_learning_rate_schedule"`, to pass as an optimizer's
#'   `learning_rate`.
#' @examples
#' sched <- learning_rate_schedule_exponential_decay(0.1, decay_steps = 100, decay_rate = 0.5)
#' sched(c(0, 100, 150))
#' optimizer_sgd(learning_rate = sched)
#' @family learning rate schedules
#' @export
learning_rate_schedule_exponential_decay <- function(initial_learning_rate, decay_steps, decay_rate,
                                                     staircase = FALSE, name = "ExponentialDecay") {
  config <- list(
    initial_learning_rate = check_number(initial_learning_rate, "initial_learning_rate", lower = 0),
    decay_steps = check_whole(decay_steps, "decay_steps"),
    decay_rate = check_number(decay_rate, "decay_rate", lower = 0),
    staircase = check_flag(staircase, "staircase"),
    name = check_string(name, "name")
  )
  new_lr_schedule("ExponentialDecay", config, exponential_decay_rate)
}

#' Cosine decay learning rate schedule, with optional linear warmup
#'
#' As Keras 3's `CosineDecay`. Without warmup (`warmup_target = NULL`), the
#' learning rate at optimizer step `step` (0 for the first update) is
#' `initial_learning_rate * ((1 - alpha) * 0.5 * (1 + cos(pi * s /
#' decay_steps)) + alpha)` with `s = min(step, decay_steps)`. With warmup, it
#' rises linearly from `initial_learning_rate` to `warmup_target` over
#' `warmup_steps` steps, then decays as above from `warmup_target` over
#' `decay_steps` steps.
#'
#' @inheritParams learning_rate_schedule_exponential_decay
#' @param decay_steps A positive whole number: the number of steps to decay
#'   over.
#' @param alpha A number between 0 and 1: the final learning rate as a
#'   fraction of the rate the decay starts from.
#' @param warmup_target `NULL` (no warmup) or a non-negative number: the
#'   learning rate reached at the end of the warmup.
#' @param warmup_steps A whole number >= 0: the number of warmup steps.
#' @inherit learning_rate_schedule_exponential_decay return
#' @examples
#' sched <- learning_rate_schedule_cosine_decay(0.1, decay_steps = 1000)
#' sched(c(0, 500, 1000, 2000))
#' warm <- learning_rate_schedule_cosine_decay(0, decay_steps = 1000,
#'                                             warmup_target = 0.1, warmup_steps = 100)
#' warm(c(0, 50, 100, 600))
#' @family learning rate schedules
#' @export
learning_rate_schedule_cosine_decay <- function(initial_learning_rate, decay_steps, alpha = 0,
                                                name = "CosineDecay", warmup_target = NULL,
                                                warmup_steps = 0) {
  config <- list(
    initial_learning_rate = check_number(initial_learning_rate, "initial_learning_rate", lower = 0),
    decay_steps = check_whole(decay_steps, "decay_steps"),
    alpha = check_number(alpha, "alpha", lower = 0, upper = 1),
    name = check_string(name, "name"),
    warmup_target = check_number(warmup_target, "warmup_target", lower = 0, null_ok = TRUE),
    warmup_steps = check_whole(warmup_steps, "warmup_steps", min = 0L)
  )
  new_lr_schedule("CosineDecay", config, cosine_decay_rate)
}

#' @export
print.multihead_learning_rate_schedule <- function(x, ...) {
  cat(format_spec(list(class_name = lr_schedule_class(x), config = lr_schedule_config(x)),
                  "learning_rate_schedule"), "\n", sep = "")
  invisible(x)
}

# `rate(config, step)` computes the rates for a vector of steps.
#' @noRd
new_lr_schedule <- function(class_name, config, rate) {
  env <- new.env(parent = asNamespace("multihead"))
  env$config <- config
  env$rate <- rate
  fun <- function(step) rate(config, check_step(step))
  environment(fun) <- env
  structure(fun, class = c(class_name, "multihead_learning_rate_schedule", "function"))
}

#' @noRd
is_lr_schedule <- function(x) inherits(x, "multihead_learning_rate_schedule")

#' @noRd
lr_schedule_config <- function(x) {
  if (is_class_instance(x)) return(x$get_config())
  get("config", envir = environment(unclass(x)), inherits = FALSE)
}

#' @noRd
lr_schedule_class <- function(x) class(x)[[1L]]

#' @noRd
check_step <- function(step) {
  ok <- is.numeric(step) && length(step) >= 1L && !anyNA(step) && all(is.finite(step)) && all(step >= 0)
  if (!ok) abort_arg("step", "a vector of non-negative numbers", describe_value(step))
  as.double(step)
}

#' @noRd
exponential_decay_rate <- function(config, step) {
  p <- step / config$decay_steps
  if (config$staircase) p <- floor(p)
  config$initial_learning_rate * config$decay_rate^p
}

#' @noRd
cosine_decay_rate <- function(config, step) {
  decay <- function(s, from) {
    cosine <- 0.5 * (1 + cos(pi * s / config$decay_steps))
    from * ((1 - config$alpha) * cosine + config$alpha)
  }
  if (is.null(config$warmup_target)) {
    return(decay(pmin(step, config$decay_steps), config$initial_learning_rate))
  }
  warm <- config$warmup_steps
  s <- pmin(step, config$decay_steps + warm)
  ifelse(s < warm,
         (config$warmup_target - config$initial_learning_rate) * (s / warm) +
           config$initial_learning_rate,
         decay(s - warm, config$warmup_target))
}
