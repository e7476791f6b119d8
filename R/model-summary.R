# summary() and print() of models: a keras3-like table of layers (name and
# type, output shape, parameter count and, for functional models, the
# tensors each layer is connected to) followed by the parameter totals.

#' Summaries of models
#'
#' `summary(model)` and `print(model)` show a table of the model's layers
#' like keras3's: `Layer (type)`, `Output Shape` (`NA` = unknown size),
#' `Param #` and, for functional models, `Connected to` (the producing layer,
#' the index of its call and of its output, as in Keras), then the total,
#' trainable and non-trainable parameter counts with their size in memory.
#'
#' @param object,x A model.
#' @param ... Unused.
#' @returns `object` (or `x`), invisibly.
#' @export
#' @examples
#' x <- keras_input(shape = c(6, 8))
#' y <- layer_multi_head_attention(x, num_heads = 2, key_dim = 4)
#' summary(keras_model(x, x + y))
summary.multihead_model <- function(object, ...) {
  cat(model_summary_lines(layer_self(object)), sep = "\n")
  invisible(object)
}

#' @rdname summary.multihead_model
#' @export
print.multihead_model <- function(x, ...) {
  cat(model_summary_lines(layer_self(x)), sep = "\n")
  invisible(x)
}

#' @rdname summary.multihead_model
#' @export
format.multihead_model <- function(x, ...) model_summary_lines(layer_self(x))

#' @noRd
model_summary <- function(self, ...) {
  cat(model_summary_lines(self), sep = "\n")
  invisible(NULL)
}

#' @noRd
model_summary_lines <- function(self) {
  functional <- !identical(self$class_name, "Sequential")
  rows <- if (isTRUE(self$built)) summary_rows(self, functional) else summary_rows_unbuilt(self)
  header <- c("Layer (type)", "Output Shape", "Param #", if (functional) "Connected to")
  align <- c("left", "left", "right", if (functional) "left")
  c(sprintf("Model: \"%s\"", self$name),
    render_box_table(header, rows, align),
    summary_totals(self))
}

#' @noRd
layer_type_label <- function(s) sprintf("%s (%s)", s$name, s$class_name)

#' @noRd
summary_rows_unbuilt <- function(self) {
  lapply(self$layers, function(l) {
    s <- layer_self(l)
    list(layer_type_label(s), "?", if (isTRUE(s$built)) fmt_count(layer_count_any(s)) else "0 (unbuilt)")
  })
}

#' @noRd
layer_count_any <- function(s) sum(vapply(any_layer_variables(s), length, numeric(1)))

#' @noRd
fmt_count <- function(n) format(n, big.mark = ",", scientific = FALSE, trim = TRUE)

# One row per layer (a shared layer once, listing every call's inputs) and
# per elementwise operation, in graph order.
#' @noRd
summary_rows <- function(self, functional) {
  graph <- self$graph
  # node index of each node among the calls of its layer, for "Connected to"
  call_index <- list()
  counts <- list()
  for (node in graph$nodes) {
    key <- callee_name(node$callee)
    k <- if (is.null(counts[[key]])) 0L else counts[[key]]
    call_index[[node$id]] <- k
    counts[[key]] <- k + 1L
  }
  tensor_ref <- function(t) {
    k <- if (identical(t$node$kind, "input")) 0L else call_index[[t$node$id]]
    if (is.null(k)) k <- 0L
    sprintf("%s[%d][%d]", callee_name(t$node$callee), k, t$index - 1L)
  }
  rows <- list()
  keys <- character()
  if (functional) {
    for (t in graph$inputs) {
      if (!identical(t$node$kind, "input")) next
      rows[[length(rows) + 1L]] <- list(layer_type_label(layer_self(t$node$callee)), fmt_shape(t$shape), "0", "-")
      keys <- c(keys, callee_name(t$node$callee))
    }
  }
  for (node in graph$nodes) {
    if (identical(node$kind, "variable")) next  # a layer's weight used directly, not a row
    key <- callee_name(node$callee)
    shapes <- vapply(node$output_shapes, fmt_shape, character(1))
    conns <- vapply(c(node$inputs, node$arg_tensors), tensor_ref, character(1))
    i <- match(key, keys)
    if (!is.na(i)) {
      r <- rows[[i]]
      if (!identical(r[[2]], shapes)) r[[2]] <- "multiple"
      if (functional) r[[4]] <- c(r[[4]], conns)
      rows[[i]] <- r
      next
    }
    if (identical(node$kind, "op")) {
      label <- sprintf("%s (%s)", node$callee$name, node$callee$class_name)
      params <- "0"
    } else {
      s <- layer_self(node$callee)
      label <- layer_type_label(s)
      params <- fmt_count(layer_count_any(s))
    }
    rows[[length(rows) + 1L]] <- c(list(label, shapes, params), if (functional) list(conns))
    keys <- c(keys, key)
  }
  rows
}

#' @noRd
summary_totals <- function(self) {
  total <- 0; trainable <- 0; bytes_total <- 0; bytes_trainable <- 0
  walk <- function(s, parent_trainable) {
    for (l in s$layers) {
      ls <- layer_self(l)
      if (!is.null(ls$graph) || identical(ls$class_name, "Sequential")) {
        walk(ls, parent_trainable && isTRUE(ls$trainable))
        next
      }
      if (!isTRUE(ls$built)) next
      n <- sum(vapply(layer_variables(ls), length, numeric(1)))
      b <- n * if (identical(ls$dtype, "float64")) 8 else 4
      total <<- total + n; bytes_total <<- bytes_total + b
      if (parent_trainable && isTRUE(ls$trainable)) {
        trainable <<- trainable + n; bytes_trainable <<- bytes_trainable + b
      }
    }
  }
  walk(self, isTRUE(self$trainable))
  c(sprintf(" Total params: %s (%s)", fmt_count(total), fmt_param_bytes(bytes_total)),
    sprintf(" Trainable params: %s (%s)", fmt_count(trainable), fmt_param_bytes(bytes_trainable)),
    sprintf(" Non-trainable params: %s (%s)", fmt_count(total - trainable),
            fmt_param_bytes(bytes_total - bytes_trainable)))
}

# Keras's size format: "4.25 KB" (powers of 1024).
#' @noRd
fmt_param_bytes <- function(b) {
  units <- c("B", "KB", "MB", "GB", "TB")
  i <- if (b < 1) 1L else min(length(units), floor(log(b, 1024)) + 1L)
  sprintf("%.2f %s", b / 1024^(i - 1L), units[i])
}

# Draws a table with a heavy header and light body, as keras3 (rich) does;
# ASCII when the output is not UTF-8. `rows`: list of rows, each a list of
# cells, each cell a character vector (one element per line).
#' @noRd
render_box_table <- function(header, rows, align) {
  utf8 <- cli::is_utf8_output()
  ch <- if (utf8) {
    list(h_top = c("\u250f", "\u2501", "\u2533", "\u2513"), h_side = "\u2503",
         h_bottom = c("\u2521", "\u2501", "\u2547", "\u2529"), side = "\u2502",
         mid = c("\u251c", "\u2500", "\u253c", "\u2524"), bottom = c("\u2514", "\u2500", "\u2534", "\u2518"))
  } else {
    list(h_top = c("+", "=", "+", "+"), h_side = "|", h_bottom = c("+", "=", "+", "+"), side = "|",
         mid = c("+", "-", "+", "+"), bottom = c("+", "-", "+", "+"))
  }
  ncol <- length(header)
  widths <- nchar(header, type = "width")
  for (r in rows) for (j in seq_len(ncol)) widths[j] <- max(widths[j], nchar(r[[j]], type = "width"))
  pad <- function(s, w, a) {
    gap <- strrep(" ", w - nchar(s, type = "width"))
    if (a == "right") paste0(gap, s) else paste0(s, gap)
  }
  rule <- function(p) paste0(p[1], paste(vapply(widths, function(w) strrep(p[2], w + 2L), ""),
                                          collapse = p[3]), p[4])
  line <- function(cells, side) {
    paste0(side, paste(vapply(seq_len(ncol), function(j) paste0(" ", pad(cells[j], widths[j], align[j]), " "), ""),
                       collapse = side), side)
  }
  out <- c(rule(ch$h_top), line(header, ch$h_side), rule(ch$h_bottom))
  for (i in seq_along(rows)) {
    r <- rows[[i]]
    h <- max(vapply(r, length, integer(1)))
    for (k in seq_len(h)) {
      out <- c(out, line(vapply(r, function(cell) if (k <= length(cell)) cell[k] else "", ""), ch$side))
    }
    if (i < length(rows)) out <- c(out, rule(ch$mid))
  }
  c(out, rule(ch$bottom))
}
