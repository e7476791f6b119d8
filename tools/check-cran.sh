#!/usr/bin/env bash
# Builds the source tarball and runs `R CMD check --as-cran` on it, in a
# scratch folder (default: a new temporary one; or pass it as $1).
#   tools/check-cran.sh [outdir]
# Needs: pdflatex, qpdf, checkbashisms (Debian: texlive-latex-base
# texlive-latex-recommended texlive-fonts-recommended texinfo qpdf devscripts),
# pandoc for the vignettes, and the Suggests packages (hdf5r, testthat, ...).
# Local settings, not package ones:
#   R_RD4PDF="times,hyper"           the manual without the inconsolata font
#                                    (texlive-fonts-extra, ~500 MB, not needed
#                                    to find Rd problems)
#   _R_CHECK_CRAN_INCOMING_REMOTE_=false  no CRAN network queries
#   _R_CHECK_SYSTEM_CLOCK_=0         no time-server query
# The build passes no instruction-set flag (see configure), so there is no
# "non-portable flags" NOTE; MULTIHEAD_PORTABLE=1 checks the build without the
# AVX2 kernels.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$(mktemp -d "${TMPDIR:-/tmp}/multihead-check.XXXXXX")}"
mkdir -p "$out"
cd "$out"
rm -f multihead_*.tar.gz
R CMD build "$root" > build.log 2>&1 || { tail -40 build.log; exit 1; }
tarball=$(ls multihead_*.tar.gz)
export R_RD4PDF="${R_RD4PDF:-times,hyper}"
export _R_CHECK_CRAN_INCOMING_REMOTE_="${_R_CHECK_CRAN_INCOMING_REMOTE_:-false}"
export _R_CHECK_SYSTEM_CLOCK_="${_R_CHECK_SYSTEM_CLOCK_:-0}"
status=0
R CMD check --as-cran "$tarball" > check.log 2>&1 || status=$?
grep -E -A8 "(NOTE|WARNING|ERROR)$" check.log || true
tail -4 check.log
echo "log: $out/check.log"
exit $status
