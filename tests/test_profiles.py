"""optbench/analysis/profiles.py: times to target, ratios, profiles and scores on hand-computed
cases, against a direct transcription of AlgoPerf's scoring code (pandas, np.median,
np.trapezoid on a grid), and the bootstrap against probabilities worked out by hand."""

from __future__ import annotations

import json
import math
import operator
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optbench.analysis.profiles import (
    EvalPoint,
    PairCurves,
    Target,
    benchmark_json,
    cannot_tell_apart,
    performance_profile,
    ratios,
    score_suite,
    scores,
    tau_grid,
    time_to_target,
)

INF = math.inf
ACCURACY = Target("test_accuracy", 0.9)  # higher is better
LOSS = Target("test_loss", 0.5)  # lower is better


def curve(*points: tuple[int, float, float]) -> tuple[EvalPoint, ...]:
    return tuple(EvalPoint(*p) for p in points)


def reaching_at(step: int, seconds: float | None = None) -> tuple[EvalPoint, ...]:
    """An accuracy curve that first reaches ACCURACY at `step` (seconds: step / 10)."""
    seconds = step / 10 if seconds is None else seconds
    return curve((0, 0.0, 0.1), (step, seconds, 0.95), (step + 100, seconds + 10, 0.97))


NEVER = curve((0, 0.0, 0.1), (100, 10.0, 0.5), (200, 20.0, 0.8))


# AlgoPerf, transcribed: scoring/performance_profile.py (get_best_trial_index,
# get_workloads_time_to_target, compute_performance_profiles) and scoring/score_submissions.py
# (compute_leaderboard_score, called with min_tau=1, max_tau=4, normalize=True). One trial per
# study: a seed rerun of the tuned configuration is a study whose best trial is that run.
def algoperf_time(runs: list[tuple[list[float], list[float]]], target: float, minimize: bool):
    op = operator.le if minimize else operator.ge
    time_vals_per_study = []
    for times, values in runs:
        reached = op(np.array(values), target)
        time_vals_per_study.append(times[np.argmax(reached)] if reached.any() else float("inf"))
    return np.median(time_vals_per_study)


def algoperf_ratios(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    best_scores = df.min(axis=0)
    df[df.apply(lambda x: x > 4 * best_scores, axis=1)] = np.inf
    df.update(df.div(df.min(axis=0), axis=1))
    return df


def algoperf_scores(df: pd.DataFrame, max_tau: float = 4.0, num_points: int = 100) -> pd.Series:
    """df: times to target, one row per submission, one column per workload."""
    df = algoperf_ratios(df)
    points = np.linspace(1.0, max_tau, num=num_points)

    def rho(r, tau):
        return (r <= tau).sum(axis=1) / df.shape[1]

    perf_df = pd.concat([rho(df, tau) for tau in points], axis=1)
    perf_df.columns = points
    trapz = np.trapezoid  # AlgoPerf's np.trapz, renamed in NumPy 2
    result = trapz(perf_df, x=perf_df.columns)
    result /= perf_df.columns.max() - perf_df.columns.min()
    return pd.Series(result, index=df.index)


def as_table(times: np.ndarray) -> dict[str, dict[str, float]]:
    return {f"o{i}": {f"p{j}": float(t) for j, t in enumerate(row)} for i, row in enumerate(times)}


# ---------------------------------------------------------------- time to target


def test_first_point_at_or_beyond_the_target_in_both_directions() -> None:
    accuracy = [curve((0, 0.0, 0.5), (10, 1.5, 0.9), (20, 3.0, 0.95))]
    assert time_to_target(accuracy, 0.9, higher_is_better=True).steps == 10  # >= counts
    assert time_to_target(accuracy, 0.9, higher_is_better=True).seconds == 1.5
    loss = [curve((0, 0.0, 2.0), (10, 1.5, 0.7), (20, 3.0, 0.5), (30, 4.5, 0.4))]
    assert time_to_target(loss, 0.5, higher_is_better=False).steps == 20  # <= counts
    assert time_to_target(loss, 0.5, higher_is_better=True).steps == 0  # 2.0 >= 0.5 at once


def test_a_diverged_run_never_reaches_the_target() -> None:
    diverged = curve((0, 0.0, 2.0), (10, 1.0, math.nan), (20, 2.0, math.nan))
    result = time_to_target([diverged], 0.5, higher_is_better=False)
    assert (result.steps, result.seconds, result.reached) == (None, None, 0)


def test_median_over_seeds_and_fewer_than_half_is_not_reached() -> None:
    three = [reaching_at(300), reaching_at(100), reaching_at(200)]
    assert time_to_target(three, 0.9, True).steps == 200
    one_of_three = [reaching_at(100), NEVER, NEVER]
    result = time_to_target(one_of_three, 0.9, True)
    assert (result.steps, result.seconds, result.reached, result.seeds) == (None, None, 1, 3)
    two_of_three = [reaching_at(100), NEVER, reaching_at(500)]
    assert time_to_target(two_of_three, 0.9, True).steps == 500  # the slower of the two
    # AlgoPerf's rule: 3 of 5 reach it, 2 of 5 do not
    three_of_five = [reaching_at(s) for s in (400, 100, 300)] + [NEVER, NEVER]
    assert time_to_target(three_of_five, 0.9, True).steps == 400
    assert time_to_target([*three_of_five[1:], NEVER], 0.9, True).steps is None


def test_even_count_takes_the_lower_median() -> None:
    four = [reaching_at(s) for s in (400, 100, 300, 200)]
    assert time_to_target(four, 0.9, True).steps == 200  # not 250: a measured time
    half = [reaching_at(300), NEVER, reaching_at(100), NEVER]  # exactly half reach it
    assert time_to_target(half, 0.9, True).steps == 300
    assert time_to_target([reaching_at(100), NEVER, NEVER, NEVER], 0.9, True).steps is None


def test_steps_and_seconds_take_their_medians_separately() -> None:
    # the fewest steps is the slowest in seconds: the middle seed differs per clock
    runs = [reaching_at(100, 30.0), reaching_at(200, 10.0), reaching_at(300, 20.0)]
    result = time_to_target(runs, 0.9, True)
    assert (result.steps, result.seconds) == (200, 20.0)
    assert isinstance(result.steps, int)


def test_no_seed_reruns_is_refused() -> None:
    with pytest.raises(ValueError, match="no seed reruns"):
        time_to_target([], 0.9, True)


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    seeds=st.sampled_from([1, 3, 5]),
    minimize=st.booleans(),
)
def test_time_matches_algoperf_median_for_odd_seed_counts(data, seeds, minimize) -> None:
    values = st.floats(0.0, 1.0) | st.just(math.nan)
    runs = []
    for _ in range(seeds):
        length = data.draw(st.integers(1, 6))
        times = sorted(data.draw(st.lists(st.integers(0, 1000), min_size=length, max_size=length)))
        runs.append((times, data.draw(st.lists(values, min_size=length, max_size=length))))
    target = data.draw(st.floats(0.0, 1.0))
    expected = algoperf_time(runs, target, minimize)
    curves = [curve(*((t, float(t), v) for t, v in zip(*run, strict=True))) for run in runs]
    ours = time_to_target(curves, target, higher_is_better=not minimize)
    assert ours.steps == (None if math.isinf(expected) else expected)


def algoperf_study_time(
    studies: list[list[tuple[list[float], list[float], list[float]]]], target: float, minimize: bool
) -> tuple[float, float]:
    """AlgoPerf's external tuning, transcribed (get_best_trial_index: of a study's trials that
    reach the target, the one whose first reaching evaluation has the smallest index; its
    time read at that index, on each time column; get_workloads_time_to_target: np.median of
    the studies' times, inf for a study that never reaches it). Trials: (steps, seconds,
    values)."""
    op = operator.le if minimize else operator.ge
    per_clock: dict[int, list[float]] = {0: [], 1: []}
    for trials in studies:
        reached = [op(np.array(values), target) for _, _, values in trials]
        index = {i: int(np.argmax(r)) for i, r in enumerate(reached) if r.any()}
        if not index:
            for clock in per_clock.values():
                clock.append(float("inf"))
            continue
        trial = pd.Series(index).idxmin()
        for column, clock in per_clock.items():
            clock.append(trials[trial][column][index[trial]])
    return float(np.median(per_clock[0])), float(np.median(per_clock[1]))


@settings(max_examples=60, deadline=None)
@given(data=st.data(), studies=st.sampled_from([1, 3, 5]), minimize=st.booleans())
def test_a_study_is_its_fastest_trial_and_the_pair_the_median_study_as_algoperf(
    data, studies, minimize
) -> None:
    """External tuning: every trial of a study evaluated at the same steps (AlgoPerf's trials
    share an eval schedule), each trial with its own seconds per step."""
    values = st.floats(0.0, 1.0) | st.just(math.nan)
    grouped, curves, owners = [], [], []
    for study in range(studies):
        length = data.draw(st.integers(1, 5))
        steps = sorted(  # an eval schedule: one evaluation per step
            data.draw(st.lists(st.integers(0, 1000), min_size=length, max_size=length, unique=True))
        )
        trials = []
        for _ in range(data.draw(st.integers(1, 3))):
            pace = data.draw(st.floats(0.5, 2.0))
            seconds = [s * pace for s in steps]
            trial = data.draw(st.lists(values, min_size=length, max_size=length))
            trials.append((steps, seconds, trial))
            curves.append(curve(*zip(steps, seconds, trial, strict=True)))
            owners.append(study)
        grouped.append(trials)
    target = data.draw(st.floats(0.0, 1.0))
    steps, seconds = algoperf_study_time(grouped, target, minimize)
    ours = time_to_target(curves, target, higher_is_better=not minimize, studies=owners)
    assert ours.seeds == studies
    assert ours.steps == (None if math.isinf(steps) else steps)
    assert ours.seconds == (None if math.isinf(seconds) else pytest.approx(seconds))


def test_the_bootstrap_resamples_whole_studies() -> None:
    """Y's pair is 3 studies, one of which has two trials that both miss the target; resampled
    as studies (not trials), Y loses the target with probability 7/27, as one lost seed of
    three does (test_bootstrap_beats_match_the_probability_of_losing_a_seed)."""
    x = PairCurves("X", "p", (reaching_at(100),) * 3, (0, 1, 2))
    y = PairCurves("Y", "p", (reaching_at(50), reaching_at(50), NEVER, NEVER), (0, 1, 2, 2))
    result = score_suite([x, y], {"p": ACCURACY}, resamples=4000, seed=7)
    assert result.unit == "studies" and result.times["Y"]["p"].seeds == 3
    assert result.measures["steps"].beats["Y"]["X"] == pytest.approx(20 / 27, abs=0.03)
    mixed = PairCurves("Z", "p", (reaching_at(100),) * 3)
    with pytest.raises(ValueError, match="seed reruns and pairs of studies"):
        score_suite([x, mixed], {"p": ACCURACY})


# ---------------------------------------------------------------- ratios, profiles, scores


def test_worked_example_of_docs_benchmark_md() -> None:
    momentum_p1 = [reaching_at(200), reaching_at(180), reaching_at(260)]
    assert time_to_target(momentum_p1, 0.9, True).steps == 200
    assert time_to_target([reaching_at(900), NEVER, NEVER], 0.9, True).steps is None
    times = {
        "SGD": {"P1": 400, "P2": 300, "P3": None},
        "Momentum": {"P1": 200, "P2": 150, "P3": 500},
        "Adam": {"P1": 100, "P2": 300, "P3": 250},
    }
    r = ratios(times)
    assert r == {
        "SGD": {"P1": 4.0, "P2": 2.0, "P3": INF},
        "Momentum": {"P1": 2.0, "P2": 1.0, "P3": 2.0},
        "Adam": {"P1": 1.0, "P2": 2.0, "P3": 1.0},
    }
    assert scores(r) == pytest.approx({"SGD": 2 / 9, "Momentum": 7 / 9, "Adam": 8 / 9})
    profile = performance_profile(r, [1.0, 2.0, 3.9, 4.0])
    assert profile == {
        "SGD": [0.0, pytest.approx(1 / 3), pytest.approx(1 / 3), pytest.approx(2 / 3)],
        "Momentum": [pytest.approx(1 / 3), 1.0, 1.0, 1.0],
        "Adam": [pytest.approx(2 / 3), 1.0, 1.0, 1.0],
    }


def test_ties_share_the_fastest_time() -> None:
    r = ratios({"A": {"p": 100.0}, "B": {"p": 100.0}, "C": {"p": 250.0}})
    assert r == {"A": {"p": 1.0}, "B": {"p": 1.0}, "C": {"p": 2.5}}
    assert scores(r) == pytest.approx({"A": 1.0, "B": 1.0, "C": 0.5})


def test_an_optimizer_reaching_no_target_scores_zero() -> None:
    r = ratios({"A": {"p": 100.0, "q": 10.0}, "B": {"p": None, "q": None}})
    assert r["B"] == {"p": INF, "q": INF}
    assert scores(r) == {"A": 1.0, "B": 0.0}


def test_a_problem_nobody_reaches_counts_against_everyone() -> None:
    r = ratios({"A": {"p": 100.0, "dead": None}, "B": {"p": 200.0, "dead": None}})
    assert r["A"]["dead"] == r["B"]["dead"] == INF
    assert scores(r) == pytest.approx({"A": 0.5, "B": (2 / 3) / 2})


def test_one_problem() -> None:
    r = ratios({"A": {"p": 100.0}, "B": {"p": 300.0}, "C": {"p": 400.0}, "D": {"p": 401.0}})
    assert scores(r) == pytest.approx({"A": 1.0, "B": 1 / 3, "C": 0.0, "D": 0.0})
    assert scores(r, r_max=5) == pytest.approx(
        {"A": 1.0, "B": 0.5, "C": 0.25, "D": pytest.approx(0.99 / 4)}
    )


def test_a_target_met_before_training_ties_at_one() -> None:
    r = ratios({"A": {"p": 0.0}, "B": {"p": 0.0}, "C": {"p": 10.0}})
    assert r == {"A": {"p": 1.0}, "B": {"p": 1.0}, "C": {"p": INF}}


def test_a_missing_pair_and_a_bad_r_max_are_refused() -> None:
    with pytest.raises(ValueError, match="B: problems"):
        ratios({"A": {"p": 1.0, "q": 1.0}, "B": {"p": 1.0}})
    with pytest.raises(ValueError, match="r_max"):
        scores({"A": {"p": 1.0}}, r_max=1)


def test_tau_grid_spans_one_to_r_max() -> None:
    taus = tau_grid()
    assert (taus[0], taus[-1], len(taus)) == (1.0, 4.0, 100)


positive_times = st.floats(1.0, 1e4) | st.just(INF)


@st.composite
def time_matrices(draw) -> np.ndarray:
    optimizers = draw(st.integers(1, 4))
    problems = draw(st.integers(1, 4))
    flat = draw(
        st.lists(positive_times, min_size=optimizers * problems, max_size=optimizers * problems)
    )
    return np.array(flat).reshape(optimizers, problems)


@pytest.mark.slow  # over 10 s in the loaded inner loop (~3 s alone)
@settings(max_examples=60, deadline=None)
@given(times=time_matrices())
def test_ratios_and_profiles_match_algoperf(times: np.ndarray) -> None:
    table = as_table(times)
    ours = ratios(table)
    theirs = algoperf_ratios(pd.DataFrame(table).T)
    for o, row in ours.items():
        for p, r in row.items():
            # AlgoPerf sets a time over 4x the fastest to inf, which no score or profile on
            # [1, 4] can tell from r (away from rounding at r = 4)
            if r < 4 - 1e-9:
                assert r == pytest.approx(theirs.loc[o, p])
            elif r > 4 + 1e-9:
                assert theirs.loc[o, p] == INF
    taus = tau_grid(4, 50)
    profile = performance_profile(ours, taus)
    for o in ours:
        expected = [(theirs.loc[o] <= tau).mean() for tau in taus]
        assert profile[o] == pytest.approx(expected)


@pytest.mark.slow  # over 10 s in the loaded inner loop (~3 s alone)
@settings(max_examples=20, deadline=None)
@given(times=time_matrices())
def test_exact_score_is_within_algoperfs_grid_error(times: np.ndarray) -> None:
    table = as_table(times)
    ours = scores(ratios(table))
    for points in (100, 601):
        theirs = algoperf_scores(pd.DataFrame(table).T, num_points=points)
        # each problem's step of rho (height 1/n) is off by at most half a grid cell on the
        # trapezoid rule: |error| <= h / 2 before dividing by r_max - 1 = 3
        cell = 3 / (points - 1)
        for o, value in ours.items():
            assert value == pytest.approx(theirs[o], abs=cell / 6 + 1e-12)


@pytest.mark.slow  # over 10 s in the loaded inner loop (~3 s alone)
def test_algoperfs_grid_integral_converges_to_the_exact_score() -> None:
    times = pd.DataFrame(
        {"P1": [400, 200, 100], "P2": [300, 150, 300], "P3": [INF, 500, 250]},
        index=["SGD", "Momentum", "Adam"],
        dtype=float,
    )
    exact = scores(ratios(times.T.to_dict()))
    errors = [
        max(abs(algoperf_scores(times, num_points=n)[o] - exact[o]) for o in exact)
        for n in (100, 1000, 4000)
    ]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-4


@settings(max_examples=60, deadline=None)
@given(times=time_matrices(), best=st.integers(0, 3), r_max=st.floats(1.5, 10.0))
def test_scores_lie_in_0_1_and_the_best_everywhere_scores_1(times, best, r_max) -> None:
    best %= times.shape[0]
    times[best] = np.minimum(times.min(axis=0), 1e4) / 2  # fastest on every problem
    result = scores(ratios(as_table(times)), r_max=r_max)
    assert all(0.0 <= s <= 1.0 for s in result.values())
    assert result[f"o{best}"] == 1.0


# ---------------------------------------------------------------- the whole suite, bootstrap


def suite(runs: dict[str, dict[str, list[tuple[EvalPoint, ...]]]]) -> list[PairCurves]:
    return [
        PairCurves(optimizer, problem, tuple(curves))
        for optimizer, row in runs.items()
        for problem, curves in row.items()
    ]


def test_identical_seeds_give_a_point_interval_and_sure_beats() -> None:
    pairs = suite(
        {
            "Adam": {"a": [reaching_at(100)] * 3, "b": [reaching_at(200)] * 3},
            "SGD": {"a": [reaching_at(300)] * 3, "b": [NEVER] * 3},
        }
    )
    result = score_suite(pairs, {"a": ACCURACY, "b": ACCURACY}, resamples=200)
    steps = result.measures["steps"]
    assert steps.scores == pytest.approx({"Adam": 1.0, "SGD": (1 / 3) / 2})
    assert steps.intervals["Adam"].low == steps.intervals["Adam"].high == 1.0
    assert steps.intervals["SGD"].low == pytest.approx(1 / 6)
    assert steps.beats == {"Adam": {"SGD": 1.0}, "SGD": {"Adam": 0.0}}
    assert cannot_tell_apart(steps) == []
    assert result.times["SGD"]["b"].steps is None
    assert result.times["Adam"]["b"].seconds == 20.0


def test_bootstrap_beats_match_the_probability_of_losing_a_seed() -> None:
    # Y reaches the target at step 50 with two seeds of three and never with the third; X at
    # step 100 always. A resample drops Y below half when it draws the bad seed 2 or 3 times:
    # p = 3 * (1/3)**2 * (2/3) + (1/3)**3 = 7/27. Then X scores 1 > 0; else Y scores 1 > 2/3.
    pairs = suite(
        {
            "X": {"p": [reaching_at(100)] * 3},
            "Y": {"p": [reaching_at(50), reaching_at(50), NEVER]},
        }
    )
    result = score_suite(pairs, {"p": ACCURACY}, resamples=4000, seed=7)
    for measure in ("steps", "seconds"):
        beats = result.measures[measure].beats
        assert beats["X"]["Y"] == pytest.approx(7 / 27, abs=0.03)
        assert beats["Y"]["X"] == pytest.approx(20 / 27, abs=0.03)
        assert beats["X"]["Y"] + beats["Y"]["X"] == 1.0
        assert cannot_tell_apart(result.measures[measure]) == [("X", "Y")]
        interval = result.measures[measure].intervals["Y"]
        assert (interval.low, interval.high) == (0.0, 1.0)
    assert result.measures["steps"].scores == {"X": pytest.approx(2 / 3), "Y": 1.0}


def test_bootstrap_is_seeded() -> None:
    pairs = suite(
        {
            "X": {"p": [reaching_at(s) for s in (100, 120, 300)]},
            "Y": {"p": [reaching_at(s) for s in (90, 200, 250)]},
        }
    )
    first = score_suite(pairs, {"p": ACCURACY}, resamples=300, seed=1)
    again = score_suite(pairs, {"p": ACCURACY}, resamples=300, seed=1)
    other = score_suite(pairs, {"p": ACCURACY}, resamples=300, seed=2)
    assert first == again
    assert first.measures["steps"].beats != other.measures["steps"].beats


def test_suite_refuses_a_missing_pair_a_duplicate_and_an_unknown_target() -> None:
    pairs = suite({"X": {"p": [NEVER], "q": [NEVER]}, "Y": {"p": [NEVER]}})
    with pytest.raises(ValueError, match="Y on q: missing"):
        score_suite(pairs, {"p": ACCURACY, "q": ACCURACY})
    with pytest.raises(ValueError, match="given twice"):
        score_suite(pairs[:1] * 2, {"p": ACCURACY})
    with pytest.raises(ValueError, match="q: no target"):
        score_suite(pairs, {"p": ACCURACY})


def test_benchmark_json_is_strict_json_with_the_documented_keys() -> None:
    pairs = suite(
        {
            "Adam": {"acc": [reaching_at(100)] * 2, "loss": [NEVER] * 2},
            "SGD": {"acc": [reaching_at(300), NEVER], "loss": [NEVER] * 2},
        }
    )
    result = score_suite(pairs, {"acc": ACCURACY, "loss": LOSS}, resamples=50)
    document = json.loads(json.dumps(benchmark_json(result), allow_nan=False))
    assert document["r_max"] == 4
    assert document["time_to_target"]["Adam"]["acc"] == {
        "steps": 100,
        "seconds": 10.0,
        "seeds_reached": 2,
        "seeds": 2,
    }
    assert document["time_to_target"]["SGD"]["acc"]["steps"] == 300  # 1 of 2: half reached
    # NEVER's losses (0.1, 0.5, 0.8) reach test_loss <= 0.5 at step 0 for every seed
    assert document["time_to_target"]["SGD"]["loss"]["steps"] == 0
    assert document["targets"]["loss"] == {
        "metric": "test_loss",
        "value": 0.5,
        "higher_is_better": False,
    }
    assert document["scores"]["steps"] == {"Adam": 1.0, "SGD": pytest.approx((1 / 3 + 1) / 2)}
    assert document["ratios"]["seconds"]["SGD"]["acc"] == 3.0
    assert set(document["intervals"]["steps"]) == {"Adam", "SGD"}
    assert len(document["profiles"]["tau"]) == len(document["profiles"]["steps"]["SGD"]) == 100
    assert document["bootstrap"] == {"resamples": 50, "confidence": 0.95, "seed": 0}


@pytest.mark.slow
def test_scoring_imports_neither_torch_nor_optuna() -> None:
    script = (
        "import sys\n"
        "import optbench.analysis.profiles\n"
        "loaded = [m for m in ('torch', 'optuna') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
