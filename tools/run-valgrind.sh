#!/usr/bin/env bash
# Runs a representative part of the R test suite under valgrind's memcheck
# against a copy of the package installed from this tree into a temporary
# library, and reports invalid reads/writes, uses of uninitialised values and
# definite leaks. R itself leaves "possibly lost" blocks; only definite leaks
# whose allocation stack passes through multihead's code count as ours.
#
#   tools/run-valgrind.sh                      # the default test files
#   tools/run-valgrind.sh fixtures gradients   # tests/testthat/test-<name>.R
#
# Environment: MULTIHEAD_PORTABLE=1 installs without -mavx2 -mfma (memcheck
# handles AVX2/FMA; set it if valgrind stops with "unhandled instruction");
# VALGRIND_EXTRA="--track-origins=yes" adds valgrind options (slower).
# Exits non-zero when a test fails, on any invalid read/write or uninitialised
# value, or on a definite leak from our code. Takes about 7 minutes on 2 cores.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
start=$(date +%s)
say() { printf '[run-valgrind] %s\n' "$*"; }

command -v valgrind >/dev/null 2>&1 || { say "valgrind is not installed"; exit 1; }

if [ $# -gt 0 ]; then
  names=("$@")
else
  # The attention layer end to end (Keras fixtures, every gradient), the other
  # layers against their references, the error paths of the glue, and the
  # flash kernel when present.
  names=(fixtures gradients layer-vs-reference bad-input)
  [ -f tests/testthat/test-flash-attention.R ] && names+=(flash-attention)
fi
files=()
for n in "${names[@]}"; do
  f="tests/testthat/test-$n.R"
  [ -f "$f" ] || { say "no such test file: $f"; exit 1; }
  files+=("$f")
done

work=$(mktemp -d "${TMPDIR:-/tmp}/multihead-valgrind.XXXXXX")
lib="$work/lib"
mkdir -p "$lib"
say "installing multihead into $lib"
# keep debug symbols so valgrind can name the source lines
if ! MULTIHEAD_KEEP_DEBUG=1 R CMD INSTALL --preclean --no-test-load --library="$lib" . >"$work/install.log" 2>&1; then
  tail -40 "$work/install.log"
  say "install failed"
  exit 1
fi
grep -E '^multihead:' "$work/install.log"

cat >"$work/run-tests.R" <<'EOF'
args <- commandArgs(trailingOnly = TRUE)
.libPaths(c(args[1], .libPaths()))
failed <- 0
for (f in args[-1]) {
  res <- as.data.frame(testthat::test_file(f, package = "multihead", load_package = "installed",
                                           reporter = "summary", stop_on_failure = FALSE))
  n_failed <- sum(res$failed) + sum(res$error)
  cat(sprintf("%s: %d expectations, %d failed\n", basename(f), sum(res$nb), n_failed))
  failed <- failed + n_failed
}
cat(sprintf("TESTS FAILED: %d\n", failed))
quit(status = if (failed > 0) 2L else 0L, save = "no")
EOF

vlog="$work/valgrind.log"
say "running ${files[*]} under valgrind (log: $vlog)"
R -d "valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
--show-leak-kinds=definite --keep-debuginfo=yes --num-callers=40 --log-file=$vlog \
${VALGRIND_EXTRA:-}" --vanilla --slave -f "$work/run-tests.R" --args "$lib" "${files[@]}" \
  2>&1 | tee "$work/tests.log" | grep -E '^(test-|TESTS FAILED|Error)|Failure|══ (Failed|Error)'
rc=${PIPESTATUS[0]}
say "valgrind + R exit status $rc ($(( $(date +%s) - start ))s)"

# Classify the valgrind records (blank-line separated) and tell ours apart:
# a record is ours when a stack frame is in multihead's code.
Rscript --vanilla - "$vlog" "$work/tests.log" <<'EOF'
args <- commandArgs(trailingOnly = TRUE)
lines <- sub("^==[0-9]+== ?", "", readLines(args[1]))
tests_failed <- any(grepl("^TESTS FAILED: [1-9]", readLines(args[2]))) ||
  !any(grepl("^TESTS FAILED: 0", readLines(args[2])))
breaks <- cumsum(lines == "")
records <- split(lines, breaks)
records <- Filter(function(r) length(r[r != ""]) > 0, lapply(records, function(r) r[r != ""]))
ours_re <- "mh::|mhglue::|\\bcpp_[a-z_]+|_multihead_|multihead\\.so|/src/core/|glue_[a-z_]+\\.(cpp|h)"
kind <- function(r) {
  h <- r[1]
  if (grepl("^Invalid (read|write)", h)) return("invalid read/write")
  if (grepl("^Invalid free|^Mismatched free", h)) return("invalid free")
  if (grepl("uninitialised", h)) return("uninitialised value")
  if (grepl("definitely lost in loss record", h)) return("definite leak")
  if (grepl("^Source and destination overlap", h)) return("overlap")
  if (grepl("^(Process terminating|unhandled instruction)", h)) return("valgrind abort")
  ""
}
kinds <- vapply(records, kind, "")
ours <- vapply(records, function(r) any(grepl(ours_re, r)), NA)
errs <- records[kinds != ""]
cat("\nvalgrind findings:\n")
for (k in c("invalid read/write", "invalid free", "uninitialised value", "overlap",
            "definite leak", "valgrind abort")) {
  cat(sprintf("  %-20s %3d (%d in multihead's code)\n", k, sum(kinds == k), sum(kinds == k & ours)))
}
summary_lines <- grep("definitely lost:|indirectly lost:|possibly lost:|ERROR SUMMARY", lines, value = TRUE)
cat(paste0("  ", summary_lines, collapse = "\n"), "\n")
show <- kinds != "" & (kinds != "definite leak" | ours)
for (i in which(show)) cat("\n", paste(head(records[[i]], 25), collapse = "\n"), "\n")
bad <- any(kinds %in% c("invalid read/write", "invalid free", "uninitialised value", "overlap",
                        "valgrind abort")) ||
  any(kinds == "definite leak" & ours)
if (tests_failed) cat("\nsome tests FAILED under valgrind (see the test log)\n")
cat(if (bad || tests_failed) "\nRESULT: problems found\n" else "\nRESULT: clean\n")
quit(status = if (bad || tests_failed) 1L else 0L, save = "no")
EOF
status=$?
say "total time $(( $(date +%s) - start ))s; logs in $work"
exit $status
