# The training history: building it epoch by epoch as fit() will, keras3's
# print layout, the long data frame, and plotting (base graphics always; the
# ggplot2 method when ggplot2 is installed, its error otherwise).

ns <- asNamespace("multihead")
err <- "multihead_error_argument"

# A history of `n` epochs with loss, accuracy and their validation values.
make_history <- function(n = 4, validation = TRUE, epochs = n) {
  h <- ns$new_training_history(list(verbose = 1L, epochs = as.integer(epochs), steps = 10L))
  for (e in seq_len(n)) {
    logs <- list(loss = 1 / e, accuracy = 0.5 + e / 20)
    if (validation) logs <- c(logs, list(val_loss = 1.2 / e, val_accuracy = 0.45 + e / 20))
    h <- ns$history_add_epoch(h, logs)
  }
  h
}

# Draws `expr` on a throw-away device.
on_null_device <- function(expr) {
  grDevices::pdf(NULL)
  on.exit(grDevices::dev.off())
  force(expr)
}

test_that("history_add_epoch() builds keras3's layout, padding missing values with NA", {
  h <- make_history(3)
  expect_s3_class(h, "keras_training_history")
  expect_named(h, c("params", "metrics"))
  expect_identical(h$params, list(verbose = 1L, epochs = 3L, steps = 10L))
  expect_named(h$metrics, c("loss", "accuracy", "val_loss", "val_accuracy"))
  expect_equal(h$metrics$loss, 1 / (1:3))
  expect_equal(h$metrics$val_accuracy, 0.45 + (1:3) / 20)
  # A quantity that appears late is NA before; one that disappears is NA after.
  h2 <- ns$new_training_history()
  h2 <- ns$history_add_epoch(h2, list(loss = 1))
  h2 <- ns$history_add_epoch(h2, list(loss = 0.5, lr = 0.1))
  h2 <- ns$history_add_epoch(h2, list(lr = 0.05))
  expect_identical(h2$metrics, list(loss = c(1, 0.5, NA), lr = c(NA, 0.1, 0.05)))
  f <- tempfile(fileext = ".rds")
  saveRDS(h, f)
  expect_identical(readRDS(f), h)
})

test_that("print() shows keras3's final-epoch summary", {
  h <- make_history(4)
  expect_identical(capture.output(print(h)),
                   c("Final epoch (plot to see history):",
                     "        loss: 0.25",
                     "    accuracy: 0.7",
                     "    val_loss: 0.3",
                     "val_accuracy: 0.65"))
  h$params$samples <- 12000
  h$params$batch_size <- 32
  h$params$validation_samples <- 3000
  out <- capture.output(print(h))
  expect_identical(out[1], "Trained on 12,000 samples, validated on 3,000 samples (batch_size=32, epochs=4)")
  expect_identical(out[2], "Final epoch (plot to see history):")
  expect_output(print(ns$new_training_history()), "No epochs trained")
  capture.output(vis <- withVisible(print(h)))
  expect_false(vis$visible)
  expect_output(print(ns$history_add_epoch(ns$new_training_history(), list(loss = 1234.56789))),
                "loss: 1,235")
})

test_that("as.data.frame() gives keras3's long layout", {
  h <- make_history(3)
  df <- as.data.frame(h)
  expect_identical(names(df), c("epoch", "value", "metric", "data"))
  expect_identical(nrow(df), 12L)
  expect_identical(df$epoch, rep(1:3, 4))
  expect_equal(df$value, c(1 / (1:3), 0.5 + (1:3) / 20, 1.2 / (1:3), 0.45 + (1:3) / 20))
  expect_identical(levels(df$metric), c("loss", "accuracy"))
  expect_identical(as.character(df$metric), rep(c("loss", "accuracy", "loss", "accuracy"), each = 3))
  expect_identical(levels(df$data), c("training", "validation"))
  expect_identical(as.character(df$data), rep(c("training", "validation"), each = 6))
  # Stopped early: padded with NA up to params$epochs, as keras3 does.
  short <- make_history(2, epochs = 5)
  df <- as.data.frame(short)
  expect_identical(nrow(df), 20L)
  expect_identical(df$epoch[1:5], 1:5)
  expect_true(all(is.na(df$value[3:5])))
  expect_false(anyNA(df$value[1:2]))
  expect_identical(nrow(as.data.frame(ns$new_training_history())), 0L)
})

test_that("plot() draws with base graphics, one panel per metric", {
  h <- make_history(4)
  panels <- NULL
  on_null_device({
    expect_invisible(plot(h, method = "base"))
    panels <- graphics::par("mfrow")   # restored after the plot
  })
  expect_identical(panels, c(1L, 1L))
  on_null_device(expect_silent(plot(h, metrics = "accuracy", method = "base")))
  on_null_device(expect_silent(plot(make_history(3, validation = FALSE), method = "base")))
  on_null_device(expect_silent(plot(make_history(2, epochs = 6), method = "base", main = "early stop")))
  # The base method draws one panel per metric: count the plot frames.
  frames <- 0
  grDevices::pdf(NULL)
  setHook("plot.new", function() frames <<- frames + 1)
  plot(h, method = "base")
  setHook("plot.new", NULL, "replace")
  grDevices::dev.off()
  expect_identical(frames, 2)
})

test_that("plot() with ggplot2 returns a ggplot when ggplot2 is installed, else a clear error", {
  h <- make_history(12)
  if (requireNamespace("ggplot2", quietly = TRUE)) {
    p <- plot(h)                        # auto picks ggplot2
    expect_s3_class(p, "ggplot")
    expect_s3_class(plot(h, method = "ggplot2", smooth = FALSE, theme_bw = TRUE), "ggplot")
    expect_s3_class(plot(make_history(3, validation = FALSE), method = "ggplot2"), "ggplot")
    on_null_device(expect_silent(print(p)))
    on_null_device(expect_silent(print(plot(make_history(2, epochs = 5), metrics = "loss"))))
  } else {
    expect_error(plot(h, method = "ggplot2"), "`method`", class = err)
    on_null_device(expect_invisible(plot(h)))  # auto falls back to base
  }
})

test_that("bad arguments are errors naming them", {
  h <- make_history(2)
  on_null_device({
    expect_error(plot(h, method = "lattice"), "`method`", class = err)
    expect_error(plot(h, metrics = "auc", method = "base"), "`metrics`.*\"loss\", \"accuracy\"", class = err)
    expect_error(plot(h, metrics = 1, method = "base"), "`metrics`", class = err)
    expect_error(plot(h, smooth = NA, method = "base"), "`smooth`", class = err)
    expect_error(plot(h, theme_bw = "yes", method = "base"), "`theme_bw`", class = err)
  })
  expect_error(ns$history_add_epoch(h, list(1)), "`logs`", class = err)
  expect_error(ns$history_add_epoch(h, list(loss = "a")), "`logs`", class = err)
  expect_error(ns$history_add_epoch(h, list(loss = c(1, 2))), "`logs`", class = err)
  expect_error(ns$history_add_epoch(list(), list(loss = 1)), "`history`", class = err)
  expect_error(ns$new_training_history(params = 1), "`params`", class = err)
})
