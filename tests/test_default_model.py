"""Short real cases on the embedded default model, SmolLM2-135M-Instruct."""

import logging
import time
from pathlib import Path

import pytest

import prototokens
from prototokens import model as model_module
from prototokens.cache import cache_dir

pytestmark = pytest.mark.slow
AUSTEN = "It is a truth universally acknowledged, that a single man in possession of a good fortune"


@pytest.fixture(scope="module")
def default():
    return prototokens.load_model(device="cpu")


def test_loading_the_default_model_again_takes_the_cache(default, caplog, monkeypatch):
    folder = Path(model_module._resolve(model_module.DEFAULT_MODEL))
    assert folder.is_relative_to(cache_dir("models")) and (folder / "model.safetensors").is_file()

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted the GGUF file again")

    monkeypatch.setattr(model_module, "_convert", no_conversion)
    with caplog.at_level(logging.WARNING):
        started = time.perf_counter()
        again = prototokens.load_model(device="cpu")
    assert "converting" not in caplog.text
    assert again.fingerprint == default.fingerprint
    assert time.perf_counter() - started < 15


def test_a_real_sentence_is_encoded_to_full_accuracy_and_decoded_in_one_pass(default):
    ids = default.tokenize(AUSTEN)
    assert 16 <= len(ids) <= 24
    proto = prototokens.encode(default, AUSTEN, restarts=2, progress=False)
    assert proto.texts[0].status == "solved"
    assert prototokens.decode(default, proto) == [AUSTEN]
