import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from prototokens import FrozenLM, PrototokensError, Recipe, decode_ids, encode_ids, get_recipe, optimize
from prototokens.layout import DEFAULT_LAYOUT, LAYOUTS
from prototokens.optimizers import OPTIMIZERS
from prototokens.recipe import OFF, label, same_recipe

RECIPE = get_recipe("fast").with_overrides(lr=0.05, relative_lr=False, max_steps=400, init="embedding-std", first_weight=1.0,
                                          dtype="float32", check_dtypes=(), margin=0.0)
TEXTS = ["Alice was beginning to get", "All the world's a stage", "Of Man's first"]


def ids(lm, text):
    return lm.tokenize(text)


@pytest.mark.parametrize("layout", [name for name in LAYOUTS if name != "e-only"])
def test_every_layout_with_m_reaches_full_accuracy_on_a_short_text(tiny, layout):
    target = ids(tiny, "Alice was")[: 2 if layout == "halves" else None]  # [e, e, ...] repeats a token
    proto = encode_ids(tiny, [target], layout=layout, recipe=RECIPE, progress=False, restarts=3)
    assert proto.texts[0].status == "solved"
    assert decode_ids(tiny, proto) == [target]


def test_e_only_writes_one_token_everywhere_as_in_table_1(tiny):
    target = ids(tiny, "Alice was")
    assert len(set(target)) == len(target) > 1
    proto = encode_ids(tiny, [target], layout="e-only", recipe=RECIPE.with_overrides(max_steps=100), progress=False)
    (written,) = decode_ids(tiny, proto)
    assert len(set(written)) == 1  # identical inputs under RoPE give identical outputs
    assert proto.texts[0].accuracy == 1 / len(target)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_batched_equals_one_at_a_time_with_unequal_lengths(tiny, optimizer):
    # Short prefixes that any random init of the tiny model learns well inside the budget; what
    # must agree is the outcome and the early path, not step counts a last-bit difference can move
    # (a row's gradient, and its softmax over a padded batch, differ from its own in the last bits).
    targets = [ids(tiny, t)[:k] for t, k in zip(TEXTS, (5, 4, 3))]
    assert len({len(t) for t in targets}) > 1
    options = dict(recipe=RECIPE.with_overrides(optimizer=optimizer), restarts=2, trajectory=True, progress=False)
    together = encode_ids(tiny, targets, **options)
    assert [t.status for t in together.texts] == ["solved"] * 3
    for i, target in enumerate(targets):
        alone = encode_ids(tiny, [target], **options)
        assert alone.texts[0].status == together.texts[i].status
        early = [[t.loss for t in trajectory[:20]] for trajectory in (alone.trajectory[0], together.trajectory[i])]
        torch.testing.assert_close(torch.tensor(early[0]), torch.tensor(early[1]), rtol=1e-3, atol=1e-4)
        assert decode_ids(tiny, alone) == decode_ids(tiny, together)[i: i + 1] == [target]


def test_same_seed_gives_the_same_vectors_and_another_seed_does_not(tiny):
    target = [ids(tiny, TEXTS[0])]
    a, b = (optimize(tiny, target, recipe=RECIPE, seed=0, progress=False) for _ in range(2))
    c = optimize(tiny, target, recipe=RECIPE, seed=1, progress=False)
    assert torch.equal(a.e, b.e) and torch.equal(a.m, b.m)
    assert not torch.allclose(a.e, c.e)


def test_a_solved_text_stops_while_the_others_go_on(tiny):
    short, long = ids(tiny, "Alice"), ids(tiny, "Of Man's first disobedience, and the fruit of that forbidden tree.")
    fit = optimize(tiny, [short, long], recipe=RECIPE.with_overrides(max_steps=120), progress=False, trajectory=True)
    assert fit.outcomes[0].status == "solved" and fit.outcomes[0].steps < 120
    assert fit.outcomes[0].total_steps == fit.outcomes[0].steps  # no updates after it was solved
    assert 0 < fit.outcomes[0].elapsed < fit.seconds  # its time to solution, measured inside the batch
    assert len(fit.trajectory[0]) == fit.outcomes[0].steps + 1
    assert len(fit.trajectory[1]) == 121
    assert fit.outcomes[1].status == "unsolved"  # too long for the tiny model in 120 steps


def test_shared_m_is_one_vector_that_serves_every_text(tiny):
    targets = [ids(tiny, "Alice was"), ids(tiny, "All the")]
    proto = encode_ids(tiny, targets, recipe=RECIPE, shared="m", progress=False, restarts=3)
    assert proto.m.shape == (1, tiny.d_model) and proto.e.shape == (2, tiny.d_model)
    assert [t.status for t in proto.texts] == ["solved", "solved"]
    assert decode_ids(tiny, proto) == targets


def test_restarts_try_new_seeds_only_for_unsolved_texts(tiny):
    long = ids(tiny, "Of Man's first disobedience, and the fruit")
    fit = optimize(tiny, [ids(tiny, "Alice"), long], recipe=RECIPE.with_overrides(max_steps=30),
                   restarts=2, progress=False, trajectory=True)
    assert {s for s, *_ in fit.trajectory[0]} == {0}
    assert {s for s, *_ in fit.trajectory[1]} == {0, 1}
    assert fit.outcomes[1].total_steps == 60


def test_a_longer_text_gets_steps_and_patience_scaled_with_its_length(tiny):
    budget = RECIPE.with_overrides(max_steps=6, patience=40, margin=1e9, budget_tokens=4, starts=1, pace=OFF)  # never solved
    assert (budget.at_length(3), budget.at_length(4)) == (budget, budget)
    assert (budget.at_length(6).max_steps, budget.at_length(6).patience, get_recipe("fast@6").at_length(64).max_steps) == (9, 60, 1000)
    target = ids(tiny, TEXTS[0] + " very tired of sitting")
    assert len(target) >= 8
    fit = optimize(tiny, [target[:4], target[:8], target[:3]], recipe=budget, restarts=2, progress=False)
    assert [o.total_steps for o in fit.outcomes] == [12, 24, 12]  # two seeds each, the longer one apart
    shared = optimize(tiny, [target[:4], target[:8]], recipe=budget, shared="m", progress=False)
    assert [o.total_steps for o in shared.outcomes] == [12, 12]  # a shared m runs at its longest text
    with pytest.raises(PrototokensError, match="budget_tokens must be at least 1"):
        RECIPE.with_overrides(budget_tokens=0)


def test_raced_starts_keep_only_the_most_advanced_after_the_race(tiny):
    target = ids(tiny, "Of Man's first disobedience, and the fruit of that forbidden tree.")
    never = RECIPE.with_overrides(max_steps=30, margin=1e9, patience=OFF)  # never solved
    race = optimize(tiny, [target], recipe=never.with_overrides(starts=3, race_steps=10, race_above=0), progress=False, trajectory=True)
    steps = race.trajectory[0]
    assert {(t.seed, t.start) for t in steps if t.step <= 10} == {(0, 0), (0, 1), (0, 2)}
    (winner,) = {t.start for t in steps if t.step > 10}
    assert race.outcomes[0].total_steps == 3 * 10 + 20  # three starts to step 10, one after
    at_race = {j: (max(t.accuracy for t in steps if t.start == j and t.step <= 10),
                   -next(t.loss for t in steps if t.start == j and t.step == 10)) for j in range(3)}
    assert at_race[winner] == max(at_race.values())
    # start 0 is the seed's own start: its steps are those of the seed run alone
    alone = optimize(tiny, [target], recipe=never, progress=False, trajectory=True).trajectory[0]
    torch.testing.assert_close(torch.tensor([t.loss for t in steps if t.start == 0][:11]),
                               torch.tensor([t.loss for t in alone[:11]]), rtol=1e-4, atol=1e-5)


def test_a_start_that_solves_ends_its_texts_race(tiny):
    short, long = ids(tiny, "Alice was"), ids(tiny, "Of Man's first disobedience, and the fruit of that")
    recipe = RECIPE.with_overrides(max_steps=200, starts=2, race_steps=150, race_above=0)
    fit = optimize(tiny, [short, long], recipe=recipe, progress=False, trajectory=True)
    assert fit.outcomes[0].solved and fit.outcomes[0].steps < 150
    assert fit.outcomes[0].total_steps == 2 * fit.outcomes[0].steps  # both starts stopped at the solve
    assert {t.start for t in fit.trajectory[1] if t.step == fit.outcomes[0].steps} == {0, 1}  # the other text races on
    assert decode_ids(tiny, encode_ids(tiny, [short], recipe=recipe, progress=False)) == [short]


def test_the_race_keeps_its_length_where_the_budget_grows_and_bad_starts_are_refused():
    recipe = RECIPE.with_overrides(max_steps=1000, starts=2, race_steps=100, budget_tokens=32)
    assert [(recipe.at_length(n).max_steps, recipe.at_length(n).race_steps) for n in (32, 64)] == [(1000, 100), (2000, 100)]
    fast = get_recipe("fast")  # races only texts longer than race_above
    assert [(fast.at_length(n).starts, fast.at_length(n).max_steps) for n in (16, 32, 33, 64)] == [(1, 1000), (1, 1000), (4, 1031), (4, 2000)]
    with pytest.raises(PrototokensError, match="starts and race_steps must be at least 1"):
        RECIPE.with_overrides(starts=0)


def test_the_running_average_is_read_beside_the_iterate_and_never_moves_it(tiny):
    target = ids(tiny, "Of Man's first disobedience, and the fruit of that forbidden tree.")
    never = RECIPE.with_overrides(max_steps=60, margin=1e9, patience=OFF)  # never solved: both run all 60 steps
    plain, averaged = (optimize(tiny, [target], recipe=never.with_overrides(average=beta), progress=False, trajectory=True)
                       for beta in (0.0, 0.9))
    assert [t.loss for t in plain.trajectory[0]] == [t.loss for t in averaged.trajectory[0]]  # the optimiser never sees it
    kept = lambda fit: (fit.outcomes[0].accuracy, -fit.outcomes[0].loss)  # noqa: E731
    assert kept(averaged) >= kept(plain)  # the average's reads only add states to keep
    short = ids(tiny, "Alice was")
    solved = encode_ids(tiny, [short], recipe=RECIPE.with_overrides(average=0.9), progress=False, restarts=3)
    assert solved.texts[0].status == "solved" and decode_ids(tiny, solved) == [short]
    with pytest.raises(PrototokensError, match="average must lie in"):
        RECIPE.with_overrides(average=1.0)


def test_pace_gives_a_slow_seed_up_at_its_step_where_starts_race(tiny):
    target = ids(tiny, "Of Man's first disobedience, and the fruit of that forbidden tree.")
    slow = RECIPE.with_overrides(max_steps=60, margin=1e9, patience=OFF, starts=1, race_above=0, pace=(10, 1.0))
    fit = optimize(tiny, [target], recipe=slow, restarts=2, progress=False)
    assert fit.outcomes[0].total_steps == 2 * 10  # each seed given up at step 10, short of 100 %
    assert fit.outcomes[0].status == "unsolved"
    assert slow.with_overrides(race_above=len(target)).at_length(len(target)).pace is None  # not where starts do not race
    scaled = slow.with_overrides(budget_tokens=8).at_length(16)
    assert (scaled.pace, scaled.max_steps) == ((20, 1.0), 120)
    assert Recipe.from_dict(json.loads(json.dumps(slow.to_dict()))) == slow
    with pytest.raises(PrototokensError, match="pace is"):
        RECIPE.with_overrides(pace=(10, 0.0))


class PoisonedAfter(FrozenLM):
    """Returns NaN logits from the ``after``-th forward pass on."""

    def __init__(self, lm, after):
        super().__init__(lm.model, lm.tokenizer, lm.name)
        self.calls, self.after = 0, after

    def logits(self, inputs_embeds):
        self.calls += 1
        out = super().logits(inputs_embeds)
        return out * math.nan if self.calls > self.after else out


def test_non_finite_loss_fails_that_text_and_keeps_the_others(tiny):
    poisoned = PoisonedAfter(tiny, after=150)
    short, long = ids(tiny, "Alice"), ids(tiny, "Of Man's first disobedience, and the fruit of that")
    fit = optimize(poisoned, [short, long], recipe=RECIPE, progress=False)
    assert [o.status for o in fit.outcomes] == ["solved", "failed"]
    assert torch.isfinite(fit.e).all() and torch.isfinite(fit.m).all()


def test_texts_too_long_for_the_model_are_refused(tiny):
    with pytest.raises(PrototokensError, match="text 1 has 200 tokens.*at most 128"):
        optimize(tiny, [[5, 6], [5] * 200], layout="em", progress=False)
    with pytest.raises(PrototokensError, match="at most 127"):
        optimize(tiny, [[5] * 128], layout="em-plus-one", progress=False)


def test_empty_input_is_refused(tiny):
    with pytest.raises(PrototokensError, match="text 0 is empty"):
        optimize(tiny, [[]], progress=False)
    with pytest.raises(PrototokensError, match="no texts"):
        optimize(tiny, [], progress=False)


def test_patience_gives_up_a_seed_that_stopped_improving(tiny):
    long = ids(tiny, "Of Man's first disobedience, and the fruit of that forbidden tree, whose mortal taste")
    fit = optimize(tiny, [long], recipe=RECIPE.with_overrides(max_steps=400, patience=20), progress=False, trajectory=True)
    assert [o.status for o in fit.outcomes] == ["unsolved"] and fit.outcomes[0].total_steps < 400
    accuracies = [acc for *_, acc in fit.trajectory[0]]
    assert max(accuracies[-20:]) <= max(accuracies[:-20])  # nothing better in the last 20 steps


def test_the_reported_loss_is_the_plain_cross_entropy_whatever_the_first_target_weight(tiny):
    target = ids(tiny, TEXTS[1])
    fit = optimize(tiny, [target], recipe=RECIPE.with_overrides(first_weight=4.0, max_steps=20), progress=False)
    layout = LAYOUTS[DEFAULT_LAYOUT]
    z = layout.build(fit.e, fit.m, [len(target)], tiny)
    with torch.no_grad():
        logits = tiny.logits(z)[0, layout.outputs(len(target))].float()
    ce = torch.nn.functional.cross_entropy(logits, torch.tensor(target))
    assert fit.outcomes[0].loss == pytest.approx(float(ce), rel=1e-4)


def test_a_warm_start_from_a_prefix_solution_keeps_the_prefix_exact(tiny):
    target = ids(tiny, TEXTS[0])
    prefix = optimize(tiny, [target[:3]], recipe=RECIPE, progress=False)
    assert [o.status for o in prefix.outcomes] == ["solved"]
    again = optimize(tiny, [target[:3]], recipe=RECIPE, start=prefix.vectors, progress=False)
    assert [o.steps for o in again.outcomes] == [0] and [o.status for o in again.outcomes] == ["solved"]  # started where the prefix ended
    longer = optimize(tiny, [target], recipe=RECIPE.with_overrides(max_steps=1), start=prefix.vectors, progress=False)
    layout = LAYOUTS[DEFAULT_LAYOUT]
    with torch.no_grad():
        z = layout.build(prefix.e, prefix.m, [len(target)], tiny)
        head = tiny.logits(z)[0, layout.outputs(3)].argmax(-1).tolist()
    assert head == target[:3]  # causal: the prefix's outputs are unchanged inside the longer layout
    assert [o.total_steps for o in longer.outcomes] == [1]


def test_overrides_rename_a_recipe_once_and_only_when_a_value_changes():
    fast = get_recipe("fast")
    assert fast.with_overrides(lr=fast.lr, max_steps=None) is fast
    custom = fast.with_overrides(max_steps=10).with_overrides(init="normal")
    assert (custom.name, custom.max_steps, custom.init) == ("fast+custom", 10, "normal")


def test_a_recipe_names_its_version_and_old_records_without_one_still_match():
    fast = get_recipe("fast")
    assert fast.version == 11 and fast.to_dict()["version"] == 11 and fast.label == "fast v11"
    assert fast.with_overrides(max_steps=10).version == 11  # a custom recipe keeps its base's version
    adamw = get_recipe("fast@5")  # records older than versions and optimisers were made with AdamW
    old = {k: v for k, v in adamw.to_dict().items() if k not in ("version", "optimizer")}
    assert same_recipe(old, adamw.to_dict()) and label(old) == "fast" and not same_recipe(old, fast.to_dict())
    assert not same_recipe(fast.to_dict(), dataclasses.replace(fast, version=12).to_dict())
    assert not same_recipe(old, adamw.with_overrides(lr=1e-2).to_dict())
    assert Recipe.from_dict(fast.to_dict()) == fast


@pytest.mark.parametrize("version, run", [(1, "studies/arrangements/study.json"), (2, "capacity/books/run.json"),
                                          (3, "studies/locality-n32/study.json"), (4, "capacity/books-gemma/run.json"),
                                          (5, "capacity/books-gemma-v5/run.json"), (6, "capacity/books-shared-v6/run.json")])
def test_an_earlier_version_of_a_preset_is_the_one_its_committed_runs_recorded(version, run):
    recorded = json.loads((Path(__file__).parents[1] / "results" / run).read_text())
    recorded = recorded.get("config", recorded)["recipe"]
    assert same_recipe(recorded, get_recipe(f"fast@{version}").to_dict())
    assert get_recipe(f"fast@{version}").label == f"fast v{version}"
    assert get_recipe("fast@11") == get_recipe("fast")
    v10 = dataclasses.replace(get_recipe("fast"), version=10, temperature=1.0)  # v10 took the cross-entropy as it is
    assert get_recipe("fast@10") == v10
    v9 = dataclasses.replace(v10, version=9, init="start")  # v9 started e at the document-start token
    assert get_recipe("fast@9") == v9
    assert get_recipe("fast@8") == dataclasses.replace(v9, version=8, pace=None)  # v8 gave no seed up for its pace
    assert get_recipe("fast@7") == dataclasses.replace(v9, version=7, starts=1, race_above=0, pace=None)  # v7 raced nothing
    for bad, message in (("fast@12", "recipe fast has no version '12'; it has: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11"),
                         ("paper@2", "recipe paper has no version '2'; it has: 1"), ("slow@1", "unknown recipe 'slow@1'")):
        with pytest.raises(PrototokensError, match=message):
            get_recipe(bad)


def test_the_cosine_ends_at_the_floor_and_a_temperature_or_focus_changes_only_the_objective(tiny):
    recipe = get_recipe("fast").with_overrides(lr_floor=0.01, warmup=10, max_steps=110)
    assert recipe.lr_at(5) == pytest.approx(recipe.lr * 5 / 11) and recipe.lr_at(10 + 100) == pytest.approx(recipe.lr * 0.01)
    assert recipe.lr_at(60) == pytest.approx(recipe.lr * (0.01 + 0.99 / 2))
    for bad in (dict(temperature=0.0), dict(lr_floor=1.5), dict(focus=-1.0)):
        with pytest.raises(PrototokensError, match="temperature must be positive, lr_floor in"):
            recipe.with_overrides(**bad)
    from prototokens.optimize import evaluate

    target = ids(tiny, "Alice was")
    vectors = {"e": torch.randn(1, tiny.d_model), "m": torch.randn(1, tiny.d_model)}
    layout = LAYOUTS["em-plus-one"]
    plain, sharp = evaluate(tiny, layout, vectors, [target]), evaluate(tiny, layout, vectors, [target], temperature=0.5)
    logits = tiny.logits(layout.inputs(vectors, [target], tiny))[0, layout.outputs(len(target))].float()
    by_hand = torch.nn.functional.cross_entropy(logits / 0.5, torch.tensor(target))
    assert float(sharp.objective[0]) == pytest.approx(float(by_hand), rel=1e-5)
    assert (sharp.loss, sharp.accuracy, sharp.margin) == (plain.loss, plain.accuracy, plain.margin)  # reported at T = 1
    focal = evaluate(tiny, layout, vectors, [target], focus=2.0)
    ce = torch.nn.functional.cross_entropy(logits, torch.tensor(target), reduction="none")
    assert float(focal.objective[0]) == pytest.approx(float((ce * (1 - (-ce).exp()) ** 2).mean()), rel=1e-5)
    assert (focal.loss, focal.accuracy, focal.margin) == (plain.loss, plain.accuracy, plain.margin)
    # faded: the exponent is focus x the text's error rate; one-step inputs do not depend on the
    # target, so the argmax rows make a text half written
    half = logits.argmax(-1).tolist()[: len(target) // 2] + target[len(target) // 2:]
    two = {name: v.expand(2, -1) for name, v in vectors.items()}
    faded = evaluate(tiny, layout, two, [half, target], focus=2.0, focus_fade=True)
    for k, text in enumerate([half, target]):
        ce = torch.nn.functional.cross_entropy(logits, torch.tensor(text), reduction="none")
        gamma = 2.0 * (1 - float(faded.accuracy[k]))
        assert float(faded.objective[k]) == pytest.approx(float((ce * (1 - (-ce).exp()) ** gamma).mean()), rel=1e-5)
    assert float(faded.accuracy[0]) >= 0.5 > float(faded.accuracy[1])


def test_a_relative_lr_counts_in_the_models_embedding_std(tiny):
    relative = get_recipe("fast").with_overrides(max_steps=1, schedule="constant", weight_decay=0.0, dtype="float32", check_dtypes=(),
                                                 margin=0.0, polish=False)
    assert relative.relative_lr and relative.for_model(tiny).lr == pytest.approx(relative.lr * tiny.embedding_std)
    absolute = relative.with_overrides(relative_lr=False)
    assert absolute.for_model(tiny) is absolute
    target = ids(tiny, "Alice was beginning")
    start = optimize(tiny, [target], recipe=relative.with_overrides(max_steps=0), progress=False).vectors["m"]
    for recipe, lr in ((relative, relative.lr * tiny.embedding_std), (absolute, absolute.lr)):
        moved = optimize(tiny, [target], recipe=recipe, progress=False).vectors["m"] - start
        assert moved.abs().max() == pytest.approx(lr, rel=1e-3)  # AdamW's first step: lr in each coordinate


def test_a_recipe_names_a_registered_optimizer():
    assert get_recipe("fast").optimizer == "eigen-adamw" and get_recipe("fast@5").optimizer == "adamw"
    with pytest.raises(PrototokensError, match="unknown optimizer 'sgd'; choose one of: adamw"):
        get_recipe("fast").with_overrides(optimizer="sgd")


def test_an_optimizer_added_to_the_registry_is_picked_by_name(tiny, monkeypatch):
    from prototokens.optimizers import RowAdamW

    calls = []

    class Counted(RowAdamW):
        def step(self, rows_per_param):
            calls.append([len(r) for r in rows_per_param])
            super().step(rows_per_param)

    monkeypatch.setitem(OPTIMIZERS, "counted", Counted)
    fit = optimize(tiny, [ids(tiny, "Alice was")], recipe=RECIPE.with_overrides(optimizer="counted"), progress=False)
    assert len(calls) == fit.outcomes[0].total_steps > 0


def test_eigen_adamw_steps_along_a_steady_gradient_where_adamw_steps_along_its_signs():
    from prototokens.optimizers import EigenAdamW, RowAdamW

    recipe = RECIPE.with_overrides(weight_decay=0.0)
    direction = torch.nn.functional.normalize(torch.randn(2, 1, 64, generator=torch.Generator().manual_seed(0)), dim=-1)
    moves = {}
    for cls in (RowAdamW, EigenAdamW):
        x = torch.zeros(2, 1, 64)
        optimizer = cls([x], recipe)
        for _ in range(EigenAdamW.EVERY + 5):
            before, x.grad = x.clone(), direction.clone()
            optimizer.step([torch.arange(2)])
        moves[cls] = torch.nn.functional.cosine_similarity(before - x, direction, dim=-1)
    assert (moves[EigenAdamW] > 0.999).all()  # in the eigenbasis the steady direction is one axis
    assert (moves[RowAdamW] < 0.9).all()  # AdamW moves every coordinate by about lr: sign(direction)


BF16 = RECIPE.with_overrides(dtype="bfloat16", check_dtypes=("float32", "bfloat16"), margin=0.1)


def test_the_bf16_path_reaches_full_accuracy_and_its_file_decodes_in_both_dtypes(tiny):
    targets = [ids(tiny, "Alice was")[:4], ids(tiny, "All the")]
    proto = encode_ids(tiny, targets, recipe=BF16, restarts=3, progress=False)
    assert [t.status for t in proto.texts] == ["solved", "solved"]
    assert all(t.margin >= 0.1 for t in proto.texts)
    assert proto.recipe["dtype"] == "bfloat16" and proto.recipe["check_dtypes"] == ["float32", "bfloat16"]
    assert [t.dtype for t in proto.texts] == ["bfloat16", "bfloat16"]  # the pass its accuracy was read in
    for dtype in ("float32", "bfloat16"):
        assert decode_ids(tiny.in_dtype(dtype), proto) == targets


def test_a_solved_state_is_kept_over_an_exact_unchecked_one_with_a_lower_loss(tiny):
    from prototokens.optimize import _Best

    best = _Best(tiny, 1, {}, None, False, "float32")
    best.offer([0], {}, [0.10], [1.0], [0.5], 20, 0, solved=False)  # exact, its dtype check not yet due
    best.offer([0], {}, [0.12], [1.0], [0.4], 30, 0, solved=True)  # the check passed, at a higher loss
    assert (best.outcomes[0].status, best.outcomes[0].steps) == ("solved", 30)
    best.offer([0], {}, [0.05], [1.0], [0.6], 40, 0, solved=False)
    assert best.outcomes[0].steps == 30


def test_a_text_exact_in_float32_but_not_in_bfloat16_is_not_reported_solved(tiny_path, other_tiny_path):
    from prototokens import load_model

    lm = load_model(tiny_path, device="cpu")
    # stand in for bf16 weights that write something else: another random model, cast to bf16
    lm._twins = {torch.float32: lm, torch.bfloat16: load_model(other_tiny_path, device="cpu", dtype="bfloat16")}
    target = [ids(lm, "Alice was")]
    recipe = RECIPE.with_overrides(max_steps=150, polish=False)  # polish could train the other model's reading too
    assert optimize(lm, target, recipe=recipe, progress=False).outcomes[0].status == "solved"
    checked = optimize(lm, target, recipe=recipe.with_overrides(check_dtypes=("float32", "bfloat16")), progress=False)
    assert checked.outcomes[0].status == "unsolved" and checked.outcomes[0].accuracy == 1.0


def test_compiled_steps_compile_once_for_a_batch_whose_rows_leave_it(tiny_path):
    from torch._dynamo.utils import counters

    from prototokens import load_model

    lm = load_model(tiny_path, device="cpu", compile="aot_eager")
    torch._dynamo.reset()
    counters.clear()
    targets = [ids(lm, "Alice"), ids(lm, "Alice was")]
    proto = encode_ids(lm, targets, recipe=RECIPE, restarts=3, progress=False)
    assert [t.status for t in proto.texts] == ["solved", "solved"]
    assert decode_ids(lm, proto) == targets  # read eagerly
    assert 1 <= counters["stats"]["unique_graphs"] <= 2  # two rows, then one (specialised): not a graph per step


def test_compiling_shares_the_weights_compiles_the_decoder_layers_and_leaves_the_model_eager(tiny_path):
    from prototokens import load_model

    lm = load_model(tiny_path, device="cpu", compile="aot_eager")
    twin = lm.for_steps().forward
    assert twin is not lm.model and all(a is b for a, b in zip(twin.parameters(), lm.model.parameters(), strict=True))
    assert all(layer._compiled_call_impl is not None for layer in twin.model.layers)
    assert twin._compiled_call_impl is None  # the embedding and the LM head run eagerly
    assert all(m._compiled_call_impl is None for m in lm.model.modules())
    with pytest.raises(TypeError, match="one dtype"):
        lm.for_steps().in_dtype("bfloat16")


def test_a_text_exact_in_the_compiled_pass_but_not_eagerly_is_not_reported_solved(tiny_path, other_tiny_path):
    from prototokens import load_model

    lm = load_model(other_tiny_path, device="cpu", compile="aot_eager")
    lm.for_steps().forward = load_model(tiny_path, device="cpu").model  # stand-in for compiled kernels that read otherwise
    target = [ids(lm, "Alice was")]
    fit = optimize(lm, target, recipe=RECIPE.with_overrides(max_steps=150), progress=False)  # no check dtypes
    assert fit.outcomes[0].status == "unsolved" and fit.outcomes[0].accuracy == 1.0


def _batch_dependent_bf16(tiny_path, other_tiny_path):
    """A model whose bf16 twin writes as its own weights in a batch of several rows and as
    another model's alone: a stand-in for 16-bit kernels that a batch's shape selects. Its steps
    run through it, as on a GPU (on a CPU they run through a twin, which the model itself checks)."""
    from prototokens import load_model

    lm = load_model(tiny_path, device="cpu")
    twin, alone = lm.in_dtype("bfloat16"), load_model(other_tiny_path, device="cpu", dtype="bfloat16")
    batched = twin.logits
    twin.logits = lambda z: batched(z) if z.shape[0] > 1 else alone.logits(z)
    twin._stepper = twin
    return lm


def test_a_text_exact_in_a_batched_bf16_pass_but_not_alone_is_not_reported_solved(tiny_path, other_tiny_path):
    lm = _batch_dependent_bf16(tiny_path, other_tiny_path)
    targets = [ids(lm, "Alice was"), ids(lm, "All the")]
    recipe = RECIPE.with_overrides(dtype="bfloat16", max_steps=300)
    assert [o.status for o in optimize(lm, targets, recipe=recipe, restarts=3, progress=False).outcomes] == ["solved"] * 2
    checked = optimize(lm, targets, recipe=recipe.with_overrides(check_dtypes=("bfloat16",), max_steps=150), progress=False)
    assert [o.status for o in checked.outcomes] == ["unsolved"] * 2
    assert any(o.accuracy == 1.0 for o in checked.outcomes)  # exact in the batched pass, not alone


def test_bf16_decodes_each_text_alone_and_float32_in_batches(tiny):
    proto = encode_ids(tiny, [ids(tiny, "Alice was"), ids(tiny, "All the")], recipe=RECIPE, progress=False)
    for model, rows in ((tiny.in_dtype("bfloat16"), [1, 1]), (tiny, [2])):
        seen, logits = [], model.logits
        model.logits = lambda z, seen=seen, logits=logits: seen.append(z.shape[0]) or logits(z)
        decode_ids(model, proto)
        del model.logits
        assert seen == rows


def test_polish_trains_an_exact_text_through_its_other_check_dtypes_until_all_write_it(tiny_path, other_tiny_path,
                                                                                         monkeypatch):
    import importlib

    from prototokens import load_model

    lm = load_model(tiny_path, device="cpu")
    # the compute dtype (bf16) stands for weights that write something else than the fp32 ones:
    # another random model; its solution passes the fp32 check only by chance
    lm._twins = {torch.float32: lm, torch.bfloat16: load_model(other_tiny_path, device="cpu", dtype="bfloat16")}
    module = importlib.import_module("prototokens.optimize")
    calls, evaluate = [], module.evaluate

    def spy(model, layout, vectors, targets, *args):
        scores = evaluate(model, layout, vectors, targets, *args)
        calls.append((model.dtype, vectors["m"].requires_grad, float(scores.accuracy.min())))
        return scores

    monkeypatch.setattr(module, "evaluate", spy)
    target = [ids(lm, "Alice was")]
    recipe = RECIPE.with_overrides(lr=0.02, dtype="bfloat16", check_dtypes=("float32",), max_steps=300, patience=100,
                                   polish=True)
    proto = encode_ids(lm, target, layout="em-plus-one", recipe=recipe, restarts=3, progress=False)
    assert proto.texts[0].status == "solved" and proto.recipe["polish"]
    assert decode_ids(lm, proto) == target
    trained = [k for k, (dtype, grad, _) in enumerate(calls) if dtype == torch.float32 and grad]
    first_exact = next(k for k, (dtype, _, acc) in enumerate(calls) if dtype == torch.bfloat16 and acc == 1.0)
    # fp32 trains a text from the step after it is first exact in bf16, beside that step's bf16 pass
    assert trained and trained[0] > first_exact and calls[trained[0] - 1][:2] == (torch.bfloat16, True)
    assert sum(dtype == torch.bfloat16 for dtype, _, _ in calls[first_exact + 1:trained[0]]) == 1
    # a step that trains through fp32 reads its fp32 check off that pass: no separate check pass
    steps = list(zip(calls, calls[1:]))
    assert not any(a[:2] == (torch.float32, True) and b[:2] == (torch.float32, False) for a, b in steps)
    calls.clear()
    optimize(lm, target, recipe=recipe.with_overrides(polish=False), progress=False)
    assert not any(dtype == torch.float32 and grad for dtype, grad, _ in calls)


def test_lazy_polish_adds_the_objective_of_a_polish_pass_only_for_the_texts_it_misreads(tiny):
    from prototokens.layout import get_layout
    from prototokens.optimize import _polished, evaluate

    target, layout = ids(tiny, "Alice was"), get_layout(DEFAULT_LAYOUT)
    fit = optimize(tiny, [target], recipe=RECIPE.with_overrides(margin=0.5), progress=False)
    assert fit.outcomes[0].status == "solved"
    vectors = {n: torch.cat([v, torch.randn_like(v)]) for n, v in fit.vectors.items()}  # row 0 reads it, row 1 does not
    read = evaluate(tiny, layout, vectors, [target, target])
    assert read.accuracy[0] == 1.0 and read.margin[0] >= 0.5 and read.accuracy[1] < 1.0
    for lazy, added in ((False, [True, True]), (True, [False, True])):
        recipe = RECIPE.with_overrides(margin=0.5, polish=True, lazy_polish=lazy)
        objective, _ = _polished(torch.zeros(2), [tiny], {0, 1}, [[0], [1]], [0, 1], layout, vectors, [target, target], recipe)
        assert (objective > 0).tolist() == added
    with pytest.raises(PrototokensError, match="needs polish on"):
        RECIPE.with_overrides(lazy_polish=True, polish=False)


def test_a_bf16_twin_is_the_model_a_bf16_load_gives_rope_frequencies_included(tiny_path):
    from prototokens import load_model

    twin, loaded = load_model(tiny_path, device="cpu").in_dtype("bfloat16"), load_model(tiny_path, device="cpu", dtype="bfloat16")
    buffers = dict(loaded.model.named_buffers())
    assert buffers and all(torch.equal(b, buffers[n]) and b.dtype == buffers[n].dtype for n, b in twin.model.named_buffers())
    assert all(torch.equal(p, q) for p, q in zip(twin.model.parameters(), loaded.model.parameters()))
    z = torch.randn(2, 40, twin.d_model, generator=torch.Generator().manual_seed(0)) * twin.embedding_std
    assert torch.equal(twin.logits(z.bfloat16()), loaded.logits(z.bfloat16()))  # one computation, on one machine


def test_bf16_steps_on_a_cpu_run_a_twin_with_float32_attention_and_the_model_itself_checks(tiny_path):
    from prototokens import load_model
    from prototokens.optimize import check_models, compute_model

    lm = load_model(tiny_path, device="cpu")
    bf16 = lm.in_dtype("bfloat16")
    steps = bf16.for_steps()
    assert lm.for_steps() is lm and steps is not bf16 and steps.for_steps() is steps
    assert steps.forward.config._attn_implementation == "sdpa_float32" != bf16.model.config._attn_implementation
    assert all(a is b for a, b in zip(steps.forward.parameters(), bf16.model.parameters(), strict=True))
    z = (torch.randn(2, 40, bf16.d_model, generator=torch.Generator().manual_seed(0)) * bf16.embedding_std).bfloat16()
    own, twin = bf16.logits(z).float(), steps.logits(z).float()
    assert (own - twin).abs().max() <= 0.02 * own.abs().max()  # attention's output rounded once to bf16
    recipe = RECIPE.with_overrides(dtype="bfloat16", check_dtypes=("float32",))
    assert compute_model(lm, recipe) is steps and bf16 in check_models(lm, recipe)  # a file is read by the model itself


def test_a_cpu_without_bf16_units_sums_bf16_linears_in_float32_and_polishes_through_them(tiny_path, monkeypatch):
    import prototokens.model as model_module
    from prototokens import load_model
    from prototokens.optimize import check_models, compute_model, polish_models

    native = load_model(tiny_path, device="cpu", dtype="bfloat16")
    monkeypatch.setattr(model_module, "native_bf16", lambda device: False)
    lm = load_model(tiny_path, device="cpu")
    summed = lm.in_dtype("bfloat16")
    linears = [m for m in summed.model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(isinstance(m, model_module.Bf16Linear) for m in linears)
    assert not any(isinstance(m, model_module.Bf16Linear) for m in lm.model.modules())  # the fp32 model is untouched
    assert "weight32" not in str(summed.model.state_dict().keys())  # nothing extra is saved
    z = (torch.randn(2, 40, lm.d_model, generator=torch.Generator().manual_seed(0)) * lm.embedding_std).bfloat16()
    exact = lm.logits(z.float())
    # bf16 either way: the two differ by the order of float32 sums and bf16 roundings, and both
    # stay as close to float32 as bf16 allows
    assert (summed.logits(z).float() - exact).abs().max() <= 0.05 * exact.abs().max()
    assert (native.logits(z).float() - exact).abs().max() <= 0.05 * exact.abs().max()
    z.requires_grad_()
    summed.logits(z).float().logsumexp(-1).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    recipe = RECIPE.with_overrides(check_dtypes=("float32", "bfloat16"), polish=True)
    compute = compute_model(lm, recipe)
    assert compute is lm and polish_models(recipe, compute, check_models(lm, recipe)) == [summed]


def test_only_passes_about_as_cheap_as_float32_are_polished_through(tiny_path, monkeypatch):
    import prototokens.model as model_module
    from prototokens import load_model

    for native in (True, False):
        monkeypatch.setattr(model_module, "native_bf16", lambda device, native=native: native)
        lm = load_model(tiny_path, device="cpu")
        assert lm.cheap and lm.in_dtype("bfloat16").cheap  # bf16 on a CPU: native, or Bf16Linear
        assert not lm.in_dtype("float16").cheap  # emulated on a CPU, bf16 units or not
