"""A progress bar for a run in a notebook or a script (`optbench.run(..., progress=True)`).

tqdm.auto draws a widget in Jupyter and a text bar elsewhere; never rich's live view, which a
notebook cannot redraw. tqdm is imported only when a bar starts (the `notebook` extra). Here,
below the API that is their only user, so the API never reaches up into ui/.
"""

from __future__ import annotations

from typing import Any

from optbench.core.metrics import RANKABLE
from optbench.experiment.train import SilentObserver


class ProgressBar(SilentObserver):
    """One bar over the run's epochs, with the last epoch's losses and accuracy (the metrics
    training is judged by, core/metrics.py) beside it."""

    def __init__(self) -> None:
        self.bar: Any = None

    def run_started(self, title: str, epochs: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=epochs, desc=title.split("  (")[0], unit="epoch")

    def epoch_finished(self, row: dict[str, Any]) -> None:
        values = {k: f"{row[k]:.4g}" for k in RANKABLE if isinstance(row.get(k), float)}
        self.bar.n = row["epoch"]  # a resumed run starts past its first epochs
        self.bar.set_postfix(values, refresh=True)

    def run_ended(self, status: str) -> None:
        self.bar.set_description_str(f"{self.bar.desc} ({status})")
        self.bar.close()


class SweepProgressBar:
    """One bar over a sweep's, tune's or benchmark's runs (`optbench.sweep(..., progress=True)`),
    the last run's status beside it: the notebook's counterpart of the CLI's live view
    (ui/display.py's SweepDisplay), with the same methods (a SweepView)."""

    def __init__(self, total: int, done: int, labels: dict[str, str] | None, **options: Any):
        self.total, self.done = total, done
        self.title = str(options.get("title") or "sweep")
        self.bar: Any = None

    def __enter__(self) -> SweepProgressBar:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, initial=self.done, desc=self.title, unit="run")
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def message(self, message: tuple[Any, ...]) -> None:
        pass

    def result(self, result: Any, line: str | None = None) -> None:
        self.bar.update(1)
        self.bar.set_postfix_str(f"{result.run_id} {result.status}", refresh=True)

    def answered(self, line: str) -> None:
        self.bar.update(1)

    def add(self, run_id: str, label: str, epochs: int | None = None) -> None:
        pass

    def skip(self, count: int) -> None:
        self.bar.update(count)

    def note(self, text: str) -> None:
        self.bar.set_description_str(f"{self.title} ({text})")
