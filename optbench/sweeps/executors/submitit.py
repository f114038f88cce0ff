"""Jobs on a Slurm cluster through submitit: the submitit executor. A sweep's points go as one
job array, a tune's or a benchmark's as single jobs, submitted as a job slot frees (a tune
asks Optuna for a trial only then). Each job trains its run straight into the shared results
folder, with checkpoints, and submitit hands back its PointResult through the shared `folder`.

A preempted or timed-out job is requeued by submitit's checkpoint hook (`TrainJob.checkpoint`)
and resumes from the run's last checkpoint, exactly as a run resumes after SIGKILL; a cancelled
or killed job is a worker that died: its run is trained again, resuming (sweeps/reruns.py).
`cluster: local`
runs the jobs as processes on this machine (submitit's LocalExecutor), as the tests do.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optbench.core.byvalue import with_objects
from optbench.core.errors import ConfigError
from optbench.storage.results import Status
from optbench.sweeps.executors.base import (
    OnMessage,
    OnResult,
    Pending,
    Point,
    PointResult,
    check_workers,
    train_point,
)

CLUSTERS = ("slurm", "local")
POLL_SECONDS = 1.0  # how often finished jobs are looked for (a result file in `folder`)


class TrainJob:
    """What a job runs: one point, trained into the shared results folder. Checkpointable in
    submitit's sense: on preemption or timeout submitit calls `checkpoint` and requeues the same
    call, which resumes the run from its last checkpoint."""

    def __init__(self, results_dir: str, config_folder: str | None) -> None:
        self.results_dir, self.config_folder = results_dir, config_folder

    def __call__(
        self, run_id: str, config: dict[str, Any], threads: int, *watch: Any
    ) -> PointResult:
        if self.config_folder and self.config_folder not in sys.path:
            sys.path.append(self.config_folder)  # its modules, as anchor_to_folder on the driver
        return train_point(run_id, config, self.results_dir, None, *watch, threads=threads)

    def checkpoint(self, *args: Any) -> Any:
        """The same call again: the run on disk holds the progress (submitit's hook)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args)


@dataclass(frozen=True)
class SubmititExecutor:
    """Slurm jobs (or, `cluster: local`, processes here) through submitit. `folder` holds
    submitit's pickles and logs (default: RESULTS/.submitit); it and the results folder must be
    on a filesystem every node mounts. `workers`: jobs running at once (default: as many as
    Slurm starts; locally one per CPU core). `partition`, `timeout_min`, `gpus_per_node`,
    `cpus_per_task`, `mem_gb`, `setup` (shell lines before each job, e.g. `module load`) and
    `slurm` (any other sbatch option submitit knows: {account: ..., qos: ...}) go to sbatch."""

    results_dir: Path
    folder: str | None = None
    cluster: str | None = None
    partition: str | None = None
    timeout_min: int = 60
    gpus_per_node: int = 0
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    workers: int | None = None
    setup: list[str] | None = None
    slurm: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        cluster = self.cluster or ("slurm" if shutil.which("srun") else "local")
        if cluster not in CLUSTERS:
            raise ConfigError(
                "executor.cluster", f"must be one of {', '.join(CLUSTERS)}, got {cluster!r}"
            )
        object.__setattr__(self, "cluster", cluster)
        if self.workers is not None:
            check_workers(self.workers)
        if self.timeout_min < 1:
            raise ConfigError("executor.timeout_min", f"must be at least 1, got {self.timeout_min}")
        folder = Path(self.folder or self.results_dir / ".submitit").absolute()
        object.__setattr__(self, "folder", str(folder))
        _check_writable(folder, "executor.folder")
        if cluster == "slurm":
            for path, field in ((folder, "executor.folder"), (self.results_dir, "--results-dir")):
                _check_shared(Path(path), field)
        _check_sbatch_options(self.slurm)

    def parameters(self) -> dict[str, Any]:
        """submitit's AutoExecutor.update_parameters keywords for these options."""
        given = {
            "name": "optbench",
            "timeout_min": self.timeout_min,
            "gpus_per_node": self.gpus_per_node,
            "cpus_per_task": self.cpus_per_task,
            "mem_gb": self.mem_gb,
            "slurm_partition": self.partition,
            "slurm_setup": self.setup,
            "slurm_array_parallelism": self.workers,
        }
        given.update({f"slurm_{k}": v for k, v in (self.slurm or {}).items()})
        return {k: v for k, v in given.items() if v is not None}

    def submitit_executor(self) -> Any:
        """submitit's executor for these options (its folder made here)."""
        try:
            import submitit
        except ImportError:
            raise ConfigError(
                "executor", "submitit needs submitit: pip install 'optbench[submitit]'"
            ) from None
        executor = submitit.AutoExecutor(folder=str(self.folder), cluster=self.cluster)
        executor.update_parameters(**self.parameters())
        return executor

    def submit(self, executor: Any, points: list[Point]) -> dict[Any, str]:
        """Submit `points` (one job each; on Slurm several go as one job array): job -> run-id."""
        from optbench.core.config import config_folder
        from optbench.experiment.plan import TORCH_DEFAULT_THREADS as threads

        folder = config_folder()
        job = TrainJob(str(Path(self.results_dir).absolute()), str(folder) if folder else None)
        with executor.batch():  # on Slurm, more than one point is one job array
            submitted = [  # Python objects the config names go by value
                executor.submit(job, p[0], with_objects(p[1]), threads, *p[2:]) for p in points
            ]
        return {each: point[0] for each, point in zip(submitted, points, strict=True)}

    def run(self, points: Iterable[Point], on_message: OnMessage, on_result: OnResult) -> None:
        executor = self.submitit_executor()
        todo = Pending(points)
        jobs: dict[Any, str] = {}
        if self.cluster == "slurm" and isinstance(points, Sized) and len(points) > 1:
            jobs = self.submit(executor, list(points))  # one array; Slurm runs `workers` at once
            todo = Pending([])
        at_once = self.workers or (len(points) if isinstance(points, Sized) else None)
        if self.cluster == "local":
            at_once = check_workers(self.workers)
        try:
            while jobs or todo:
                while (at_once is None or len(jobs) < at_once) and todo.peek():
                    jobs.update(self.submit(executor, [todo.pop()]))
                finished = [job for job in jobs if job.done()]
                for job in finished:
                    if self.cluster == "local":  # no shared filesystem's lag to wait out
                        job._results_timeout_s = 0
                    on_result(_outcome(job, jobs.pop(job)))
                if not finished:
                    time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            for job in jobs:  # their runs stop resumably, or are killed and resume from disk
                job.cancel(check=False)
            raise


def _outcome(job: Any, run_id: str) -> PointResult:
    """The job's PointResult, or a failed one saying how the job ended without one (killed,
    cancelled, out of time with no requeue left): the run resumes when trained again."""
    try:
        return job.result()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        error = f"the submitit job {job.job_id} running it ended without a result: {first}"
        return PointResult(run_id, Status.FAILED, error, died=True)


def _check_writable(folder: Path, field: str) -> None:
    """Refuse a folder this process cannot create or write into, before anything is written."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(field, f"{existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(field, f"{existing} is not writable by this user")
    if os.statvfs(existing).f_flag & os.ST_RDONLY:  # root passes os.access there
        raise ConfigError(field, f"{existing} is on a read-only filesystem")


def _check_shared(path: Path, field: str) -> None:
    """Refuse, on a Slurm cluster, a folder under this machine's temp dir: the nodes cannot
    see it (each has its own), so their jobs would fail or write where nobody reads."""
    local = Path(tempfile.gettempdir()).resolve()
    if path.absolute().resolve().is_relative_to(local):
        raise ConfigError(
            field,
            f"{path} is under {local}, each machine's own disk: Slurm jobs need a folder "
            "every node mounts (a shared home or project filesystem)",
        )


def _check_sbatch_options(options: dict[str, Any] | None) -> None:
    """Refuse an sbatch option submitit does not know, naming it (no submitit import needed
    when there are none)."""
    if not options:
        return
    if not isinstance(options, dict):
        raise ConfigError("executor.slurm", "must map sbatch options to values")
    from submitit.slurm.slurm import _get_default_parameters

    from optbench.core.errors import did_you_mean

    known = _get_default_parameters()
    for key in options:
        if key not in known:
            raise ConfigError(
                f"executor.slurm.{key}",
                f"not an sbatch option submitit knows{did_you_mean(key, known)}",
            )


EXECUTOR = SubmititExecutor  # registered as `submitit` (executors/__init__.py)
