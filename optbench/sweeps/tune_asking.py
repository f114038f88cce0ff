"""A tune's trials asked lazily, one when a worker can take it, each an ordinary run's point.

Each arm is asked until its budget is counted: a trial is asked under the study's ask lock,
planned into its run (an invalid point fails, counted), answered from disk when its run already
finished, shared when another trial or process trains the same run, and otherwise handed to the
executor with the TrialWatch its worker prunes by.
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from optbench.core.config import validate_config
from optbench.core.errors import ConfigError
from optbench.storage.results import FINISHED, RunDir, Status
from optbench.sweeps.pruning import TrialWatch
from optbench.sweeps.study import (
    NOT_COUNTED,
    OWNER,
    RETRY_OF,
    RUN_ID,
    STATUS,
    counted_trials,
    make_distribution,
    make_sampler,
)
from optbench.sweeps.tune_runs import describe
from optbench.sweeps.tune_setup import Arm, config_with
from optbench.sweeps.tune_studies import Studies, TuneContext

# Points asked in a row that another process sharing the study was training (asked at the same
# moment): asked again up to this many times, then its result is waited for and shared.
MAX_REASKS = 5


class TrialAsker:
    """The tune's points, arm after arm; `tell` says how a trial answered from disk ended (the
    telling part's) and `asked_all` is called when an arm has asked its whole budget."""

    def __init__(
        self,
        context: TuneContext,
        studies: Studies,
        tell: Callable[[Arm, Any, str, Status, str | None], str | None],
        asked_all: Callable[[Arm], None],
    ) -> None:
        self.context, self.studies = context, studies
        self.tell, self.asked_all = tell, asked_all

    def points(self) -> Iterator[tuple[Any, ...]]:
        return itertools.chain.from_iterable(self._trials(arm) for arm in self.context.setup.arms)

    def short(self) -> bool:
        """Whether an arm lost a trial after it was asked all (see TrialTeller); resets them."""
        arms = [arm for arm in self.context.setup.arms if arm.short]
        for arm in self.context.setup.arms:
            arm.short = arm.asked_all = False
        return bool(arms)

    def _trials(self, arm: Arm) -> Iterator[tuple[Any, ...]]:
        distributions = {k: make_distribution(d) for k, d in arm.space.items()}
        repeats = 0  # points asked in a row that another process was training
        while True:
            if self.studies.heartbeats:  # a trial of another host's dead tune is asked again now
                self.studies.recover(arm)
            if self._budget_spent(arm):
                break
            with self.studies.asking():
                trial = self._ask(arm, distributions)
                claimed = self.studies.claim(trial, OWNER, self.context.owner)
            if not claimed:
                continue
            if self.studies.heartbeats:
                self.context.storage.record_heartbeat(self.studies.trial_id(arm, trial.number))
            if self._over_budget(arm, trial):  # another process took the last one meanwhile
                break
            planned = self._plan(arm, trial)
            if planned is None or not self.studies.claim(trial, RUN_ID, planned[1].run_id):
                continue
            config, plan = planned
            run = self.context.run(plan.run_id)
            twin = None if plan.run_id in self.context.inflight else self._twin(arm, trial, run)
            if twin is not None and repeats < MAX_REASKS:  # asked at once by another process
                repeats += 1
                trial.set_user_attr(NOT_COUNTED, twin)
                arm.study.tell(trial, state=self.context.state.FAIL)
                continue
            if twin is not None:  # the space holds no other point now: share its result
                while run.is_locked():
                    time.sleep(0.5)
            repeats = 0
            point = self._point(arm, trial, config, plan.run_id, run)
            if point is not None:
                yield point
        arm.asked_all = True
        self.asked_all(arm)

    def _budget_spent(self, arm: Arm) -> bool:
        counted = counted_trials(arm.study.get_trials(deepcopy=False))
        waiting = any(t.state == self.context.state.WAITING for t in counted)  # queued: counted
        return len(counted) >= arm.budget and not waiting

    def _over_budget(self, arm: Arm, trial: Any) -> bool:
        """Whether the trial just asked is past the budget (another process asked the last
        one meanwhile): then it fails, not counted."""
        before = [
            t
            for t in counted_trials(arm.study.get_trials(deepcopy=False))
            if t.number < trial.number
        ]
        if len(before) < arm.budget:
            return False
        trial.set_user_attr(NOT_COUNTED, "over the budget")
        arm.study.tell(trial, state=self.context.state.FAIL)
        return True

    def _plan(self, arm: Arm, trial: Any) -> tuple[Any, Any] | None:
        """The trial's config and run plan; None when its point is refused (failed, counted)."""
        from optbench.experiment.plan import make_plan

        try:
            config = validate_config(config_with(arm.config, trial.params))
            return config, make_plan(config)
        except ConfigError as exc:
            trial.set_user_attr(STATUS, "invalid")
            trial.set_user_attr("error", str(exc))
            arm.study.tell(trial, state=self.context.state.FAIL)
            metric = self.context.setup.metric
            self.context.display.answered(
                describe(arm.key, trial, metric, "invalid", None, str(exc))
            )
            return None

    def _point(
        self, arm: Arm, trial: Any, config: Any, run_id: str, run: RunDir
    ) -> tuple[Any, ...] | None:
        """The executor's point for the trial; None when it is answered from disk or shares a
        run that is training for another trial."""
        context = self.context
        summary = run.read_summary()
        if summary and summary.status in FINISHED:
            line = self.tell(arm, trial, run_id, Status(summary.status), None)
            context.display.answered(f"{line} (on disk)")
            return None
        waiting = run_id in context.inflight
        context.inflight.setdefault(run_id, []).append((arm, trial))
        if waiting:  # the same run is training for another trial: share its result
            return None
        tune = context.setup.tune
        watch = None
        if tune.pruner != "none":
            watch = TrialWatch(
                context.storage_spec,
                arm.study_name,
                self.studies.trial_id(arm, trial.number),
                context.setup.metric,
                tune.pruner,
                arm.epochs,
            )
        context.display.add(run_id, describe(arm.key, trial, context.setup.metric), arm.epochs)
        return (run_id, config.to_dict(), *([watch] if watch else []))

    def _ask(self, arm: Arm, distributions: dict[str, Any]) -> Any:
        """A new trial. TPE and random samplers are seeded with the arm's seed plus the trials
        the study holds that are not retries: a tune asks the same trials every time, a resumed
        one new ones, one whose trials were retried (a killed worker or driver) the same ones
        as an undisturbed tune, and two processes sharing the study, asking one after the
        other, different ones. Asking and recording the owner happen under the study's ask
        lock, so a tune opening the study never takes a trial being asked for abandoned."""
        sampler = self.context.setup.tune.sampler
        if sampler in ("tpe", "random"):
            trials = arm.study.get_trials(deepcopy=False)
            fresh = sum(RETRY_OF not in t.user_attrs for t in trials)  # a retry asks no sample
            arm.study.sampler = make_sampler(sampler, arm.space, arm.seed + fresh)
        with warnings.catch_warnings():  # Optuna wants heartbeats from optimize(); ours
            warnings.filterwarnings("ignore", "Heartbeat of storage")  # come from beating()
            return arm.study.ask(distributions)

    def _twin(self, arm: Arm, trial: Any, run: RunDir) -> str | None:
        """Why another process is training this trial's point now (both asked it at the same
        moment), None when none is."""
        running = (self.context.state.RUNNING,)
        for other in counted_trials(arm.study.get_trials(deepcopy=False, states=running)):
            mine = other.number == trial.number or other.user_attrs.get(OWNER) == self.context.owner
            same = other.params == trial.params or other.user_attrs.get(RUN_ID) == run.path.name
            if same and not mine:
                return f"the point of trial {other.number}, asked by another process"
        return "its run is being trained by another process" if run.is_locked() else None
