import json
import os
import signal
import subprocess
import sys
import time

import pytest

from prototokens import PrototokensError, get_recipe
from prototokens.records import read_records
from prototokens.studies import capacity

RECIPE = get_recipe("fast").with_overrides(lr=0.05, max_steps=150)
SENTENCES = ["Alice was beginning to get very tired of sitting by her sister on the bank.",
             "All the world's a stage, and all the men and women merely players.",
             "Of Man's first disobedience, and the fruit of that forbidden tree."]


def texts(lm):
    return [capacity.Text(f"t{i}", lm.tokenize(s), {"sentence": i}) for i, s in enumerate(SENTENCES)]


def test_sweep_records_every_unit_and_stops_climbing_after_a_failure(tiny, tmp_path):
    run = capacity.run(tiny, texts(tiny), tmp_path, source="test", grid=[2, 4, 16], seeds=2,
                       recipe=RECIPE, progress=False)
    records = read_records(tmp_path / "records.jsonl")
    assert records == run.records
    by_text = {}
    for r in records:
        by_text.setdefault(r["text"], []).append((r["length"], r["seed"], r["accuracy"]))
    for text, rows in by_text.items():
        for length in {n for n, _, _ in rows}:
            at = [(s, a) for n, s, a in rows if n == length]
            # a second seed only where the first failed
            assert [s for s, _ in at] == ([0] if at[0][1] >= 0.99 else [0, 1][: len(at)])
        failed = [n for n in {n for n, _, _ in rows} if all(a < 0.99 for m, _, a in rows if m == n)]
        assert all(n <= min(failed) for n, _, _ in rows) if failed else True
    assert all(r["h_lm_nats"] > 0 and r["c_tokens"] == round(r["accuracy"] * r["length"]) for r in records)


def test_a_rerun_skips_what_is_done(tiny, tmp_path):
    capacity.run(tiny, texts(tiny), tmp_path, source="test", grid=[2, 4], recipe=RECIPE, progress=False)
    before = (tmp_path / "records.jsonl").read_text()
    capacity.run(tiny, texts(tiny), tmp_path, source="test", grid=[2, 4], recipe=RECIPE, progress=False)
    assert (tmp_path / "records.jsonl").read_text() == before


def test_changed_settings_are_refused_not_mixed(tiny, tmp_path):
    capacity.run(tiny, texts(tiny)[:1], tmp_path, source="test", grid=[2], recipe=RECIPE, progress=False)
    with pytest.raises(PrototokensError, match="other settings \\(recipe differ"):
        capacity.run(tiny, texts(tiny)[:1], tmp_path, source="test", grid=[2],
                     recipe=RECIPE.with_overrides(lr=0.01), progress=False)


def test_shared_m_sweeps_the_group_together(tiny, tmp_path):
    capacity.run(tiny, texts(tiny)[:2], tmp_path, source="test", grid=[2, 3], shared=True,
                 recipe=RECIPE, progress=False)
    records = read_records(tmp_path / "records.jsonl")
    assert {r["group"] for r in records if r["length"] == 2} != {None}
    assert len([r for r in records if r["length"] == 2]) == 2


def test_cramming_teacher_forced_and_greedy_accuracy_on_a_tiny_model(tiny):
    from prototokens.cramming import Cramming, cram, evaluate, generate_from_mem

    target = tiny.tokenize("Alice was beginning")
    fit = cram(tiny, [target], mem=2, recipe=RECIPE.with_overrides(max_steps=300), progress=False)
    assert fit.vectors["mem"].shape == (1, 2, tiny.d_model)
    assert fit.status == ["solved"]
    (row,) = evaluate(tiny, fit, [target])
    # greedy generation from [mem] alone, checked independently of evaluate()
    assert row["greedy_accuracy"] == sum(
        a == b for a, b in zip(generate_from_mem(tiny, fit.vectors["mem"][0], len(target)), target)) / len(target)
    assert row["teacher_forced_accuracy"] == 1.0
    assert row["information_gain_nats"] > 0
    assert Cramming(2).n_inputs(len(target)) == 2 + len(target) - 1


def test_cramming_sweep_counts_greedy_accuracy_and_records_both(tiny, tmp_path):
    capacity.run(tiny, texts(tiny)[:2], tmp_path, source="test", grid=[2, 4], mem=1, recipe=RECIPE, progress=False)
    records = read_records(tmp_path / "records.jsonl")
    assert json.loads((tmp_path / "run.json").read_text())["study"] == "cramming"
    assert records and all(r["accuracy"] == r["greedy_accuracy"] for r in records)
    assert all({"teacher_forced_accuracy", "token_gain", "information_gain_nats"} <= set(r) for r in records)
