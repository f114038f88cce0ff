"""`optbench tune`: each optimizer's hyperparameters searched by Optuna, with one budget each.

The driver of a planned tune (tune_setup.py) on Optuna's studies (study.py): every trial is an
ordinary run with its stable run-id, asked lazily when one of the sweep's executors
(executors.py) can take it, told as its result arrives, answered from disk when its run already
finished, and pruned where it trains (the worker reports each epoch to its trial). A trial whose
process died is failed, not counted, and asked again, so its run resumes from its checkpoint;
several processes on one storage share a study and its budget. Then each best configuration is
rerun with the seeds and tune.json is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
import statistics
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optbench.core.config import ConfigSource, Overrides, default_results_dir, validate_config
from optbench.core.errors import ConfigError, ResultsWriteError
from optbench.core.metrics import BETWEEN
from optbench.storage.records import BestTrial, TunedOptimizer, TuneFile
from optbench.storage.results import (
    FINISHED,
    TUNE_FILE,
    RunDir,
    Status,
    cannot_write,
    check_results_dir,
)
from optbench.sweeps.executors import QuietSweep, SweepView
from optbench.sweeps.shared_pool import LabelledDisplay, SharedPool
from optbench.sweeps.study import (
    EPOCHS,
    HEARTBEAT_SECONDS,
    JOURNAL_FILE,
    NOT_COUNTED,
    OWNER,
    RETRY_OF,
    RUN_ID,
    SECONDS,
    STATUS,
    asked_as,
    best_trial,
    counted_trials,
    import_optuna,
    make_distribution,
    make_pruner,
    make_sampler,
    open_storage,
    owner_alive,
    recover_journal,
    told_trials,
    trial_owner,
)
from optbench.sweeps.tune_setup import Arm, TuneSetup, config_with, load_tune

if TYPE_CHECKING:
    from optbench.sweeps.grid import Grid

# Points asked in a row that another process sharing the study was training (asked at the same
# moment): asked again up to this many times, then its result is waited for and shared.
MAX_REASKS = 5
ASK_LOCK = "optuna-asking.lock"  # the ask lock of a tune on a storage URL, in its folder
# A run whose worker process died this many times in a row, without an epoch finished between,
# fails (and counts): the out-of-memory killer, not a stray kill. Fewer: asked again.
MAX_DEATHS = 3


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


# --------------------------------------------------------------------------- the driver


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


class _Pruning:
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

    # the whole TrainingObserver protocol (experiment/train.py); only epoch_finished reports
    def run_started(self, title: str, epochs: int) -> None:
        pass

    def epoch_started(self, epoch: int, num_batches: int) -> None:
        pass

    def batch_finished(self, batch: int, loss: float | None) -> None:
        pass

    def run_ended(self, status: str) -> None:
        pass

    def epoch_finished(self, row: dict[str, Any]) -> None:
        from optbench.experiment.train import StopTraining

        value, epoch = row.get(self.watch.metric), row["epoch"]
        if self.trial is None or not _finite(value) or row.get(BETWEEN):
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


class Tuner:
    """Asks trials lazily, tells results as they come, and keeps the studies honest."""

    def __init__(self, setup: TuneSetup, results_dir: Path, storage: str) -> None:
        self.setup, self.results_dir, self.storage_spec = setup, results_dir, storage
        self.display: Any = None  # ui/display.py SweepDisplay, set while the tune runs
        self.optuna = import_optuna()
        self.storage = open_storage(storage)
        self.owner = trial_owner()
        self.inflight: dict[str, list[tuple[Arm, Any]]] = {}
        self.deaths: dict[str, tuple[int, int]] = {}  # run-id -> deaths in a row, epochs then
        self.failed_seeds = 0

    # ------------------------------------------------------------------ studies

    def open_studies(self) -> None:
        tune = self.setup.tune
        for number, arm in enumerate(self.setup.arms):
            arm.budget = tune.trials
            if tune.sampler == "grid":
                arm.budget = min(arm.budget, math.prod(len(d.bounds) for d in arm.space.values()))
            seed = int(hashlib.sha256(arm.study_name.encode()).hexdigest()[:8], 16) + number
            try:
                arm.study = self.optuna.create_study(
                    storage=self.storage,
                    study_name=arm.study_name,
                    sampler=make_sampler(tune.sampler, arm.space, seed),
                    pruner=make_pruner(tune.pruner, arm.epochs),
                    direction=self.setup.direction,
                    load_if_exists=True,
                )
            except ValueError as exc:  # an existing study with the other direction
                raise ConfigError(f"study {arm.study_name}: {exc}") from None
            arm.seed = seed
            arm.study_id = self.storage.get_study_id_from_name(arm.study_name)
            arm.study.set_user_attr("optbench", {"optimizer": arm.key, "metric": self.setup.metric})
            with self.asking():
                self._recover(arm, opening=True)

    def asking(self) -> contextlib.AbstractContextManager[bool]:
        """The ask lock (a flock beside the journal, or in the tune's folder for a storage URL):
        held from asking a trial until its owner is recorded, and while a tune opening the
        study looks for trials whose asker died, so it never mistakes one being asked for one.
        The kernel drops it when its holder dies. Processes on other hosts sharing an RDB
        storage are told apart by their heartbeats instead."""
        from optbench.components.data.tensor_cache import exclusive  # the tensor file's flock

        if "://" in self.storage_spec:
            return exclusive(self.results_dir / self.setup.name / ASK_LOCK)
        return exclusive(Path(f"{self.storage_spec}.asking"))

    @property
    def heartbeats(self) -> bool:
        """Whether the storage keeps Optuna's heartbeats (an RDB storage, see open_storage)."""
        interval = getattr(self.storage, "get_heartbeat_interval", lambda: None)
        return interval() is not None

    def _recover(self, arm: Arm, opening: bool = False) -> None:
        """Trials left RUNNING by a process that died (its owner gone from this host, or its
        heartbeat stale): failed, not counted, asked again. When `opening` the study (under the
        ask lock, see asking), so is one that never recorded its owner: its asker was killed or
        its write failed between asking and recording, since a live one holds the lock then."""
        state = self.optuna.trial.TrialState
        if self.heartbeats:
            self.beat()  # ours are alive: only other processes' trials can be stale now
            with warnings.catch_warnings():  # "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", self.optuna.exceptions.ExperimentalWarning)
                # each is asked again by open_storage's stale-trial callback (study.py)
                self.optuna.storages.fail_stale_trials(arm.study)
        for trial in arm.study.get_trials(deepcopy=False, states=(state.RUNNING,)):
            if OWNER not in trial.user_attrs and opening:  # under the ask lock: its asker is gone
                why = "its asker stopped before recording itself (killed, or a write failed)"
            elif not owner_alive(trial.user_attrs.get(OWNER)):
                why = "its process died"
            else:
                continue
            self._abandon(arm, trial.number, trial.params, why)

    def beat(self) -> None:
        """Record a heartbeat for every trial in flight (called every HEARTBEAT_SECONDS)."""
        try:
            trials = [(arm, trial) for told in list(self.inflight.values()) for arm, trial in told]
        except RuntimeError:  # changed while copied: the next beat has it
            return
        for arm, trial in trials:
            with contextlib.suppress(Exception):  # told meanwhile, or the storage hiccupped
                self.storage.record_heartbeat(self._trial_id(arm, trial.number))

    @contextlib.contextmanager
    def beating(self) -> Iterator[None]:
        """Heartbeats from a thread while the trials run (nothing without heartbeats)."""
        if not self.heartbeats:
            yield
            return
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(HEARTBEAT_SECONDS):
                self.beat()

        thread = threading.Thread(target=loop, name="optbench-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _trial_id(self, arm: Arm, number: int) -> int:
        """The storage's id of the arm's trial `number`, through the storage's public API
        (Optuna's Trial and FrozenTrial keep theirs private)."""
        return self.storage.get_trial_id_from_study_id_trial_number(arm.study_id, number)

    def _abandon(self, arm: Arm, number: int, params: dict[str, Any], why: str) -> None:
        """Fail a trial without counting it and queue its point again (the same run-id, which
        resumes from its checkpoint). Its retry is queued first and only once, so a process
        killed at any step of this leaves the point asked again, never lost nor asked twice."""
        trials = arm.study.get_trials(deepcopy=False)
        if not any(t.user_attrs.get(RETRY_OF) == number for t in trials):
            arm.study.enqueue_trial(params, user_attrs={RETRY_OF: number})
        self.storage.set_trial_user_attr(self._trial_id(arm, number), NOT_COUNTED, why)
        arm.study.tell(number, state=self.optuna.trial.TrialState.FAIL, skip_if_finished=True)

    # ------------------------------------------------------------------ asking

    def _claim(self, trial: Any, key: str, value: Any) -> bool:
        """Record `key` on a trial just asked; False when another tune opening the study at
        that moment took it for abandoned (asked, its owner not yet recorded) and failed it:
        that tune queued its point again, so this one asks anew."""
        try:
            trial.set_user_attr(key, value)
        except self.optuna.exceptions.UpdateFinishedTrialError:
            return False
        return True

    def short(self) -> bool:
        """Whether an arm lost a trial after it was asked all (see on_result); resets them."""
        arms = [arm for arm in self.setup.arms if arm.short]
        for arm in self.setup.arms:
            arm.short = arm.asked_all = False
        return bool(arms)

    def points(self) -> Iterator[tuple[Any, ...]]:
        return itertools.chain.from_iterable(self._trials(arm) for arm in self.setup.arms)

    def _trials(self, arm: Arm) -> Iterator[tuple[Any, ...]]:
        from optbench.experiment.plan import make_plan

        state = self.optuna.trial.TrialState
        distributions = {k: make_distribution(d) for k, d in arm.space.items()}
        repeats = 0  # points asked in a row that another process was training
        while True:
            if self.heartbeats:  # a trial of another host's dead tune is asked again now
                self._recover(arm)
            counted = counted_trials(arm.study.get_trials(deepcopy=False))
            waiting = any(t.state == state.WAITING for t in counted)  # queued: in the budget
            if len(counted) >= arm.budget and not waiting:
                break
            with self.asking():
                trial = self._ask(arm, distributions)
                claimed = self._claim(trial, OWNER, self.owner)
            if not claimed:
                continue
            if self.heartbeats:
                self.storage.record_heartbeat(self._trial_id(arm, trial.number))
            before = [
                t
                for t in counted_trials(arm.study.get_trials(deepcopy=False))
                if t.number < trial.number
            ]
            if len(before) >= arm.budget:  # another process took the last one meanwhile
                trial.set_user_attr(NOT_COUNTED, "over the budget")
                arm.study.tell(trial, state=state.FAIL)
                break
            try:
                config = validate_config(config_with(arm.config, trial.params))
                plan = make_plan(config)
            except ConfigError as exc:
                trial.set_user_attr(STATUS, "invalid")
                trial.set_user_attr("error", str(exc))
                arm.study.tell(trial, state=state.FAIL)
                self.display.answered(self._describe(arm, trial, "invalid", None, str(exc)))
                continue
            if not self._claim(trial, RUN_ID, plan.run_id):
                continue
            run = RunDir(self.results_dir / self.setup.name / plan.run_id)
            twin = None if plan.run_id in self.inflight else self._twin(arm, trial, run)
            if twin is not None and repeats < MAX_REASKS:  # asked at once by another process
                repeats += 1
                trial.set_user_attr(NOT_COUNTED, twin)
                arm.study.tell(trial, state=state.FAIL)
                continue
            if twin is not None:  # the space holds no other point now: share its result
                while run.is_locked():
                    time.sleep(0.5)
            repeats = 0
            summary = run.read_summary()
            if summary and summary.status in FINISHED:
                line = self._tell(arm, trial, plan.run_id, Status(summary.status), None)
                self.display.answered(f"{line} (on disk)")
                continue
            waiting = plan.run_id in self.inflight
            self.inflight.setdefault(plan.run_id, []).append((arm, trial))
            if waiting:  # the same run is training for another trial: share its result
                continue
            watch = None
            if self.setup.tune.pruner != "none":
                watch = TrialWatch(
                    self.storage_spec,
                    arm.study_name,
                    self._trial_id(arm, trial.number),
                    self.setup.metric,
                    self.setup.tune.pruner,
                    arm.epochs,
                )
            self.display.add(plan.run_id, self._describe(arm, trial), arm.epochs)
            yield (plan.run_id, config.to_dict(), *([watch] if watch else []))
        arm.asked_all = True
        self._maybe_done(arm)

    def _ask(self, arm: Arm, distributions: dict[str, Any]) -> Any:
        """A new trial. TPE and random samplers are seeded with the arm's seed plus the trials
        the study holds that are not retries: a tune asks the same trials every time, a resumed
        one new ones, one whose trials were retried (a killed worker or driver) the same ones
        as an undisturbed tune, and two processes sharing the study, asking one after the
        other, different ones. Asking and recording the owner happen under the study's ask
        lock, so a tune opening the study never takes a trial being asked for abandoned."""
        if self.setup.tune.sampler in ("tpe", "random"):
            trials = arm.study.get_trials(deepcopy=False)
            fresh = sum(RETRY_OF not in t.user_attrs for t in trials)  # a retry asks no sample
            arm.study.sampler = make_sampler(self.setup.tune.sampler, arm.space, arm.seed + fresh)
        with warnings.catch_warnings():  # Optuna wants heartbeats from optimize(); ours
            warnings.filterwarnings("ignore", "Heartbeat of storage")  # come from beating()
            return arm.study.ask(distributions)

    def _twin(self, arm: Arm, trial: Any, run: RunDir) -> str | None:
        """Why another process is training this trial's point now (both asked it at the same
        moment), None when none is."""
        state = self.optuna.trial.TrialState
        for other in counted_trials(arm.study.get_trials(deepcopy=False, states=(state.RUNNING,))):
            mine = other.number == trial.number or other.user_attrs.get(OWNER) == self.owner
            same = other.params == trial.params or other.user_attrs.get(RUN_ID) == run.path.name
            if same and not mine:
                return f"the point of trial {other.number}, asked by another process"
        return "its run is being trained by another process" if run.is_locked() else None

    # ------------------------------------------------------------------ telling

    def on_result(self, result: Any) -> None:
        if result.busy:  # trained meanwhile by a process sharing the study: ask another point
            for arm, trial in self.inflight.pop(result.run_id, []):
                trial.set_user_attr(NOT_COUNTED, "its run was trained by another process")
                arm.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
                arm.short = True
            self.display.result(result)
            return
        if result.died and self._died(result):  # not the trial's fault: asked again now
            for arm, trial in self.inflight.pop(result.run_id, []):
                self._abandon(arm, trial.number, trial.params, result.error or "its worker died")
                arm.short = True
            self.display.result(result, f"{result.error}: asked again, not counted")
            return
        if result.write_failed:  # a full disk: not the trial's fault; asked again on resume
            for arm, trial in self.inflight.pop(result.run_id, []):
                with contextlib.suppress(ResultsWriteError):  # else its process is gone then
                    self._abandon(arm, trial.number, trial.params, "write failed")
            raise ResultsWriteError(result.error)
        lines = []
        for arm, trial in self.inflight.pop(result.run_id, []):
            lines.append(self._tell(arm, trial, result.run_id, Status(result.status), result.error))
            self._maybe_done(arm)
        told = [line for line in lines if line is not None]
        self.display.result(result, "; ".join(told) if told else None)

    def _died(self, result: Any) -> bool:
        """Whether a run whose process died is asked again: yes, unless it died MAX_DEATHS
        times in a row without finishing an epoch in between (a run the out-of-memory killer
        ends every time); then it fails and counts, saying so."""
        epochs = len(_rows(RunDir(self.results_dir / self.setup.name / result.run_id)))
        deaths, at = self.deaths.get(result.run_id, (0, -1))
        deaths = deaths + 1 if epochs == at else 1
        self.deaths[result.run_id] = (deaths, epochs)
        if deaths < MAX_DEATHS:
            return True
        result.error = f"{result.error}, {deaths} times without finishing an epoch"
        return False

    def _tell(
        self, arm: Arm, trial: Any, run_id: str, status: Status, error: str | None
    ) -> str | None:
        """Tell the study how the trial's run ended; the line that says so (None: the trial
        was interrupted and is asked again)."""
        state = self.optuna.trial.TrialState
        run = RunDir(self.results_dir / self.setup.name / run_id)
        rows = _rows(run)
        if status is Status.INTERRUPTED:
            self._abandon(arm, trial.number, trial.params, "interrupted")
            return None
        reported = self.storage.get_trial(self._trial_id(arm, trial.number)).intermediate_values
        ends = {row["epoch"]: row for row in rows}.values()  # each epoch's last row (eval_every)
        for row in ends:  # the epochs a worker did not report (no pruner, or answered from disk)
            if row["epoch"] not in reported and _finite(row.get(self.setup.metric)):
                trial.report(float(row[self.setup.metric]), int(row["epoch"]))
        trial.set_user_attr(STATUS, str(status))
        trial.set_user_attr(EPOCHS, len(ends))
        trial.set_user_attr(SECONDS, round(sum(r["seconds"] + r["eval_seconds"] for r in rows), 3))
        value = _final(run, rows, self.setup.metric)
        if status is Status.COMPLETED and _finite(value):
            arm.study.tell(trial, value)
        elif status is Status.PRUNED:
            arm.study.tell(trial, state=state.PRUNED)
        else:
            if error:
                trial.set_user_attr("error", error[:500])
            arm.study.tell(trial, state=state.FAIL)
        return self._describe(arm, trial, str(status), value, error)

    def _describe(
        self,
        arm: Arm,
        trial: Any,
        status: str | None = None,
        value: Any = None,
        error: str | None = None,
    ) -> str:
        """`SGD trial 3: lr=0.01, momentum=0.9`, and how it ended where it has."""
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())
        line = f"{arm.key} trial {trial.number}: {params}"
        if status is None:
            return line
        shown = f"{self.setup.metric} {_fmt(value)}" if _finite(value) else (error or "")
        return f"{line} -> {status} {shown}".rstrip()

    def _maybe_done(self, arm: Arm) -> None:
        if arm.asked_all and not any(a is arm for t in self.inflight.values() for a, _ in t):
            self.write_json()

    def abandon_inflight(self) -> None:
        """After Ctrl-C: the trials in flight are failed, not counted, and asked again later."""
        for trials in self.inflight.values():
            for arm, trial in trials:
                self._abandon(arm, trial.number, trial.params, "interrupted")
        self.inflight.clear()

    # ------------------------------------------------------------------ seeds and tune.json

    def seed_points(self) -> list[tuple[str, dict[str, Any]]]:
        from optbench.experiment.plan import make_plan

        points = []
        for arm in self.setup.arms:
            best = best_trial(arm.study)
            arm.seed_run_ids = []
            if best is None:
                self.display.skip(len(self.setup.tune.seeds))
                continue
            for seed in self.setup.tune.seeds:
                config = validate_config(config_with(arm.config, {**best.params, "seed": seed}))
                run_id = make_plan(config).run_id
                arm.seed_run_ids.append(run_id)
                run = RunDir(self.results_dir / self.setup.name / run_id)
                summary = run.read_summary()
                if (summary and summary.status in FINISHED) or run.is_locked():
                    self.display.skip(1)  # done, or trained now by a process sharing this tune
                    continue
                self.display.add(run_id, f"{arm.key} seed {seed} (best trial)", arm.epochs)
                points.append((run_id, config.to_dict()))
        return points

    def on_seed_result(self, result: Any) -> None:
        if result.write_failed:
            raise ResultsWriteError(result.error)
        if result.status not in FINISHED:
            self.failed_seeds += 1
        self.display.result(result)

    def arm_report(self, arm: Arm) -> TunedOptimizer:
        state = self.optuna.trial.TrialState
        every = arm.study.get_trials(deepcopy=False)
        trials = sorted(counted_trials(every), key=lambda t: asked_as(t, every))
        best = best_trial(arm.study)
        seed_values = []
        for run_id in arm.seed_run_ids:
            run = RunDir(self.results_dir / self.setup.name / run_id)
            summary = run.read_summary()
            value = _final(run, _rows(run), self.setup.metric)
            if summary and summary.status == Status.COMPLETED and _finite(value):
                seed_values.append(value)
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
            seed_values=seed_values,
        )

    def report(self) -> TuneFile:
        return TuneFile(
            name=self.setup.name,
            metric=self.setup.metric,
            direction=self.setup.direction,
            seeds=list(self.setup.tune.seeds),
            storage=self.storage_spec,
            optimizers={arm.key: self.arm_report(arm) for arm in self.setup.arms},
            notes=list(self.setup.notes),
        )

    def write_json(self) -> TuneFile:
        from optbench.storage.results import write_atomic

        report = self.report()
        folder = self.results_dir / self.setup.name
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / TUNE_FILE, json.dumps(report.to_dict(), indent=2) + "\n")
        return report


def _rows(run: RunDir) -> list[dict[str, Any]]:
    import pandas as pd

    try:
        frame = run.read_epochs()
    except (FileNotFoundError, pd.errors.EmptyDataError):  # gone meanwhile, or not yet written
        return []
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


def _final(run: RunDir, rows: list[dict[str, Any]], metric: str) -> float | None:
    """The metric at the run's last epoch: summary.json's final value, else epochs.csv's."""
    summary = run.read_summary()
    value = summary.final_value(metric) if summary else None
    if value is None and rows:
        value = rows[-1].get(metric)
    return float(value) if _finite(value) else None


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------- the command


@dataclasses.dataclass
class TuneReport:
    tune: TuneFile  # what tune.json holds (or would, when it could not be written)
    storage: str  # the Optuna storage the studies live in
    interrupted: bool = False
    failed: bool = False

    @property
    def report(self) -> dict[str, Any]:
        """tune.json's object, as written."""
        return self.tune.to_dict()


def run_tune(
    config_path: ConfigSource,
    overrides: Overrides | None = None,
    grid_options: Grid | None = None,
    results_dir: str | Path | None = None,
    *,
    workers: int | None = None,
    executor: str = "local",
    address: str | None = None,
    storage: str | None = None,
    trials: int | None = None,
    view: SweepView = QuietSweep,
    batch_trials: int | None = None,
) -> TuneReport:
    """`optbench tune`: check everything, tune each optimizer to its budget, rerun each best
    configuration with the seeds, and write tune.json. `view` makes what the tune reports to as
    it goes (the CLI's live view; by default nothing)."""
    setup = load_tune(config_path, overrides, grid_options, trials)
    (report,) = run_tunes(
        [setup],
        results_dir,
        workers=workers,
        executor=executor,
        address=address,
        storage=storage,
        view=view,
        batch_trials=batch_trials,
    )
    return report


def _tunes_named(names: list[str]) -> str:
    """Which tunes a note is about: one by name, several by their count, first and last."""
    if len(names) == 1:
        return names[0]
    return f"{len(names)} tunes ({names[0]} ... {names[-1]})"


def run_tunes(
    setups: list[TuneSetup],
    results_dir: str | Path | None = None,
    *,
    workers: int | None = None,
    executor: str = "local",
    address: str | None = None,
    storage: str | None = None,
    view: SweepView = QuietSweep,
    title: str = "tune",
    header: str | None = None,
    on_done: Callable[[Any, int, int], None] | None = None,
    batch_trials: int | None = None,
) -> list[TuneReport]:
    """Run several checked tunes (load_tune) on one executor run: their trials share one pool
    of workers, then so do their seed reruns (`optbench benchmark`'s pairs). Each tune keeps
    its own folder, studies and tune.json (storage: each its own journal, unless one is given).
    `on_done(display, tunes finished, tunes)` is called as each tune's seed reruns end (a
    benchmark notes its pairs done on the display). `batch_trials` (else the tune section's):
    trials trained K at a time (sweeps/batching.py), refused here when they cannot batch."""
    from optbench.sweeps.batching import batching_for
    from optbench.sweeps.executors import make_executor

    import_optuna()
    results = Path(results_dir or default_results_dir())
    check_results_dir(results)
    runner = make_executor(executor, workers, address, results, setups[0].name)
    batch_trials = setups[0].tune.batch_trials if batch_trials is None else batch_trials
    configs = [arm.config for setup in setups for arm in setup.arms]
    runner = batching_for(runner, results, batch_trials, configs)
    tuners, lines = [], []
    shared: dict[str, list[str]] = {}  # note -> the tunes it is about
    for setup in setups:
        spec = storage
        if spec is None:
            try:
                (results / setup.name).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise cannot_write(results / setup.name, exc) from None
            spec = str((results / setup.name / JOURNAL_FILE).resolve())
        dropped = 0 if "://" in spec else recover_journal(spec)
        tuner = Tuner(setup, results, spec)
        tuner.open_studies()
        tuners.append(tuner)
        if len(setups) == 1:
            lines.append(
                f"tune {setup.name}: {len(setup.arms)} optimizer(s) x {setup.tune.trials} "
                f"trials, {setup.direction} {setup.metric}, storage {spec}"
            )
        for note in setup.notes:  # several tunes (a benchmark's studies) share most notes
            shared.setdefault(note, []).append(setup.name)
        if dropped:
            lines.append(
                f"journal {spec}: dropped a torn last record ({dropped} bytes, a write that "
                "failed or was killed); every complete record is kept"
            )
    for note, names in shared.items():  # each note once, with the tunes it is about
        lines.append(note if len(setups) == 1 else f"{_tunes_named(names)}: {note}")
    header = "\n".join(([header] if header else []) + lines) or None

    # One live view for the trials and the seed reruns: the trials already told count as done.
    total = sum(arm.budget + len(t.setup.tune.seeds) for t in tuners for arm in t.setup.arms)
    told = sum(
        len(told_trials(arm.study.get_trials(deepcopy=False)))
        for t in tuners
        for arm in t.setup.arms
    )
    shown = view(total, told, None, title=title, header=header)
    with shown as display, contextlib.ExitStack() as beats:
        for tuner in tuners:
            tuner.display = (
                display if len(tuners) == 1 else LabelledDisplay(display, tuner.setup.name)
            )
            beats.enter_context(tuner.beating())
        pool = SharedPool(runner, display)
        try:
            pool.run([(t, t.points()) for t in tuners], lambda t: t.on_result)
            while short := [t for t in tuners if t.short()]:  # trials another process trained
                pool.run([(t, t.points()) for t in short], lambda t: t.on_result)
            _run_seeds(pool, tuners, on_done)
        except KeyboardInterrupt:
            reports = []
            for tuner in tuners:
                try:  # a full disk: recovered on resume
                    tuner.abandon_inflight()
                    reports.append(
                        TuneReport(tuner.write_json(), tuner.storage_spec, interrupted=True)
                    )
                except ResultsWriteError:
                    reports.append(TuneReport(tuner.report(), tuner.storage_spec, interrupted=True))
            return reports
        except ResultsWriteError:  # a full disk: stop, exit 3; the same command resumes
            for tuner in tuners:
                with contextlib.suppress(ResultsWriteError):
                    tuner.abandon_inflight()
            raise
    reports = []
    for tuner in tuners:
        report = tuner.write_json()
        failed = tuner.failed_seeds > 0 or any(a.best is None for a in report.optimizers.values())
        reports.append(TuneReport(report, tuner.storage_spec, failed=failed))
    return reports


def _run_seeds(
    pool: SharedPool, tuners: list[Tuner], on_done: Callable[[Any, int, int], None] | None
) -> None:
    """Every tune's seed reruns on the pool; a tune is done when its last one ends."""
    streams = [(tuner, tuner.seed_points()) for tuner in tuners]
    left = {id(tuner): len(points) for tuner, points in streams}
    done = sum(count == 0 for count in left.values())
    if on_done is not None:
        on_done(pool.display, done, len(tuners))

    def handler(tuner: Tuner) -> Callable[[Any], None]:
        def on_result(result: Any) -> None:  # counted first: the line printed says so
            nonlocal done
            left[id(tuner)] -= 1
            if left[id(tuner)] == 0:
                done += 1
                if on_done is not None:
                    on_done(pool.display, done, len(tuners))
            tuner.on_seed_result(result)

        return on_result

    pool.run(streams, handler, in_turn=False)


def tune_summary(report: dict[str, Any] | TuneFile) -> str:
    """Per optimizer: the best hyperparameters and their metric, then the seed reruns
    (mean ± std) and the budget spent."""
    tune = report if isinstance(report, TuneFile) else TuneFile.from_dict(report)
    metric, lines = tune.metric, []
    for key, arm in tune.optimizers.items():
        best = arm.best
        if best is None:
            lines.append(f"{key}: no completed trial")
        else:
            params = ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items()) or "-"
            lines.append(f"{key}: best {metric} {_fmt(best.value)} with {params} ({best.run_id})")
        values = arm.seed_values
        spread = f" ± {statistics.stdev(values):.2g}" if len(values) > 1 else ""
        seeds = f"{statistics.mean(values):.4g}{spread} (n={len(values)})" if values else "-"
        lines.append(
            f"  seeds {','.join(map(str, tune.seeds))}: {metric} {seeds}; "
            f"budget {arm.trials} trials ({arm.completed} completed, {arm.pruned} "
            f"pruned, {arm.failed} failed), {arm.epochs} epochs, {arm.seconds or 0.0:.1f} s"
        )
    return "\n".join(lines)
