"""Does the benchmark's seconds clock repeat? Two finished runs of one suite, scored on the
measured seconds clock and on the calibrated one (analysis/seconds_clock.py), side by side.

Usage:
    optbench benchmark SUITE.yaml --results-dir A   # twice, into two folders
    optbench benchmark SUITE.yaml --results-dir B
    python benchmarks/step_cost_split.py SUITE.yaml A B

Nothing trains: both folders are read back as `optbench benchmark` reads them. For each clock
it prints each optimizer's score in A and in B and their difference; for the calibrated clock
also each pair's step cost in A and B (the 5th percentile of seconds per step over its timed
intervals) and how far the two moved. The steps clock must repeat exactly (seeded); the issue's
bar for the seconds clock is a move of at most 0.03 in every score.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from common import command_line, load_average, machine

from optbench.analysis.benchmark import read_pairs
from optbench.analysis.profiles import Target, score_suite
from optbench.analysis.seconds_clock import CALIBRATED, MEASURED, on_step_cost
from optbench.core.suite import load_suite, suite_pairs


def scores(suite_path: str, results: Path) -> tuple[dict, dict, dict]:
    """One finished run read back once: (clock -> optimizer -> score on the measured clock,
    the same on the calibrated clock, optimizer -> problem -> step cost)."""
    suite = load_suite(suite_path)
    pairs, targets = suite_pairs(suite)
    curves, details, _ = read_pairs(suite, pairs, targets, results, seconds_clock=MEASURED)
    goal = {problem: Target(metric, value) for problem, (metric, value) in targets.items()}
    costs = {o: {p: d["step_seconds"] for p, d in row.items()} for o, row in details.items()}
    calibrated = [on_step_cost(c, costs[c.optimizer][c.problem]) for c in curves]
    found = {}
    for clock, scored in ((MEASURED, curves), (CALIBRATED, calibrated)):
        found[clock] = {m: s.scores for m, s in score_suite(scored, goal).measures.items()}
    return found[MEASURED], found[CALIBRATED], costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("suite")
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    args = parser.parse_args()
    print(f"# {command_line()}\n# {machine()}; load average now {load_average()}")
    first, second = scores(args.suite, args.first), scores(args.suite, args.second)
    costs_a, costs_b = first[2], second[2]
    moved = {}
    for index, clock in enumerate((MEASURED, CALIBRATED)):
        a, b = first[index], second[index]
        for measure in ("steps", "seconds") if clock == MEASURED else ("seconds",):
            name = "steps" if measure == "steps" else f"seconds ({clock})"
            print(f"\n| optimizer | {name}: A | B | B - A |\n|---|---:|---:|---:|")
            for optimizer, score in a[measure].items():
                other = b[measure][optimizer]
                print(f"| {optimizer} | {score:.3f} | {other:.3f} | {other - score:+.3f} |")
            moved[name] = max(abs(b[measure][o] - s) for o, s in a[measure].items())
    print("\n| optimizer | problem | step cost A (ms) | B (ms) | B / A |\n|---|---|---:|---:|---:|")
    ratios = []
    for optimizer, row in costs_a.items():
        for problem, cost in row.items():
            other = costs_b[optimizer][problem]
            if cost and other:
                ratios.append(other / cost)
                print(
                    f"| {optimizer} | {problem} | {cost * 1e3:.4f} | {other * 1e3:.4f} "
                    f"| {other / cost:.3f} |"
                )
    print()
    for name, value in moved.items():
        print(f"largest move of a score, {name}: {value:.3f}")
    if ratios:
        spread = statistics.median(abs(r - 1) for r in ratios)
        print(f"step costs, B / A: median |B/A - 1| {spread:.3f}, range {min(ratios):.3f}")
        print(f"  .. {max(ratios):.3f} over {len(ratios)} pairs")


if __name__ == "__main__":
    main()
