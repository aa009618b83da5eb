#!/usr/bin/env bash
# Idempotent setup of everything the studio needs; quick when nothing changed.
#   bash scripts/setup.sh          runtime (the app, the embedded services)
#   bash scripts/setup.sh --test   also the test tools (pytest, Playwright + Debian's Chromium) and the loggers
#   bash scripts/setup.sh --monitoring   also TensorBoard, Weights & Biases and MLflow (a run's report_to)
#   bash scripts/setup.sh --gpu    also Liger's kernels for training on a CUDA GPU (the liger_kernel switch)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
VENV="$ROOT/.venv"
WITH_TESTS=0
WITH_MONITORING=0
WITH_GPU=0
for arg in "$@"; do
  case "$arg" in
    --test) WITH_TESTS=1; WITH_MONITORING=1 ;;   # the tests read every logger's files back
    --monitoring) WITH_MONITORING=1 ;;
    --gpu) WITH_GPU=1 ;;
  esac
done

step() { printf '\n==> %s\n' "$*"; }

# 1. Debian packages: redis-server (Argilla's queue, review stage); chromium for the browser tests.
apt_need=()
command -v redis-server >/dev/null 2>&1 || apt_need+=(redis-server)
if [ "$WITH_TESTS" = 1 ] && [ ! -x /usr/bin/chromium ]; then apt_need+=(chromium); fi
if [ ${#apt_need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    step "Installing Debian packages: ${apt_need[*]} (about a minute)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_need[@]}" >/dev/null
  else
    echo "warning: install these Debian packages as root: ${apt_need[*]}" >&2
  fi
fi

# 2. The virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
  step "Creating the virtual environment in .venv"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
PIP=("$VENV/bin/pip" install --disable-pip-version-check)

# 3. Python packages, skipped when the requirements did not change since the last setup.
files=(requirements.txt)
[ "$WITH_TESTS" = 1 ] && files+=(requirements-test.txt)
[ "$WITH_MONITORING" = 1 ] && files+=(requirements-monitoring.txt)
[ "$WITH_GPU" = 1 ] && files+=(requirements-gpu.txt)
stamp="$VENV/.setup-stamp-$WITH_TESTS$WITH_MONITORING$WITH_GPU"
want=$(cat "${files[@]}" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "Python packages are up to date (.venv)."
else
  step "Installing torch 2.13.0 (CPU build) first, so nothing pulls a CUDA build"
  "${PIP[@]}" -q torch==2.13.0
  step "Installing the studio's Python packages (${files[*]})"
  reqs=()
  for f in "${files[@]}"; do reqs+=(-r "$f"); done
  start=$(date +%s)
  "${PIP[@]}" --progress-bar on "${reqs[@]}" || {
    echo "error: pip could not install the requirements (see above)." >&2; exit 1; }
  "$VENV/bin/python" -c "import xllamacpp, trl, streamlit, duckdb" || {
    echo "error: the install finished but the packages do not import (see above)." >&2; exit 1; }
  echo "Installed in $(( $(date +%s) - start )) s."
  echo "$want" > "$stamp"
fi
# 4. llama.cpp's server compiled for this CPU (the embedded endpoint's engine): once per machine, a
#    few minutes, kept in the download cache. Without a compiler the xllamacpp wheel serves instead.
if [ "${STUDIO_SKIP_NATIVE_LLM:-0}" != 1 ]; then
  step "llama.cpp's server for this CPU (compiled the first time only: a few minutes)"
  "$VENV/bin/python" -m pipelines.models.llama_server || \
    echo "warning: the embedded endpoint will use the xllamacpp wheel (slower with concurrent requests)." >&2
fi
# 5. The embedded Argilla server in its own environment (its pins clash with the studio's).
ARGILLA_VENV="$ROOT/.venv-argilla"
argilla_files=(requirements-argilla.txt constraints-argilla.txt)
argilla_stamp="$ARGILLA_VENV/.setup-stamp"
argilla_want=$(cat "${argilla_files[@]}" | sha256sum | cut -d' ' -f1)
if [ -f "$argilla_stamp" ] && [ "$(cat "$argilla_stamp")" = "$argilla_want" ]; then
  echo "Argilla server packages are up to date (.venv-argilla)."
else
  if [ ! -x "$ARGILLA_VENV/bin/python" ]; then
    step "Creating the Argilla server's virtual environment in .venv-argilla"
    "$PYTHON" -m venv "$ARGILLA_VENV"
    "$ARGILLA_VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip
  fi
  step "Installing argilla-server and osmem-server into .venv-argilla (about a minute)"
  "$ARGILLA_VENV/bin/pip" install --disable-pip-version-check -q \
      -r requirements-argilla.txt -c constraints-argilla.txt || {
    echo "error: pip could not install the Argilla server (see above)." >&2; exit 1; }
  "$ARGILLA_VENV/bin/python" -c "import argilla_server, osmem_server" || {
    echo "error: the Argilla server installed but does not import (see above)." >&2; exit 1; }
  echo "$argilla_want" > "$argilla_stamp"
fi
echo "Setup done."
