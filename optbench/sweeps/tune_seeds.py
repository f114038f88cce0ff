"""A tune's seed reruns: each arm's best configuration trained again with the config's seeds.

Run after every arm's budget is told; a rerun that finished already (or is trained now by a
process sharing the tune) is skipped, and the completed ones' values go into tune.json.
"""

from __future__ import annotations

from typing import Any

from optbench.core.config import validate_config
from optbench.core.errors import ResultsWriteError
from optbench.storage.results import FINISHED, Status
from optbench.sweeps.study import best_trial
from optbench.sweeps.tune_runs import epoch_rows, final_value, finite
from optbench.sweeps.tune_setup import Arm, config_with
from optbench.sweeps.tune_studies import TuneContext


class SeedReruns:
    """The seed reruns' points, their results on the display, and the values they reached."""

    def __init__(self, context: TuneContext) -> None:
        self.context = context
        self.failed = 0  # reruns that did not finish

    def points(self) -> list[tuple[str, dict[str, Any]]]:
        from optbench.experiment.plan import make_plan

        context, points = self.context, []
        for arm in context.setup.arms:
            best = best_trial(arm.study)
            arm.seed_run_ids = []
            if best is None:
                context.display.skip(len(context.setup.tune.seeds))
                continue
            for seed in context.setup.tune.seeds:
                config = validate_config(config_with(arm.config, {**best.params, "seed": seed}))
                run_id = make_plan(config).run_id
                arm.seed_run_ids.append(run_id)
                run = context.run(run_id)
                summary = run.read_summary()
                if (summary and summary.status in FINISHED) or run.is_locked():
                    context.display.skip(1)  # done, or trained now by a process sharing this tune
                    continue
                context.display.add(run_id, f"{arm.key} seed {seed} (best trial)", arm.epochs)
                points.append((run_id, config.to_dict()))
        return points

    def on_result(self, result: Any) -> None:
        if result.write_failed:
            raise ResultsWriteError(result.error)
        if result.status not in FINISHED:
            self.failed += 1
        self.context.display.result(result)

    def values(self, arm: Arm) -> list[float]:
        """The metric each of the arm's completed reruns reached."""
        values = []
        for run_id in arm.seed_run_ids:
            run = self.context.run(run_id)
            summary = run.read_summary()
            value = final_value(run, epoch_rows(run), self.context.setup.metric)
            if summary and summary.status == Status.COMPLETED and finite(value):
                values.append(value)
        return values
