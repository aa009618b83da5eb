#!/usr/bin/env bash
# distilabel, the peer the generation benchmark measures against, in a virtual environment of its
# own (.venv-distilabel): its pins do not fit the studio's environment. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv-distilabel
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import distilabel, openai, requests" 2>/dev/null; then
  echo "distilabel is installed in $VENV"; exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "distilabel[openai]==1.5.3" requests
"$VENV/bin/python" -c "import distilabel; print('distilabel', distilabel.__version__, 'installed in $VENV')"
