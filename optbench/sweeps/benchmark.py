"""`optbench benchmark`'s training half: every study of every (optimizer, problem) pair of a
suite tuned through one pool of workers, pairs already finished left alone.

A study is an ordinary tune (sweeps/tune.py) of one config (core/suite.py `suite_pairs`), with
its own folder and Optuna study. A study is finished when its tune.json names the same study,
budget and seeds, every counted trial is told and, where a trial completed, every seed rerun of
the best trial exists and finished (tune.json is first written when the trials are told, before
the seed reruns start: a kill there leaves `seed_run_ids: []`, which is not finished). A pair is
finished when all its studies are. Scoring (reading the finished studies back) is
analysis/benchmark.py's, which imports nothing from here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optbench.core.config import anchor_to_folder
from optbench.core.errors import ConfigError
from optbench.core.suite import Pair, Study
from optbench.storage.records import TuneFile
from optbench.storage.results import FINISHED, TUNE_FILE, RunDir
from optbench.sweeps.executors import Executor, QuietSweep, SweepView
from optbench.sweeps.tune_setup import TuneSetup, load_tune


@dataclass
class TrainedPairs:
    """What train_pairs did: the pairs whose studies it tuned, those it found finished."""

    trained: list[str]
    reused: list[str]


def check_pairs(pairs: Sequence[Pair]) -> dict[str, TuneSetup]:
    """Every study planned and checked before any trains (bad input writes nothing); a space
    key the pair's optimizer does not take names the optimizer's own space when it has one."""
    setups = {}
    for pair in pairs:
        for index, study in enumerate(pair.studies):
            try:  # the studies differ in seed only: the space's ends are planned once a pair
                setups[study.folder] = load_tune(study.config, check_space=index == 0)
            except ConfigError as exc:
                text = str(exc)
                if pair.own_space and text.startswith("tune.space."):  # the suite's own field
                    key, _, why = text.removeprefix("tune.space.").partition(": ")
                    why = why.replace(
                        "no optimizer of this tune takes it", f"{pair.optimizer} does not take it"
                    )
                    raise ConfigError(f"optimizers.{pair.optimizer}.space.{key}", why) from None
                raise ConfigError(f"{pair.name}: {text}") from None
    return setups


def study_finished(results: Path, study: Study, setup: TuneSetup) -> bool:
    """Whether the study's tune.json says it ended with this budget and seeds: every counted
    trial told and, when a trial completed, a finished run for every seed."""
    path = results / study.folder / TUNE_FILE
    if not path.is_file():
        return False
    try:
        report = TuneFile.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return False
    (arm,) = setup.arms
    if len(report.optimizers) != 1:
        return False
    (done,) = report.optimizers.values()
    tune = setup.tune
    if done.study != arm.study_name or report.seeds != list(tune.seeds):
        return False
    told = (done.completed or 0) + (done.pruned or 0) + (done.failed or 0)
    if done.trials is None or told < done.trials:
        return False
    if tune.sampler != "grid" and done.trials != tune.trials:
        return False
    if done.best is not None and len(done.seed_run_ids) != len(tune.seeds):
        return False  # killed after the trials, before (or during) the seed reruns
    for run_id in done.seed_run_ids:
        summary = RunDir(results / study.folder / run_id).read_summary()
        if summary is None or summary.status not in FINISHED:
            return False
    return True


def train_pairs(
    pairs: Sequence[Pair],
    results: Path,
    *,
    header: str,
    folder: Path | None = None,
    executor: Executor | None = None,
    view: SweepView = QuietSweep,
    batch_trials: int | None = None,
) -> TrainedPairs:
    """Tune every study not finished yet, through one pool of workers (run_tunes). A Ctrl-C
    raises KeyboardInterrupt after the tunes recorded their state: the same call resumes.
    `folder`: the suite file's, whose modules (`--optimizer mypkg.MyOpt`) the runs import."""
    from optbench.sweeps.tune import run_tunes

    setups = check_pairs(pairs)
    if folder is not None:
        # The studies' configs are mappings, read in the working folder, which planning them
        # made the latest config folder: the suite's is the one a Ray cluster or a Slurm job
        # must be sent (executors take config_folder() when they start).
        anchor_to_folder({}, folder)
    todo = [
        study
        for pair in pairs
        for study in pair.studies
        if not study_finished(results, study, setups[study.folder])
    ]
    folders = {study.folder for study in todo}
    trained = [p.name for p in pairs if any(s.folder in folders for s in p.studies)]
    reused = [p.name for p in pairs if p.name not in trained]
    if todo:
        finished_before = sum(len(p.studies) for p in pairs) - len(todo)
        unit = "pairs" if all(len(p.studies) == 1 for p in pairs) else "studies"

        def studies_done(display: Any, done: int, total: int) -> None:
            display.note(f"{unit} {done + finished_before}/{total + finished_before}")

        outcomes = run_tunes(
            [setups[study.folder] for study in todo],
            results,
            executor=executor,
            view=view,
            title="benchmark",
            header=header,
            on_done=studies_done,
            batch_trials=batch_trials,
        )
        if any(outcome.interrupted for outcome in outcomes):
            raise KeyboardInterrupt
    return TrainedPairs(trained, reused)
