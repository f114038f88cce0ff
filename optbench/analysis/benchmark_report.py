"""`optbench report` on a benchmark's folder: the page of its benchmark.json, with the
performance profiles in steps and in seconds, the score, time-to-target (with each pair's
chosen hyperparameters) and leave-one-problem-out tables as HTML tables, and per problem each
optimizer's chosen configuration against steps or seconds (a switch, as Benchopt offers).
Each optimizer keeps one colour, dash and marker in every figure, so the lines stay apart in
black and white.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optbench.analysis.benchmark import run_curve
from optbench.analysis.benchmark_tables import benchmark_frames, html_table, setup_text
from optbench.analysis.html_page import colour, generated_by, page, placed, rgba, switch
from optbench.core.metrics import TITLES, higher_is_better
from optbench.storage.results import RunDir

_CLOCKS = {"steps": "optimizer steps", "seconds": "training seconds"}
# One dash and marker per optimizer (cycled), beside its colour: lines told apart in print.
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "cross", "star", "triangle-down")
DIVERGED_SYMBOL = "asterisk-open"  # a trial that diverged or failed: no optimizer's own symbol


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


@dataclass
class _Band:
    """A pair's chosen configuration on one problem: at each evaluation every curve run
    reached, the steps, the seconds (calibrated where benchmark.json has the pair's step
    cost, else the runs' mean measured), and the metric's mean, lowest and highest value."""

    steps: list[float]
    seconds: list[float]
    mean: list[float]
    low: list[float]
    high: list[float]


def _best_curves(results: Path, pair: dict[str, Any], metric: str) -> _Band | None:
    """The pair's curve runs (its seed reruns, or each study's fastest trial) read as the
    benchmark read them: their mean and their band (min to max over the runs)."""

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
    values = np.array([[p.value for p in curve[:length]] for curve in curves])
    cost = pair.get("step_seconds")
    if cost is not None:
        seconds = [step * cost for step in steps]
    else:
        seconds = np.mean([[p.seconds for p in c[:length]] for c in curves], axis=0).tolist()
    return _Band(
        steps,
        seconds,
        values.mean(axis=0).tolist(),
        values.min(axis=0).tolist(),
        values.max(axis=0).tolist(),
    )


def _axis_switch(steps: list[list[float]], seconds: list[list[float]]) -> dict[str, Any]:
    """Buttons that redraw every trace against steps or against training seconds."""

    def button(label: str, xs: list[list[float]]) -> dict[str, Any]:
        return {
            "label": label,
            "method": "update",
            "args": [{"x": xs}, {"xaxis.title.text": _CLOCKS[label], "xaxis.autorange": True}],
        }

    return switch([button("steps", steps), button("seconds", seconds)])


def _target_line(value: float) -> dict[str, Any]:
    """The target as a grey dashed line across the figure."""
    return {
        "type": "line",
        "xref": "paper",
        "x0": 0,
        "x1": 1,
        "y0": value,
        "y1": value,
        "line": {"dash": "dash", "color": "#555", "width": 1},
    }


def pair_status(document: dict[str, Any], optimizer: str, problem: str) -> str | None:
    """What a figure says of a pair beside its name: None when it reached the target, else
    not reached (with how many of its studies or seeds did) or no completed trial."""
    pair = document["pairs"][optimizer][problem]
    if pair.get("hyperparameters") is None:
        return "no completed trial: every trial diverged or failed"
    time = document["time_to_target"][optimizer][problem]
    if time["steps"] is not None:
        return None
    unit = document.get("unit", "seeds")
    return f"not reached: {time[f'{unit}_reached']} of {time[unit]} {unit}"


def _log_scale(metric: str, values: list[float]) -> bool:
    """Losses and distances on a log axis (they span decades), where every value is > 0."""
    return not higher_is_better(metric) and all(v > 0 for v in values if math.isfinite(v))


def _problem_figure(document: dict[str, Any], results: Path, problem: str) -> dict[str, Any] | None:
    """Each optimizer's chosen configuration on one problem: its metric (mean over its studies'
    fastest trials, or its seed reruns; band: their min to max) against steps, switchable to
    seconds, the target as a dashed line and each pair's time to target marked on it. A pair
    not reached or without a completed trial is said in its legend entry, never left out."""
    target = document["targets"][problem]
    metric = target["metric"]
    traces: list[dict[str, Any]] = []
    steps: list[list[float | None]] = []
    seconds: list[list[float | None]] = []
    shown: list[float] = [target["value"]]

    def add(trace: dict[str, Any], on_steps: list, on_seconds: list) -> None:
        traces.append(trace)
        steps.append(on_steps)
        seconds.append(on_seconds)

    for index, optimizer in enumerate(document["scores"]["steps"]):
        pair = document["pairs"][optimizer][problem]
        band = _best_curves(results, pair, metric)
        status = pair_status(document, optimizer, problem)
        name = optimizer if status is None else f"{optimizer} ({status})"
        group = f"optimizer-{index}"
        if band is None:  # nothing to draw: the legend still names it, marked
            add(
                {
                    "type": "scatter",
                    "x": [None],
                    "y": [None],
                    "mode": "lines+markers",
                    **_style(index),
                    "name": name,
                    "legendgroup": group,
                },
                [None],
                [None],
            )
            continue
        shown += band.low + band.high
        if band.high != band.low:
            add(
                {
                    "type": "scatter",
                    "x": band.steps + band.steps[::-1],
                    "y": band.high + band.low[::-1],
                    "fill": "toself",
                    "fillcolor": rgba(colour(index), 0.15),
                    "line": {"width": 0},
                    "mode": "lines",
                    "hoverinfo": "skip",
                    "showlegend": False,
                    "legendgroup": group,
                    "name": f"{optimizer} band",
                },
                band.steps + band.steps[::-1],
                band.seconds + band.seconds[::-1],
            )
        add(
            {
                "type": "scatter",
                "x": band.steps,
                "y": band.mean,
                "mode": "lines+markers",
                **_style(index),
                "name": name,
                "legendgroup": group,
                "hovertemplate": f"%{{x:.4~g}}: {metric} %{{y:.5~g}}<extra>%{{fullData.name}}"
                "</extra>",
            },
            band.steps,
            band.seconds,
        )
        time = document["time_to_target"][optimizer][problem]
        if time["steps"] is not None:  # the pair's time to target, on the target line
            marker = _style(index)["marker"]
            add(
                {
                    "type": "scatter",
                    "x": [time["steps"]],
                    "y": [target["value"]],
                    "mode": "markers",
                    "marker": {**marker, "size": 13, "line": {"width": 1, "color": "#000"}},
                    "showlegend": False,
                    "legendgroup": group,
                    "name": f"{optimizer} reaches the target",
                    "hovertemplate": "%{fullData.name} at %{x:.4~g}<extra></extra>",
                },
                [time["steps"]],
                [time["seconds"]],
            )
    title = TITLES.get(metric, metric)
    log = _log_scale(metric, shown)
    layout = {
        "xaxis": {"title": {"text": _CLOCKS["steps"]}},
        "yaxis": {
            "title": {"text": title + (" (log scale)" if log else "")},
            "type": "log" if log else "linear",
        },
        "shapes": [_target_line(target["value"])],
        "updatemenus": [_axis_switch(steps, seconds)],
        "height": 420,
        "margin": {"t": 40, "r": 10},
    }
    sign = ">=" if target["higher_is_better"] else "<="
    unit = document.get("unit", "seeds")
    heading = (
        f"{problem}: {title} of each optimizer's chosen configuration (mean over its {unit}, "
        f"band: min to max; grey dashes: the target {sign} {target['value']:g}; large "
        "markers: each pair's time to target)"
    )
    return {"heading": heading, "data": traces, "layout": layout}


def _searched_key(document: dict[str, Any]) -> str | None:
    """The hyperparameter the trials figures put on x: the first key every space has
    (optimizer.lr in every shipped suite), else the first of any."""
    spaces = list((document.get("setup") or {}).get("spaces", {}).values())
    if not spaces:
        return None
    shared = [key for key in spaces[0] if all(key in space for space in spaces)]
    return (shared or list(spaces[0]) or [None])[0]


def _trials_figure(document: dict[str, Any], problem: str) -> dict[str, Any] | None:
    """Per problem, every trial of every optimizer: its searched hyperparameter against the
    best value of the target metric it reached (what explains a rank: where each optimizer's
    good region lies and whether the search found it). Filled markers: trials that reached the
    target; open: those that did not; asterisks on the worst value shown: trials that diverged or
    failed; a large star: each pair's chosen trial."""
    key = _searched_key(document)
    if key is None:
        return None
    target = document["targets"][problem]
    metric = target["metric"]
    finite = [
        t["best"]
        for row in document["pairs"].values()
        for t in row[problem].get("trials", [])
        if t["best"] is not None and t["params"].get(key) is not None
    ]
    if not finite:
        return None
    worst = (min if target["higher_is_better"] else max)([*finite, target["value"]])
    traces = []
    for index, optimizer in enumerate(document["scores"]["steps"]):
        pair = document["pairs"][optimizer][problem]
        trials = [t for t in pair.get("trials", []) if t["params"].get(key) is not None]
        if not trials:
            continue
        style = _style(index)
        symbol = style["marker"]["symbol"]
        hover = (
            f"<b>{optimizer}</b> study %{{customdata[0]}}<br>{key} %{{x:.4g}}<br>"
            f"best {metric} %{{y:.5~g}}<br>%{{customdata[1]}}<extra></extra>"
        )

        def reach_text(trial: dict[str, Any]) -> str:
            if trial["best"] is None:
                return f"{trial['status'] or 'no evaluation'}: nothing finite"
            steps = trial["steps_to_target"]
            return "target not reached" if steps is None else f"target at step {steps}"

        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "x": [t["params"][key] for t in trials],
                "y": [worst if t["best"] is None else t["best"] for t in trials],
                "marker": {
                    "color": style["marker"]["color"],
                    "size": 9,
                    "symbol": [
                        DIVERGED_SYMBOL
                        if t["best"] is None
                        else symbol
                        if t["steps_to_target"] is not None
                        else f"{symbol}-open"
                        for t in trials
                    ],
                },
                "customdata": [[t["study"], reach_text(t)] for t in trials],
                "hovertemplate": hover,
                "name": optimizer,
                "legendgroup": f"optimizer-{index}",
            }
        )
        chosen = (pair.get("hyperparameters") or {}).get(key)
        if chosen is not None:
            value = next((t["best"] for t in trials if t["params"][key] == chosen), None)
            traces.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "x": [chosen],
                    "y": [worst if value is None else value],
                    "marker": {
                        "symbol": "star",
                        "size": 16,
                        "color": style["marker"]["color"],
                        "line": {"width": 1, "color": "#000"},
                    },
                    "name": f"{optimizer}: chosen",
                    "legendgroup": f"optimizer-{index}",
                    "showlegend": False,
                    "hovertemplate": f"<b>{optimizer}</b> chosen: {key} %{{x:.4g}}<extra></extra>",
                }
            )
    if not traces:
        return None
    space = (document["setup"]["spaces"].get(next(iter(document["pairs"])), {}) or {}).get(key)
    log_x = isinstance(space, dict) and "log_uniform" in space
    log_y = _log_scale(metric, [*finite, target["value"]])
    title = TITLES.get(metric, metric)
    layout = {
        "xaxis": {"title": {"text": key}, "type": "log" if log_x else "linear"},
        "yaxis": {
            "title": {"text": f"best {title}" + (" (log scale)" if log_y else "")},
            "type": "log" if log_y else "linear",
        },
        "shapes": [_target_line(target["value"])],
        "hovermode": "closest",
        "height": 420,
        "margin": {"t": 40, "r": 10},
    }
    heading = (
        f"{problem}: every trial's {key} against the best {title} it reached (filled: reached "
        "the target, open: did not, asterisk: diverged or failed, drawn at the worst value; star: "
        "the pair's chosen trial; grey dashes: the target)"
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
                figure
                for index, problem in enumerate(document["targets"])
                for figure in (
                    (f"fig-problem-{index}", _problem_figure(document, results, problem)),
                    (f"fig-trials-{index}", _trials_figure(document, problem)),
                )
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
