#!/usr/bin/env bash
# Regenerate every committed report under results/ from the committed records, in a scratch
# copy, and list any table or plot that differs from the committed one. Needs no model.
# Exit status 1 when anything differs. Run from the repository root. What needs the model
# (connectivity's curves decoded from the committed proto files, locality's statistics and
# geometry recomputed from them) is checked by tests/test_results.py, in the slow tier.
set -euo pipefail
pt=(${PT:-$PWD/.venv/bin/prototokens})
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r results "$scratch/"
folders=(results/capacity results/studies/{arrangements,arrangements-n64,sharing,sharing-n32,connectivity,connectivity-t2-cosine,probe,locality,locality-n32,geometry})
for folder in "${folders[@]}"; do
  (cd "$scratch" && "${pt[@]}" report "$folder" >/dev/null)  # the same relative path the committed reports name
done
status=0
for folder in "${folders[@]}"; do
  if ! diff -rq "$folder" "$scratch/$folder"; then status=1; fi
done
if ((status)); then echo "results check: the reports above differ from what the committed records give"; else
  echo "results check: ${#folders[@]} folders regenerate byte for byte"; fi
exit $status
