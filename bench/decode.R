# Cached (key/value) decoding against re-running the whole sequence per token.
#
#   Rscript bench/decode.R [--lib LIB] [--threads 2] [--prompt 32] [--tokens 256]
#                          [--modes cached,full] [--jsonl FILE]
#
# A 4-block post-norm transformer decoder as bench/decode_torch.py builds it
# (token embedding 1000 x 256 + learned positions; per block causal
# self-attention 8 heads of 32 -> add -> layer norm -> dense 1024 relu ->
# dense 256 -> add -> layer norm; dense 1000 logits), float32, batch 1,
# greedy, random weights (seeded). Generates --tokens tokens after a --prompt
# token prompt:
#   cached  one call per token with `cache` / `cache_update_index` on every
#           attention layer (the prompt in one call);
#   full    the whole sequence through the decoder for every new token.
# Prints one JSON line per mode: ms per generated token (the prompt's call
# included in "cached"), and whether both modes generated the same tokens.
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))),
                 "bench-setup.R"))  # args, opt(), lib; multihead loaded
threads <- as.integer(opt("threads", 2))
prompt_len <- as.integer(opt("prompt", 32))
n_new <- as.integer(opt("tokens", 256))
modes <- strsplit(opt("modes", "cached,full"), ",")[[1]]
jsonl <- opt("jsonl", NULL)
set_num_threads(threads)

vocab <- 1000L; E <- 256L; heads <- 8L; key_dim <- 32L; ff <- 1024L; n_blocks <- 4L
max_len <- prompt_len + n_new

set.seed(1)
decoder <- list(
  tokens = layer_embedding(input_dim = vocab, output_dim = E),
  positions = layer_embedding(input_dim = max_len, output_dim = E),
  blocks = lapply(seq_len(n_blocks), function(i) list(
    attention = layer_multi_head_attention(num_heads = heads, key_dim = key_dim),
    norm_1 = layer_layer_normalization(epsilon = 1e-5),
    dense_1 = layer_dense(units = ff, activation = "relu"),
    dense_2 = layer_dense(units = E),
    norm_2 = layer_layer_normalization(epsilon = 1e-5))),
  logits = layer_dense(units = vocab))

# The logits of the last position of `ids` (a 1 x n matrix of token ids at
# positions start .. start + n - 1). With `caches` (one per block), the
# attention layers read and update them; the new caches are returned.
decode <- function(ids, start, caches = NULL) {
  n <- ncol(ids)
  x <- decoder$tokens(ids) + decoder$positions(matrix(start + seq_len(n) - 1L, 1L))
  for (i in seq_len(n_blocks)) {
    b <- decoder$blocks[[i]]
    if (is.null(caches)) {
      a <- b$attention(x, x, use_causal_mask = TRUE)
    } else {
      r <- b$attention(x, x, cache = caches[[i]], cache_update_index = start, use_causal_mask = TRUE)
      a <- r$output
      caches[[i]] <- r$cache
    }
    x <- b$norm_1(x + a)
    x <- b$norm_2(x + b$dense_2(b$dense_1(x)))
  }
  list(logits = decoder$logits(x[, n, , drop = FALSE])[1, 1, ], caches = caches)
}

prompt <- matrix(sample.int(vocab, prompt_len, replace = TRUE) - 1L, 1L)

generate_cached <- function() {
  caches <- rep(list(array(0, c(1L, 2L, max_len, heads, key_dim))), n_blocks)
  r <- decode(prompt, 0L, caches)
  out <- integer(n_new)
  for (i in seq_len(n_new)) {
    out[i] <- which.max(r$logits) - 1L
    if (i < n_new) r <- decode(matrix(out[i], 1L), prompt_len + i - 1L, r$caches)
  }
  out
}

generate_full <- function() {
  ids <- prompt
  out <- integer(n_new)
  for (i in seq_len(n_new)) {
    out[i] <- which.max(decode(ids, 0L)$logits) - 1L
    ids <- cbind(ids, out[i])
  }
  out
}

invisible(decode(prompt, 0L))  # warm-up (builds the layers)
tokens <- list()
for (mode in modes) {
  f <- switch(mode, cached = generate_cached, full = generate_full, stop("unknown mode ", mode))
  t0 <- proc.time()[["elapsed"]]
  tokens[[mode]] <- f()
  elapsed <- proc.time()[["elapsed"]] - t0
  line <- sprintf(paste0('{"impl": "multihead", "mode": "%s", "threads": %d, "prompt": %d, "tokens": %d, ',
                         '"ms_per_token": %.4f, "total_s": %.3f}'),
                  mode, threads, prompt_len, n_new, 1000 * elapsed / n_new, elapsed)
  cat(line, "\n", sep = "")
  if (!is.null(jsonl)) cat(line, "\n", sep = "", file = jsonl, append = TRUE)
}
if (all(c("cached", "full") %in% names(tokens))) {
  cat(sprintf('{"same_tokens": %s}\n', tolower(identical(tokens$cached, tokens$full))))
}
