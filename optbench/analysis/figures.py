"""The matplotlib figures optbench writes (`compare --plot`/`--tuneability`, `lr-find --plot`,
`benchmark --plot`), and the check that an output file can be written before anything runs.

matplotlib is an extra (`optbench[plot]`), imported only when a figure is asked for.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from optbench.core.errors import ConfigError


def _pyplot(option: str = "--plot") -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(f"{option} needs matplotlib: pip install 'optbench[plot]'") from None
    return plt


def check_writable(path: Path, option: str, example: str) -> None:
    """Refuse an output file that cannot be written (a folder, a missing folder, no permission)
    with one line naming `option`; `example` is a file name to suggest inside a folder."""
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give a file such as {path / example}")
    folder = path.parent
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise ConfigError(f"{option} {path}: folder {folder} {what}")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{option} {path}: permission denied")


def check_plot_path(path: Path, option: str = "--plot") -> None:
    """Refuse a --plot (or other `option`'s) destination that cannot be written before any run
    is read, not after."""
    check_writable(path, option, "curves.png")
    _pyplot(option)  # no matplotlib: say so now
    from matplotlib.backend_bases import FigureCanvasBase

    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    if path.suffix.lstrip(".").lower() not in formats:
        raise ConfigError(
            f"{option} {path}: the file name must end in the image format to write: "
            f"{', '.join('.' + f for f in formats)}"
        )


def _save(figure: Any, path: Any, option: str = "--plot") -> None:
    """Write a matplotlib figure for --plot: one line naming the file when it cannot be."""
    plt = _pyplot(option)
    try:
        figure.savefig(path, dpi=120)
    except OSError as exc:
        raise ConfigError(f"cannot write {option} {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(figure)


def plot_png(bands: dict[str, Any], metric: str, path: Path) -> None:
    """One line per configuration with a band for the seed spread (needs matplotlib)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(9, 5.5))
    for name, band in bands.items():
        (line,) = axes.plot(band.index, band["mean"], label=name)
        axes.fill_between(band.index, band["min"], band["max"], color=line.get_color(), alpha=0.2)
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    _save(figure, path)


def plot_paths(function_name: str, paths: dict[str, list[Any]], path: Path) -> None:
    """2-D runs: each configuration's paths (one colour, every seed) over the function's
    contour lines, with the starting point and the known minima marked (needs matplotlib)."""
    import numpy as np

    from optbench.components.twod import FUNCTIONS

    plt = _pyplot()
    function = FUNCTIONS[function_name]
    (u_low, u_high), (v_low, v_high) = function.view
    u, v = np.meshgrid(np.linspace(u_low, u_high, 300), np.linspace(v_low, v_high, 300))
    values = function.value(u, v, np.cos)
    lowest = values.min()
    levels = lowest + np.logspace(-2, np.log10(values.max() - lowest), 25)
    figure, axes = plt.subplots(figsize=(8, 6.5))
    axes.contour(u, v, values, levels=levels, colors="0.75", linewidths=0.6)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (name, seeds) in enumerate(paths.items()):
        colour = colours[index % len(colours)]
        for seed, frame in enumerate(seeds):
            axes.plot(
                frame["u"],
                frame["v"],
                color=colour,
                linewidth=1.1,
                alpha=0.85,
                label=name if seed == 0 else None,
            )
    axes.plot(*function.start, "o", color="black", markersize=7, label="start", zorder=5)
    minima = np.array(function.minima)
    axes.plot(
        minima[:, 0], minima[:, 1], "*", color="red", markersize=14, label="minimum", zorder=5
    )
    axes.set_xlim(u_low, u_high)
    axes.set_ylim(v_low, v_high)
    axes.set_xlabel("u")
    axes.set_ylabel("v")
    axes.set_title(f"{function_name}: optimizer paths (DeepOBS start and noise)")
    axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    _save(figure, path)


def plot_tuneability(frame: Any, path: Path) -> None:
    """DeepOBS's tuneability: one panel per optimizer, its configurations' final performance
    (mean over seeds, the std as error bars) against the learning rate on a log axis, the
    chosen one starred. Points join into a line when each lr is one configuration (an lr grid);
    configurations without a final value or an lr are counted in the panel's title."""
    plt = _pyplot("--tuneability")
    performance = frame.attrs["performance"]
    names = list(dict.fromkeys(frame["optimizer"]))
    figure, axes = plt.subplots(
        1, len(names), figsize=(4.5 * len(names) + 1, 4.5), sharey=True, squeeze=False
    )
    for axes_, name in zip(axes[0], names, strict=True):
        rows = frame[frame["optimizer"] == name]
        shown = rows[rows["lr"].notna() & rows["final_mean"].notna()].sort_values("lr")
        unique = shown["lr"].is_unique
        (line,) = axes_.plot(
            shown["lr"], shown["final_mean"], "o-" if unique else "o", label="configurations"
        )
        axes_.errorbar(
            shown["lr"],
            shown["final_mean"],
            yerr=shown["final_std"].fillna(0),
            fmt="none",
            ecolor=line.get_color(),
            capsize=3,
        )
        chosen = shown[shown["chosen"]]
        if not chosen.empty:
            lr, value = chosen["lr"].iloc[0], chosen["final_mean"].iloc[0]
            axes_.plot(
                [lr], [value], "*", color="red", markersize=14, zorder=5, label=f"chosen {lr:.3g}"
            )
            axes_.axvline(lr, color="red", linestyle=":", alpha=0.6)
        axes_.set_xscale("log")
        missing = len(rows) - len(shown)
        axes_.set_title(name + (f" ({missing} without a final value)" if missing else ""))
        axes_.set_xlabel("learning rate")
        axes_.grid(alpha=0.3, which="both")
        axes_.legend(fontsize=8)
    axes[0][0].set_ylabel(f"final {performance} (mean over seeds)")
    figure.tight_layout()
    _save(figure, path, "--tuneability")


def plot_range_test(result: Any, title: str, path: Path) -> None:
    """Batch and smoothed loss against the lr on a log axis, the suggestion marked
    (matplotlib, written as `optbench compare --plot` writes its figures)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 5))
    axes.plot(result.lrs, result.losses, color="0.7", linewidth=0.8, label="batch loss")
    axes.plot(result.lrs, result.smoothed, linewidth=1.6, label="smoothed loss")
    if result.suggestion is not None and result.suggestion_index is not None:
        axes.plot(
            result.suggestion,
            result.smoothed[result.suggestion_index],
            "o",
            color="red",
            markersize=8,
            label=f"steepest descent: lr {result.suggestion:.3g}",
        )
    finite = [s for s in result.smoothed if math.isfinite(s)]
    if finite:  # the batch losses' last spike would flatten the interesting part
        low = min(finite + [v for v in result.losses if math.isfinite(v)])
        high = max(finite)
        axes.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low) + 1e-12)
    axes.set_xscale("log")
    axes.set_xlabel("learning rate (first param group)")
    axes.set_ylabel("training loss")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    _save(figure, path)


def plot_profiles_png(document: dict[str, Any], path: Path) -> None:
    """A benchmark's performance profiles, steps and seconds side by side, one line per
    optimizer with its score in the legend (`optbench benchmark --plot`; needs matplotlib).
    Each optimizer has its own colour, dash and marker in both panels (told apart in black and
    white); markers sit on every 10th tau, shifted per optimizer, so lines that coincide still
    show each one's markers."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    taus = document["profiles"]["tau"]
    steps = document["scores"]["steps"]
    ranked = sorted(steps, key=lambda o: -steps[o])  # one style per optimizer in both panels
    dashes = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)))
    markers = ("o", "s", "D", "^", "x", "+", "*", "v")
    for axis, measure in zip(axes, ("steps", "seconds"), strict=True):
        scores = document["scores"][measure]
        for index, optimizer in enumerate(ranked):
            rho = document["profiles"][measure][optimizer]
            axis.plot(
                taus,
                rho,
                drawstyle="steps-post",
                linestyle=dashes[index % len(dashes)],
                marker=markers[index % len(markers)],
                markevery=(index % 10, 10),
                markersize=5,
                markerfacecolor="none",
                label=f"{optimizer} ({scores[optimizer]:.3f})",
            )
        axis.set_xlabel(f"tau: time to target / the fastest's ({measure})")
        axis.set_ylim(-0.02, 1.02)
        axis.grid(alpha=0.3)
        axis.legend(title="score", fontsize=8)
    axes[0].set_ylabel("fraction of problems")
    figure.suptitle(f"optbench benchmark {document['suite']}: performance profiles")
    figure.tight_layout()
    _save(figure, path)
