import json
import os
import stat

import pytest
import torch
from safetensors.torch import save_file

import prototokens.proto as proto_module
from prototokens import PrototokensError, decode, encode, get_recipe, load, load_model

RECIPE = get_recipe("fast").with_overrides(lr=0.05, relative_lr=False, max_steps=300, init="embedding-std", first_weight=1.0,
                                          dtype="float32", check_dtypes=(), margin=0.0)


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    proto = encode(tiny, ["Alice was", "All the"], recipe=RECIPE, restarts=3, progress=False)
    path = proto.save(tmp_path_factory.mktemp("p") / "x.proto.safetensors")
    return proto, path


def test_round_trip_keeps_vectors_metadata_and_decoding(tiny, saved):
    proto, path = saved
    again = load(path, tiny)
    assert torch.equal(again.e, proto.e) and torch.equal(again.m, proto.m)
    assert again.metadata() == proto.metadata()
    assert decode(tiny, again) == ["Alice was", "All the"]


def test_file_says_which_model_layout_length_and_recipe(tiny, saved):
    meta = load(saved[1]).metadata()
    assert meta["format_version"] == 1
    assert meta["model"] == {"name": tiny.name, "fingerprint": tiny.fingerprint, "d_model": tiny.d_model}
    assert meta["layout"] == "start-em-plus-one" and meta["shared"] is None and meta["complete"] is True
    assert meta["recipe"]["lr"] == 0.05 and meta["recipe"]["seed"] == 0
    first = meta["texts"][0]
    assert first["target_ids"] == tiny.tokenize("Alice was") and first["n_tokens"] == len(first["target_ids"])
    assert first["text_sha256"] == proto_module.text_sha256("Alice was")
    assert {"accuracy", "steps", "total_steps", "seed", "status", "loss", "margin"} <= set(first)


def test_a_file_for_another_model_is_refused_naming_both(saved, other_tiny_path):
    other = load_model(other_tiny_path, device="cpu")
    with pytest.raises(PrototokensError, match=r"were made for model '.*tiny.*' \(fingerprint \w+\), not for '.*other.*'"):
        load(saved[1], other)


def test_same_model_name_with_other_weights_is_refused_as_other_weights(saved, tiny):
    proto = load(saved[1])
    proto.model = proto.model | {"fingerprint": "0" * 16}
    with pytest.raises(PrototokensError, match=r"made for '.*tiny.*' with other weights .*another quantisation") as err:
        proto.check_model(tiny)
    assert "--model" not in str(err.value)


def test_files_get_the_mode_the_umask_gives_any_other_file(saved, tmp_path):
    old = os.umask(0o027)
    try:
        path = saved[0].save(tmp_path / "mode.proto.safetensors")
        (tmp_path / "plain").touch()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o640


@pytest.mark.parametrize("damage", ["truncate", "garbage", "no-metadata", "bad-metadata", "wrong-shape", "missing"])
def test_damaged_or_foreign_files_are_refused(saved, tmp_path, damage):
    path = tmp_path / "bad.proto.safetensors"
    data = saved[1].read_bytes()
    meta = saved[0].metadata()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00not a safetensors file at all" * 10)
    elif damage == "no-metadata":
        save_file({"e": torch.zeros(1, 4)}, str(path))
    elif damage == "bad-metadata":
        save_file({"e": torch.zeros(1, 4)}, str(path), metadata={"prototokens": "{not json"})
    elif damage == "wrong-shape":
        save_file({"e": torch.zeros(3, 4), "m": torch.zeros(3, 4)}, str(path), metadata={"prototokens": json.dumps(meta)})
    with pytest.raises(PrototokensError):
        load(path)


def test_save_is_atomic_a_failed_write_leaves_the_old_file(saved, tmp_path, monkeypatch):
    proto, path = saved
    target = tmp_path / "y.proto.safetensors"
    proto.save(target)
    before = target.read_bytes()

    def broken(tensors, filename, metadata):
        open(filename, "wb").write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(proto_module, "save_file", broken)
    with pytest.raises(OSError):
        proto.save(target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["y.proto.safetensors"]
