"""Scale-out under torchrun: 2 gloo CPU processes on the tiny model write what one process
writes; a job with a killed rank resumes in one process; a second job on one output is refused."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import prototokens
from prototokens import load
from prototokens.cli import main
from prototokens.decode import decode

pytestmark = pytest.mark.distributed

TEXTS = ["Alice was", "All the world", "her sister on", "the fruit of", "a good fortune", "It is a truth"]
# fast@2 computes in float32, where a text's run does not depend on its batch: in bf16 (fast from
# v3, on hardware with bf16 units) the ranks' batches round differently from one process's
FAST = ["--recipe", "fast@2", "--lr", "0.05", "--steps", "200", "--restarts", "1", "-q"]


def torchrun(nproc: int, *args, **popen) -> subprocess.Popen:
    """``torchrun --standalone --nproc_per_node=NPROC -m prototokens.cli ARGS`` (a free port each time)."""
    src = str(Path(prototokens.__file__).parents[1])
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                             "-m", "prototokens.cli", *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **popen)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "texts.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in TEXTS))
    return path


@pytest.fixture(scope="module")
def one_process(corpus, tiny_path) -> Path:
    """The reference: the corpus encoded by one process, in batches of 2."""
    out = corpus.with_name("one.proto.safetensors")
    torch.set_num_threads(1)
    main(["encode", "--jsonl", str(corpus), "--model", tiny_path, "-o", str(out), "--batch-size", "2", *FAST])
    return out


def assert_same_encoding(path: Path, reference: Path, lm) -> None:
    """The same texts in the same order, the same records but for time, the same vectors within
    float noise and the same decodes."""
    a, b = load(path, lm), load(reference, lm)
    assert a.complete and len(a) == len(b) == len(TEXTS)

    def fields(p):
        return [{k: v for k, v in dataclasses.asdict(t).items() if k not in ("elapsed", "loss", "margin")} for t in p.texts]

    assert fields(a) == fields(b)
    assert [t.loss for t in a.texts] == pytest.approx([t.loss for t in b.texts], abs=1e-4)
    torch.testing.assert_close(a.e, b.e, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(a.m, b.m, atol=1e-4, rtol=1e-4)
    assert (a.layout, a.shared, a.recipe, a.model, a.extra) == (b.layout, b.shared, b.recipe, b.model, b.extra)
    assert decode(lm, a) == decode(lm, b)


def test_two_ranks_write_the_file_one_process_writes(corpus, one_process, tiny_path, tiny, tmp_path):
    out = tmp_path / "two.proto.safetensors"
    job = torchrun(2, "encode", "--jsonl", corpus, "--model", tiny_path, "-o", out, "--batch-size", "2", *FAST)
    log = job.communicate(timeout=120)[0]
    assert job.returncode == (0 if all(t.solved for t in load(one_process).texts) else 1), log
    assert_same_encoding(out, one_process, tiny)
    assert not (tmp_path / "two.proto.safetensors.parts").exists() and not (tmp_path / "two.proto.safetensors.lock").exists()


def _worker(job: subprocess.Popen, rank: int) -> int:
    """The pid of torchrun's worker with this RANK."""
    for _ in range(200):
        children = Path(f"/proc/{job.pid}/task/{job.pid}/children").read_text().split()
        for pid in children:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if f"RANK={rank}".encode() in env:
                return int(pid)
        time.sleep(0.1)
    raise AssertionError("torchrun started no worker")


def test_a_job_with_a_killed_rank_resumes_in_one_process(corpus, one_process, tiny_path, tiny, tmp_path, capsys, caplog):
    out = tmp_path / "killed.proto.safetensors"
    args = ["encode", "--jsonl", corpus, "--model", tiny_path, "-o", out, "--batch-size", "2", *FAST]
    job = torchrun(2, *args)
    parts = tmp_path / "killed.proto.safetensors.parts"
    deadline = time.monotonic() + 90
    while not (parts.is_dir() and any(parts.glob("*.safetensors"))):  # a first batch is written
        assert job.poll() is None and time.monotonic() < deadline, job.communicate()[0]
        time.sleep(0.1)
    os.kill(_worker(job, 1), signal.SIGKILL)
    log = job.communicate(timeout=60)[0]
    assert job.returncode != 0 and not out.exists(), log
    done = sum(len(load(p)) for p in parts.glob("*.safetensors"))
    assert 0 < done < len(TEXTS)

    # one process finishes the job: the lock of the dead job is taken over, only the rest is encoded
    assert main([str(a) for a in args]) in (0, 1)
    assert f"{done} of {len(TEXTS)} texts already done" in caplog.text
    assert_same_encoding(out, one_process, tiny)
    assert not parts.exists()


def test_a_second_job_on_the_same_output_is_refused(corpus, tiny_path, tmp_path, capsys):
    out = tmp_path / "busy.proto.safetensors"
    other = subprocess.Popen(["sleep", "60"])  # stands for a live job holding the output
    try:
        (tmp_path / "busy.proto.safetensors.lock").write_text(json.dumps(
            {"job": "other-job", "host": os.uname().nodename, "pid": other.pid, "started": "earlier"}))
        job = torchrun(2, "encode", "--jsonl", corpus, "--model", tiny_path, "-o", out, *FAST)
        log = job.communicate(timeout=60)[0]
        assert job.returncode != 0 and log.count("is in use by another job (job other-job") == 1, log
        assert main(["encode", "Alice was", "--model", tiny_path, "-o", str(out), *FAST]) == 2
        assert "is in use by another job" in capsys.readouterr().err
    finally:
        other.kill()
        other.wait()
    # its process gone, the lock is stale: taken over and released at the end
    assert main(["encode", "Alice was", "--model", tiny_path, "-o", str(out), *FAST]) in (0, 1)  # not refused: ran
    assert not (tmp_path / "busy.proto.safetensors.lock").exists()


def test_a_capacity_sweep_on_two_ranks_reports_as_one_process(tiny_path, tmp_path):
    source = tmp_path / "long.jsonl"
    source.write_text("".join(json.dumps(t * 4) + "\n" for t in TEXTS[:4]))
    args = ["capacity", "--source", source, "--texts", "4", "--grid", "2,4,6", "--context-tokens", "0", "--model", tiny_path, *FAST]
    job = torchrun(2, *args, "-o", tmp_path / "two")
    log = job.communicate(timeout=120)[0]
    assert job.returncode == 0, log
    torch.set_num_threads(1)
    assert main([str(a) for a in (*args, "-o", tmp_path / "one")]) == 0
    # the merged records, the settings and the report: no rank's part or lock is left behind
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["accuracy_vs_length.png", "capacity_vs_density.png", "error_positions.png",
                                                                    "records.jsonl", "report.html", "report.md", "run.json"]

    def records(folder):
        rows = [json.loads(line) for line in (tmp_path / folder / "records.jsonl").read_text().splitlines()]
        # the ranks batch their own texts, so float rounding may move a step or a loss a little
        return [{k: v for k, v in r.items() if k not in ("seconds", "elapsed", "batch", "loss", "margin", "steps", "total_steps")}
                for r in rows]

    assert records("two") == records("one")
    for folder in ("one", "two"):
        assert main(["report", str(tmp_path / folder)]) == 0
    one, two = ((tmp_path / f / "report.md").read_text().replace(str(tmp_path / f), "FOLDER") for f in ("one", "two"))
    assert two == one


def test_a_sharing_study_on_two_ranks_writes_what_one_process_writes(corpus, tiny_path, tmp_path):
    # S = 1 (nothing shared: each rank its texts) and S = 2 sharing m (each rank its groups)
    args = ["study", "sharing", "--source", corpus, "--texts", "4", "--length", "4", "--sizes", "1,2", "--vectors", "m",
            "--seeds", "1", "--model", tiny_path, *FAST]
    job = torchrun(2, *args, "-o", tmp_path / "two")
    log = job.communicate(timeout=180)[0]
    assert job.returncode == 0, log
    torch.set_num_threads(1)
    assert main([str(a) for a in (*args, "-o", tmp_path / "one")]) == 0

    def records(folder):
        out = {}
        for path in sorted((tmp_path / folder).glob("*/records.jsonl")):
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            # the ranks batch their own texts, so float rounding may move a step or a loss a little
            out[path.parent.name] = sorted(({k: v for k, v in r.items() if k in ("key", "text", "length", "seed", "group",
                                                                                    "accuracy", "status")} for r in rows),
                                           key=lambda r: r["key"])
        return out

    assert set(records("two")) == {"s1", "shared-m-s2"}
    assert records("two") == records("one")
    assert not list((tmp_path / "two").glob("*/records.rank-*.jsonl"))  # the parts were merged
    assert (tmp_path / "two" / "sharing.md").read_text() == (tmp_path / "one" / "sharing.md").read_text()


def test_a_locality_study_on_two_ranks_writes_what_one_process_writes(tiny_path, tmp_path):
    source = tmp_path / "book.txt"
    source.write_text(" ".join(f"{t.capitalize()} the sea." for t in TEXTS * 8))  # sentences, so every cut has a context
    args = ["study", "locality", "--source", source, "--contexts", "2", "--texts", "2", "--seeds", "2", "--length", "3",
            "--model", tiny_path, *FAST]
    job = torchrun(2, *args, "-o", tmp_path / "two")
    log = job.communicate(timeout=180)[0]
    assert job.returncode == 0, log
    torch.set_num_threads(1)
    assert main([str(a) for a in (*args, "-o", tmp_path / "one")]) == 0
    files = sorted(p.name for p in (tmp_path / "one").glob("*.proto.safetensors"))
    assert len(files) == 2 * (2 + 1) and files == sorted(p.name for p in (tmp_path / "two").glob("*.proto.safetensors"))
    one, two = (json.loads((tmp_path / f / "locality.json").read_text()) for f in ("one", "two"))
    assert two["solved"] == one["solved"]
    for kind, vectors in one["distances"].items():
        for vector, values in vectors.items():
            assert two["distances"][kind][vector] == pytest.approx(values, abs=1e-3)
