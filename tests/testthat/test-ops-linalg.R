# op_matmul, op_einsum, op_dot, op_tensordot, op_dot_product_attention and
# `%*%` on tensors: eager results against plain-R references written here,
# graph runs against eager, symbolic shapes, gradients by finite
# differences, thread-count independence, bad input.

base_mm <- base::`%*%`

# ---- plain-R references -----------------------------------------------------

# NumPy's matmul by a loop over the broadcast batch, base R's %*% per slice.
ref_matmul <- function(a, b) {
  da <- if (is.null(dim(a))) length(a) else dim(a)
  db <- if (is.null(dim(b))) length(b) else dim(b)
  va <- length(da) == 1L; vb <- length(db) == 1L
  if (va) da <- c(1L, da)
  if (vb) db <- c(db, 1L)
  ra <- length(da); rb <- length(db)
  n <- da[ra - 1L]; k <- da[ra]; m <- db[rb]
  ba <- da[seq_len(ra - 2L)]; bb <- db[seq_len(rb - 2L)]
  nb <- max(length(ba), length(bb))
  ba <- c(rep(1L, nb - length(ba)), ba); bb <- c(rep(1L, nb - length(bb)), bb)
  bo <- pmax(ba, bb)
  A <- array(as.double(a), c(ba, n, k)); B <- array(as.double(b), c(bb, k, m))
  out <- array(0, c(bo, n, m))
  slice <- function(x, at, r, c) do.call(`[`, c(list(x), as.list(at), list(seq_len(r), seq_len(c), drop = FALSE)))
  for (i in seq_len(prod(bo))) {
    at <- if (nb) arrayInd(i, bo)[1L, ] else integer()
    p <- base_mm(matrix(slice(A, pmin(at, ba), n, k), n, k), matrix(slice(B, pmin(at, bb), k, m), k, m))
    out <- do.call(`[<-`, c(list(out), as.list(at), list(seq_len(n), seq_len(m), value = p)))
  }
  shape <- c(bo, if (!va) n, if (!vb) m)
  if (length(shape) >= 2L) array(out, shape) else as.vector(out)
}

# einsum with an explicit output and letters only, by summing over every
# assignment of the indices.
ref_einsum <- function(subscripts, ...) {
  ops <- list(...)
  parts <- strsplit(gsub(" ", "", subscripts), "->", fixed = TRUE)[[1L]]
  ins <- lapply(strsplit(parts[1L], ",", fixed = TRUE)[[1L]], function(t) strsplit(t, "")[[1L]])
  out <- if (length(parts) > 1L) strsplit(parts[2L], "")[[1L]] else character()
  size <- list()
  for (i in seq_along(ops)) {
    d <- if (is.null(dim(ops[[i]]))) length(ops[[i]]) else dim(ops[[i]])
    for (j in seq_along(ins[[i]])) size[[ins[[i]][j]]] <- d[j]
  }
  labs <- unique(unlist(ins))
  grid <- as.matrix(expand.grid(lapply(labs, function(l) seq_len(size[[l]]))))
  colnames(grid) <- labs
  val <- rep(1, nrow(grid))
  for (i in seq_along(ops)) {
    x <- array(as.double(ops[[i]]), unlist(size[ins[[i]]]))
    val <- val * x[grid[, ins[[i]], drop = FALSE]]
  }
  if (!length(out)) return(sum(val))
  od <- unname(unlist(size[out]))
  st <- cumprod(c(1, od))[seq_along(od)]
  lin <- 1 + as.vector(base_mm(grid[, out, drop = FALSE] - 1, st))
  res <- array(0, od)
  agg <- rowsum(val, lin)
  res[as.integer(rownames(agg))] <- agg
  if (length(od) >= 2L) res else as.vector(res)
}

# x (any shape broadcastable to `full`) expanded to `full`.
expand_to <- function(x, full) {
  d <- if (is.null(dim(x))) length(x) else dim(x)
  p <- c(rep(1L, length(full) - length(d)), d)
  x <- array(x, p)
  idx <- lapply(seq_along(full), function(i) if (p[i] == 1L) rep(1L, full[i]) else seq_len(full[i]))
  do.call(`[`, c(list(x), idx, list(drop = FALSE)))
}

# Keras's dot_product_attention, one (batch, head) at a time.
ref_dpa <- function(q, k, v, bias = NULL, mask = NULL, scale = NULL, causal = FALSE) {
  B <- dim(q)[1]; Tq <- dim(q)[2]; N <- dim(q)[3]; H <- dim(q)[4]
  S <- dim(k)[2]; K <- dim(k)[3]; G <- N / K
  if (is.null(scale)) scale <- 1 / sqrt(H)
  full <- c(B, N, Tq, S)
  b4 <- if (!is.null(bias)) expand_to(bias, full)
  m4 <- if (!is.null(mask)) expand_to(mask, full)
  out <- array(0, dim(q))
  for (b in seq_len(B)) for (n in seq_len(N)) {
    kh <- (n - 1L) %/% G + 1L
    Q <- matrix(q[b, , n, ], Tq, H); Km <- matrix(k[b, , kh, ], S, H); V <- matrix(v[b, , kh, ], S, H)
    L <- base_mm(Q, t(Km)) * scale
    if (!is.null(bias)) L <- L + matrix(b4[b, n, , ], Tq, S)
    ok <- matrix(TRUE, Tq, S)
    if (!is.null(mask)) ok <- ok & matrix(m4[b, n, , ] != 0, Tq, S)
    if (causal) ok <- ok & (col(L) <= row(L))
    L[!ok] <- -0.7 * 3.38953e38
    P <- exp(L - apply(L, 1, max))
    P <- P / rowSums(P)
    out[b, , n, ] <- base_mm(P, V)
  }
  out
}

rarray <- function(...) {
  d <- c(...)
  array(rnorm(prod(d)), d)
}

# forward output and input gradients of fn through the graph runner
graph_grads <- function(fn, inputs, dtypes = NULL) {
  r <- graph_run_op(fn, inputs, dtypes)
  set.seed(99)
  w <- array(rnorm(length(r$output)), multihead:::value_shape(r$output))
  back <- multihead:::run_graph_backward(r$graph, r$run, list(w))
  list(output = r$output, grads = back$inputs)
}

# ---- op_matmul -------------------------------------------------------------------

test_that("op_matmul matches a plain-R reference for every NumPy case", {
  set.seed(1)
  cases <- list(
    list(rarray(2, 3), rarray(3, 4)),                # 2-D x 2-D
    list(rnorm(3), rarray(3, 4)),                    # 1-D x 2-D
    list(rarray(2, 3), rnorm(3)),                    # 2-D x 1-D
    list(rnorm(5), rnorm(5)),                        # 1-D x 1-D: a scalar
    list(rarray(2, 5, 3), rarray(2, 3, 4)),          # batched
    list(rarray(2, 5, 3), rarray(3, 4)),             # batched x matrix (one GEMM)
    list(rarray(3, 4), rarray(2, 4, 5)),             # matrix x batched
    list(rarray(1, 5, 3), rarray(4, 3, 2)),          # size-1 batch broadcast
    list(rarray(2, 1, 3, 4), rarray(5, 4, 2)),       # rank 4 x rank 3, both broadcast
    list(rnorm(3), rarray(2, 3, 4)),                 # 1-D x batched
    list(rarray(2, 2, 3, 4), rnorm(4)),              # batched x 1-D
    list(rarray(2, 0, 3), rarray(3, 4)),             # empty rows
    list(rarray(2, 3, 0), rarray(0, 4))              # empty contraction: zeros
  )
  for (i in seq_along(cases)) {
    a <- cases[[i]][[1L]]; b <- cases[[i]][[2L]]
    got <- op_matmul(a, b)
    ref <- ref_matmul(a, b)
    expect_equal(got, ref, tolerance = 1e-12, info = paste("case", i))
    expect_identical(multihead:::value_shape(got), multihead:::value_shape(ref), info = paste("case", i))
  }
  expect_equal(op_matmul(rarray(2, 3, 0), rarray(0, 4)), array(0, c(2, 3, 4)))
})

test_that("op_matmul keeps integer and logical types as NumPy does", {
  a <- matrix(1:6, 2); b <- matrix(1:12, 3)
  r <- op_matmul(a, b)
  expect_type(r, "integer")   # int32 x int32 is int32 (base R's %*% gives doubles)
  expect_identical(r, array(as.integer(base_mm(a, b)), c(2, 4)))
  expect_type(op_matmul(a, b + 0.5), "double")
  l <- op_matmul(matrix(c(TRUE, FALSE, FALSE, FALSE), 2), matrix(c(TRUE, TRUE, FALSE, FALSE), 2))
  expect_identical(l, matrix(c(TRUE, FALSE, FALSE, FALSE), 2))
  expect_error(op_matmul(matrix(.Machine$integer.max, 2, 2), matrix(2L, 2, 2)), "32-bit",
               class = "multihead_error")
})

test_that("op_matmul on symbolic tensors: shapes with NA, dtypes, graph run equals eager", {
  x <- keras_input(shape = c(3, 4))
  expect_identical(op_matmul(x, matrix(0, 4, 2))$shape, c(NA, 3L, 2L))
  expect_identical(op_matmul(x, rnorm(4))$shape, c(NA, 3L))
  expect_identical(op_matmul(rnorm(3), x)$shape, c(NA, 4L))
  y <- keras_input(shape = c(5, 3, 4))
  z <- keras_input(shape = c(4, 2))
  expect_identical(op_matmul(y, z)$shape, c(NA, 5L, 3L, 2L))
  expect_identical(op_matmul(x, matrix(0, 4, 2))$dtype, "float32")
  x64 <- keras_input(shape = c(3, 4), dtype = "float64")
  expect_identical(op_matmul(x64, matrix(0, 4, 2))$dtype, "float64")
  xi <- keras_input(shape = c(3, 4), dtype = "int32")
  expect_identical(op_matmul(xi, matrix(1L, 4, 2))$dtype, "int32")
  expect_identical(op_matmul(x, keras_input(shape = c(4, 2), dtype = "float64"))$dtype, "float64")
  node <- op_matmul(x, matrix(0, 4, 2))$node
  expect_identical(node$callee$class_name, "Matmul")

  set.seed(2)
  for (case in list(list(rarray(2, 5, 3), rarray(2, 3, 4)), list(rarray(3, 5, 3), rarray(3, 2)),
                    list(rnorm(3), rarray(2, 3, 4)), list(rarray(1, 2, 3), rarray(4, 3, 2)))) {
    r <- graph_run_op(function(a, b) op_matmul(a, b), case)
    expect_equal(r$output, op_matmul(case[[1L]], case[[2L]]), tolerance = 1e-14)
    expect_identical(r$symbolic$shape[-1L], multihead:::value_shape(r$output)[-1L])
  }
  # a float32 graph computes in float and rounds to float32
  a <- rarray(4, 6, 5); b <- rarray(5, 3)
  r32 <- graph_run_op(function(a, b) op_matmul(a, b), list(a, b), dtypes = c("float32", "float32"))
  expect_equal(r32$output, op_matmul(a, b), tolerance = 1e-6)
  expect_identical(r32$output, multihead:::round_float32(r32$output))
})

test_that("op_matmul gradients match finite differences, with broadcasting and 1-D operands", {
  set.seed(3)
  mm <- function(a, b) op_matmul(a, b)
  check_op_gradient(mm, list(rarray(3, 4), rarray(4, 2)))
  check_op_gradient(mm, list(rarray(2, 3, 4), rarray(2, 4, 2)))
  check_op_gradient(mm, list(rarray(2, 1, 3, 2), rarray(3, 2, 2)))   # both batches broadcast
  check_op_gradient(mm, list(rarray(2, 3, 4), rarray(4, 3)))         # batch x matrix
  check_op_gradient(mm, list(rarray(3, 4), rarray(2, 4, 2)))         # matrix x batch
  check_op_gradient(mm, list(rnorm(4), rarray(2, 4, 3)))             # 1-D first
  check_op_gradient(mm, list(rarray(2, 3, 4), rnorm(4)))             # 1-D second
  # a scalar result (widened: check_op_gradient() needs an output of rank >= 1)
  check_op_gradient(function(a, b) op_multiply(op_matmul(a, b), c(1, -2)), list(rnorm(5), rnorm(5)))
  # a constant operand gets no gradient, the symbolic one does
  w <- rarray(4, 2)
  check_op_gradient(function(a) op_matmul(a, w), list(rarray(3, 4)))
})

# ---- %*% ------------------------------------------------------------------------------

mm_operator <- if (getRversion() < "4.3.0") multihead::`%*%` else base::`%*%`

test_that("%*% on ordinary data is base R's, bit for bit", {
  set.seed(4)
  a <- matrix(rnorm(6), 2); b <- matrix(rnorm(12), 3)
  ai <- matrix(1:6, 2); bi <- matrix(1:12, 3)
  ac <- matrix(complex(real = 1:6, imaginary = 6:1), 2)
  dn <- matrix(1:4, 2, dimnames = list(c("r1", "r2"), c("c1", "c2")))
  pairs <- list(list(a, b), list(ai, bi), list(ai, b), list(ac, b), list(1:3, 1:3), list(1:3, t(1:3)),
                list(a, 1:3), list(1:2, a), list(dn, dn), list(dn, c(x = 1, y = 2)),
                list(matrix(TRUE, 2, 2), matrix(1, 2, 2)), list(2, 3))
  for (i in seq_along(pairs)) {
    p <- pairs[[i]]
    expect_identical(mm_operator(p[[1L]], p[[2L]]), base_mm(p[[1L]], p[[2L]]), info = paste("pair", i))
  }
  expect_identical(mm_operator(ac, t(ac)), base_mm(ac, t(ac)))
  df <- data.frame(a = 1:2)
  expect_identical(tryCatch(mm_operator(df, 1), error = conditionMessage),
                   tryCatch(base_mm(df, 1), error = conditionMessage))
  M <- Matrix::Matrix(c(1, 0, 2, 3), 2, sparse = TRUE)
  expect_identical(mm_operator(M, M), base_mm(M, M))
  # the package's own code (which uses %*%) is unaffected
  expect_identical(multihead:::`%*%`(a, b), base_mm(a, b))
  if (getRversion() < "4.3.0") {
    expect_true("%*%" %in% getNamespaceExports("multihead"))
  } else {
    expect_false("%*%" %in% getNamespaceExports("multihead"))
  }
})

test_that("%*% on symbolic tensors and variables records a matmul node", {
  x <- keras_input(shape = c(3, 4))
  w <- matrix(runif(8), 4, 2)
  y <- mm_operator(x, w)
  expect_s3_class(y, "multihead_tensor")
  expect_identical(y$node$callee$op, "matmul")
  expect_identical(y$shape, c(NA, 3L, 2L))
  expect_identical(mm_operator(w[, 1], keras_input(shape = c(4, 5)))$node$callee$op, "matmul")
  # a variable (a layer weight), eagerly and next to a symbolic tensor
  d <- layer_dense(units = 2)
  invisible(d(array(runif(12), c(3, 4))))
  v <- multihead:::new_variable(multihead:::layer_self(d), "kernel")
  m <- matrix(runif(12), 3, 4)
  expect_equal(mm_operator(m, v), base_mm(m, as.array(v)), tolerance = 1e-14)
  inp <- keras_input(shape = 4)
  z <- mm_operator(inp, v)
  expect_identical(z$node$callee$op, "matmul")
  model <- keras_model(inp, z)
  expect_equal(predict(model, m, verbose = 0), base_mm(m, as.array(v)), tolerance = 1e-6)
  # x %*% t(v) with op_transpose when the package has it; else the einsum transpose
  tr <- if (exists("op_transpose", asNamespace("multihead"))) get("op_transpose", asNamespace("multihead"))
        else function(t) op_einsum("ij->ji", t)
  u <- mm_operator(keras_input(shape = 2), tr(v))
  expect_identical(u$shape, c(NA, 4L))
  expect_identical(u$node$callee$op, "matmul")
})

# ---- op_einsum ----------------------------------------------------------------------

test_that("op_einsum matches a plain-R reference on attention and other common strings", {
  set.seed(5)
  q <- rarray(2, 4, 3, 5); k <- rarray(2, 6, 3, 5); v <- rarray(2, 6, 3, 5)
  p <- rarray(2, 3, 4, 6)
  cases <- list(
    list("bqhd,bkhd->bhqk", q, k),
    list("bhqk,bkhd->bqhd", p, v),
    list("btd,de->bte", rarray(2, 3, 4), rarray(4, 5)),
    list("btd,dnh->btnh", rarray(2, 3, 4), rarray(4, 2, 3)),
    list("btnh,nhd->btd", rarray(2, 3, 2, 3), rarray(2, 3, 4)),
    list("abc,cd->abd", rarray(2, 3, 4), rarray(4, 2)),
    list("bij,bjk->bik", rarray(3, 2, 4), rarray(3, 4, 5)),
    list("ij->ji", rarray(3, 4)),
    list("ii->i", rarray(4, 4)),
    list("ii->", rarray(4, 4)),
    list("i,i->", rnorm(5), rnorm(5)),
    list("i,j->ij", rnorm(3), rnorm(4)),
    list("ij->", rarray(3, 4)),
    list("ij->j", rarray(3, 4)),
    list("ijk->kij", rarray(2, 3, 4)),
    list("iij->ji", rarray(3, 3, 2)),
    list("ab,ab->ab", rarray(3, 4), rarray(3, 4)),
    list("ab,cd->abcd", rarray(2, 3), rarray(2, 2)),
    list("ij,jk,kl->il", rarray(2, 3), rarray(3, 4), rarray(4, 2)),
    list("bn,anm,bm->ba", rarray(2, 3), rarray(4, 3, 5), rarray(2, 5)),
    list("abc,c,b->a", rarray(2, 3, 4), rnorm(4), rnorm(3))
  )
  for (cs in cases) {
    got <- do.call(op_einsum, cs)
    ref <- do.call(ref_einsum, cs)
    expect_equal(got, ref, tolerance = 1e-12, info = cs[[1L]])
  }
  # implicit output: the indices appearing once, alphabetically (upper case first)
  a <- rarray(3, 4); b <- rarray(4, 5)
  expect_equal(op_einsum("ij,jk", a, b), ref_einsum("ij,jk->ik", a, b), tolerance = 1e-12)
  expect_equal(op_einsum("ba", a), t(a))
  expect_equal(op_einsum("ii", matrix(1:9, 3)), 15L)
  expect_equal(op_einsum("aB", a), t(a))   # "B" sorts before "a"
  # spaces are ignored
  expect_equal(op_einsum(" ij , jk -> ik ", a, b), base_mm(a, b), tolerance = 1e-12)
})

test_that("op_einsum broadcasts ellipsis axes as NumPy", {
  set.seed(6)
  a <- rarray(2, 3, 4, 5); b <- rarray(3, 5, 2)
  # "...ij,...jk->...ik" is a broadcasting matmul
  expect_equal(op_einsum("...ij,...jk->...ik", a, b), ref_matmul(a, b), tolerance = 1e-12)
  expect_equal(op_einsum("...ij,...jk", a, b), ref_matmul(a, b), tolerance = 1e-12)   # implicit: ... first
  v <- rnorm(5)
  expect_equal(op_einsum("...j,j->...", a, v), ref_matmul(a, v), tolerance = 1e-12)
  expect_equal(op_einsum("...j->...", a), apply(a, 1:3, sum), tolerance = 1e-12)
  expect_equal(op_einsum("i...->...", a), apply(a, 2:4, sum), tolerance = 1e-12)
  expect_equal(op_einsum("ij...->ji...", a), aperm(a, c(2, 1, 3, 4)))
  # size-1 axes broadcast
  x1 <- rarray(1, 4, 3); x2 <- rarray(5, 3, 2)
  expect_equal(op_einsum("...ij,...jk->...ik", x1, x2), ref_matmul(x1, x2), tolerance = 1e-12)
  # in an explicit output without "...", the ellipsis axes are summed
  expect_equal(op_einsum("...ij->ij", a), apply(a, 3:4, sum), tolerance = 1e-12)
})

test_that("op_einsum, op_dot and op_tensordot on symbolic tensors", {
  q <- keras_input(shape = c(4, 2, 8)); k <- keras_input(shape = c(6, 2, 8))
  s <- op_einsum("bqhd,bkhd->bhqk", q, k)
  expect_identical(s$shape, c(NA, 2L, 4L, 6L))
  expect_identical(s$dtype, "float32")
  expect_identical(s$node$callee$class_name, "Einsum")
  expect_identical(op_einsum("...d,de->...e", keras_input(shape = c(3, 4)), matrix(0, 4, 7))$shape, c(NA, 3L, 7L))
  expect_identical(op_einsum("ij->ji", keras_input(shape = 3))$shape, c(3L, NA))
  expect_identical(op_einsum("ab,bc,cd->ad", keras_input(shape = 3), matrix(0, 3, 4), matrix(0, 4, 2))$shape,
                   c(NA, 2L))
  x64 <- keras_input(shape = 3, dtype = "float64")
  expect_identical(op_einsum("ab,b->a", x64, c(1, 2, 3))$dtype, "float64")
  expect_identical(op_dot(keras_input(shape = c(3, 4)), matrix(0, 4, 5))$shape, c(NA, 3L, 5L))
  expect_identical(op_dot(keras_input(shape = c(3, 4)), matrix(0, 4, 5))$node$callee$class_name, "Dot")
  expect_identical(op_tensordot(keras_input(shape = c(3, 4)), matrix(0, 3, 4))$shape, NA_integer_)
  expect_identical(op_tensordot(keras_input(shape = c(3, 4)), matrix(0, 3, 4))$node$callee$class_name, "Tensordot")

  set.seed(7)
  cases <- list(list("bqhd,bkhd->bhqk", rarray(2, 3, 2, 4), rarray(2, 5, 2, 4)),
                list("ij,jk,kl->il", rarray(2, 3), rarray(3, 4), rarray(4, 2)),
                list("iij->ji", rarray(3, 3, 2)),
                list("...ij,...jk->...ik", rarray(1, 4, 3), rarray(5, 3, 2)))
  for (cs in cases) {
    r <- graph_run_op(function(...) op_einsum(cs[[1L]], ...), cs[-1L])
    expect_equal(r$output, do.call(op_einsum, cs), tolerance = 1e-14, info = cs[[1L]])
  }
})

test_that("op_einsum gradients match finite differences", {
  set.seed(8)
  g <- function(s) function(...) op_einsum(s, ...)
  check_op_gradient(g("bqhd,bkhd->bhqk"), list(rarray(2, 3, 2, 2), rarray(2, 4, 2, 2)))
  check_op_gradient(g("bhqk,bkhd->bqhd"), list(rarray(2, 2, 3, 4), rarray(2, 4, 2, 2)))
  check_op_gradient(g("btd,de->bte"), list(rarray(2, 3, 4), rarray(4, 3)))
  check_op_gradient(g("ij,jk,kl->il"), list(rarray(2, 3), rarray(3, 4), rarray(4, 2)))
  check_op_gradient(g("abc,c,b->a"), list(rarray(2, 3, 4), rnorm(4), rnorm(3)))
  check_op_gradient(g("iij->ji"), list(rarray(3, 3, 2)))
  check_op_gradient(function(a) op_multiply(op_einsum("ij->", a), c(1, -2)), list(rarray(3, 4)))
  check_op_gradient(g("ij->j"), list(rarray(3, 4)))
  check_op_gradient(g("...ij,...jk->...ik"), list(rarray(1, 3, 2), rarray(4, 2, 3)))
  check_op_gradient(g("ab,ab->ab"), list(rarray(3, 4), rarray(1, 4)))   # size-1 axis broadcast
})

test_that("op_dot and op_tensordot follow NumPy's dot and keras3's tensordot", {
  set.seed(9)
  a <- rarray(2, 3, 4); b <- rarray(5, 4, 6); v <- rnorm(4)
  expect_equal(op_dot(1:3, 4:6), 32L)
  m1 <- rarray(2, 3); m2 <- rarray(3, 4)
  expect_equal(op_dot(m1, m2), base_mm(m1, m2), tolerance = 1e-12)
  expect_equal(op_dot(a, v), ref_einsum("ijk,k->ij", a, v), tolerance = 1e-12)
  expect_equal(op_dot(a, b), ref_einsum("ijk,lkm->ijlm", a, b), tolerance = 1e-12)
  w <- rarray(4, 2)
  expect_equal(op_dot(v, w), as.vector(base_mm(v, w)), tolerance = 1e-12)
  expect_equal(op_dot(2, a), 2 * a)
  # tensordot: N contracts N - 1 axes (keras3 converts `axes` as a 1-based axis)
  c2 <- rarray(3, 4, 2)
  expect_equal(op_tensordot(a, c2), ref_einsum("ijk,jkl->il", a, c2), tolerance = 1e-12)
  d2 <- rarray(4, 2); u <- rnorm(2); u2 <- rnorm(3)
  expect_equal(op_tensordot(a, d2, axes = 2L), ref_einsum("ijk,kl->ijl", a, d2), tolerance = 1e-12)
  expect_equal(op_tensordot(u, u2, axes = 1L), outer(u, u2), tolerance = 1e-12)
  expect_equal(op_tensordot(a, c2, axes = list(c(2, 3), c(1, 2))), ref_einsum("ijk,jkl->il", a, c2),
               tolerance = 1e-12)
  expect_equal(op_tensordot(a, c2, axes = list(list(2, 3), list(1, 2))), ref_einsum("ijk,jkl->il", a, c2),
               tolerance = 1e-12)
  e <- rarray(4, 5, 2)
  expect_equal(op_tensordot(a, e, axes = list(-1, 1)), ref_einsum("ijk,klm->ijlm", a, e), tolerance = 1e-12)
  f <- rarray(2, 4)
  expect_equal(op_tensordot(a, f, axes = list(c(3, 1), c(2, 1))), ref_einsum("ijk,ik->j", a, f), tolerance = 1e-12)
  check_op_gradient(function(x, y) op_dot(x, y), list(rarray(2, 3), rarray(2, 3, 2)))
  check_op_gradient(function(x, y) op_tensordot(x, y, axes = list(c(1, 3), c(2, 1))),
                    list(rarray(2, 3, 2), rarray(2, 2, 3)))
})

# ---- op_dot_product_attention ----------------------------------------------------------------

test_that("op_dot_product_attention matches a plain-R reference", {
  set.seed(10)
  B <- 2; Tq <- 3; S <- 4; N <- 4; H <- 3
  q <- rarray(B, Tq, N, H); k <- rarray(B, S, N, H); v <- rarray(B, S, N, H)
  expect_equal(op_dot_product_attention(q, k, v), ref_dpa(q, k, v), tolerance = 1e-12)
  expect_equal(op_dot_product_attention(q, k, v, scale = 0.7), ref_dpa(q, k, v, scale = 0.7), tolerance = 1e-12)
  expect_equal(op_dot_product_attention(q, k, v, is_causal = TRUE), ref_dpa(q, k, v, causal = TRUE),
               tolerance = 1e-12)
  # grouped heads: K = 2 and K = 1 key/value heads for N = 4 query heads
  for (K in c(2, 1)) {
    kg <- rarray(B, S, K, H); vg <- rarray(B, S, K, H)
    expect_equal(op_dot_product_attention(q, kg, vg), ref_dpa(q, kg, vg), tolerance = 1e-12)
  }
  # bias and masks of several broadcast shapes
  bias_shapes <- list(c(B, N, Tq, S), c(Tq, S), c(1, N, 1, S), c(B, 1, Tq, 1), S)
  for (bs in bias_shapes) {
    bias <- array(rnorm(prod(bs)), bs)
    expect_equal(op_dot_product_attention(q, k, v, bias = bias), ref_dpa(q, k, v, bias = bias),
                 tolerance = 1e-12, info = paste(bs, collapse = "x"))
  }
  for (ms in list(c(B, N, Tq, S), c(B, 1, 1, S), c(Tq, S), c(1, N, Tq, 1))) {
    mask <- array(runif(prod(ms)) > 0.3, ms)
    expect_equal(op_dot_product_attention(q, k, v, mask = mask), ref_dpa(q, k, v, mask = mask),
                 tolerance = 1e-12, info = paste(ms, collapse = "x"))
    bb <- matrix(rnorm(Tq * S), Tq)
    expect_equal(op_dot_product_attention(q, k, v, mask = mask, is_causal = TRUE, bias = bb),
                 ref_dpa(q, k, v, mask = mask, causal = TRUE, bias = bb), tolerance = 1e-12)
  }
  # numeric masks (nonzero = attend); a fully masked query attends uniformly, as in Keras
  mask <- array(1, c(Tq, S)); mask[2, ] <- 0
  out <- op_dot_product_attention(q, k, v, mask = mask)
  expect_equal(out, ref_dpa(q, k, v, mask = mask), tolerance = 1e-12)
  expect_equal(out[1, 2, 1, ], colMeans(v[1, , 1, ]), tolerance = 1e-12)
})

test_that("op_dot_product_attention: symbolic shapes, graph run and gradients", {
  q <- keras_input(shape = c(4, 2, 8)); k <- keras_input(shape = c(6, 1, 8))
  o <- op_dot_product_attention(q, k, k, is_causal = TRUE)
  expect_identical(o$shape, c(NA, 4L, 2L, 8L))
  expect_identical(o$dtype, "float32")
  expect_identical(o$node$callee$class_name, "DotProductAttention")
  expect_identical(op_dot_product_attention(q, k, k, mask = keras_input(shape = c(1, 1, 6), dtype = "bool"))$shape,
                   c(NA, 4L, 2L, 8L))

  set.seed(11)
  qv <- rarray(2, 3, 4, 2); kv <- rarray(2, 4, 2, 2); vv <- rarray(2, 4, 2, 2)
  bias <- rarray(3, 4); mask <- array(runif(2 * 4) > 0.3, c(2, 1, 1, 4)); mask[, , , 1] <- TRUE
  f <- function(a, b, c, d) op_dot_product_attention(a, b, c, bias = d, mask = mask, is_causal = TRUE)
  r <- graph_run_op(f, list(qv, kv, vv, bias))
  expect_equal(r$output, ref_dpa(qv, kv, vv, bias = bias, mask = mask, causal = TRUE), tolerance = 1e-12)
  check_op_gradient(f, list(qv, kv, vv, bias))
  check_op_gradient(function(a, b, c) op_dot_product_attention(a, b, c, scale = 0.3),
                    list(rarray(1, 3, 2, 2), rarray(1, 2, 2, 2), rarray(1, 2, 2, 2)))
  # bias broadcast over batch and heads gets the summed gradient
  check_op_gradient(function(a, b, c, d) op_dot_product_attention(a, b, c, bias = d),
                    list(rarray(2, 2, 2, 2), rarray(2, 3, 1, 2), rarray(2, 3, 1, 2), rarray(1, 2, 1, 3)))
  # a fully masked query row: no gradient through its logits
  m2 <- array(TRUE, c(3, 4)); m2[2, ] <- FALSE
  check_op_gradient(function(a, b, c) op_dot_product_attention(a, b, c, mask = m2),
                    list(rarray(1, 3, 1, 2), rarray(1, 4, 1, 2), rarray(1, 4, 1, 2)))
  # float32 graphs compute in float
  r32 <- graph_run_op(function(a, b, c) op_dot_product_attention(a, b, c), list(qv, kv, vv),
                      dtypes = rep("float32", 3))
  expect_equal(r32$output, ref_dpa(qv, kv, vv), tolerance = 1e-5)
})

# ---- threads ---------------------------------------------------------------------------------

test_that("results are bitwise identical with 1 and 2 threads", {
  old <- set_num_threads(1)
  on.exit(set_num_threads(old))
  set.seed(12)
  runs <- list(
    list(function(a, b) op_matmul(a, b), list(rarray(40, 60, 64), rarray(64, 48))),       # one big GEMM
    list(function(a, b) op_matmul(a, b), list(rarray(300, 100, 8), rarray(8, 16))),       # split inner sums
    list(function(a, b) op_matmul(a, b), list(rarray(3, 200, 64), rarray(3, 64, 96))),    # batched
    list(function(a, b) op_einsum("bqhd,bkhd->bhqk", a, b), list(rarray(2, 64, 4, 32), rarray(2, 64, 4, 32))),
    list(function(a, b, c) op_dot_product_attention(a, b, c, is_causal = TRUE),
         list(rarray(2, 64, 4, 32), rarray(2, 64, 2, 32), rarray(2, 64, 2, 32)))
  )
  for (i in seq_along(runs)) {
    for (dt in c("float64", "float32")) {
      set_num_threads(1)
      one <- graph_grads(runs[[i]][[1L]], runs[[i]][[2L]], rep(dt, length(runs[[i]][[2L]])))
      set_num_threads(2)
      two <- graph_grads(runs[[i]][[1L]], runs[[i]][[2L]], rep(dt, length(runs[[i]][[2L]])))
      expect_identical(one, two, info = paste("run", i, dt))
    }
  }
  a <- rarray(300, 100, 8); b <- rarray(8, 16)
  expect_equal(op_matmul(a, b), ref_matmul(a, b), tolerance = 1e-12)
  g <- graph_grads(function(a, b) op_matmul(a, b), list(a, b))
  set.seed(99)
  w <- array(rnorm(300 * 100 * 16), c(300, 100, 16))
  expect_equal(g$grads[[2L]], base_mm(t(matrix(a, 30000)), matrix(w, 30000)), tolerance = 1e-10)
})

# ---- bad input --------------------------------------------------------------------------------

test_that("op_matmul rejects bad operands naming them", {
  expect_error(op_matmul(matrix(1, 2, 3), matrix(1, 4, 2)), "`x1` \\(2, 3\\).*`x2` \\(4, 2\\)",
               class = "multihead_error")
  expect_error(op_matmul(array(1, c(2, 3, 4)), array(1, c(3, 4, 5))), "batch axes.*`x1` \\(2, 3, 4\\)",
               class = "multihead_error")
  expect_error(op_matmul(2, matrix(1, 2, 2)), "scalars", class = "multihead_error")
  expect_error(op_matmul(c(NA, 1), c(1, 2)), "`x1`", class = "multihead_error")
  expect_error(op_matmul(c(1, 2), "a"), "`x2`", class = "multihead_error")
  expect_error(op_matmul(matrix(1, 2, 2)), "`x2`", class = "multihead_error")
  expect_error(op_matmul(keras_input(shape = c(3, 4)), matrix(1, 3, 2)), "`x1` \\(NA, 3, 4\\)",
               class = "multihead_error")
  expect_error(mm_operator(keras_input(shape = 3), matrix(1, 2, 2)), "op_matmul", class = "multihead_error")
})

test_that("op_einsum rejects malformed subscripts and wrong operands", {
  a <- matrix(1, 2, 3); b <- matrix(1, 3, 4)
  expect_error(op_einsum("ij,jk->ik->i", a, b), "`subscripts`", class = "multihead_error")
  expect_error(op_einsum("ij-jk", a, b), "`subscripts`", class = "multihead_error")
  expect_error(op_einsum("i.j,jk", a, b), "`subscripts`", class = "multihead_error")
  expect_error(op_einsum("....ij,jk", a, b), "`subscripts`", class = "multihead_error")
  expect_error(op_einsum("i1,jk", a, b), "`subscripts`", class = "multihead_error")
  expect_error(op_einsum("ij,jk->ikk", a, b), "`subscripts`.*repeats", class = "multihead_error")
  expect_error(op_einsum("ij,jk->iz", a, b), "`subscripts`.*\"z\"", class = "multihead_error")
  expect_error(op_einsum("ij,jk", a, b, b), "`...`.*2 operands", class = "multihead_error")
  expect_error(op_einsum("ij,jk,kl", a, b), "`...`", class = "multihead_error")
  expect_error(op_einsum("ijk,jk->ik", a, b), "`..1` has rank 2", class = "multihead_error")
  expect_error(op_einsum("ij,jk->ik", a, matrix(1, 4, 5)), "\"j\".*`..1`.*`..2`", class = "multihead_error")
  expect_error(op_einsum("ii", a), "repeated index", class = "multihead_error")
  expect_error(op_einsum("...ij,...jk->...ik", array(1, c(2, 3, 4)), array(1, c(5, 4, 2))),
               "\"...\" \\(its axis 1 from the end\\) has size 2 in operand `..1` but 5 in operand `..2`",
               class = "multihead_error")
  expect_error(op_einsum(c("ij", "jk"), a), "`subscripts`", class = "multihead_error")
  expect_error(op_einsum(NA_character_, a), "`subscripts`", class = "multihead_error")
  expect_error(op_einsum("ij"), "`...`", class = "multihead_error")
  expect_error(op_einsum("ij,jk", x = a, b), "`x`", class = "multihead_error")
  expect_error(op_einsum("ij", "a"), "`..1`", class = "multihead_error")
  expect_error(op_einsum(), "`subscripts`", class = "multihead_error")
  expect_error(op_einsum("ij,jk->ik", keras_input(shape = 3), matrix(1, 4, 2)), "`..1` \\(NA, 3\\)",
               class = "multihead_error")
})

test_that("op_dot and op_tensordot reject bad input naming the argument", {
  expect_error(op_dot(matrix(1, 2, 3), matrix(1, 2, 3)), "`x1`.*`x2`", class = "multihead_error")
  expect_error(op_dot(NULL, 1), "`x1`", class = "multihead_error")
  expect_error(op_dot(matrix(1, 2, 3)), "`x2`", class = "multihead_error")
  a <- array(1, c(2, 3, 4))
  expect_error(op_tensordot(a, matrix(1, 3, 4), axes = 0), "`axes`", class = "multihead_error")
  expect_error(op_tensordot(a, matrix(1, 3, 4), axes = 5), "`axes`", class = "multihead_error")
  expect_error(op_tensordot(a, matrix(1, 3, 4), axes = 2^53), "`axes`", class = "multihead_error")
  expect_error(op_tensordot(a, matrix(1, 3, 4), axes = "a"), "`axes`", class = "multihead_error")
  expect_error(op_tensordot(a, matrix(1, 3, 4), axes = list(1)), "`axes`", class = "multihead_error")
  expect_error(op_tensordot(a, matrix(1, 3, 4), axes = list(c(1, 2), 1)), "`axes`", class = "multihead_error")
  expect_error(op_tensordot(a, matrix(1, 3, 4), axes = list(4, 1)), "`axes`", class = "multihead_error")
  expect_error(op_tensordot(a, matrix(1, 3, 4), axes = list(1, 1)), "size 2 in operand `x1` but 3",
               class = "multihead_error")
  # tensordot does not broadcast size-1 axes
  expect_error(op_tensordot(matrix(1, 2, 1), matrix(1, 3, 2), axes = list(2, 2)), "`x1`.*`x2`",
               class = "multihead_error")
})

test_that("op_dot_product_attention rejects bad input naming the argument", {
  q <- array(1, c(2, 3, 4, 2)); k <- array(1, c(2, 5, 2, 2))
  expect_error(op_dot_product_attention(array(1, c(2, 3, 4)), k, k), "rank 4", class = "multihead_error")
  expect_error(op_dot_product_attention(q, array(1, c(2, 5, 3, 2)), array(1, c(2, 5, 3, 2))), "multiple",
               class = "multihead_error")
  expect_error(op_dot_product_attention(q, k, array(1, c(2, 5, 2, 3))), "`key` and `value`",
               class = "multihead_error")
  expect_error(op_dot_product_attention(q, array(1, c(3, 5, 2, 2)), array(1, c(3, 5, 2, 2))), "batch size",
               class = "multihead_error")
  expect_error(op_dot_product_attention(q, array(1, c(2, 5, 2, 3)), array(1, c(2, 5, 2, 3))), "head size",
               class = "multihead_error")
  expect_error(op_dot_product_attention(q, k, k, mask = array(TRUE, c(3, 4))), "`mask`.*\\(2, 4, 3, 5\\)",
               class = "multihead_error")
  expect_error(op_dot_product_attention(q, k, k, bias = array(0, c(1, 2, 3, 4, 5))), "`bias`",
               class = "multihead_error")
  expect_error(op_dot_product_attention(q, k, k, scale = "a"), "`scale`", class = "multihead_error")
  expect_error(op_dot_product_attention(q, k, k, scale = NA), "`scale`", class = "multihead_error")
  expect_error(op_dot_product_attention(q, k, k, is_causal = NA), "`is_causal`", class = "multihead_error")
  expect_error(op_dot_product_attention(q, k, k, flash_attention = "yes"), "`flash_attention`",
               class = "multihead_error")
  expect_error(op_dot_product_attention(q, k, k, attn_logits_soft_cap = 30), "`attn_logits_soft_cap`",
               class = "multihead_error")
  expect_error(op_dot_product_attention(q, k), "`value`", class = "multihead_error")
  expect_error(op_dot_product_attention(q, k, k, mask = array(NA, c(3, 5))), "`mask`", class = "multihead_error")
  expect_equal(op_dot_product_attention(q, k, k, flash_attention = TRUE), op_dot_product_attention(q, k, k))
})
