"""The live views: `optbench run`'s batch bar with the time left in the epoch and the run, and
`optbench sweep`'s one view of runs done, each worker's run and the sweep's time left; plain
lines without ANSI when stdout is not a terminal. Driven by fake messages and a fake clock, so
every time left is checked against arithmetic done by hand."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from optbench.storage.results import Status
from optbench.sweeps.executors import PointResult
from optbench.ui.display import EpochClock, LiveTable, SweepDisplay, format_eta

ANSI = re.compile(r"\x1b\[")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _console(terminal: bool) -> Console:
    return Console(
        record=True, force_terminal=terminal, width=200, file=io.StringIO(), color_system=None
    )


def test_format_eta() -> None:
    assert format_eta(None) == "-"
    assert format_eta(float("nan")) == "-"
    assert format_eta(4.6) == "0:00:05"
    assert format_eta(3 * 3600 + 25 * 60 + 7) == "3:25:07"
    assert format_eta(-3) == "0:00:00"


def test_epoch_and_run_time_left_by_hand() -> None:
    clock = FakeClock()
    eta = EpochClock(epochs=3, clock=clock)
    assert eta.epoch_left() is None and eta.run_left() is None  # nothing timed yet
    eta.epoch_started(1, 10)
    clock.now += 5
    eta.batch_finished(5)  # 1 s a batch: 5 batches to go
    assert eta.epoch_left() == pytest.approx(5)
    assert eta.run_left() == pytest.approx(5 + 2 * 10)  # two more epochs projected at 10 s
    clock.now += 5
    eta.batch_finished(10)
    clock.now += 2  # evaluation: 2 s after the last batch
    eta.epoch_finished()  # a 12 s epoch
    eta.epoch_started(2, 10)
    clock.now += 2
    eta.batch_finished(4)  # 0.5 s a batch now
    assert eta.epoch_left() == pytest.approx(6 * 0.5 + 2)  # + the evaluation seen before
    assert eta.run_left() == pytest.approx(5 + 1 * 12)  # the last epoch at the measured 12 s


def test_a_run_of_unknown_length_has_no_run_time_left() -> None:
    clock = FakeClock()
    eta = EpochClock(epochs=None, clock=clock)
    eta.epoch_started(1, 4)
    clock.now += 1
    eta.batch_finished(1)
    assert eta.epoch_left() == pytest.approx(3)
    assert eta.run_left() is None


def test_live_table_shows_both_times_left_on_a_terminal() -> None:
    clock, console = FakeClock(), _console(terminal=True)
    with LiveTable("tiny / run", console, epochs=3, clock=clock) as table:
        table.epoch_started(1, 10)
        clock.now += 5
        table.batch_finished(5, 0.25)
        table.live.refresh()
        shown = console.export_text()
        assert "epoch 1" in shown and "5/10" in shown and "loss 0.2500" in shown
        assert "epoch ETA 0:00:05  run ETA 0:00:25" in shown


def test_live_table_plain_lines_off_a_terminal() -> None:
    clock, console = FakeClock(), _console(terminal=False)
    with LiveTable("tiny / run", console, epochs=2, clock=clock) as table:
        for epoch in (1, 2):
            table.epoch_started(epoch, 4)
            for batch in range(1, 5):
                clock.now += 1
                table.batch_finished(batch, 0.5)
            table.epoch_finished({"epoch": epoch, "train_loss": 0.5, "test_loss": 0.25})
    text = console.export_text()
    assert not ANSI.search(console.file.getvalue())
    lines = text.splitlines()
    assert lines[0] == "tiny / run"
    assert lines[1].split()[:3] == ["epoch", "train_loss", "test_loss"]
    assert len(lines) == 4  # title, header, one line per epoch: no bar, no redraw


def _sweep(terminal: bool, clock: FakeClock, total: int = 4) -> tuple[SweepDisplay, Console]:
    console = _console(terminal)
    labels = {"run-a": "lr=0.1", "run-b": "lr=0.01"}
    epochs = {"run-a": 2, "run-b": 2}
    return SweepDisplay(total, 0, labels, console, epochs=epochs, clock=clock), console


def test_sweep_time_left_by_hand_and_the_worker_lines() -> None:
    clock = FakeClock()
    display, console = _sweep(terminal=True, clock=clock)
    with display:
        assert display.time_left() is None  # nothing to go by yet
        for run_id, pid in (("run-a", 101), ("run-b", 102)):
            display.message(("start", run_id, pid))
            display.message(("epoch", run_id, 1, 10))
        clock.now += 5
        display.message(("batch", "run-a", 5, 0.5))
        display.message(("batch", "run-b", 5, None))  # fast mode: no loss mid-epoch
        # each is a quarter through in 5 s: 20 s a run, 15 s left each; two runs wait.
        # (2 waiting x 20 + 15 + 15) / 2 at once = 35 s
        assert display.time_left() == pytest.approx(35)
        display.live.refresh()
        shown = console.export_text()
        assert "ETA 0:00:35" in shown
        (line_a,) = [x for x in shown.splitlines() if "run-a" in x]
        assert line_a.split() == ["101", "run-a", "lr=0.1", "1/2", "5/10", "0.5000"]
        (line_b,) = [x for x in shown.splitlines() if "run-b" in x]
        assert line_b.split() == ["102", "run-b", "lr=0.01", "1/2", "5/10", "-"]

        clock.now += 5
        display.message(("row", "run-b", 1, 0.4))
        display.message(("epoch", "run-b", 2, 10))
        clock.now += 10
        display.result(PointResult("run-a", Status.COMPLETED))  # a 20 s run
        # run-b: half done in 20 s, 20 s left; two runs wait at the measured 20 s each,
        # two at once: max(20, (2 x 20 + 20) / 2) = 30 s
        assert display.time_left() == pytest.approx(30)
    assert "[1/4, ETA 0:00:30] completed   run-a  lr=0.1" in console.export_text()


def test_a_resumed_run_is_projected_from_the_epochs_trained_here() -> None:
    clock = FakeClock()
    display, _ = _sweep(terminal=False, clock=clock, total=1)
    display.message(("epoch", "run-a", 2, 10))  # epoch 1 came from its checkpoint
    clock.now += 4
    display.message(("batch", "run-a", 5, 0.1))  # a quarter of the run in 4 s
    assert display.time_left() == pytest.approx(4)


def test_sweep_plain_lines_off_a_terminal_and_labels_added_as_runs_are_handed_out() -> None:
    clock = FakeClock()
    display, console = _sweep(terminal=False, clock=clock, total=3)
    with display:
        display.add("trial-3", "optimizer.lr=0.003", epochs=2)
        display.message(("start", "trial-3", 7))
        display.message(("epoch", "trial-3", 1, 10))
        clock.now += 2
        display.message(("batch", "trial-3", 10, 0.3))
        display.message(("row", "trial-3", 1, 0.3))
        clock.now += 2
        display.result(PointResult("trial-3", Status.PRUNED, "pruned at epoch 1"))
    raw = console.file.getvalue()
    assert not ANSI.search(raw)
    (line,) = raw.splitlines()  # one line per finished run, nothing redrawn
    # 4 s a run, 2 to go, one at a time
    assert line == "[1/3, ETA 0:00:08] pruned      trial-3  optimizer.lr=0.003: pruned at epoch 1"


def test_results_only_give_a_time_left_from_their_rate() -> None:
    """The Ray executor sends no progress: the sweep's time left comes from the results."""
    clock = FakeClock()
    display, console = _sweep(terminal=False, clock=clock, total=5)
    clock.now += 30
    display.result(PointResult("run-a", Status.COMPLETED))
    clock.now += 30
    display.result(PointResult("run-b", Status.FAILED, "Ray task failed: boom"))
    assert display.time_left() == pytest.approx(3 * 30)
    lines = console.file.getvalue().splitlines()
    assert lines[0].startswith("[1/5, ETA 0:02:00] completed ")
    assert lines[1] == "[2/5, ETA 0:01:30] failed      run-b  lr=0.01: Ray task failed: boom"


def test_a_run_just_started_is_estimated_by_the_finished_runs_mean() -> None:
    clock = FakeClock()
    display, _ = _sweep(terminal=False, clock=clock, total=3)
    display.message(("epoch", "run-a", 1, 10))
    clock.now += 20
    display.result(PointResult("run-a", Status.COMPLETED))  # runs take 20 s
    display.message(("epoch", "run-b", 1, 10))
    clock.now += 4
    display.message(("batch", "run-b", 1, 0.2))  # 5% in 4 s would project 76 s left
    # run-b: 20 - 4 = 16 s left by the mean; one run waits: 20 + 16, one at a time
    assert display.time_left() == pytest.approx(36)
    for batch in range(2, 11):  # at a quarter and beyond, its own pace counts
        display.message(("batch", "run-b", batch, 0.2))
    assert display.time_left() == pytest.approx(20 + 4 / 0.5 * 0.5)


def _printed(table: object, width: int, terminal: bool) -> str:
    """What the CLI's console prints of `table` on a terminal of `width` or off one."""
    from optbench.ui.tables import WholeTables

    console = Console(
        file=io.StringIO(), width=width, force_terminal=terminal, color_system=None, soft_wrap=True
    )
    console.push_render_hook(WholeTables(console))
    console.print(table)
    return console.file.getvalue()


def _wide_table() -> object:
    from rich.table import Table

    table = Table(title="ranking")
    for header in ("#", "optimizer", "final test loss", "best test acc", "speed", "status"):
        table.add_column(header)
    table.add_row("1", "Adadelta", "0.3472 ± 0.0239", "0.8749 ± 0.0075", "2.0 ± 0.0", "2 completed")
    return table


def test_a_table_off_a_terminal_is_printed_whole_at_any_width() -> None:
    printed = _printed(_wide_table(), width=40, terminal=False)
    assert "…" not in printed
    row = next(line for line in printed.splitlines() if "Adadelta" in line)
    assert "0.3472 ± 0.0239" in row and "2.0 ± 0.0" in row and "2 completed" in row


def test_a_narrow_terminal_drops_the_rightmost_columns_and_cuts_no_number() -> None:
    whole = _printed(_wide_table(), width=200, terminal=True)
    narrow = _printed(_wide_table(), width=50, terminal=True)
    assert "speed" in whole and "…" not in whole
    assert "…" not in narrow and max(len(line) for line in narrow.splitlines()) <= 50
    assert "speed" not in narrow and "best test acc" not in narrow  # dropped, right first
    words = narrow.split()
    assert {"#", "optimizer", "status", "Adadelta", "0.3472", "0.0239", "completed"} <= set(words)


@pytest.mark.parametrize("terminal", [True, False])
def test_a_note_on_the_whole_shows_beside_the_runs_done(terminal: bool) -> None:
    """`optbench benchmark`'s pairs done: on the progress line, and in each plain line."""
    display, console = _sweep(terminal=terminal, clock=FakeClock(), total=2)
    with display:
        display.note("pairs 0/1")
        display.result(PointResult("run-a", Status.COMPLETED))
        display.note("pairs 1/1")
        display.result(PointResult("run-b", Status.COMPLETED))
        if terminal:
            display.live.refresh()
    shown = console.export_text() if terminal else console.file.getvalue()
    assert "pairs 1/1" in shown
    if not terminal:
        first, second = shown.splitlines()
        assert first.startswith("[1/2, pairs 0/1, ETA") and second.startswith("[2/2, pairs 1/1,")
