import json

import pytest
import torch

import prototokens as pt
from conftest import CORPUS
from prototokens import encoder
from prototokens.cli import main
from prototokens.data import SAME_WORK

SMALL = dict(tokens=[8], held_out=2, passages=32, val_passages=4, batch_size=8, lr=3e-3, warmup=5, checkpoint_every=10, width=32)
FAST = pt.get_recipe("fast").with_overrides(lr=0.05, relative_lr=False, max_steps=300, margin=0.0)  # a tiny random model's logits are flat


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A file of 12 texts, one a line: 10 to train on, 2 held out."""
    path = tmp_path_factory.mktemp("encoder") / "texts.jsonl"
    path.write_text("".join(json.dumps(f"{CORPUS[i % 4]} {CORPUS[(i + 1) % 4]}") + "\n" for i in range(12)))
    return str(path)


@pytest.fixture(scope="module")
def trained(tiny, source, tmp_path_factory):
    folder = tmp_path_factory.mktemp("encoder") / "enc"
    encoder.train(tiny, encoder.Config(source=source, steps=30, **SMALL), folder, progress=False)
    return folder


def log(folder):
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]


def test_the_encoder_trains_and_lowers_the_loss(trained):
    losses = [r["loss"] for r in log(trained)]
    assert len(losses) == 30 and sum(losses[-5:]) < sum(losses[:5])
    assert "held_out_accuracy" in log(trained)[-1]


def test_held_out_texts_are_never_trained_on_and_a_work_stays_on_one_side(trained):
    meta = json.loads((trained / "encoder.json").read_text())["training"]
    assert len(meta["held_out_texts"]) == 2 and not set(meta["held_out_texts"]) & set(meta["train_texts"])
    for seed in range(30):
        train, test = encoder.split("books", 4, seed)
        for book, same in SAME_WORK.items():
            assert (book in test) == (same in test) and (book in train) == (same in train)


def test_a_resumed_run_is_the_uninterrupted_run(tiny, source, tmp_path):
    encoder.train(tiny, encoder.Config(source=source, steps=10, **SMALL), tmp_path / "a", progress=False)
    resumed = encoder.train(tiny, encoder.Config(source=source, steps=20, **SMALL), tmp_path / "a", progress=False)
    straight = encoder.train(tiny, encoder.Config(source=source, steps=20, **SMALL), tmp_path / "b", progress=False)
    for (name, a), b in zip(resumed.state_dict().items(), straight.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5), name
    assert [r["step"] for r in log(tmp_path / "a")] == list(range(1, 21))
    with pytest.raises(pt.PrototokensError, match="trained with other settings"):
        encoder.train(tiny, encoder.Config(source=source, steps=20, **SMALL | {"lr": 1e-2}), tmp_path / "a", progress=False)


def test_a_resumed_run_keeps_its_layout_after_the_default_moves_on(tiny, source, tmp_path, monkeypatch):
    encoder.train(tiny, encoder.Config(source=source, steps=10, **SMALL), tmp_path, progress=False)
    monkeypatch.setattr(encoder, "DEFAULT_LAYOUT", "em-plus-one")
    resumed = encoder.train(tiny, encoder.Config(source=source, steps=20, **SMALL), tmp_path, progress=False)
    assert resumed.meta["layout"] == json.loads((tmp_path / "encoder.json").read_text())["layout"] == "start-em-plus-one"


def test_save_load_round_trip_and_another_model_refused(tiny, trained, other_tiny_path):
    enc = encoder.load(trained, tiny)
    again = encoder.load(trained / "snapshots" / "step-0000030.safetensors", tiny)
    ids = [tiny.tokenize(CORPUS[1])[:8], tiny.tokenize(CORPUS[2])[:5]]
    guess = enc.predict(tiny, ids)
    assert guess["e"].shape == (2, tiny.d_model) and torch.equal(guess["m"], again.predict(tiny, ids)["m"])
    assert not torch.allclose(guess["e"][0], guess["e"][1])  # read from the text
    other = pt.load_model(other_tiny_path, device="cpu")
    with pytest.raises(pt.PrototokensError, match=r"encoder .* were made for model '.*tiny.*' \(fingerprint \w+\), not for"):
        encoder.load(trained, other)
    with pytest.raises(pt.PrototokensError, match="reads texts of 1 to 8 tokens"):
        enc.predict(tiny, [tiny.tokenize(CORPUS[0])[:9]])


@pytest.mark.parametrize("predict, varies", [("e", {"e"}), ("m", {"m"}), ("none", set())])
def test_the_variants_learn_once_what_they_do_not_predict(tiny, source, tmp_path, predict, varies):
    enc = encoder.train(tiny, encoder.Config(source=source, steps=2, predict=predict, **SMALL), tmp_path, progress=False)
    guess = enc.predict(tiny, [tiny.tokenize(CORPUS[1])[:8], tiny.tokenize(CORPUS[2])[:8]])
    assert {name for name, v in guess.items() if not torch.equal(v[0], v[1])} == varies
    # "m" keeps e where the default recipe starts it; the others learn their start
    assert torch.equal(guess["e"][0], tiny.start_embedding()) == (predict == "m")


def test_warm_start_from_the_encoder_reaches_100_percent(tiny, trained):
    enc = encoder.load(trained, tiny)
    proto = pt.encode(tiny, "Alice was", start=enc, recipe=FAST, restarts=1, progress=False)
    assert proto.texts[0].solved and proto.texts[0].seed == 0  # from the encoder's start, not a restart
    assert proto.recipe["start"] == f"encoder {enc.digest}"
    assert pt.decode(tiny, proto) == ["Alice was"]


def test_steps_0_decodes_the_encoders_guess(capsys, tiny, tiny_path, trained, tmp_path):
    out = tmp_path / "guess.proto.safetensors"
    text = "Alice was beginning"
    code = main(["encode", text, "--model", tiny_path, "--init", f"encoder:{trained}", "--steps", "0", "-o", str(out), "-q"])
    capsys.readouterr()
    proto = pt.load(out, tiny)
    guess = encoder.load(trained, tiny).predict(tiny, [tiny.tokenize(text)])
    assert torch.equal(proto.e, guess["e"]) and torch.equal(proto.m, guess["m"])
    assert proto.texts[0].total_steps == 0 and code == (0 if proto.texts[0].solved else 1)
    assert main(["decode", str(out)]) == 0
    assert capsys.readouterr().out == pt.decode(tiny, proto)[0] + "\n"
    assert main(["encode", text, "--model", tiny_path, "--steps", "0", "-o", str(out), "-q"]) == 2
    assert "--steps 0 only scores the start" in capsys.readouterr().err
