# Linear-algebra ops: op_matmul(), op_einsum(), op_dot(), op_tensordot(),
# op_dot_product_attention(), and `%*%` on symbolic tensors and variables.
#
# Every product here is a CONTRACTION of two operands over index labels,
# done in C++ (src/core/ops_linalg.h): the R side only labels the axes and
# plans (which axes are contracted, kept, shared as a batch, or summed), the
# core does the work. op_matmul labels the axes of NumPy's matmul
# ((..., n, k) x (..., k, m), batch axes broadcast, 1-D operands promoted);
# op_einsum parses its subscripts into labels; op_dot and op_tensordot write
# einsum subscripts from the ranks. An einsum with three or more operands is
# a chain of two-operand contractions (left to right, keeping the labels
# still needed); with one operand it is a gather (transpose, diagonal) and a
# sum.
#
# Layout. Values are R arrays: column-major with Keras's axis order (the
# first axis varies fastest). The core reads and writes them in place: for
# each operand it gathers a stack of column-major matrices (one strided pass,
# or none when the operand is already in that order: x (B, T, K) %*% w (K, M)
# is a single (B*T, K) x (K, M) product on R's memory), multiplies the stack,
# and writes R's result. Plans are flattened into one double vector per
# contraction (see glue_ops_linalg.cpp) and cached per shapes.
#
# Dtypes. Eager calls compute in double (R's doubles are the user's data).
# In a graph, the op_* function records params$dtype (the result dtype) and
# params$grad (which operands are symbolic floats, i.e. need a gradient):
# float32 graphs compute in float, float64 graphs in double. Integer operands
# give integer results (bool x bool gives bool), as NumPy does.

# ---- shared helpers -----------------------------------------------------------

.linalg_cache <- new.env(hash = TRUE, parent = emptyenv())

# A cached value: `make()` runs once per key (the cache is emptied when it
# holds more than 2000 plans).
#' @noRd
linalg_cached <- function(key, make) {
  hit <- .linalg_cache[[key]]
  if (!is.null(hit)) return(hit)
  if (length(.linalg_cache) > 2000L) rm(list = ls(.linalg_cache, all.names = TRUE), envir = .linalg_cache)
  val <- make()
  assign(key, val, envir = .linalg_cache)
  val
}

# A cache key from strings and a list of shapes (NA allowed).
#' @noRd
linalg_shapes_key <- function(head, shapes) {
  paste(c(head, unlist(lapply(shapes, function(s) c(";", s)), use.names = FALSE)), collapse = " ")
}

#' @noRd
linalg_as_double_value <- function(x) {
  if (!is.double(x)) storage.mode(x) <- "double"
  x
}

# The params a symbolic call records: the result dtype (which decides float
# or double arithmetic in the graph) and which operands need a gradient.
# Eager calls record nothing (they compute in double).
#' @noRd
linalg_params <- function(operands, params = list(), dtype_of = NULL) {
  if (!operands_symbolic(operands)) return(params)
  specs <- lapply(operands, function(x) {
    if (is.null(x)) return(NULL)
    if (is_symbolic(x)) return(list(dtype = x$dtype, weak = FALSE, sym = TRUE))
    if (inherits(x, "multihead_variable")) return(list(dtype = variable_dtype(x), weak = FALSE, sym = TRUE))
    list(dtype = if (is.numeric(x) || is.logical(x)) r_value_dtype(x) else "float32", weak = TRUE, sym = FALSE)
  })
  params$dtype <- if (is.null(dtype_of)) result_dtype(specs) else dtype_of(specs)
  params$grad <- vapply(specs, function(s) !is.null(s) && s$sym && is_float_dtype(s$dtype), logical(1))
  params
}

#' @noRd
linalg_float64 <- function(params) !identical(params$dtype, "float32")

# Integer (or bool) operands give an integer (or bool) result; others double.
#' @noRd
linalg_result_type <- function(out, values) {
  for (v in values) if (!(is.integer(v) || is.logical(v))) return(out)
  if (all(vapply(values, is.logical, logical(1)))) return(out != 0)
  if (length(out) && max(abs(out)) > .Machine$integer.max) {
    abort_msg("The integer result does not fit in a 32-bit integer; convert the operands to double.",
              class = "multihead_error_overflow")
  }
  storage.mode(out) <- "integer"
  out
}

#' @noRd
linalg_set_value_shape <- function(x, shape) {
  dim(x) <- if (length(shape) >= 2L) shape else NULL
  x
}

# A gradient shaped like its operand.
#' @noRd
linalg_shape_like <- function(g, x) {
  if (is.null(g)) return(NULL)
  dim(g) <- dim(x)
  g
}

#' @noRd
linalg_axis_strides <- function(d) {
  r <- length(d)
  if (r == 0L) return(numeric())
  cumprod(c(1, as.numeric(d)))[seq_len(r)]
}

# ---- contraction plans ----------------------------------------------------------

# The plan of the contraction of x1 (axis labels l1, dims d1) and x2 (l2,
# d2). Labels are integers; a label repeated within an operand is its
# diagonal. `keep`: the labels the result keeps, in the order `out`, or (out
# = NULL) in the core's natural order (no output copy). A label of size 1 in
# one operand and larger in the other is broadcast (dropped from the size-1
# operand). Returns list(flat = the core's plan, labels =, dims =) of the
# result.
#' @noRd
linalg_pair_plan <- function(l1, d1, l2, d2, keep, out = NULL) {
  u1 <- unique(l1); u2 <- unique(l2)
  s1 <- as.numeric(d1[match(u1, l1)]); s2 <- as.numeric(d2[match(u2, l2)])
  p1 <- u1; p2 <- u2
  for (lab in intersect(u1, u2)) {
    a <- s1[match(lab, u1)]; b <- s2[match(lab, u2)]
    if (a != b) {
      if (a == 1) p1 <- p1[p1 != lab]
      else if (b == 1) p2 <- p2[p2 != lab]
      else abort_msg(sprintf(paste0("The operands' axes labelled %s have sizes %s and %s, which neither ",
                                    "match nor broadcast."), linalg_label_name(lab), a, b),
                     class = c("multihead_error_shape", "multihead_error_argument"))
    }
  }
  size <- function(labs) {
    i <- match(labs, p1)
    out <- s1[match(labs, u1)]
    out[is.na(i)] <- s2[match(labs[is.na(i)], u2)]
    out
  }
  in1 <- p1 %in% p2; in2 <- p2 %in% p1
  k1 <- p1 %in% keep; k2 <- p2 %in% keep
  batch <- p1[in1 & k1]; inner <- p1[in1 & !k1]
  rows <- p1[!in1 & k1]; sum1 <- p1[!in1 & !k1]
  cols <- p2[!in2 & k2]; sum2 <- p2[!in2 & !k2]
  gather <- function(labs, n_kept, l, d) {
    st <- linalg_axis_strides(d)
    steps <- vapply(labs, function(lab) sum(st[l == lab]), numeric(1))
    dims <- size(labs)
    c(length(labs), dims, steps, prod(dims[seq_len(n_kept)]), prod(dims[n_kept + seq_len(length(dims) - n_kept)]),
      prod(as.numeric(d)))
  }
  ga <- gather(c(rows, inner, batch, sum1), length(rows) + length(inner) + length(batch), l1, d1)
  gb <- gather(c(inner, cols, batch, sum2), length(inner) + length(cols) + length(batch), l2, d2)
  clabs <- c(rows, cols, batch)
  cdims <- size(clabs)
  olabs <- if (is.null(out)) clabs else out
  odims <- cdims[match(olabs, clabs)]
  osteps <- linalg_axis_strides(cdims)[match(olabs, clabs)]
  flat <- c(ga, gb, prod(size(rows)), prod(size(inner)), prod(size(cols)), prod(size(batch)),
            length(olabs), odims, osteps)
  list(flat = flat, labels = olabs, dims = odims)
}

# How a label appears in messages: a letter, or an axis of the ellipsis.
#' @noRd
linalg_label_name <- function(lab) {
  if (lab > 0) sprintf("\"%s\"", intToUtf8(lab)) else sprintf("\"...\" (its axis %d from the end)", -lab)
}

# ---- op_matmul --------------------------------------------------------------------

#' @noRd
linalg_infer_matmul <- function(specs, params) {
  a <- specs[[1L]]; b <- specs[[2L]]
  nms <- names(specs)
  if (is.null(a) || is.null(b)) abort_arg(nms[if (is.null(a)) 1L else 2L], "supplied: a tensor in op_matmul()")
  s1 <- a$shape; s2 <- b$shape
  r1 <- length(s1); r2 <- length(s2)
  if (r1 == 0L || r2 == 0L) {
    abort_op("op_matmul", paste0("both operands need at least one axis (matmul does not take scalars; use ",
                                 "op_multiply())"), specs)
  }
  k1 <- s1[r1]
  k2 <- if (r2 == 1L) s2[1L] else s2[r2 - 1L]
  if (!is.na(k1) && !is.na(k2) && k1 != k2) {
    abort_op("op_matmul", sprintf("the last axis of `%s` (size %d) does not match the %s axis of `%s` (size %d)",
                                  nms[1L], k1, if (r2 == 1L) "only" else "second-to-last", nms[2L], k2), specs)
  }
  b1 <- if (r1 > 2L) s1[seq_len(r1 - 2L)] else integer()
  b2 <- if (r2 > 2L) s2[seq_len(r2 - 2L)] else integer()
  batch <- if (!length(b2)) b1 else if (!length(b1)) b2 else {
    tryCatch(broadcast_shapes(b1, b2), multihead_error_shape = function(e) {
      abort_op("op_matmul", "the batch axes (all but the last two) of the operands do not broadcast together",
               specs)
    })
  }
  n <- if (r1 >= 2L) s1[r1 - 1L] else integer()
  m <- if (r2 >= 2L) s2[r2] else integer()
  op_spec(c(batch, n, m), linalg_dtype(specs))
}

# result_dtype(), with a shortcut for operands of one dtype.
#' @noRd
linalg_dtype <- function(specs) {
  d <- specs[[1L]]$dtype
  for (s in specs) if (is.null(s) || !identical(s$dtype, d)) return(result_dtype(specs))
  d
}

# The plan of x1 (d1) %*% x2 (d2) with NumPy's matmul semantics.
#' @noRd
linalg_matmul_plan <- function(d1, d2) {
  linalg_cached(paste(c("mm", d1, ";", d2), collapse = " "), function() {
    r1 <- length(d1); r2 <- length(d2)
    p1 <- if (r1 == 1L) c(1L, d1) else d1
    p2 <- if (r2 == 1L) c(d2, 1L) else d2
    q1 <- length(p1) - 2L; q2 <- length(p2) - 2L
    nb <- max(q1, q2)
    # labels: batch axes 1..nb (aligned on the right), then n, k, m
    n <- nb + 1L; k <- nb + 2L; m <- nb + 3L
    l1 <- c(seq.int(nb - q1 + 1L, length.out = q1), n, k)
    l2 <- c(seq.int(nb - q2 + 1L, length.out = q2), k, m)
    out <- c(seq_len(nb), n, m)
    pl <- linalg_pair_plan(l1, p1, l2, p2, keep = out, out = out)
    shape <- pl$dims
    drop <- c(if (r1 == 1L) nb + 1L, if (r2 == 1L) nb + 2L)
    if (length(drop)) shape <- shape[-drop]
    list(flat = pl$flat, shape = as.integer(shape))
  })
}

#' @noRd
linalg_matmul_forward <- function(values, params) {
  x1 <- values[[1L]]; x2 <- values[[2L]]
  d1 <- value_shape(x1); d2 <- value_shape(x2)
  pl <- linalg_matmul_plan(d1, d2)
  out <- cpp_contract_forward(linalg_as_double_value(x1), linalg_as_double_value(x2), pl$flat, linalg_float64(params),
                              mh_threads())
  out <- linalg_set_value_shape(out, pl$shape)
  list(output = linalg_result_type(out, values), cache = list(x1 = x1, x2 = x2, plan = pl))
}

#' @noRd
linalg_matmul_backward <- function(grad, cache, params) {
  need <- params$grad %||% c(TRUE, TRUE)
  r <- cpp_contract_backward(linalg_as_double_value(cache$x1), linalg_as_double_value(cache$x2), linalg_as_double_value(grad),
                             cache$plan$flat, need[1L], need[2L], linalg_float64(params), mh_threads())
  list(linalg_shape_like(r$x1, cache$x1), linalg_shape_like(r$x2, cache$x2))
}

#' Matrix product of two tensors
#'
#' NumPy's (and Keras's) `matmul`: the product of the last two axes, with the
#' other (batch) axes broadcast.
#' - two 1-D tensors: their dot product (a scalar);
#' - a 1-D first tensor is taken as a row `(1, k)`, a 1-D second tensor as a
#'   column `(k, 1)`; the added axis is removed from the result;
#' - N-D tensors are stacks of matrices in their last two axes:
#'   `(..., n, k)` times `(..., k, m)` gives `(..., n, m)`, the leading axes
#'   broadcast (sizes 1 stretch).
#'
#' On R arrays it computes at once (in double precision); on symbolic tensors
#' it records an operation that models run and differentiate. `x %*% y` does
#' the same when `x` or `y` is a symbolic tensor or a variable (on ordinary R
#' matrices `%*%` is base R's). Integer operands give an integer result.
#'
#' @param x1,x2 Tensors: arrays, vectors, symbolic tensors or variables.
#' @returns The product: an array (a plain vector for rank 1, a number for
#'   rank 0), or a symbolic tensor.
#' @family ops
#' @export
#' @examples
#' a <- matrix(1:6, 2, 3)
#' b <- matrix(1:12, 3, 4)
#' op_matmul(a, b)
#' x <- array(runif(2 * 5 * 3), c(2, 5, 3))   # a stack of two (5, 3) matrices
#' dim(op_matmul(x, b))
#' op_matmul(1:3, 1:3)                         # dot product of vectors
op_matmul <- function(x1, x2) {
  if (missing(x1) || missing(x2)) abort_arg(if (missing(x1)) "x1" else "x2", "supplied: a tensor in op_matmul()")
  operands <- list(x1 = x1, x2 = x2)
  op_call("matmul", operands, linalg_params(operands))
}

# ---- %*% on symbolic tensors and variables ------------------------------------------

.base_matmul <- base::`%*%`

#' Matrix product operator
#'
#' `x %*% y` is [op_matmul()] when `x` or `y` is a symbolic tensor or a
#' variable, and base R's `%*%` otherwise (same results, also for numeric,
#' integer, complex and S4 matrices). Before R 4.3, `%*%` did not dispatch
#' on S3 classes, so there multihead exports this function; from R 4.3 on it
#' registers `matrixOps` methods for its tensor classes instead.
#'
#' @param x,y Matrices, vectors, symbolic tensors or variables.
#' @returns A matrix (base R), an array or a symbolic tensor.
#' @name matmul-operator
#' @rawNamespace if (getRversion() < "4.3.0") export("%*%")
#' @rawNamespace if (getRversion() >= "4.3.0") { S3method(matrixOps, multihead_tensor); S3method(matrixOps, multihead_variable) }
#' @examples
#' matrix(1:4, 2) %*% 1:2          # base R
#' x <- keras_input(shape = c(3, 4))
#' w <- matrix(runif(8), 4, 2)
#' (x %*% w)$shape                 # op_matmul
`%*%` <- function(x, y) {
  if ((is.object(x) && inherits(x, c("multihead_tensor", "multihead_variable"))) ||
      (is.object(y) && inherits(y, c("multihead_tensor", "multihead_variable")))) {
    return(op_matmul(x, y))
  }
  .base_matmul(x, y)
}

# R >= 4.3: the matrixOps group (`%*%`; from R 4.4 also crossprod() and
# tcrossprod(), taken here for rank-2 tensors).
#' @noRd
matrixOps.multihead_tensor <- function(x, y) {
  g <- .Generic
  if (g == "%*%") return(op_matmul(x, y))
  if (g %in% c("crossprod", "tcrossprod")) {
    if (missing(y) || is.null(y)) y <- x
    return(op_einsum(if (g == "crossprod") "ki,kj->ij" else "ik,jk->ij", x, y))
  }
  abort_msg(sprintf("`%s` is not supported on tensors.", g), class = "multihead_error_unsupported")
}

#' @noRd
matrixOps.multihead_variable <- matrixOps.multihead_tensor

# ---- einsum: parsing and binding ------------------------------------------------

# Parses einsum subscripts for n operands. Returns list(inputs = list of
# character vectors of tokens (single letters or "..."), output = tokens or
# NULL for the implicit output). Errors name `subscripts` (or `...` for the
# operand count).
#' @noRd
linalg_einsum_parse <- function(subscripts, n, fun = "op_einsum") {
  linalg_cached(paste0("es\r", n, "\r", subscripts), function() {
    bad <- function(what) abort_arg("subscripts", sprintf("einsum subscripts %s in %s()", what, fun),
                                    sprintf("\"%s\"", subscripts))
    s <- gsub("[[:space:]]", "", subscripts)
    arrows <- gregexpr("->", s, fixed = TRUE)[[1L]]
    n_arrows <- sum(arrows > 0L)
    if (n_arrows > 1L) bad("with at most one \"->\"")
    lhs <- if (n_arrows) substr(s, 1L, arrows[1L] - 1L) else s
    rhs <- if (n_arrows) substr(s, arrows[1L] + 2L, nchar(s)) else NULL
    if (grepl("[-<>]", lhs) || (!is.null(rhs) && grepl("[-<>]", rhs))) bad("with \"->\" written whole, once")
    terms <- strsplit(lhs, ",", fixed = TRUE)[[1L]]
    if (endsWith(lhs, ",")) terms <- c(terms, "")
    if (!nzchar(lhs)) terms <- ""
    if (length(terms) != n) {
      abort_arg("...", sprintf("%d operand%s, one per term of `subscripts` (\"%s\") in %s()", length(terms),
                               if (length(terms) == 1L) "" else "s", subscripts, fun),
                sprintf("%d operand%s", n, if (n == 1L) "" else "s"))
    }
    tokens <- function(term, where) {
      if (grepl("[^A-Za-z.]", term)) {
        bad(sprintf("made of letters (A-Z, a-z), \"...\", \",\" and \"->\" (the %s \"%s\" is not)", where, term))
      }
      dots <- gregexpr("...", term, fixed = TRUE)[[1L]]
      nd <- sum(dots > 0L)
      rest <- if (nd) sub("...", "", term, fixed = TRUE) else term
      if (nd > 1L || grepl(".", rest, fixed = TRUE)) {
        bad(sprintf("with at most one \"...\" per term and no other dots (the %s \"%s\" is not)", where, term))
      }
      if (!nd) return(strsplit(term, "")[[1L]])
      before <- substr(term, 1L, dots[1L] - 1L)
      after <- substr(term, dots[1L] + 3L, nchar(term))
      c(strsplit(before, "")[[1L]], "...", strsplit(after, "")[[1L]])
    }
    inputs <- lapply(seq_along(terms), function(i) tokens(terms[i], sprintf("term %d", i)))
    output <- NULL
    if (!is.null(rhs)) {
      output <- tokens(rhs, "output")
      letters_out <- output[output != "..."]
      if (anyDuplicated(letters_out)) {
        bad(sprintf("with each output index once (\"%s\" repeats \"%s\")", rhs,
                    letters_out[anyDuplicated(letters_out)]))
      }
      all_in <- unlist(inputs)
      missing_in <- setdiff(letters_out, all_in)
      if (length(missing_in)) {
        bad(sprintf("whose output indices all appear in an input (\"%s\" does not)", missing_in[1L]))
      }
    }
    list(inputs = inputs, output = output)
  })
}

# Binds parsed subscripts to operand shapes (NA = unknown): labels per axis
# (letters as code points, ellipsis axes as -E .. -1, aligned on the right),
# the output's labels and shape. Checks ranks and sizes; `strict` forbids
# size-1 broadcasting between operands (op_dot, op_tensordot).
#' @noRd
linalg_einsum_bind <- function(parsed, shapes, nms, fun = "op_einsum", strict = FALSE, specs = NULL) {
  n <- length(parsed$inputs)
  ell <- integer(n)
  labels <- vector("list", n)
  for (i in seq_len(n)) {
    tk <- parsed$inputs[[i]]
    has <- "..." %in% tk
    nl <- length(tk) - has
    r <- length(shapes[[i]])
    if ((!has && r != nl) || (has && r < nl)) {
      abort_op(fun, sprintf("operand `%s` has rank %d but its subscripts \"%s\" name %s%d ax%s", nms[i], r,
                            paste(tk, collapse = ""), if (has) "at least " else "", nl,
                            if (nl == 1L) "is" else "es"), specs)
    }
    ell[i] <- r - nl
  }
  E <- max(c(ell, 0L))
  for (i in seq_len(n)) {
    tk <- parsed$inputs[[i]]
    pos <- match("...", tk)
    lab <- integer(0)
    for (j in seq_along(tk)) {
      lab <- c(lab, if (tk[j] == "...") seq.int(-ell[i], length.out = ell[i]) else utf8ToInt(tk[j]))
    }
    labels[[i]] <- lab
  }
  all_labs <- unlist(labels)
  if (is.null(parsed$output)) {
    lets <- all_labs[all_labs > 0L]
    once <- as.integer(names(which(table(lets) == 1L)))
    out <- c(if (E) seq.int(-E, -1L), sort(once, method = "radix"))
  } else {
    out <- integer(0)
    for (t in parsed$output) out <- c(out, if (t == "...") { if (E) seq.int(-E, -1L) else integer() } else utf8ToInt(t))
  }
  # sizes: equal within an operand (diagonals), equal or 1 across operands
  size <- c()
  for (lab in unique(all_labs)) {
    known <- integer(0); who <- integer(0)
    for (i in seq_len(n)) {
      sz <- shapes[[i]][labels[[i]] == lab]
      if (!length(sz)) next
      sk <- sz[!is.na(sz)]
      if (length(unique(sk)) > 1L) {
        abort_op(fun, sprintf("the repeated index %s of operand `%s` has different sizes (%s)",
                              linalg_label_name(lab), nms[i], paste(unique(sk), collapse = " and ")), specs)
      }
      if (length(sk)) { known <- c(known, sk[1L]); who <- c(who, i) }
    }
    big <- unique(known[known != 1L])
    if (length(big) > 1L || (strict && length(unique(known)) > 1L)) {
      pair <- if (length(big) > 1L) big[1:2] else unique(known)[1:2]
      abort_op(fun, sprintf("index %s has size %d in operand `%s` but %d in operand `%s`%s", linalg_label_name(lab),
                            pair[1L], nms[who[match(pair[1L], known)]], pair[2L], nms[who[match(pair[2L], known)]],
                            if (length(big) > 1L) "" else " (this op does not broadcast)"), specs)
    }
    any_na <- any(vapply(seq_len(n), function(i) anyNA(shapes[[i]][labels[[i]] == lab]), logical(1)))
    size[as.character(lab)] <- if (length(big)) big else if (any_na) NA_integer_ else 1L
  }
  list(labels = labels, out = out, shape = as.integer(unname(size[as.character(out)])))
}

# The plans of an einsum on concrete shapes: list(unary = flat gather plan,
# or pairs = list of contraction plans), shape = the output shape.
#' @noRd
linalg_einsum_plan <- function(subscripts, shapes, strict = FALSE) {
  key <- linalg_shapes_key(c("ep", strict, subscripts), shapes)
  linalg_cached(key, function() {
    n <- length(shapes)
    nms <- paste0("..", seq_len(n))
    b <- linalg_einsum_bind(linalg_einsum_parse(subscripts, n), shapes, nms, strict = strict)
    if (n == 1L) {
      l <- b$labels[[1L]]; d <- shapes[[1L]]
      summed <- setdiff(unique(l), b$out)
      labs <- c(b$out, summed)
      st <- linalg_axis_strides(d)
      dims <- as.numeric(d[match(labs, l)])
      steps <- vapply(labs, function(lab) sum(st[l == lab]), numeric(1))
      k <- length(b$out)
      flat <- c(length(labs), dims, steps, prod(dims[seq_len(k)]), prod(dims[k + seq_len(length(dims) - k)]),
                prod(as.numeric(d)))
      return(list(unary = flat, shape = b$shape))
    }
    pairs <- vector("list", n - 1L)
    cl <- b$labels[[1L]]; cd <- shapes[[1L]]
    for (j in 2:n) {
      last <- j == n
      needed <- if (last) b$out else union(b$out, unlist(b$labels[(j + 1L):n]))
      keep <- intersect(union(cl, b$labels[[j]]), needed)
      pl <- linalg_pair_plan(cl, cd, b$labels[[j]], shapes[[j]], keep = keep, out = if (last) b$out)
      pairs[[j - 1L]] <- pl$flat
      cl <- pl$labels; cd <- pl$dims
    }
    list(pairs = pairs, shape = b$shape)
  })
}

# ---- einsum: the op ----------------------------------------------------------------

#' @noRd
linalg_infer_einsum <- function(specs, params) {
  fun <- params$fun %||% "op_einsum"
  nms <- names(specs)
  for (i in seq_along(specs)) if (is.null(specs[[i]])) abort_arg(nms[i], sprintf("a tensor in %s()", fun))
  shapes <- lapply(specs, .subset2, "shape")
  key <- linalg_shapes_key(c("eb", params$strict, params$subscripts), shapes)
  shape <- linalg_cached(key, function() {
    parsed <- linalg_einsum_parse(params$subscripts, length(specs), fun)
    linalg_einsum_bind(parsed, shapes, nms, fun, isTRUE(params$strict), specs)$shape
  })
  op_spec(shape, linalg_dtype(specs))
}

#' @noRd
linalg_einsum_forward <- function(values, params) {
  shapes <- lapply(values, value_shape)
  pl <- linalg_einsum_plan(params$subscripts, shapes, isTRUE(params$strict))
  f64 <- linalg_float64(params)
  th <- mh_threads()
  vals <- lapply(values, linalg_as_double_value)
  inter <- NULL
  if (!is.null(pl$unary)) {
    out <- cpp_gather_forward(vals[[1L]], pl$unary, f64, th)
  } else {
    cur <- vals[[1L]]
    inter <- vector("list", length(pl$pairs))
    for (j in seq_along(pl$pairs)) {
      inter[[j]] <- cur
      cur <- cpp_contract_forward(cur, vals[[j + 1L]], pl$pairs[[j]], f64, th)
    }
    out <- cur
  }
  out <- linalg_result_type(linalg_set_value_shape(out, pl$shape), values)
  list(output = out, cache = list(values = values, inter = inter, plan = pl))
}

#' @noRd
linalg_einsum_backward <- function(grad, cache, params) {
  pl <- cache$plan
  vals <- cache$values
  n <- length(vals)
  need <- params$grad %||% rep(TRUE, n)
  f64 <- linalg_float64(params)
  th <- mh_threads()
  g <- linalg_as_double_value(grad)
  grads <- vector("list", n)
  if (!is.null(pl$unary)) {
    if (need[1L]) grads[[1L]] <- cpp_gather_backward(g, pl$unary, f64, th)
  } else {
    for (j in rev(seq_along(pl$pairs))) {
      need_left <- any(need[seq_len(j)])
      r <- cpp_contract_backward(cache$inter[[j]], linalg_as_double_value(vals[[j + 1L]]), g, pl$pairs[[j]],
                                 need_left, need[j + 1L], f64, th)
      grads[j + 1L] <- list(r$x2)
      if (!need_left) break
      g <- r$x1
    }
    if (need[1L]) grads[[1L]] <- g
  }
  for (i in seq_len(n)) grads[i] <- list(linalg_shape_like(grads[[i]], vals[[i]]))
  grads
}

#' Einstein summation
#'
#' Keras's (NumPy's) `einsum`: `subscripts` names the axes of each operand
#' with letters, operands separated by commas; an index that appears in
#' several operands is multiplied along, an index missing from the output is
#' summed over. With `->` the output's indices are given explicitly;
#' without it (implicit mode) the output has the indices that appear exactly
#' once, in alphabetical order (upper case first). `...` stands for the
#' leading axes not named, broadcast between operands as in NumPy and kept
#' in front of the implicit output; in an explicit output without `...` they
#' are summed. An index repeated within an operand takes its diagonal
#' (`"ii->i"`, the trace `"ii"`).
#'
#' Two operands are one (batched) matrix product in C++; more operands are
#' contracted left to right; one operand is a transpose/diagonal and a sum.
#'
#' @param subscripts A string such as `"bqhd,bkhd->bhqk"`.
#' @param ... The operands (tensors), one per comma-separated term of
#'   `subscripts`, unnamed.
#' @returns An array, or a symbolic tensor.
#' @family ops
#' @export
#' @examples
#' a <- matrix(1:6, 2, 3)
#' b <- matrix(1:12, 3, 4)
#' op_einsum("ij,jk->ik", a, b)      # matrix product
#' op_einsum("ij->ji", a)            # transpose
#' op_einsum("ii", matrix(1:9, 3))   # trace
#' q <- array(runif(2 * 4 * 2 * 3), c(2, 4, 2, 3))
#' k <- array(runif(2 * 5 * 2 * 3), c(2, 5, 2, 3))
#' dim(op_einsum("bqhd,bkhd->bhqk", q, k))
op_einsum <- function(subscripts, ...) {
  if (missing(subscripts)) abort_arg("subscripts", "supplied: einsum subscripts such as \"ij,jk->ik\"")
  if (!(is.character(subscripts) && length(subscripts) == 1L && !is.na(subscripts))) {
    abort_arg("subscripts", "a single string of einsum subscripts such as \"ij,jk->ik\"", describe_value(subscripts))
  }
  operands <- list(...)
  if (length(operands) == 0L) abort_arg("...", "at least one operand (tensor) in op_einsum()")
  if (!is.null(names(operands)) && any(nzchar(names(operands)))) {
    bad <- names(operands)[nzchar(names(operands))][1L]
    abort_arg(bad, "passed unnamed: op_einsum() takes its operands in `...` without names",
              sprintf("an argument named `%s`", bad))
  }
  names(operands) <- paste0("..", seq_along(operands))
  op_call("einsum", operands, linalg_params(operands, list(subscripts = subscripts)))
}

# ---- op_dot, op_tensordot ------------------------------------------------------------

# Ranks of operands, whatever they are (errors come later, from the op).
#' @noRd
linalg_rank <- function(x) {
  if (is_symbolic(x)) return(length(x$shape))
  if (inherits(x, "multihead_variable")) return(length(value_shape(variable_value(x))))
  if (is.null(x)) return(NA_integer_)
  length(value_shape(x))
}

#' @noRd
linalg_letters <- c(letters, LETTERS)

#' Dot product of two tensors
#'
#' NumPy's (Keras's) `dot`:
#' - two 1-D tensors: their inner product;
#' - two 2-D tensors: the matrix product;
#' - a 0-D (scalar) operand: the elementwise product ([op_multiply()]);
#' - an N-D `x1` and a 1-D `x2`: the sum product over the last axis of `x1`
#'   and `x2`;
#' - an N-D `x1` and an M-D `x2` (M >= 2): the sum product over the last axis
#'   of `x1` and the second-to-last axis of `x2`:
#'   `dot(x1, x2)[i, j, k, m] = sum(x1[i, j, ] * x2[k, , m])`.
#'
#' @param x1,x2 Tensors.
#' @returns An array, or a symbolic tensor.
#' @family ops
#' @export
#' @examples
#' op_dot(1:3, 4:6)
#' dim(op_dot(array(1, c(2, 3, 4)), array(1, c(5, 4, 6))))
op_dot <- function(x1, x2) {
  if (missing(x1) || missing(x2)) abort_arg(if (missing(x1)) "x1" else "x2", "supplied: a tensor in op_dot()")
  r1 <- linalg_rank(x1); r2 <- linalg_rank(x2)
  if (is.na(r1) || is.na(r2)) abort_arg(if (is.na(r1)) "x1" else "x2", "a tensor in op_dot()", "NULL")
  if (r1 == 0L || r2 == 0L) return(op_multiply(x1, x2))
  if (r1 + r2 > length(linalg_letters)) abort_op("op_dot", "the operands have too many axes (more than 52 in all)")
  a <- linalg_letters[seq_len(r1)]
  if (r2 == 1L) {
    b <- a[r1]
  } else {
    extra <- linalg_letters[r1 + seq_len(r2 - 1L)]
    b <- c(extra[seq_len(r2 - 2L)], a[r1], extra[r2 - 1L])
  }
  out <- c(a[-r1], b[-(max(r2 - 1L, 1L))])
  subscripts <- paste0(paste(a, collapse = ""), ",", paste(b, collapse = ""), "->", paste(out, collapse = ""))
  operands <- list(x1 = x1, x2 = x2)
  op_call("dot", operands, linalg_params(operands, list(subscripts = subscripts, strict = TRUE, fun = "op_dot")))
}

#' Tensor dot product along given axes
#'
#' The sum of products over the given axes of `x1` and `x2`; the result has
#' the remaining axes of `x1`, then those of `x2`.
#'
#' `axes` follows keras3 (the R package), which converts it as a 1-based
#' axis before passing it to Keras: a single number `N` contracts the last
#' `N - 1` axes of `x1` with the first `N - 1` axes of `x2` (so the default
#' `3L` contracts two axes, Keras's default, and `1L` gives the outer
#' product). A list of two vectors gives the axes of `x1` and of `x2` to
#' contract, pairwise: 1-based, negative values counting from the end.
#'
#' @param x1,x2 Tensors.
#' @param axes A whole number >= 1, or a list of two vectors of axes of
#'   equal length.
#' @returns An array, or a symbolic tensor.
#' @family ops
#' @export
#' @examples
#' a <- array(1:24, c(2, 3, 4))
#' b <- array(1:12, c(3, 4))
#' op_tensordot(a, b)                             # contracts (3, 4)
#' op_tensordot(a, b, axes = list(c(2, 3), c(1, 2)))
op_tensordot <- function(x1, x2, axes = 3L) {
  if (missing(x1) || missing(x2)) abort_arg(if (missing(x1)) "x1" else "x2", "supplied: a tensor in op_tensordot()")
  r1 <- linalg_rank(x1); r2 <- linalg_rank(x2)
  if (is.na(r1) || is.na(r2)) abort_arg(if (is.na(r1)) "x1" else "x2", "a tensor in op_tensordot()", "NULL")
  if (is.list(axes) && !is.object(axes)) {
    if (length(axes) != 2L) {
      abort_arg("axes", "a whole number, or a list of two vectors of axes (of `x1` and of `x2`)",
                describe_value(axes))
    }
    flat <- function(a) if (is.list(a) && !is.object(a)) unlist(a) else a   # keras3 also takes lists
    a1 <- normalize_axis(flat(axes[[1L]]), r1, "axes", "op_tensordot")
    a2 <- normalize_axis(flat(axes[[2L]]), r2, "axes", "op_tensordot")
    if (length(a1) != length(a2)) {
      abort_arg("axes", "a list of two vectors of the same length (axes of `x1` and `x2`, paired)",
                sprintf("lengths %d and %d", length(a1), length(a2)))
    }
  } else {
    if (!(is.numeric(axes) && length(axes) == 1L && !is.na(axes) && is.finite(axes) && axes == round(axes)) ||
        is.object(axes)) {
      abort_arg("axes", "a whole number, or a list of two vectors of axes (of `x1` and of `x2`)",
                describe_value(axes))
    }
    if (axes < 1) {
      abort_arg("axes", paste0("a whole number >= 1 (keras3 takes `axes` 1-based: N contracts the last ",
                               "N - 1 axes of `x1` with the first N - 1 of `x2`)"), describe_value(axes))
    }
    if (axes - 1 > min(r1, r2)) {
      abort_arg("axes", sprintf(paste0("at most %d here: `axes` = N contracts N - 1 axes (keras3's 1-based ",
                                       "convention) and `x1`, `x2` have ranks %d and %d"), min(r1, r2) + 1L, r1, r2),
                describe_value(axes))
    }
    nc <- as.integer(axes) - 1L
    a1 <- seq.int(r1 - nc, length.out = nc)
    a2 <- seq.int(0L, length.out = nc)
  }
  if (r1 + r2 > length(linalg_letters)) abort_op("op_tensordot", "the operands have too many axes (more than 52 in all)")
  a <- linalg_letters[seq_len(r1)]
  b <- linalg_letters[r1 + seq_len(r2)]
  b[a2 + 1L] <- a[a1 + 1L]
  out <- c(a[-(a1 + 1L)], b[-(a2 + 1L)])
  if (!length(a1)) out <- c(a, b)
  subscripts <- paste0(paste(a, collapse = ""), ",", paste(b, collapse = ""), "->", paste(out, collapse = ""))
  operands <- list(x1 = x1, x2 = x2)
  op_call("tensordot", operands,
          linalg_params(operands, list(subscripts = subscripts, strict = TRUE, fun = "op_tensordot")))
}

# ---- dot-product attention ------------------------------------------------------------

#' @noRd
linalg_dpa_dtype <- function(specs) {
  d <- linalg_dtype(specs[c("query", "key", "value")])
  if (is_float_dtype(d)) d else "float32"
}

#' @noRd
linalg_infer_dpa <- function(specs, params) {
  fun <- "op_dot_product_attention"
  for (a in c("query", "key", "value")) if (is.null(specs[[a]])) abort_arg(a, sprintf("a tensor in %s()", fun))
  q <- specs$query$shape; k <- specs$key$shape; v <- specs$value$shape
  qkv <- specs[c("query", "key", "value")]
  if (length(q) != 4L || length(k) != 4L || length(v) != 4L) {
    abort_op(fun, paste0("`query`, `key` and `value` must have rank 4: query (batch, query length, heads, ",
                         "head size), key and value (batch, key length, key/value heads, head size)"), qkv)
  }
  same <- function(x, y) is.na(x) | is.na(y) | x == y
  if (!all(same(k, v))) abort_op(fun, "`key` and `value` must have the same shape", qkv)
  if (!same(q[1L], k[1L])) abort_op(fun, "`query` and `key` must have the same batch size (axis 1)", qkv)
  if (!same(q[4L], k[4L])) abort_op(fun, "`query` and `key` must have the same head size (axis 4)", qkv)
  if (!is.na(q[3L]) && !is.na(k[3L]) && (k[3L] == 0L || q[3L] %% k[3L] != 0L)) {
    abort_op(fun, sprintf(paste0("the number of query heads (%d, axis 3 of `query`) must be a multiple of ",
                                 "the number of key/value heads (%d, axis 3 of `key`)"), q[3L], k[3L]), qkv)
  }
  full <- c(q[1L], q[3L], q[2L], k[2L])
  for (a in c("bias", "mask")) {
    s <- specs[[a]]
    if (is.null(s)) next
    sh <- s$shape
    ok <- length(sh) <= 4L
    if (ok) {
      p <- c(rep(1L, 4L - length(sh)), sh)
      ok <- all(is.na(p) | is.na(full) | p == 1L | p == full)
    }
    if (!ok) {
      abort_op(fun, sprintf(paste0("`%s` must broadcast to (batch, heads, query length, key length) = %s"),
                            a, fmt_shape(full)), specs[c("query", "key", a)])
    }
  }
  op_spec(q, linalg_dpa_dtype(specs))
}

# The dims of a bias or mask along (B, N, T, S), padded with 1s in front.
#' @noRd
linalg_dpa_dims4 <- function(x) {
  d <- value_shape(x)
  as.integer(c(rep(1L, 4L - length(d)), d))
}

#' @noRd
linalg_dpa_inputs <- function(values) {
  bias <- values$bias; mask <- values$mask
  if (!is.null(bias)) bias <- linalg_as_double_value(bias)
  if (!is.null(mask) && !is.logical(mask)) mask <- mask != 0
  list(query = linalg_as_double_value(values$query), key = linalg_as_double_value(values$key),
       value = linalg_as_double_value(values$value), bias = bias, bias_dims = if (!is.null(bias)) linalg_dpa_dims4(bias) else rep(1L, 4L),
       mask = mask, mask_dims = if (!is.null(mask)) linalg_dpa_dims4(mask) else rep(1L, 4L))
}

#' @noRd
linalg_dpa_forward <- function(values, params) {
  x <- linalg_dpa_inputs(values)
  scale <- params$scale %||% (1 / sqrt(dim(x$key)[4L]))
  out <- cpp_dpa_forward(x$query, x$key, x$value, x$bias, x$bias_dims, x$mask, x$mask_dims, scale,
                         isTRUE(params$is_causal), linalg_float64(params), mh_threads())
  dim(out) <- dim(x$query)
  list(output = out, cache = list(x = x, scale = scale, values = values))
}

#' @noRd
linalg_dpa_backward <- function(grad, cache, params) {
  x <- cache$x
  r <- cpp_dpa_backward(x$query, x$key, x$value, x$bias, x$bias_dims, x$mask, x$mask_dims, cache$scale,
                        isTRUE(params$is_causal), linalg_as_double_value(grad), linalg_float64(params), mh_threads())
  v <- cache$values
  list(linalg_shape_like(r$query, v$query), linalg_shape_like(r$key, v$key), linalg_shape_like(r$value, v$value),
       if (!is.null(v$bias)) linalg_shape_like(r$bias, v$bias), NULL)
}

#' Scaled dot-product attention
#'
#' Keras's `dot_product_attention`: `softmax(scale * query . key + bias)`
#' over the keys (masked keys excluded), times `value`, for every batch
#' element, query position and head. Shapes use B (batch), T (query length),
#' S (key length), N (query heads), K (key/value heads) and H (head size):
#' `query` is `(B, T, N, H)`, `key` and `value` `(B, S, K, H)`. When `K < N`
#' (N a multiple of K), query heads share key/value heads in groups of
#' `N / K` (grouped-query attention; K = 1 is multi-query attention).
#'
#' As in Keras, a masked position gets the logit `-0.7 * 3.38953e38`, so a
#' query whose keys are all masked attends uniformly to all keys. The softmax
#' is computed in the inputs' precision (double for float64). Integer inputs
#' give a float32 result.
#'
#' @param query Query tensor `(B, T, N, H)`.
#' @param key Key tensor `(B, S, K, H)`.
#' @param value Value tensor, the shape of `key`.
#' @param bias Optional tensor added to the logits, broadcastable to
#'   `(B, N, T, S)`.
#' @param mask Optional boolean tensor broadcastable to `(B, N, T, S)`: `TRUE`
#'   where a query may attend to a key (numbers: nonzero is `TRUE`).
#' @param scale Scale of the logits; `NULL` means `1 / sqrt(H)`.
#' @param is_causal `TRUE` to let query `t` attend only to keys `s <= t`.
#' @param flash_attention `NULL`, `TRUE` or `FALSE`: accepted for keras3
#'   compatibility; the result is the same either way (this op materialises
#'   the probabilities).
#' @param attn_logits_soft_cap Must be `NULL`: Keras supports logit
#'   soft-capping only on JAX with TPUs.
#' @returns An array (or symbolic tensor) of the shape of `query`.
#' @family ops
#' @export
#' @examples
#' q <- array(rnorm(2 * 4 * 2 * 8), c(2, 4, 2, 8))
#' k <- array(rnorm(2 * 6 * 2 * 8), c(2, 6, 2, 8))
#' v <- array(rnorm(2 * 6 * 2 * 8), c(2, 6, 2, 8))
#' dim(op_dot_product_attention(q, k, v))
#' # one key/value head shared by both query heads, causal
#' k1 <- k[, , 1, , drop = FALSE]
#' v1 <- v[, , 1, , drop = FALSE]
#' dim(op_dot_product_attention(q, k1, v1, is_causal = TRUE))
op_dot_product_attention <- function(query, key, value, bias = NULL, mask = NULL, scale = NULL,
                                     is_causal = FALSE, flash_attention = NULL, attn_logits_soft_cap = NULL) {
  fun <- "op_dot_product_attention()"
  for (a in c("query", "key", "value")) {
    if (eval(call("missing", as.name(a)))) abort_arg(a, paste("supplied: a tensor in", fun))
  }
  if (!is.null(scale)) {
    if (!(is.numeric(scale) && length(scale) == 1L && !is.na(scale) && is.finite(scale)) || is.object(scale) ||
        !is.null(dim(scale))) {
      abort_arg("scale", paste("a finite number or NULL in", fun), describe_value(scale))
    }
    scale <- as.double(scale)
  }
  check_flag(is_causal, "is_causal")
  check_flag(flash_attention, "flash_attention", null_ok = TRUE)
  if (!is.null(attn_logits_soft_cap)) {
    abort_arg("attn_logits_soft_cap", "NULL: Keras supports logit soft-capping only with JAX on TPUs",
              describe_value(attn_logits_soft_cap))
  }
  operands <- list(query = query, key = key, value = value, bias = bias, mask = mask)
  params <- list(scale = scale, is_causal = is_causal)
  op_call("dot_product_attention", operands, linalg_params(operands, params, dtype_of = linalg_dpa_dtype))
}

# ---- registration ------------------------------------------------------------------

#' @noRd
register_linalg_ops <- function() {
  register_op("matmul", "Matmul", infer = linalg_infer_matmul, forward = linalg_matmul_forward, backward = linalg_matmul_backward)
  register_op("einsum", "Einsum", infer = linalg_infer_einsum, forward = linalg_einsum_forward, backward = linalg_einsum_backward)
  register_op("dot", "Dot", infer = linalg_infer_einsum, forward = linalg_einsum_forward, backward = linalg_einsum_backward)
  register_op("tensordot", "Tensordot", infer = linalg_infer_einsum, forward = linalg_einsum_forward, backward = linalg_einsum_backward)
  register_op("dot_product_attention", "DotProductAttention", infer = linalg_infer_dpa, forward = linalg_dpa_forward,
              backward = linalg_dpa_backward)
}
