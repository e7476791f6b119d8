# Reading multihead's own RDS files as data only.
#
# readRDS() / unserialize() rebuild whatever a file describes: closures,
# environments, calls, byte code, and (R < 4.4, CVE-2024-27322) delayed
# expressions (promises) that run as soon as they are touched. A model file
# comes from anywhere, so its bytes are never handed to readRDS(),
# unserialize() or load(): read_plain_rds() parses R's serialization format
# itself and builds only plain data, on every R version.
#
# The format (R's src/main/serialize.c, "R Internals" 1.8): an optional
# gzip / bzip2 / xz wrapper (gzfile() / bzfile() / xzfile()), then "X\n" (XDR binary: all
# numbers big-endian; "A\n" ascii and "B\n" native are refused), the
# serialization version (2 or 3), the writer's and the minimal reader's R
# versions, for version 3 the length and bytes of the native encoding's
# name, then one item. An item starts with a 32-bit flags word:
#   bits 0-7   the type (SEXPTYPE, or 238-255 for the special codes below)
#   bit  8     is an object (has a "class" attribute)
#   bit  9     has attributes (a pairlist, written after the item's data)
#   bit  10    has a tag (pairlist cells)
#   bits 12-27 "levels": for strings (CHARSXP) the encoding (bit 3 UTF-8,
#              bit 2 latin1, bit 1 bytes, bit 6 ASCII)
# Accepted here, and nothing else:
#   254 NULL
#   10 logical, 13 integer, 14 double, 15 complex, 24 raw: length (int32,
#      or -1 then two int32 for a long length), then the values in bulk
#   16 character: length, then per element a CHARSXP (9): flags, byte
#      length (-1 for NA), bytes
#   19 list: length, then the elements as items
#   attributes: a pairlist (2) of cells, each with a tag (a symbol, 1: a
#      CHARSXP; or a reference, 255, to a symbol read before: index in
#      flags >> 8, or the next int32 when that is 0) and a value, ended by
#      NULL (254)
#   238 ALTREP: a pairlist (class symbol, package symbol, type), the state,
#      the attributes. Only the forms saveRDS() writes for plain data are
#      accepted and expanded: compact_intseq / compact_realseq (state:
#      double (n, start, step)), deferred_string (state: pairlist of the
#      numbers and an integer of options; as.character() of the numbers)
#      and wrap_* (state: pairlist of the wrapped vector and its metadata).
# Everything else (functions, environments, promises, calls, symbols as
# values, byte code, external pointers, weak references, S4 objects, other
# ALTREP classes, built-ins, references to environments) is refused with an
# error that names it and where it was found. Every declared length is
# checked against the bytes left before anything is allocated; vectors are
# read in one readBin() each.

# Deepest nesting of lists accepted (model configurations nest about ten
# levels, a nested model a few more), the most elements ALTREP sequences may expand to in one file
# (their state is a few bytes, so their length is not bounded by the file),
# and the largest decompressed content read (2 GiB: no vector of a file may
# have 2^31 elements either).
.plain_rds_max_depth <- 64L
.plain_rds_max_expanded <- 2^24
.plain_rds_max_bytes <- 2^31 - 1

# The error for a file that is not a valid multihead file: `kind` is
# "model" or "weights", `why` says what was found and where.
#' @noRd
abort_invalid_file <- function(filepath, kind, why) {
  abort_msg(sprintf("\"%s\" is not a valid multihead %s file: %s.", filepath, kind, why),
            class = "multihead_error_file")
}

# The object stored in the RDS file `filepath`, built from plain data only;
# an error naming the file (abort_invalid_file()) for anything else.
#' @noRd
read_plain_rds <- function(filepath, kind) {
  fail <- function(why) abort_invalid_file(filepath, kind, why)
  size <- file.size(filepath)
  if (is.na(size)) fail("it cannot be read")
  buf <- plain_rds_decompress(filepath, size, fail)
  st <- new.env(parent = emptyenv())
  st$con <- rawConnection(buf)
  on.exit(close(st$con), add = TRUE)
  st$pos <- 0
  st$n <- length(buf)
  st$refs <- character()
  st$native_utf8 <- FALSE
  st$expanded <- 0
  st$fail <- fail
  rm(buf)
  plain_rds_header(st)
  x <- plain_rds_item(st, "record", 0L)
  if (st$pos < st$n) fail(sprintf("it has %.0f bytes after the end of its data", st$n - st$pos))
  x
}

# The serialized bytes: the file itself, or its gzip / bzip2 / xz content
# read through R's decompressing connections in chunks (memDecompress()
# loops without end on a truncated gzip stream). A truncated or corrupt
# stream gives a prefix (the parser then finds it truncated) or a warning
# (refused here). At most .plain_rds_max_bytes are decompressed.
#' @noRd
plain_rds_decompress <- function(filepath, size, fail) {
  read_at <- function(offset, k) {
    con <- file(filepath, "rb", raw = TRUE)
    on.exit(close(con))
    if (offset > 0) seek(con, offset)
    readBin(con, "raw", k)
  }
  head <- tryCatch(read_at(0, 6L), error = function(e) fail("it cannot be read"))
  starts <- function(magic) length(head) >= length(magic) && all(head[seq_along(magic)] == magic)
  type <- if (starts(as.raw(c(0x1f, 0x8b)))) "gzip" else if (starts(charToRaw("BZh"))) "bzip2" else
    if (starts(as.raw(c(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)))) "xz" else "none"
  if (identical(type, "none")) return(tryCatch(read_at(0, size), error = function(e) fail("it cannot be read")))
  corrupt <- function(...) fail(sprintf("its %s-compressed content is truncated or corrupt", type))
  tryCatch({
    con <- switch(type, gzip = gzfile(filepath, "rb"), bzip2 = bzfile(filepath, "rb"), xz = xzfile(filepath, "rb"))
    on.exit(close(con), add = TRUE)
    # gzip's trailer holds the content's size modulo 2^32: read that much
    # at once (bounded by the file's size times 64, so a forged trailer
    # allocates little), then whatever follows in chunks
    hint <- if (identical(type, "gzip") && size >= 18) sum(as.double(as.integer(read_at(size - 4, 4L))) * 256^(0:3)) else 0
    first <- min(hint + 1, 64 * size + 1048576, .plain_rds_max_bytes)
    chunks <- list(readBin(con, "raw", first))
    total <- length(chunks[[1L]])
    if (total < first) return(chunks[[1L]])
    repeat {
      chunk <- readBin(con, "raw", 16777216L)
      if (!length(chunk)) break
      total <- total + length(chunk)
      if (total > .plain_rds_max_bytes) {
        fail(sprintf("its content decompresses to more than %.0f bytes", .plain_rds_max_bytes))
      }
      chunks[[length(chunks) + 1L]] <- chunk
    }
    if (length(chunks) == 1L) chunks[[1L]] else unlist(chunks, use.names = FALSE)
  }, warning = corrupt, error = function(e) if (inherits(e, "multihead_error")) stop(e) else corrupt())
}

#' @noRd
plain_rds_header <- function(st) {
  fail <- st$fail
  if (st$n < 2) fail("it is empty or too short to be an RDS file")
  magic <- plain_rds_bytes(st, 2, "the header")
  if (identical(magic, charToRaw("X\n"))) {
    version <- plain_rds_int(st, 1, "the header")
    if (!(version %in% c(2L, 3L))) fail(sprintf("its serialization version is %d, not 2 or 3", version))
    plain_rds_int(st, 2, "the header")   # the writer's and the minimal reader's R versions
    if (version == 3L) {
      nelen <- plain_rds_int(st, 1, "the header")
      if (nelen < 0L || nelen > 256L) fail("its header declares an invalid native encoding")
      nb <- plain_rds_bytes(st, nelen, "the header")
      if (any(nb == as.raw(0L)) || any(nb > as.raw(127L))) fail("its header declares an invalid native encoding")
      native <- rawToChar(nb)
      st$native_utf8 <- toupper(gsub("[^A-Za-z0-9]", "", native)) == "UTF8"
    }
    return(invisible(NULL))
  }
  if (identical(magic, charToRaw("A\n"))) fail("it is in R's ascii serialization format, which multihead does not read (save_model() writes the binary XDR format)")
  if (identical(magic, charToRaw("B\n"))) fail("it is in R's native binary serialization format, which multihead does not read (save_model() writes the binary XDR format)")
  if (identical(magic, charToRaw("RD"))) fail("it was written by save(), not by save_model()")
  fail("it is not an RDS file")
}

# ---- low-level reads: each checks the bytes left first ---------------------

#' @noRd
plain_rds_need <- function(st, nbytes, where) {
  if (nbytes > st$n - st$pos) {
    st$fail(sprintf("it is truncated: %s needs %.0f bytes but %.0f are left", where, nbytes, st$n - st$pos))
  }
}

#' @noRd
plain_rds_int <- function(st, k, where) {
  plain_rds_need(st, 4 * k, where)
  st$pos <- st$pos + 4 * k
  readBin(st$con, "integer", k, size = 4L, endian = "big")
}

# An item's flags word (never NA).
#' @noRd
plain_rds_flags <- function(st, where) {
  flags <- plain_rds_int(st, 1, where)
  if (is.na(flags)) st$fail(sprintf("%s has invalid flags", where))
  flags
}

#' @noRd
plain_rds_bytes <- function(st, k, where) {
  plain_rds_need(st, k, where)
  st$pos <- st$pos + k
  readBin(st$con, "raw", k)
}

# A vector length: int32, or -1 and two int32 (upper, lower) for long
# vectors. Vectors of 2^31 elements or more are refused.
#' @noRd
plain_rds_length <- function(st, where) {
  len <- plain_rds_int(st, 1, where)
  if (is.na(len) || len < -1L) st$fail(sprintf("%s declares a negative length", where))
  if (len == -1L) {
    parts <- plain_rds_int(st, 2, where)
    lower <- if (parts[[2L]] < 0L || is.na(parts[[2L]])) as.double(parts[[2L]]) + 2^32 else parts[[2L]]
    if (is.na(lower)) lower <- 2^31
    total <- as.double(parts[[1L]]) * 2^32 + lower
    st$fail(sprintf("%s declares a vector of %.0f elements, more than multihead's files hold", where, total))
  }
  len
}

#' @noRd
plain_rds_type_name <- function(type) {
  switch(as.character(type),
         "0" = "a NULL of an unexpected form", "1" = "a symbol (a name, part of R code)", "2" = "a pairlist",
         "3" = "a function (closure)", "4" = "an environment", "5" = "a delayed expression (promise)",
         "6" = "a language object (a call)", "7" = "a built-in function", "8" = "a built-in function",
         "9" = "a bare string element out of place", "17" = "a `...` object", "18" = "an object of type \"any\"",
         "20" = "an expression vector", "21" = "byte code", "22" = "an external pointer", "23" = "a weak reference",
         "25" = "an S4 object", "238" = "an ALTREP object", "239" = "a pairlist with attributes",
         "240" = "a language object with attributes", "241" = "the base environment",
         "242" = "the empty environment", "243" = "a byte code reference", "244" = "a byte code definition",
         "245" = "a generic reference", "246" = "a class reference", "247" = "a persistent reference",
         "248" = "a package environment", "249" = "a namespace", "250" = "the base namespace",
         "251" = "a missing argument", "252" = "an unbound value", "253" = "the global environment",
         "255" = "a reference to an earlier object", sprintf("an object of unknown type %d", type))
}

#' @noRd
plain_rds_refuse <- function(st, type, where) {
  st$fail(sprintf("%s is %s, which is not plain data (a model file holds no R code)", where,
                  plain_rds_type_name(type)))
}

# ---- items ---------------------------------------------------------------------

#' @noRd
plain_rds_item <- function(st, where, depth, flags = plain_rds_flags(st, where)) {
  if (depth > .plain_rds_max_depth) {
    st$fail(sprintf("%s is nested more than %d levels deep",
                    if (nchar(where) > 60L) paste0(substr(where, 1L, 60L), "...") else where, .plain_rds_max_depth))
  }
  type <- flags %% 256L
  if (type == 254L) return(NULL)
  x <- switch(as.character(type),
              "10" = , "13" = , "14" = , "15" = , "24" = plain_rds_atomic(st, type, where),
              "16" = plain_rds_strings(st, where),
              "19" = plain_rds_list(st, where, depth),
              "238" = return(plain_rds_altrep(st, where, depth)),
              "255" = {
                idx <- plain_rds_ref_index(st, flags, where)
                st$fail(sprintf("%s is a reference to %s, which is not plain data", where,
                                if (idx <= length(st$refs)) sprintf("the symbol `%s`", st$refs[[idx]])
                                else "an object that was never read"))
              },
              plain_rds_refuse(st, type, where))
  if (bitwAnd(flags, 512L) != 0L) x <- plain_rds_set_attributes(st, x, plain_rds_attributes(st, where, depth), where)
  x
}

#' @noRd
plain_rds_atomic <- function(st, type, where) {
  n <- plain_rds_length(st, where)
  size <- switch(as.character(type), "10" = 4, "13" = 4, "14" = 8, "15" = 16, "24" = 1)
  plain_rds_need(st, size * n, where)
  st$pos <- st$pos + size * n
  switch(as.character(type),
         "10" = {
           v <- readBin(st$con, "integer", n, size = 4L, endian = "big")
           storage.mode(v) <- "logical"
           v
         },
         "13" = readBin(st$con, "integer", n, size = 4L, endian = "big"),
         "14" = readBin(st$con, "double", n, size = 8L, endian = "big"),
         "15" = {
           parts <- readBin(st$con, "double", 2 * n, size = 8L, endian = "big")
           complex(real = parts[c(TRUE, FALSE)], imaginary = parts[c(FALSE, TRUE)])
         },
         "24" = readBin(st$con, "raw", n))
}

#' @noRd
plain_rds_strings <- function(st, where) {
  n <- plain_rds_length(st, where)
  plain_rds_need(st, 8 * n, where)   # each element: flags and length at least
  out <- character(n)
  for (i in seq_len(n)) out[i] <- plain_rds_charsxp(st, sprintf("element %d of %s", i, where))
  out
}

# One string element (CHARSXP), its flags included.
#' @noRd
plain_rds_charsxp <- function(st, where) {
  flags <- plain_rds_flags(st, where)
  type <- flags %% 256L
  if (type != 9L) plain_rds_refuse(st, type, where)
  len <- plain_rds_int(st, 1, where)
  if (is.na(len) || len < -1L) st$fail(sprintf("%s declares a negative length", where))
  if (len == -1L) return(NA_character_)
  bytes <- plain_rds_bytes(st, len, where)
  if (any(bytes == as.raw(0L))) st$fail(sprintf("%s contains a NUL byte", where))
  s <- rawToChar(bytes)
  levels <- flags %/% 4096L
  # the declared encoding must hold: UTF-8 (flagged, or native in a UTF-8
  # writer) must be valid, ASCII must be 7-bit
  utf8 <- bitwAnd(levels, 8L) != 0L || (isTRUE(st$native_utf8) && bitwAnd(levels, 4L + 2L) == 0L)
  if ((utf8 && !validUTF8(s)) || (bitwAnd(levels, 64L) != 0L && any(bytes > as.raw(127L)))) {
    st$fail(sprintf("%s is not valid text in its declared encoding", where))
  }
  if (bitwAnd(levels, 8L) != 0L) Encoding(s) <- "UTF-8" else if (bitwAnd(levels, 4L) != 0L) {
    Encoding(s) <- "latin1"
  } else if (bitwAnd(levels, 2L) != 0L) Encoding(s) <- "bytes"
  s
}

#' @noRd
plain_rds_list <- function(st, where, depth) {
  n <- plain_rds_length(st, where)
  plain_rds_need(st, 4 * n, where)   # each element: its flags at least
  out <- vector("list", n)
  for (i in seq_len(n)) {
    v <- plain_rds_item(st, sprintf("%s[[%d]]", where, i), depth + 1L)
    if (!is.null(v)) out[[i]] <- v
  }
  out
}

# A symbol (as a string): SYMSXP then its CHARSXP, or a reference to one.
#' @noRd
plain_rds_symbol <- function(st, where) {
  flags <- plain_rds_flags(st, where)
  type <- flags %% 256L
  if (type == 1L) {
    name <- plain_rds_charsxp(st, where)
    if (is.na(name)) st$fail(sprintf("%s is a symbol without a name", where))
    st$refs <- c(st$refs, name)
    return(name)
  }
  if (type == 255L) {
    idx <- plain_rds_ref_index(st, flags, where)
    if (idx > length(st$refs)) st$fail(sprintf("%s refers to an object that was never read", where))
    return(st$refs[[idx]])
  }
  st$fail(sprintf("%s should be a name but is %s", where, plain_rds_type_name(type)))
}

#' @noRd
plain_rds_ref_index <- function(st, flags, where) {
  idx <- flags %/% 256L
  if (idx == 0L) idx <- plain_rds_int(st, 1, where)
  if (is.na(idx) || idx < 1L) st$fail(sprintf("%s holds an invalid reference", where))
  idx
}

# Attributes: a pairlist of tagged values ended by NULL, as a named list.
# `flags` are the first cell's when already read.
#' @noRd
plain_rds_attributes <- function(st, where, depth, flags = plain_rds_flags(st, where)) {
  out <- list()
  repeat {
    type <- flags %% 256L
    if (type == 254L) break
    if (type != 2L) {
      st$fail(sprintf("the attributes of %s are %s, not a list of named values", where, plain_rds_type_name(type)))
    }
    if (bitwAnd(flags, 512L) != 0L || bitwAnd(flags, 1024L) == 0L) {
      st$fail(sprintf("the attributes of %s are not a plain list of named values", where))
    }
    tag <- plain_rds_symbol(st, sprintf("an attribute name of %s", where))
    value <- plain_rds_item(st, sprintf("attr(%s, \"%s\")", where, tag), depth + 1L)
    if (tag %in% names(out)) st$fail(sprintf("%s has the attribute \"%s\" twice", where, tag))
    out[tag] <- list(value)
    if (length(out) > 64L) st$fail(sprintf("%s has more than 64 attributes", where))
    flags <- plain_rds_flags(st, where)
  }
  out
}

#' @noRd
plain_rds_set_attributes <- function(st, x, attrs, where) {
  if (!length(attrs)) return(x)
  tryCatch({
    attributes(x) <- c(attributes(x), attrs)
    x
  }, error = function(e) st$fail(sprintf("the attributes of %s are invalid (%s)", where, conditionMessage(e))),
  warning = function(w) st$fail(sprintf("the attributes of %s are invalid (%s)", where, conditionMessage(w))))
}

# A pairlist cell without tag or attributes holding two items (the state of
# deferred_string and wrap_* ALTREP objects): list(car, cdr).
#' @noRd
plain_rds_pair <- function(st, where, depth) {
  flags <- plain_rds_flags(st, where)
  type <- flags %% 256L
  if (type != 2L || bitwAnd(flags, 512L + 1024L) != 0L) {
    st$fail(sprintf("%s is %s where a plain pair was expected", where, plain_rds_type_name(type)))
  }
  list(plain_rds_item(st, where, depth + 1L), plain_rds_item(st, where, depth + 1L))
}

# ALTREP forms of plain data, expanded to ordinary vectors.
#' @noRd
plain_rds_altrep <- function(st, where, depth) {
  # info: pairlist(class symbol, package symbol, type integer)
  cell <- function() {
    flags <- plain_rds_flags(st, where)
    if (flags %% 256L != 2L || bitwAnd(flags, 512L + 1024L) != 0L) {
      st$fail(sprintf("%s is an ALTREP object with an invalid description", where))
    }
  }
  cell()
  cls <- plain_rds_symbol(st, where)
  cell()
  pkg <- plain_rds_symbol(st, where)
  cell()
  plain_rds_item(st, where, depth + 1L)
  if (plain_rds_flags(st, where) %% 256L != 254L) {
    st$fail(sprintf("%s is an ALTREP object with an invalid description", where))
  }
  known <- c("compact_intseq", "compact_realseq", "deferred_string", "wrap_logical", "wrap_integer",
             "wrap_real", "wrap_complex", "wrap_string", "wrap_raw", "wrap_list")
  if (!identical(pkg, "base") || !(cls %in% known)) {
    st$fail(sprintf("%s is an ALTREP object of class \"%s\" (package \"%s\"), which is not plain data", where,
                    cls, pkg))
  }
  x <- if (cls %in% c("compact_intseq", "compact_realseq")) {
    state <- plain_rds_item(st, where, depth + 1L)
    plain_rds_expand_seq(st, state, cls, where)
  } else if (identical(cls, "deferred_string")) {
    state <- plain_rds_pair(st, where, depth)
    arg <- state[[1L]]
    if (!(is.integer(arg) || is.double(arg)) || !is.null(attributes(arg))) {
      st$fail(sprintf("%s is a deferred string of %s, not of numbers", where, describe_value(arg)))
    }
    as.character(arg)
  } else {
    state <- plain_rds_pair(st, where, depth)
    v <- state[[1L]]
    want <- switch(cls, wrap_logical = "logical", wrap_integer = "integer", wrap_real = "double",
                   wrap_complex = "complex", wrap_string = "character", wrap_raw = "raw", wrap_list = "list")
    if (!identical(typeof(v), want)) st$fail(sprintf("%s wraps %s instead of a %s vector", where, typeof(v), want))
    v
  }
  flags <- plain_rds_flags(st, where)
  attrs <- plain_rds_attributes(st, where, depth, flags)
  plain_rds_set_attributes(st, x, attrs, where)
}

# compact_intseq / compact_realseq state: double (n, start, step), step 1
# or -1.
#' @noRd
plain_rds_expand_seq <- function(st, state, cls, where) {
  ok <- is.double(state) && length(state) == 3L && is.null(attributes(state)) && all(is.finite(state)) &&
    state[[1L]] >= 0 && state[[1L]] == round(state[[1L]]) && abs(state[[3L]]) == 1
  if (!ok) st$fail(sprintf("%s is a compact sequence with an invalid description", where))
  n <- state[[1L]]
  st$expanded <- st$expanded + n
  if (st$expanded > .plain_rds_max_expanded) {
    st$fail(sprintf("%s declares a compact sequence of %.0f elements, more than multihead's files hold", where, n))
  }
  if (identical(cls, "compact_intseq")) {
    last <- state[[2L]] + (n - 1) * state[[3L]]
    if (n > 0 && (max(state[[2L]], last) > .Machine$integer.max || min(state[[2L]], last) < -.Machine$integer.max ||
                  state[[2L]] != round(state[[2L]]))) {
      st$fail(sprintf("%s is a compact integer sequence outside the integer range", where))
    }
    if (n == 0) integer() else as.integer(state[[2L]]) + (seq_len(n) - 1L) * as.integer(state[[3L]])
  } else {
    if (n == 0) double() else state[[2L]] + (seq_len(n) - 1) * state[[3L]]
  }
}
