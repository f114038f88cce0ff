"""The user's code run while planning (imports, constructors), bounded and contained.

Whatever that code raises is a refusal naming the component, `sys.exit()` and a
KeyboardInterrupt of its own included: neither may end optbench with exit 0 or claim an
interrupted run. Two stops go on up: a real Ctrl-C or SIGTERM (their signal handlers are watched
so one can be told from a `raise KeyboardInterrupt`), and planning's time limit
(OPTBENCH_PLAN_TIMEOUT seconds), which names the component that did not return. Torch-free.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from optbench.core.errors import ConfigError

PLAN_TIMEOUT_ENV = "OPTBENCH_PLAN_TIMEOUT"
DEFAULT_PLAN_TIMEOUT_S = 300.0
_INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_stages: list[tuple[str, str]] = []  # (field, component) being planned, innermost last
_interrupts_seen = 0  # real SIGINT/SIGTERM received while watched


class PlanTimeout(BaseException):
    """Planning ran past its time limit. A BaseException, so the user's `except Exception`
    (or optbench's own around a constructor) does not swallow it."""

    def __init__(self, field: str, component: str) -> None:
        super().__init__(component)
        self.field = field
        self.component = component


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _watching_interrupts() -> Iterator[None]:
    """Count real SIGINT/SIGTERM (then run their handlers as before). Only the main thread
    receives signals, so elsewhere a KeyboardInterrupt is always raised by code."""
    if not _main_thread():
        yield
        return
    previous: dict[int, Any] = {}
    for number in _INTERRUPT_SIGNALS:
        handler = signal.getsignal(number)
        if callable(handler):  # a Python handler (Ctrl-C's, or the CLI's SIGTERM one)

            def counting(signum: int, frame: Any, handler: Any = handler) -> Any:
                global _interrupts_seen
                _interrupts_seen += 1
                return handler(signum, frame)

            previous[number] = handler
            signal.signal(number, counting)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def describe_stop(exc: BaseException) -> str:
    """What the user's code raised, in words: sys.exit() and KeyboardInterrupt are named."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    if isinstance(exc, Exception):
        return str(exc) or type(exc).__name__
    return f"it raised {type(exc).__name__}" + (f": {exc}" if str(exc) else "")


@contextlib.contextmanager
def stage(field: str, component: str) -> Iterator[None]:
    """Mark what is being planned, so planning's time limit can name it."""
    _stages.append((field, component))
    try:
        yield
    finally:
        _stages.pop()


@contextlib.contextmanager
def user_code(field: str, component: str, context: str = "") -> Iterator[None]:
    """Run the user's code for `component`: anything it raises becomes a ConfigError on `field`,
    `context` (default: the component) then what it raised; optbench's own refusals, a real
    interrupt and planning's time limit go on up."""
    seen = _interrupts_seen
    with stage(field, component), _watching_interrupts():
        try:
            yield
        except (ConfigError, PlanTimeout):
            raise
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt) and _interrupts_seen != seen:
                raise  # the user pressed Ctrl-C (or SIGTERM came)
            raise ConfigError(field, f"{context or component}: {describe_stop(exc)}") from None


def plan_timeout_s() -> float:
    """Planning's time limit in seconds: $OPTBENCH_PLAN_TIMEOUT, else 300; 0 means none."""
    text = os.environ.get(PLAN_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_PLAN_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ConfigError(PLAN_TIMEOUT_ENV, f"must be a number of seconds >= 0, got {text!r}")
    return seconds


@contextlib.contextmanager
def time_limit(seconds: float | None = None) -> Iterator[None]:
    """Bound planning: past `seconds` (default plan_timeout_s()), a ConfigError naming the
    component being planned. The process's watchdog thread sends SIGALRM to the main thread,
    which wakes a sleeping constructor too; the handler that was installed before (a test's own
    alarm) still runs for any other SIGALRM, and no itimer is touched. Without a main thread or
    pthread_kill (Windows) planning runs unbounded."""
    seconds = plan_timeout_s() if seconds is None else seconds
    if not seconds or not _main_thread() or not hasattr(signal, "pthread_kill"):
        yield
        return
    expired, done = threading.Event(), threading.Event()
    previous = signal.getsignal(signal.SIGALRM)

    def on_alarm(signum: int, frame: Any) -> Any:
        if expired.is_set():
            if done.is_set():
                return None  # our own alarm, arriving after planning ended
            field, component = _stages[-1] if _stages else ("", "planning")
            raise PlanTimeout(field, component)
        return previous(signum, frame) if callable(previous) else None

    def expire(main: int) -> None:
        expired.set()
        signal.pthread_kill(main, signal.SIGALRM)

    signal.signal(signal.SIGALRM, on_alarm)
    main = threading.main_thread().ident
    alarm = _WATCHDOG.arm(seconds, lambda: expire(main))  # type: ignore[arg-type]
    try:
        yield
    except PlanTimeout as exc:
        raise ConfigError(
            exc.field,
            f"{exc.component} did not finish within {seconds:g} s while planning "
            f"(${PLAN_TIMEOUT_ENV} sets the limit)",
        ) from None
    finally:
        done.set()  # an alarm still on its way once planning ended is ignored
        _WATCHDOG.disarm(alarm)
        signal.signal(signal.SIGALRM, previous)


class _Watchdog:
    """One daemon thread a process for every time limit: it sleeps until the earliest armed
    deadline and calls its expiry. A thread started and joined per plan cost 16 ms a plan
    while another thread of the process held the GIL (a batch training in the driver): each
    hand-over waits out the interpreter's switch interval."""

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._armed: dict[object, tuple[float, Callable[[], None]]] = {}
        self._pid: int | None = None  # the process whose thread runs (a fork has none)

    def arm(self, seconds: float, expire: Callable[[], None]) -> object:
        alarm = object()
        with self._wake:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(
                    target=self._watch, name="optbench-plan-watchdog", daemon=True
                ).start()
            self._armed[alarm] = (time.monotonic() + seconds, expire)
            self._wake.notify()
        return alarm

    def disarm(self, alarm: object) -> None:
        with self._wake:
            self._armed.pop(alarm, None)

    def _watch(self) -> None:
        with self._wake:
            while True:
                if not self._armed:
                    self._wake.wait()
                    continue
                alarm, (deadline, expire) = min(self._armed.items(), key=lambda a: a[1][0])
                left = deadline - time.monotonic()
                if left > 0:
                    self._wake.wait(left)
                    continue
                del self._armed[alarm]
                expire()


_WATCHDOG = _Watchdog()
