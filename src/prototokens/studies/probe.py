"""Probing (paper, Sec. 5): is what proto-tokens hold usable by ordinary generation?

From each text's proto-tokens, free-running greedy generation of as many tokens as the text,
started from several combinations of inputs (e alone, m alone, e then m, after the document-start token,
...). What comes out is compared with the text the proto-tokens encode ("matched") and, as
the level of unrelated text, with another text of the same file ("mismatched"): position-wise
token accuracy, token-set F1, and all-MiniLM-L6-v2 cosine. One record per (text, combination).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import PrototokensError
from ..metrics import token_accuracy
from ..model import FrozenLM
from ..proto import ProtoTokens, load
from ..records import RunFolder, key_of, read_records
from ..similarity import minilm_embeddings
from .common import StudyConfig, option, save_config, write_markdown

NAME, HELP = "probe", "ordinary generation from proto-tokens, compared with their text"
COMBINATIONS = ["e", "m", "e m", "start e", "start e m", "e m m m m"]


@dataclass(kw_only=True)
class Config(StudyConfig):
    file: Path = option(None, "a proto-token file (from prototokens encode)", positional=True, type=Path)
    combinations: list[str] = option(list(COMBINATIONS), "inputs to generate from", cli=False)

    def __post_init__(self):
        super().__post_init__()
        if self.file is None:
            raise PrototokensError("probe needs a proto-token file")


def proto_files(config: Config) -> list[Path]:
    """The files the study reads: the model is the one they name."""
    return [Path(config.file)]


def inputs(lm: FrozenLM, proto: ProtoTokens, i: int, combination: str) -> torch.Tensor:
    """(K, d) embeddings of a combination such as "start e m" for text ``i``."""
    e, m = proto.vectors(i)
    parts = {"e": e, "m": m, "start": lm.start_embedding()}
    return torch.stack([parts[name] for name in combination.split()])


def token_f1(a: list[int], b: list[int]) -> float:
    """F1 of the token multisets."""
    common = sum((Counter(a) & Counter(b)).values())
    return 0.0 if not common else 2 * common / (len(a) + len(b))


def run(lm: FrozenLM, config: Config, folder) -> RunFolder:
    """Generate from every combination for every text into ``folder`` (resumed)."""
    save_config(folder, NAME, config)
    return probe(lm, load(config.file, lm), folder, combinations=config.combinations, source=str(config.file))


def probe(lm: FrozenLM, proto: ProtoTokens, folder, *, combinations: list[str], source: str = "") -> RunFolder:
    """Generate from every combination for every text of ``proto`` into ``folder`` (resumed)."""
    proto.check_model(lm)
    if len(proto) < 2:
        raise PrototokensError("probing compares each generation with another text too: give a file of two or more texts")
    targets = [t.target_ids for t in proto.texts]
    run_folder = RunFolder(folder, {"study": "probe", "model": lm.name, "fingerprint": lm.fingerprint,
                                    "source": source, "texts": [t.text_sha256 for t in proto.texts],
                                    "layout": proto.layout, "combinations": combinations})
    for i, target in enumerate(targets):
        other = targets[(i + 1) % len(targets)]
        for combination in combinations:
            key = key_of(proto.texts[i].text_sha256, combination)
            if key in run_folder.done:
                continue
            written = lm.greedy(inputs(lm, proto, i, combination), len(target))
            texts = [lm.detokenize(ids) for ids in (written, target, other)]
            x = minilm_embeddings(texts)
            run_folder.append({
                "key": key, "text": i, "combination": combination, "written": texts[0], "target": texts[1],
                "matched": {"accuracy": token_accuracy(written, target), "f1": token_f1(written, target),
                            "minilm": float(x[0] @ x[1])},
                "mismatched": {"accuracy": token_accuracy(written, other), "f1": token_f1(written, other),
                               "minilm": float(x[0] @ x[2])}})
    return run_folder


def table(records: list[dict]) -> str:
    """Markdown: per combination, mean similarity to its own text against another text."""
    lines = ["| generated from | token accuracy: own / other text | token F1: own / other | MiniLM cosine: own / other |",
             "|---|---|---|---|"]
    for combination in dict.fromkeys(r["combination"] for r in records):
        rows = [r for r in records if r["combination"] == combination]
        cells = [" / ".join(f"{statistics.mean(r[side][metric] for r in rows):.2f}" for side in ("matched", "mismatched"))
                 for metric in ("accuracy", "f1", "minilm")]
        lines.append(f"| {combination} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def report(folder) -> list[Path]:
    """probe.md from the records."""
    folder = Path(folder)
    s = json.loads((folder / "run.json").read_text())
    body = (f"# Probing: ordinary generation from proto-tokens\n\n{s['model']}, {len(s['texts'])} texts "
            f"of {s['source']}; each generation is compared with its own text and with another text.\n\n"
            + table(read_records(folder / "records.jsonl")))
    return [write_markdown(folder, NAME, body)]
