#!/usr/bin/env bash
# Runs the irctest conformance suite (https://github.com/progval/irctest) against salon,
# starting a fresh server per test through tests/irctest_salon.py.
#
#   scripts/irctest.sh                  # the common selection (see DEFAULT_MARKERS)
#   scripts/irctest.sh -k Lusers        # any pytest arguments replace the default selection
#   SALON_IRCTEST_NODES=2 scripts/irctest.sh   # the same against a two-node cluster
#
# Environment:
#   SALON_IRCTEST_NODES  1 (default): one salon per test; 2: two cluster nodes per test on a
#                 redis-server per pytest worker, behind a round-robin forwarder on irctest's
#                 port (connection 1 to node A, 2 to B, 3 to A...); needs redis-server
#   IRCTEST_DIR   irctest checkout (default /work/src-progval+irctest); never copied into the repo
#   IRCTEST_VENV  virtualenv for irctest (default /work/irctest-venv); created when missing
#   SALON_PYTHON  interpreter that runs salon (default: the repo's .venv/bin/python)
#   IRCTEST_JOBS  pytest-xdist workers (default 2)
set -uo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(cd "$script_dir/.." && pwd)"
tests_dir="$repo_dir/tests"

IRCTEST_DIR="${IRCTEST_DIR:-/work/src-progval+irctest}"
IRCTEST_VENV="${IRCTEST_VENV:-/work/irctest-venv}"
IRCTEST_JOBS="${IRCTEST_JOBS:-2}"
DEFAULT_MARKERS='not services and not implementation-specific and not deprecated and not strict'

if [ ! -f "$IRCTEST_DIR/conftest.py" ] || [ ! -d "$IRCTEST_DIR/irctest" ]; then
    echo "irctest.sh: no irctest checkout at $IRCTEST_DIR (set IRCTEST_DIR)" >&2
    exit 2
fi

if [ ! -x "$IRCTEST_VENV/bin/python" ]; then
    echo "irctest.sh: creating $IRCTEST_VENV" >&2
    python3 -m venv "$IRCTEST_VENV" || exit 2
    "$IRCTEST_VENV/bin/pip" install -q -r "$IRCTEST_DIR/requirements.txt" \
        pytest-xdist pytest-timeout || exit 2
fi

if [ $# -eq 0 ]; then
    set -- -m "$DEFAULT_MARKERS"
fi

export PYTHONPATH="$tests_dir${PYTHONPATH:+:$PYTHONPATH}"
cd "$IRCTEST_DIR" || exit 2

log="$(mktemp "${TMPDIR:-/tmp}/irctest-salon.XXXXXX")"
trap 'rm -f "$log"' EXIT

# -p no:cacheprovider: the irctest checkout may be read-only.
"$IRCTEST_VENV/bin/python" -m pytest -p no:cacheprovider --controller irctest_salon \
    -n "$IRCTEST_JOBS" --timeout 300 "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

echo
echo "==== irctest summary (salon, ${SALON_IRCTEST_NODES:-1} node(s)) ===="
# pytest's short test summary (-ra lines) and its final totals line.
sed -n '/short test summary info/,$p' "$log" | grep -E '^(FAILED|ERROR|SKIPPED|XFAIL|XPASS) ' || true
grep -E '^=+ .*(passed|failed|skipped|error|no tests ran).* in [0-9.]+s' "$log" | tail -n 1 || true
exit "$status"
