"""Connectivity (Fig. 7): are two solutions of one text joined by a path of solutions?

Each text is encoded twice, from different seeds (the endpoints p1 and p2). Along the straight
line between them accuracy usually collapses; along a quadratic Bezier curve
(1-t)^2 p1 + 2t(1-t) c + t^2 p2, whose control point c is trained by sampling t ~ U[0, 1] each
step (as in the paper), it may stay high. A point is the pair (e, m); distances are taken in
the concatenated (e, m) space.

The control points train until the worst point on every curve reaches ``goal`` or more training
stops helping (``patience`` checks in a row do not raise the best mean worst point by 0.01), at
most ``control_steps`` steps; the control of the best check is kept, and every check is
recorded, so the record says what ended the training. The paper draws one t a step at a
constant rate; ``t_samples`` draws several (a less noisy gradient) and ``control_schedule``
"cosine" decays the rate to 0 at ``control_steps``.

Files in the study folder: ``start``, ``end`` and ``control.proto.safetensors`` (ordinary
proto-token files, so any point of any curve can be rebuilt and decoded independently) and
``records.jsonl``, one line per text with accuracy along both paths, the path-length ratio and
the worst point on the curve at each check. The control file is rewritten at every check and
training resumes from it (with fresh Adam moments).
"""

from __future__ import annotations

import json
import math
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
from .common import SampledConfig, names, option, read_config, sample, save_config, write_markdown

NAME, HELP = "connectivity", "line and trained Bezier curve between two solutions (Fig. 7)"
END_SEED = 1000  # the second endpoint's seeds start here, far from the first's
SCHEDULES = ("constant", "cosine")
PAPER_TRAINING = {"t_samples": 1, "control_schedule": "constant"}  # one t per text a step, a constant rate


@dataclass(kw_only=True)
class Config(SampledConfig):
    texts: int = option(3, "how many texts", positive=True)
    length: int = option(16, "tokens per text", positive=True)
    control_steps: int = option(1000, "most steps training the Bezier control points", positive=True)
    control_lr: float = option(1e-2, "learning rate of the control points (Adam)", cli=False)
    check_every: int = option(250, "control steps between checks of the curve's worst point", positive=True)
    goal: float = option(0.9, "training stops when the worst point of every curve reaches this accuracy", cli=False)
    patience: int = option(4, "... or when this many checks in a row do not beat the best mean worst point by 0.01",
                           positive=True, cli=False)
    points: int = option(21, "points evaluated along each path", positive=True)
    t_samples: int = option(1, "values of t drawn per text at each control step (the paper draws one)", positive=True)
    control_schedule: str = option("constant", "the control's learning rate: constant, or cosine down to 0 at "
                                   "control_steps", choices=SCHEDULES)


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
    names([config.control_schedule], SCHEDULES, "control schedule")
    save_config(folder, NAME, config)
    texts = sample(lm, config, config.texts, config.length)
    targets, text_ids = [t.target_ids for t in texts], [t.id for t in texts]
    folder, recipe, layout, lay = Path(folder), config.recipe, config.layout, get_layout(config.layout)
    points = config.points
    # recorded only where it is not the paper's, as in the folders made before these options
    training = {k: getattr(config, k) for k, paper in PAPER_TRAINING.items() if getattr(config, k) != paper}
    run_folder = RunFolder(folder, {"study": "connectivity", "model": lm.name, "fingerprint": lm.fingerprint,
                                    "source": config.source, "texts": text_ids, "layout": layout,
                                    "recipe": recipe.to_dict(), "points": points,
                                    **{k: getattr(config, k) for k in ("control_steps", "control_lr", "check_every",
                                                                       "goal", "patience")}} | training)
    keys = [key_of(t) for t in text_ids]
    if all(k in run_folder.done for k in keys):
        return run_folder
    ends = [encode_ids(lm, targets, layout=layout, recipe=recipe, seed=seed, progress=config.progress,
                       checkpoint=folder / f"{name}.proto.safetensors")
            for name, seed in (("start", 0), ("end", END_SEED))]
    p1, p2 = (_point(p) for p in ends)
    c, history = _train_control(lm, lay, ends, p1, p2, targets, config, folder / "control.proto.safetensors")
    ts = torch.linspace(0, 1, points)
    line = [accuracy_at(lm, lay, (1 - t) * p1 + t * p2, targets) for t in ts]
    curve = [accuracy_at(lm, lay, bezier(p1, c, p2, float(t)), targets) for t in ts]
    ratio = path_length(p1, c, p2) / (p2 - p1).flatten(1).norm(dim=-1)
    for i, (key, text) in enumerate(zip(keys, text_ids)):
        if key not in run_folder.done:
            run_folder.append({"key": key, "text": text, "t": ts.tolist(), "line": [a[i] for a in line],
                               "curve": [a[i] for a in curve], "length_ratio": float(ratio[i]),
                               "distance": float((p2[i] - p1[i]).norm()),
                               "start_accuracy": ends[0].texts[i].accuracy, "end_accuracy": ends[1].texts[i].accuracy,
                               "control_checks": [{"step": h["step"], "worst": h["worst"][i]} for h in history],
                               "control_kept": history[_kept(history)]["step"]})
    return run_folder


def worst_on_curve(lm, layout, p1, c, p2, targets, points: int) -> list[float]:
    """Each text's lowest accuracy over ``points`` evenly spaced points of its curve."""
    curve = [accuracy_at(lm, layout, bezier(p1, c, p2, float(t)), targets) for t in torch.linspace(0, 1, points)]
    return [min(a[i] for a in curve) for i in range(len(targets))]


def _train_control(lm, layout, ends, p1, p2, targets, config: Config, path: Path) -> tuple[torch.Tensor, list[dict]]:
    """Adam on c from the midpoint, each step each text at ``t_samples`` values of t ~ U[0, 1]
    (the mean of their objectives), the rate constant or decaying along ``control_steps``, checked
    every ``check_every`` steps until the goal, the patience or the step budget ends it. Returns the
    control kept (the check with the highest mean worst point) and every check; resumes from
    ``path``, which holds the kept control (with fresh Adam moments)."""
    if path.exists():
        saved = load(path, lm)
        kept, history = _point(saved), saved.extra["checks"]
        if saved.extra["finished"]:
            return kept, history
    else:
        kept = (p1 + p2) / 2
        history = [{"step": 0, "worst": worst_on_curve(lm, layout, p1, kept, p2, targets, config.points)}]
    p1, p2 = p1.to(lm.device), p2.to(lm.device)
    c = kept.to(lm.device).clone().requires_grad_()
    adam = torch.optim.Adam([c], lr=config.control_lr)
    g = torch.Generator().manual_seed(history[-1]["step"])
    bar = tqdm(total=config.control_steps, initial=history[-1]["step"], disable=not config.progress,
               desc="control points", leave=False)
    k = config.t_samples
    while not _finished(history, config):
        steps = min(config.check_every, config.control_steps - history[-1]["step"])
        for step in range(history[-1]["step"], history[-1]["step"] + steps):
            if config.control_schedule == "cosine":
                adam.param_groups[0]["lr"] = config.control_lr * (1 + math.cos(math.pi * step / config.control_steps)) / 2
            t = torch.rand(len(targets) * k, generator=g).to(lm.device)  # text i's draws: rows i*k .. i*k+k-1
            point = bezier(p1.repeat_interleave(k, 0), c.repeat_interleave(k, 0), p2.repeat_interleave(k, 0), t)
            objective = evaluate(lm, layout, {"e": point[:, 0], "m": point[:, 1]},
                                 [ids for ids in targets for _ in range(k)]).objective
            adam.zero_grad()
            (objective.sum() / k).backward()
            adam.step()
            bar.update()
        history.append({"step": history[-1]["step"] + steps,
                        "worst": worst_on_curve(lm, layout, p1, c.detach(), p2, targets, config.points)})
        if _kept(history) == len(history) - 1:
            kept = c.detach().cpu().clone()
        bar.set_postfix(worst=f"{min(history[-1]['worst']):.2f}")
        ProtoTokens(e=kept[:, 0], m=kept[:, 1], layout=config.layout, shared=None, model=ends[0].model,
                    recipe={"control_lr": config.control_lr}, texts=ends[0].texts,
                    extra={"role": "Bezier control points between start and end", "checks": history,
                           "kept": history[_kept(history)]["step"], "finished": _finished(history, config)}).save(path)
    bar.close()
    return kept, history


def _mean_worst(check: dict) -> float:
    return sum(check["worst"]) / len(check["worst"])


def _kept(history: list[dict]) -> int:
    """The check whose control is kept: the first with the highest mean worst point."""
    means = [_mean_worst(h) for h in history]
    return means.index(max(means))


def _finished(history: list[dict], config: Config) -> bool:
    """Every curve of the kept control reaches the goal, the step budget is spent, or none of
    the last ``patience`` checks beat the best before them by 0.01."""
    means, patience = [_mean_worst(h) for h in history], config.patience
    return (min(history[_kept(history)]["worst"]) >= config.goal or history[-1]["step"] >= config.control_steps
            or (len(means) > patience and max(means[-patience:]) < max(means[:-patience]) + 0.01))


def table(records: list[dict]) -> str:
    """Markdown: per text, endpoints' accuracy, the worst point on each path, the length ratio,
    and the worst point on the curve at each check of the control's training."""
    lines = ["| text | endpoints | worst on line | worst on curve | curve / line length | worst on curve by step |",
             "|---|---|---|---|---|---|"]
    for r in records:
        checks = ", ".join(f"{c['step']}: {c['worst']:.2f}" for c in r["control_checks"])
        lines.append(f"| {r['text']} | {r['start_accuracy']:.2f}, {r['end_accuracy']:.2f} | {min(r['line']):.2f} | "
                     f"{min(r['curve']):.2f} | {r['length_ratio']:.2f} | {checks} |")
    return "\n".join(lines) + "\n"


def verdict(records: list[dict], settings: dict) -> str:
    """What ended the control's training, and whether the curves support "connected"."""
    goal, steps = settings["goal"], records[0]["control_checks"][-1]["step"]
    worst = [min(r["curve"]) for r in records]
    reached = sum(w >= goal for w in worst)
    ended = ("every curve reached the goal" if reached == len(records) else
             "the step budget ran out" if steps >= settings["control_steps"] else
             f"{settings['patience']} checks in a row did not raise the best mean worst point by 0.01")
    support = ("support" if reached == len(records) and len(records) >= 3 else "do not support")
    return (f"Control points trained {steps} steps, the control of step {records[0]['control_kept']} kept; "
            f"training ended because {ended}. "
            f"{reached} of {len(records)} curves have a worst point at or above {goal:.2f}: these results "
            f"{support} \"connected\" (it needs at least 3 texts, all at or above {goal:.2f}).\n")


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
                 f"curve/line length {float(ratio.mean()):.2f}, control trained "
                 f"{records[0]['control_checks'][-1]['step']} steps")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _training(settings: dict) -> str:
    k, schedule = (settings.get(key, paper) for key, paper in PAPER_TRAINING.items())
    return (f"Adam at lr {settings['control_lr']:g} ({'constant' if schedule == 'constant' else 'cosine down to 0'}), "
            f"{k} value{'s' if k > 1 else ''} of t per text a step")


def report(folder) -> list[Path]:
    """connectivity.md and the plot from the records."""
    folder = Path(folder)
    settings = json.loads((folder / "run.json").read_text())
    records = read_records(folder / "records.jsonl")
    path = plot(records, settings, folder / "connectivity.png")
    body = (f"# Connectivity (Fig. 7)\n\n{settings['model']}, {len(settings['texts'])} texts from {settings['source']}, "
            f"N={read_config(folder)['config']['length']}. The control's training: {_training(settings)}.\n\n"
            + table(records) + "\n" + verdict(records, settings)
            + f"\n![connectivity]({path.name})\n")
    return [write_markdown(folder, NAME, body), path]
