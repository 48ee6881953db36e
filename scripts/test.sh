#!/usr/bin/env bash
# Install nip-core, every plugin of this checkout and the test extras into .venv, then
# run the whole test suite (the core's and every plugin's), broken plugins failing
# loudly. Extra arguments go to pytest.
#
#   bash scripts/test.sh
#   bash scripts/test.sh -k cli -x
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/setup.sh
. "$ROOT/scripts/setup.sh"

test_paths=(tests)
fixture_sources=()
shopt -s nullglob
for dir in plugins/*/tests; do
    plugin="${dir%/tests}"
    if [ -f "$plugin/pyproject.toml" ]; then
        test_paths+=("$dir")
        # plugins/_template is not installed (users would see it): its tests
        # import it from its source tree
        case "$(basename "$plugin")" in
            _*) fixture_sources+=("$ROOT/$plugin/src") ;;
        esac
    fi
done
shopt -u nullglob
if [ "${#fixture_sources[@]}" -gt 0 ]; then
    joined="$(IFS=:; echo "${fixture_sources[*]}")"
    export PYTHONPATH="$joined${PYTHONPATH:+:$PYTHONPATH}"
fi

if [ "$#" -eq 0 ]; then
    set -- -q -n 2
fi
# Two pytest workers on two cores: one math thread each, or torch's thread pools
# oversubscribe the cores and the suite runs many times slower.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
status=0
NIP_STRICT_PLUGINS=1 python -m pytest "${test_paths[@]}" "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "test.sh: pytest collected no tests; that is a failure here" >&2
    exit 1
fi
exit "$status"
