"""A tune's studies from opening to abandoning: what the other parts of a tune share, the ask
lock, heartbeats, and trials whose process died failed without counting and asked again.

TuneContext is the state the parts of one tune (asking, telling, seed reruns, tune.json) share;
Studies opens the arms' studies on the storage and keeps them honest while trials run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from optbench.core.errors import ConfigError
from optbench.storage.results import RunDir
from optbench.sweeps.study import (
    HEARTBEAT_SECONDS,
    NOT_COUNTED,
    OWNER,
    RETRY_OF,
    import_optuna,
    make_pruner,
    make_sampler,
    open_storage,
    owner_alive,
    trial_owner,
)
from optbench.sweeps.tune_setup import Arm, TuneSetup

ASK_LOCK = "optuna-asking.lock"  # the ask lock of a tune on a storage URL, in its folder


@dataclasses.dataclass
class TuneContext:
    """One tune as its parts share it: its plan, where its runs and studies live, who asks
    (this process), the trials in flight by run-id, and the display it reports to."""

    setup: TuneSetup
    results_dir: Path
    storage_spec: str
    optuna: Any
    storage: Any
    owner: dict[str, Any]
    inflight: dict[str, list[tuple[Arm, Any]]] = dataclasses.field(default_factory=dict)
    display: Any = None  # ui/display.py SweepDisplay, set while the tune runs

    @classmethod
    def open(cls, setup: TuneSetup, results_dir: Path, storage_spec: str) -> TuneContext:
        optuna = import_optuna()
        return cls(
            setup, results_dir, storage_spec, optuna, open_storage(storage_spec), trial_owner()
        )

    @property
    def state(self) -> Any:
        """Optuna's TrialState."""
        return self.optuna.trial.TrialState

    def run(self, run_id: str) -> RunDir:
        return RunDir(self.results_dir / self.setup.name / run_id)


class Studies:
    """The arms' studies on the storage: opened (or loaded), locked while asking, beating while
    trials run, and cleared of trials whose process died."""

    def __init__(self, context: TuneContext) -> None:
        self.context = context

    def open_all(self) -> None:
        tune, setup, optuna = self.context.setup.tune, self.context.setup, self.context.optuna
        for number, arm in enumerate(setup.arms):
            arm.budget = tune.trials
            if tune.sampler == "grid":
                arm.budget = min(arm.budget, math.prod(len(d.bounds) for d in arm.space.values()))
            seed = int(hashlib.sha256(arm.study_name.encode()).hexdigest()[:8], 16) + number
            try:
                arm.study = optuna.create_study(
                    storage=self.context.storage,
                    study_name=arm.study_name,
                    sampler=make_sampler(tune.sampler, arm.space, seed),
                    pruner=make_pruner(tune.pruner, arm.epochs),
                    direction=setup.direction,
                    load_if_exists=True,
                )
            except ValueError as exc:  # an existing study with the other direction
                raise ConfigError(f"study {arm.study_name}: {exc}") from None
            arm.seed = seed
            arm.study_id = self.context.storage.get_study_id_from_name(arm.study_name)
            arm.study.set_user_attr("optbench", {"optimizer": arm.key, "metric": setup.metric})
            with self.asking():
                self.recover(arm, opening=True)

    def asking(self) -> contextlib.AbstractContextManager[bool]:
        """The ask lock (a flock beside the journal, or in the tune's folder for a storage URL):
        held from asking a trial until its owner is recorded, and while a tune opening the
        study looks for trials whose asker died, so it never mistakes one being asked for one.
        The kernel drops it when its holder dies. Processes on other hosts sharing an RDB
        storage are told apart by their heartbeats instead."""
        from optbench.components.data.tensor_cache import exclusive  # the tensor file's flock

        spec = self.context.storage_spec
        if "://" in spec:
            return exclusive(self.context.results_dir / self.context.setup.name / ASK_LOCK)
        return exclusive(Path(f"{spec}.asking"))

    @property
    def heartbeats(self) -> bool:
        """Whether the storage keeps Optuna's heartbeats (an RDB storage, see open_storage)."""
        interval = getattr(self.context.storage, "get_heartbeat_interval", lambda: None)
        return interval() is not None

    def recover(self, arm: Arm, opening: bool = False) -> None:
        """Trials left RUNNING by a process that died (its owner gone from this host, or its
        heartbeat stale): failed, not counted, asked again. When `opening` the study (under the
        ask lock, see asking), so is one that never recorded its owner: its asker was killed or
        its write failed between asking and recording, since a live one holds the lock then."""
        optuna = self.context.optuna
        if self.heartbeats:
            self.beat()  # ours are alive: only other processes' trials can be stale now
            with warnings.catch_warnings():  # "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # each is asked again by open_storage's stale-trial callback (study.py)
                optuna.storages.fail_stale_trials(arm.study)
        running = (self.context.state.RUNNING,)
        for trial in arm.study.get_trials(deepcopy=False, states=running):
            if OWNER not in trial.user_attrs and opening:  # under the ask lock: its asker is gone
                why = "its asker stopped before recording itself (killed, or a write failed)"
            elif not owner_alive(trial.user_attrs.get(OWNER)):
                why = "its process died"
            else:
                continue
            self.abandon(arm, trial.number, trial.params, why)

    def beat(self) -> None:
        """Record a heartbeat for every trial in flight (called every HEARTBEAT_SECONDS)."""
        try:
            inflight = list(self.context.inflight.values())
            trials = [(arm, trial) for told in inflight for arm, trial in told]
        except RuntimeError:  # changed while copied: the next beat has it
            return
        for arm, trial in trials:
            with contextlib.suppress(Exception):  # told meanwhile, or the storage hiccupped
                self.context.storage.record_heartbeat(self.trial_id(arm, trial.number))

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

    def trial_id(self, arm: Arm, number: int) -> int:
        """The storage's id of the arm's trial `number`, through the storage's public API
        (Optuna's Trial and FrozenTrial keep theirs private)."""
        return self.context.storage.get_trial_id_from_study_id_trial_number(arm.study_id, number)

    def abandon(self, arm: Arm, number: int, params: dict[str, Any], why: str) -> None:
        """Fail a trial without counting it and queue its point again (the same run-id, which
        resumes from its checkpoint). Its retry is queued first and only once, so a process
        killed at any step of this leaves the point asked again, never lost nor asked twice."""
        trials = arm.study.get_trials(deepcopy=False)
        if not any(t.user_attrs.get(RETRY_OF) == number for t in trials):
            arm.study.enqueue_trial(params, user_attrs={RETRY_OF: number})
        self.context.storage.set_trial_user_attr(self.trial_id(arm, number), NOT_COUNTED, why)
        arm.study.tell(number, state=self.context.state.FAIL, skip_if_finished=True)

    def claim(self, trial: Any, key: str, value: Any) -> bool:
        """Record `key` on a trial just asked; False when another tune opening the study at
        that moment took it for abandoned (asked, its owner not yet recorded) and failed it:
        that tune queued its point again, so this one asks anew."""
        try:
            trial.set_user_attr(key, value)
        except self.context.optuna.exceptions.UpdateFinishedTrialError:
            return False
        return True
