"""DeepOBS's 2-D test functions, defined once for the models (torch) and the path plots (numpy).

Torch-free: each function is plain arithmetic on whatever arrays it is given, with `cos` passed
in, so `optbench compare --plot` draws the contours without importing torch. Starting points
are DeepOBS's (deepobs/tensorflow/testproblems/two_d_*.py); the minima are those of the
deterministic function, which DeepOBS's zero-mean noise leaves in place on average.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Cos = Callable[[Any], Any]


def rosenbrock(u: Any, v: Any, cos: Cos = math.cos) -> Any:
    """(1 - u)^2 + 100 (v - u^2)^2."""
    return (1 - u) ** 2 + 100 * (v - u**2) ** 2


def beale(u: Any, v: Any, cos: Cos = math.cos) -> Any:
    """(1.5 - u + uv)^2 + (2.25 - u + uv^2)^2 + (2.625 - u + uv^3)^2."""
    return (1.5 - u + u * v) ** 2 + (2.25 - u + u * v**2) ** 2 + (2.625 - u + u * v**3) ** 2


# Branin's constants, as DeepOBS writes them.
_B, _C, _R, _S, _T = 5.1 / (4 * math.pi**2), 5 / math.pi, 6.0, 10.0, 1 / (8 * math.pi)


def branin(u: Any, v: Any, cos: Cos = math.cos) -> Any:
    """(v - b u^2 + c u - r)^2 + s (1 - t) cos(u) + s."""
    return (v - _B * u**2 + _C * u - _R) ** 2 + _S * (1 - _T) * cos(u) + _S


@dataclass(frozen=True)
class TwoDFunction:
    name: str
    value: Callable[..., Any]  # value(u, v, cos): the deterministic function
    start: tuple[float, float]  # DeepOBS's starting point (u, v)
    minima: tuple[tuple[float, float], ...]  # every global minimum; distance is to the nearest
    view: tuple[tuple[float, float], tuple[float, float]]  # (u range, v range) a plot shows


FUNCTIONS: dict[str, TwoDFunction] = {
    f.name: f
    for f in (
        TwoDFunction(
            "rosenbrock", rosenbrock, (-0.5, 1.5), ((1.0, 1.0),), ((-1.5, 1.6), (-0.6, 2.2))
        ),
        TwoDFunction("beale", beale, (-4.5, 4.5), ((3.0, 0.5),), ((-5.0, 5.0), (-5.0, 5.0))),
        TwoDFunction(
            "branin",
            branin,
            (2.5, 12.5),
            ((-math.pi, 12.275), (math.pi, 2.275), (9.42478, 2.475)),
            ((-5.0, 10.0), (0.0, 15.0)),
        ),
    )
}


def distance(function: TwoDFunction, u: float, v: float) -> float:
    """Euclidean distance from (u, v) to the nearest known minimum."""
    return min(math.hypot(u - mu, v - mv) for mu, mv in function.minima)
