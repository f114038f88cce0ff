"""A benchmark.json's tables as plain frames, written once and rendered four ways: the terminal
(reports.benchmark_tables), the report's HTML tables, and `--table latex|markdown|csv` for a
paper.

- scores: each optimizer's score on both clocks with its bootstrap interval, best first;
- time to target: per problem and optimizer, the time on both clocks, how many studies (or
  seeds) reached the target, the chosen hyperparameters (a key at its space's edge marked
  `(edge)`) and the final metric; a pair that never reached the target says so, and one
  without a completed trial says that;
- the ratio matrix: each pair's time over the fastest's on its problem (steps clock);
- leave one problem out: each optimizer's rank (steps clock) on all problems and with each
  problem left out, so a reader sees whether one problem decides the ranking.

`setup_text` states how the benchmark ran (protocol, budget, spaces, settings, targets, device
and versions), printed above the tables.
"""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd

from optbench.analysis.benchmark import EDGE_FRACTION, EDGE_NOTE

EDGE_MARK = "(edge)"
CLOCKS = ("steps", "seconds")


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def reached(time: dict[str, Any]) -> tuple[int, int, str]:
    """(reached, out of, unit) of a time_to_target entry: studies, or seeds (older files)."""
    for unit in ("studies", "seeds"):
        if f"{unit}_reached" in time:
            return int(time[f"{unit}_reached"]), int(time[unit]), unit
    return 0, 0, "seeds"


def ranked(document: dict[str, Any]) -> list[str]:
    """The optimizers, best steps score first (the suite's order among equal scores)."""
    steps = document["scores"]["steps"]
    return sorted(steps, key=lambda o: -steps[o])


def hyperparameters(pair: dict[str, Any]) -> str:
    """`lr=0.01, weight_decay=0.1 (edge)`: the chosen values, a value at its space's edge
    marked; `-` when nothing was chosen (no completed trial)."""
    params = pair.get("hyperparameters")
    if params is None:
        return "-"
    edges = set(pair.get("at_edge") or [])
    return ", ".join(
        f"{k.removeprefix('optimizer.')}={_fmt(v)}" + (f" {EDGE_MARK}" if k in edges else "")
        for k, v in params.items()
    )


def target_text(target: dict[str, Any]) -> str:
    sign = ">=" if target["higher_is_better"] else "<="
    return f"{target['metric']} {sign} {target['value']:g}"


def score_frame(document: dict[str, Any]) -> pd.DataFrame:
    """One row per optimizer, best first: its score and interval on each clock."""
    rows = []
    for rank, optimizer in enumerate(ranked(document), start=1):
        row: dict[str, Any] = {"rank": rank, "optimizer": optimizer}
        for clock in CLOCKS:
            low, high = document["intervals"][clock][optimizer]
            row[f"score ({clock})"] = f"{document['scores'][clock][optimizer]:.3f}"
            row[f"interval ({clock})"] = f"[{low:.2f}, {high:.2f}]"
        rows.append(row)
    return pd.DataFrame(rows)


def _time_cell(value: float | None, clock: str) -> str:
    if value is None:
        return "not reached"
    return str(int(value)) if clock == "steps" else f"{value:.2f}"


def time_frame(document: dict[str, Any]) -> pd.DataFrame:
    """One row per problem and optimizer: times, studies (or seeds) reached, the chosen
    hyperparameters, the final metric, and a note (edge of the space, not reached, failed)."""
    rows = []
    for problem, target in document["targets"].items():
        for optimizer in ranked(document):
            time = document["time_to_target"][optimizer][problem]
            pair = document["pairs"][optimizer][problem]
            count, total, unit = reached(time)
            final = pair["final"]
            spread = "" if final["std"] is None else f" ± {final['std']:.2g}"
            notes = []
            if pair.get("hyperparameters") is None:
                notes.append("no completed trial (failed or diverged)")
            elif time["steps"] is None:
                notes.append("not reached")
            if pair.get("at_edge"):
                notes.append(document.get("edge", {}).get("note", EDGE_NOTE))
            rows.append(
                {
                    "problem": problem,
                    "target": target_text(target),
                    "optimizer": optimizer,
                    "steps": _time_cell(time["steps"], "steps"),
                    "seconds": _time_cell(time["seconds"], "seconds"),
                    "reached": f"{count}/{total} {unit}",
                    "hyperparameters": hyperparameters(pair),
                    "final": "-" if final["mean"] is None else f"{final['mean']:.4g}{spread}",
                    "note": "; ".join(notes),
                }
            )
    return pd.DataFrame(rows)


def _scores_without(
    ratios: dict[str, dict[str, float | None]], r_max: float, left: str | None
) -> dict[str, float]:
    """Each optimizer's score over the problems other than `left` (profiles' exact formula)."""
    scores = {}
    for optimizer, row in ratios.items():
        kept = [r for p, r in row.items() if p != left]
        terms = [max(0.0, r_max - (math.inf if r is None else r)) / (r_max - 1) for r in kept]
        scores[optimizer] = sum(terms) / len(terms) if terms else 0.0
    return scores


def _ranks(scores: dict[str, float]) -> dict[str, int]:
    """1 for the highest score; equal scores share the better rank."""
    return {o: 1 + sum(other > s for other in scores.values()) for o, s in scores.items()}


def leave_one_out_frame(document: dict[str, Any], clock: str = "steps") -> pd.DataFrame:
    """Each optimizer's rank on all problems, then with each problem left out in turn (ratios
    stay those of the problems kept: a ratio is the fastest time of its own problem)."""
    ratios, r_max = document["ratios"][clock], document["r_max"]
    problems = list(document["targets"])
    columns = {"all": _ranks(_scores_without(ratios, r_max, None))}
    if len(problems) > 1:
        for problem in problems:
            columns[f"without {problem}"] = _ranks(_scores_without(ratios, r_max, problem))
    rows = [
        {"optimizer": o, **{name: ranks[o] for name, ranks in columns.items()}}
        for o in ranked(document)
    ]
    return pd.DataFrame(rows)


def ratio_frame(document: dict[str, Any], clock: str = "steps") -> pd.DataFrame:
    """The ratio matrix: each optimizer's time over the fastest's, per problem ("-": not
    reached), best score first."""
    ratios = document["ratios"][clock]
    rows = [
        {
            "optimizer": o,
            **{p: "-" if r is None else f"{r:.2f}" for p, r in ratios[o].items()},
        }
        for o in ranked(document)
    ]
    return pd.DataFrame(rows)


def _space_text(space: dict[str, Any]) -> str:
    parts = []
    for key, dist in space.items():
        ((kind, bounds),) = dist.items()
        parts.append(f"{key.removeprefix('optimizer.')} {kind} {bounds}")
    return ", ".join(parts)


def setup_text(document: dict[str, Any]) -> str:
    """One paragraph stating how the benchmark ran: protocol, budget, spaces, the suite's
    settings, targets, device, hardware, versions and the seconds clock's definition (what an
    appendix must say)."""
    setup = document.get("setup")
    if not setup:
        return ""
    budget = setup["budget"]
    if "studies" in budget:
        how = f"external tuning: {budget['studies']} studies x {budget['trials']} trials per pair"
    else:
        seeds = ", ".join(map(str, budget["seeds"]))
        how = f"the best of {budget['trials']} trials by final metric, rerun with seeds {seeds}"
    spaces: dict[str, list[str]] = {}
    for optimizer, space in setup["spaces"].items():
        spaces.setdefault(_space_text(space), []).append(optimizer)
    searched = "; ".join(f"{', '.join(names)}: {text}" for text, names in spaces.items())
    settings = ", ".join(f"{k} {v}" for k, v in setup["set"].items()) or "the problems' own"
    targets = ", ".join(f"{p} {target_text(t)}" for p, t in document["targets"].items())
    versions = ", ".join(f"{k} {v}" for k, v in (setup.get("versions") or {}).items())
    machine = f" Device {setup['device']}; {versions}." if setup.get("device") else ""
    if setup.get("hardware"):
        found = setup["hardware"]
        gpu = f", GPU {found['gpu']}" if found.get("gpu") else ""
        machine += f" Hardware: {found.get('cpu')} ({found.get('cpus')} usable cores){gpu}."
    pruner = "no pruning" if budget["pruner"] == "none" else f"{budget['pruner']} pruner"
    clock = document.get("clock")
    seconds = f" Seconds: {clock['seconds']}." if clock else ""
    return (
        f"Protocol: {how} ({budget['sampler']} sampler, {pruner}). "
        f"Searched: {searched}. Settings: {settings}. Targets: {targets}.{machine}{seconds}"
    )


def benchmark_frames(document: dict[str, Any]) -> list[tuple[str, pd.DataFrame]]:
    """(title, frame) of each table: scores, time to target, the ratio matrix, leave one
    problem out."""
    unit = document.get("unit", "seeds")
    protocol = document.get("protocol", "best_final_reruns")
    return [
        (
            f"AlgoPerf score, {document['suite']} ({protocol}; 1 = fastest on every problem, "
            f"r_max {document['r_max']:g}; {document['bootstrap']['confidence']:.0%} bootstrap "
            f"intervals over {unit})",
            score_frame(document),
        ),
        (
            f"time to target (median over {unit}); {EDGE_MARK}: {_edge_note(document)}",
            time_frame(document),
        ),
        (
            "ratio to the fastest per problem (steps; - : not reached)",
            ratio_frame(document),
        ),
        ("rank (steps score) with each problem left out", leave_one_out_frame(document)),
    ]


def _edge_note(document: dict[str, Any]) -> str:
    edge = document.get("edge", {"fraction": EDGE_FRACTION, "note": EDGE_NOTE})
    return f"{edge['note']} (within {edge['fraction']:.0%} of an end of its range)"


# --------------------------------------------------------------------------- renderers


def _latex_escape(text: str) -> str:
    for old, new in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("$", r"\$"),
        ("#", r"\#"),
        ("_", r"\_"),
        ("{", r"\{"),
        ("}", r"\}"),
        ("~", r"\textasciitilde{}"),
        ("^", r"\textasciicircum{}"),
        ("±", r"$\pm$"),
        (">=", r"$\geq$"),
        ("<=", r"$\leq$"),
    ):
        text = text.replace(old, new)
    return text


def latex(frame: pd.DataFrame, caption: str | None = None) -> str:
    """A frame as a LaTeX table (booktabs rules; every cell escaped), no dependency."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if value != value else f"{value:.4g}"
        return _latex_escape(str(value))

    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\begin{tabular}{" + "l" * len(frame.columns) + "}",
        r"\toprule",
        " & ".join(cell(c) for c in frame.columns) + r" \\",
        r"\midrule",
        *(" & ".join(cell(v) for v in row) + r" \\" for row in frame.itertuples(index=False)),
        r"\bottomrule",
        r"\end{tabular}",
    ]
    if caption:
        lines.append(r"\caption{" + _latex_escape(caption) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines)


def html_table(frame: pd.DataFrame, caption: str | None = None) -> str:
    """A frame as an HTML table, every cell escaped."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    title = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


TABLE_FORMATS = ("latex", "markdown", "csv")


def render_tables(document: dict[str, Any], fmt: str) -> str:
    """Every table of the benchmark in `fmt` (latex, markdown or csv), one after another."""
    from optbench.analysis.reports import markdown

    setup = setup_text(document)
    parts = []
    if setup:  # how it ran, above the tables: a comment in LaTeX and CSV, a paragraph else
        parts.append({"latex": "% ", "csv": "# "}.get(fmt, "") + setup)
    for title, frame in benchmark_frames(document):
        if fmt == "latex":
            parts.append(latex(frame, title))
        elif fmt == "markdown":
            parts.append(f"**{title}**\n\n{markdown(frame)}")
        elif fmt == "csv":
            parts.append(f"# {title}\n{frame.to_csv(index=False)}".rstrip("\n"))
        else:
            raise ValueError(f"table format {fmt!r}: one of {', '.join(TABLE_FORMATS)}")
    return "\n\n".join(parts) + "\n"
