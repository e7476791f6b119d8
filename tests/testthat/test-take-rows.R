# Batches of fit()/evaluate()/predict() are taken by cpp_take_rows() (a C++
# gather along the first axis): it must equal R's `[`.

test_that("slice_first_axis() equals x[idx, ..., drop = FALSE] for every type and order", {
  set.seed(3)
  slice <- multihead:::slice_first_axis
  x3 <- array(rnorm(40 * 7 * 5), c(40, 7, 5))
  x3[3, 2, 1] <- NA
  x3[5, 1, 4] <- NaN
  x4 <- array(sample(100L, 40 * 3 * 2 * 4, TRUE), c(40, 3, 2, 4))
  x4[7, 1, 1, 1] <- NA
  xl <- array(sample(c(TRUE, FALSE, NA), 40 * 6, TRUE), c(40, 6))
  for (idx in list(11:20, sample(40, 17), c(5L, 5L, 1L, 40L), 40L, c(3, 9))) {
    for (x in list(x3, x4, xl)) {
      want <- do.call(`[`, c(list(x, idx), rep(list(TRUE), length(dim(x)) - 1L), list(drop = FALSE)))
      got <- slice(x, idx)
      expect_identical(got, want)
      expect_identical(typeof(got), typeof(x))
    }
  }
  # 2 threads on a large array: the same values
  big <- array(rnorm(64 * 300 * 20), c(64, 300, 20))
  idx <- sample(64, 32)
  old <- get_num_threads()
  on.exit(set_num_threads(old))
  set_num_threads(1)
  one <- slice(big, idx)
  set_num_threads(2)
  expect_identical(slice(big, idx), one)
  expect_identical(one, big[idx, , , drop = FALSE])
})

test_that("arrays with dimnames and of strings keep R's `[`", {
  slice <- multihead:::slice_first_axis
  x <- array(1:24, c(4, 3, 2), dimnames = list(letters[1:4], NULL, c("u", "v")))
  expect_identical(slice(x, c(2L, 4L)), x[c(2L, 4L), , , drop = FALSE])
  s <- array(letters[1:12], c(4, 3))
  expect_identical(slice(s, 3:1), s[3:1, , drop = FALSE])
})

test_that("cpp_take_rows() refuses rows outside the array and non-arrays", {
  x <- array(1, c(3, 2))
  expect_error(multihead:::cpp_take_rows(x, 4L, 1L), "out of range")
  expect_error(multihead:::cpp_take_rows(x, 0L, 1L), "out of range")
  expect_error(multihead:::cpp_take_rows(x, NA_integer_, 1L), "out of range")
  expect_error(multihead:::cpp_take_rows(1:3, 1L, 1L), "expected a double")
})

test_that("fit() without and with shuffling trains on the batches `[` would give", {
  set.seed(9)
  make <- function() {
    set.seed(1)
    inp <- keras_input(shape = c(4, 3))
    m <- keras_model(inp, inp |> layer_dense(2) |> layer_global_average_pooling_1d())
    compile(m, optimizer = optimizer_sgd(0.1), loss = "mse")
    m
  }
  x <- array(rnorm(24 * 4 * 3), c(24, 4, 3))
  y <- array(rnorm(24 * 2), c(24, 2))
  m1 <- make()
  fit(m1, x, y, batch_size = 5, epochs = 1, shuffle = FALSE, verbose = 0)
  # the same steps by hand: one fit() per batch taken with `[` (plain SGD keeps no state)
  m2 <- make()
  for (idx in split(1:24, ceiling(seq_len(24) / 5))) {
    fit(m2, x[idx, , , drop = FALSE], y[idx, , drop = FALSE], batch_size = length(idx), epochs = 1,
        shuffle = FALSE, verbose = 0)
  }
  expect_equal(get_weights(m1), get_weights(m2), tolerance = 0)
})
