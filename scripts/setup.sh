#!/usr/bin/env bash
# Set up genir on a fresh Debian/Ubuntu machine: Java 17 for Lucene (pyserini), a virtual
# environment in .venv, and genir with CPU torch and the test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

have_jdk17() {
  [ -n "${JAVA_HOME:-}" ] && [ -e "$JAVA_HOME/lib/server/libjvm.so" ] && return 0
  compgen -G "/usr/lib/jvm/java-17-openjdk-*/lib/server/libjvm.so" > /dev/null
}

packages=()
have_jdk17 || packages+=(openjdk-17-jdk-headless)
"$PYTHON" -c "import ensurepip, venv" 2> /dev/null || packages+=(python3-venv)
if [ ${#packages[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${packages[*]}"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}"
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# torch is pinned in the same pip command as genir: an unpinned torch pulls a 5.5 GB CUDA build.
"$VENV/bin/python" -m pip install --disable-pip-version-check -q "torch==2.13.0" -e ".[test,docs]"
echo "setup: done ($("$VENV/bin/genir" --version))"
