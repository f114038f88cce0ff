"""Tasks on a Ray cluster: the ray executor. Each task trains in a scratch folder on whichever
node runs it and sends the run's files back (shipping.py), so the cluster needs no shared
filesystem. Each run asks Ray for `cpus_per_run` CPUs and `gpus_per_run` GPUs (0.25: four runs
share a GPU)."""

from __future__ import annotations

from collections.abc import Iterable
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
)
from optbench.sweeps.executors.shipping import (
    SHIP_EXCLUDES,
    Shipper,
    train_shipped,
    write_run_files,
)

# Added to a refused connection to an explicit address: Ray says only that it failed, and a
# cluster with token authentication refuses a driver without its token (Ray 2.52 and later).
TOKEN_HINT = (
    "; a cluster with token authentication needs RAY_AUTH_MODE=token and its token in "
    "RAY_AUTH_TOKEN or a file named by RAY_AUTH_TOKEN_PATH (docs/sweeps.md)"
)


@dataclass(frozen=True)
class RayExecutor:
    """Tasks on the Ray cluster at `address` (`auto`: the one this machine belongs to;
    `IP:6379` or `ray://IP:10001` from elsewhere; unset: a local Ray instance of `workers` CPUs,
    started here). Each run reserves `cpus_per_run` CPUs and `gpus_per_run` GPUs (a fraction
    packs several runs on one GPU)."""

    results_dir: Path
    address: str | None = None
    workers: int | None = None
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "workers", check_workers(self.workers))
        for field in ("cpus_per_run", "gpus_per_run"):
            if getattr(self, field) < 0:
                raise ConfigError(f"executor.{field}", f"must be >= 0, got {getattr(self, field)}")
        if self.cpus_per_run == 0 and self.gpus_per_run == 0:
            raise ConfigError("executor.cpus_per_run", "a run needs some CPU or GPU share, got 0")

    def run(self, points: Iterable[Point], on_message: OnMessage, on_result: OnResult) -> None:
        from optbench.core.config import config_folder

        ray, shipper = self._connect(config_folder())
        from optbench.experiment.plan import TORCH_DEFAULT_THREADS as threads

        task = ray.remote(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run, max_retries=0)
        task = task(train_shipped)
        slots = self.slots(ray.cluster_resources())
        todo = Pending(points)
        refs: dict[Any, str] = {}
        try:
            while refs or todo:
                while len(refs) < slots and todo.peek():
                    run_id, config, *watch = todo.pop()
                    shipped = shipper.point(with_objects(config), ray.get)  # objects by value
                    refs[task.remote(run_id, *shipped, threads, *watch)] = run_id
                if not refs:
                    continue
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
                for ref in ready:
                    run_id = refs.pop(ref)
                    try:
                        payload = ray.get(ref)
                    except Exception as exc:  # the task itself died (node lost, OOM)
                        error = f"Ray task failed: {exc}"
                        on_result(PointResult(run_id, Status.FAILED, error, died=True))
                        continue
                    write_run_files(self.results_dir, payload["runs"])
                    on_result(payload["result"])
        except KeyboardInterrupt:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise

    def slots(self, cluster: dict[str, float]) -> int:
        """How many runs the cluster holds at once: so many tasks are in flight, no more (the
        rest wait here, so a tune asks for a trial only when it can start)."""
        limits = []
        if self.cpus_per_run:
            limits.append(cluster.get("CPU", self.workers or 1) / self.cpus_per_run)
        if self.gpus_per_run:
            gpus = cluster.get("GPU", 0.0)
            if gpus <= 0:
                raise ConfigError(
                    "executor.gpus_per_run",
                    f"{self.gpus_per_run} GPU per run, but the Ray cluster has no GPU",
                )
            limits.append(gpus / self.gpus_per_run)
        return max(1, int(min(limits)))

    def _connect(self, folder: Path | None) -> tuple[Any, Shipper]:
        """Ray, connected (a local instance started when no address is given). Ray uploads a
        working_dir for a whole job only, at init: into a Ray instance already started here
        (library use) the data file alone is sent."""
        try:
            import ray
        except ImportError:
            raise ConfigError("executor", "ray needs Ray: pip install 'optbench[ray]'") from None
        shipped = None if ray.is_initialized() else folder
        shipper = Shipper(shipped, ray.put)
        if ray.is_initialized():
            return ray, shipper
        options: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": False}
        if shipped is not None:
            options["runtime_env"] = {"working_dir": str(shipped), "excludes": SHIP_EXCLUDES}
        if not self.address:
            options.update(num_cpus=self.workers, include_dashboard=False)
        try:
            ray.init(address=self.address or None, **options)
        except Exception as exc:  # unreachable, refused, or a folder over Ray's upload limit
            hint = TOKEN_HINT if self.address and self.address != "auto" else ""
            raise ConfigError(
                "executor.address",
                f"cannot connect to Ray at {self.address or 'a local instance'}: {exc}{hint}",
            ) from None
        return ray, shipper


EXECUTOR = RayExecutor  # registered as `ray` (executors/__init__.py)
