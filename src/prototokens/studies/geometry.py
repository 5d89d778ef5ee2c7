"""Geometry at a glance: where proto-tokens sit among the model's token embeddings.

Norms of e and m against token-embedding norms, the vocabulary tokens nearest to each
(cosine), and a 2-D PCA of many solutions, coloured by group (e.g. by context) and marked by
text. All from proto-token files; nothing is optimised here.
"""

from __future__ import annotations

import statistics

import torch

from ..model import FrozenLM
from ..proto import ProtoTokens


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
    """Norms (mean, std) of e, m and the token embeddings, and each text's nearest tokens."""
    table = lm.token_embeddings()
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
    return out


def markdown(s: dict) -> str:
    t = s["token_norm"]
    lines = ["| vectors | norm (mean ± std) | best cosine with a token (mean) |", "|---|---|---|",
             f"| token embeddings | {t['mean']:.2f} ± {t['std']:.2f} (5-95 %: {t['p5']:.2f}-{t['p95']:.2f}) | - |"]
    for name in ("e", "m"):
        n = s[f"{name}_norm"]
        lines.append(f"| {name} | {n['mean']:.2f} ± {n['std']:.2f} | {s[name + '_best_cosine']:.3f} |")
    lines += ["", "Nearest tokens (cosine), first texts:", ""]
    for name in ("e", "m"):
        for i, near in enumerate(s[f"{name}_nearest"][:5]):
            lines.append(f"- {name}[{i}]: " + ", ".join(f"`{tok}` {c:.2f}" for tok, c in near))
    return "\n".join(lines) + "\n"


def plot_pca(points: dict[str, torch.Tensor], markers: dict[str, list[int]] | None, path, title: str):
    """2-D PCA of the rows of every group (one colour per group, one marker per text id)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = torch.cat(list(points.values())).float()
    x = x - x.mean(0)
    _, _, v = torch.pca_lowrank(x, q=2, center=False)
    xy = x @ v[:, :2]
    fig, ax = plt.subplots(figsize=(6, 5))
    start, shapes = 0, "o^sDvP*X"
    for group, rows in points.items():
        part = xy[start: start + len(rows)]
        kinds = (markers or {}).get(group, [0] * len(rows))
        colour = None
        for kind in sorted(set(kinds)):
            sel = [i for i, k in enumerate(kinds) if k == kind]
            dots = ax.scatter(part[sel, 0], part[sel, 1], marker=shapes[kind % len(shapes)], color=colour,
                              label=group if colour is None else None, alpha=0.8)
            colour = dots.get_facecolor()[0]
        start += len(rows)
    ax.set(xlabel="PC 1", ylabel="PC 2", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
