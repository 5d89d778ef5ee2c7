"""Can output position 0 be steered? One target token, layout `em` (input [e] alone, output 0
must predict it), each init, the default recipe for at most 300 steps.

    .venv/bin/python bench/position0.py [--tokens " the, Alice,It, rabbit"]
"""

from __future__ import annotations

import argparse

import prototokens as pt


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokens", default=" the, Alice,It, rabbit", help="comma-separated; the first token of each")
    args = p.parse_args()
    lm = pt.load_model()
    print(f"{'token':>10} {'init':>14} {'solved':>7} {'best step':>9} {'loss':>6}")
    for word in args.tokens.split(","):
        target = lm.tokenize(word)[:1]
        for init in pt.recipe.INITS:
            recipe = pt.get_recipe("fast").with_overrides(init=init, max_steps=300)
            fit = pt.optimize(lm, [target], layout="em", recipe=recipe, progress=False)
            print(f"{word!r:>10} {init:>14} {fit.outcomes[0].solved!s:>7} {fit.outcomes[0].steps:>9} {fit.outcomes[0].loss:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
