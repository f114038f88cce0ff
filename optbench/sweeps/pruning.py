"""A tune's pruning where the trial trains: each epoch's metric reported to its Optuna trial.

The driver (tune.py) sends a TrialWatch with a trial's point; the worker (a process, or a Ray
task) makes the observer from it, which reports each epoch and ends the run when the pruner says.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from optbench.core.metrics import BETWEEN
from optbench.experiment.train import SilentObserver, StopTraining
from optbench.storage.results import Status
from optbench.sweeps.study import import_optuna, make_pruner, open_storage
from optbench.sweeps.tune_runs import finite


@dataclasses.dataclass(frozen=True)
class TrialWatch:
    """Sent with a trial's point to the worker: it reports each epoch's metric to the trial
    through the storage and ends the run when the pruner says (picklable, for processes and
    Ray tasks)."""

    storage: str
    study: str
    trial_id: int
    metric: str
    pruner: str
    epochs: int

    def __call__(self) -> _Pruning:
        return _Pruning(self)


class _Pruning(SilentObserver):
    """A training observer reporting to an Optuna trial. Where the storage cannot be reached
    (a Ray node without the journal file), the run trains unpruned; the driver reports its
    epochs when it ends."""

    def __init__(self, watch: TrialWatch) -> None:
        self.watch, self.trial = watch, None
        try:
            optuna = import_optuna()
            if "://" not in watch.storage and not Path(watch.storage).is_file():
                return
            study = optuna.load_study(
                study_name=watch.study,
                storage=open_storage(watch.storage),
                pruner=make_pruner(watch.pruner, watch.epochs),
            )
            # Optuna has no public way to attach to a trial asked by another process: its
            # Trial constructor (study, trial_id) is what optimize() and ask() use themselves.
            self.trial = optuna.trial.Trial(study, watch.trial_id)
        except Exception:
            self.trial = None

    def epoch_finished(self, row: dict[str, Any]) -> None:  # the only call it reports
        value, epoch = row.get(self.watch.metric), row["epoch"]
        if self.trial is None or not finite(value) or row.get(BETWEEN):
            return  # pruned at epoch ends only, not at evaluations between them
        try:
            self.trial.report(float(value), epoch)
            prune = epoch < self.watch.epochs and self.trial.should_prune()
        except Exception:  # the trial was told meanwhile (its driver stopped): stop reporting
            self.trial = None
            return
        if prune:
            raise StopTraining(
                Status.PRUNED, f"pruned after epoch {epoch} by the {self.watch.pruner} pruner"
            )
