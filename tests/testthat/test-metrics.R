# Metrics: Keras's documented values, accumulation over batches (plain and
# weighted) against the metric over all the data at once, "accuracy"
# resolution, and argument errors.

m_update <- multihead:::metric_update
m_result <- multihead:::metric_result
m_reset <- multihead:::metric_reset
resolve <- multihead:::resolve_metric
err <- "multihead_error_argument"

test_that("results match the examples in Keras's documentation", {
  m <- metric_binary_accuracy()
  m_update(m, matrix(c(1, 1, 0, 0)), matrix(c(0.98, 1, 0, 0.6)))
  expect_equal(m_result(m), 0.75)
  m_reset(m)
  m_update(m, matrix(c(1, 1, 0, 0)), matrix(c(0.98, 1, 0, 0.6)), sample_weight = c(1, 0, 0, 1))
  expect_equal(m_result(m), 0.5)
  yt <- rbind(c(0, 0, 1), c(0, 1, 0))
  yp <- rbind(c(0.1, 0.9, 0.8), c(0.05, 0.95, 0))
  m <- metric_categorical_accuracy()
  m_update(m, yt, yp)
  expect_equal(m_result(m), 0.5)
  m_reset(m)
  m_update(m, yt, yp, sample_weight = c(0.7, 0.3))
  expect_equal(m_result(m), 0.3)
  m <- metric_sparse_categorical_accuracy()
  m_update(m, matrix(c(2, 1)), rbind(c(0.1, 0.6, 0.3), c(0.05, 0.95, 0)))
  expect_equal(m_result(m), 0.5)
  m_reset(m)
  m_update(m, c(2, 1), rbind(c(0.1, 0.6, 0.3), c(0.05, 0.95, 0)), sample_weight = c(0.7, 0.3))
  expect_equal(m_result(m), 0.3)
  for (ctor in list(metric_mean_absolute_error, metric_mean_squared_error)) {
    m <- ctor()
    m_update(m, rbind(c(0, 1), c(0, 0)), rbind(c(1, 1), c(0, 0)))
    expect_equal(m_result(m), 0.25)
    m_reset(m)
    m_update(m, rbind(c(0, 1), c(0, 0)), rbind(c(1, 1), c(0, 0)), sample_weight = c(1, 0))
    expect_equal(m_result(m), 0.5)
  }
})

test_that("the function forms give per-sample values", {
  expect_equal(metric_binary_accuracy(rbind(c(1, 0), c(1, 1)), rbind(c(0.7, 0.2), c(0.4, 0.9))),
               array(c(1, 0.5)))
  expect_equal(metric_binary_accuracy(matrix(c(1, 0)), matrix(c(0.6, 0.6)), threshold = 0.7), array(c(0, 1)))
  expect_equal(metric_categorical_accuracy(rbind(c(0, 1), c(1, 0)), rbind(c(0.2, 0.8), c(0.3, 0.7))),
               array(c(1, 0)))
  expect_equal(metric_sparse_categorical_accuracy(c(0, 1), rbind(c(0.5, 0.5), c(0.5, 0.5))), array(c(1, 0)))
  expect_equal(metric_mean_squared_error(rbind(c(0, 1)), rbind(c(2, 1))), array(2))
  expect_equal(metric_mean_absolute_error(rbind(c(0, 1)), rbind(c(2, 1))), array(1))
})

test_that("accumulating batches of different sizes equals the metric over all the data", {
  set.seed(7)
  n <- 11
  C <- 3
  logits <- matrix(rnorm(n * C), n, C)
  lab <- sample(0:(C - 1), n, replace = TRUE)
  onehot <- diag(C)[lab + 1, ]
  bin_t <- matrix(rbinom(n * 2, 1, 0.5), n, 2)
  bin_p <- matrix(runif(n * 2), n, 2)
  reg_t <- matrix(rnorm(n * 2), n, 2)
  reg_p <- matrix(rnorm(n * 2), n, 2)
  w <- runif(n, 0.1, 2)
  batches <- list(1:4, 5:9, 10:11)
  hits <- as.double(max.col(logits, "first") - 1 == lab)
  cases <- list(
    list(metric_sparse_categorical_accuracy, lab, logits, hits),
    list(metric_categorical_accuracy, onehot, logits, hits),
    list(metric_binary_accuracy, bin_t, bin_p, rowMeans(bin_t == (bin_p > 0.5))),
    list(metric_mean_absolute_error, reg_t, reg_p, rowMeans(abs(reg_t - reg_p))),
    list(metric_mean_squared_error, reg_t, reg_p, rowMeans((reg_t - reg_p)^2))
  )
  take <- function(y, i) if (is.null(dim(y))) y[i] else y[i, , drop = FALSE]
  for (cs in cases) {
    m <- cs[[1]]()
    mw <- cs[[1]]()
    for (i in batches) {
      m_update(m, take(cs[[2]], i), take(cs[[3]], i))
      m_update(mw, take(cs[[2]], i), take(cs[[3]], i), sample_weight = w[i])
    }
    expect_equal(m_result(m), mean(cs[[4]]))
    expect_identical(m$count, n)
    expect_equal(m_result(mw), sum(cs[[4]] * w) / sum(w))
    expect_equal(mw$count, sum(w))
    # reset starts over
    m_reset(m)
    expect_identical(m_result(m), 0)
    m_update(m, take(cs[[2]], 1:2), take(cs[[3]], 1:2))
    expect_equal(m_result(m), mean(cs[[4]][1:2]))
  }
})

test_that("sequence outputs: per-sample means, weights per sample or per value", {
  # (B = 2, T = 3, C = 2) predictions with (B, T) labels.
  yp <- array(c(0.9, 0.2, 0.6, 0.7, 0.1, 0.3, 0.1, 0.8, 0.4, 0.3, 0.9, 0.7), c(2, 3, 2))
  lab <- matrix(c(0, 1, 1, 1, 1, 0), 2, 3)
  hits <- (apply(yp, c(1, 2), which.max) - 1) == lab     # (2, 3)
  m <- metric_sparse_categorical_accuracy()
  m_update(m, lab, yp)
  expect_equal(m_result(m), mean(rowMeans(hits)))
  expect_identical(m$count, 2)
  m_reset(m)
  m_update(m, lab, yp, sample_weight = c(3, 1))
  expect_equal(m_result(m), sum(rowMeans(hits) * c(3, 1)) / 4)
  m_reset(m)
  sw <- matrix(c(1, 0, 2, 1, 0, 1), 2, 3)
  m_update(m, lab, yp, sample_weight = sw)
  expect_equal(m_result(m), sum(rowMeans(hits * sw)) / sum(rowMeans(sw)))
  # A trailing label axis of size 1 is accepted.
  m_reset(m)
  m_update(m, array(lab, c(2, 3, 1)), yp)
  expect_equal(m_result(m), mean(hits))
})

test_that("argmax ties go to the first class, as numpy's argmax", {
  expect_equal(metric_sparse_categorical_accuracy(c(0, 1), rbind(c(1, 1, 0), c(2, 2, 2))), array(c(1, 0)))
})

test_that("\"accuracy\" resolves as Keras 3 does from the shapes, or from the loss", {
  expect_s3_class(resolve("accuracy", NULL, c(NA, 1), c(NA, 1)), "BinaryAccuracy")
  expect_s3_class(resolve("accuracy", NULL, NA, c(NA, 1)), "BinaryAccuracy")
  expect_s3_class(resolve("accuracy", NULL, NA, c(NA, 5)), "SparseCategoricalAccuracy")
  expect_s3_class(resolve("accuracy", NULL, c(32, 1), c(32, 5)), "SparseCategoricalAccuracy")
  expect_s3_class(resolve("accuracy", NULL, c(32, 10), c(32, 10, 5)), "SparseCategoricalAccuracy")
  expect_s3_class(resolve("accuracy", NULL, c(32, 5), c(32, 5)), "CategoricalAccuracy")
  # The shapes decide even against the loss (Keras 3 looks at shapes only).
  expect_s3_class(resolve("accuracy", "binary_crossentropy", c(8, 3), c(8, 3)), "CategoricalAccuracy")
  # Without shapes, the loss.
  expect_s3_class(resolve("accuracy", "binary_crossentropy"), "BinaryAccuracy")
  expect_s3_class(resolve("acc", loss_sparse_categorical_crossentropy(from_logits = TRUE)),
                  "SparseCategoricalAccuracy")
  expect_s3_class(resolve("accuracy", "categorical_crossentropy"), "CategoricalAccuracy")
  expect_error(resolve("accuracy", "mse"), "accuracy", class = err)
  expect_error(resolve("accuracy"), "shapes", class = err)
  # The metric is named by the name given.
  expect_identical(resolve("accuracy", NULL, 1, c(1, 1))$name, "accuracy")
  expect_identical(resolve("acc", "binary_crossentropy")$name, "acc")
  expect_identical(resolve("mae")$name, "mae")
  expect_s3_class(resolve("mae"), "MeanAbsoluteError")
  expect_s3_class(resolve("mse"), "MeanSquaredError")
  expect_s3_class(resolve("mean_squared_error"), "MeanSquaredError")
  expect_s3_class(resolve("binary_accuracy"), "BinaryAccuracy")
  expect_s3_class(resolve("SparseCategoricalAccuracy"), "SparseCategoricalAccuracy")
  m <- metric_binary_accuracy(threshold = 0.3)
  expect_identical(resolve(m), m)
  expect_error(resolve("f1_score"),
               paste0("`metrics` must be a metric object or one of \"accuracy\", \"acc\", \"binary_accuracy\", ",
                      "\"categorical_accuracy\", \"sparse_categorical_accuracy\", \"mae\", ",
                      "\"mean_absolute_error\", \"mse\", \"mean_squared_error\", ",
                      "\"top_k_categorical_accuracy\", \"sparse_top_k_categorical_accuracy\", \"auc\", ",
                      "\"precision\", \"recall\"; got \"f1_score\""), fixed = TRUE)
  expect_error(resolve(NULL), "`metrics`", class = err)
  expect_error(resolve("accuracy", NULL, "a", c(1, 2)), "`y_true_shape`", class = err)
  expect_error(resolve("accuracy", NULL, 1, c(1.5, 2)), "`y_pred_shape`", class = err)
})

test_that("metric objects: names, directions, printing, saveRDS", {
  m <- metric_binary_accuracy()
  expect_identical(m$name, "binary_accuracy")
  expect_identical(m$direction, "up")
  expect_identical(metric_mean_squared_error()$direction, "down")
  expect_identical(metric_categorical_accuracy()$name, "categorical_accuracy")
  expect_identical(metric_sparse_categorical_accuracy(name = "acc")$name, "acc")
  expect_output(print(m), "^<metric BinaryAccuracy name=\"binary_accuracy\" threshold=0.5 result=0>$")
  m_update(m, c(1, 0), c(0.9, 0.1))
  f <- tempfile(fileext = ".rds")
  saveRDS(m, f)
  m2 <- readRDS(f)
  expect_identical(m_result(m2), m_result(m))
  m_update(m2, c(1, 0), c(0.1, 0.1))
  expect_identical(m_result(m), 1)     # the copy is independent
})

test_that("bad arguments are errors naming them", {
  for (bad in list(0, 1, -0.5, NA, "0.5", c(0.2, 0.3))) {
    expect_error(metric_binary_accuracy(threshold = bad), "`threshold`", class = err)
  }
  for (f in list(metric_binary_accuracy, metric_categorical_accuracy, metric_sparse_categorical_accuracy,
                 metric_mean_absolute_error, metric_mean_squared_error)) {
    expect_error(f(name = ""), "`name`", class = err)
    expect_error(f(dtype = "int8"), "`dtype`", class = err)
    expect_error(f(bar = 2), "`bar`", class = err)
    expect_error(f(y_true = 1), "`y_pred`", class = err)
    expect_error(f(y_pred = 1), "`y_true`", class = err)
    m <- f()
    expect_error(m_update(m, 1, "a"), "`y_pred`", class = err)
    expect_error(m_update(m, NA, 1), "`y_true`", class = err)
  }
  expect_error(m_update("m", 1, 1), "`m`", class = err)
  expect_error(m_result(list()), "`m`", class = err)
  expect_error(m_reset(NULL), "`m`", class = err)
  expect_error(m_update(metric_categorical_accuracy(), c(0, 1), rbind(c(0.2, 0.8), c(0.3, 0.7))),
               "`y_true` must be an array of shape \\(2, 2\\) for categorical accuracy", class = err)
  expect_error(m_update(metric_sparse_categorical_accuracy(), rbind(c(0, 1), c(1, 0)), rbind(c(0.2, 0.8), c(0.3, 0.7))),
               "`y_true` must be an array of shape \\(2\\)", class = err)
  expect_error(m_update(metric_mean_absolute_error(), matrix(0, 2, 3), matrix(0, 2, 2)), "`y_true`", class = err)
  expect_error(m_update(metric_binary_accuracy(), c(1, 0), c(0.9, 0.1), sample_weight = c(1, 2, 3)),
               "`sample_weight`", class = err)
  expect_error(m_update(metric_binary_accuracy(), matrix(c(1, 0)), matrix(c(0.9, 0.1)), sample_weight = NA),
               "`sample_weight`", class = err)
})
