"""Connectivity (Fig. 7): are two solutions of one text joined by a path of solutions?

Each text is encoded twice, from different seeds (the endpoints p1 and p2). Along the straight
line between them accuracy usually collapses; along a quadratic Bezier curve
(1-t)^2 p1 + 2t(1-t) c + t^2 p2, whose control point c is trained by sampling t ~ U[0, 1] each
step (as in the paper), it may stay high. A point is the pair (e, m); distances are taken in
the concatenated (e, m) space.

Files in the study folder: ``start``, ``end`` and ``control.proto.safetensors`` (ordinary
proto-token files, so any point of any curve can be rebuilt and decoded independently) and
``records.jsonl``, one line per text with accuracy along both paths and the path-length ratio.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..encode import encode_ids
from ..layout import get_layout
from ..model import FrozenLM
from ..optimize import evaluate
from ..proto import ProtoTokens, load
from ..records import RunFolder, key_of, read_records
from .common import SampledConfig, option, read_config, sample, save_config, write_markdown

NAME, HELP = "connectivity", "line and trained Bezier curve between two solutions (Fig. 7)"
END_SEED = 1000  # the second endpoint's seeds start here, far from the first's


@dataclass(kw_only=True)
class Config(SampledConfig):
    texts: int = option(3, "how many texts", positive=True)
    length: int = option(16, "tokens per text", positive=True)
    control_steps: int = option(1000, "steps training the Bezier control points", positive=True)
    control_lr: float = option(1e-2, "learning rate of the control points (Adam)", cli=False)
    points: int = option(21, "points evaluated along each path", positive=True)


def bezier(p1: torch.Tensor, c: torch.Tensor, p2: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Points of the quadratic Bezier curve at ``t`` (one t per row, or a scalar)."""
    t = t.view(-1, *[1] * (p1.dim() - 1)) if torch.is_tensor(t) and t.dim() else t
    return (1 - t) ** 2 * p1 + 2 * t * (1 - t) * c + t ** 2 * p2


def path_length(p1, c, p2, points: int = 257) -> torch.Tensor:
    """Length of each row's curve (polyline through ``points`` points)."""
    ts = torch.linspace(0, 1, points)
    curve = torch.stack([bezier(p1, c, p2, float(t)) for t in ts])  # (points, B, ...)
    return (curve[1:] - curve[:-1]).flatten(2).norm(dim=-1).sum(0)


def _point(proto: ProtoTokens) -> torch.Tensor:
    """(texts, 2, d): each text's (e, m)."""
    return torch.stack([torch.stack(proto.vectors(i)) for i in range(len(proto))])


def accuracy_at(lm: FrozenLM, layout, points: torch.Tensor, targets: list[list[int]]) -> list[float]:
    """Token accuracy of one forward pass at each row's (e, m)."""
    with torch.inference_mode():
        points = points.to(lm.device)
        return evaluate(lm, layout, {"e": points[:, 0], "m": points[:, 1]}, targets).accuracy.tolist()


def run(lm: FrozenLM, config: Config, folder) -> RunFolder:
    """Endpoints, trained control points and accuracy along line and curve, into ``folder`` (resumed)."""
    save_config(folder, NAME, config)
    texts = sample(lm, config, config.texts, config.length)
    targets, text_ids = [t.target_ids for t in texts], [t.id for t in texts]
    folder, recipe, layout, lay = Path(folder), config.recipe, config.layout, get_layout(config.layout)
    steps, lr, points, progress = config.control_steps, config.control_lr, config.points, config.progress
    run_folder = RunFolder(folder, {"study": "connectivity", "model": lm.name, "fingerprint": lm.fingerprint,
                                    "source": config.source, "texts": text_ids, "layout": layout,
                                    "recipe": recipe.to_dict(), "control_steps": steps, "control_lr": lr,
                                    "points": points})
    keys = [key_of(t) for t in text_ids]
    if all(k in run_folder.done for k in keys):
        return run_folder
    ends = [encode_ids(lm, targets, layout=layout, recipe=recipe, seed=seed, progress=progress,
                       checkpoint=folder / f"{name}.proto.safetensors")
            for name, seed in (("start", 0), ("end", END_SEED))]
    p1, p2 = (_point(p) for p in ends)
    control_file = folder / "control.proto.safetensors"
    if control_file.exists():
        c = _point(load(control_file, lm))
    else:
        c = _train_control(lm, lay, p1, p2, targets, steps, lr, progress)
        ProtoTokens(e=c[:, 0], m=c[:, 1], layout=layout, shared=None, model=ends[0].model,
                    recipe={"control_steps": steps, "control_lr": lr}, texts=ends[0].texts,
                    extra={"role": "Bezier control points between start and end"}).save(control_file)
    ts = torch.linspace(0, 1, points)
    line = [accuracy_at(lm, lay, (1 - t) * p1 + t * p2, targets) for t in ts]
    curve = [accuracy_at(lm, lay, bezier(p1, c, p2, float(t)), targets) for t in ts]
    ratio = path_length(p1, c, p2) / (p2 - p1).flatten(1).norm(dim=-1)
    for i, (key, text) in enumerate(zip(keys, text_ids)):
        if key not in run_folder.done:
            run_folder.append({"key": key, "text": text, "t": ts.tolist(), "line": [a[i] for a in line],
                               "curve": [a[i] for a in curve], "length_ratio": float(ratio[i]),
                               "distance": float((p2[i] - p1[i]).norm()),
                               "start_accuracy": ends[0].texts[i].accuracy, "end_accuracy": ends[1].texts[i].accuracy})
    return run_folder


def _train_control(lm, layout, p1, p2, targets, steps, lr, progress) -> torch.Tensor:
    """Adam on c from the midpoint: each step, each text at its own t ~ U[0, 1]."""
    p1, p2 = p1.to(lm.device), p2.to(lm.device)
    c = ((p1 + p2) / 2).clone().requires_grad_()
    adam = torch.optim.Adam([c], lr=lr)
    g = torch.Generator().manual_seed(0)
    for _ in tqdm(range(steps), disable=not progress, desc="control points", leave=False):
        t = torch.rand(len(targets), generator=g).to(lm.device)
        point = bezier(p1, c, p2, t)
        objective = evaluate(lm, layout, {"e": point[:, 0], "m": point[:, 1]}, targets).objective
        adam.zero_grad()
        objective.sum().backward()
        adam.step()
    return c.detach().cpu()


def table(records: list[dict]) -> str:
    """Markdown: per text, endpoints' accuracy, the worst point on each path, and the length ratio."""
    lines = ["| text | endpoints | worst on line | worst on curve | curve / line length |", "|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['text']} | {r['start_accuracy']:.2f}, {r['end_accuracy']:.2f} | {min(r['line']):.2f} | "
                     f"{min(r['curve']):.2f} | {r['length_ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def plot(records: list[dict], settings: dict, path: Path) -> Path:
    """Fig. 7: accuracy along the line and the trained curve (mean over texts, min-max band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    t = records[0]["t"]
    for key, name in (("line", "straight line"), ("curve", "trained Bezier curve")):
        values = torch.tensor([r[key] for r in records])
        ax.plot(t, values.mean(0), marker=".", label=name)
        ax.fill_between(t, values.min(0).values, values.max(0).values, alpha=0.2)
    ratio = torch.tensor([r["length_ratio"] for r in records])
    ax.set(xlabel="t (0: solution from seed A, 1: from seed B)", ylabel="token accuracy", ylim=(0, 1.02),
           title=f"Between two solutions of the same text — {settings['model']}\n{len(records)} texts, "
                 f"curve/line length {float(ratio.mean()):.2f}, control trained {settings['control_steps']} steps")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report(folder) -> list[Path]:
    """connectivity.md and the plot from the records."""
    folder = Path(folder)
    settings = json.loads((folder / "run.json").read_text())
    records = read_records(folder / "records.jsonl")
    path = plot(records, settings, folder / "connectivity.png")
    body = (f"# Connectivity (Fig. 7)\n\n{settings['model']}, {len(settings['texts'])} texts from {settings['source']}, "
            f"N={read_config(folder)['config']['length']}.\n\n" + table(records) + f"\n![connectivity]({path.name})\n")
    return [write_markdown(folder, NAME, body), path]
