# The training history fit() returns, in keras3's layout and class:
# a list of class "keras_training_history" with
#   params   list(verbose =, epochs =, steps =) as Keras 3 records them, plus
#            samples and batch_size when fit() knows them
#   metrics  named list, one numeric vector per quantity ("loss",
#            "accuracy", ..., then "val_loss", ...) with one value per epoch
#            trained (NA where an epoch did not log that quantity)
# fit() starts with new_training_history(params) and appends each epoch's
# logs with history_add_epoch().

#' @export
print.keras_training_history <- function(x, ...) {
  n <- history_epochs(x)
  header <- character()
  p <- x$params
  if (!is.null(p$samples)) {
    validated <- if (is.null(p$validation_samples)) "" else
      sprintf(", validated on %s samples", format_count(p$validation_samples))
    header <- sprintf("Trained on %s samples%s (batch_size=%s, epochs=%d)", format_count(p$samples),
                      validated, if (is.null(p$batch_size)) "NULL" else format_count(p$batch_size), n)
  }
  if (n == 0L || length(x$metrics) == 0L) {
    cat(c(header, "No epochs trained."), sep = "\n")
    return(invisible(x))
  }
  final <- vapply(x$metrics, function(v) {
    format(v[[n]], digits = 4, big.mark = ",", scientific = FALSE)
  }, character(1))
  labels <- formatC(names(x$metrics), width = max(nchar(names(x$metrics))))
  cat(c(header, "Final epoch (plot to see history):", paste0(labels, ": ", final)), sep = "\n")
  invisible(x)
}

#' Plot a training history
#'
#' One panel per metric (the loss first, as recorded), with its validation
#' values (`val_` prefix) in the same panel, against the epoch. With
#' `method = "ggplot2"` a ggplot object is returned (print it to draw);
#' `"base"` draws with base graphics and needs no other package; `"auto"`
#' uses ggplot2 when it is installed.
#'
#' @param x A training history, as returned by `fit()`.
#' @param y Unused.
#' @param metrics `NULL` (all) or a character vector of metric names to plot
#'   (without the `val_` prefix), e.g. `c("loss", "accuracy")`.
#' @param method `"auto"`, `"ggplot2"` or `"base"`.
#' @param smooth `TRUE` or `FALSE`: add a loess smooth (ggplot2 only, and
#'   only with 10 epochs or more).
#' @param theme_bw `TRUE` or `FALSE`: use ggplot2's black and white theme.
#' @param ... Passed to [graphics::plot()] (base method).
#' @returns For ggplot2, the ggplot object; for base graphics, `x`
#'   invisibly.
#' @examples
#' # A history like the one fit() returns:
#' h <- structure(list(
#'   params = list(verbose = 1L, epochs = 5L, steps = 10L),
#'   metrics = list(loss = c(1.2, 0.8, 0.6, 0.5, 0.45),
#'                  accuracy = c(0.5, 0.65, 0.72, 0.78, 0.8),
#'                  val_loss = c(1.1, 0.9, 0.7, 0.65, 0.66),
#'                  val_accuracy = c(0.55, 0.6, 0.7, 0.74, 0.75))),
#'   class = "keras_training_history")
#' h
#' plot(h, method = "base")
#' head(as.data.frame(h))
#' @export
plot.keras_training_history <- function(x, y, metrics = NULL, method = c("auto", "ggplot2", "base"),
                                        smooth = getOption("keras.plot.history.smooth", TRUE),
                                        theme_bw = getOption("keras.plot.history.theme_bw", FALSE),
                                        ...) {
  if (identical(method, c("auto", "ggplot2", "base"))) method <- "auto"
  method <- check_choice(method, "method", c("auto", "ggplot2", "base"))
  smooth <- check_flag(smooth, "smooth")
  theme_bw <- check_flag(theme_bw, "theme_bw")
  has_ggplot2 <- requireNamespace("ggplot2", quietly = TRUE)
  if (method == "auto") method <- if (has_ggplot2) "ggplot2" else "base"
  if (method == "ggplot2" && !has_ggplot2) {
    abort_arg("method", "\"base\" or \"auto\" when ggplot2 is not installed", "\"ggplot2\"")
  }
  df <- as.data.frame(x)
  available <- levels(df$metric)
  if (is.null(metrics)) metrics <- available
  if (!is.character(metrics) || length(metrics) == 0L || anyNA(metrics) || !all(metrics %in% available)) {
    abort_arg("metrics", sprintf("NULL or names of recorded metrics (%s)", quote_names(available)),
              describe_value(metrics))
  }
  df <- df[df$metric %in% metrics, , drop = FALSE]
  df$metric <- factor(df$metric, levels = metrics)
  validation <- any(df$data == "validation" & !is.na(df$value))
  if (method == "ggplot2") return(history_ggplot(df, validation, smooth, theme_bw))
  history_base_plot(df, metrics, validation, ...)
  invisible(x)
}

#' @export
as.data.frame.keras_training_history <- function(x, ...) {
  keys <- names(x$metrics)
  # NA rows up to params$epochs, as keras3 (training stopped early), unless
  # that would be huge (fit(epochs = 1e9) stopped early by a callback)
  rows <- max(history_epochs(x), if (is.null(x$params$epochs)) 0L else as.double(x$params$epochs))
  if (rows * max(1L, length(keys)) > 1e7) rows <- history_epochs(x)
  values <- unlist(lapply(x$metrics, function(v) c(as.double(v), rep(NA_real_, rows - length(v)))),
                   use.names = FALSE)
  base <- sub("^val_", "", keys)
  data.frame(
    epoch = rep(seq_len(rows), times = length(keys)),
    value = if (is.null(values)) numeric() else values,
    metric = factor(rep(base, each = rows), levels = unique(base)),
    data = factor(rep(ifelse(grepl("^val_", keys), "validation", "training"), each = rows),
                  levels = c("training", "validation")),
    stringsAsFactors = FALSE
  )
}

# --- internal API for fit() -------------------------------------------------

# An empty history. params: list(verbose =, epochs =, steps =, ...).
#' @noRd
new_training_history <- function(params = list(), metrics = list()) {
  if (!is.list(params) || (length(params) > 0L && is.null(names(params)))) {
    abort_arg("params", "a named list", describe_value(params))
  }
  structure(list(params = params, metrics = metrics), class = "keras_training_history")
}

# The history with one more epoch: `logs` is a named list of numbers (the
# epoch's loss and metrics, then val_ ones). Quantities not in `logs` get
# NA; quantities new in `logs` get NA for the earlier epochs.
#' @noRd
history_add_epoch <- function(history, logs) {
  if (!inherits(history, "keras_training_history")) {
    abort_arg("history", "a training history", describe_value(history))
  }
  ok <- is.list(logs) && length(logs) > 0L && !is.null(names(logs)) && all(nzchar(names(logs))) &&
    !anyDuplicated(names(logs)) &&
    all(vapply(logs, function(v) is.numeric(v) && length(v) == 1L, logical(1)))
  if (!ok) abort_arg("logs", "a named list of single numbers", describe_value(logs))
  n <- history_epochs(history)
  m <- history$metrics
  for (key in union(names(m), names(logs))) {
    old <- if (is.null(m[[key]])) rep(NA_real_, n) else m[[key]]
    m[[key]] <- c(old, if (is.null(logs[[key]])) NA_real_ else as.double(logs[[key]]))
  }
  history$metrics <- m
  history
}

#' @noRd
history_epochs <- function(x) {
  if (length(x$metrics) == 0L) return(0L)
  max(lengths(x$metrics))
}

#' @noRd
format_count <- function(n) format(n, big.mark = ",", scientific = FALSE)

# --- plotting ---------------------------------------------------------------

#' @noRd
history_base_plot <- function(df, metrics, validation, ...) {
  op <- graphics::par(mfrow = c(length(metrics), 1L), mar = c(3, 4, 1.5, 1), mgp = c(2, 0.7, 0))
  on.exit(graphics::par(op), add = TRUE)
  for (metric in metrics) {
    d <- df[df$metric == metric, , drop = FALSE]
    train <- d[d$data == "training", , drop = FALSE]
    val <- d[d$data == "validation", , drop = FALSE]
    finite <- d$value[is.finite(d$value)]
    ylim <- if (length(finite)) range(finite) else c(0, 1)
    graphics::plot(train$epoch, train$value, type = "o", pch = 1, ylim = ylim,
                   xlim = range(d$epoch), xlab = "epoch", ylab = metric, ...)
    if (validation && nrow(val) > 0L) {
      graphics::lines(val$epoch, val$value, type = "o", pch = 4, lty = 2, col = "firebrick")
      graphics::legend("topright", legend = c("training", "validation"), pch = c(1, 4),
                       lty = c(1, 2), col = c("black", "firebrick"), bty = "n")
    }
  }
}

#' @noRd
history_ggplot <- function(df, validation, smooth, theme_bw) {
  df <- df[!is.na(df$value), , drop = FALSE]
  aes <- if (validation) {
    ggplot2::aes(x = epoch, y = value, colour = data, fill = data)
  } else {
    ggplot2::aes(x = epoch, y = value)
  }
  p <- ggplot2::ggplot(df, aes) +
    ggplot2::geom_point(shape = 21, na.rm = TRUE) +
    ggplot2::geom_line(na.rm = TRUE)
  if (smooth && length(unique(df$epoch)) >= 10L) {
    p <- p + ggplot2::geom_smooth(se = FALSE, method = "loess", formula = y ~ x, na.rm = TRUE)
  }
  if (theme_bw) p <- p + ggplot2::theme_bw()
  p + ggplot2::facet_grid(metric ~ ., switch = "y", scales = "free_y") +
    ggplot2::scale_x_continuous(breaks = function(l) {
      b <- pretty(l)
      b[b %% 1 == 0]
    }) +
    ggplot2::theme(axis.title.y = ggplot2::element_blank(), strip.placement = "outside")
}

# Column names used inside ggplot2::aes().
utils::globalVariables(c("epoch", "value", "data"))
