"""A benchmark's tables (analysis/benchmark_tables.py) and the edge-of-space flag
(analysis/benchmark.py), on documents scored by profiles.score_suite: the leave-one-problem-out
ranks against profiles.scores on the kept problems ranked by pandas, LaTeX escaping, and every
pair present in the time table, unreached, failed and edge ones marked."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from optbench.analysis.benchmark import at_edge, edge_keys
from optbench.analysis.benchmark_tables import (
    benchmark_frames,
    latex,
    leave_one_out_frame,
    render_tables,
    time_frame,
)
from optbench.analysis.profiles import (
    EvalPoint,
    PairCurves,
    Target,
    benchmark_json,
    score_suite,
    scores,
)
from optbench.core.config import Distribution

ACCURACY = Target("test_accuracy", 0.9)


def reaching_at(step: int) -> tuple[EvalPoint, ...]:
    return (EvalPoint(0, 0.0, 0.1), EvalPoint(step, step / 10, 0.95))


NEVER = (EvalPoint(0, 0.0, 0.1), EvalPoint(100, 10.0, 0.5))
# problem -> optimizer -> the step each of 3 seeds reaches the target at (None: never)
TIMES = {
    "p1": {"A": 100, "B": 200, "C": 150},
    "p2": {"A": 300, "B": 100, "C": None},
    "p3": {"A": 100, "B": 390, "C": 120},
}


def document() -> dict:
    pairs = [
        PairCurves(o, p, ((NEVER if t is None else reaching_at(t)),) * 3)
        for p, row in TIMES.items()
        for o, t in row.items()
    ]
    result = score_suite(pairs, dict.fromkeys(TIMES, ACCURACY), resamples=20)
    detail = {"hyperparameters": {"optimizer.lr": 0.01}, "at_edge": [], "final": {}}
    doc = {"suite": "t", "protocol": "best_final_reruns", **benchmark_json(result)}
    doc["pairs"] = {
        o: {p: {**detail, "final": {"mean": 0.9, "std": None, "n": 3}} for p in TIMES}
        for o in "ABC"
    }
    doc["pairs"]["A"]["p1"] = {**doc["pairs"]["A"]["p1"], "at_edge": ["optimizer.lr"]}
    doc["pairs"]["C"]["p2"] = {**doc["pairs"]["C"]["p2"], "hyperparameters": None}
    return doc


def test_leave_one_problem_out_ranks_are_the_scores_of_the_problems_kept() -> None:
    doc = document()
    frame = leave_one_out_frame(doc).set_index("optimizer")
    ratios = {
        o: {p: (math.inf if r is None else r) for p, r in row.items()}
        for o, row in doc["ratios"]["steps"].items()
    }
    for left in [None, *TIMES]:
        kept = {o: {p: r for p, r in row.items() if p != left} for o, row in ratios.items()}
        expected = pd.Series(scores(kept)).rank(method="min", ascending=False).astype(int)
        column = "all" if left is None else f"without {left}"
        assert frame[column].to_dict() == expected.to_dict()
    assert frame["all"].to_dict() != frame["without p3"].to_dict()  # p3 decides A vs B


def test_every_pair_is_in_the_time_table_with_its_marks() -> None:
    frame = time_frame(document())
    assert len(frame) == 9
    row = frame[(frame.problem == "p2") & (frame.optimizer == "C")].iloc[0]
    assert row.steps == "not reached" and "no completed trial" in row.note
    edge = frame[(frame.problem == "p1") & (frame.optimizer == "A")].iloc[0]
    assert edge.hyperparameters == "lr=0.01 (edge)" and "widen" in edge.note
    assert edge.steps == "100" and edge.reached == "3/3 seeds"


def test_latex_escapes_every_cell_and_each_format_renders_every_table() -> None:
    text = latex(pd.DataFrame({"a_b": ["50% & $x$ >= 1 ± 2"]}), caption="r_max")
    assert r"a\_b" in text and r"50\% \& \$x\$ $\geq$ 1 $\pm$ 2" in text
    assert r"\caption{r\_max}" in text and text.count(r"\begin{tabular}") == 1
    doc = document()
    titles = [title for title, _ in benchmark_frames(doc)]
    assert render_tables(doc, "latex").count(r"\begin{tabular}") == len(titles) == 4
    markdown = render_tables(doc, "markdown").splitlines()
    assert sum(line.startswith("|---|") for line in markdown) == 4
    csv = render_tables(doc, "csv")
    assert [line for line in csv.splitlines() if line.startswith("# ")] == [
        f"# {t}" for t in titles
    ]


@pytest.mark.parametrize(
    ("value", "dist", "edge"),
    [
        (1.5e-4, {"log_uniform": [1e-4, 1.0]}, True),  # log position 0.044
        (1.8e-4, {"log_uniform": [1e-4, 1.0]}, False),  # 0.064
        (0.5, {"log_uniform": [1e-4, 1.0]}, False),  # 0.925
        (0.9, {"log_uniform": [1e-4, 1.0]}, True),  # 0.989
        (0.04, {"uniform": [0.0, 1.0]}, False),  # 0 is a physical end: nothing beyond
        (0.97, {"uniform": [0.0, 1.0]}, True),
        (0.52, {"uniform": [0.5, 1.0]}, True),
        (0.5, {"uniform": [0.0, 1.0]}, False),
        (10, {"int_uniform": [0, 100]}, False),
        (0.1, {"choice": [0.1, 0.9]}, False),  # a choice has no edge
    ],
)
def test_a_value_in_the_outer_five_percent_of_its_range_is_at_the_edge(
    value: float, dist: dict, edge: bool
) -> None:
    position = None
    if "log_uniform" in dist:
        low, high = dist["log_uniform"]
        position = (math.log10(value) - math.log10(low)) / (math.log10(high) - math.log10(low))
        assert (position <= 0.05 or position >= 0.95) == edge
    assert at_edge(value, Distribution.model_validate(dist)) == edge
    assert edge_keys({"k": value}, {"k": dist}) == (["k"] if edge else [])
