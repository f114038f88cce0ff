"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training Neural
Networks"), as fastai, torch-lr-finder and PyTorch Lightning's `Tuner.lr_find` run it.

Train the config's model from its usual starting weights, on its usual shuffled batches (wrapping
around epochs when there are more steps than batches), stepped by the plan's protocol (closure for
LBFGS, two passes for SAM, ...), while the learning rate grows exponentially from `start` to `end`:
step i (0-based) of n uses lr_i = start * (end / start) ** (i / (n - 1)), set directly in every
param group before the step. Every group's lr is multiplied by the same factor relative to its
configured lr, so the ratios between groups are kept; `start` and `end` are the first group's lr
(the `lr` of epochs.csv). The config's scheduler and its `epochs` are not used.

After each step the batch loss is smoothed with a bias-corrected exponential moving average
(beta 0.98): avg = beta * avg + (1 - beta) * loss, smoothed = avg / (1 - beta ** k) at step k
(1-based). The test stops early when the loss is not finite or the smoothed loss exceeds 4 times
the lowest smoothed loss so far (after the first step); that point is still recorded.

The suggestion is the lr of steepest descent: the argmin over steps of d(smoothed) / d(log10 lr)
(numpy.gradient, central differences), leaving out the first 10 points and the last one and any
non-finite point, as Lightning's `suggestion(skip_begin=10, skip_end=1)` does (Lightning 2.x
differentiates with respect to lr itself; with respect to log10 lr is the slope the usual
log-scale plot shows, and fastai's and Lightning 1.x's choice). No suggestion when fewer than 2
points remain or the smoothed loss never falls there. It is a place to start a learning-rate
search, not an answer: the best lr for a full run is often lower, and schedules change it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from optbench.components.data import load_data
from optbench.core.errors import ConfigError
from optbench.experiment.plan import RunPlan
from optbench.experiment.train import _loss, build_training, training_loader

START, END, STEPS = 1e-8, 1.0, 100  # Lightning's Tuner.lr_find defaults
BETA = 0.98  # smoothing, as fastai and Lightning
DIVERGE_FACTOR = 4.0  # stop when the smoothed loss exceeds this times the best one
SKIP_BEGIN, SKIP_END = 10, 1  # points the suggestion leaves out, as Lightning's suggestion()
FOLDER = "_lr-find"  # under the results dir; '_' cannot start a config name, so no run collides
COLUMNS = ("step", "lr", "loss", "smoothed_loss")


@dataclass
class RangeTest:
    """What one range test measured: per step the first group's lr, the batch loss and the
    smoothed loss; the suggested lr (None when there is none, with `why_no_suggestion`)."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float | None
    suggestion_index: int | None
    stopped_early: str | None  # why the test ended before its last step; None if it did not
    why_no_suggestion: str | None = None

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"step": i + 1, "lr": lr, "loss": loss, "smoothed_loss": smooth}
            for i, (lr, loss, smooth) in enumerate(
                zip(self.lrs, self.losses, self.smoothed, strict=True)
            )
        ]


def schedule(start: float, end: float, steps: int) -> list[float]:
    """The first group's lr at each step: exponential from `start` to `end`, both included."""
    return [start * (end / start) ** (i / (steps - 1)) for i in range(steps)]


def check_settings(start: float, end: float, steps: int) -> None:
    if not (math.isfinite(start) and start > 0):
        raise ConfigError(f"--start must be a positive number, got {start}")
    if not (math.isfinite(end) and end > start):
        raise ConfigError(f"--end must be a number above --start ({start}), got {end}")
    if steps < 2:
        raise ConfigError(f"--steps must be at least 2, got {steps}")


def _lr_ratios(plan: RunPlan, optimizer: torch.optim.Optimizer) -> list[float]:
    """Each group's configured lr over the first group's: what the common factor multiplies.
    An optimizer whose groups hold no lr (or a first lr of 0, which no factor moves) is
    refused."""
    name = plan.optimizer.info.name
    lrs = [group.get("lr") for group in optimizer.param_groups]
    for index, lr in enumerate(lrs):
        if isinstance(lr, torch.Tensor) and lr.numel() == 1:
            lrs[index] = lr = float(lr)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr):
            what = "has no lr" if lr is None else f"has lr {lr!r}"
            raise ConfigError(
                f"optimizer.name: {name} param group {index} {what}; the lr range test "
                "needs an optimizer with a learning rate to scale"
            )
    if lrs[0] <= 0:
        raise ConfigError(
            f"optimizer.lr: the first param group's lr is {lrs[0]}; the range test scales the "
            "configured lrs by a common factor, so it needs a positive one"
        )
    return [lr / lrs[0] for lr in lrs]


def _set_lr(optimizer: torch.optim.Optimizer, lr: float, ratios: list[float]) -> None:
    for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr * ratio)
        else:
            group["lr"] = lr * ratio


def _endless(loader: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The training batches epoch after epoch: each pass reshuffles, as training does."""
    while True:
        yield from loader


def suggest(
    lrs: list[float], smoothed: list[float], skip_begin: int = SKIP_BEGIN, skip_end: int = SKIP_END
) -> tuple[int | None, str | None]:
    """The index of steepest descent of the smoothed loss against log10(lr), and, when there is
    none, why (see the module docstring)."""
    import numpy as np

    kept = [i for i in range(skip_begin, len(lrs) - skip_end) if math.isfinite(smoothed[i])]
    if len(kept) < 2:
        return None, (
            f"only {len(kept)} usable points after leaving out the first {skip_begin} and the "
            f"last {skip_end}; run more --steps or a wider --start/--end range"
        )
    slopes = np.gradient(
        np.array([smoothed[i] for i in kept]), np.log10(np.array([lrs[i] for i in kept]))
    )
    best = int(np.argmin(slopes))
    if not slopes[best] < 0:
        return None, "the smoothed loss never falls over the tested range; try a wider range"
    return kept[best], None


def lr_range_test(
    plan: RunPlan,
    start: float = START,
    end: float = END,
    steps: int = STEPS,
    beta: float = BETA,
    diverge_factor: float | None = DIVERGE_FACTOR,
) -> RangeTest:
    """Run the range test on `plan` (see the module docstring). Nothing is written."""
    check_settings(start, end, steps)
    config, device = plan.config, plan.device
    train_set, _ = load_data(plan.data, config.seed)
    train_set = train_set.to(device)
    model, loss_fn, penalty, optimizer = build_training(plan)
    ratios = _lr_ratios(plan, optimizer)
    protocol = plan.optimizer.protocol
    loader, _ = training_loader(  # the run's pipeline: data.shuffle, data.drop_last
        train_set,
        config.data.batch_size,
        config.seed,
        plan.shuffle_once,
        plan.drop_last,
    )

    lrs, losses, smoothed = [], [], []
    average, best, stopped = 0.0, math.inf, None
    model.train()
    protocol.training(optimizer)
    batches = _endless(loader)
    for step, lr in enumerate(schedule(start, end, steps), start=1):
        _set_lr(optimizer, lr, ratios)
        inputs, targets = next(batches)
        batch_loss = functools.partial(_loss, model, loss_fn, inputs, targets, penalty)
        loss = float(protocol.step(optimizer, batch_loss).item())
        average = beta * average + (1 - beta) * loss
        smooth = average / (1 - beta**step)
        lrs.append(lr)
        losses.append(loss)
        smoothed.append(smooth if math.isfinite(loss) else math.nan)
        if not math.isfinite(loss):
            stopped = f"the loss became {loss} at step {step} (lr {lr:.3g})"
            break
        if diverge_factor is not None and step > 1 and smooth > diverge_factor * best:
            stopped = (
                f"diverged at step {step} (lr {lr:.3g}): smoothed loss {smooth:.4g} > "
                f"{diverge_factor:g} x the best {best:.4g}"
            )
            break
        best = min(best, smooth)
    index, why = suggest(lrs, smoothed)
    return RangeTest(
        lrs=lrs,
        losses=losses,
        smoothed=smoothed,
        suggestion=None if index is None else lrs[index],
        suggestion_index=index,
        stopped_early=stopped,
        why_no_suggestion=why,
    )


def lr_find(
    config: Any,
    overrides: Any = None,
    start: float = START,
    end: float = END,
    steps: int = STEPS,
    results_dir: str | Path | None = None,
) -> tuple[RunPlan, RangeTest, Path]:
    """`optbench lr-find`: plan the config, run the range test and write its CSV; returns the
    plan, the result and the CSV's path. Settings are checked before any step is taken."""
    from optbench.core.config import default_results_dir, load_config
    from optbench.experiment.plan import make_plan

    check_settings(start, end, steps)
    plan = make_plan(load_config(config, overrides))
    result = lr_range_test(plan, start, end, steps)
    path = csv_path(results_dir or default_results_dir(), plan, start, end, steps)
    write_csv(result, path)
    return plan, result, path


def csv_path(results_dir: str | Path, plan: RunPlan, start: float, end: float, steps: int) -> Path:
    """Where a range test's numbers go: beside the runs but never among them (no run folder
    under results/<name>/, no summary.json, so `compare` and sweeps never see it), one file per
    experiment and settings: <results>/_lr-find/<name>/<run-id>/start<..>-end<..>-steps<..>.csv."""
    folder = Path(results_dir) / FOLDER / plan.name / plan.run_id
    return folder / f"start{start:g}-end{end:g}-steps{steps}.csv"


def write_csv(result: RangeTest, path: Path) -> None:
    """The per-step numbers as CSV (lr, batch loss, smoothed loss), written atomically."""
    from optbench.storage.results import write_atomic

    lines = [",".join(COLUMNS)]
    lines += [
        f"{row['step']},{row['lr']!r},{row['loss']!r},{row['smoothed_loss']!r}"
        for row in result.rows()
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "\n".join(lines) + "\n")


def chart(result: RangeTest, width: int, color: bool) -> str:
    """The smoothed loss against the lr (log scale) drawn in text (uniplot)."""
    from uniplot import plot_to_string

    points = [
        (lr, s) for lr, s in zip(result.lrs, result.smoothed, strict=True) if math.isfinite(s)
    ]
    ys = [[s for _, s in points]]
    xs = [[lr for lr, _ in points]]
    labels = ["smoothed loss"]
    if result.suggestion_index is not None:
        ys.append([result.smoothed[result.suggestion_index]])
        xs.append([result.suggestion])
        labels.append(f"suggestion {result.suggestion:.3g}")
    return plot_to_string(
        ys,
        xs,
        legend_labels=labels,
        width=max(30, width - 12),
        height=15,
        color=color,
        x_as_log=True,
        title="lr range test: smoothed loss by learning rate (log scale)",
        lines=[True, False][: len(ys)],
    )
