"""The benchmark scripts still run against the package: each on the tiny model, a few shapes."""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent.parent / "bench"


def run(script: str, *args) -> None:
    done = subprocess.run([sys.executable, str(BENCH / script), *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_step_times_each_variant_at_each_shape_and_names_its_model(tiny_path, tmp_path):
    run("step.py", "--model", tiny_path, "--device", "cpu", "--lengths", "4,8", "--batches", "1,2", "--repeats", "1",
        "--variants", "bfloat16,float32:aot_eager", "--out", tmp_path)
    out = json.loads((tmp_path / "step-cpu-bfloat16-float32_aot_eager.json").read_text())
    assert out["model"] == tiny_path and out["device"] == "cpu"
    assert [(r["n_tokens"], r["batch"]) for r in out["rows"]] == [(4, 1), (4, 2), (8, 1), (8, 2)]
    assert all(set(r["seconds"]) == {"float32", "bfloat16", "float32:aot_eager"} for r in out["rows"])
    assert all(s > 0 for r in out["rows"] for times in r["seconds"].values() for s in times)


def test_decode_times_one_pass_against_greedy_generation(tiny_path, tmp_path):
    run("decode.py", "--model", tiny_path, "--device", "cpu", "--grid", "4,8", "--batches", "1,2", "--repeats", "1",
        "--out", tmp_path)
    out = json.loads(next(tmp_path.glob("decode-cpu-*.json")).read_text())
    assert out["model"] == tiny_path
    assert len(out["rows"]) == 4
