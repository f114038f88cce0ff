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
import statistics
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optbench.core.config import ConfigSource, Overrides, default_results_dir
from optbench.core.errors import ResultsWriteError
from optbench.storage.records import TuneFile
from optbench.storage.results import cannot_write, check_results_dir
from optbench.sweeps.executors import Executor, QuietSweep, SweepView
from optbench.sweeps.reruns import Rerunning, show_rerun
from optbench.sweeps.shared_pool import LabelledDisplay, SharedPool
from optbench.sweeps.study import JOURNAL_FILE, import_optuna, recover_journal, told_trials
from optbench.sweeps.tune_asking import TrialAsker
from optbench.sweeps.tune_file import tune_file, write_tune_file
from optbench.sweeps.tune_runs import fmt
from optbench.sweeps.tune_seeds import SeedReruns
from optbench.sweeps.tune_setup import Arm, TuneSetup, load_tune
from optbench.sweeps.tune_studies import Studies, TuneContext
from optbench.sweeps.tune_telling import TrialTeller

if TYPE_CHECKING:
    from optbench.sweeps.grid import Grid

# --------------------------------------------------------------------------- the driver


class Tuner:
    """One tune driven to its budgets: asks trials lazily, tells results as they come, keeps
    the studies honest, reruns the best with the seeds and writes tune.json. Each job is its
    own part, all sharing one TuneContext: Studies (tune_studies.py), TrialAsker
    (tune_asking.py), TrialTeller (tune_telling.py), SeedReruns (tune_seeds.py) and tune.json
    (tune_file.py)."""

    def __init__(self, setup: TuneSetup, results_dir: Path, storage: str) -> None:
        self.context = TuneContext.open(setup, results_dir, storage)
        self.studies = Studies(self.context)
        self.teller = TrialTeller(self.context, self.studies, self._maybe_done)
        self.asker = TrialAsker(self.context, self.studies, self.teller.tell, self._maybe_done)
        self.seeds = SeedReruns(self.context)

    @property
    def setup(self) -> TuneSetup:
        return self.context.setup

    @property
    def storage_spec(self) -> str:
        return self.context.storage_spec

    @property
    def display(self) -> Any:
        return self.context.display

    @display.setter
    def display(self, display: Any) -> None:
        self.context.display = display

    @property
    def failed_seeds(self) -> int:
        return self.seeds.failed

    def open_studies(self) -> None:
        self.studies.open_all()

    def beating(self) -> contextlib.AbstractContextManager[None]:
        return self.studies.beating()

    def points(self) -> Iterator[tuple[Any, ...]]:
        return self.asker.points()

    def short(self) -> bool:
        return self.asker.short()

    def on_result(self, result: Any) -> None:
        self.teller.on_result(result)

    def abandon_inflight(self) -> None:
        self.teller.abandon_inflight()

    def seed_points(self) -> list[tuple[str, dict[str, Any]]]:
        return self.seeds.points()

    def on_seed_result(self, result: Any) -> None:
        self.seeds.on_result(result)

    def report(self) -> TuneFile:
        return tune_file(self.context, self.seeds)

    def write_json(self) -> TuneFile:
        return write_tune_file(self.context, self.seeds)

    def _maybe_done(self, arm: Arm) -> None:
        """tune.json written as soon as an arm is asked all and none of its trials is in flight."""
        inflight = self.context.inflight.values()
        if arm.asked_all and not any(a is arm for t in inflight for a, _ in t):
            self.write_json()


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
    executor: Executor | None = None,
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
        executor=executor,
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
    executor: Executor | None = None,
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
    from optbench.sweeps.executors import plan_executor

    import_optuna()
    results = Path(results_dir or default_results_dir())
    check_results_dir(results)
    runner = executor or plan_executor(results)  # default: local workers, one per CPU core
    batch_trials = setups[0].tune.batch_trials if batch_trials is None else batch_trials
    configs = [arm.config for setup in setups for arm in setup.arms]
    runner = batching_for(runner, batch_trials, configs)
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

    # a seed rerun whose worker died is trained again (sweeps/reruns.py), not failed
    context = tuners[0].context if tuners else None
    rerunning = Rerunning(
        pool.runner,
        context.results_dir if context else Path(),
        context.setup.name if context else "",
        lambda died: show_rerun(pool.display, died),
    )
    SharedPool(rerunning, pool.display).run(streams, handler, in_turn=False)


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
            params = ", ".join(f"{k}={fmt(v)}" for k, v in best.params.items()) or "-"
            lines.append(f"{key}: best {metric} {fmt(best.value)} with {params} ({best.run_id})")
        values = arm.seed_values
        spread = f" ± {statistics.stdev(values):.2g}" if len(values) > 1 else ""
        seeds = f"{statistics.mean(values):.4g}{spread} (n={len(values)})" if values else "-"
        lines.append(
            f"  seeds {','.join(map(str, tune.seeds))}: {metric} {seeds}; "
            f"budget {arm.trials} trials ({arm.completed} completed, {arm.pruned} "
            f"pruned, {arm.failed} failed), {arm.epochs} epochs, {arm.seconds or 0.0:.1f} s"
        )
    return "\n".join(lines)
