"""Locality (Figs. 5-6): do similar texts get nearby proto-tokens?

C book contexts; K texts the model itself writes after each (same context, different text);
the first text of each context encoded with S seeds (same text, different solution). Pairwise
cosine distances of the solutions, by kind of pair: same text / other seed, same context /
other text, other context (Fig. 5); and proto-token distance against text similarity by TF-IDF
and all-MiniLM-L6-v2 (Fig. 6). Only solved encodings count.

Every encoding starts from its own random seed: solutions that share an init stay near it
(measured: m of different texts from one init 0.44 apart in cosine distance, m of one text from
two inits 0.98), so texts encoded from one seed would look alike whatever they say.

Files: ``context-C-text-K-seed-S.proto.safetensors``, one per encoding, each written when it is
finished, so an interrupted run resumes; ``locality.json`` holds the distances.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data import generate_continuation, sample_passages
from ..encode import encode_ids
from ..metrics import mean_std
from ..model import FrozenLM
from ..similarity import minilm_cosine, tfidf_cosine
from .common import SampledConfig, option, save_config, write_markdown

NAME, HELP = "locality", "distances between solutions by text and context (Figs. 5-6)"

KINDS = ("same text, other seed", "same context, other text", "other context")
SEED_STRIDE = 100  # encodings' seeds lie this far apart, so their restarts never meet


@dataclass(kw_only=True)
class Config(SampledConfig):
    contexts: int = option(3, "book contexts", positive=True)
    texts: int = option(3, "generated texts per context", positive=True)
    seeds: int = option(3, "solutions of each context's first text", positive=True)
    length: int = option(16, "tokens per text", positive=True)


def run(lm: FrozenLM, config: Config, folder) -> dict:
    """Encode what is missing, then measure; returns (and writes) the distances."""
    folder = Path(folder)
    save_config(folder, NAME, config)
    contexts, texts, seeds, length = config.contexts, config.texts, config.seeds, config.length
    source, data_seed, recipe, layout, progress = (config.source, config.data_seed, config.recipe, config.layout,
                                                   config.progress)
    passages = sample_passages(lm, source, contexts, length, seed=data_seed)
    points = []  # (context, text, seed, e, m, target ids)
    for c, p in enumerate(tqdm(passages, desc="contexts", disable=not progress)):
        targets = [generate_continuation(lm, p.context_ids, length, seed=k) for k in range(texts)]
        # every encoding gets its own seed: solutions that share an init stay near it, which
        # would make texts encoded together look alike whatever they say
        runs = [(k, s) for k in range(texts) for s in range(seeds if k == 0 else 1)]
        for k, s in runs:
            path = folder / f"context-{c}-text-{k}-seed-{s}.proto.safetensors"
            proto = encode_ids(lm, [targets[k]], layout=layout, recipe=recipe, seed=((c * texts + k) * seeds + s) * SEED_STRIDE,
                               checkpoint=path, progress=progress,
                               extra={"study": "locality", "context": c, "text": k, "source": source,
                                      "data_seed": data_seed, "context_text": lm.detokenize(p.context_ids)})
            if proto.texts[0].status == "solved":
                points.append((c, k, s, *proto.vectors(0), proto.texts[0].target_ids))
    result = measure(lm, points)
    result |= {"model": lm.name, "fingerprint": lm.fingerprint, "contexts": contexts, "texts": texts, "seeds": seeds,
               "length": length, "source": source, "layout": layout, "encoded": contexts * (texts + seeds - 1)}
    (folder / "locality.json").write_text(json.dumps(result, indent=1))
    return result


def _kind(a, b) -> str | None:
    if a[0] != b[0]:
        return KINDS[2] if a[2] == b[2] == 0 else None
    if a[1] == b[1]:
        return KINDS[0]
    return KINDS[1] if a[2] == b[2] == 0 else None


def measure(lm: FrozenLM, points: list[tuple]) -> dict:
    """Cosine distances per kind of pair (for e, m and both), and against text similarity."""
    cos = torch.nn.functional.cosine_similarity
    pairs = {kind: {"e": [], "m": [], "em": []} for kind in KINDS}
    for a, b in itertools.combinations(points, 2):
        kind = _kind(a, b)
        if kind:
            for name, (x, y) in (("e", (a[3], b[3])), ("m", (a[4], b[4])),
                                 ("em", (torch.cat(a[3:5]), torch.cat(b[3:5])))):
                pairs[kind][name].append(1 - float(cos(x, y, dim=0)))
    distinct = [p for p in points if p[2] == 0]  # one solution per text
    words = [lm.detokenize(p[5]) for p in distinct]
    similarity = {"tfidf": tfidf_cosine(words), "minilm": minilm_cosine(words)} if len(words) > 1 else {}
    text_pairs = [{"contexts": [a[0], b[0]], "distance_em": 1 - float(cos(torch.cat(a[3:5]), torch.cat(b[3:5]), dim=0)),
                   **{name: float(s[i, j]) for name, s in similarity.items()}}
                  for (i, a), (j, b) in itertools.combinations(enumerate(distinct), 2)]
    return {"solved": len(points), "distances": pairs, "text_pairs": text_pairs,
            "summary": {kind: {name: _mean_std(v) for name, v in d.items()} for kind, d in pairs.items()},
            "texts": words}


def _mean_std(values: list[float]) -> list[float] | None:
    return [*mean_std(values), len(values)] if values else None


def table(result: dict) -> str:
    lines = ["| pair | pairs | cosine distance e | m | (e, m) |", "|---|---|---|---|---|"]
    for kind, by in result["summary"].items():
        cells = ["-" if by[n] is None else f"{by[n][0]:.3f} ± {by[n][1]:.3f}" for n in ("e", "m", "em")]
        lines.append(f"| {kind} | {0 if by['e'] is None else by['e'][2]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(result: dict, folder: Path) -> list[Path]:
    """Fig. 5 (distance by kind of pair) and Fig. 6 (distance against text similarity)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    caption = f"{result['model']}, {result['contexts']} contexts x {result['texts']} texts, {result['seeds']} seeds, N={result['length']}"
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
    for ax, name in zip(axes, ("e", "m")):
        data = [result["distances"][k][name] for k in KINDS]
        ax.boxplot([d or [float("nan")] for d in data], showmeans=True)
        ax.set_xticks(range(1, len(KINDS) + 1), [k.replace(", ", ",\n") for k in KINDS], fontsize=8)
        ax.set(title=f"{name}", ylabel="cosine distance" if name == "e" else None)
    fig.suptitle(f"Distances between solutions — {caption}", fontsize=10)
    fig.tight_layout()
    paths = [folder / "locality_distances.png"]
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)
    pairs = result["text_pairs"]
    if pairs:
        fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
        for ax, name, label in zip(axes, ("tfidf", "minilm"), ("TF-IDF cosine", "all-MiniLM-L6-v2 cosine")):
            same = [p for p in pairs if p["contexts"][0] == p["contexts"][1]]
            other = [p for p in pairs if p["contexts"][0] != p["contexts"][1]]
            for group, tag in ((same, "same context"), (other, "other context")):
                ax.scatter([p[name] for p in group], [p["distance_em"] for p in group], label=tag, alpha=0.7)
            ax.set(xlabel=f"text similarity ({label})", ylabel="cosine distance of (e, m)" if name == "tfidf" else None)
            ax.legend(fontsize=8)
        fig.suptitle(f"Proto-token distance against text similarity — {caption}", fontsize=10)
        fig.tight_layout()
        paths.append(folder / "locality_vs_text_similarity.png")
        fig.savefig(paths[1], dpi=120)
        plt.close(fig)
    return paths



def report(folder) -> list[Path]:
    """locality.md and the plots from locality.json."""
    folder = Path(folder)
    result = json.loads((folder / "locality.json").read_text())
    plots = plot(result, folder)
    body = (f"# Locality (Figs. 5-6)\n\n{result['model']}, {result['contexts']} contexts from {result['source']}, "
            f"{result['texts']} generated texts each, {result['seeds']} seeds of the first, N={result['length']}; "
            f"{result['solved']} of {result['encoded']} encodings solved and counted.\n\n" + table(result)
            + "".join(f"\n![{p.stem}]({p.name})\n" for p in plots))
    return [write_markdown(folder, NAME, body), *plots]
