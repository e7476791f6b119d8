# The merge, reshaping, Lambda and TimeDistributed layers on a
# transformer-sized activation: forward and backprop() times (median of
# `rounds` rounds of `reps` calls, milliseconds), and for reference the
# same data movement in base R and a Dense layer on the whole input (what
# TimeDistributed(Dense) computes in one call instead of one per step).
#
#   Rscript bench/merge-reshape.R [--lib LIB] [--shape B,T,E] [--rounds 5] [--reps 5]
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))),
                 "bench-setup.R"))  # args, opt(), lib; multihead loaded
shp <- as.integer(strsplit(opt("shape", "32,100,64"), ",")[[1]])
rounds <- as.integer(opt("rounds", "5")); reps <- as.integer(opt("reps", "5"))
set.seed(1)
x <- array(rnorm(prod(shp)), shp)
time_ms <- function(f) {
  f()
  per_round <- vapply(seq_len(rounds), function(r) {
    t0 <- proc.time()[["elapsed"]]
    for (i in seq_len(reps)) f()
    (proc.time()[["elapsed"]] - t0) / reps * 1000
  }, numeric(1))
  stats::median(per_round)
}
B <- shp[1]; Tn <- shp[2]; E <- shp[3]
cases <- list(
  add = list(layer_add(), list(x, x)),
  multiply = list(layer_multiply(), list(x, x)),
  average = list(layer_average(), list(x, x)),
  concatenate = list(layer_concatenate(), list(x, x)),
  concatenate_time = list(layer_concatenate(axis = 2), list(x, x)),
  reshape = list(layer_reshape(target_shape = c(-1, 2 * E)), x),
  permute = list(layer_permute(dims = c(2, 1)), x),
  masking = list(layer_masking(), x),
  identity = list(layer_identity(), x),
  lambda_tanh = list(layer_lambda(f = function(x) op_tanh(x) * 2), x),
  time_distributed_dense = list(layer_time_distributed(layer = layer_dense(units = E)), x),
  dense_whole_input = list(layer_dense(units = E), x)
)
rows <- lapply(names(cases), function(nm) {
  layer <- cases[[nm]][[1]]; input <- cases[[nm]][[2]]
  out <- layer(input)
  g <- array(1, dim(out))
  data.frame(layer = nm, forward_ms = time_ms(function() layer(input)),
             backprop_ms = time_ms(function() backprop(layer, input, grad_output = g)))
})
cat(sprintf("input (%s), %d rounds x %d calls, median ms; threads %d\n", paste(shp, collapse = ", "), rounds,
            reps, get_num_threads()))
print(do.call(rbind, rows), row.names = FALSE, digits = 3)
base <- data.frame(base_r = c("x + x", "aperm(x, c(1, 3, 2))", "c(x, x) (concatenation along the last axis)"),
                   ms = c(time_ms(function() x + x), time_ms(function() aperm(x, c(1L, 3L, 2L))),
                          time_ms(function() c(x, x))))
print(base, row.names = FALSE, digits = 3)
