"""Scale-out: texts per hour of `prototokens encode --jsonl` in one process against torchrun
with K processes, on the same texts and batches, side by side in one run.

    .venv/bin/python bench/distributed.py [--procs 1,2] [--texts 4] [--tokens 16] [--batch 2]
                                          [--steps 150] [--restarts 1] [--model smollm2-135m] [--out bench/results]

Each run is the whole command as a user launches it (start-up, model load, encode, merge), so
texts/hour = texts / wall seconds; --steps and --restarts bound the work per text, so
the figure measures throughput at a fixed budget (solved texts are counted beside it). Every process count gets the same batches (encode deals out the
batches one process makes), so the files must agree; the script checks that they do. One process
uses every core as torch threads; under torchrun each of K ranks gets cores / K threads (on a GPU
node, one GPU each). On a multi-GPU node run it with --procs 1,8 (the ranks take cuda:LOCAL_RANK).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import prototokens as pt
from prototokens.data import book_text, passage
from prototokens.model import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--procs", default="1,2", help="process counts to compare; 1 runs without torchrun")
    p.add_argument("--texts", type=int, default=4)
    p.add_argument("--tokens", type=int, default=16)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=150, help="most steps per seed (bounds the run; default 150)")
    p.add_argument("--restarts", type=int, default=1)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()

    lm = pt.load_model(args.model, device="cpu")
    book = book_text("alice29")
    texts = [lm.detokenize(passage(lm, book, args.tokens, start_char=1000 + 2000 * i)) for i in range(args.texts)]
    work = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    corpus = work / "texts.jsonl"
    corpus.write_text("".join(json.dumps(t) + "\n" for t in texts))
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    env.pop("OMP_NUM_THREADS", None)  # one process takes every core; torchrun ranks share them
    rows, files = [], {}
    for k in (int(x) for x in args.procs.split(",")):
        out = work / f"p{k}.proto.safetensors"
        launch = [sys.executable, "-m", "prototokens.cli"] if k == 1 else [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={k}", "-m", "prototokens.cli"]
        command = [*launch, "encode", "--jsonl", str(corpus), "-o", str(out), "--model", args.model,
                   "--batch-size", str(args.batch), "--steps", str(args.steps), "--restarts", str(args.restarts),
                   "--device", "cpu", "-q"]
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode not in (0, 1):
            sys.exit(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
        proto = pt.load(out)
        files[k] = proto
        solved = sum(t.solved for t in proto.texts)
        rows.append({"processes": k, "texts": len(texts), "solved": solved, "wall_s": wall,
                     "texts_per_hour": len(texts) / wall * 3600, "solved_per_hour": solved / wall * 3600})
        print(f"{k} process(es): {wall:.1f} s wall, {solved}/{len(texts)} solved, {rows[-1]['texts_per_hour']:.0f} texts/hour",
              flush=True)
    first = files[rows[0]["processes"]]
    same = all(torch.allclose(f.e, first.e, atol=1e-5) and torch.allclose(f.m, first.m, atol=1e-5)
               and [t.target_ids for t in f.texts] == [t.target_ids for t in first.texts] for f in files.values())
    for row in rows:
        row["speedup"] = rows[0]["wall_s"] / row["wall_s"]
    result = {"model": lm.name, "fingerprint": lm.fingerprint, "cores": len(os.sched_getaffinity(0)), "args": vars(args) | {
        "out": str(args.out)}, "files_agree": same, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"distributed-cpu-n{args.tokens}.json"
    path.write_text(json.dumps(result, indent=1))
    print("\n| processes | texts | solved | wall s | texts/hour | speed-up |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['processes']} | {r['texts']} | {r['solved']} | {r['wall_s']:.1f} | {r['texts_per_hour']:.0f} | {r['speedup']:.2f}x |")
    print(f"\nfiles agree across process counts: {same}; wrote {path}")


if __name__ == "__main__":
    main()
