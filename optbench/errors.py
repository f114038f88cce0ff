"""The one exception type that means "the user's input is wrong": the CLI prints it and exits 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class OptbenchError(Exception):
    """A problem the user can fix (bad config, missing data, refused overwrite); never a bug."""


class ConfigError(OptbenchError):
    """A config value or key is wrong; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a choice is close to `word`, else ''."""
    by_lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean '{by_lower[close[0]]}'?)" if close else ""
