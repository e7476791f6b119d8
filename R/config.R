# Package-wide switches: the flash-attention default and the thread count.

.mh_state <- new.env(parent = emptyenv())
.mh_state$flash <- TRUE
.mh_state$threads <- NULL

#' Global switch for flash attention
#'
#' The flash path computes attention tile by tile with an online softmax and
#' never stores the (T, S) attention matrix. A layer uses it when its
#' `flash_attention` is `TRUE`, or `NULL` while this switch is on (the
#' default), and the call does not ask for attention scores. Unlike Keras,
#' the switch is read at call time and `config_is_flash_attention_enabled()`
#' returns `TRUE` or `FALSE`.
#'
#' @returns `config_enable_flash_attention()` and
#'   `config_disable_flash_attention()` return the previous setting
#'   invisibly; `config_is_flash_attention_enabled()` returns `TRUE` or
#'   `FALSE`.
#' @export
#' @examples
#' config_is_flash_attention_enabled()
#' old <- config_disable_flash_attention()
#' config_is_flash_attention_enabled()
#' config_enable_flash_attention()
config_enable_flash_attention <- function() {
  old <- .mh_state$flash
  .mh_state$flash <- TRUE
  invisible(old)
}

#' @rdname config_enable_flash_attention
#' @export
config_disable_flash_attention <- function() {
  old <- .mh_state$flash
  .mh_state$flash <- FALSE
  invisible(old)
}

#' @rdname config_enable_flash_attention
#' @export
config_is_flash_attention_enabled <- function() isTRUE(.mh_state$flash)

# Threads used by the C++ core.
#' @noRd
mh_threads <- function() {
  n <- .mh_state$threads
  if (is.null(n)) {
    n <- default_threads()
    .mh_state$threads <- n
  }
  n
}

# All cores, capped by OMP_THREAD_LIMIT and OMP_NUM_THREADS when set.
#' @noRd
default_threads <- function() {
  n <- cpp_max_threads()
  for (v in c("OMP_THREAD_LIMIT", "OMP_NUM_THREADS")) {
    lim <- suppressWarnings(as.integer(strsplit(Sys.getenv(v), ",")[[1]][1]))
    if (length(lim) == 1L && !is.na(lim) && lim >= 1L) n <- min(n, lim)
  }
  max(1L, as.integer(n))
}

#' Build information
#'
#' Reports how the C++ core was compiled and how it runs. The package is
#' compiled for the compiler's baseline instruction set (SSE2 on x86-64), so
#' a binary runs on any CPU of its architecture; hand-written AVX2 + FMA
#' kernels (matrix products, softmax, conversions) are compiled separately
#' and chosen at run time when the CPU supports both. That choice is made
#' once per R session, at the first call that needs it, and then kept (a
#' cache): setting the environment variable `MULTIHEAD_SIMD=portable` before
#' it is made (before the package's first computation, e.g. in a fresh R
#' process) forces the portable kernels, for tests and comparisons; other
#' values are ignored. Installing with the environment variable
#' `MULTIHEAD_PORTABLE=1` compiles no AVX2 code at all. Results of the two
#' paths agree to float rounding, not bitwise; each path is bitwise the same
#' for any number of threads.
#'
#' @returns A named list:
#'   * `simd`: the kernels in use, `"avx2+fma"` or `"portable"`.
#'   * `simd_compiled`: whether this build contains the AVX2 + FMA kernels.
#'   * `simd_cpu`: whether the CPU (and operating system) support AVX2 and FMA.
#'   * `simd_forced`: whether `MULTIHEAD_SIMD=portable` chose the portable path.
#'   * `eigen_simd`: the instruction sets Eigen was compiled for (its own
#'     products, used on the portable path and for float64).
#'   * `openmp`: whether OpenMP is available.
#'   * `threads`: the number of threads used ([get_num_threads()]).
#'   * `eigen_version`: the Eigen version.
#'   * `malloc_tuned`: whether the package set the C library allocator's
#'     thresholds when it loaded (glibc only): arrays up to 32 MB then come
#'     from the allocator's heap and are reused instead of being mapped
#'     afresh each time (each fresh page costs a page fault), and up to
#'     128 MB of freed memory is kept for reuse rather than returned to the
#'     system at once. Setting the environment variable
#'     `MULTIHEAD_MALLOC_TUNING=off` before the package loads keeps the
#'     allocator's defaults.
#' @export
#' @examples
#' multihead_build_info()
multihead_build_info <- function() {
  info <- cpp_build_info()
  list(simd = info$simd, simd_compiled = info$simd_compiled, simd_cpu = info$simd_cpu,
       simd_forced = info$simd_forced, eigen_simd = info$eigen_simd, openmp = info$openmp,
       threads = mh_threads(), eigen_version = info$eigen_version, malloc_tuned = cpp_malloc_tuned())
}

#' Threads used by the C++ core
#'
#' The core parallelises over (batch, head) pairs in attention and over row
#' blocks in the projections with OpenMP. Work is split the same way whatever
#' the thread count, so results are bitwise identical for any number of
#' threads. The default is all cores, capped by the environment variables
#' `OMP_THREAD_LIMIT` and `OMP_NUM_THREADS` when they are set.
#'
#' @param n A positive whole number, or `NULL` to restore the default.
#' @returns `get_num_threads()`: the number in use. `set_num_threads()`:
#'   the previous number, invisibly.
#' @export
#' @examples
#' old <- set_num_threads(1)
#' get_num_threads()
#' set_num_threads(old)
set_num_threads <- function(n) {
  if (missing(n)) abort_arg("n", "supplied: a positive whole number, or NULL for the default")
  old <- mh_threads()
  .mh_state$threads <- if (is.null(n)) default_threads() else check_whole(n, "n")
  invisible(old)
}

#' @rdname set_num_threads
#' @export
get_num_threads <- function() mh_threads()

#' Memory kept between calls for the core's large work buffers
#'
#' Work buffers of 4 MiB or more (projections, flash-attention operands,
#' gradients) are mapped with transparent huge pages, and those a call
#' releases are kept for the next call instead of being returned to the
#' system: a fresh mapping costs a page fault and the kernel zeroing every
#' page on first touch, 10-15% of a call at B = 32, T = 128, E = 256. This
#' sets how many bytes of released buffers are kept (default 128 MiB, enough
#' for the 11 large buffers, about 100 MiB, of a forward + backward call at
#' B = 8, T = 512, E = 512, 8 heads; with 48 MiB kept, 7 of them would be
#' mapped afresh on every call). At most that much memory stays resident
#' between calls (only what calls have used: a process that never needs large
#' buffers keeps none); a smaller value trades speed for memory. `0` keeps
#' nothing.
#' The setting is for the whole R process; results never depend on it.
#'
#' @param bytes A whole number of bytes `>= 0` (for example `64 * 2^20`),
#'   or `NULL` to restore the default.
#' @returns `get_buffer_cache_size()`: the current limit in bytes.
#'   `set_buffer_cache_size()`: the previous limit, invisibly.
#' @export
#' @examples
#' old <- set_buffer_cache_size(64 * 2^20)
#' get_buffer_cache_size()
#' set_buffer_cache_size(old)
set_buffer_cache_size <- function(bytes) {
  if (missing(bytes)) abort_arg("bytes", "supplied: a whole number of bytes >= 0, or NULL for the default")
  if (!is.null(bytes)) {
    ok <- is.numeric(bytes) && length(bytes) == 1L && is.null(dim(bytes)) && !is.object(bytes) &&
      is.finite(bytes) && bytes == round(bytes) && bytes >= 0 && bytes <= 2^48
    if (!ok) {
      abort_arg("bytes", "a whole number of bytes between 0 and 2^48 (e.g. 128 * 2^20), or NULL for the default",
                describe_value(bytes))
    }
  }
  old <- cpp_buffer_cache_limit(NULL)
  cpp_buffer_cache_limit(if (is.null(bytes)) -1 else as.double(bytes))  # -1: the core's default
  invisible(old)
}

#' @rdname set_buffer_cache_size
#' @export
get_buffer_cache_size <- function() cpp_buffer_cache_limit(NULL)
