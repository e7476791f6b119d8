# Looking at attention: as_attention_scores() marks the scores an attention
# layer returns (return_attention_scores = TRUE) with the class
# "multihead_attention_scores"; plot() draws one heatmap per head in base
# graphics, autoplot() the same with ggplot2, as.data.frame() gives the long
# form both use.

#' Attention scores to plot
#'
#' Marks the scores an attention layer returns with `return_attention_scores
#' = TRUE` (an array (batch, heads, query, key), or (batch, query, key) for
#' [layer_attention()] and [layer_additive_attention()]) so that [plot()],
#' `autoplot()` and [as.data.frame()] draw or tabulate them (see
#' [plot.multihead_attention_scores()]).
#'
#' @param x An array of attention weights, (batch, heads, query, key) or
#'   (batch, query, key).
#' @returns `x` with class `"multihead_attention_scores"`.
#' @export
#' @examples
#' mha <- layer_multi_head_attention(num_heads = 2, key_dim = 4)
#' x <- array(rnorm(1 * 5 * 8), c(1, 5, 8))
#' scores <- as_attention_scores(mha(x, x, return_attention_scores = TRUE)$scores)
#' head(as.data.frame(scores))
as_attention_scores <- function(x) {
  d <- dim(x)
  if (!is.numeric(x) || !(length(d) %in% 3:4)) {
    abort_arg("x", "an array of attention scores, (batch, heads, query, key) or (batch, query, key)",
              describe_value(x))
  }
  class(x) <- c("multihead_attention_scores", class(unclass(x)))
  x
}

#' @noRd
# The scores as a plain (batch, heads, query, key) array.
#' @noRd
scores_4d <- function(x) {
  x <- unclass(x)
  d <- dim(x)
  if (length(d) == 3L) dim(x) <- c(d[1L], 1L, d[2L], d[3L])
  x
}

#' @noRd
check_attention_scores <- function(x, batch, heads, query_labels, key_labels) {
  d <- dim(x)
  if (length(d) != 4L) {
    abort_arg("x", "attention scores of shape (batch, heads, query, key)", describe_value(x))
  }
  batch <- check_whole(batch, "batch")
  if (batch > d[1L]) abort_arg("batch", sprintf("a batch index between 1 and %d", d[1L]), describe_value(batch))
  if (is.null(heads)) heads <- seq_len(d[2L])
  if (!is.numeric(heads) || !length(heads) || anyNA(heads) || any(heads != round(heads)) || any(heads < 1) ||
      any(heads > d[2L]) || anyDuplicated(heads)) {
    abort_arg("heads", sprintf("NULL or distinct head indices between 1 and %d", d[2L]), describe_value(heads))
  }
  labels <- function(v, n, arg) {
    if (is.null(v)) return(as.character(seq_len(n)))
    if (!(is.character(v) || is.numeric(v) || is.factor(v)) || length(v) != n) {
      abort_arg(arg, sprintf("NULL or %d labels (one per %s position)", n, sub("_labels$", "", arg)),
                describe_value(v))
    }
    as.character(v)
  }
  list(batch = batch, heads = as.integer(heads), query = labels(query_labels, d[3L], "query_labels"),
       key = labels(key_labels, d[4L], "key_labels"))
}

#' Plot attention scores
#'
#' The scores an attention layer returns with `return_attention_scores =
#' TRUE` (shape (batch, heads, query, key): for each query position, the
#' weights over the key positions) are drawn as one heatmap per head, query
#' positions down, key positions across, darker for larger weights.
#' `plot()` uses base graphics; `autoplot()` (when ggplot2 is installed) returns a
#' ggplot object; `as.data.frame()` gives the long form (one row per weight).
#'
#' @param x Attention scores returned by a layer call with
#'   `return_attention_scores = TRUE`, marked by [as_attention_scores()].
#' @param batch The batch element to show (1-based).
#' @param heads `NULL` (every head) or the heads to show (1-based).
#' @param query_labels,key_labels `NULL` (positions), or labels of the query
#'   and key positions (e.g. the tokens).
#' @param col Colours from small to large weights.
#' @param object As `x` (ggplot2's name for it).
#' @param row.names,optional Unused, as in [as.data.frame()].
#' @param ... Passed to [graphics::image()] by `plot()`; unused otherwise.
#' @returns `plot()`: `x`, invisibly. `autoplot()`: a ggplot object.
#'   `as.data.frame()`: a data frame with columns `batch`, `head`, `query`,
#'   `key` (positions) and `score`.
#' @export
#' @examples
#' mha <- layer_multi_head_attention(num_heads = 2, key_dim = 4)
#' x <- array(rnorm(1 * 5 * 8), c(1, 5, 8))
#' res <- mha(x, x, return_attention_scores = TRUE, use_causal_mask = TRUE)
#' plot(as_attention_scores(res$scores), query_labels = c("the", "cat", "sat", "on", "mats"),
#'      key_labels = c("the", "cat", "sat", "on", "mats"))
plot.multihead_attention_scores <- function(x, batch = 1, heads = NULL, query_labels = NULL, key_labels = NULL,
                                            col = grDevices::hcl.colors(64, "YlOrRd", rev = TRUE), ...) {
  x4 <- scores_4d(x)
  chk <- check_attention_scores(x4, batch, heads, query_labels, key_labels)
  n <- length(chk$heads)
  cols <- ceiling(sqrt(n))
  rows <- ceiling(n / cols)
  old <- graphics::par(mfrow = c(rows, cols), mar = c(4, 4, 2, 1))
  on.exit(graphics::par(old), add = TRUE)
  nq <- length(chk$query)
  nk <- length(chk$key)
  for (h in chk$heads) {
    m <- x4[chk$batch, h, , , drop = TRUE]
    m <- matrix(m, nq, nk)
    # image() puts the first row at the bottom: flip so query 1 is on top
    graphics::image(seq_len(nk), seq_len(nq), t(m[nq:1, , drop = FALSE]), col = col, zlim = c(0, 1),
                    axes = FALSE, xlab = "key", ylab = "query", main = sprintf("head %d", h), ...)
    graphics::axis(1, at = seq_len(nk), labels = chk$key, las = 2, cex.axis = 0.8)
    graphics::axis(2, at = seq_len(nq), labels = rev(chk$query), las = 1, cex.axis = 0.8)
    graphics::box()
  }
  invisible(x)
}

#' @rdname plot.multihead_attention_scores
#' @export
as.data.frame.multihead_attention_scores <- function(x, row.names = NULL, optional = FALSE, ...) {
  x <- scores_4d(x)
  d <- dim(x)
  grid <- expand.grid(batch = seq_len(d[1L]), head = seq_len(d[2L]), query = seq_len(d[3L]), key = seq_len(d[4L]))
  grid$score <- as.vector(unclass(x))
  grid
}

#' @rdname plot.multihead_attention_scores
#' @exportS3Method ggplot2::autoplot
autoplot.multihead_attention_scores <- function(object, batch = 1, heads = NULL, query_labels = NULL,
                                                key_labels = NULL, ...) {
  check_suggested_package("ggplot2", "draw attention scores with autoplot()")
  chk <- check_attention_scores(scores_4d(object), batch, heads, query_labels, key_labels)
  df <- as.data.frame.multihead_attention_scores(object)
  df <- df[df$batch == chk$batch & df$head %in% chk$heads, ]
  # positions as factors (labels may repeat, as tokens do); query 1 on top
  df$query <- factor(df$query, levels = rev(seq_along(chk$query)))
  df$key <- factor(df$key, levels = seq_along(chk$key))
  df$head <- factor(sprintf("head %d", df$head), levels = sprintf("head %d", chk$heads))
  .data <- ggplot2::.data
  ggplot2::ggplot(df, ggplot2::aes(x = .data$key, y = .data$query, fill = .data$score)) +
    ggplot2::geom_tile() +
    ggplot2::facet_wrap(ggplot2::vars(.data$head)) +
    ggplot2::scale_x_discrete(labels = chk$key) +
    ggplot2::scale_y_discrete(labels = rev(chk$query)) +
    ggplot2::scale_fill_distiller(palette = "YlOrRd", direction = 1, limits = c(0, 1)) +
    ggplot2::labs(x = "key", y = "query", fill = "weight") +
    ggplot2::theme_minimal()
}
