"""`optbench report` on a benchmark's folder: the page of its benchmark.json, with the
performance profiles in steps and in seconds, the score, time-to-target (with each pair's
chosen hyperparameters) and leave-one-problem-out tables as HTML tables, and per problem each
optimizer's chosen configuration against steps or seconds (a switch, as Benchopt offers).
Each optimizer keeps one colour, dash and marker in every figure, so the lines stay apart in
black and white.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from optbench.analysis.benchmark import run_curve
from optbench.analysis.benchmark_tables import benchmark_frames, html_table, setup_text
from optbench.analysis.html_page import colour, generated_by, page, placed, switch
from optbench.core.metrics import TITLES
from optbench.storage.results import RunDir

_CLOCKS = {"steps": "optimizer steps", "seconds": "training seconds"}
# One dash and marker per optimizer (cycled), beside its colour: lines told apart in print.
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "cross", "star", "triangle-down")


def _style(index: int, shape: str = "linear") -> dict[str, Any]:
    """The line and marker of the index-th optimizer of the suite, in every figure."""
    dash = DASHES[index % len(DASHES)]
    return {
        "line": {"color": colour(index), "width": 2, "dash": dash, "shape": shape},
        "marker": {"symbol": SYMBOLS[index % len(SYMBOLS)], "size": 7, "color": colour(index)},
    }


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
            "mode": "lines+markers",
            **_style(index, shape="hv"),
            # a marker on every 10th tau, shifted per optimizer: coinciding lines stay visible
            "selectedpoints": list(range(index % 10, len(taus), 10)),
            "unselected": {"marker": {"opacity": 0}},
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
    """The mean of `metric` over the pair's curve runs (its seed reruns, or each study's
    fastest trial), against steps and against cumulative training seconds (evaluation
    excluded), over the evaluations every run reached. Read as the benchmark read them."""

    def no_steps() -> int:
        raise LookupError  # a run written before summary.json held its steps per epoch

    curves = []
    for folder, run_id in pair.get("curve_runs", []):
        try:
            curve = run_curve(RunDir(results / folder / run_id), metric, no_steps)
        except LookupError:
            continue
        if curve:
            curves.append(curve)
    if not curves:
        return None
    length = min(len(curve) for curve in curves)
    steps = [float(point.steps) for point in curves[0][:length]]
    seconds = np.mean([[p.seconds for p in curve[:length]] for curve in curves], axis=0)
    values = np.mean([[p.value for p in curve[:length]] for curve in curves], axis=0)
    return steps, seconds.tolist(), values.tolist()


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
                **_style(index),
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
        f"{problem}: {title} of each optimizer's chosen configuration (mean over its "
        f"{document.get('unit', 'seeds')}; grey dashes: the target {sign} {target['value']:g})"
    )
    return {"heading": heading, "data": traces, "layout": layout}


def _tables_html(document: dict[str, Any]) -> str:
    """The score, time-to-target and leave-one-problem-out tables as HTML tables."""
    return "\n".join(
        f"<div class=tablewrap>{html_table(frame, title)}</div>".replace(
            "<table>", "<table class=ranking>", 1
        )
        for title, frame in benchmark_frames(document)
    )


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
    if document.get("protocol") == "external_tuning":
        how = """AlgoPerf's external tuning: per pair, independent tuning studies, each study's
time its fastest trial to the target, the pair's the median over its studies"""
    else:
        how = "the median over the best configuration's seed reruns"
    intro = f"""<p class=meta>Each (optimizer, problem) pair tuned with the same budget; time to
target is {how} (AlgoPerf's performance profiles, r_max {document["r_max"]:g}; score 1: the
fastest on every problem). {generated_by()}
The buttons above a problem's figure switch its axis between steps and seconds. Hover for
values.</p>"""
    body = f"""{divs[0]}
{divs[1]}
<h2>Scores and times to target</h2>
<p class=meta>{html.escape(setup_text(document))}</p>
{_tables_html(document)}
{"".join(divs[2:])}"""
    title = f"optbench benchmark: {document['suite']}"
    return page(title, intro, body, figures), [figure["id"] for figure in figures]
