"""`optbench report`: a comparison as one self-contained HTML file that works offline.

The page holds the ranking of `optbench compare` (seeds aggregated, the hyperparameters that
differ), the published figures of the runs' problem apart from it, one interactive Plotly
figure per epochs.csv metric with every configuration in it (the mean over seeds as a line,
the seed spread from `seed_bands` as a band around it), the optimizer paths over the
function's contours for runs of one 2-D problem (`two_d_paths`), DeepOBS's tuneability plot
when an optimizer was tried at several learning rates (`tuneability_frame`), and each
configuration's resolved config.yaml. The page's shell (plotly.js inlined once, every figure
as compact JSON drawn by one script, no request allowed) is html_page.py's; a benchmark's
folder gets benchmark_report.py's page instead.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from optbench.analysis.benchmark_report import render_benchmark
from optbench.analysis.compare import (
    Comparison,
    compare_runs,
    label,
    seed_bands,
    show_hyperparameter,
    two_d_paths,
)
from optbench.analysis.figures import check_writable
from optbench.analysis.html_page import (
    colour,
    generated_by,
    page,
    placed,
    plotly_module,
    rgba,
    switch,
)
from optbench.analysis.reports import mean_std, rank_columns
from optbench.core.metrics import (
    CURVE_COLUMNS,
    EPOCH_COLUMNS,
    HIGHER_IS_BETTER,
    TITLES,
    format_cell,
)
from optbench.storage.results import BENCHMARK_FILE, RunDir, write_atomic

# Above this many configurations the figures draw no legend (hundreds of entries take seconds
# to lay out, in every figure); the ranking's checkboxes hide and show configurations instead.
LEGEND_LIMIT = 40
MAX_PATH_POINTS = 2000  # per seed's 2-D path; longer paths are thinned evenly (ends kept)


@dataclass(frozen=True)
class ReportSummary:
    """What was written: the file, its size, and what it shows (the browser test checks the
    page against `figures`)."""

    path: Path
    size: int
    runs: int
    configurations: int
    figures: list[str]  # the figure ids, in page order


def check_output_path(path: Path) -> None:
    """Refuse an output that cannot be written (and a missing plotly) before reading any run."""
    check_writable(path, "--output", "report.html")
    plotly_module()


def benchmark_files(paths: list[Path]) -> list[Path]:
    """The benchmark.json files in `paths` or in folders under them (`optbench benchmark`)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(path.rglob(BENCHMARK_FILE)))
    return found


def write_report(
    paths: list[Path], output: Path, metric: str | None = None, target: str | None = None
) -> ReportSummary:
    """`optbench report`: compare the runs under `paths` and write the page to `output`; when
    they hold a benchmark's benchmark.json, the page shows the benchmark instead (its results
    folder is the one above the benchmark.json's folder)."""
    check_output_path(output)
    benchmarks = benchmark_files(paths)
    if benchmarks:
        document = json.loads(benchmarks[0].read_text())
        text, figures = render_benchmark(document, benchmarks[0].parent.parent)
        write_atomic(output, text)
        pairs = sum(len(row) for row in document["pairs"].values())
        runs = sum(
            len(p.get("curve_runs", p.get("seed_run_ids", [])))
            for row in document["pairs"].values()
            for p in row.values()
        )
        return ReportSummary(output, len(text.encode()), runs, pairs, figures)
    comparison = compare_runs(paths, metric, target)
    text, figures = render(comparison, [str(p) for p in paths])
    # Written whole or not at all (an earlier page stays); a full disk is no bad input: exit 3.
    write_atomic(output, text)
    return ReportSummary(
        output, len(text.encode()), len(comparison.frame), len(comparison.table), figures
    )


# --------------------------------------------------------------------------- the figures


@dataclass(frozen=True)
class _Configuration:
    key: str  # the legend group every trace of this configuration shares (c0, c1, ...)
    name: str  # "#rank label", shown in legends and the table
    colour: str
    row: pd.Series  # its row of the ranking
    run_dirs: list[str]


def _configurations(comparison: Comparison) -> list[_Configuration]:
    table, frame = comparison.table, comparison.frame
    hyper = table.attrs["hyperparameters"]
    found = []
    for index, (_, row) in enumerate(table.iterrows()):
        dirs = frame.loc[frame["configuration"] == row["configuration"], "run_dir"].tolist()
        found.append(
            _Configuration(
                f"c{index}",
                f"#{index + 1} {label(row, hyper)}",
                colour(index),
                row,
                dirs,
            )
        )
    return found


def curve_metrics(comparison: Comparison) -> list[str]:
    """The epochs.csv columns drawn as curves: epochs.csv's own order, then any other column,
    skipping wall times and columns no run filled in (accuracy of a regression run)."""
    present: dict[str, bool] = {}
    for run in comparison.runs:
        for column in run.epochs.columns:
            if column in EPOCH_COLUMNS and column not in CURVE_COLUMNS:
                continue  # the epoch, wall times: not how training went
            values = pd.to_numeric(run.epochs[column], errors="coerce")
            present[column] = present.get(column, False) or bool(values.notna().any())
    known = [c for c in CURVE_COLUMNS if present.get(c)]
    return known + sorted(c for c, has in present.items() if has and c not in EPOCH_COLUMNS)


def _bands(comparison: Comparison, metric: str) -> list[pd.DataFrame | None]:
    """seed_bands for every configuration, in ranking order (None where it has no curve).

    seed_bands keys its result by label; when two configurations share one, each is asked
    for alone so neither hides the other."""
    table, frame, runs = comparison.table, comparison.frame, comparison.runs
    hyper = table.attrs["hyperparameters"]
    labels = [label(row, hyper) for _, row in table.iterrows()]
    if len(set(labels)) == len(labels):
        bands = seed_bands(frame, table, runs, metric, len(table))
        return [bands.get(name) for name in labels]
    found = []
    for index, name in enumerate(labels):
        one = table.iloc[[index]]
        one.attrs = table.attrs
        found.append(seed_bands(frame, one, runs, metric, 1).get(name))
    return found


def _curve_figure(
    comparison: Comparison, configurations: list[_Configuration], metric: str
) -> dict[str, Any] | None:
    """Every configuration's mean curve of `metric`, with its min-max band over seeds."""
    title = TITLES.get(metric, metric)
    traces: list[dict[str, Any]] = []
    bands = _bands(comparison, metric)
    # Markers show where the epochs are; with many curves they are thousands of SVG nodes.
    markers = len(configurations) <= 20 and all(b is None or len(b) <= 30 for b in bands)
    for config, band in zip(configurations, bands, strict=True):
        if band is None:
            continue
        if any(dtype.kind == "O" for dtype in band.dtypes):  # text in the column: numbers only
            band = band.apply(pd.to_numeric, errors="coerce")
        values = band[["min", "mean", "max"]].to_numpy(np.float32)
        keep = ~np.isnan(values[:, 1])
        if not keep.any():
            continue
        epochs = band.index.to_numpy()[keep]
        epochs = epochs.astype(np.int32) if np.issubdtype(epochs.dtype, np.integer) else epochs
        low, mean, high = values[keep].T
        spread = bool((high > low).any())  # one seed, or seeds that agree: no band to draw
        if spread:
            traces.append(
                {
                    "type": "scatter",
                    "x": _typed(np.concatenate([epochs, epochs[::-1]])),
                    "y": _typed(np.concatenate([high, low[::-1]])),
                    "fill": "toself",
                    "fillcolor": rgba(config.colour, 0.18),
                    "line": {"width": 0},
                    "mode": "lines",
                    "hoverinfo": "skip",
                    "showlegend": False,
                    "legendgroup": config.key,
                    "name": config.name,
                }
            )
        hover = f"<b>%{{fullData.name}}</b><br>epoch %{{x}}<br>{title} %{{y:.5~g}}"
        line = {
            "type": "scatter",
            "x": _typed(epochs),
            "y": _typed(mean),
            "mode": "lines+markers" if markers else "lines",
            "marker": {"size": 4},
            "line": {"color": config.colour, "width": 2},
            "name": config.name,
            "legendgroup": config.key,
            "hovertemplate": hover + "<extra></extra>",
        }
        if spread:
            line["customdata"] = _typed(np.stack([low, high], axis=1))
            line["hovertemplate"] = (
                hover + " (mean)<br>seeds: min %{customdata[0]:.5~g}, "
                "max %{customdata[1]:.5~g}<extra></extra>"
            )
        traces.append(line)
    if not traces:
        return None
    last = max(float(np.max(band.index)) for band in bands if band is not None)
    layout = {
        "xaxis": {"title": {"text": "epoch"}, "dtick": max(1, int(np.ceil(last / 12)))},
        "yaxis": {"title": {"text": title}, "type": "linear"},
        "hovermode": "closest",
        "height": 440,
        "margin": {"t": 40, "r": 10},
        "legend": {"itemclick": "toggle", "font": {"size": 11}},
    }
    if metric not in HIGHER_IS_BETTER:  # losses, distances and lrs often span decades
        layout["updatemenus"] = [_log_switch()]
    heading = f"{title} by epoch (mean over seeds; band: min to max over seeds)"
    return {"heading": heading, "data": traces, "layout": layout}


def _typed(array: np.ndarray) -> dict[str, Any]:
    """A numpy array as plotly.js's typed-array JSON (dtype, base64 bytes, shape): a quarter
    of the size of decimal text, and read without parsing numbers."""
    array = np.ascontiguousarray(array)
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.int32)
    code = {np.dtype(np.float32): "f4", np.dtype(np.int32): "i4"}[array.dtype]
    spec = {"dtype": code, "bdata": base64.b64encode(array.astype(f"<{code}").tobytes()).decode()}
    if array.ndim > 1:
        spec["shape"] = ",".join(map(str, array.shape))
    return spec


def _log_switch() -> dict[str, Any]:
    return switch(
        [
            {"label": "linear", "method": "relayout", "args": [{"yaxis.type": "linear"}]},
            {"label": "log", "method": "relayout", "args": [{"yaxis.type": "log"}]},
        ]
    )


def _thin(path: pd.DataFrame) -> pd.DataFrame:
    if len(path) <= MAX_PATH_POINTS:
        return path
    keep = np.unique(np.linspace(0, len(path) - 1, MAX_PATH_POINTS).round().astype(int))
    return path.iloc[keep]


def _paths_figure(
    comparison: Comparison, configurations: list[_Configuration]
) -> dict[str, Any] | None:
    """Runs of one 2-D test function: every seed's path over the function's contour lines,
    one colour per configuration, with DeepOBS's start and the known minima marked."""
    found = two_d_paths(comparison.frame, comparison.table, comparison.runs)
    if found is None:
        return None
    from optbench.components.twod import FUNCTIONS

    function_name, by_label = found
    function = FUNCTIONS[function_name]
    (u_low, u_high), (v_low, v_high) = function.view
    u, v = np.linspace(u_low, u_high, 150), np.linspace(v_low, v_high, 150)
    values = function.value(*np.meshgrid(u, v), np.cos)
    lowest = values.min()
    top = float(np.log10(values.max() - lowest))
    traces: list[dict[str, Any]] = [
        {
            "type": "contour",
            "x": _typed(u),
            "y": _typed(v),
            "z": _typed(np.log10(values - lowest + 1e-2)),
            "contours": {"coloring": "lines", "start": -2, "end": top, "size": (top + 2) / 24},
            "line": {"width": 0.7},
            "colorscale": [[0, "#bbbbbb"], [1, "#bbbbbb"]],
            "showscale": False,
            "hoverinfo": "skip",
            "name": "contours",
        }
    ]
    hyper = comparison.table.attrs["hyperparameters"]
    thinned = False
    for config in configurations:
        seeds = by_label.get(label(config.row, hyper), [])
        for seed, path in enumerate(seeds):
            shown = _thin(path)
            thinned = thinned or len(shown) < len(path)
            traces.append(
                {
                    "type": "scatter",
                    "x": _typed(shown["u"].to_numpy(np.float32)),
                    "y": _typed(shown["v"].to_numpy(np.float32)),
                    "customdata": _typed(shown["step"].to_numpy(np.int32)),
                    "mode": "lines",
                    "line": {"color": config.colour, "width": 1.3},
                    "opacity": 0.85,
                    "name": config.name,
                    "legendgroup": config.key,
                    "showlegend": seed == 0,
                    "hovertemplate": "<b>%{fullData.name}</b><br>step %{customdata}"
                    "<br>u %{x:.4f}, v %{y:.4f}<extra></extra>",
                }
            )
    minima = np.array(function.minima)
    traces += [
        {
            "type": "scatter",
            "x": [function.start[0]],
            "y": [function.start[1]],
            "mode": "markers",
            "marker": {"color": "black", "size": 10},
            "name": "start",
        },
        {
            "type": "scatter",
            "x": minima[:, 0].tolist(),
            "y": minima[:, 1].tolist(),
            "mode": "markers",
            "marker": {"color": "red", "size": 16, "symbol": "star"},
            "name": "minimum",
        },
    ]
    note = f" (every path thinned to {MAX_PATH_POINTS} points)" if thinned else ""
    layout = {
        "xaxis": {"title": {"text": "u"}, "range": [u_low, u_high]},
        "yaxis": {"title": {"text": "v"}, "range": [v_low, v_high]},
        "hovermode": "closest",
        "height": 600,
        "margin": {"t": 30, "r": 10},
    }
    heading = f"{function_name}: optimizer paths from DeepOBS's start, with its noise{note}"
    return {"heading": heading, "data": traces, "layout": layout}


def _tuneability_figure(
    comparison: Comparison, configurations: list[_Configuration]
) -> dict[str, Any] | None:
    """DeepOBS's tuneability (compare.tuneability_frame): each optimizer's configurations'
    final performance (mean over seeds, std as error bars) against the learning rate, the lr
    its result is given at starred. Drawn when an optimizer was tried at two learning rates or
    more, or a tune.json came with the runs; one point per optimizer says nothing about lr."""
    from optbench.analysis.compare import tuneability_frame

    frame = tuneability_frame(comparison, comparison.tune)
    shown = frame[frame["lr"].notna() & frame["final_mean"].notna()]
    tried = shown.groupby("optimizer")["lr"].nunique()
    if shown.empty or (comparison.tune is None and not (tried > 1).any()):
        return None
    names = {c.row["configuration"]: c.name for c in configurations}
    performance = frame.attrs["performance"]
    hover = (
        "<b>%{customdata[0]}</b><br>lr %{x:.4g}<br>"
        f"final {performance} %{{y:.5~g}} ± %{{customdata[1]:.3~g}}"
        "<br>%{customdata[2]} runs<extra></extra>"
    )

    def points(rows: pd.DataFrame) -> dict[str, Any]:
        std = rows["final_std"].fillna(0.0)
        return {
            "x": rows["lr"].tolist(),
            "y": rows["final_mean"].tolist(),
            "customdata": [
                [names.get(key, key), s, int(n)]
                for key, s, n in zip(rows["configuration"], std, rows["n"], strict=True)
            ],
            "hovertemplate": hover,
        }

    traces = []
    for index, (optimizer, rows) in enumerate(shown.groupby("optimizer", sort=False)):
        rows = rows.sort_values("lr")
        shade = colour(index)
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers" if rows["lr"].is_unique else "markers",
                "name": str(optimizer),
                "legendgroup": f"optimizer-{index}",
                "line": {"color": shade},
                "marker": {"size": 8},
                "error_y": {"type": "data", "array": rows["final_std"].fillna(0.0).tolist()},
                **points(rows),
            }
        )
    chosen = shown[shown["chosen"]]
    traces.append(
        {
            "type": "scatter",
            "mode": "markers",
            "name": "chosen lr",
            "marker": {"symbol": "star", "size": 16, "color": "red"},
            **points(chosen),
        }
    )
    source = "tune.json's best trial" if comparison.tune is not None else "its best-ranked lr"
    heading = (
        f"Tuneability: final {performance} against the learning rate, per optimizer "
        f"(DeepOBS); starred: the lr each optimizer's result is given at ({source})"
    )
    layout = {
        "xaxis": {"title": {"text": "learning rate"}, "type": "log"},
        "yaxis": {"title": {"text": f"final {performance} (mean ± std over seeds)"}},
        "hovermode": "closest",
        "height": 460,
        "margin": {"t": 30, "r": 10},
        "showlegend": True,  # its entries are optimizers, a handful
    }
    return {"heading": heading, "data": traces, "layout": layout}


# --------------------------------------------------------------------------- the page


def _ranking_html(comparison: Comparison, configurations: list[_Configuration]) -> str:
    table, target = comparison.table, comparison.target
    hyper = table.attrs["hyperparameters"]
    ranked_by = table.attrs["metric"]
    columns = rank_columns(table)
    head = ["#", "show"] + [h.split(".")[-1] if len(hyper) < 6 else h for h in hyper] + ["n"]
    head += [name for _, name, _ in columns]
    if target:
        head += [f"epochs to {target[0]}={target[1]:g}", "seconds to it"]
    head += ["status", "config"]
    ranked_index = next(
        (2 + len(hyper) + 1 + i for i, (m, _, _) in enumerate(columns) if m == ranked_by), None
    )
    cells = "".join(
        f"<th{' class=ranked' if i == ranked_index else ''}>{html.escape(h)}</th>"
        for i, h in enumerate(head)
    )
    lines = [f"<table class=ranking><thead><tr>{cells}</tr></thead><tbody>"]
    for index, config in enumerate(configurations):
        row = config.row
        values = [
            str(index + 1),
            f'<label><input type=checkbox checked data-group="{config.key}" '
            f'title="show or hide in every figure"><span class=swatch '
            f'style="background:{config.colour}"></span></label>',
        ]
        values += [html.escape(show_hyperparameter(row[h])) for h in hyper] + [str(row["n"])]
        values += [mean_std(row, metric, fmt) for metric, _, fmt in columns]
        if target:
            reached = f" ({row['reached_target']}/{row['n']})"
            values.append(mean_std(row, "epochs_to_target", "{:.1f}") + reached)
            values.append(mean_std(row, "seconds_to_target", "{:.1f}"))
        values.append(html.escape(format_cell(row["status"], "{}")))
        values.append(f'<a href="#config-{config.key}">config</a>')
        lines.append(
            f'<tr data-group="{config.key}">'
            + "".join(
                f"<td{' class=ranked' if i == ranked_index else ''}>{v}</td>"
                for i, v in enumerate(values)
            )
            + "</tr>"
        )
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _references_html(comparison: Comparison) -> str:
    """The published figures of the runs' problems (DeepOBS's baselines and targets), marked
    as such; empty when they have none."""
    from optbench.analysis.compare import problems_of
    from optbench.components.catalog import REFERENCE_COLUMNS, reference_rows

    names = problems_of(comparison.runs)
    rows = reference_rows(names) if names else []
    if not rows:
        return ""
    head = "".join(f"<th>{column}</th>" for column in REFERENCE_COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return (
        "<h2>Published figures (not runs)</h2><div class=tablewrap><table id=references>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def _configs_html(comparison: Comparison, configurations: list[_Configuration]) -> str:
    """Each configuration's resolved config.yaml (its first seed's; seeds differ only in
    `seed`), folded until asked for."""
    by_dir = {str(run.dir): run for run in comparison.runs}
    parts = []
    for config in configurations:
        seeds = [by_dir[d].record.seed for d in config.run_dirs]
        config_file = RunDir(Path(config.run_dirs[0])).config_path
        try:
            text = config_file.read_text(encoding="utf-8")
        except OSError:
            text = "(no config.yaml)"
        runs = "".join(f"<li>{html.escape(d)}</li>" for d in config.run_dirs)
        parts.append(
            f'<details id="config-{config.key}"><summary>'
            f'<span class=swatch style="background:{config.colour}"></span>'
            f"{html.escape(config.name)} <small>({len(config.run_dirs)} runs, seeds "
            f"{html.escape(', '.join(map(str, seeds)))})</small></summary>"
            f"<p>config.yaml of {html.escape(config.run_dirs[0])} (the other seeds differ "
            f"only in <code>seed</code>); runs:</p><ul>{runs}</ul>"
            f"<pre>{html.escape(text)}</pre></details>"
        )
    return "\n".join(parts)


_HOW_LEGENDS = (
    "Click a legend entry (or a ranking checkbox) to hide a configuration in every figure, "
    "double-click it to show only that one."
)
_HOW_MANY = (
    "With more than {limit} configurations the figures have no legend: the ranking's checkboxes "
    "hide and show configurations in every figure."
)


def render(comparison: Comparison, sources: list[str]) -> tuple[str, list[str]]:
    """The page for `comparison` and the ids of its figures, in page order."""
    configurations = _configurations(comparison)
    figures, divs = placed(
        [
            ("fig-paths", _paths_figure(comparison, configurations)),
            *(
                (f"fig-{metric}", _curve_figure(comparison, configurations, metric))
                for metric in curve_metrics(comparison)
            ),
            ("fig-tuneability", _tuneability_figure(comparison, configurations)),
        ]
    )
    legends = len(configurations) <= LEGEND_LIMIT
    for figure in figures:
        figure["layout"].setdefault("showlegend", legends)

    table = comparison.table
    runs, n_configs = len(comparison.frame), len(table)
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in comparison.notes)
    intro = f"""<p class=meta>{runs} runs in {n_configs} configurations, ranked by
<b>{html.escape(table.attrs["metric"])}</b> (mean ± std over seeds; final columns over
completed runs only). {generated_by()}
{_HOW_LEGENDS if legends else _HOW_MANY.format(limit=LEGEND_LIMIT)}
Hover for values.</p>
{f"<ul class=meta>{notes}</ul>" if notes else ""}"""
    body = f"""<h2>Ranking</h2>
<div class=tablewrap>{_ranking_html(comparison, configurations)}</div>
{_references_html(comparison)}
{"".join(divs)}
<h2>Configurations</h2>
{_configs_html(comparison, configurations)}"""
    title = f"optbench report: {', '.join(sources)}"
    return page(title, intro, body, figures), [figure["id"] for figure in figures]
