"""Recipe variants on a fixed batch: 5 book passages of N tokens (sample seed 0) and the first
sentence of Pride and Prejudice, optimised together; per text, solved or not and in how many steps.

    .venv/bin/python bench/variants.py NAME [KEY=VALUE ...]

KEY is a Recipe field (lr, betas=0.9,0.99, max_steps, init, schedule, first_weight, patience=none,
...), or layout, n (tokens, default 32), texts (default 5), seed, start_token (an id to start e
at instead of the model's document-start token), curriculum (lengths such as 16,32: fit each
prefix in turn, each warm-started from the last, before the full N). Writes bench/results/variants/NAME.json with
each text's accuracy every 25 steps.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import prototokens as pt
from prototokens.data import sample_passages
from prototokens.model import FrozenLM

AUSTEN = "It is a truth universally acknowledged, that a single man in possession of a good fortune"


def value(key: str, text: str):
    """A recipe field's value from KEY=VALUE text: tuples for betas and check_dtypes, None,
    booleans, numbers, else the text."""
    if key in ("betas", "check_dtypes"):
        return tuple(float(x) if key == "betas" else x for x in text.split(",") if x)
    if text in ("none", "true", "false"):
        return {"none": None, "true": True, "false": False}[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main():
    name, options = sys.argv[1], dict(a.split("=", 1) for a in sys.argv[2:])
    lm = pt.load_model()
    if "start_token" in options:
        token = int(options.pop("start_token"))
        FrozenLM.start_id = property(lambda self: token)
    layout = options.pop("layout", pt.layout.DEFAULT_LAYOUT)
    n, k, seed = (int(options.pop(key, default)) for key, default in (("n", 32), ("texts", 5), ("seed", 0)))
    stages = [int(x) for x in options.pop("curriculum", "").split(",") if x] + [n]
    base = pt.get_recipe(options.pop("recipe", "fast"))
    recipe = dataclasses.replace(base, name=f"{base.name}+{name}", **{key: value(key, v) for key, v in options.items()})
    targets = [p.target_ids for p in sample_passages(lm, "books", k, n, seed=0)] + [lm.tokenize(AUSTEN)]
    started, fit, spent = time.perf_counter(), None, [0] * len(targets)
    for length in stages:  # each stage starts from the last one's vectors
        fit = pt.optimize(lm, [t[:length] for t in targets], layout=layout, recipe=recipe, seed=seed, trajectory=True,
                          start=fit.vectors if fit else None, progress=False)
        spent = [a + o.total_steps for a, o in zip(spent, fit.outcomes)]
    out = {"name": name, "argv": sys.argv[1:], "recipe": recipe.to_dict(), "layout": layout, "start_id": lm.start_id,
           "seconds": time.perf_counter() - started, "status": [o.status for o in fit.outcomes], "steps": [o.steps for o in fit.outcomes],
           "accuracy": [o.accuracy for o in fit.outcomes],
           "curriculum": stages, "steps_all_stages": spent,
           "accuracy_every_25_steps": [[a for (_, s, _, a) in tr if s % 25 == 0] for tr in fit.trajectory]}
    folder = Path("bench/results/variants")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(out, indent=1))
    solved = [o.steps for o in fit.outcomes if o.solved]
    print(f"{name}: {len(solved)}/{len(targets)} solved, steps {sorted(solved)}, {out['seconds']:.0f} s")


if __name__ == "__main__":
    main()
