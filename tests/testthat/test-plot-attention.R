# plot(), autoplot() and as.data.frame() of attention scores.

scores_fixture <- function() {
  set.seed(9)
  s <- array(runif(2 * 3 * 4 * 5), c(2, 3, 4, 5))
  s <- s / array(apply(s, 1:3, sum), dim(s))  # rows sum to 1 over the keys
  as_attention_scores(s)
}

test_that("as_attention_scores() marks score arrays and refuses others", {
  expect_s3_class(as_attention_scores(array(0.5, c(1, 2, 2))), "multihead_attention_scores")
  expect_error(as_attention_scores(matrix(1, 2, 2)), "`x`", class = "multihead_error_argument")
})

test_that("as.data.frame() gives one row per weight in the long form", {
  s <- scores_fixture()
  df <- as.data.frame(s)
  expect_identical(names(df), c("batch", "head", "query", "key", "score"))
  expect_identical(nrow(df), length(s))
  i <- which(df$batch == 2 & df$head == 3 & df$query == 4 & df$key == 1)
  expect_identical(df$score[i], unclass(s)[2, 3, 4, 1])
})

test_that("plot() draws one heatmap per head and checks its arguments", {
  s <- scores_fixture()
  f <- tempfile(fileext = ".pdf")
  grDevices::pdf(f)
  on.exit(grDevices::dev.off(), add = TRUE)
  expect_identical(plot(s, batch = 2, heads = c(1, 3), query_labels = c("a", "b", "a", "c"),
                        key_labels = 1:5), s)
  expect_identical(graphics::par("mfrow"), c(1L, 1L))  # restored
  expect_error(plot(s, batch = 3), "`batch`", class = "multihead_error_argument")
  expect_error(plot(s, heads = 4), "`heads`", class = "multihead_error_argument")
  expect_error(plot(s, query_labels = c("a", "b")), "`query_labels`", class = "multihead_error_argument")
  expect_error(plot(s, key_labels = 1:4), "`key_labels`", class = "multihead_error_argument")
})

test_that("autoplot() builds a faceted ggplot of the chosen heads", {
  skip_if_not_installed("ggplot2")
  s <- scores_fixture()
  p <- ggplot2::autoplot(s, batch = 1, heads = 2:3, query_labels = c("x", "y", "x", "z"))
  expect_s3_class(p, "ggplot")
  built <- ggplot2::ggplot_build(p)
  expect_identical(nrow(built$data[[1]]), 2L * 4L * 5L)
  expect_equal(sort(built$data[[1]]$fill == "")[1], FALSE)
  df <- p$data
  expect_equal(df$score[df$head == "head 2" & df$query == "1" & df$key == "5"], unclass(s)[1, 2, 1, 5])
})
