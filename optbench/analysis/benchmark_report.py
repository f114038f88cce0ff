"""`optbench report` on a benchmark's folder: the page of its benchmark.json, with the
performance profiles in steps and in seconds, the score and time-to-target tables as
`optbench benchmark` prints them, and per problem each optimizer's best configuration against
steps or seconds (a switch, as Benchopt offers).
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import numpy as np

from optbench.analysis.html_page import colour, generated_by, page, placed, switch
from optbench.core.metrics import TITLES
from optbench.storage.results import RunDir

_CLOCKS = {"steps": "optimizer steps", "seconds": "training seconds"}


def _profile_figure(document: dict[str, Any], measure: str) -> dict[str, Any]:
    """The performance profile rho(tau) of every optimizer for one clock (a step function),
    the legend best score first; each optimizer keeps its colour in every figure."""
    taus = document["profiles"]["tau"]
    scores = document["scores"][measure]
    suite_order = list(document["scores"]["steps"])
    ranked = sorted(enumerate(suite_order), key=lambda pair: -scores[pair[1]])
    traces = [
        {
            "type": "scatter",
            "x": taus,
            "y": document["profiles"][measure][optimizer],
            "mode": "lines",
            "line": {"shape": "hv", "color": colour(index), "width": 2},
            "name": f"{optimizer} ({scores[optimizer]:.3f})",
            "hovertemplate": "tau %{x:.3g}: %{y:.3g} of the problems<extra>%{fullData.name}"
            "</extra>",
        }
        for index, optimizer in ranked
    ]
    layout = {
        "xaxis": {"title": {"text": f"tau: time to target / the fastest's ({_CLOCKS[measure]})"}},
        "yaxis": {"title": {"text": "fraction of problems"}, "range": [-0.02, 1.02]},
        "height": 420,
        "margin": {"t": 40, "r": 10},
    }
    heading = f"Performance profile in {_CLOCKS[measure]} (legend: score)"
    return {"heading": heading, "data": traces, "layout": layout}


def _best_curves(
    results: Path, pair: dict[str, Any], metric: str
) -> tuple[list[float], list[float], list[float]] | None:
    """The mean over the seed reruns of `metric`, against steps and against cumulative
    training seconds (evaluation excluded), over the epochs every seed reached."""
    frames = []
    for run_id in pair["seed_run_ids"]:
        frame = RunDir(results / pair["folder"] / run_id).read_epochs()
        if frame is not None and len(frame) and metric in frame:
            frames.append(frame.assign(seconds=frame["seconds"].cumsum()))
    if not frames or not pair["steps_per_epoch"]:
        return None
    length = min(len(frame) for frame in frames)
    steps = frames[0]["epoch"].to_numpy()[:length] * pair["steps_per_epoch"]
    seconds = np.mean([frame["seconds"].to_numpy()[:length] for frame in frames], axis=0)
    values = np.mean([frame[metric].to_numpy(float)[:length] for frame in frames], axis=0)
    return steps.tolist(), seconds.tolist(), values.tolist()


def _axis_switch(steps: list[list[float]], seconds: list[list[float]]) -> dict[str, Any]:
    """Buttons that redraw every curve against steps or against wall-clock training seconds."""

    def button(label: str, xs: list[list[float]]) -> dict[str, Any]:
        return {
            "label": label,
            "method": "update",
            "args": [{"x": xs}, {"xaxis.title.text": _CLOCKS[label], "xaxis.autorange": True}],
        }

    return switch([button("steps", steps), button("seconds", seconds)])


def _problem_figure(document: dict[str, Any], results: Path, problem: str) -> dict[str, Any] | None:
    """Each optimizer's best configuration on one problem: its metric (mean over the seeds)
    against steps, switchable to seconds, with the target as a dashed line."""
    target = document["targets"][problem]
    metric = target["metric"]
    traces, steps, seconds = [], [], []
    for index, optimizer in enumerate(document["scores"]["steps"]):
        curves = _best_curves(results, document["pairs"][optimizer][problem], metric)
        if curves is None:
            continue
        steps.append(curves[0])
        seconds.append(curves[1])
        traces.append(
            {
                "type": "scatter",
                "x": curves[0],
                "y": curves[2],
                "mode": "lines+markers",
                "marker": {"size": 4},
                "line": {"color": colour(index), "width": 2},
                "name": optimizer,
                "hovertemplate": f"%{{x:.4~g}}: {metric} %{{y:.5~g}}<extra>%{{fullData.name}}"
                "</extra>",
            }
        )
    if not traces:
        return None
    title = TITLES.get(metric, metric)
    layout = {
        "xaxis": {"title": {"text": _CLOCKS["steps"]}},
        "yaxis": {"title": {"text": title}},
        "shapes": [
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "y0": target["value"],
                "y1": target["value"],
                "line": {"dash": "dash", "color": "#555", "width": 1},
            }
        ],
        "updatemenus": [_axis_switch(steps, seconds)],
        "height": 420,
        "margin": {"t": 40, "r": 10},
    }
    sign = ">=" if target["higher_is_better"] else "<="
    heading = (
        f"{problem}: {title} of each optimizer's best configuration (mean over seeds; "
        f"dashed: the target {sign} {target['value']:g})"
    )
    return {"heading": heading, "data": traces, "layout": layout}


def _tables_text(document: dict[str, Any]) -> str:
    """The score and time-to-target tables, as `optbench benchmark` prints them."""
    from rich.console import Console

    from optbench.analysis.reports import benchmark_tables

    console = Console(record=True, width=160, file=open(os.devnull, "w"))  # noqa: SIM115
    for table in benchmark_tables(document):
        console.print(table)
    console.file.close()
    return console.export_text()


def render_benchmark(document: dict[str, Any], results: Path) -> tuple[str, list[str]]:
    """The page of a benchmark.json (its pairs' runs read from `results`): the performance
    profiles, the score and time tables, and per problem the best configurations' curves."""
    figures, divs = placed(
        [
            ("fig-profile-steps", _profile_figure(document, "steps")),
            ("fig-profile-seconds", _profile_figure(document, "seconds")),
            *(
                (f"fig-problem-{index}", _problem_figure(document, results, problem))
                for index, problem in enumerate(document["targets"])
            ),
        ]
    )
    intro = f"""<p class=meta>Each (optimizer, problem) pair tuned with the same budget; time to
target is the median over the best configuration's seed reruns (AlgoPerf's performance
profiles, r_max {document["r_max"]:g}; score 1: the fastest on every problem). {generated_by()}
The buttons above a problem's figure switch its axis between steps and seconds. Hover for
values.</p>"""
    body = f"""{divs[0]}
{divs[1]}
<h2>Scores and times to target</h2>
<pre>{html.escape(_tables_text(document))}</pre>
{"".join(divs[2:])}"""
    title = f"optbench benchmark: {document['suite']}"
    return page(title, intro, body, figures), [figure["id"] for figure in figures]
