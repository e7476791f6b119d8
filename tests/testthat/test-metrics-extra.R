# AUC, Precision, Recall and the top-k accuracies: Keras's documented and
# tested values, and plain-R references written here from Keras's formulas
# (confusion counts by direct comparison with the thresholds, the Riemann
# sums, Davis & Goadrich's PR interpolation, in_top_k's ties), accumulation
# over batches, compile() names, model files, and argument errors.

m_update <- multihead:::metric_update
m_result <- multihead:::metric_result
m_reset <- multihead:::metric_reset
err <- "multihead_error_argument"

run_metric <- function(m, y_true, y_pred, sample_weight = NULL) {
  m_reset(m)
  m_update(m, y_true, y_pred, sample_weight)
  m_result(m)
}

# --- references ----------------------------------------------------------------

# Weighted counts at each threshold: positive prediction when p > threshold.
counts_ref <- function(label, p, w, thresholds) {
  out <- list(tp = numeric(0), fp = numeric(0), tn = numeric(0), fn = numeric(0))
  for (u in thresholds) {
    pos <- p > u
    out$tp <- c(out$tp, sum(w[label & pos]))
    out$fp <- c(out$fp, sum(w[!label & pos]))
    out$tn <- c(out$tn, sum(w[!label & !pos]))
    out$fn <- c(out$fn, sum(w[label & !pos]))
  }
  out
}

nn <- function(a, b) ifelse(b == 0, 0, a / b)

# The area from counts (vectors over the thresholds in increasing order).
auc_from_counts <- function(k, curve = "ROC", method = "interpolation") {
  n <- length(k$tp)
  area <- 0
  for (i in seq_len(n - 1L)) {
    j <- i + 1L
    if (curve == "PR" && method == "interpolation") {
      dtp <- k$tp[i] - k$tp[j]
      p_i <- k$tp[i] + k$fp[i]
      p_j <- k$tp[j] + k$fp[j]
      slope <- nn(dtp, max(p_i - p_j, 0))
      intercept <- k$tp[j] - slope * p_j
      ratio <- if (p_i > 0 && p_j > 0) nn(p_i, max(p_j, 0)) else 1
      area <- area + nn(slope * (dtp + intercept * log(ratio)), max(k$tp[j] + k$fn[j], 0))
      next
    }
    if (curve == "ROC") {
      x <- c(nn(k$fp[i], k$fp[i] + k$tn[i]), nn(k$fp[j], k$fp[j] + k$tn[j]))
      y <- c(nn(k$tp[i], k$tp[i] + k$fn[i]), nn(k$tp[j], k$tp[j] + k$fn[j]))
    } else if (curve == "PR") {
      x <- c(nn(k$tp[i], k$tp[i] + k$fn[i]), nn(k$tp[j], k$tp[j] + k$fn[j]))
      y <- c(nn(k$tp[i], k$tp[i] + k$fp[i]), nn(k$tp[j], k$tp[j] + k$fp[j]))
    } else {
      gain <- function(idx) {
        s <- nn(k$tp[idx] + k$fn[idx], k$tn[idx] + k$fp[idx])
        rg <- if (k$tp[idx] == 0) 0 else max(1 - s * nn(k$fn[idx], k$tp[idx]), 0)
        pg <- if (k$tp[idx] == 0) 1 else 1 - s * nn(k$fp[idx], k$tp[idx])
        c(rg, pg)
      }
      gi <- gain(i); gj <- gain(j)
      x <- c(gi[1], gj[1]); y <- c(gi[2], gj[2])
    }
    h <- switch(method, interpolation = mean(y), minoring = min(y), majoring = max(y))
    area <- area + (x[1] - x[2]) * h
  }
  area
}

default_grid <- function(n) c(-1e-7, seq_len(n - 2) / (n - 1), 1 + 1e-7)

# --- AUC ---------------------------------------------------------------------------

test_that("AUC: Keras's documented and tested values", {
  yt <- c(0, 0, 1, 1); yp <- c(0, 0.5, 0.3, 0.9); sw <- c(1, 2, 3, 4)
  expect_equal(run_metric(metric_auc(num_thresholds = 3), yt, yp), 0.75)
  expect_equal(run_metric(metric_auc(num_thresholds = 3), yt, yp, c(1, 0, 0, 1)), 1)
  expect_equal(run_metric(metric_auc(num_thresholds = 3), yt, yp, sw), 0.7855, tolerance = 1e-3)
  expect_equal(run_metric(metric_auc(num_thresholds = 3, summation_method = "majoring"), yt, yp, sw), 1)
  expect_equal(run_metric(metric_auc(num_thresholds = 3, summation_method = "minoring"), yt, yp, sw), 0.571,
               tolerance = 1e-3)
  expect_equal(run_metric(metric_auc(num_thresholds = 3, curve = "PR", summation_method = "majoring"), yt, yp,
                          sw), 1 * 0.429 + 1 * 0.571, tolerance = 1e-3)
  expect_equal(run_metric(metric_auc(num_thresholds = 3, curve = "PR", summation_method = "minoring"), yt, yp,
                          sw), 0.7 * 0.429, tolerance = 1e-3)
  expect_equal(run_metric(metric_auc(num_thresholds = 3, curve = "PR"), yt, yp, sw), 2.416 / 7 + 4 / 7,
               tolerance = 1e-3)
  expect_equal(run_metric(metric_auc(num_thresholds = 3, curve = "PR"), yt, yp, -sw), 0)
  expect_equal(run_metric(metric_auc(num_thresholds = 3, curve = "PRGAIN", summation_method = "majoring"),
                          yt, yp, sw), 1)
  expect_equal(run_metric(metric_auc(num_thresholds = 3, curve = "PRGAIN", summation_method = "minoring"),
                          yt, yp, sw), 0)
  expect_equal(run_metric(metric_auc(num_thresholds = 3, curve = "PRGAIN"), yt, yp, sw), 0.5)
  expect_equal(run_metric(metric_auc(num_thresholds = 3, curve = "prgain"),
                          c(0, 0, 0, 1, 0, 1, 0, 1, 1, 1), c(0.1, 0.2, 0.3, 0.3, 0.4, 0.4, 0.6, 0.6, 0.8, 0.9)),
               0.666666 * 0.333333 + 0.333333 * 0.833333, tolerance = 1e-3)
  expect_equal(run_metric(metric_auc(thresholds = 0.5), yt, yp), 0.75)
  expect_equal(run_metric(metric_auc(num_thresholds = 3, from_logits = TRUE), yt, qlogis(pmin(pmax(yp, 1e-12),
                                                                                              1 - 1e-12))), 0.75)
  expect_equal(run_metric(metric_auc(), yt, yt), 1)
  logits <- plogis(-array(c(-10, -12, 10, 12, -10, -12, 10, 12, 10, 12, -10, -12), c(2, 2, 3)))
  labels <- array(c(1, 0, 1, 0, 0, 1, 0, 1, 0, 1, 0, 1), c(2, 2, 3))
  expect_equal(run_metric(metric_auc(), labels, logits), 0.5)
  # multi-label (MultiAUCTest)
  ypm <- cbind(c(0, 0.5, 0.3, 0.9), c(0.1, 0.2, 0.3, 0.4))
  good <- cbind(c(0, 0, 1, 1), c(0, 0, 1, 1))
  expect_equal(run_metric(metric_auc(num_thresholds = 5, multi_label = TRUE), good, ypm), (0.875 + 1) / 2,
               tolerance = 1e-3)
  expect_equal(run_metric(metric_auc(num_thresholds = 5), good, ypm, sw), 1 - 0.3333 * (1 - 0.2857) / 2,
               tolerance = 1e-3)
  expect_equal(run_metric(metric_auc(num_thresholds = 5), good, ypm, matrix(0:7, 4, 2, byrow = TRUE)),
               1 - 0.3333 * (1 - 0.2727) / 2, tolerance = 1e-3)
  expect_equal(run_metric(metric_auc(num_thresholds = 5, multi_label = TRUE, label_weights = c(0.75, 0.25)),
                          good, ypm), 0.875 * 0.75 + 0.25, tolerance = 1e-3)
  expect_equal(run_metric(metric_auc(num_thresholds = 5, label_weights = c(0.75, 0.25)), good, ypm),
               1 - (1 - 0.375) * 0.375 / 2, tolerance = 1e-2)
  expect_equal(run_metric(metric_auc(num_thresholds = 5), good, ypm), 1 - 3 / 32, tolerance = 1e-3)
})

test_that("AUC equals the direct computation at its thresholds, every curve and summation", {
  set.seed(11)
  n <- 300
  yt <- rbinom(n, 1, 0.4)
  yp <- plogis(rnorm(n) + 1.5 * yt)
  w <- runif(n, 0, 2)
  for (nt in c(3L, 10L, 200L)) {
    grid <- default_grid(nt)
    k <- counts_ref(yt == 1, yp, w, grid)
    for (curve in c("ROC", "PR", "PRGAIN")) for (method in c("interpolation", "minoring", "majoring")) {
      m <- metric_auc(num_thresholds = nt, curve = curve, summation_method = method)
      expect_equal(run_metric(m, yt, yp, w), auc_from_counts(k, curve, method), tolerance = 1e-12)
    }
    expect_equal(m$total$true_positives, k$tp, tolerance = 1e-12)
    expect_equal(m$total$true_negatives, k$tn, tolerance = 1e-12)
  }
  # uneven thresholds (the direct comparison), given unsorted
  th <- c(0.9, 0.05, 0.5, 0.52, 0.3)
  k <- counts_ref(yt == 1, yp, w, c(-1e-7, sort(th), 1 + 1e-7))
  for (curve in c("ROC", "PR")) {
    m <- metric_auc(thresholds = th, curve = curve)
    expect_equal(run_metric(m, yt, yp, w), auc_from_counts(k, curve), tolerance = 1e-12)
    expect_identical(m$config$num_thresholds, 7L)
  }
  expect_equal(m$total$false_positives, k$fp, tolerance = 1e-12)
  expect_equal(m$total$false_negatives, k$fn, tolerance = 1e-12)
  # evenly spaced given thresholds use the grid
  m <- metric_auc(thresholds = c(0.25, 0.5, 0.75))
  expect_equal(run_metric(m, yt, yp, w), auc_from_counts(counts_ref(yt == 1, yp, w, default_grid(5))),
               tolerance = 1e-12)
})

test_that("AUC accumulates over batches; multi-label, label weights and logits", {
  set.seed(12)
  n <- 120; L <- 3
  yt <- matrix(rbinom(n * L, 1, 0.5), n, L)
  yp <- matrix(plogis(rnorm(n * L) + yt), n, L)
  lw <- c(0.2, 1, 3)
  grid <- default_grid(20)
  m <- metric_auc(num_thresholds = 20, multi_label = TRUE, label_weights = lw)
  for (rows in split(seq_len(n), rep(1:4, length.out = n))) m_update(m, yt[rows, ], yp[rows, ])
  per_label <- vapply(seq_len(L), function(j) auc_from_counts(counts_ref(yt[, j] == 1, yp[, j], rep(1, n), grid)),
                      numeric(1))
  expect_equal(m_result(m), sum(per_label * lw) / sum(lw), tolerance = 1e-12)
  expect_identical(dim(m$total$true_positives), c(20L, 3L))
  expect_identical(m$count, 4)
  # built on the first batch when num_labels is not given; reset keeps the size
  m2 <- metric_auc(num_thresholds = 20, multi_label = TRUE, curve = "PR")
  expect_length(m2$total, 0)
  m_update(m2, yt, yp)
  expect_equal(m_result(m2), mean(vapply(seq_len(L), function(j) {
    auc_from_counts(counts_ref(yt[, j] == 1, yp[, j], rep(1, n), grid), "PR")
  }, numeric(1))), tolerance = 1e-12)
  m_reset(m2)
  expect_identical(m2$total$false_negatives, matrix(0, 20, 3))
  # flat: every entry weighted by its label's weight and the sample weight
  sw <- runif(n)
  flat <- metric_auc(num_thresholds = 20, label_weights = lw)
  expect_equal(run_metric(flat, yt, yp, sw),
               auc_from_counts(counts_ref(as.vector(yt) == 1, as.vector(yp), as.vector(outer(sw, lw)), grid)),
               tolerance = 1e-12)
  # logits: a sigmoid first
  lg <- matrix(rnorm(n * L) + yt, n, L)
  expect_equal(run_metric(metric_auc(num_thresholds = 20, from_logits = TRUE), yt, lg),
               auc_from_counts(counts_ref(as.vector(yt) == 1, plogis(as.vector(lg)), rep(1, n * L), grid)),
               tolerance = 1e-12)
  # predictions outside [0, 1] are clipped on the even grid
  expect_equal(run_metric(metric_auc(num_thresholds = 4), c(1, 0, 1), c(1.5, -0.2, 0.5)),
               auc_from_counts(counts_ref(c(TRUE, FALSE, TRUE), c(1, 0, 0.5), rep(1, 3), default_grid(4))))
})

# --- Precision and Recall -----------------------------------------------------------

# top_k: each row keeps its k largest predictions (ties to the first).
top_k_ref <- function(p, k) {
  p <- as.matrix(p)
  if (ncol(p) == 1L) p <- t(p)
  out <- matrix(-1e10, nrow(p), ncol(p))
  for (i in seq_len(nrow(p))) {
    keep <- order(-p[i, ], seq_len(ncol(p)))[seq_len(k)]
    out[i, keep] <- p[i, keep]
  }
  out
}

pr_ref <- function(label, p, w, thresholds, which) {
  k <- counts_ref(label, p, w, thresholds)
  if (which == "precision") nn(k$tp, k$tp + k$fp) else nn(k$tp, k$tp + k$fn)
}

test_that("Precision and Recall: Keras's documented and tested values", {
  expect_equal(run_metric(metric_precision(), c(0, 1, 1, 1), c(1, 0, 1, 1)), 2 / 3)
  expect_equal(run_metric(metric_precision(), c(0, 1, 1, 1), c(1, 0, 1, 1), c(0, 0, 1, 0)), 1)
  expect_equal(run_metric(metric_precision(top_k = 2), c(0, 0, 1, 1), c(1, 1, 1, 1)), 0)
  expect_equal(run_metric(metric_precision(top_k = 4), c(0, 0, 1, 1), c(1, 1, 1, 1)), 0.5)
  expect_equal(run_metric(metric_precision(top_k = 3), c(0, 1, 1, 0, 0), c(0.2, 0.1, 0.5, 0, 0.2)), 1 / 3)
  p <- metric_precision(top_k = 3)
  m_update(p, rbind(c(0, 1, 1, 0, 1)), rbind(c(0.2, 0.1, 0.4, 0, 0.2)), rbind(c(1, 4, 2, 3, 5)))
  m_update(p, c(1, 0, 1, 1, 1), c(0.2, 0.6, 0.4, 0.2, 0.2), 3)
  expect_equal(m_result(p), ((2 + 5) + (3 + 3)) / ((1 + 2 + 5) + (3 + 3 + 3)))
  y_pred <- rbind(c(0.1, 0.2, 0.7), c(0.5, 0.3, 0.2), c(0.2, 0.6, 0.2), c(0.7, 0.2, 0.1), c(0.1, 0.1, 0.8))
  y_true <- rbind(c(0, 0, 1), c(1, 0, 0), c(0, 1, 0), c(1, 0, 0), c(0, 0, 1))
  p <- metric_precision(class_id = 1)
  expect_equal(run_metric(p, y_true, y_pred), 1)
  expect_identical(c(p$total$true_positives, p$total$false_positives), c(1, 0))
  p <- metric_precision(thresholds = 0.7, top_k = 2)
  expect_equal(run_metric(p, c(0, 1, 1, 0, 1), c(0.2, 0.8, 0.6, 0, 0.2)), 1)
  expect_equal(run_metric(metric_recall(), c(0, 1, 1, 1), c(1, 0, 1, 1)), 2 / 3)
  expect_equal(run_metric(metric_recall(), c(0, 1, 1, 1), c(1, 0, 1, 1), c(0, 0, 1, 0)), 1)
  expect_equal(run_metric(metric_recall(top_k = 2), c(0, 0, 1, 1), c(1, 1, 1, 1)), 0)
})

test_that("Precision and Recall equal the references with thresholds, top_k and class_id", {
  set.seed(21)
  n <- 50; C <- 6
  yt <- matrix(rbinom(n * C, 1, 0.3), n, C)
  yp <- matrix(round(runif(n * C), 1), n, C)   # many ties
  sw <- runif(n)
  wv <- rep(sw, C)
  for (which in c("precision", "recall")) {
    ctor <- if (which == "precision") metric_precision else metric_recall
    th <- c(0.7, 0.2, 0.45)
    expect_equal(run_metric(ctor(thresholds = th), yt, yp, sw),
                 pr_ref(as.vector(yt) == 1, as.vector(yp), wv, th, which), tolerance = 1e-12)
    # evenly spaced thresholds (Keras's bucketed form) agree with the comparison
    even <- c(0, 0.25, 0.5, 0.75, 1)
    inside <- yp * 0.98 + 0.01
    expect_equal(run_metric(ctor(thresholds = even), yt, inside, sw),
                 pr_ref(as.vector(yt) == 1, as.vector(inside), wv, even, which), tolerance = 1e-12)
    # there, as in Keras, predictions are clipped to [0, 1] first: 1.2 is not above 1
    expect_equal(run_metric(ctor(thresholds = even), c(1, 1), c(1.2, 0.6)),
                 pr_ref(c(TRUE, TRUE), c(1, 0.6), c(1, 1), even, which))
    for (k in c(1L, 2L, 4L)) {
      tk <- top_k_ref(yp, k)
      expect_equal(run_metric(ctor(top_k = k), yt, yp, sw),
                   pr_ref(as.vector(yt) == 1, as.vector(tk), wv, -1e10, which), tolerance = 1e-12)
      expect_equal(run_metric(ctor(top_k = k, thresholds = c(0.5, 0.3)), yt, yp),
                   pr_ref(as.vector(yt) == 1, as.vector(tk), rep(1, n * C), c(0.5, 0.3), which),
                   tolerance = 1e-12)
      for (cid in c(0L, 3L)) {
        expect_equal(run_metric(ctor(top_k = k, class_id = cid), yt, yp, sw),
                     pr_ref(yt[, cid + 1] == 1, tk[, cid + 1], sw, -1e10, which), tolerance = 1e-12)
      }
    }
    expect_equal(run_metric(ctor(class_id = 5L), yt, yp), pr_ref(yt[, 6] == 1, yp[, 6], rep(1, n), 0.5, which))
    # batches accumulate
    m <- ctor(thresholds = c(0.3, 0.6))
    for (rows in split(seq_len(n), rep(1:3, length.out = n))) m_update(m, yt[rows, ], yp[rows, ], sw[rows])
    expect_equal(m_result(m), pr_ref(as.vector(yt) == 1, as.vector(yp), wv, c(0.3, 0.6), which),
                 tolerance = 1e-12)
  }
})

# --- top-k accuracies ---------------------------------------------------------------

# in_top_k: the target's score has fewer than k strictly larger scores.
in_top_k_ref <- function(scores, target, k) sum(scores > scores[target]) < k

test_that("top-k accuracies: Keras's values and the ties of in_top_k", {
  yt <- rbind(c(0, 0, 1), c(0, 1, 0))
  yp <- rbind(c(0.1, 0.9, 0.8), c(0.05, 0.95, 0))
  expect_equal(as.vector(metric_top_k_categorical_accuracy(yt, yp, k = 1)), c(0, 1))
  m <- metric_top_k_categorical_accuracy(k = 1)
  expect_equal(run_metric(m, yt, yp), 0.5)
  expect_equal(run_metric(m, yt, yp, c(0.7, 0.3)), 0.3)
  expect_equal(run_metric(metric_sparse_top_k_categorical_accuracy(k = 1), c(2, 1), yp), 0.5)
  expect_equal(run_metric(metric_sparse_top_k_categorical_accuracy(k = 1), c(2, 1), yp, c(0.7, 0.3)), 0.3)
  expect_equal(run_metric(metric_sparse_top_k_categorical_accuracy(k = 1, from_sorted_ids = TRUE), c(2, 1),
                          rbind(c(1, 0, 3), c(1, 2, 3))), 0.5)
  # ties count for the target
  tie <- rbind(c(0.3, 0.3, 0.3, 0.1), c(0.5, 0.2, 0.2, 0.1))
  expect_equal(as.vector(metric_sparse_top_k_categorical_accuracy(c(2, 2), tie, k = 1)), c(1, 0))
  expect_equal(as.vector(metric_sparse_top_k_categorical_accuracy(c(2, 2), tie, k = 2)), c(1, 1))
  set.seed(31)
  n <- 40; C <- 7
  scores <- matrix(sample(c(0.1, 0.2, 0.3, 0.5), n * C, replace = TRUE), n, C)
  labels <- sample(0:(C - 1), n, replace = TRUE)
  onehot <- diag(C)[labels + 1, ]
  for (k in c(1L, 2L, 3L, 7L)) {
    ref <- vapply(seq_len(n), function(i) as.double(in_top_k_ref(scores[i, ], labels[i] + 1, k)), numeric(1))
    expect_equal(as.vector(metric_sparse_top_k_categorical_accuracy(labels, scores, k = k)), ref)
    expect_equal(as.vector(metric_sparse_top_k_categorical_accuracy(matrix(labels), scores, k = k)), ref)
    expect_equal(as.vector(metric_top_k_categorical_accuracy(onehot, scores, k = k)), ref)
  }
  # sequences: (batch, time, classes), one value per (batch, time)
  s3 <- array(runif(2 * 3 * 4), c(2, 3, 4))
  l3 <- matrix(c(0, 1, 2, 3, 1, 0), 2, 3)
  v <- metric_sparse_top_k_categorical_accuracy(l3, s3, k = 2)
  expect_identical(dim(v), c(2L, 3L))
  for (b in 1:2) for (t in 1:3) expect_equal(v[b, t], as.double(in_top_k_ref(s3[b, t, ], l3[b, t] + 1, 2)))
})

# --- compile, fit, files ------------------------------------------------------------

test_that("compile() takes the names, fit() logs them, directions are up", {
  set.seed(41)
  x <- matrix(rnorm(60 * 4), 60, 4)
  yb <- matrix(as.double(x[, 1] + 0.5 * x[, 2] > 0), ncol = 1)
  model <- keras_model_sequential(input_shape = 4) |> layer_dense(1, activation = "sigmoid")
  model |> compile(optimizer = optimizer_adam(0.05), loss = "binary_crossentropy",
                   metrics = c("auc", "precision", "recall", "AUC"))
  h <- fit(model, x, yb, epochs = 4, batch_size = 16, verbose = 0)
  expect_setequal(names(h$metrics), c("loss", "auc", "precision", "recall", "AUC"))
  expect_gt(h$metrics$auc[[4]], 0.8)
  expect_identical(h$metrics$auc, h$metrics$AUC)
  # the logged AUC is the metric over the epoch's predictions (one epoch, no shuffling, fixed weights)
  ev <- evaluate(model, x, yb, batch_size = 7, verbose = 0)
  p <- model(x)
  expect_equal(ev[["auc"]], auc_from_counts(counts_ref(yb == 1, as.vector(p), rep(1, 60), default_grid(200))),
               tolerance = 1e-6)
  expect_equal(ev[["precision"]], pr_ref(yb == 1, as.vector(p), rep(1, 60), 0.5, "precision"),
               tolerance = 1e-6)
  # multi-class with top-k accuracies
  yc <- diag(5)[sample(5, 60, replace = TRUE), ]
  model <- keras_model_sequential(input_shape = 4) |> layer_dense(5, activation = "softmax")
  model |> compile(optimizer = "adam", loss = "categorical_crossentropy",
                   metrics = list("top_k_categorical_accuracy", metric_top_k_categorical_accuracy(k = 2, name = "top2"),
                                  metric_precision(class_id = 1, name = "p1")))
  h <- fit(model, x, yc, epochs = 1, batch_size = 20, verbose = 0)
  expect_setequal(names(h$metrics), c("loss", "top_k_categorical_accuracy", "top2", "p1"))
  ev <- evaluate(model, x, yc, verbose = 0)
  p <- model(x)
  ref2 <- mean(vapply(1:60, function(i) in_top_k_ref(p[i, ], which.max(yc[i, ]), 2), logical(1)))
  expect_equal(ev[["top2"]], ref2, tolerance = 1e-12)
  ys <- max.col(yc) - 1
  model |> compile(optimizer = "adam", loss = "sparse_categorical_crossentropy",
                   metrics = "sparse_top_k_categorical_accuracy")
  ev <- evaluate(model, x, ys, verbose = 0)
  expect_equal(ev[["sparse_top_k_categorical_accuracy"]], 1)   # k = 5 of 5 classes
  for (m in list(metric_auc(), metric_precision(), metric_recall(), metric_top_k_categorical_accuracy(),
                 metric_sparse_top_k_categorical_accuracy())) {
    expect_identical(m$direction, "up")
  }
})

test_that("the confusion counts survive save_model() and load_model(); training resumes", {
  set.seed(42)
  x <- matrix(rnorm(40 * 3), 40, 3)
  y <- matrix(as.double(x[, 1] > 0), ncol = 1)
  auc <- metric_auc(num_thresholds = 11, curve = "PR", name = "pr_auc")
  prec <- metric_precision(thresholds = 0.4, name = "p")
  m_update(auc, y, plogis(x[, 1]))   # a metric object given with accumulated counts
  model <- keras_model_sequential(input_shape = 3) |> layer_dense(1, activation = "sigmoid", dtype = "float64")
  model |> compile(optimizer = optimizer_nadam(0.02), loss = "binary_crossentropy", metrics = list(auc, prec))
  fit(model, x, y, epochs = 2, batch_size = 10, verbose = 0)
  path <- tempfile(fileext = ".rds")
  save_model(model, path)
  rec <- readRDS(path)
  auc_rec <- rec$compile$metric_specs[[1]][[1]]
  expect_identical(auc_rec$class_name, "AUC")
  expect_identical(auc_rec$total, auc$total)
  expect_identical(auc_rec$config, auc$config)
  loaded <- load_model(path)
  h1 <- fit(model, x, y, epochs = 2, batch_size = 10, verbose = 0, shuffle = FALSE)
  h2 <- fit(loaded, x, y, epochs = 2, batch_size = 10, verbose = 0, shuffle = FALSE)
  expect_identical(h2$metrics, h1$metrics)
  expect_identical(get_weights(loaded), get_weights(model))
  # a restored metric record computes as the original
  restored <- multihead:::layer_self(load_model(path))$compiled$metric_specs[[1]][[1]]
  expect_identical(m_result(restored), m_result(auc))
  m_update(restored, y, plogis(x[, 2])); m_update(auc, y, plogis(x[, 2]))
  expect_identical(restored$total, auc$total)
  # saveRDS of a metric object
  f <- tempfile(fileext = ".rds")
  saveRDS(auc, f)
  expect_identical(m_result(readRDS(f)), m_result(auc))
})

test_that("standalone use as in keras3: $update_state(), $result(), $reset_state()", {
  m <- metric_auc(num_thresholds = 3)
  m$update_state(c(0, 0, 1, 1), c(0, 0.5, 0.3, 0.9))
  expect_equal(m$result(), 0.75)
  m$reset_state()
  expect_identical(m$result(), 0)
  m$update_state(c(0, 0, 1, 1), c(0, 0.5, 0.3, 0.9), sample_weight = c(1, 0, 0, 1))
  expect_equal(m$result(), 1)
  r <- metric_recall(thresholds = c(0.2, 0.6))
  r$update_state(c(1, 1, 0, 1), c(0.3, 0.7, 0.9, 0.1))
  expect_equal(r$result(), c(2 / 3, 1 / 3))
  expect_identical(multihead:::metric_n_values(r), 2L)
  expect_identical(multihead:::metric_n_values(metric_precision()), 1L)
  a <- metric_top_k_categorical_accuracy(k = 1)
  a$update_state(rbind(c(0, 0, 1), c(0, 1, 0)), rbind(c(0.1, 0.9, 0.8), c(0.05, 0.95, 0)), sample_weight = c(0.7, 0.3))
  expect_equal(a$result(), 0.3)
  expect_identical(a$k, NULL)            # fields only: the options are in $config
  expect_identical(a$config$k, 1L)
  expect_error(m$update_state(c(0, 1), c(0.1, NA)), "y_pred", class = err)
})

test_that("printing", {
  expect_output(print(metric_auc(num_thresholds = 3)), "<metric AUC name=\"auc\" num_thresholds=3 curve=\"ROC\"")
  expect_output(print(metric_recall(thresholds = c(0.2, 0.4))), "thresholds=c\\(0.2, 0.4\\)")
  expect_output(print(metric_top_k_categorical_accuracy(k = 3)), "k=3")
})

test_that("bad arguments and inputs are errors naming them", {
  expect_error(metric_auc(num_thresholds = 1), "num_thresholds", class = err)
  expect_error(metric_auc(num_thresholds = 2.5), "num_thresholds", class = err)
  expect_error(metric_auc(curve = "Invalid"), "curve", class = err)
  expect_error(metric_auc(summation_method = "Invalid"), "summation_method", class = err)
  expect_error(metric_auc(thresholds = c(0.2, 1.5)), "thresholds", class = err)
  expect_error(metric_auc(thresholds = c(0.2, NA)), "thresholds", class = err)
  expect_error(metric_auc(num_labels = 3), "num_labels", class = err)
  expect_error(metric_auc(multi_label = TRUE, num_labels = 2, label_weights = c(1, 2, 3)), "label_weights",
               class = err)
  expect_error(metric_auc(label_weights = -1), "label_weights", class = err)
  expect_error(metric_auc(from_logits = NA), "from_logits", class = err)
  expect_error(metric_auc(multi_label = "no"), "multi_label", class = err)
  expect_error(metric_auc(name = ""), "name", class = err)
  expect_error(metric_auc(dtype = "int8"), "dtype", class = err)
  expect_error(metric_auc(3), "\\.\\.\\.", class = err)
  expect_error(metric_precision(thresholds = -0.1), "thresholds", class = err)
  expect_error(metric_precision(top_k = 0), "top_k", class = err)
  expect_error(metric_recall(class_id = -1), "class_id", class = err)
  expect_error(metric_recall(bogus = 1), "bogus", class = err)
  expect_error(metric_top_k_categorical_accuracy(k = 0), "k", class = err)
  expect_error(metric_sparse_top_k_categorical_accuracy(from_sorted_ids = 1), "from_sorted_ids", class = err)
  expect_error(metric_top_k_categorical_accuracy(diag(3)), "y_pred", class = err)
  expect_error(metric_top_k_categorical_accuracy(diag(3), matrix(0.1, 3, 4)), "y_true", class = err)
  expect_error(metric_top_k_categorical_accuracy(c(1, 0, 1), c(0.1, 0.2, 0.3)), "y_pred", class = err)
  expect_error(metric_sparse_top_k_categorical_accuracy(c(0, 5), matrix(0.1, 2, 3)), "y_true", class = err)
  expect_error(metric_sparse_top_k_categorical_accuracy(c(0, 1.5), matrix(0.1, 2, 3)), "y_true", class = err)
  expect_error(m_update(metric_auc(), c(0, 1), c(0.1, NaN)), "y_pred", class = err)
  expect_error(m_update(metric_auc(), c(0, 1, 1), c(0.1, 0.2)), "y_true", class = err)
  expect_error(m_update(metric_auc(), c(0, 1), c(0.1, 0.2), sample_weight = c(1, 2, 3)), "sample_weight",
               class = err)
  expect_error(m_update(metric_auc(multi_label = TRUE), c(0, 1), c(0.1, 0.2)), "y_pred", class = err)
  expect_error(m_update(metric_auc(multi_label = TRUE, num_labels = 3), diag(2), diag(2)), "y_pred", class = err)
  expect_error(m_update(metric_auc(label_weights = c(1, 2, 3)), diag(2), diag(2)), "label_weights", class = err)
  expect_error(m_update(metric_precision(class_id = 2), c(0, 1), c(0.1, 0.2)), "y_pred", class = err)
  expect_error(m_update(metric_precision(class_id = 2), diag(2), diag(2)), "class_id", class = err)
  expect_error(m_update(metric_recall(top_k = 3), diag(2), diag(2)), "top_k", class = err)
  model <- keras_model_sequential(input_shape = 3) |> layer_dense(1)
  expect_error(compile(model, optimizer = "sgd", loss = "mse", metrics = "aucc"), "auc", class = err)
})

test_that("compile() refuses a metric with several values (logs hold one number per metric)", {
  model <- keras_model_sequential(input_shape = 3) |> layer_dense(1, activation = "sigmoid")
  expect_error(compile(model, loss = "binary_crossentropy", metrics = list(metric_precision(thresholds = c(0.3, 0.7)))),
               "one Precision or Recall object per threshold", class = "multihead_error_argument")
  expect_silent(compile(model, loss = "binary_crossentropy", metrics = list(metric_precision(thresholds = 0.3))))
})
