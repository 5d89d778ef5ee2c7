"""Geometry at a glance: where proto-tokens sit among the model's token embeddings.

Norms of e and m against token-embedding norms, the vocabulary tokens nearest to each
(cosine), how much of its start a solution keeps (its cosine with the vector its seed drew),
and a 2-D PCA of many solutions, coloured by group (e.g. by context) and marked by text. All
from proto-token files; nothing is optimised here.
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from ..errors import PrototokensError
from ..model import FrozenLM
from ..optimize import initial_vectors
from ..proto import ProtoTokens, load
from ..recipe import Recipe
from .common import StudyConfig, option, save_config, write_markdown

NAME, HELP = "geometry", "norms, nearest tokens and a PCA of solutions"


@dataclass(kw_only=True)
class Config(StudyConfig):
    files: list[Path] = option([], "proto-token files; one colour per file in the PCA", positional=True, nargs="+",
                               type=Path)

    def __post_init__(self):
        super().__post_init__()
        if not self.files:
            raise PrototokensError("geometry needs at least one proto-token file")


def proto_files(config: Config) -> list[Path]:
    """The files the study reads: the model is the one they name."""
    return [Path(f) for f in config.files]


def run(lm: FrozenLM, config: Config, folder) -> dict:
    """Summary and PCA coordinates of the files' solutions, into ``folder``/geometry.json."""
    folder = Path(folder)
    save_config(folder, NAME, config)
    protos = [load(f, lm) for f in config.files]
    # colour: the context a file's texts continue (locality files say it), else the file; marker: the text
    groups: dict = {}
    for f, p in zip(proto_files(config), protos):
        key = f"context {p.extra['context']}" if "context" in p.extra else f.name
        groups.setdefault(key, []).append((p, p.extra.get("text")))
    result = {"model": lm.name, "texts": sum(map(len, protos)), "files": len(protos), "summary": summary(lm, protos)}
    for name in ("e", "m"):
        points = {k: torch.cat([getattr(p, name) for p, _ in v]) for k, v in groups.items()}
        markers = {k: [t if t is not None else i for i, (p, t) in enumerate(v) for _ in range(len(getattr(p, name)))]
                   for k, v in groups.items()}
        result[f"pca_{name}"] = {"points": {k: v.tolist() for k, v in pca(points).items()}, "markers": markers}
    (folder / "geometry.json").write_text(json.dumps(result, indent=1))
    return result


def report(folder) -> list[Path]:
    """geometry.md and the PCA plots from geometry.json."""
    folder = Path(folder)
    if not (folder / "geometry.json").is_file():
        raise PrototokensError(f"{folder} has no geometry.json (written by runs since it was added): "
                               "run the study again to report it")
    result = json.loads((folder / "geometry.json").read_text())
    plots = [plot_pca({k: torch.tensor(v) for k, v in result[f"pca_{name}"]["points"].items()},
                      result[f"pca_{name}"]["markers"], folder / f"geometry_pca_{name}.png",
                      f"PCA of {name} — {result['model']} (colour: context or file; marker: text)")
             for name in ("e", "m")]
    body = (f"# Geometry of proto-tokens\n\n{result['model']}, {result['texts']} texts in {result['files']} file(s).\n\n"
            + markdown(result["summary"]) + "".join(f"\n![{p.stem}]({p.name})\n" for p in plots))
    return [write_markdown(folder, NAME, body), *plots]


def _cosine(vectors: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    normalize = torch.nn.functional.normalize
    return normalize(vectors.float(), dim=-1) @ normalize(table, dim=-1).T


def _top_tokens(lm: FrozenLM, cos: torch.Tensor, k: int) -> list[list[tuple[str, float]]]:
    top = cos.topk(k, dim=-1)
    return [[(lm.tokenizer.convert_ids_to_tokens(int(i)), float(c)) for c, i in zip(cs, ids)]
            for cs, ids in zip(top.values, top.indices)]


def nearest_tokens(lm: FrozenLM, vectors: torch.Tensor, k: int = 3, table: torch.Tensor | None = None) -> list[list[tuple[str, float]]]:
    """The ``k`` tokens whose embeddings have the highest cosine with each row of ``vectors``."""
    return _top_tokens(lm, _cosine(vectors, lm.token_embeddings() if table is None else table), k)


def summary(lm: FrozenLM, protos: list[ProtoTokens], k: int = 3) -> dict:
    """Norms (mean, std) of e, m and the token embeddings, each text's nearest tokens, and the
    solutions' cosines with their starts."""
    table = lm.token_embeddings()
    starts = [start_cosines(lm, p) for p in protos]  # each start rebuilt once, for e and m
    norms = table.norm(dim=-1)
    out = {"token_norm": {"mean": float(norms.mean()), "std": float(norms.std()),
                          "p5": float(norms.quantile(0.05)), "p95": float(norms.quantile(0.95))}}
    for name in ("e", "m"):
        rows = torch.cat([getattr(p, name) for p in protos]).float()
        out[f"{name}_norm"] = {"mean": float(rows.norm(dim=-1).mean()),
                               "std": float(rows.norm(dim=-1).std()) if len(rows) > 1 else 0.0}
        cos = _cosine(rows, table)
        out[f"{name}_nearest"] = _top_tokens(lm, cos, k)
        out[f"{name}_best_cosine"] = statistics.mean(cos.max(-1).values.tolist())
        kept = [c for cosines in starts for c in cosines[name]]
        out[f"{name}_start_cosine"] = {"mean": statistics.mean(kept), "std": statistics.pstdev(kept), "n": len(kept)} if kept else None
    return out


def start_cosines(lm: FrozenLM, proto: ProtoTokens) -> dict[str, list[float]]:
    """Per vector, the cosine of each text's solution with the start its seed drew, rebuilt from
    the file's recipe (a start that was an encoder's output cannot be, and is left out)."""
    known = {f.name for f in fields(Recipe)}
    recipe = Recipe.from_dict({k: v for k, v in proto.recipe.items() if k in known})
    out = {"e": [], "m": []}
    for i, text in enumerate(proto.texts):
        if "start" in proto.recipe and text.seed == proto.recipe["seed"]:
            continue
        start = initial_vectors(lm, recipe, text.seed, {"e": (), "m": ()}, {"e": 1, "m": 1})
        for name, v in zip(("e", "m"), proto.vectors(i)):
            out[name].append(float(torch.nn.functional.cosine_similarity(v.float(), start[name][0].detach().cpu(), dim=0)))
    return out


def markdown(s: dict) -> str:
    t = s["token_norm"]
    lines = ["| vectors | norm (mean ± std) | best cosine with a token (mean) | cosine with its start (mean ± std) |",
             "|---|---|---|---|",
             f"| token embeddings | {t['mean']:.2f} ± {t['std']:.2f} (5-95 %: {t['p5']:.2f}-{t['p95']:.2f}) | - | - |"]
    for name in ("e", "m"):
        n, c = s[f"{name}_norm"], s.get(f"{name}_start_cosine")
        kept = f"{c['mean']:.3f} ± {c['std']:.3f} ({c['n']} texts)" if c else "-"
        lines.append(f"| {name} | {n['mean']:.2f} ± {n['std']:.2f} | {s[name + '_best_cosine']:.3f} | {kept} |")
    lines += ["", "Nearest tokens (cosine), first texts:", ""]
    for name in ("e", "m"):
        for i, near in enumerate(s[f"{name}_nearest"][:5]):
            lines.append(f"- {name}[{i}]: " + ", ".join(f"`{tok}` {c:.2f}" for tok, c in near))
    return "\n".join(lines) + "\n"


def pca(points: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each group's rows projected on the first two principal components of all rows (exact SVD,
    each component signed so that its largest loading is positive: the same on every run)."""
    x = torch.cat(list(points.values())).double()
    x = x - x.mean(0)
    v = torch.linalg.svd(x, full_matrices=False).Vh[:2].T
    v = v * v.gather(0, v.abs().argmax(0, keepdim=True)).sign()
    xy = (x @ v).float()
    return dict(zip(points, xy.split([len(rows) for rows in points.values()])))


def plot_pca(points: dict[str, torch.Tensor], markers: dict[str, list[int]] | None, path, title: str):
    """The 2-D points of every group (one colour per group, one marker per text id)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    shapes, colours = "o^sDvP*X", plt.get_cmap("tab10" if len(points) <= 10 else "tab20")
    in_order = sorted(points, key=lambda g: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", g)])
    for i, group in enumerate(in_order):  # "context 2" before "context 10"
        part, kinds = points[group], (markers or {}).get(group, [0] * len(points[group]))
        for j, kind in enumerate(sorted(set(kinds))):
            sel = [n for n, k in enumerate(kinds) if k == kind]
            ax.scatter(part[sel, 0], part[sel, 1], marker=shapes[kind % len(shapes)], color=colours(i % colours.N),
                       label=None if j else group, alpha=0.8)
    ax.set(xlabel="PC 1", ylabel="PC 2", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
