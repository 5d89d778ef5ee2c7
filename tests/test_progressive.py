"""Progressive growth (progressive_cramming's protocol) on the tiny model: stages, warm start on
one optimiser state, and the capacity sweep's ``--search progressive``."""

import json
import shutil

import pytest
import torch

from prototokens import PrototokensError, get_recipe
from prototokens.cramming import Cramming, evaluate
from prototokens.layout import resolve_layout
from prototokens.optimize import Fit
from prototokens.optimizers import OPTIMIZERS, RowAdamW
from prototokens.progressive import progressive
from prototokens.records import read_records
from prototokens.studies import capacity, report

SENTENCES = ["Alice was beginning to get very tired of sitting by her sister on the bank.",
             "All the world's a stage, and all the men and women merely players."]
RECIPE = Cramming(1).recipe("progressive").with_overrides(max_steps=1500)


def test_each_text_grows_until_a_stage_fails_and_keeps_its_longest_exact_prefix(tiny):
    targets = [tiny.tokenize(s) for s in SENTENCES]
    climbs = progressive(tiny, targets, layout=Cramming(1), recipe=RECIPE, grow=2, stage_steps=150, progress=False)
    for climb, target in zip(climbs, targets):
        assert climb.passed is not None and climb.failed is not None  # the tiny model holds a few tokens, not all
        assert climb.failed.length == climb.horizon + 2 and climb.horizon % 2 == 1  # 1, 3, 5, ...
        assert climb.passed.outcome.status == "solved" and climb.failed.outcome.status == "unsolved"
        # the failed stage ran its 150 updates (its kept state is its best, which may come earlier)
        assert climb.total_steps in (climb.passed.outcome.total_steps + 150, RECIPE.max_steps)
        assert climb.failed.outcome.steps <= 150
        fit = Fit({"mem": torch.stack([climb.passed.vectors["mem"], climb.failed.vectors["mem"]])},
                  [climb.passed.outcome, climb.failed.outcome], 0.0)
        passed, failed = evaluate(tiny, fit, [target[: climb.horizon], target[: climb.failed.length]])
        assert passed["greedy_accuracy"] == 1.0 and failed["teacher_forced_accuracy"] < 1.0


def test_the_stages_run_on_one_optimiser_state(tiny, monkeypatch):
    steps = []

    class Counted(RowAdamW):
        def step(self, rows_per_param):
            steps.append(int(self.t[0].max()))
            super().step(rows_per_param)

    monkeypatch.setitem(OPTIMIZERS, "counted", Counted)
    climb, = progressive(tiny, [tiny.tokenize(SENTENCES[0])], layout=Cramming(1), recipe=RECIPE.with_overrides(optimizer="counted"),
                         stage_steps=150, progress=False)
    assert climb.horizon >= 2 and steps == list(range(climb.total_steps))  # one step count across every stage


def test_progressive_refuses_a_stage_of_no_steps(tiny):
    with pytest.raises(PrototokensError, match="at least 1"):
        progressive(tiny, [[1, 2]], layout=Cramming(1), recipe=RECIPE, stage_steps=0)


def test_a_progressive_sweep_records_each_texts_horizon_and_failure_and_resumes(tiny, tmp_path):
    texts = [capacity.Text(f"t{i}", tiny.tokenize(s), {}) for i, s in enumerate(SENTENCES)]
    args = dict(source="test", grid=[16], layout=Cramming(1), recipe=RECIPE, search="progressive", stage_steps=150, progress=False)
    capacity.sweep(tiny, texts, tmp_path, **args)
    records = read_records(tmp_path / "records.jsonl")
    assert sorted((r["text"], r["stage"]) for r in records) == [("t0", "failed"), ("t0", "passed"), ("t1", "failed"), ("t1", "passed")]
    for r in records:
        assert (r["accuracy"] == 1.0) == (r["stage"] == "passed") and r["accuracy"] == r["greedy_accuracy"]
    settings = json.loads((tmp_path / "run.json").read_text())
    assert (settings["search"], settings["grow"], settings["stage_steps"], settings["recipe"]["name"]) == ("progressive", 1, 150, "progressive+custom")
    assert "first" not in settings and "polished_stages" not in settings  # as folders from before these options read
    assert not list(tmp_path.glob("climb-*"))  # a batch's climb state goes once it is recorded
    before = (tmp_path / "records.jsonl").read_text()
    capacity.sweep(tiny, texts, tmp_path, **args)
    assert (tmp_path / "records.jsonl").read_text() == before
    with pytest.raises(PrototokensError, match="one seed and one start per text"):
        capacity.sweep(tiny, texts, tmp_path / "two", **args | {"seeds": 2})
    with pytest.raises(PrototokensError, match="one seed and one start per text"):
        capacity.sweep(tiny, texts, tmp_path / "raced", **args | {"recipe": args["recipe"].with_overrides(starts=2, race_above=0)})


def test_a_one_step_progressive_sweep_starts_at_the_grids_first_length(tiny, tmp_path):
    texts = [capacity.Text("t0", tiny.tokenize(SENTENCES[0]), {})]
    recipe = get_recipe("fast").with_overrides(dtype="float32", check_dtypes=(), max_steps=300)
    capacity.sweep(tiny, texts, tmp_path, source="test", grid=[4, 8, 16], recipe=recipe, search="progressive",
                   stage_steps=300, progress=False)
    settings = json.loads((tmp_path / "run.json").read_text())
    assert settings["first"] == 4 and settings["polished_stages"]  # a folder climbed before stages polished is refused
    lengths = {r["stage"]: r["length"] for r in read_records(tmp_path / "records.jsonl")}
    assert min(lengths.values()) >= 4 and lengths["failed"] == lengths.get("passed", 3) + 1  # no stage below 4


def test_a_stage_passes_only_when_every_check_dtype_agrees_and_is_checked_every_few_steps(tiny, monkeypatch):
    import importlib

    from prototokens.optimize import RECHECK

    module = importlib.import_module("prototokens.optimize")  # where a climb's stage is read in every dtype
    calls = []
    monkeypatch.setattr(module, "_margins_everywhere", lambda *args: calls.append(1))  # a dtype that never agrees
    recipe = get_recipe("fast").with_overrides(dtype="float32", check_dtypes=("float32", "bfloat16"), margin=0.0, max_steps=400)
    climb, = progressive(tiny, [tiny.tokenize(SENTENCES[1])], layout="em-plus-one", recipe=recipe, stage_steps=100, progress=False)
    assert climb.passed is None and climb.failed.length == 1 and climb.failed.outcome.accuracy == 1.0
    assert 1 <= len(calls) <= 100 // RECHECK + 1


def test_a_stage_exact_in_the_compute_dtype_trains_through_the_other_check_dtypes(tiny_path, other_tiny_path,
                                                                                   monkeypatch):
    import importlib

    import prototokens.progressive as module
    from prototokens import load_model

    lm = load_model(tiny_path, device="cpu")
    # as in optimize's polish test: the compute dtype (bf16) stands for weights that write otherwise than the fp32 ones
    lm._twins = {torch.float32: lm, torch.bfloat16: load_model(other_tiny_path, device="cpu", dtype="bfloat16")}
    calls, evaluate = [], module.evaluate

    def spy(model, layout, vectors, targets, *args):
        calls.append((model.dtype, vectors["m"].requires_grad))
        return evaluate(model, layout, vectors, targets, *args)

    for where in (module, importlib.import_module("prototokens.optimize")):
        monkeypatch.setattr(where, "evaluate", spy)
    target = lm.tokenize(SENTENCES[1])
    recipe = get_recipe("fast").with_overrides(lr=0.1, dtype="bfloat16", check_dtypes=("float32",), max_steps=900,
                                               polish=True)
    climb, = progressive(lm, [target], layout="em-plus-one", recipe=recipe, stage_steps=300, progress=False)
    assert climb.horizon >= 1  # here (not asserted) 2, and 0 without polish: no stage reads the same in both
    for model in lm._twins.values():  # the kept prefix reads exactly in both
        assert evaluate(model, resolve_layout("em-plus-one"), {k: v[None] for k, v in climb.passed.vectors.items()},
                        [target[: climb.horizon]]).accuracy.item() == 1.0
    trained = [k for k, (dtype, grad) in enumerate(calls) if dtype == torch.float32 and grad]
    assert trained and calls[trained[0] - 1] == (torch.bfloat16, True)  # beside a bf16 training pass
    calls.clear()
    progressive(lm, [target], layout="em-plus-one", recipe=recipe.with_overrides(polish=False), stage_steps=300,
                progress=False)
    assert not any(dtype == torch.float32 and grad for dtype, grad in calls)


def test_an_interrupted_climb_resumes_from_its_state_and_ends_as_an_uninterrupted_one(tiny, tmp_path, monkeypatch, capsys):
    import prototokens.progressive as module

    targets = [tiny.tokenize(s) for s in SENTENCES]
    args = dict(layout=Cramming(1), recipe=RECIPE.with_overrides(max_steps=400), grow=2, stage_steps=60, progress=False)
    evaluate, calls = module.evaluate, []

    def counted(*a, **k):
        calls.append(1)
        if len(calls) == stop:
            raise KeyboardInterrupt
        return evaluate(*a, **k)

    monkeypatch.setattr(module, "evaluate", counted)
    stop = None
    whole = progressive(tiny, targets, **args)
    evaluations = len(calls)
    stop, calls[:] = evaluations * 2 // 3, []  # interrupted two thirds of the way, within a stage
    state = tmp_path / "climb.safetensors"
    names = [f"text-{k}" for k in range(len(targets))]
    monkeypatch.setattr(module, "SAVE_SECONDS", 0.0)  # kept after every update, not only when a stage ends
    with pytest.raises(KeyboardInterrupt):
        progressive(tiny, targets, state=state, names=names, **args)
    assert state.exists()
    standing = module.standing(state)  # what a report reads of a climb under way
    assert [t["name"] for t in standing] == names and {t["max_steps"] for t in standing} == {400}
    for t, climb, target in zip(standing, whole, targets):
        assert t["passed"] <= climb.horizon and 0 < t["used"] <= climb.total_steps
        assert t["stage"] is None or t["stage"] == min(t["passed"] + 2 if t["passed"] else 1, len(target))  # first 1, grow 2
    from prototokens.cli import main

    assert main(["info", str(state)]) == 0  # the CLI prints the same, with what the state was kept for
    printed = json.loads(capsys.readouterr().out)["climb"]
    assert printed["texts"] == standing and (printed["model"]["name"], printed["grow"], printed["stage_steps"]) == (tiny.name, 2, 60)
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"study": "capacity", "source": "books", "model": "tiny", "search": "progressive",
                                              "seeds": 1, "recipe": {"name": "fast", "max_steps": 400}}))
    shutil.copy(state, run / "climb-x.safetensors")
    md = report.write(run)[0].read_text()  # no record yet: the climbs alone
    assert "## Climbs under way" in md and f"| . | tiny | books | one-step, progressive | text-0 | {standing[0]['passed']} |" in md
    (run / "records.jsonl").write_text(json.dumps({"key": "k", "text": "other", "length": 4, "seed": 0, "accuracy": 1.0,
                                                   "h_lm_nats": 10.0}) + "\n")
    md = report.write(run)[0].read_text()  # a text recorded, two still climbing
    assert "| books | one-step, progressive | per text | 1 | 4 ± 0 | 10 ± 0 | 2 | tiny |" in md and "## Climbs under way" in md
    done, stop, calls[:] = stop - 1, None, []
    resumed = progressive(tiny, targets, state=state, **args)
    assert len(calls) == evaluations - done  # resumed at the update the interruption cut, not at its stage's start
    for a, b in zip(whole, resumed):
        assert (a.horizon, a.failed.length, a.total_steps) == (b.horizon, b.failed.length, b.total_steps)
        assert a.passed.outcome.total_steps == b.passed.outcome.total_steps
        assert all(torch.equal(a.passed.vectors[k], b.passed.vectors[k]) for k in a.passed.vectors)
        assert all(torch.equal(a.failed.vectors[k], b.failed.vectors[k]) for k in a.failed.vectors)
    with pytest.raises(PrototokensError, match="other texts, settings or model"):
        progressive(tiny, targets, state=state, **args | {"grow": 1})


def test_a_one_step_climbs_state_decodes_and_verifies_as_the_prefixes_it_has_passed(tiny, tiny_path, tmp_path, capsys):
    from prototokens import decode_ids
    from prototokens.cli import main
    from prototokens.progressive import passed_prefixes

    targets = [tiny.tokenize(s) for s in SENTENCES]
    recipe = get_recipe("fast").with_overrides(dtype="float32", check_dtypes=(), max_steps=300)
    state = tmp_path / "climb.safetensors"
    climbs = progressive(tiny, targets, layout="start-em-plus-one", recipe=recipe, first=4, stage_steps=150,
                         state=state, names=["a", "b"], progress=False)
    kept = [(name, c, target) for name, c, target in zip("ab", climbs, targets) if c.passed]
    assert kept  # the tiny model holds some prefix of at least one sentence
    proto = passed_prefixes(state, tiny)
    assert proto.extra["names"] == [name for name, _, _ in kept]
    assert [t.target_ids for t in proto.texts] == [target[: c.horizon] for _, c, target in kept]
    assert decode_ids(tiny, [proto]) == [t.target_ids for t in proto.texts]
    assert main(["verify", str(state), "--model", tiny_path, "--json"]) == 0  # the CLI reads a state as such a file
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["n_tokens"], r["accuracy"]) for r in rows] == [(c.horizon, 1.0) for _, c, _ in kept]
    unpassed, cramming = tmp_path / "unpassed.safetensors", tmp_path / "cramming.safetensors"
    progressive(tiny, targets[:1], layout="start-em-plus-one", recipe=recipe.with_overrides(max_steps=1), first=4,
                stage_steps=1, state=unpassed, progress=False)
    progressive(tiny, targets[:1], layout=Cramming(1), recipe=RECIPE.with_overrides(max_steps=1), stage_steps=1,
                state=cramming, progress=False)
    for path, message in ((unpassed, "has passed a stage yet"), (cramming, "its vectors are not proto-tokens")):
        assert main(["decode", str(path), "--model", tiny_path]) == 2
        assert message in capsys.readouterr().err


def test_a_climb_kept_before_a_recipe_field_existed_resumes(tiny, tmp_path, monkeypatch):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    import prototokens.progressive as module

    args = dict(layout=Cramming(1), recipe=RECIPE.with_overrides(max_steps=200), stage_steps=60, progress=False)
    targets, state, evaluate, calls = [tiny.tokenize(SENTENCES[0])], tmp_path / "climb.safetensors", module.evaluate, []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 20:
            raise KeyboardInterrupt
        return evaluate(*a, **k)

    monkeypatch.setattr(module, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        progressive(tiny, targets, state=state, **args)
    monkeypatch.setattr(module, "evaluate", evaluate)
    with safe_open(state, "pt") as f:
        meta = json.loads(f.metadata()["prototokens.climb"])
    tensors = load_file(state)

    def keep(recipe: dict):
        save_file(tensors, state, {"prototokens.climb": json.dumps(meta | {"stamp": meta["stamp"] | {"recipe": recipe}})})

    recipe = meta["stamp"]["recipe"]
    keep({k: v for k, v in recipe.items() if k != "focus"})  # as a climb kept before Recipe.focus existed reads
    progressive(tiny, targets, state=state, **args)
    keep(recipe | {"focus": 1.0})  # a field that differs is still refused
    with pytest.raises(PrototokensError, match="other texts, settings or model"):
        progressive(tiny, targets, state=state, **args)
