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
# Kafka for the integration tests runs from its jars: it needs a JDK (17+) and Maven.
if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing Java 17 and Maven (for the Kafka broker used by the tests)"
        apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null
    else
        echo "warning: java and mvn are needed for the Kafka integration tests;" \
            "install them (e.g. apt-get install openjdk-17-jre-headless maven)" >&2
    fi
fi
# The blue-green rollout test puts the gateways behind nginx (a gRPC proxy); nginx-light has
# the grpc and http2 modules.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing nginx (the gRPC proxy of the blue-green rollout test)"
        apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null
    else
        echo "warning: nginx is needed for the blue-green rollout test;" \
            "install it (e.g. apt-get install nginx-light)" >&2
    fi
fi
echo "==> creating $venv with $("$python" -V 2>&1)"
"$python" -m venv "$venv"
echo "==> installing ordermesh and its dev tools (pinned by requirements/constraints.txt)"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -c requirements/constraints.txt -e '.[dev]'
echo "==> $venv ready"
