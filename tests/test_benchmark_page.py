"""A benchmark's report page as an appendix needs it, read by plotly's own figure validator:
per problem the chosen configurations with bands over studies, the target, each time to target
and losses on a log axis; unreached and failed pairs marked in the legend; every trial's
learning rate against its metric; the setup with hardware and the clock. The document is
scored by profiles.py from curves written here (nothing trains), the runs as epochs.csv files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from optbench.analysis.profiles import EvalPoint, PairCurves, Target, benchmark_json, score_suite

pytest.importorskip("plotly", reason="optbench[report] is not installed")

SPACE = {"optimizer.lr": {"log_uniform": [1.0e-4, 1.0]}}
# (optimizer, study) -> the valid_loss of its fastest trial at steps 10, 20, 30
CURVES = {
    ("A", 0): [4.0, 0.9, 0.5],  # reaches 1.0 at step 20
    ("A", 1): [3.0, 1.5, 0.8],  # at step 30
    ("B", 0): [5.0, 2.0, 0.95],  # at step 30
    ("B", 1): [5.0, 3.0, 2.5],  # never: 1 of 2 studies, reached (the lower median)
    ("C", 0): [6.0, 5.0, 4.0],  # C reaches it in no study
    ("C", 1): [6.0, 5.5, 5.0],
}
COST = {"A": 0.002, "B": 0.003, "C": 0.001}  # each pair's step cost, seconds


def _benchmark(results: Path) -> dict[str, Any]:
    """The document `optbench benchmark` writes for one problem, from the curves above; each
    curve also written as a run's epochs.csv (measured seconds 5x the calibrated ones)."""
    pairs, details = [], {}
    for optimizer in "ABC":
        curves, runs = [], []
        for study in (0, 1):
            values = CURVES[(optimizer, study)]
            run = results / f"p.{optimizer}.study{study}" / "run0"
            run.mkdir(parents=True)
            frame = pd.DataFrame(
                {
                    "epoch": [1, 2, 3],
                    "step": [10, 20, 30],
                    "seconds": [0.1] * 3,
                    "valid_loss": values,
                }
            )
            frame.to_csv(run / "epochs.csv", index=False)
            curves.append(
                tuple(
                    EvalPoint(10 * (i + 1), 10 * (i + 1) * COST[optimizer], v)
                    for i, v in enumerate(values)
                )
            )
            runs.append([run.parent.name, run.name])
        pairs.append(PairCurves(optimizer, "p", tuple(curves), (0, 1)))
        failed = optimizer == "C"
        trials = [  # two per study: the one drawn above and a worse, slower one
            {
                "study": s,
                "run_id": f"t{s}{k}",
                "status": "completed",
                "params": {"optimizer.lr": lr},
                "best": best,
                "steps_to_target": steps,
            }
            for s, k, lr, best, steps in (
                (0, 0, 0.01, 0.5, 20),
                (0, 1, 0.3, 1.4, None),
                (1, 0, 0.02, 0.8, 30),
                (1, 1, 1e-4, 3.0, None),
            )
        ]
        if optimizer == "B":  # one trial diverged: nothing finite to draw
            trials[1] = {**trials[1], "status": "diverged", "best": None}
        details[optimizer] = {
            "p": {
                "folders": [f"p.{optimizer}.study{s}" for s in (0, 1)],
                "hyperparameters": None if failed else {"optimizer.lr": 0.01},
                "curve_runs": [] if failed else runs,
                "step_seconds": COST[optimizer],
                "trials": [] if failed else trials,
                "at_edge": [],
                "final": {"mean": values[-1], "std": None, "n": 2},
                "best": {"mean": min(values), "std": None, "n": 2},
            }
        }
    targets = {"p": Target("valid_loss", 1.0)}
    return {
        "suite": "tiny",
        "protocol": "external_tuning",
        **benchmark_json(score_suite(pairs, targets, resamples=20)),
        "clock": {
            "seconds": "steps to target x the pair's step cost",
            "seconds_clock": "calibrated",
        },
        "edge": {"fraction": 0.05, "note": "best at the space's edge: widen it"},
        "setup": {
            "budget": {"trials": 2, "sampler": "qmc", "pruner": "none", "studies": 2},
            "set": {"epochs": 3},
            "spaces": {o: SPACE for o in "ABC"},
            "device": "cpu",
            "versions": {"torch": "9.9"},
            "hardware": {"cpu": "Test CPU 3000", "cpus": 2},
        },
        "pairs": details,
    }


def test_the_benchmark_page_draws_bands_targets_marks_and_trials(tmp_path: Path) -> None:
    import plotly.graph_objects as go

    from optbench.analysis.benchmark_report import render_benchmark
    from tests.test_report import figures_of

    results = tmp_path / "results"
    document = _benchmark(results)
    page, ids = render_benchmark(document, results)
    figures = {figure["id"]: figure for figure in figures_of(page)}
    assert ids == ["fig-profile-steps", "fig-profile-seconds", "fig-problem-0", "fig-trials-0"]
    for figure in figures.values():  # plotly's validator accepts every trace and the layout
        go.Figure(data=figure["data"], layout=figure["layout"])

    problem = figures["fig-problem-0"]
    names = [t["name"] for t in problem["data"] if t.get("showlegend", True)]
    assert names == ["A", "B", "C (no completed trial: every trial diverged or failed)"]
    assert document["time_to_target"]["B"]["p"]["steps"] == 30  # 1 of 2: reached, say the rules
    assert problem["layout"]["yaxis"]["type"] == "log"  # a loss
    band = next(t for t in problem["data"] if t["name"] == "A band")
    assert band["y"] == [4.0, 1.5, 0.8, 0.5, 0.9, 3.0]  # max over studies, then min backwards
    line = next(t for t in problem["data"] if t["name"] == "A")
    assert line["y"] == pytest.approx([3.5, 1.2, 0.65])  # the mean over its 2 studies
    (switch,) = problem["layout"]["updatemenus"]
    on_steps, on_seconds = (button["args"][0]["x"] for button in switch["buttons"])
    reach = problem["data"].index(
        next(t for t in problem["data"] if t["name"] == "A reaches the target")
    )
    assert problem["data"][reach]["y"] == [1.0] and on_steps[reach] == [20]
    assert on_seconds[reach] == pytest.approx([20 * COST["A"]])  # the calibrated clock
    assert on_seconds[problem["data"].index(line)] == pytest.approx([0.02, 0.04, 0.06])
    assert problem["layout"]["shapes"][0]["y0"] == 1.0

    trials = figures["fig-trials-0"]
    assert trials["layout"]["xaxis"]["type"] == "log" and trials["layout"]["yaxis"]["type"] == "log"
    a, b = (next(t for t in trials["data"] if t["name"] == name) for name in ("A", "B"))
    assert a["x"] == [0.01, 0.3, 0.02, 1e-4] and a["y"] == [0.5, 1.4, 0.8, 3.0]
    assert a["marker"]["symbol"] == ["circle", "circle-open", "circle", "circle-open"]
    assert (
        b["marker"]["symbol"][1] == "asterisk-open" and b["y"][1] == 3.0
    )  # diverged: at the worst shown
    chosen = next(t for t in trials["data"] if t["name"] == "A: chosen")
    assert chosen["x"] == [0.01] and chosen["marker"]["symbol"] == "star"

    assert "Hardware: Test CPU 3000 (2 usable cores)" in page
    assert "Seconds: steps to target x the pair&#x27;s step cost" in page
    json.dumps(figures)  # plain JSON throughout
