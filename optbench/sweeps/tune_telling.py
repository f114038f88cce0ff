"""A tune's results told to their trials as they arrive.

A finished run tells its trial (and any trial sharing its run) the metric, pruning or failure,
with the epochs its worker did not report; a run another process trained, a worker that died
(unless it keeps dying without finishing an epoch) or an interruption fails the trial without
counting it and asks its point again; a failed write stops the tune (exit 3, resumed later).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from optbench.core.errors import ResultsWriteError
from optbench.storage.results import Status
from optbench.sweeps.reruns import DeathCount
from optbench.sweeps.study import EPOCHS, NOT_COUNTED, SECONDS, STATUS, one_fsync
from optbench.sweeps.tune_runs import describe, epoch_rows, final_value, finite
from optbench.sweeps.tune_setup import Arm
from optbench.sweeps.tune_studies import Studies, TuneContext


class TrialTeller:
    """Tells each result to the trials in flight for its run; `told_all` is called for an arm
    whose trial was told (it writes tune.json once the arm is asked all and none is in flight)."""

    def __init__(
        self, context: TuneContext, studies: Studies, told_all: Callable[[Arm], None]
    ) -> None:
        self.context, self.studies, self.told_all = context, studies, told_all
        self.deaths = DeathCount()  # a run whose worker died: asked again, up to MAX_DEATHS

    def on_result(self, result: Any) -> None:
        context, fail = self.context, self.context.state.FAIL
        if result.busy:  # trained meanwhile by a process sharing the study: ask another point
            for arm, trial in context.inflight.pop(result.run_id, []):
                trial.set_user_attr(NOT_COUNTED, "its run was trained by another process")
                arm.study.tell(trial, state=fail)
                arm.short = True
            context.display.result(result)
            return
        if result.died and self._died(result):  # not the trial's fault: asked again now
            for arm, trial in context.inflight.pop(result.run_id, []):
                why = result.error or "its worker died"
                self.studies.abandon(arm, trial.number, trial.params, why)
                arm.short = True
            context.display.result(result, f"{result.error}: asked again, not counted")
            return
        if result.write_failed:  # a full disk: not the trial's fault; asked again on resume
            for arm, trial in context.inflight.pop(result.run_id, []):
                with contextlib.suppress(ResultsWriteError):  # else its process is gone then
                    self.studies.abandon(arm, trial.number, trial.params, "write failed")
            raise ResultsWriteError(result.error)
        lines = []
        for arm, trial in context.inflight.pop(result.run_id, []):
            lines.append(self.tell(arm, trial, result.run_id, Status(result.status), result.error))
            self.told_all(arm)
        told = [line for line in lines if line is not None]
        context.display.result(result, "; ".join(told) if told else None)

    def _died(self, result: Any) -> bool:
        """Whether a run whose process died is asked again: yes, unless it died MAX_DEATHS
        times in a row without finishing an epoch in between (a run the out-of-memory killer
        ends every time); then it fails and counts, saying so (sweeps/reruns.py)."""
        return self.deaths.again(result, self.context.run(result.run_id))

    @one_fsync()  # its epochs reported, attributes and state: some 24 records, fsynced once
    def tell(
        self, arm: Arm, trial: Any, run_id: str, status: Status, error: str | None
    ) -> str | None:
        """Tell the study how the trial's run ended; the line that says so (None: the trial
        was interrupted and is asked again)."""
        context, state, metric = self.context, self.context.state, self.context.setup.metric
        run = context.run(run_id)
        rows = epoch_rows(run)
        if status is Status.INTERRUPTED:
            self.studies.abandon(arm, trial.number, trial.params, "interrupted")
            return None
        trial_id = self.studies.trial_id(arm, trial.number)
        reported = context.storage.get_trial(trial_id).intermediate_values
        ends = {row["epoch"]: row for row in rows}.values()  # each epoch's last row (eval_every)
        for row in ends:  # the epochs a worker did not report (no pruner, or answered from disk)
            if row["epoch"] not in reported and finite(row.get(metric)):
                trial.report(float(row[metric]), int(row["epoch"]))
        trial.set_user_attr(STATUS, str(status))
        trial.set_user_attr(EPOCHS, len(ends))
        trial.set_user_attr(SECONDS, round(sum(r["seconds"] + r["eval_seconds"] for r in rows), 3))
        value = final_value(run, rows, metric)
        if status is Status.COMPLETED and finite(value):
            arm.study.tell(trial, value)
        elif status is Status.PRUNED:
            arm.study.tell(trial, state=state.PRUNED)
        else:
            if error:
                trial.set_user_attr("error", error[:500])
            arm.study.tell(trial, state=state.FAIL)
        return describe(arm.key, trial, metric, str(status), value, error)

    def abandon_inflight(self) -> None:
        """After Ctrl-C: the trials in flight are failed, not counted, and asked again later."""
        for trials in self.context.inflight.values():
            for arm, trial in trials:
                self.studies.abandon(arm, trial.number, trial.params, "interrupted")
        self.context.inflight.clear()
