#!/usr/bin/env bash
# Refresh requirements.lock: set up a throwaway venv with the newest releases pyproject.toml
# allows, run the fast tests there, and write their versions to the lock only if they pass.
set -euo pipefail
cd "$(dirname "$0")"
venv=$(mktemp -d)/venv
trap 'rm -rf "$(dirname "$venv")"' EXIT
VENV=$venv LOCK=none ./setup.sh
"$venv/bin/python" -m pytest -q -m "not slow and not network"
{ sed -n '/^#/p' requirements.lock
  "$venv/bin/python" -m pip freeze --exclude-editable | sed 's/+cpu$//' | sort -f; } > requirements.lock.new
mv requirements.lock.new requirements.lock
echo "requirements.lock refreshed; run the whole suite (./setup.sh && .venv/bin/python -m pytest -q) before committing it"
