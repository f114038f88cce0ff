"""Several tunes' points through one executor run, so a suite starts one pool of workers.

Each tune's lazy stream of points is taken in turn (or one after another) and every result is
handed back to the tune whose point it was; a shared display labels each tune's lines. Nothing
here knows what a tune is: it routes points and results by run-id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

Owner = TypeVar("Owner")  # whose points a stream holds (a tune's Tuner)


class LabelledDisplay:
    """A tune's view of a display shared by several tunes: its runs' labels say whose they are
    (`digits_mlp.Adam: Adam trial 3`), since two pairs' arms may bear the same key."""

    def __init__(self, display: Any, prefix: str) -> None:
        self.display, self.prefix = display, prefix

    def add(self, run_id: str, label: str, epochs: int | None = None) -> None:
        self.display.add(run_id, f"{self.prefix}: {label}", epochs)

    def answered(self, line: str) -> None:
        self.display.answered(f"{self.prefix}: {line}")

    def result(self, result: Any, line: str | None = None) -> None:
        self.display.result(result, None if line is None else f"{self.prefix}: {line}")

    def __getattr__(self, name: str) -> Any:  # message, skip, note: as they are
        return getattr(self.display, name)


class SharedPool(Generic[Owner]):
    """Several tunes' points through one executor run: their lazy streams taken in turn (each
    Tuner still asks a trial only when a worker is free for it, and has the results of its
    earlier trials by then), or one tune's after another's (`in_turn` False: seed reruns, so
    that tunes finish one by one), and each result handed back to the tune whose point it was.
    One pool of workers starts once for all of them."""

    def __init__(self, runner: Any, display: Any) -> None:
        self.runner, self.display = runner, display
        self.owners: dict[str, Owner] = {}

    def run(
        self,
        streams: list[tuple[Owner, Any]],
        handler: Callable[[Owner], Callable[[Any], None]],
        in_turn: bool = True,
    ) -> None:
        def points() -> Iterator[tuple[Any, ...]]:
            iterators = [(owner, iter(stream)) for owner, stream in streams]
            while iterators:
                for entry in list(iterators) if in_turn else iterators[:1]:
                    point = next(entry[1], None)
                    if point is None:
                        iterators.remove(entry)
                        continue
                    self.owners[point[0]] = entry[0]
                    yield point

        def on_result(result: Any) -> None:
            handler(self.owners.pop(result.run_id))(result)

        self.runner.run(points(), self.display.message, on_result)
