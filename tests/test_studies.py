"""The studies of proto-token space on the tiny model: each runs, resumes and reports."""

import dataclasses
import json

import pytest
import torch

from prototokens import ProtoTokens, PrototokensError, decode_ids, encode_ids, get_recipe, load
from prototokens.cli import main
from prototokens.studies import arrangements, capacity, connectivity, geometry, locality, probe, sharing
from prototokens.studies.common import Text

RECIPE = get_recipe("fast").with_overrides(lr=0.05, relative_lr=False, max_steps=150, init="embedding-std", first_weight=1.0,
                                          dtype="float32", check_dtypes=(), margin=0.0)
SENTENCES = ["Alice was beginning to get very tired of sitting by her sister on the bank.",
             "All the world's a stage, and all the men and women merely players.",
             "Of Man's first disobedience, and the fruit of that forbidden tree.",
             "It is a truth universally acknowledged, that a single man in possession of a good fortune."]


def texts(lm, n=4):
    return [Text(f"t{i}", lm.tokenize(s), {}) for i, s in enumerate(SENTENCES[:n])]


@pytest.fixture
def source(tmp_path):
    """The sentences as a JSONL source: passages in sample order are the sentences."""
    path = tmp_path / "texts.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in SENTENCES))
    return str(path)


def test_arrangements_run_every_layout_at_every_length_and_resume(tiny, tmp_path, source, monkeypatch):
    config = arrangements.Config(source=source, texts=2, max_length=4, layouts=["em", "e-only"], recipe=RECIPE,
                                 progress=False)
    assert arrangements.lengths_up_to(4) == [1, 2, 4]
    tried = []
    attempt = capacity.attempt
    monkeypatch.setattr(capacity, "attempt", lambda lm, run, climbers, n, **kw: tried.append((kw["layout"].name, n))
                        or attempt(lm, run, climbers, n, **kw))
    runs = arrangements.run(tiny, config, tmp_path)
    # one length on every layout before the next: a run cut short leaves whole columns
    assert list(dict.fromkeys(tried)) == [("em", 1), ("e-only", 1), ("em", 2), ("e-only", 2), ("em", 4), ("e-only", 4)]
    assert {k: len(r.records) for k, r in runs.items()} == {"em": 6, "e-only": 6}  # no climbing: all of them
    again = arrangements.run(tiny, config, tmp_path)
    assert {k: len(r.records) for k, r in again.items()} == {"em": 6, "e-only": 6}
    e_only = [r for r in runs["e-only"].records if r["length"] == 4]
    assert all(r["accuracy"] <= 0.5 for r in e_only)  # one token written everywhere
    table = arrangements.table({k: r.records for k, r in runs.items()})
    assert "| em | [e][m]x(N-1) | 1.00 ± 0.00 |" in table and "N=4" in table
    (md,) = arrangements.report(tmp_path)
    assert md.read_text().endswith(table) and "2 texts from" in md.read_text()


def test_sharing_groups_share_one_vector_and_aggregate_as_table_2(tiny, tmp_path, source):
    folders = sharing.run(tiny, sharing.Config(source=source, texts=4, length=4, sizes=[1, 2], vectors=["m", "e"],
                                               seeds=2, batch_size=3, recipe=RECIPE, progress=False), tmp_path)
    assert sorted(folders) == [("e", 1), ("e", 2), ("m", 1), ("m", 2)]
    assert sorted(r["batch"] for r in folders["m", 1].records) == [1, 1, 3, 3, 3, 3, 3, 3]  # S = 1: batches of 3
    for (_vector, size), folder in folders.items():
        records = folder.records
        assert len(records) == 4 * 2  # every text with every seed
        assert len({r["group"] for r in records}) == (4 // size if size > 1 else 1)  # S = 1: no group
        assert (folder is folders["m", 1]) == (size == 1)  # S = 1 shares nothing: one run for both
        s = sharing.summary(records)
        assert s["max"] >= s["avg"] and len(s["seeds_needed"]) == 4 // size
    table = sharing.table({k: f.records for k, f in folders.items()})
    assert "| m | max |" in table and "| e | avg |" in table and "S=2" in table
    (md,) = sharing.report(tmp_path)
    assert md.read_text().endswith(table)


def test_connectivity_curves_are_rebuilt_and_checked_independently_from_the_files(tiny, tmp_path, source):
    config = connectivity.Config(source=source, texts=2, length=4, recipe=RECIPE, control_steps=30, check_every=10,
                                 points=3, progress=False)
    run = connectivity.run(tiny, config, tmp_path)
    checks = run.records[0]["control_checks"]
    assert [c["step"] for c in checks] == list(range(0, 10 * len(checks), 10)) and checks[-1]["step"] <= 30
    kept = [c["step"] for c in checks].index(run.records[0]["control_kept"])
    assert all(r["control_checks"][kept]["worst"] == min(r["curve"]) for r in run.records)
    assert load(tmp_path / "control.proto.safetensors").extra["finished"]
    start, end, control = (load(tmp_path / f"{n}.proto.safetensors", tiny) for n in ("start", "end", "control"))
    targets = [t.target_ids for t in start.texts]
    for i, r in enumerate(run.records):
        assert r["t"] == [0.0, 0.5, 1.0] and r["length_ratio"] >= 1.0
        assert r["line"][0] == r["curve"][0] == start.texts[i].accuracy
        # the curve's midpoint, rebuilt from the three files and decoded in one pass
        mid = [0.25 * a + 0.5 * c + 0.25 * b for a, c, b in zip(start.vectors(i), control.vectors(i), end.vectors(i))]
        point = ProtoTokens(e=mid[0][None], m=mid[1][None], layout=start.layout, shared=None, model=start.model,
                            recipe={}, texts=[start.texts[i]])
        (written,) = decode_ids(tiny, point)
        assert r["curve"][1] == sum(a == b for a, b in zip(written, targets[i])) / 4
    assert "worst on curve" in connectivity.table(run.records)
    assert connectivity.plot(run.records, run.settings, tmp_path / "c.png").stat().st_size > 0
    md, png = connectivity.report(tmp_path)
    assert "2 texts from" in md.read_text() and "N=4." in md.read_text() and png.stat().st_size > 0
    assert "training ended because" in md.read_text()
    assert "t_samples" not in run.settings  # the paper's training is recorded as before these options


def test_connectivity_can_draw_several_t_a_step_and_decay_the_controls_rate(tiny, tmp_path, source, monkeypatch):
    rows, rates = [], []
    evaluate = connectivity.evaluate

    def counted(lm, layout, vectors, targets, *args):
        rows.append(len(targets))
        return evaluate(lm, layout, vectors, targets, *args)

    class Adam(torch.optim.Adam):
        def step(self, *args, **kwargs):
            rates.append(self.param_groups[0]["lr"])
            return super().step(*args, **kwargs)

    monkeypatch.setattr(connectivity, "evaluate", counted)
    monkeypatch.setattr(torch.optim, "Adam", Adam)
    config = connectivity.Config(source=source, texts=2, length=4, recipe=RECIPE, control_steps=20, check_every=10,
                                 points=3, t_samples=3, control_schedule="cosine", progress=False)
    run = connectivity.run(tiny, config, tmp_path)
    assert (run.settings["t_samples"], run.settings["control_schedule"]) == (3, "cosine")
    assert rows.count(6) == len(rates) == 20  # each step: 2 texts at 3 values of t
    assert rates[0] == config.control_lr and all(a > b for a, b in zip(rates, rates[1:])) and rates[-1] < 0.01 * rates[0]
    with pytest.raises(PrototokensError, match="control schedule"):
        connectivity.run(tiny, dataclasses.replace(config, control_schedule="linear"), tmp_path / "bad")


@pytest.mark.parametrize("worst, finished", [
    ([[0.2, 0.3], [0.5, 0.6], [0.9, 0.95]], True),  # every curve at the goal
    ([[0.2, 0.3], [0.9, 0.95], [0.85, 0.9]], True),  # ... at the kept check, the best one
    ([[0.2, 0.3], [0.5, 0.6], [0.6, 0.7]], False),  # still gaining
    ([[0.2, 0.3], [0.5, 0.6], [0.3, 0.4], [0.55, 0.65]], False),  # a dip, then a new best
    ([[0.2, 0.3], [0.5, 0.6], [0.5, 0.6], [0.505, 0.6]], True),  # 2 checks without a gain of 0.01
])
def test_control_training_stops_at_the_goal_or_when_it_stops_helping(worst, finished):
    config = connectivity.Config(control_steps=1000, check_every=100, goal=0.9, patience=2)
    history = [{"step": 100 * i, "worst": w} for i, w in enumerate(worst)]
    assert connectivity._finished(history, config) == finished
    assert connectivity._finished(history + [{"step": 1000, "worst": [0.0, 0.0]}], config)  # the budget is spent


def test_probe_compares_generation_with_its_own_text_and_another(tiny, tmp_path):
    proto = encode_ids(tiny, [t.target_ids[:6] for t in texts(tiny, 2)], recipe=RECIPE, progress=False)
    config = probe.Config(file=proto.save(tmp_path / "p.proto.safetensors"), combinations=["e", "e m"])
    run = probe.run(tiny, config, tmp_path)
    assert len(run.records) == 4
    r = run.records[1]
    assert r["combination"] == "e m" and r["target"] == tiny.detokenize(proto.texts[0].target_ids)
    assert r["written"] == tiny.detokenize(tiny.greedy(torch.stack(proto.vectors(0)), 6))
    assert all(0 <= r[side][k] <= 1.0001 for r in run.records for side in ("matched", "mismatched") for k in ("f1", "accuracy"))
    assert len(probe.run(tiny, config, tmp_path).records) == 4
    assert "| e m |" in probe.report(tmp_path)[0].read_text()
    assert probe.token_f1([1, 2, 3], [3, 2, 9]) == pytest.approx(2 / 3)
    one = encode_ids(tiny, [texts(tiny, 1)[0].target_ids[:3]], recipe=RECIPE, progress=False)
    with pytest.raises(PrototokensError, match="two or more texts"):
        probe.probe(tiny, one, tmp_path / "one", combinations=["e"])


def test_locality_pairs_solutions_by_text_and_context(tiny, tmp_path):
    source = tmp_path / "book.txt"
    source.write_text(" ".join(SENTENCES * 6))
    config = locality.Config(contexts=2, texts=2, seeds=2, length=3, source=str(source), recipe=RECIPE, progress=False)
    result = locality.run(tiny, config, tmp_path / "study")
    assert result["encoded"] == 2 * (2 + 1)
    solved = result["solved"]
    assert solved >= 4
    counts = {k: len(v["e"]) for k, v in result["distances"].items()}
    assert sum(counts.values()) <= solved * (solved - 1) // 2
    assert all(0 <= d <= 2 for v in result["distances"].values() for d in v["m"])
    assert json.loads((tmp_path / "study" / "locality.json").read_text())["solved"] == solved
    assert [p.name for p in locality.plot(result, tmp_path / "study")][0] == "locality_distances.png"
    assert locality.run(tiny, config, tmp_path / "study")["distances"] == result["distances"]  # resumed, not redone
    assert "encodings solved and counted" in locality.report(tmp_path / "study")[0].read_text()
    assert set(result["tests"]["em"]) == {"text", "context"}


def test_locality_under_torchrun_encodes_only_this_ranks_contexts(tiny, tmp_path, monkeypatch):
    from prototokens import distributed

    source = tmp_path / "book.txt"
    source.write_text(" ".join(SENTENCES * 6))
    for name, value in {"world_size": lambda: 2, "rank": lambda: 1, "barrier": lambda: None, "from_main": lambda v: v}.items():
        monkeypatch.setattr(distributed, name, value)
    config = locality.Config(contexts=2, texts=2, seeds=2, length=3, source=str(source), recipe=RECIPE, progress=False)
    assert locality.run(tiny, config, tmp_path / "study") is None  # rank 0 measures
    assert sorted(p.name for p in (tmp_path / "study").glob("*.proto.safetensors")) == \
        [f"context-1-text-{k}-seed-{s}.proto.safetensors" for k, s in ((0, 0), (0, 1), (1, 0))]


def test_locality_ordering_tests_detect_the_ordering_and_its_reverse():
    g = torch.Generator().manual_seed(0)
    labels = [(c, k, s) for c in range(4) for k in range(3) for s in range(3 if k == 0 else 1)]
    contexts, texts = torch.tensor([c for c, _, _ in labels]), torch.tensor([c * 10 + k for c, k, _ in labels])
    # context centres far apart, texts nearer, seeds of one text nearest
    x = (torch.randn(4, 8, generator=g)[contexts] * 10 + torch.randn(40, 8, generator=g)[texts] * 3
         + torch.randn(len(labels), 8, generator=g) * 0.3)
    distances = torch.cdist(x, x)
    ordered = locality.ordering_tests(distances, contexts, texts, permutations=2000)
    assert ordered["text"]["gap"] > 0 and ordered["text"]["p"] < 0.01
    assert ordered["context"]["gap"] > 0 and ordered["context"]["p"] < 0.01
    reversed_ = locality.ordering_tests(-distances, contexts, texts, permutations=2000)
    assert reversed_["text"]["p"] > 0.9 and reversed_["context"]["p"] > 0.9
    one_seed = [i for i, (_, _, s) in enumerate(labels) if s == 0]
    assert locality.ordering_tests(distances[one_seed][:, one_seed], contexts[one_seed], texts[one_seed])["text"] is None


def test_geometry_finds_the_token_a_vector_was_made_from(tiny):
    table = tiny.token_embeddings()
    near = geometry.nearest_tokens(tiny, table[[7, 11]] * 3.0, k=2, table=table)
    assert near[0][0] == (tiny.tokenizer.convert_ids_to_tokens(7), pytest.approx(1.0))
    assert near[1][0][0] == tiny.tokenizer.convert_ids_to_tokens(11)


def test_sharing_table_says_how_much_of_a_study_under_way_it_holds():
    def run(*accuracies, group=None):
        return [{"text": f"t{k % 2}", "accuracy": a, "group": group, "seed": k // 2} for k, a in enumerate(accuracies)]
    complete = {("m", 1): run(1.0, 0.5, 1.0, 1.0), ("m", 2): run(0.5, 0.5, 1.0, 0.5, group="g")}
    assert "runs done" not in sharing.table(complete, expected=4)
    under_way = complete | {("m", 2): run(0.5, 0.5, 1.0, group="g")}  # one text has not run its second seed
    assert sharing.table(under_way, expected=4).splitlines()[-1] == "| m | runs done (texts x seeds), while under way | 4/4 | 3/4 |"


def test_geometry_rebuilds_the_start_each_seed_drew(tiny):
    unmoved = get_recipe("fast").with_overrides(max_steps=0, dtype="float32", check_dtypes=(), margin=0.0)
    proto = encode_ids(tiny, [[5, 6, 7], [8, 9]], recipe=unmoved, seed=3, restarts=1, progress=False)
    assert geometry.start_cosines(tiny, proto) == {"e": [pytest.approx(1.0)] * 2, "m": [pytest.approx(1.0)] * 2}
    proto.texts[1].seed = 4  # another seed's start is another random direction
    assert geometry.start_cosines(tiny, proto)["m"][1] < 0.5
    proto.recipe["start"] = "encoder 0123"  # the first seed started from an encoder: not rebuilt
    assert geometry.start_cosines(tiny, proto) == {"e": [pytest.approx(0.0, abs=0.5)], "m": [pytest.approx(0.0, abs=0.5)]}


def test_study_cli_writes_its_table_and_refuses_bad_names(tiny_path, tmp_path, capsys):
    source = tmp_path / "texts.jsonl"
    source.write_text("".join(json.dumps(s) + "\n" for s in SENTENCES))
    out = tmp_path / "arr"
    common = ["--model", tiny_path, "--source", str(source), "--steps", "40", "--lr", "0.5", "--init", "embedding-std", "-q"]
    assert main(["study", "arrangements", "-o", str(out), "--texts", "2", "--max-length", "2", "--layouts", "em,e-only", *common]) == 0
    assert "| e-only | [e]xN |" in (out / "arrangements.md").read_text()
    assert main(["study", "arrangements", "-o", str(out), "--layouts", "em,diagonal", *common]) == 2
    assert "unknown layout diagonal" in capsys.readouterr().err
