#!/bin/sh
# The image's entry point: the first argument chooses what runs, the rest are its flags.
#   gateway | ubscore | matcher | settlement   one service (python -m SERVICE)
#   probe health HOST:PORT | probe smoke ...   the health check and gateway smoke test
#   ordermesh ...                              the ordermesh command (e.g. ordermesh markets)
# exec, so the service is PID 1 and receives SIGTERM itself (graceful drain).
set -eu
if [ "$#" -eq 0 ]; then
    echo "usage: SERVICE [FLAGS...]; SERVICE is gateway, ubscore, matcher, settlement," \
        "probe or ordermesh" >&2
    exit 2
fi
command="$1"
shift
case "$command" in
    gateway | ubscore | matcher | settlement)
        exec python -m "$command" "$@"
        ;;
    probe)
        exec python /app/probe.py "$@"
        ;;
    ordermesh)
        exec ordermesh "$@"
        ;;
    *)
        echo "unknown service '$command': choose gateway, ubscore, matcher, settlement," \
            "probe or ordermesh" >&2
        exit 2
        ;;
esac
