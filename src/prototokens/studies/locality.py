"""Locality (Figs. 5-6): do similar texts get nearby proto-tokens?

C book contexts; K texts the model itself writes after each (same context, different text);
the first text of each context encoded with S seeds (same text, different solution). Pairwise
cosine distances of the solutions, by kind of pair: same text / other seed, same context /
other text, other context (Fig. 5); and proto-token distance against text similarity by TF-IDF
and all-MiniLM-L6-v2 (Fig. 6). Only solved encodings count.

Every pair of solutions counts once, by kind. Whether the paper's ordering same text < same
context < other context holds is tested by permutation (Mantel-style, so pairs that share a
solution are not taken as independent): text labels shuffled among the solutions of each
context for the first step, context labels shuffled among the texts for the second.

Every encoding starts from its own random seed: solutions that share an init stay near it
(measured: m of different texts from one init 0.44 apart in cosine distance, m of one text from
two inits 0.98), so texts encoded from one seed would look alike whatever they say.

Files: ``context-C-text-K-seed-S.proto.safetensors``, one per encoding, each written when it is
finished, so an interrupted run resumes; ``locality.json`` holds the distances. Under torchrun
each rank encodes its share of the contexts, and rank 0 measures once all are done.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import distributed
from ..data import generate_continuation, sample_passages
from ..encode import encode_ids
from ..metrics import mean_std
from ..model import FrozenLM
from ..proto import load
from ..similarity import minilm_cosine, tfidf_cosine
from .common import SampledConfig, option, read_config, save_config, write_markdown

NAME, HELP = "locality", "distances between solutions by text and context (Figs. 5-6)"
SHARDED = True  # under torchrun the ranks share its contexts (see common.py)

KINDS = ("same text, other seed", "same context, other text", "other context")
SEED_STRIDE = 100  # encodings' seeds lie this far apart, so their restarts never meet
PERMUTATIONS = 10_000
FILE = "context-{}-text-{}-seed-{}.proto.safetensors"


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
    texts, seeds, length = config.texts, config.seeds, config.length
    passages = sample_passages(lm, config.source, config.contexts, length, seed=config.data_seed)
    for c, p in tqdm(distributed.shard(list(enumerate(passages))), desc="contexts", disable=not config.progress):
        targets = [generate_continuation(lm, p.context_ids, length, seed=k) for k in range(texts)]
        # every encoding gets its own seed: solutions that share an init stay near it, which
        # would make texts encoded together look alike whatever they say
        runs = [(k, s) for k in range(texts) for s in range(seeds if k == 0 else 1)]
        for k, s in runs:
            encode_ids(lm, [targets[k]], layout=config.layout, recipe=config.recipe,
                       seed=((c * texts + k) * seeds + s) * SEED_STRIDE, checkpoint=folder / FILE.format(c, k, s),
                       progress=config.progress,
                       extra={"study": "locality", "context": c, "text": k, "source": config.source,
                              "data_seed": config.data_seed, "context_text": lm.detokenize(p.context_ids)})
    distributed.barrier()
    if distributed.is_main():
        result = measure_folder(lm, folder)
        (folder / "locality.json").write_text(json.dumps(result, indent=1))
    return distributed.from_main(result if distributed.is_main() else None)


def solved_points(lm: FrozenLM, folder: Path) -> list[tuple]:
    """(context, text, seed, e, m, target ids) of each solved encoding in ``folder``, in run order."""
    points = []
    for path in folder.glob(FILE.format("*", "*", "*")):
        proto = load(path, lm)
        if proto.complete and proto.texts[0].status == "solved":
            c, k, s = map(int, re.fullmatch(FILE.format(*[r"(\d+)"] * 3), path.name).groups())
            points.append((c, k, s, *proto.vectors(0), proto.texts[0].target_ids))
    return sorted(points, key=lambda p: p[:3])


def measure_folder(lm: FrozenLM, folder) -> dict:
    """What ``run`` writes to locality.json, from the proto files and study.json of ``folder``."""
    folder = Path(folder)
    config = read_config(folder)["config"]
    contexts, texts, seeds = config["contexts"], config["texts"], config["seeds"]
    return measure(lm, solved_points(lm, folder)) | {
        "model": lm.name, "fingerprint": lm.fingerprint, "contexts": contexts, "texts": texts, "seeds": seeds,
        "length": config["length"], "source": config["source"], "layout": config["layout"],
        "encoded": contexts * (texts + seeds - 1)}


def _kind(a, b) -> str:
    if a[0] != b[0]:
        return KINDS[2]
    return KINDS[0] if a[1] == b[1] else KINDS[1]


def measure(lm: FrozenLM, points: list[tuple]) -> dict:
    """Cosine distances per kind of pair (for e, m and both), the ordering tests, and distance
    against text similarity."""
    vectors = {"e": [p[3] for p in points], "m": [p[4] for p in points], "em": [torch.cat(p[3:5]) for p in points]}
    distances = {name: _cosine_distances(torch.stack(v)) for name, v in vectors.items()} if points else {}
    pairs = {kind: {name: [] for name in vectors} for kind in KINDS}
    for (i, a), (j, b) in itertools.combinations(enumerate(points), 2):
        for name, d in distances.items():
            pairs[_kind(a, b)][name].append(float(d[i, j]))
    contexts = torch.tensor([p[0] for p in points])
    text_of = {ck: i for i, ck in enumerate(dict.fromkeys(p[:2] for p in points))}  # (context, text) -> label
    texts = torch.tensor([text_of[p[:2]] for p in points])
    tests = {name: ordering_tests(d, contexts, texts) for name, d in distances.items()}
    distinct = [k for k, p in enumerate(points) if p[2] == 0]  # one solution per text
    words = [lm.detokenize(points[k][5]) for k in distinct]
    similarity = {"tfidf": tfidf_cosine(words), "minilm": minilm_cosine(words)} if len(words) > 1 else {}
    text_pairs = [{"contexts": [points[a][0], points[b][0]], "distance_em": float(distances["em"][a, b]),
                   **{name: float(s[i, j]) for name, s in similarity.items()}}
                  for (i, a), (j, b) in itertools.combinations(enumerate(distinct), 2)]
    return {"solved": len(points), "distances": pairs, "text_pairs": text_pairs, "tests": tests,
            "summary": {kind: {name: _mean_std(v) for name, v in d.items()} for kind, d in pairs.items()},
            "texts": words}


def _cosine_distances(x: torch.Tensor) -> torch.Tensor:
    """(n, n) cosine distances between the rows of ``x``, in float64."""
    x = torch.nn.functional.normalize(x.double(), dim=1)
    return 1 - x @ x.T


def ordering_tests(distances: torch.Tensor, contexts: torch.Tensor, texts: torch.Tensor,
                   permutations: int = PERMUTATIONS, seed: int = 0) -> dict:
    """One-sided permutation tests of the paper's ordering on a matrix of distances between
    solutions (``contexts`` and ``texts`` label each): "text" is mean(same context, other text) -
    mean(same text), with text labels shuffled within each context; "context" is mean(other
    context) - mean(same context, other text), with context labels shuffled among texts. Each
    gives the observed gap and p = (1 + #gaps at least as large) / (1 + permutations); None where
    a kind of pair is missing."""
    g = torch.Generator().manual_seed(seed)
    i, j = torch.triu_indices(len(texts), len(texts), 1)
    d = distances[i, j].double()

    def gap(far: torch.Tensor, near: torch.Tensor) -> torch.Tensor:  # masks (..., pairs)
        return (d * far).sum(-1) / far.sum(-1) - (d * near).sum(-1) / near.sum(-1)

    def test(observed_labels, shuffled_labels, far_of, near_of) -> dict | None:
        far, near = far_of(observed_labels), near_of(observed_labels)
        if not far.any() or not near.any():
            return None
        observed = float(gap(far, near))
        null = gap(far_of(shuffled_labels), near_of(shuffled_labels))
        return {"gap": observed, "p": (1 + int((null >= observed - 1e-12).sum())) / (1 + permutations),
                "permutations": permutations}

    same_context = contexts[i] == contexts[j]
    # text labels shuffled among each context's solutions: sort by context, random order within it
    order = torch.argsort(contexts.double() + torch.rand(permutations, len(texts), generator=g, dtype=torch.double) * 0.5)
    by_context = torch.argsort(contexts, stable=True)
    shuffled_texts = torch.empty(permutations, len(texts), dtype=texts.dtype)
    shuffled_texts[:, by_context] = texts[order]
    text = test(texts, shuffled_texts, lambda t: same_context & (t[..., i] != t[..., j]),
                lambda t: t[..., i] == t[..., j])
    # context labels shuffled among texts (a text's solutions move together)
    unique, index = torch.unique(texts, return_inverse=True)
    text_context = torch.stack([contexts[index == u][0] for u in range(len(unique))])
    shuffled = text_context[torch.argsort(torch.rand(permutations, len(unique), generator=g), dim=1)][:, index]
    other_text = texts[i] != texts[j]
    context = test(contexts, shuffled, lambda c: other_text & (c[..., i] != c[..., j]),
                   lambda c: other_text & (c[..., i] == c[..., j]))
    return {"text": text, "context": context}


def _mean_std(values: list[float]) -> list[float] | None:
    return [*mean_std(values), len(values)] if values else None


def table(result: dict) -> str:
    lines = ["| pair | pairs | cosine distance e | m | (e, m) |", "|---|---|---|---|---|"]
    for kind, by in result["summary"].items():
        cells = ["-" if by[n] is None else f"{by[n][0]:.3f} ± {by[n][1]:.3f}" for n in ("e", "m", "em")]
        lines.append(f"| {kind} | {0 if by['e'] is None else by['e'][2]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def tests_table(result: dict) -> str:
    """Markdown: the two steps of the ordering, their gaps and one-sided permutation p-values."""
    steps = (("text", "same text < same context"), ("context", "same context < other context"))
    lines = ["| ordering | gap e (p) | gap m (p) | gap (e, m) (p) |", "|---|---|---|---|"]
    for key, label in steps:
        cells = []
        for name in ("e", "m", "em"):
            t = result["tests"].get(name, {}).get(key)
            cells.append("-" if t is None else f"{t['gap']:+.3f} ({t['p']:.3f})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def verdict(result: dict, alpha: float = 0.05) -> str:
    """Whether the paper's ordering shows on this model, for (e, m) together."""
    tests = result["tests"].get("em", {})
    if not tests or None in tests.values():
        return "Too few solutions of some kind of pair to test the ordering.\n"
    shows = [tests[k]["p"] < alpha for k in ("text", "context")]
    said = {(True, True): "shows: both steps are significant",
            (True, False): "shows only in part: same text < same context is significant, same context < other context is not",
            (False, True): "shows only in part: same context < other context is significant, same text < same context is not",
            (False, False): "does not show: neither step is significant"}[tuple(shows)]
    return (f"On (e, m), the paper's ordering same text < same context < other context {said} at p < {alpha} "
            f"(one-sided, {tests['text']['permutations']:,} permutations each).\n")


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
            + "\nGap: mean distance of the farther kind minus the nearer; p: one-sided permutation test "
              "(text labels shuffled within contexts; context labels shuffled among texts).\n\n"
            + tests_table(result) + "\n" + verdict(result)
            + "".join(f"\n![{p.stem}]({p.name})\n" for p in plots))
    return [write_markdown(folder, NAME, body), *plots]
