# adapt() and calls of layer_text_vectorization() on many short texts.
#
#   Rscript bench/text-vectorization.R [--lib LIB] [--n 1e6] [--rounds 3]
#                                      [--words 20000] [--mode int]
#
# Texts: `n` "reviews" of 3 to 12 words drawn (Zipf-like, as real text) from
# a vocabulary of `words` words with capitals, punctuation and a few
# non-ASCII words. Times (seconds, median over rounds, elapsed):
#   adapt       adapt(layer, texts) with max_tokens = 20000
#   call        layer(texts) (output_sequence_length = 16 in "int" mode)
# (elapsed and CPU), and one run of the R implementation of adapt()'s steps
# (standardize, split, count, order) that R-function standardize / split use.
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))),
                 "bench-setup.R"))  # args, opt(), lib; multihead loaded
n <- as.numeric(opt("n", 1e6))
rounds <- as.integer(opt("rounds", 3))
n_words <- as.integer(opt("words", 20000))
mode <- opt("mode", "int")

set.seed(1)
base <- c(paste0("word", seq_len(n_words - 4)), "Caf\u00e9", "na\u00efve", "\u00c9t\u00e9", "\u0416\u0443\u043a")
prob <- 1 / seq_along(base)
len <- sample(3:12, n, replace = TRUE)
tokens <- sample(base, sum(len), replace = TRUE, prob = prob)
caps <- runif(length(tokens)) < 0.05
tokens[caps] <- toupper(tokens[caps])
punct <- runif(length(tokens)) < 0.1
tokens[punct] <- paste0(tokens[punct], sample(c(",", ".", "!", "?"), sum(punct), replace = TRUE))
ends <- cumsum(len)
texts <- vapply(seq_len(n), function(i) paste(tokens[(ends[i] - len[i] + 1):ends[i]], collapse = " "),
                character(1))
cat(sprintf("%s texts, %s tokens, %.1f MB of text; R %s, %s\n", format(n, big.mark = ","),
            format(length(tokens), big.mark = ","), sum(nchar(texts, "bytes")) / 2^20,
            getRversion(), Sys.getlocale("LC_CTYPE")))

# elapsed and CPU (user + system) seconds of each round: on a shared machine
# the CPU time is the cost, the elapsed time includes waiting for a core
time_it <- function(expr) {
  expr <- substitute(expr)
  env <- parent.frame()
  t <- vapply(seq_len(rounds), function(r) {
    gc(FALSE)
    st <- system.time(eval(expr, env))
    c(elapsed = st[["elapsed"]], cpu = st[["user.self"]] + st[["sys.self"]])
  }, numeric(2))
  t
}
report <- function(label, t, extra) {
  cat(sprintf("%-6s median %.2f s elapsed, %.2f s CPU (rounds, elapsed: %s); %s\n", label,
              median(t["elapsed", ]), median(t["cpu", ]), paste(sprintf("%.2f", t["elapsed", ]), collapse = ", "),
              extra))
}

layer <- layer_text_vectorization(max_tokens = 20000, output_mode = mode,
                                  output_sequence_length = if (mode == "int") 16L)
t_adapt <- time_it(adapt(layer, texts))
report("adapt:", t_adapt, sprintf("vocabulary size %d", length(get_vocabulary(layer))))
t_call <- time_it(out <- layer(texts))
report("call:", t_call, sprintf("output %s", paste(dim(out), collapse = " x ")))

# the R implementation of the same steps (used for R-function standardize / split)
ns <- asNamespace("multihead")
self <- ns$layer_self(layer)
cat("R steps (one run, the path of R-function standardize / split), seconds elapsed / CPU:\n")
step <- function(label, expr) {
  st <- system.time(v <- expr)
  cat(sprintf("  %-12s %.2f / %.2f\n", label, st[["elapsed"]], st[["user.self"]] + st[["sys.self"]]))
  v
}
tx <- step("texts", ns$tv_texts(self, texts))
st <- step("standardize", ns$tv_standardize(self, tx$text))
tok <- step("split", ns$tv_split(self, st, tx$n, tx$per_row))
acc <- step("count", ns$lookup_count(tok$values, tok$rows, tok$n))
invisible(step("order", ns$lookup_finalize(self$lookup, acc, "bench")))
