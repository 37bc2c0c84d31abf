#!/usr/bin/env bash
# Create the virtualenv and install ordermesh with its dev tools, pinned by the constraints file.
set -euo pipefail
python="${1:-python3}"
venv="${2:-.venv}"

if ! command -v "$python" >/dev/null 2>&1; then
    echo "error: $python not found; ordermesh needs Python 3.11 or newer (set PYTHON=...)" >&2
    exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: $python is $("$python" -V 2>&1); ordermesh needs Python 3.11 or newer (set PYTHON=...)" >&2
    exit 1
fi
echo "==> creating $venv with $("$python" -V 2>&1)"
"$python" -m venv "$venv"
echo "==> installing ordermesh and its dev tools (pinned by requirements/constraints.txt)"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -c requirements/constraints.txt -e '.[dev]'
echo "==> $venv ready"
