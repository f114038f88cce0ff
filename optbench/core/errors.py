"""The two failures the CLI reports in one line: bad input (exit 2) and a failed write (exit 3).

Exit statuses, defined here once: 0 done; 1 a run failed or diverged; 2 bad input, nothing
written; 3 a results file could not be written (disk full, permissions), what was written
before stays valid; 130 interrupted.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_WRITE_FAILED = 3
EXIT_INTERRUPTED = 130


class ConfigError(ValueError):
    """Bad input or a refused action, never a bug: a wrong config value or key (`field` names
    it), missing data, a run that exists already. What the CLI refuses with exit 2."""

    def __init__(self, field: str, problem: str | None = None) -> None:
        if problem is None:  # a message that names no single field
            field, problem = "", field
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


class ResultsWriteError(OSError):
    """A results file could not be written (disk full, permissions); the old file is intact.
    Not bad input: the run may be fine and its checkpoint is kept, so it can be resumed."""


class FailedRunsWarning(UserWarning):
    """A library call (sweep, tune, benchmark) returned with runs that failed: named in the
    warning, listed in the result's `failed`. The CLI, which prints its own counts, hides it."""


class UnreadableRunWarning(UserWarning):
    """A run folder compare or report could not read (a bad value in its files): skipped, the
    other runs compared. The CLI prints it as a note."""


class RunExistsError(ConfigError):
    """The run was trained before: finished (train it again with force), or interrupted with a
    checkpoint (continue it with resume, or start over with force)."""

    def __init__(self, run_dir: Path, status: str, resumable: bool) -> None:
        self.run_dir, self.status, self.resumable = run_dir, status, resumable
        if resumable:
            super().__init__(f"an unfinished run ({status}) with a checkpoint is in {run_dir}")
        else:
            super().__init__(f"this run already finished ({status}) in {run_dir}")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a choice is close to `word`, else ''."""
    by_lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean '{by_lower[close[0]]}'?)" if close else ""
