#!/usr/bin/env bash
# Installs the system libraries that multihead's suggested R packages compile
# against, when they are missing: HDF5 for hdf5r (the Keras .weights.h5 files).
# Uses apt-get (Debian/Ubuntu, as root); elsewhere it says what to install.
# Called by .ci/run before the R tests; harmless to run again.
set -uo pipefail
say() { printf '[install-system-libs] %s\n' "$*"; }

if Rscript -e 'quit(status = if (requireNamespace("hdf5r", quietly = TRUE)) 0L else 1L)' >/dev/null 2>&1; then
  say "hdf5r is installed; nothing to do"
  exit 0
fi
if command -v h5cc >/dev/null 2>&1 || pkg-config --exists hdf5 2>/dev/null; then
  say "the HDF5 library is installed"
  exit 0
fi
. "$(dirname "$0")/apt-install.sh"
apt_install libhdf5-dev
rc=$?
if [ $rc -eq 2 ]; then
  say "hdf5r needs the HDF5 C library (Debian/Ubuntu: apt-get install libhdf5-dev;"
  say "macOS: brew install hdf5); install it, then run the tests again"
  exit 1
elif [ $rc -ne 0 ]; then
  say "apt-get install libhdf5-dev failed"
  exit 1
fi
say "installed libhdf5-dev"
