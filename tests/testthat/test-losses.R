# Losses: Keras's documented values, the formulas (written out here with
# loops) under every option and reduction, sample weights, ignore_class,
# shapes, and every gradient against central finite differences (fd_grad()
# from helper-fixtures.R).

vg <- multihead:::loss_value_and_grad
err <- "multihead_error_argument"
eps <- 1e-7

expect_fd_grad <- function(loss, y_true, y_pred, sample_weight = NULL, tol = 1e-6) {
  out <- vg(loss, y_true, y_pred, sample_weight)
  num <- fd_grad(function(p) sum(vg(loss, y_true, p, sample_weight)$value), y_pred)
  expect_identical(dim(out$grad), dim(y_pred))
  expect_equal(out$grad, num, tolerance = tol)
}

# Rows of a 3-D (B, T, C) array as a list of C-vectors with their (b, t).
rows_of <- function(a) {
  d <- dim(a)
  idx <- expand.grid(b = seq_len(d[1]), t = seq_len(d[2]))
  lapply(seq_len(nrow(idx)), function(r) a[idx$b[r], idx$t[r], ])
}

softmax <- function(x) exp(x - max(x)) / sum(exp(x - max(x)))
clip <- function(p) pmin(pmax(p, eps), 1 - eps)

set.seed(42)
B <- 3
C <- 4
probs <- t(apply(matrix(runif(B * C, 0.05, 1), B, C), 1, function(r) r / sum(r)))
logits <- matrix(rnorm(B * C), B, C)
onehot <- diag(C)[c(2, 4, 1), ]
labels <- c(1, 3, 0)

test_that("values match the examples in Keras's documentation", {
  yt <- rbind(c(0, 1), c(0, 0))
  expect_equal(loss_mean_squared_error()(yt, rbind(c(1, 1), c(1, 0))), 0.5)
  expect_equal(loss_mean_squared_error()(yt, rbind(c(1, 1), c(1, 0)), sample_weight = c(0.7, 0.3)), 0.25)
  expect_equal(loss_mean_squared_error(reduction = "sum")(yt, rbind(c(1, 1), c(1, 0))), 1)
  expect_equal(loss_mean_squared_error(reduction = "none")(yt, rbind(c(1, 1), c(1, 0))), array(c(0.5, 0.5)))
  expect_equal(loss_mean_absolute_error()(yt, rbind(c(1, 1), c(1, 0)), sample_weight = c(0.7, 0.3)), 0.25)
  bce <- loss_binary_crossentropy(from_logits = TRUE)
  expect_equal(bce(c(0, 1, 0, 0), c(-18.6, 0.51, 2.94, -12.8)), 0.865, tolerance = 1e-3)
  lg <- rbind(c(-18.6, 0.51), c(2.94, -12.8))
  expect_equal(bce(yt, lg), 0.865, tolerance = 1e-3)
  # (Keras prints 0.243 for 0.24364.)
  expect_equal(bce(yt, lg, sample_weight = c(0.8, 0.2)), 0.24364, tolerance = 1e-4)
  expect_equal(loss_binary_crossentropy(from_logits = TRUE, reduction = "sum")(yt, lg), 1.730, tolerance = 1e-3)
  expect_equal(loss_binary_crossentropy(from_logits = TRUE, reduction = NULL)(yt, lg), array(c(0.235, 1.496)),
               tolerance = 1e-3)
  pr <- rbind(c(0.6, 0.4), c(0.4, 0.6))
  expect_equal(loss_binary_crossentropy()(yt, pr), 0.815, tolerance = 1e-3)
  expect_equal(loss_binary_crossentropy()(yt, pr, sample_weight = c(1, 0)), 0.458, tolerance = 1e-3)
  expect_equal(loss_binary_crossentropy(yt, pr), array(c(0.916, 0.714)), tolerance = 1e-3)
  ct <- rbind(c(0, 1, 0), c(0, 0, 1))
  cp <- rbind(c(0.05, 0.95, 0), c(0.1, 0.8, 0.1))
  expect_equal(loss_categorical_crossentropy()(ct, cp), 1.177, tolerance = 1e-3)
  expect_equal(loss_categorical_crossentropy()(ct, cp, sample_weight = c(0.3, 0.7)), 0.814, tolerance = 1e-3)
  expect_equal(loss_categorical_crossentropy(reduction = "sum")(ct, cp), 2.354, tolerance = 1e-3)
  expect_equal(loss_categorical_crossentropy(ct, cp), array(c(0.0513, 2.303)), tolerance = 1e-3)
  expect_equal(loss_sparse_categorical_crossentropy()(c(1, 2), cp), 1.177, tolerance = 1e-3)
  expect_equal(loss_sparse_categorical_crossentropy()(c(1, 2), cp, sample_weight = c(0.3, 0.7)), 0.814,
               tolerance = 1e-3)
  expect_equal(loss_sparse_categorical_crossentropy(c(1, 2), cp), array(c(0.0513, 2.303)), tolerance = 1e-3)
})

test_that("MSE and MAE match their formulas on (B, T, C) arrays", {
  yt <- array(rnorm(2 * 3 * 4), c(2, 3, 4))
  yp <- array(rnorm(2 * 3 * 4), c(2, 3, 4))
  d <- yp - yt
  mse_rows <- apply(d^2, c(1, 2), mean)
  mae_rows <- apply(abs(d), c(1, 2), mean)
  expect_equal(loss_mean_squared_error(yt, yp), mse_rows)
  expect_equal(loss_mean_absolute_error(yt, yp), mae_rows)
  expect_equal(loss_mean_squared_error()(yt, yp), mean(mse_rows))
  expect_equal(loss_mean_absolute_error(reduction = "sum")(yt, yp), sum(mae_rows))
})

test_that("binary cross-entropy matches its formula: probabilities, logits, label smoothing", {
  yt <- matrix(c(0, 1, 1, 0, 1, 0), 3, 2)
  p <- matrix(c(0.2, 0.7, 0.9, 0.4, 0.55, 0.1), 3, 2)
  x <- matrix(c(-1.5, 0.3, 2, -0.2, 1.1, -3), 3, 2)
  bce_ref <- function(t, p) -rowMeans(t * log(clip(p)) + (1 - t) * log(1 - clip(p)))
  expect_equal(loss_binary_crossentropy(yt, p), array(bce_ref(yt, p)))
  expect_equal(loss_binary_crossentropy(yt, x, from_logits = TRUE), array(bce_ref(yt, plogis(x))))
  ts <- yt * (1 - 0.2) + 0.5 * 0.2
  expect_equal(loss_binary_crossentropy(yt, p, label_smoothing = 0.2), array(bce_ref(ts, p)))
  expect_equal(loss_binary_crossentropy(yt, x, from_logits = TRUE, label_smoothing = 0.2),
               array(bce_ref(ts, plogis(x))))
  # Probabilities at 0 and 1 are clipped, giving -log(1e-7), not Inf.
  expect_equal(loss_binary_crossentropy(c(1, 0), c(0, 1)), -log(eps), tolerance = 1e-6)
  # Large logits stay finite and exact (the stable form).
  expect_equal(loss_binary_crossentropy(c(0, 1), c(800, -800), from_logits = TRUE), 800)
})

test_that("categorical cross-entropy matches its formula: normalising, logits, label smoothing", {
  unnorm <- probs * c(2, 0.5, 3)
  ref <- function(t, p) -rowSums(t * log(clip(p / rowSums(p))))
  expect_equal(loss_categorical_crossentropy(onehot, unnorm), array(ref(onehot, unnorm)))
  sm <- t(apply(logits, 1, softmax))
  expect_equal(loss_categorical_crossentropy(onehot, logits, from_logits = TRUE),
               array(-rowSums(onehot * log(sm))))
  ts <- onehot * (1 - 0.1) + 0.1 / C
  expect_equal(loss_categorical_crossentropy(onehot, probs, label_smoothing = 0.1), array(ref(ts, probs)))
  expect_equal(loss_categorical_crossentropy(onehot, logits, from_logits = TRUE, label_smoothing = 0.1),
               array(-rowSums(ts * log(sm))))
  # A class axis other than the last: (C, B) with axis = 1.
  expect_equal(loss_categorical_crossentropy(t(onehot), t(logits), from_logits = TRUE, axis = 1),
               array(-rowSums(onehot * log(sm))))
})

test_that("sparse categorical cross-entropy matches its formula, on (B, T, C) too", {
  ref_p <- function(lab, p) -log(clip(p[cbind(seq_along(lab), lab + 1)] / rowSums(p)))
  expect_equal(loss_sparse_categorical_crossentropy(labels, probs), array(ref_p(labels, probs)))
  expect_equal(loss_sparse_categorical_crossentropy(matrix(labels), probs), array(ref_p(labels, probs)))
  sm <- t(apply(logits, 1, softmax))
  expect_equal(loss_sparse_categorical_crossentropy(labels, logits, from_logits = TRUE),
               array(-log(sm[cbind(1:3, labels + 1)])))
  # Agrees with categorical cross-entropy on the one-hot labels.
  expect_equal(loss_sparse_categorical_crossentropy(labels, logits, from_logits = TRUE),
               loss_categorical_crossentropy(onehot, logits, from_logits = TRUE))
  lab3 <- matrix(c(0, 2, 1, 3, 3, 0), 2, 3)
  x3 <- array(rnorm(2 * 3 * C), c(2, 3, C))
  got <- loss_sparse_categorical_crossentropy(lab3, x3, from_logits = TRUE)
  want <- matrix(0, 2, 3)
  for (b in 1:2) for (t in 1:3) want[b, t] <- -log(softmax(x3[b, t, ])[lab3[b, t] + 1])
  expect_equal(got, want)
})

test_that("every reduction and sample_weight follow Keras's reduce_weighted_values", {
  yt <- array(rnorm(2 * 3 * 2), c(2, 3, 2))
  yp <- array(rnorm(2 * 3 * 2), c(2, 3, 2))
  v <- loss_mean_squared_error(yt, yp)            # (2, 3)
  sw_sample <- c(0.5, 2)
  sw_full <- matrix(c(1, 0, 2, 0.5, 3, 1), 2, 3)
  W <- matrix(sw_sample, 2, 3)
  L <- function(red) loss_mean_squared_error(reduction = red)
  expect_equal(L("sum_over_batch_size")(yt, yp), sum(v) / 6)
  expect_equal(L("mean")(yt, yp), sum(v) / 6)
  expect_equal(L("sum")(yt, yp), sum(v))
  expect_equal(L("none")(yt, yp), v)
  expect_equal(L("mean_with_sample_weight")(yt, yp), sum(v) / 6)
  expect_equal(L("sum_over_batch_size")(yt, yp, sample_weight = sw_sample), sum(v * W) / 6)
  expect_equal(L("sum_over_batch_size")(yt, yp, sample_weight = matrix(sw_sample)), sum(v * W) / 6)
  expect_equal(L("sum")(yt, yp, sample_weight = sw_full), sum(v * sw_full))
  expect_equal(L("none")(yt, yp, sample_weight = sw_sample), v * W)
  expect_equal(L("mean_with_sample_weight")(yt, yp, sample_weight = sw_full), sum(v * sw_full) / sum(sw_full))
  expect_equal(L("sum_over_batch_size")(yt, yp, sample_weight = 3), 3 * sum(v) / 6)
  # Zero weights give 0, not NaN, for mean_with_sample_weight.
  expect_identical(L("mean_with_sample_weight")(yt, yp, sample_weight = c(0, 0)), 0)
})

test_that("ignore_class: ignored entries give 0 and the mean is over the others", {
  lab <- matrix(c(1, -1, 0, 2, -1, 3), 2, 3)
  x <- array(rnorm(2 * 3 * C), c(2, 3, C))
  full <- matrix(0, 2, 3)
  for (b in 1:2) for (t in 1:3) if (lab[b, t] >= 0) full[b, t] <- -log(softmax(x[b, t, ])[lab[b, t] + 1])
  keep <- lab != -1
  L <- function(red) loss_sparse_categorical_crossentropy(from_logits = TRUE, ignore_class = -1, reduction = red)
  expect_equal(loss_sparse_categorical_crossentropy(lab, x, from_logits = TRUE, ignore_class = -1), full)
  expect_equal(L("sum_over_batch_size")(lab, x), sum(full) / sum(keep))
  expect_equal(L("mean")(lab, x), sum(full) / sum(keep))
  expect_equal(L("sum")(lab, x), sum(full))
  expect_equal(L("none")(lab, x), full)
  sw <- c(2, 0.5)
  expect_equal(L("sum_over_batch_size")(lab, x, sample_weight = sw), sum(full * sw) / sum(keep))
  expect_equal(L("mean_with_sample_weight")(lab, x, sample_weight = sw),
               sum(full * sw) / sum(keep * matrix(sw, 2, 3)))
  # Probabilities too; an ignored row of zeros does not give NaN.
  p <- array(runif(2 * 3 * C), c(2, 3, C))
  p[2, 1, ] <- 0
  got <- vg(loss_sparse_categorical_crossentropy(ignore_class = -1), lab, p)
  expect_true(is.finite(got$value))
  expect_true(all(got$grad[2, 1, ] == 0))
  # All entries ignored: 0.
  expect_identical(L("sum_over_batch_size")(matrix(-1, 2, 3), x), 0)
  # A large ignore_class such as 255 may lie outside the classes.
  expect_equal(loss_sparse_categorical_crossentropy(ignore_class = 255, from_logits = TRUE)(c(255, 1), logits[1:2, ]),
               -log(softmax(logits[2, ])[2]) / 1)
})

test_that("gradients match finite differences for every loss, option and reduction", {
  yt2 <- matrix(c(0.2, -1, 0.5, 1.3, 0.7, -0.4), 3, 2)
  yp2 <- matrix(c(1.1, -0.3, 0.9, 0.4, -0.6, 0.25), 3, 2)
  bt <- matrix(c(0, 1, 1, 0, 1, 0), 3, 2)
  bp <- matrix(c(0.2, 0.7, 0.9, 0.4, 0.55, 0.1), 3, 2)
  sw <- c(0.5, 2, 1)
  for (red in c("sum_over_batch_size", "sum", "mean_with_sample_weight", "none")) {
    for (w in list(NULL, sw)) {
      expect_fd_grad(loss_mean_squared_error(reduction = red), yt2, yp2, w)
      expect_fd_grad(loss_mean_absolute_error(reduction = red), yt2, yp2, w)
      for (ls in c(0, 0.2)) {
        expect_fd_grad(loss_binary_crossentropy(reduction = red, label_smoothing = ls), bt, bp, w)
        expect_fd_grad(loss_binary_crossentropy(from_logits = TRUE, reduction = red, label_smoothing = ls),
                       bt, yp2, w)
        expect_fd_grad(loss_categorical_crossentropy(reduction = red, label_smoothing = ls), onehot,
                       probs * c(2, 0.5, 3), w)
        expect_fd_grad(loss_categorical_crossentropy(from_logits = TRUE, reduction = red, label_smoothing = ls),
                       onehot, logits, w)
      }
      expect_fd_grad(loss_sparse_categorical_crossentropy(reduction = red), labels, probs, w)
      expect_fd_grad(loss_sparse_categorical_crossentropy(from_logits = TRUE, reduction = red), labels, logits, w)
      expect_fd_grad(loss_sparse_categorical_crossentropy(from_logits = TRUE, ignore_class = 0, reduction = red),
                     labels, logits, w)
      expect_fd_grad(loss_sparse_categorical_crossentropy(ignore_class = 3, reduction = red), labels, probs, w)
    }
  }
})

test_that("gradients on (B, T, C) arrays, other axes and reshaped shapes match finite differences", {
  x3 <- array(rnorm(2 * 3 * C), c(2, 3, C))
  lab3 <- matrix(c(0, 2, 1, 3, 3, 0), 2, 3)
  oh3 <- array(0, c(2, 3, C))
  for (b in 1:2) for (t in 1:3) oh3[b, t, lab3[b, t] + 1] <- 1
  sw_full <- matrix(c(1, 0.5, 2, 1, 0, 3), 2, 3)
  expect_fd_grad(loss_sparse_categorical_crossentropy(from_logits = TRUE, ignore_class = 3), lab3, x3, c(1, 2))
  expect_fd_grad(loss_categorical_crossentropy(from_logits = TRUE), oh3, x3, sw_full)
  expect_fd_grad(loss_categorical_crossentropy(from_logits = TRUE, axis = 2),
                 aperm(oh3, c(1, 3, 2)), aperm(x3, c(1, 3, 2)))
  expect_fd_grad(loss_binary_crossentropy(axis = 1), matrix(c(1, 0, 0, 1), 2), matrix(c(0.3, 0.6, 0.2, 0.8), 2))
  expect_fd_grad(loss_mean_squared_error(), array(rnorm(24), c(2, 3, 4)), x3, sw_full)
  # y_pred (B, 1) with y_true (B,) and the reverse: Keras expands the vector.
  expect_fd_grad(loss_mean_squared_error(), c(1, 2, 3), matrix(c(0.5, 2.5, 2)))
  expect_fd_grad(loss_binary_crossentropy(from_logits = TRUE), matrix(c(1, 0, 1)), c(0.5, -2.5, 2))
  # A rank-1 prediction: one value (the mean over the single axis).
  expect_fd_grad(loss_binary_crossentropy(from_logits = TRUE), c(0, 1, 0, 0), c(-18.6, 0.51, 2.94, -12.8))
})

test_that("the gradient is zero where probabilities are clipped", {
  out <- vg(loss_binary_crossentropy(reduction = "sum"), c(1, 0, 1), c(0, 1, 0.5))
  expect_identical(out$grad[1:2], c(0, 0))
  expect_equal(out$grad[3], -1 / 0.5 / 3)
  out <- vg(loss_categorical_crossentropy(), rbind(c(1, 0)), rbind(c(0, 1)))
  expect_true(all(out$grad == 0))
  expect_equal(out$value, -log(eps))
})

test_that("loss objects: callable, config by $, printing, names, saveRDS", {
  l <- loss_categorical_crossentropy(from_logits = TRUE, label_smoothing = 0.1, name = "cce")
  expect_s3_class(l, "multihead_loss")
  expect_s3_class(l, "CategoricalCrossentropy")
  expect_identical(l$name, "cce")
  expect_identical(l$reduction, "sum_over_batch_size")
  expect_true(l$from_logits)
  expect_identical(l$label_smoothing, 0.1)
  expect_identical(l$class_name, "CategoricalCrossentropy")
  expect_output(print(loss_mean_squared_error()),
                "^<loss MeanSquaredError name=\"mean_squared_error\" reduction=\"sum_over_batch_size\" dtype=NULL>$")
  expect_identical(l(onehot, logits), vg(l, onehot, logits)$value)
  f <- tempfile(fileext = ".rds")
  saveRDS(l, f)
  expect_identical(readRDS(f)(onehot, logits), l(onehot, logits))
  expect_identical(loss_sparse_categorical_crossentropy()$ignore_class, NULL)
  expect_identical(loss_binary_crossentropy(reduction = NULL)$reduction, "none")
})

test_that("as_loss() resolves Keras's names and lists the valid ones otherwise", {
  as_l <- multihead:::as_loss
  expect_s3_class(as_l("mse"), "MeanSquaredError")
  expect_identical(as_l("mse")$name, "mse")
  expect_s3_class(as_l("mean_squared_error"), "MeanSquaredError")
  expect_s3_class(as_l("mae"), "MeanAbsoluteError")
  expect_s3_class(as_l("mean_absolute_error"), "MeanAbsoluteError")
  expect_s3_class(as_l("binary_crossentropy"), "BinaryCrossentropy")
  expect_s3_class(as_l("categorical_crossentropy"), "CategoricalCrossentropy")
  expect_s3_class(as_l("sparse_categorical_crossentropy"), "SparseCategoricalCrossentropy")
  expect_s3_class(as_l("SparseCategoricalCrossentropy"), "SparseCategoricalCrossentropy")
  l <- loss_mean_absolute_error()
  expect_identical(as_l(l), l)
  expect_error(as_l("hinge"),
               paste0("`loss` must be a loss object or one of \"mse\", \"mean_squared_error\", \"mae\", ",
                      "\"mean_absolute_error\", \"binary_crossentropy\", \"categorical_crossentropy\", ",
                      "\"sparse_categorical_crossentropy\", \"huber\", \"huber_loss\", \"kl_divergence\", ",
                      "\"kld\", \"categorical_focal_crossentropy\"; got \"hinge\""), fixed = TRUE)
  expect_error(as_l(NULL), "`loss`", class = err)
  expect_error(as_l(function(y_true, y_pred) 0), "`loss`", class = err)
  expect_error(vg("nope", 1, 1), "`loss`", class = err)
  # By name the loss works with the defaults.
  expect_equal(vg("sparse_categorical_crossentropy", labels, probs)$value,
               loss_sparse_categorical_crossentropy()(labels, probs))
})

test_that("y_true whose shape does not fit the loss is an error saying so", {
  expect_error(loss_mean_squared_error()(matrix(0, 3, 2), matrix(0, 3, 4)),
               "`y_true` must be an array of the shape of `y_pred` \\(3, 4\\) for MeanSquaredError; got shape \\(3, 2\\)",
               class = err)
  expect_error(loss_binary_crossentropy()(matrix(0, 2, 2), matrix(0.5, 3, 2)), "`y_true`.*\\(3, 2\\)", class = err)
  expect_error(loss_categorical_crossentropy()(labels, probs), "`y_true`.*shape \\(3\\)", class = err)
  expect_error(loss_sparse_categorical_crossentropy()(onehot, probs),
               "`y_true` must be class labels of shape \\(3\\).*got shape \\(3, 4\\)", class = err)
  expect_error(loss_sparse_categorical_crossentropy()(c(1, 2), probs), "`y_true`.*shape \\(3\\)", class = err)
  expect_error(loss_sparse_categorical_crossentropy()(c(1, 4, 0), probs), "`y_true`.*0 to 3.*label 4", class = err)
  expect_error(loss_sparse_categorical_crossentropy()(c(1, 0.5, 0), probs), "`y_true`.*label 0.5", class = err)
  expect_error(loss_sparse_categorical_crossentropy(ignore_class = 9)(c(1, -1, 0), probs),
               "`y_true`.*or 9.*label -1", class = err)
  expect_error(loss_mean_squared_error()(matrix(0, 3, 2), matrix(0, 3, 2), sample_weight = c(1, 2)),
               "`sample_weight`.*got shape \\(2\\)", class = err)
})

test_that("bad arguments are errors naming them", {
  for (f in list(loss_binary_crossentropy, loss_categorical_crossentropy, loss_sparse_categorical_crossentropy)) {
    expect_error(f(from_logits = NA), "`from_logits`", class = err)
    expect_error(f(axis = 0), "`axis`", class = err)
    expect_error(f(axis = 1.5), "`axis`", class = err)
  }
  for (f in list(loss_binary_crossentropy, loss_categorical_crossentropy)) {
    expect_error(f(label_smoothing = 1.5), "`label_smoothing`", class = err)
    expect_error(f(label_smoothing = -0.1), "`label_smoothing`", class = err)
  }
  expect_error(loss_sparse_categorical_crossentropy(ignore_class = 0.5), "`ignore_class`", class = err)
  for (f in list(loss_mean_squared_error, loss_mean_absolute_error, loss_binary_crossentropy,
                 loss_categorical_crossentropy, loss_sparse_categorical_crossentropy)) {
    expect_error(f(reduction = "auto"), "`reduction`.*\"sum_over_batch_size\", \"sum\"", class = err)
    expect_error(f(name = NA), "`name`", class = err)
    expect_error(f(dtype = "int32"), "`dtype`", class = err)
    expect_error(f(foo = 1), "`foo`", class = err)
    expect_error(f(y_true = 1), "`y_pred`", class = err)
    expect_error(f(y_pred = 1), "`y_true`", class = err)
  }
  l <- loss_mean_squared_error()
  expect_error(l("a", 1), "`y_true`", class = err)
  expect_error(l(1, NA), "`y_pred`", class = err)
  expect_error(l(1, Inf), "`y_pred`", class = err)
  expect_error(l(1, 1, sample_weight = NA), "`sample_weight`", class = err)
  expect_error(l(1, 1, sample_weight = "1"), "`sample_weight`", class = err)
  expect_error(loss_categorical_crossentropy(axis = 3)(onehot, probs), "`axis`", class = err)
})
