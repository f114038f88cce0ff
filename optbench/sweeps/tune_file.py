"""tune.json: what a tune found, per arm (budget spent, best trial, seed reruns), from its
studies and runs; written atomically whenever an arm is done, on Ctrl-C and at the end."""

from __future__ import annotations

import json

from optbench.storage.records import BestTrial, TunedOptimizer, TuneFile
from optbench.storage.results import TUNE_FILE, write_atomic
from optbench.sweeps.study import EPOCHS, RUN_ID, SECONDS, asked_as, best_trial, counted_trials
from optbench.sweeps.tune_seeds import SeedReruns
from optbench.sweeps.tune_setup import Arm
from optbench.sweeps.tune_studies import TuneContext


def arm_report(context: TuneContext, seeds: SeedReruns, arm: Arm) -> TunedOptimizer:
    state = context.state
    every = arm.study.get_trials(deepcopy=False)
    trials = sorted(counted_trials(every), key=lambda t: asked_as(t, every))
    best = best_trial(arm.study)
    return TunedOptimizer(
        study=arm.study_name,
        space={k: d.to_dict() for k, d in arm.space.items()},
        trials=arm.budget,
        completed=sum(t.state == state.COMPLETE for t in trials),
        pruned=sum(t.state == state.PRUNED for t in trials),
        failed=sum(t.state == state.FAIL for t in trials),
        epochs=sum(int(t.user_attrs.get(EPOCHS, 0)) for t in trials),
        seconds=round(sum(float(t.user_attrs.get(SECONDS, 0.0)) for t in trials), 3),
        best=None
        if best is None
        else BestTrial(best.user_attrs.get(RUN_ID), best.params, best.value),
        trial_run_ids=[t.user_attrs[RUN_ID] for t in trials if RUN_ID in t.user_attrs],
        seed_run_ids=list(arm.seed_run_ids),
        seed_values=seeds.values(arm),
    )


def tune_file(context: TuneContext, seeds: SeedReruns) -> TuneFile:
    setup = context.setup
    return TuneFile(
        name=setup.name,
        metric=setup.metric,
        direction=setup.direction,
        seeds=list(setup.tune.seeds),
        storage=context.storage_spec,
        optimizers={arm.key: arm_report(context, seeds, arm) for arm in setup.arms},
        notes=list(setup.notes),
    )


def write_tune_file(context: TuneContext, seeds: SeedReruns) -> TuneFile:
    report = tune_file(context, seeds)
    folder = context.results_dir / context.setup.name
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / TUNE_FILE, json.dumps(report.to_dict(), indent=2) + "\n")
    return report
