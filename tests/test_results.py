"""The committed study results under results/ that need the model to check: connectivity's
curves rebuilt from the committed proto files and decoded, locality's statistics and geometry's
summary recomputed from the committed locality files. (results/check.sh checks every report
without a model.) Decoded accuracies may differ by one token a text between CPUs: points along a
curve are not trained to a margin."""

import json
from pathlib import Path

import pytest
import torch

import prototokens
from prototokens import ProtoTokens, decode_ids, load
from prototokens.records import read_records
from prototokens.studies import geometry, locality
from prototokens.studies.connectivity import bezier

pytestmark = pytest.mark.slow
STUDIES = Path(__file__).parents[1] / "results" / "studies"


@pytest.fixture(scope="module")
def default():
    return prototokens.load_model(device="cpu")


@pytest.mark.parametrize("name", ["connectivity", "connectivity-t2-cosine"])
def test_connectivity_curves_decode_from_the_committed_files_as_recorded(default, name):
    folder = STUDIES / name
    start, end, control = (load(folder / f"{n}.proto.safetensors", default) for n in ("start", "end", "control"))
    for i, record in enumerate(read_records(folder / "records.jsonl")):
        targets = start.texts[i].target_ids
        p1, c, p2 = (torch.stack(p.vectors(i)) for p in (start, control, end))
        for t, recorded in zip(record["t"], record["curve"]):
            point = bezier(p1, c, p2, t)
            proto = ProtoTokens(e=point[:1], m=point[1:], layout=start.layout, shared=None, model=start.model,
                                recipe={}, texts=[start.texts[i]])
            (written,) = decode_ids(default, proto)
            accuracy = sum(a == b for a, b in zip(written, targets)) / len(targets)
            assert abs(accuracy - recorded) <= 1 / len(targets) + 1e-9, (record["text"], t)


@pytest.mark.parametrize("name", ["locality", "locality-n32"])
def test_locality_statistics_recompute_from_the_committed_files(default, name):
    folder = STUDIES / name
    committed = json.loads((folder / "locality.json").read_text())
    again = locality.measure_folder(default, folder)
    assert again["solved"] == committed["solved"] and again["texts"] == committed["texts"]
    for kind, by in committed["summary"].items():
        for name, (mean, std, n) in by.items():
            assert again["summary"][kind][name] == pytest.approx([mean, std, n], abs=1e-5)
    for name, tests in committed["tests"].items():
        for step, test in tests.items():
            assert again["tests"][name][step]["gap"] == pytest.approx(test["gap"], abs=1e-5)
            assert again["tests"][name][step]["p"] == pytest.approx(test["p"], abs=2e-3)


def test_geometry_recomputes_from_the_committed_locality_files(default, tmp_path):
    folder = STUDIES / "geometry"
    committed = json.loads((folder / "geometry.json").read_text())
    files = [Path(__file__).parents[1] / f for f in json.loads((folder / "study.json").read_text())["config"]["files"]]
    again = geometry.run(default, geometry.Config(files=files), tmp_path)
    assert [[t for t, _ in near] for near in again["summary"]["m_nearest"]] == \
        [[t for t, _ in near] for near in committed["summary"]["m_nearest"]]
    for name in ("e", "m"):
        assert again["summary"][f"{name}_norm"]["mean"] == pytest.approx(committed["summary"][f"{name}_norm"]["mean"], rel=1e-5)
        assert again["summary"][f"{name}_start_cosine"]["mean"] == pytest.approx(committed["summary"][f"{name}_start_cosine"]["mean"], abs=1e-5)
        for group, points in committed[f"pca_{name}"]["points"].items():
            assert torch.tensor(again[f"pca_{name}"]["points"][group]) == pytest.approx(torch.tensor(points), abs=1e-3)
