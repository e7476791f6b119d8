# Sourced by tools/run-cpp-tests.sh and tools/install-system-libs.sh:
# apt_install PKG... installs Debian packages with apt-get (as root), running
# `apt-get update` first when there are no package lists and once more if the
# install fails. Returns 2 when apt-get cannot be used here (not root, or no
# apt-get), 1 when the install fails, 0 when done.
apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then return 2; fi
  export DEBIAN_FRONTEND=noninteractive
  if ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then apt-get update; fi
  apt-get install -y --no-install-recommends "$@" ||
    { apt-get update && apt-get install -y --no-install-recommends "$@"; } || return 1
}
