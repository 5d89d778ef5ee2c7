#!/usr/bin/env bash
# Regenerate every committed report under results/ from the committed records, in a scratch
# copy, and list any table or plot that differs from the committed one. Needs no model.
# Exit status 1 when anything differs. Run from the repository root.
set -euo pipefail
pt=(${PT:-$PWD/.venv/bin/prototokens})
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r results "$scratch/"
# geometry's report needs its proto files (not committed) and a model: it is checked by rerunning the study
folders=(results/capacity results/studies/{arrangements,sharing,connectivity,probe,locality})
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
