# Optimizers with Keras 3's update rules, defaults and names.
#
# An optimizer is an environment of class c(<Keras class name>,
# "multihead_optimizer") holding plain R data, so it is updated in place by
# optimizer_apply() and saveRDS() round-trips it:
#   class_name      "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Nadam" or
#                   "Lion"
#   name            the optimizer's name (Keras's default per class)
#   learning_rate   a number or a learning rate schedule
#   config          named list of the other hyperparameters (Keras's names)
#   iterations      number of updates applied so far (an integer, from 0)
#   slots           named list (one entry per slot kind, e.g. "momentum",
#                   "velocity") of named lists keyed by variable path, each an
#                   array shaped like its variable; created as zeros the first
#                   time a variable is updated (Adagrad's accumulators as
#                   `initial_accumulator_value`)
#   variables       named list of the optimizer's own variables, not tied to
#                   a model variable: Nadam's momentum cache `u_product` (a
#                   number, 1 at first); empty for the other classes
#
# The update rule of each class is optimizer_update_rules()[[class_name]], a
# function(opt, w, g, lr, path) -> updated w that reads and writes opt$slots.
# These R rules are the readable reference. SGD, Adam, AdamW and RMSprop also
# have a fused rule in C++ (src/core/optimizer_update.h, via
# optimizer_fused_apply()) that updates all variables in one call with the
# same operations in the same order, so bitwise the same weights and slots; it
# is used unless options(multihead.optimizer_fused = FALSE) (an internal
# switch for tests and benchmarks).
# A class with per-step state (Nadam) also has
# optimizer_step_hooks()[[class_name]], a function(opt) run once per step
# before the variables are updated (Keras's _backend_update_step()).
#
# One step, optimizer_apply(opt, weights, grads), follows Keras 3's
# BaseOptimizer.apply(): the gradients are clipped (clipnorm per variable,
# global_clipnorm over all of them, or clipvalue); then, with weight_decay,
# every variable is decayed, w <- w - w * weight_decay * lr; then the class's
# step hook runs and each variable gets its class's update; then
# `iterations` grows by 1. The learning rate `lr` is the schedule evaluated
# at `iterations` (the count before this step). Constraints are the model's business, after the step.

#' Stochastic gradient descent optimizer (with momentum)
#'
#' Keras 3's `SGD`. Without momentum a step is `w <- w - learning_rate * g`.
#' With `momentum > 0` a velocity `v` (zeros at first) is kept per weight:
#' `v <- momentum * v - learning_rate * g`, then `w <- w + v`; with
#' `nesterov = TRUE`, `w <- w + momentum * v - learning_rate * g` (with the
#' new `v`).
#'
#' Every optimizer first clips the gradients (`clipnorm`: each weight's
#' gradient `g` becomes `g * clipnorm / max(norm(g), clipnorm)`;
#' `global_clipnorm`: all gradients are scaled by `global_clipnorm /
#' max(global_norm, global_clipnorm)` where `global_norm` is the norm of all
#' of them together; `clipvalue`: each element is clipped to `[-clipvalue,
#' clipvalue]`; at most one of the three may be set), then applies
#' `weight_decay` as `w <- w - w * weight_decay * learning_rate`, then its
#' update rule. The learning rate of a step is the schedule (if one was given)
#' evaluated at the number of steps taken before it.
#'
#' @param learning_rate A non-negative number or a learning rate schedule
#'   (see [learning_rate_schedule_exponential_decay()]).
#' @param momentum A number between 0 and 1.
#' @param nesterov `TRUE` or `FALSE`: whether to use Nesterov momentum.
#' @param weight_decay `NULL` (none) or a non-negative number.
#' @param clipnorm,clipvalue,global_clipnorm `NULL` or a positive number; see
#'   Details.
#' @param ... `name`: a string naming the optimizer (defaults to Keras's name
#'   for the class). Keras's other base arguments are accepted at their
#'   defaults only (`use_ema = FALSE`, `ema_momentum = 0.99`,
#'   `ema_overwrite_frequency = NULL`, `loss_scale_factor = NULL`,
#'   `gradient_accumulation_steps = NULL`); anything else is an error.
#' @returns An optimizer: an environment of class `"multihead_optimizer"`
#'   holding its configuration and state (`iterations`, the per-weight slots),
#'   to pass to `compile()`. It is updated in place during training.
#' @examples
#' optimizer_sgd()
#' optimizer_sgd(learning_rate = 0.1, momentum = 0.9, nesterov = TRUE)
#' @family optimizers
#' @export
optimizer_sgd <- function(learning_rate = 0.01, momentum = 0, nesterov = FALSE, weight_decay = NULL,
                          clipnorm = NULL, clipvalue = NULL, global_clipnorm = NULL, ...) {
  config <- list(momentum = check_number(momentum, "momentum", lower = 0, upper = 1),
                 nesterov = check_flag(nesterov, "nesterov"))
  new_optimizer("SGD", "SGD", learning_rate, config,
                weight_decay, clipnorm, clipvalue, global_clipnorm, list(...))
}

#' Adam optimizer
#'
#' Keras 3's `Adam`. At step `t` (1 for the first update), with first and
#' second moments `m`, `v` (zeros at first):
#' `m <- m + (g - m) * (1 - beta_1)`, `v <- v + (g^2 - v) * (1 - beta_2)`,
#' `alpha <- learning_rate * sqrt(1 - beta_2^t) / (1 - beta_1^t)`, and
#' `w <- w - alpha * m / (sqrt(v) + epsilon)` (epsilon outside the square
#' root, as in Keras). With `amsgrad = TRUE` the running maximum `v_hat` of
#' `v` replaces `v` in the last step. Clipping and weight decay as in
#' [optimizer_sgd()].
#'
#' @inheritParams optimizer_sgd
#' @param beta_1,beta_2 Numbers in `[0, 1)`: the decay rates of the first and
#'   second moment estimates.
#' @param epsilon A non-negative number added to the denominator.
#' @param amsgrad `TRUE` or `FALSE`: whether to use the AMSGrad variant.
#' @inherit optimizer_sgd return
#' @examples
#' optimizer_adam()
#' optimizer_adam(learning_rate = 1e-4, amsgrad = TRUE, global_clipnorm = 1)
#' @family optimizers
#' @export
optimizer_adam <- function(learning_rate = 0.001, beta_1 = 0.9, beta_2 = 0.999, epsilon = 1e-07,
                           amsgrad = FALSE, weight_decay = NULL, clipnorm = NULL, clipvalue = NULL,
                           global_clipnorm = NULL, ...) {
  new_optimizer("Adam", "adam", learning_rate,
                adam_config(beta_1, beta_2, epsilon, amsgrad),
                weight_decay, clipnorm, clipvalue, global_clipnorm, list(...))
}

#' AdamW optimizer
#'
#' Keras 3's `AdamW`: [optimizer_adam()] with decoupled weight decay, which
#' must be set (default 0.004): each step first decays every weight, `w <- w
#' - w * weight_decay * learning_rate`, then applies Adam's update.
#'
#' @inheritParams optimizer_adam
#' @param weight_decay A non-negative number.
#' @param ... Further arguments of [optimizer_adam()] given by name
#'   (`clipnorm`, `clipvalue`, `global_clipnorm`) and `name`, as there.
#' @inherit optimizer_sgd return
#' @examples
#' optimizer_adamw()
#' optimizer_adamw(learning_rate = 3e-4, weight_decay = 0.01, clipnorm = 1)
#' @family optimizers
#' @export
optimizer_adamw <- function(learning_rate = 0.001, weight_decay = 0.004, beta_1 = 0.9, beta_2 = 0.999,
                            epsilon = 1e-07, amsgrad = FALSE, ...) {
  if (is.null(weight_decay)) {
    abort_arg("weight_decay", "a non-negative number (AdamW needs a weight decay)", "NULL")
  }
  dots <- list(...)
  clip <- dots[intersect(names(dots), c("clipnorm", "clipvalue", "global_clipnorm"))]
  dots <- dots[setdiff(names(dots), names(clip))]
  new_optimizer("AdamW", "adamw", learning_rate,
                adam_config(beta_1, beta_2, epsilon, amsgrad),
                weight_decay, clip$clipnorm, clip$clipvalue, clip$global_clipnorm, dots)
}

#' RMSprop optimizer
#'
#' Keras 3's `RMSprop`. A moving average `v` of squared gradients (zeros at
#' first) is kept per weight: `v <- rho * v + (1 - rho) * g^2`. With
#' `centered = TRUE` a moving average `a <- rho * a + (1 - rho) * g` is kept
#' too and the denominator is `sqrt(v - a^2 + epsilon)`, otherwise
#' `sqrt(v + epsilon)` (epsilon inside the square root, as in Keras). The
#' increment is `learning_rate * g / denominator`; with `momentum > 0` it
#' feeds a velocity `mom <- momentum * mom + increment` and `w <- w - mom`,
#' otherwise `w <- w - increment`. Clipping and weight decay as in
#' [optimizer_sgd()].
#'
#' @inheritParams optimizer_sgd
#' @param rho A number between 0 and 1: the discounting factor of the squared
#'   gradients' average.
#' @param momentum A non-negative number.
#' @param epsilon A non-negative number added inside the square root.
#' @param centered `TRUE` or `FALSE`: whether to normalise by the estimated
#'   variance of the gradient.
#' @param ... Further arguments of [optimizer_sgd()] given by name
#'   (`weight_decay`, `clipnorm`, `clipvalue`, `global_clipnorm`) and `name`,
#'   as there.
#' @inherit optimizer_sgd return
#' @examples
#' optimizer_rmsprop()
#' optimizer_rmsprop(learning_rate = 0.01, momentum = 0.9, centered = TRUE)
#' @family optimizers
#' @export
optimizer_rmsprop <- function(learning_rate = 0.001, rho = 0.9, momentum = 0, epsilon = 1e-07,
                              centered = FALSE, ...) {
  config <- list(rho = check_number(rho, "rho", lower = 0, upper = 1),
                 momentum = check_number(momentum, "momentum", lower = 0),
                 epsilon = check_number(epsilon, "epsilon", lower = 0),
                 centered = check_flag(centered, "centered"))
  dots <- list(...)
  base <- dots[intersect(names(dots), c("weight_decay", "clipnorm", "clipvalue", "global_clipnorm"))]
  dots <- dots[setdiff(names(dots), names(base))]
  new_optimizer("RMSprop", "rmsprop", learning_rate, config,
                base$weight_decay, base$clipnorm, base$clipvalue, base$global_clipnorm, dots)
}

#' Adagrad optimizer
#'
#' Keras 3's `Adagrad`. An accumulator `a` of squared gradients is kept per
#' weight, starting at `initial_accumulator_value`: each step `a <- a + g^2`,
#' then `w <- w - learning_rate * g / sqrt(a + epsilon)` (epsilon inside the
#' square root, as in Keras). Adagrad usually wants a larger learning rate
#' than the default (`1.0` gives the original paper's form). Clipping and
#' weight decay as in [optimizer_sgd()].
#'
#' @inheritParams optimizer_sgd
#' @param initial_accumulator_value A non-negative number: the starting value
#'   of the accumulators.
#' @param epsilon A non-negative number added inside the square root.
#' @param use_ema,ema_momentum,ema_overwrite_frequency Keras's exponential
#'   moving average of the weights, accepted at their defaults only (`FALSE`,
#'   `0.99`, `NULL`); other values are an error.
#' @param name A string naming the optimizer (`NULL`: the class's default
#'   name).
#' @param ... Must be empty.
#' @param loss_scale_factor,gradient_accumulation_steps Accepted at their
#'   defaults only (`NULL`).
#' @inherit optimizer_sgd return
#' @examples
#' optimizer_adagrad()
#' optimizer_adagrad(learning_rate = 0.1, initial_accumulator_value = 0)
#' @family optimizers
#' @export
optimizer_adagrad <- function(learning_rate = 0.001, initial_accumulator_value = 0.1, epsilon = 1e-07,
                              weight_decay = NULL, clipnorm = NULL, clipvalue = NULL, global_clipnorm = NULL,
                              use_ema = FALSE, ema_momentum = 0.99, ema_overwrite_frequency = NULL,
                              name = "adagrad", ..., loss_scale_factor = NULL,
                              gradient_accumulation_steps = NULL) {
  config <- list(initial_accumulator_value = check_number(initial_accumulator_value,
                                                          "initial_accumulator_value", lower = 0),
                 epsilon = check_number(epsilon, "epsilon", lower = 0))
  new_optimizer("Adagrad", "adagrad", learning_rate, config,
                weight_decay, clipnorm, clipvalue, global_clipnorm,
                keras_base_dots(name, use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                                gradient_accumulation_steps, list(...)))
}

#' Nadam optimizer
#'
#' Keras 3's `Nadam`: Adam with Nesterov momentum. With `t` the step (1 for
#' the first update), `u(s) = beta_1 * (1 - 0.5 * 0.96^s)` and the momentum
#' cache `u_product` (1 at first) multiplied by `u(t)` once per step:
#' `m <- m + (g - m) * (1 - beta_1)`, `v <- v + (g^2 - v) * (1 - beta_2)`,
#' `m_hat <- u(t + 1) * m / (1 - u_product * u(t + 1)) + (1 - u(t)) * g / (1 -
#' u_product)`, `v_hat <- v / (1 - beta_2^t)` and `w <- w - learning_rate *
#' m_hat / (sqrt(v_hat) + epsilon)` (epsilon outside the square root).
#' Clipping and weight decay as in [optimizer_sgd()].
#'
#' @inheritParams optimizer_adagrad
#' @param beta_1,beta_2 Numbers in `[0, 1)`: the decay rates of the first and
#'   second moment estimates.
#' @param epsilon A non-negative number added to the denominator.
#' @inherit optimizer_sgd return
#' @examples
#' optimizer_nadam()
#' optimizer_nadam(learning_rate = 0.002, clipnorm = 1)
#' @family optimizers
#' @export
optimizer_nadam <- function(learning_rate = 0.001, beta_1 = 0.9, beta_2 = 0.999, epsilon = 1e-07,
                            weight_decay = NULL, clipnorm = NULL, clipvalue = NULL, global_clipnorm = NULL,
                            use_ema = FALSE, ema_momentum = 0.99, ema_overwrite_frequency = NULL,
                            name = "nadam", ..., loss_scale_factor = NULL,
                            gradient_accumulation_steps = NULL) {
  below_one <- 1 - .Machine$double.eps
  config <- list(beta_1 = check_number(beta_1, "beta_1", lower = 0, upper = below_one),
                 beta_2 = check_number(beta_2, "beta_2", lower = 0, upper = below_one),
                 epsilon = check_number(epsilon, "epsilon", lower = 0))
  new_optimizer("Nadam", "nadam", learning_rate, config,
                weight_decay, clipnorm, clipvalue, global_clipnorm,
                keras_base_dots(name, use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                                gradient_accumulation_steps, list(...)))
}

#' Lion optimizer
#'
#' Keras 3's `Lion` (Chen et al., 2023). One momentum `m` (zeros at first) is
#' kept per weight: each step `w <- w - learning_rate * sign(beta_1 * m + (1
#' - beta_1) * g)`, then `m <- beta_2 * m + (1 - beta_2) * g`. Its updates
#' have a larger norm than Adam's: a learning rate 3 to 10 times smaller than
#' AdamW's (and a weight decay as many times larger) is typical. Clipping and
#' weight decay as in [optimizer_sgd()].
#'
#' @inheritParams optimizer_adagrad
#' @param beta_1 A number in `(0, 1]`: the weight of the momentum in the
#'   update's direction (0 would make the optimizer sign SGD).
#' @param beta_2 A number in `[0, 1]`: the decay rate of the momentum.
#' @inherit optimizer_sgd return
#' @examples
#' optimizer_lion()
#' optimizer_lion(learning_rate = 1e-4, weight_decay = 0.01)
#' @family optimizers
#' @export
optimizer_lion <- function(learning_rate = 0.001, beta_1 = 0.9, beta_2 = 0.99, weight_decay = NULL,
                           clipnorm = NULL, clipvalue = NULL, global_clipnorm = NULL, use_ema = FALSE,
                           ema_momentum = 0.99, ema_overwrite_frequency = NULL, name = "lion", ...,
                           loss_scale_factor = NULL, gradient_accumulation_steps = NULL) {
  beta_1 <- check_number(beta_1, "beta_1", lower = 0, upper = 1)
  if (beta_1 == 0) {
    abort_arg("beta_1", "a number in (0, 1] (0 makes Lion sign SGD)", "0")
  }
  config <- list(beta_1 = beta_1, beta_2 = check_number(beta_2, "beta_2", lower = 0, upper = 1))
  new_optimizer("Lion", "lion", learning_rate, config,
                weight_decay, clipnorm, clipvalue, global_clipnorm,
                keras_base_dots(name, use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                                gradient_accumulation_steps, list(...)))
}

#' @export
print.multihead_optimizer <- function(x, ...) {
  lr <- if (is_lr_schedule(x$learning_rate)) {
    paste0("<", lr_schedule_class(x$learning_rate), ">")
  } else {
    format(x$learning_rate)
  }
  base <- Filter(Negate(is.null), list(weight_decay = x$weight_decay, clipnorm = x$clipnorm,
                                       clipvalue = x$clipvalue, global_clipnorm = x$global_clipnorm))
  cfg <- c(list(learning_rate = lr), x$config, base)
  parts <- vapply(names(cfg), function(nm) {
    v <- cfg[[nm]]
    paste0(nm, "=", if (is.character(v)) v else format_config_value(v))
  }, character(1))
  cat(sprintf("<optimizer %s name=\"%s\" %s iterations=%d>\n", x$class_name, x$name,
              paste(parts, collapse = " "), x$iterations))
  invisible(x)
}

# Optimizer names accepted by as_optimizer() -> constructor.
#' @noRd
optimizer_constructors <- function() {
  list(sgd = optimizer_sgd, adam = optimizer_adam, adamw = optimizer_adamw,
       rmsprop = optimizer_rmsprop, adagrad = optimizer_adagrad, nadam = optimizer_nadam,
       lion = optimizer_lion)
}

# Turns compile()'s `optimizer` argument into an optimizer: an optimizer
# object is returned as is (it keeps its state); a name ("sgd", "adam",
# "adamw", "rmsprop", "adagrad", "nadam", "lion", any case, so also Keras's
# class names) makes a new one with the defaults.
#' @noRd
as_optimizer <- function(x, arg = "optimizer") {
  if (inherits(x, "multihead_optimizer")) return(x)
  ctors <- optimizer_constructors()
  if (is.character(x) && length(x) == 1L && !is.na(x) && tolower(x) %in% names(ctors)) {
    return(ctors[[tolower(x)]]())
  }
  abort_arg(arg, sprintf("an optimizer object or one of %s", quote_names(names(ctors))),
            describe_value(x))
}

#' @noRd
is_optimizer <- function(x) inherits(x, "multihead_optimizer")

# The learning rate of the next step: the number, or the schedule at
# `iterations`.
#' @noRd
optimizer_current_learning_rate <- function(opt) {
  check_optimizer_object(opt)
  lr <- opt$learning_rate
  if (is_lr_schedule(lr)) lr <- lr(opt$iterations)
  lr
}

# One training step. `weights` and `grads` are named lists of numeric arrays
# (names are variable paths, e.g. "dense/kernel"); `grads` has the same names
# (any order) and each gradient the shape of its weight, or NULL for a weight
# without gradient (left unchanged, with a warning, as in Keras). Returns
# `weights` updated (same names, order and shapes, double storage); `opt` is
# updated in place (slots, iterations). `float32`: NULL, or a logical per
# weight (aligned with `weights`): the updated weights flagged TRUE may come
# back rounded to float32 already (the fused rules do it in C++; the caller
# still stores them through store_weight(), which then has nothing to copy).
#' @noRd
optimizer_apply <- function(opt, weights, grads, float32 = NULL) {
  check_optimizer_object(opt)
  check_weight_list(weights, "weights")
  grads <- check_grads(grads, weights)
  has_grad <- !vapply(grads, is.null, logical(1))
  if (!any(has_grad)) abort_arg("grads", "a list with at least one gradient", "only NULLs")
  if (!all(has_grad)) {
    warning(sprintf("Gradients do not exist for variables %s; they are left unchanged.",
                    quote_names(names(weights)[!has_grad])), call. = FALSE)
  }
  paths <- names(weights)[has_grad]
  g <- clip_gradients(opt, grads[paths])
  lr <- optimizer_current_learning_rate(opt)
  if (optimizer_fused_enabled(opt)) {
    round32 <- if (is.null(float32)) logical(length(paths)) else unname(float32[has_grad])
    weights[paths] <- optimizer_fused_apply(opt, weights[paths], g, lr, round32)
    opt$iterations <- opt$iterations + 1L
    return(weights)
  }
  update <- optimizer_update_rules()[[opt$class_name]]
  if (!is.null(opt$weight_decay)) {
    for (path in paths) {
      w <- weights[[path]]
      storage.mode(w) <- "double"
      weights[[path]] <- w - w * opt$weight_decay * lr
    }
  }
  hook <- optimizer_step_hooks()[[opt$class_name]]
  if (!is.null(hook)) hook(opt)
  for (path in paths) {
    w <- weights[[path]]
    storage.mode(w) <- "double"
    weights[[path]] <- update(opt, w, g[[path]], lr, path)
  }
  opt$iterations <- opt$iterations + 1L
  weights
}

# --- construction -----------------------------------------------------------

#' @noRd
new_optimizer <- function(class_name, default_name, learning_rate, config,
                          weight_decay, clipnorm, clipvalue, global_clipnorm, dots) {
  opts <- check_optimizer_dots(dots, default_name)
  clips <- list(clipnorm = check_number(clipnorm, "clipnorm", lower = .Machine$double.xmin, null_ok = TRUE),
                clipvalue = check_number(clipvalue, "clipvalue", lower = .Machine$double.xmin, null_ok = TRUE),
                global_clipnorm = check_number(global_clipnorm, "global_clipnorm",
                                               lower = .Machine$double.xmin, null_ok = TRUE))
  set <- names(Filter(Negate(is.null), clips))
  if (length(set) > 1L) {
    abort_arg(set[[2L]], sprintf(paste("NULL when `%s` is set (only one of `clipnorm`, `clipvalue`",
                                       "and `global_clipnorm` can be set)"), set[[1L]]))
  }
  opt <- new.env(parent = emptyenv())
  opt$class_name <- class_name
  opt$name <- opts$name
  opt$learning_rate <- check_learning_rate(learning_rate)
  opt$config <- config
  opt$weight_decay <- check_number(weight_decay, "weight_decay", lower = 0, null_ok = TRUE)
  opt$clipnorm <- clips$clipnorm
  opt$clipvalue <- clips$clipvalue
  opt$global_clipnorm <- clips$global_clipnorm
  opt$iterations <- 0L
  opt$slots <- list()
  opt$variables <- list()
  class(opt) <- c(class_name, "multihead_optimizer")
  opt
}

#' @noRd
adam_config <- function(beta_1, beta_2, epsilon, amsgrad) {
  below_one <- 1 - .Machine$double.eps
  list(beta_1 = check_number(beta_1, "beta_1", lower = 0, upper = below_one),
       beta_2 = check_number(beta_2, "beta_2", lower = 0, upper = below_one),
       epsilon = check_number(epsilon, "epsilon", lower = 0),
       amsgrad = check_flag(amsgrad, "amsgrad"))
}

# `...` of the constructors: `name`, and Keras's unsupported base options at
# their defaults.
#' @noRd
check_optimizer_dots <- function(dots, default_name) {
  nms <- names(dots)
  if (length(dots) > 0L && (is.null(nms) || any(!nzchar(nms)))) {
    abort_arg("...", "named arguments", "an unnamed argument")
  }
  defaults <- list(use_ema = FALSE, ema_momentum = 0.99, ema_overwrite_frequency = NULL,
                   loss_scale_factor = NULL, gradient_accumulation_steps = NULL)
  unknown <- setdiff(nms, c("name", names(defaults)))
  if (length(unknown) > 0L) {
    abort_arg(unknown[[1L]], "a known optimizer argument", "an argument that is not recognized")
  }
  for (nm in intersect(nms, names(defaults))) {
    if (!identical(dots[[nm]], defaults[[nm]])) {
      abort_arg(nm, sprintf("%s (the only value supported)", format_config_value(defaults[[nm]])),
                describe_value(dots[[nm]]))
    }
  }
  list(name = if ("name" %in% nms) check_string(dots$name, "name") else default_name)
}

# The `...` list new_optimizer() checks, from the constructors that spell out
# keras3's base arguments (name, EMA, loss scaling, accumulation) as formals.
#' @noRd
keras_base_dots <- function(name, use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                            gradient_accumulation_steps, dots) {
  if (length(dots) > 0L) {
    nm <- names(dots)[[1L]]
    abort_arg(if (is.null(nm) || !nzchar(nm)) "..." else nm, "a known optimizer argument",
              "an argument that is not recognized")
  }
  c(if (!is.null(name)) list(name = name),
    list(use_ema = use_ema, ema_momentum = ema_momentum, ema_overwrite_frequency = ema_overwrite_frequency,
         loss_scale_factor = loss_scale_factor, gradient_accumulation_steps = gradient_accumulation_steps))
}

#' @noRd
check_learning_rate <- function(x) {
  if (is_lr_schedule(x)) return(x)
  ok <- is.numeric(x) && length(x) == 1L && is.null(dim(x)) && !is.na(x) && is.finite(x) && x >= 0
  if (!ok) abort_arg("learning_rate", "a non-negative number or a learning rate schedule", describe_value(x))
  as.double(x)
}

#' @noRd
check_optimizer_object <- function(opt) {
  if (!is_optimizer(opt)) abort_arg("opt", "an optimizer object", describe_value(opt))
  invisible(opt)
}

# A named list of numeric arrays with unique, non-empty names.
#' @noRd
check_weight_list <- function(x, arg) {
  nms <- names(x)
  ok <- is.list(x) && !is.object(x) && length(x) > 0L && !is.null(nms) && all(nzchar(nms)) &&
    !anyDuplicated(nms)
  if (!ok) abort_arg(arg, "a non-empty list of arrays with unique names (variable paths)", describe_value(x))
  for (nm in nms) {
    v <- x[[nm]]
    if (!is.numeric(v) || !cpp_all_finite(v, mh_threads())) {
      abort_arg(sprintf("%s$%s", arg, nm), "a numeric array of finite values", describe_value(v))
    }
  }
  invisible(x)
}

# `grads` reordered as `weights`; NULL entries allowed.
#' @noRd
check_grads <- function(grads, weights) {
  nms <- names(grads)
  ok <- is.list(grads) && !is.object(grads) && !is.null(nms) && !anyDuplicated(nms) &&
    setequal(nms, names(weights)) && length(nms) == length(weights)
  if (!ok) {
    got <- if (is.list(grads) && !is.null(nms)) sprintf("names %s", quote_names(nms)) else describe_value(grads)
    abort_arg("grads", sprintf("a list named like `weights` (%s)", quote_names(names(weights))), got)
  }
  grads <- grads[names(weights)]
  for (nm in names(weights)) {
    g <- grads[[nm]]
    if (is.null(g)) next
    w <- weights[[nm]]
    if (!is.numeric(g) || !cpp_all_finite(g, mh_threads())) {
      abort_arg(sprintf("grads$%s", nm), "a numeric array of finite values", describe_value(g))
    }
    if (!identical(shape_of(g), shape_of(w))) {
      abort_arg(sprintf("grads$%s", nm), sprintf("an array of shape (%s) like its weight",
                                                  format_shape(shape_of(w))),
                sprintf("shape (%s)", format_shape(shape_of(g))))
    }
    if (!is.double(g)) grads[nm] <- list(as_double_array(g))
  }
  grads
}

# `x` with double storage (attributes kept); `x` itself when it is double
# already (`storage.mode<-` would copy a shared array even then).
#' @noRd
as_double_array <- function(x) {
  if (is.double(x)) return(x)
  storage.mode(x) <- "double"
  x
}

# --- clipping ---------------------------------------------------------------

# Keras 3's _clip_gradients(): clipnorm, else global_clipnorm, else clipvalue.
#' @noRd
clip_gradients <- function(opt, grads) {
  if (!is.null(opt$clipnorm)) {
    c <- opt$clipnorm
    return(lapply(grads, function(g) g * c / max(sqrt(sum(g^2)), c)))
  }
  if (!is.null(opt$global_clipnorm)) {
    c <- opt$global_clipnorm
    norm <- sqrt(sum(vapply(grads, function(g) sum(g^2), numeric(1))))
    scale <- c * min(1 / norm, 1 / c)
    return(lapply(grads, function(g) g * scale))
  }
  if (!is.null(opt$clipvalue)) {
    v <- opt$clipvalue
    return(lapply(grads, function(g) pmin(pmax(g, -v), v)))
  }
  grads
}

# --- update rules -----------------------------------------------------------

# The slot `kind` of variable `path`: zeros shaped like `w` the first time;
# a stored slot of another shape means the variable changed shape.
#' @noRd
optimizer_slot <- function(opt, kind, path, w) {
  s <- opt$slots[[kind]][[path]]
  if (is.null(s)) {
    s <- w
    s[] <- 0
  } else {
    check_slot_shape(s, w, path)
  }
  s
}

#' @noRd
check_slot_shape <- function(s, w, path) {
  if (!identical(shape_of(s), shape_of(w))) {
    abort_msg(sprintf(paste("The optimizer's state for variable \"%s\" has shape (%s) but the weight",
                            "has shape (%s); use a new optimizer for a different model."),
                      path, format_shape(shape_of(s)), format_shape(shape_of(w))))
  }
  invisible(s)
}

#' @noRd
set_optimizer_slot <- function(opt, kind, path, value) {
  slots <- opt$slots
  if (is.null(slots[[kind]])) slots[[kind]] <- list()
  slots[[kind]][[path]] <- value
  opt$slots <- slots
  invisible(value)
}

# Class name -> update rule.
#' @noRd
optimizer_update_rules <- function() {
  list(SGD = sgd_update, Adam = adam_update, AdamW = adam_update, RMSprop = rmsprop_update,
       Adagrad = adagrad_update, Nadam = nadam_update, Lion = lion_update)
}

# Class name -> function(opt) run once per step before the variables'
# updates.
#' @noRd
optimizer_step_hooks <- function() {
  list(Nadam = nadam_step)
}

#' @noRd
sgd_update <- function(opt, w, g, lr, path) {
  momentum <- opt$config$momentum
  if (momentum == 0) return(w - g * lr)
  m <- optimizer_slot(opt, "momentum", path, w)
  m <- m * momentum - g * lr
  set_optimizer_slot(opt, "momentum", path, m)
  if (opt$config$nesterov) w + (m * momentum - g * lr) else w + m
}

#' @noRd
adam_update <- function(opt, w, g, lr, path) {
  cfg <- opt$config
  alpha <- adam_alpha(opt, lr)
  m <- optimizer_slot(opt, "momentum", path, w)
  v <- optimizer_slot(opt, "velocity", path, w)
  m <- m + (g - m) * (1 - cfg$beta_1)
  v <- v + (g^2 - v) * (1 - cfg$beta_2)
  set_optimizer_slot(opt, "momentum", path, m)
  set_optimizer_slot(opt, "velocity", path, v)
  if (cfg$amsgrad) {
    v_hat <- pmax(optimizer_slot(opt, "velocity_hat", path, w), v)
    set_optimizer_slot(opt, "velocity_hat", path, v_hat)
    v <- v_hat
  }
  w - (m * alpha) / (sqrt(v) + cfg$epsilon)
}

# Adam's step size at step t = iterations + 1 (both Adam rules use this one
# number): lr * sqrt(1 - beta_2^t) / (1 - beta_1^t).
#' @noRd
adam_alpha <- function(opt, lr) {
  cfg <- opt$config
  t <- opt$iterations + 1
  lr * sqrt(1 - cfg$beta_2^t) / (1 - cfg$beta_1^t)
}

#' @noRd
rmsprop_update <- function(opt, w, g, lr, path) {
  cfg <- opt$config
  rho <- cfg$rho
  v <- optimizer_slot(opt, "velocity", path, w)
  v <- rho * v + (1 - rho) * g^2
  set_optimizer_slot(opt, "velocity", path, v)
  if (cfg$centered) {
    a <- optimizer_slot(opt, "average_gradient", path, w)
    a <- rho * a + (1 - rho) * g
    set_optimizer_slot(opt, "average_gradient", path, a)
    denominator <- v - a^2 + cfg$epsilon
  } else {
    denominator <- v + cfg$epsilon
  }
  increment <- (lr * g) / sqrt(denominator)
  if (cfg$momentum > 0) {
    mom <- optimizer_slot(opt, "momentum", path, w)
    mom <- cfg$momentum * mom + increment
    set_optimizer_slot(opt, "momentum", path, mom)
    return(w - mom)
  }
  w - increment
}

#' @noRd
adagrad_update <- function(opt, w, g, lr, path) {
  a <- opt$slots[["accumulator"]][[path]]
  if (is.null(a)) {
    a <- w
    a[] <- opt$config$initial_accumulator_value
  } else {
    a <- optimizer_slot(opt, "accumulator", path, w)
  }
  a <- a + g^2
  set_optimizer_slot(opt, "accumulator", path, a)
  w - (lr * g) / sqrt(a + opt$config$epsilon)
}

# Nadam's momentum cache after `iterations` steps: the product over s = 1..t
# of beta_1 * (1 - 0.5 * 0.96^s), multiplied in step order as nadam_step()
# does (so the same number, bit for bit).
#' @noRd
nadam_u_product <- function(beta_1, iterations) {
  u <- 1
  for (s in seq_len(iterations)) u <- u * beta_1 * (1 - 0.5 * 0.96^s)
  u
}

# Keras's Nadam._backend_update_step(): u_product <- u_product * u(t) once
# per step. An optimizer restored from a record without `variables` (files
# that do not store them) gets the cache back from `iterations`.
#' @noRd
nadam_step <- function(opt) {
  beta_1 <- opt$config$beta_1
  u <- opt$variables$u_product
  if (is.null(u)) u <- nadam_u_product(beta_1, opt$iterations)
  vars <- opt$variables
  if (is.null(vars)) vars <- list()
  vars$u_product <- u * beta_1 * (1 - 0.5 * 0.96^(opt$iterations + 1))
  opt$variables <- vars
  invisible(opt)
}

#' @noRd
nadam_update <- function(opt, w, g, lr, path) {
  cfg <- opt$config
  beta_1 <- cfg$beta_1
  beta_2 <- cfg$beta_2
  local_step <- opt$iterations + 1
  u_t <- beta_1 * (1 - 0.5 * 0.96^local_step)
  u_t_1 <- beta_1 * (1 - 0.5 * 0.96^(local_step + 1))
  u_product_t <- opt$variables$u_product
  u_product_t_1 <- u_product_t * u_t_1
  beta_2_power <- beta_2^local_step
  m <- optimizer_slot(opt, "momentum", path, w)
  v <- optimizer_slot(opt, "velocity", path, w)
  m <- m + (g - m) * (1 - beta_1)
  v <- v + (g^2 - v) * (1 - beta_2)
  set_optimizer_slot(opt, "momentum", path, m)
  set_optimizer_slot(opt, "velocity", path, v)
  m_hat <- (u_t_1 * m) / (1 - u_product_t_1) + ((1 - u_t) * g) / (1 - u_product_t)
  v_hat <- v / (1 - beta_2_power)
  w - (m_hat * lr) / (sqrt(v_hat) + cfg$epsilon)
}

#' @noRd
lion_update <- function(opt, w, g, lr, path) {
  cfg <- opt$config
  m <- optimizer_slot(opt, "momentum", path, w)
  w <- w - lr * sign(m * cfg$beta_1 + g * (1 - cfg$beta_1))
  set_optimizer_slot(opt, "momentum", path, m * cfg$beta_2 + g * (1 - cfg$beta_2))
  w
}

# --- fused rules (C++) ------------------------------------------------------

# TRUE when `opt`'s class has a fused rule and the internal switch
# options(multihead.optimizer_fused = FALSE) does not force the R rules.
#' @noRd
optimizer_fused_enabled <- function(opt) {
  opt$class_name %in% c("SGD", "Adam", "AdamW", "RMSprop") &&
    !isFALSE(getOption("multihead.optimizer_fused", TRUE))
}

# The fused rule of `opt`'s class: the C++ rule's name, its slot kinds by
# position (NA: position unused, as core/optimizer_update.h numbers them) and
# its parameters (learning rate and weight decay included).
#' @noRd
optimizer_fused_rule <- function(opt, lr) {
  cfg <- opt$config
  base <- list(learning_rate = lr, weight_decay = opt$weight_decay)
  switch(opt$class_name,
    SGD = list(rule = "sgd",
               kinds = c(if (cfg$momentum == 0) NA_character_ else "momentum", NA, NA),
               params = c(base, list(momentum = cfg$momentum, nesterov = cfg$nesterov))),
    Adam = , AdamW = list(rule = "adam",
                          kinds = c("momentum", "velocity", if (cfg$amsgrad) "velocity_hat" else NA),
                          params = c(base, list(alpha = adam_alpha(opt, lr), beta_1 = cfg$beta_1,
                                                beta_2 = cfg$beta_2, epsilon = cfg$epsilon,
                                                amsgrad = cfg$amsgrad))),
    RMSprop = list(rule = "rmsprop",
                   kinds = c("velocity", if (cfg$centered) "average_gradient" else NA,
                             if (cfg$momentum > 0) "momentum" else NA),
                   params = c(base, list(rho = cfg$rho, momentum = cfg$momentum, epsilon = cfg$epsilon,
                                         centered = cfg$centered))))
}

# What the weight decay and the update-rule loop of optimizer_apply() do, for
# the classes with a fused rule, in one C++ call: `weights` and `grads` are
# named lists (the variables with a gradient, same names and order; the
# gradients clipped, double), `lr` the step's learning rate. Returns the
# updated weights (double). The slots (opt$slots[[kind]][[path]], kinds and
# paths added in the order the R rules add them) are updated by
# cpp_optimizer_step() itself: in place where nothing else holds them, else
# replaced by fresh arrays. R code must not bind them here (a binding is a
# reference, and the step would then copy them). Nothing changes when a slot
# has the wrong shape (checked first). `round32`: a logical per weight:
# return that weight's update rounded to float32.
#' @noRd
optimizer_fused_apply <- function(opt, weights, grads, lr, round32 = logical(length(weights))) {
  paths <- names(weights)
  rule <- optimizer_fused_rule(opt, lr)
  ws <- lapply(weights, as_double_array)
  res <- cpp_optimizer_step(rule$rule, unname(ws), unname(grads[paths]), opt, rule$kinds, paths, rule$params,
                            mh_threads(), as.logical(round32))
  if (!is.null(res$mismatch)) {
    path <- paths[[res$mismatch[[2L]]]]
    check_slot_shape(opt$slots[[rule$kinds[[res$mismatch[[1L]]]]]][[path]], ws[[path]], path)
  }
  names(res$weights) <- paths
  res$weights
}
