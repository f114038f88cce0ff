"""`optbench report`: the page's ranking, curves, bands, paths and configs against numbers
chosen here, read back with the standard library's HTML parser (not ours); what a browser does
with the page is tests/test_report_browser.py."""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.helpers import assert_one_error_line, invoke, regression_dict, write_run_folder

pytest.importorskip("plotly", reason="optbench[report] is not installed")

# Something a config may hold that must stay text on the page: never markup, never a script.
HOSTILE = "</pre><script>window.injected = 1</script><b>x"
# Per configuration and seed: test_loss for epochs 1..3 (train_loss is test_loss + 0.1).
GRID = {
    ("SGD", 0.1): {0: [0.9, 0.5, 0.30], 1: [0.7, 0.4, 0.20]},
    ("SGD", 0.01): {0: [1.0, 0.8, 0.60], 1: [1.2, 0.9, 0.70]},
    ("Adam", 0.001): {0: [0.8, 0.6, 0.50], 1: [0.8, 0.6, 0.50]},  # seeds agree: no band
}


def write_grid(root: Path) -> Path:
    """3 configurations x 2 seeds with the GRID's numbers; SGD lr=0.01 carries the HOSTILE
    text (in a key only it has, so the ranking and the legend show it)."""
    for (optimizer, lr), seeds in GRID.items():
        for seed, losses in seeds.items():
            section: dict[str, Any] = {"name": optimizer, "lr": lr}
            if lr == 0.01:
                section["tag"] = HOSTILE
            config = regression_dict(name="grid", seed=seed, epochs=3, optimizer=section)
            rows = [
                {
                    "epoch": epoch,
                    "train_loss": loss + 0.1,
                    "test_loss": loss,
                    "test_accuracy": 1 - loss / 2,
                    "lr": lr,
                    "seconds": 1.0,
                    "eval_seconds": 0.1,
                }
                for epoch, loss in enumerate(losses, 1)
            ]
            write_run_folder(root, config, rows, f"{optimizer.lower()}-{lr}-seed{seed}")
    return root


def write_many(root: Path, configurations: int, seeds: int, epochs: int) -> Path:
    """A big results folder: an lr grid of SGD configurations, each with `seeds` seeds."""
    rng = np.random.default_rng(0)
    for index in range(configurations):
        lr = round(10 ** (-4 + 3 * index / configurations), 8)
        for seed in range(seeds):
            optimizer = {"name": "SGD", "lr": lr, "momentum": 0.9}
            config = regression_dict(name="many", seed=seed, epochs=epochs, optimizer=optimizer)
            noise = rng.random((epochs, 3)) * 0.05
            rows = [
                {
                    "epoch": epoch,
                    "train_loss": math.exp(-lr * 10 * epoch) + noise[epoch - 1, 0],
                    "test_loss": math.exp(-lr * 10 * epoch) + 0.1 + noise[epoch - 1, 1],
                    "test_accuracy": 1 - math.exp(-lr * 10 * epoch) / 2 + noise[epoch - 1, 2],
                    "lr": lr,
                    "seconds": 1.0,
                    "eval_seconds": 0.1,
                }
                for epoch in range(1, epochs + 1)
            ]
            write_run_folder(root, config, rows, f"sgd-{index}-seed{seed}")
    return root


class Page(HTMLParser):
    """What the standard library's parser finds on the page: tags with their attributes, the
    ranking's rows, each <details>' text and the scripts' text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.rows: list[list[str]] = []
        self.details: dict[str, str] = {}
        self.scripts: list[str] = []
        self._in: list[str] = []
        self._details: str | None = None
        self._text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "tr":
            self.rows.append([])
        if tag == "details":
            self._details = dict(attrs)["id"]
        if tag in ("td", "th", "script", "pre"):
            self._in.append(tag)
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._in and self._in[-1] == tag:
            self.rows[-1].append("".join(self._text).strip())
            self._in.pop()
        elif tag == "script":
            self.scripts.append("".join(self._text))
            self._in.pop()
        elif tag == "pre":
            assert self._details is not None
            self.details[self._details] = "".join(self._text)
            self._in.pop()

    def handle_data(self, data: str) -> None:
        self._text.append(data)


def figures_of(page: str) -> list[dict[str, Any]]:
    """The FIGURES the page's script draws, as JSON."""
    start = page.index("const FIGURES = ") + len("const FIGURES = ")
    return json.JSONDecoder().raw_decode(page, start)[0]


def decode(value: Any) -> np.ndarray:
    """plotly.js's typed-array JSON ({dtype, bdata, shape}) or a plain list, as numpy."""
    if isinstance(value, list):
        return np.array(value)
    array = np.frombuffer(base64.b64decode(value["bdata"]), dtype="<" + value["dtype"])
    if "shape" in value:
        array = array.reshape([int(n) for n in value["shape"].split(",")])
    return array


def test_the_page_holds_the_ranking_curves_bands_and_configs(tmp_path: Path) -> None:
    runs = write_grid(tmp_path / "runs")
    out = tmp_path / "report.html"
    result = invoke("report", str(runs), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert f"report written to {out} (6 runs, 3 configurations, 5 figures" in result.stdout
    text = out.read_text(encoding="utf-8")
    page = Page(text)

    # the ranking: best final test loss first, mean ± sample std over the two seeds
    header, *rows = page.rows
    assert header[:5] == ["#", "show", "name", "lr", "tag"]
    final = header.index("final test loss")
    expected = sorted((sum(s[-1] for s in seeds.values()) / 2, key) for key, seeds in GRID.items())
    assert [row[2:4] for row in rows] == [[name, str(lr)] for _, (name, lr) in expected]
    sgd = GRID[("SGD", 0.1)]
    assert rows[0][final] == f"{0.25:.4f} ± {math.sqrt(2 * 0.05**2):.4f}"
    assert rows[2][4] == HOSTILE  # shown as text: the parser saw no tag in it

    # one figure per metric, every configuration in it: mean line, band from min to max
    figures = figures_of(text)
    assert [f["id"] for f in figures] == [
        "fig-train_loss",
        "fig-test_loss",
        "fig-test_accuracy",
        "fig-lr",
        "fig-tuneability",  # SGD was tried at two learning rates
    ]
    test_loss = figures[1]["data"]
    lines = [t for t in test_loss if "fill" not in t]
    bands = [t for t in test_loss if "fill" in t]
    assert [t["legendgroup"] for t in lines] == ["c0", "c1", "c2"]
    assert [t["legendgroup"] for t in bands] == ["c0", "c2"]  # Adam's seeds agree: no band
    mean = decode(lines[0]["y"])
    assert np.allclose(mean, [(a + b) / 2 for a, b in zip(*sgd.values(), strict=True)])
    assert decode(lines[0]["x"]).tolist() == [1, 2, 3]
    low_high = decode(lines[0]["customdata"])  # what the hover shows as the seeds' spread
    assert np.allclose(low_high, [[0.7, 0.9], [0.4, 0.5], [0.2, 0.3]])
    assert np.allclose(decode(bands[0]["y"]), [0.9, 0.5, 0.3, 0.2, 0.4, 0.7])  # max, then min
    assert decode(bands[0]["x"]).tolist() == [1, 2, 3, 3, 2, 1]
    assert lines[1]["name"] == "#2 name=Adam lr=0.001"
    assert lines[2]["name"] == f"#3 name=SGD lr=0.01 tag={HOSTILE}"

    # tuneability: final test loss against lr per optimizer, the best-ranked lr starred
    sgd_line, adam_line, chosen = figures[4]["data"]
    assert (sgd_line["name"], adam_line["name"], chosen["name"]) == ("SGD", "Adam", "chosen lr")
    assert sgd_line["x"] == [0.01, 0.1] and adam_line["x"] == [0.001]
    assert np.allclose(sgd_line["y"], [0.65, 0.25])
    assert np.allclose(sgd_line["error_y"]["array"], [math.sqrt(0.005), math.sqrt(0.005)])
    assert chosen["x"] == [0.1, 0.001]
    assert figures[4]["layout"]["xaxis"]["type"] == "log"

    # each configuration's config.yaml, escaped, round-trips exactly
    config_files = sorted(runs.rglob("config.yaml"))
    shown = set(page.details.values())
    assert len(page.details) == 3
    assert {f.read_text() for f in config_files if "seed0" in f.parent.name} == shown
    assert HOSTILE not in text  # escaped everywhere: in the markup and inside the script

    # self-contained: nothing to fetch, plotly.js inlined once
    from plotly.offline import get_plotlyjs

    assert text.count(get_plotlyjs()) == 1
    for tag, attrs in page.tags:
        assert "src" not in attrs, (tag, attrs)
        assert not (attrs.get("href") or "#").lstrip().startswith(("http", "//")), (tag, attrs)
    assert sum(1 for tag, _ in page.tags if tag in ("link", "iframe", "img")) == 0


@pytest.mark.slow  # trains (torch)
def test_two_d_runs_get_their_paths_over_the_contours(tmp_path: Path) -> None:
    """Real runs of the 2-D Rosenbrock problem: their path.csv is what the paths figure draws."""
    from optbench.analysis.html_report import write_report
    from optbench.core.config import validate_config
    from optbench.experiment.plan import make_plan
    from optbench.experiment.runner import run_plan
    from optbench.experiment.train import SilentObserver

    for seed, optimizer in enumerate(({"name": "SGD", "lr": 0.002}, {"name": "Adam", "lr": 0.01})):
        config = {"problem": "rosenbrock", "name": "ros", "device": "cpu", "epochs": 1}
        config |= {"seed": seed, "optimizer": optimizer}
        run_plan(make_plan(validate_config(config)), tmp_path / "runs", display=SilentObserver())
    written = write_report([tmp_path / "runs"], tmp_path / "r.html")
    assert written.figures[0] == "fig-paths"
    assert "fig-distance_to_optimum" in written.figures
    assert "fig-test_accuracy" not in written.figures  # no run has an accuracy
    paths = figures_of((tmp_path / "r.html").read_text())[0]["data"]
    assert paths[0]["type"] == "contour"
    drawn = {t["name"].split("name=")[1]: t for t in paths if t.get("legendgroup")}
    assert sorted(drawn) == ["Adam", "SGD"]
    for run in (tmp_path / "runs" / "ros").iterdir():
        trace = drawn[yaml.safe_load((run / "config.yaml").read_text())["optimizer"]["name"]]
        expected = np.loadtxt(run / "path.csv", delimiter=",", skiprows=1)
        assert np.allclose(decode(trace["x"]), expected[:, 2].astype(np.float32))
        assert np.allclose(decode(trace["y"]), expected[:, 3].astype(np.float32))


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("{tmp}/missing/r.html", "does not exist"),
        ("{tmp}", "is a folder"),
    ],
)
def test_an_output_that_cannot_be_written_is_one_error_line(
    tmp_path: Path, output: str, message: str
) -> None:
    runs = write_grid(tmp_path / "runs")
    result = invoke("report", str(runs), "-o", output.format(tmp=tmp_path))
    assert_one_error_line(result, "--output", message)


def test_without_plotly_the_error_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = write_grid(tmp_path / "runs")
    monkeypatch.setitem(sys.modules, "plotly", None)  # what an environment without it sees
    result = invoke("report", str(runs), "-o", str(tmp_path / "r.html"))
    assert_one_error_line(result, "pip install 'optbench[report]'")
    assert not (tmp_path / "r.html").exists()


def test_report_does_not_import_torch_and_the_core_does_not_import_plotly(
    tmp_path: Path,
) -> None:
    runs = write_grid(tmp_path / "runs")
    script = (
        "import sys\n"
        "from optbench.ui.cli import app\n"
        "try:\n"
        "    app(['--help'], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'plotly' not in sys.modules, 'optbench --help imported plotly'\n"
        f"app(['report', {str(runs)!r}, '-o', {str(tmp_path / 'r.html')!r}],"
        " standalone_mode=False)\n"
        "assert 'torch' not in sys.modules, 'report imported torch'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r.html").stat().st_size > 1_000_000  # plotly.js is in it


def test_hundreds_of_configurations_share_one_figure_per_metric(tmp_path: Path) -> None:
    from optbench.analysis.html_report import LEGEND_LIMIT, write_report

    runs = write_many(tmp_path / "runs", configurations=LEGEND_LIMIT + 1, seeds=2, epochs=3)
    written = write_report([runs], tmp_path / "r.html")
    assert written.configurations == LEGEND_LIMIT + 1
    assert written.runs == 2 * written.configurations
    figures = figures_of((tmp_path / "r.html").read_text())
    curves, tuneability = figures[:4], figures[4]  # an lr grid of SGD: tuneability too
    assert tuneability["id"] == "fig-tuneability" and len(figures) == 5
    assert tuneability["layout"]["showlegend"] is True  # one entry per optimizer: SGD
    for figure in curves:
        assert figure["layout"]["showlegend"] is False  # the ranking's checkboxes instead
        assert len({t["legendgroup"] for t in figure["data"]}) == written.configurations
    page = Page((tmp_path / "r.html").read_text())
    boxes = [a for t, a in page.tags if t == "input" and a.get("type") == "checkbox"]
    assert len(boxes) == written.configurations


def test_configurations_with_the_same_label_keep_their_own_curves(tmp_path: Path) -> None:
    """`momentum: null` and no momentum are two configurations whose labels read the same
    (lr=0.1): seed_bands, keyed by label, would give both one curve."""
    from optbench.analysis.html_report import write_report

    optimizers = [
        {"name": "SGD", "lr": 0.1},
        {"name": "SGD", "lr": 0.1, "momentum": None},
        {"name": "SGD", "lr": 0.2},
    ]
    for index, optimizer in enumerate(optimizers):
        config = regression_dict(name="same", seed=0, epochs=2, optimizer=optimizer)
        rows = [
            {"epoch": e, "train_loss": index + 1 / e, "test_loss": index + 1 / e, "seconds": 1}
            for e in (1, 2)
        ]
        write_run_folder(tmp_path / "runs", config, rows, f"sgd-{index}")
    write_report([tmp_path / "runs"], tmp_path / "r.html")
    test_loss = figures_of((tmp_path / "r.html").read_text())[1]["data"]
    assert [t["name"] for t in test_loss] == ["#1 lr=0.1", "#2 lr=0.1", "#3 lr=0.2"]
    curves = [decode(t["y"]).tolist() for t in test_loss]
    assert curves == [[1.0, 0.5], [2.0, 1.5], [3.0, 2.5]]


def test_runs_of_a_problem_show_its_published_figures_apart_from_the_ranking(
    tmp_path: Path,
) -> None:
    from optbench.core.problems import PROBLEMS

    config = regression_dict(name="dobs", seed=0, epochs=1)
    config["problem"] = {"name": "fmnist_2c2d", "version": 1, "overrides": {}}
    row = {"epoch": 1, "train_loss": 0.4, "test_loss": 0.35, "test_accuracy": 0.88, "lr": 0.1}
    write_run_folder(tmp_path / "results", config, [{**row, "seconds": 1.0}], "sgd-seed0")
    output = tmp_path / "report.html"
    assert invoke("report", str(tmp_path / "results"), "-o", str(output)).exit_code == 0
    page = Page(output.read_text())
    assert ("table", {"id": "references"}) in page.tags
    published = [r for r in page.rows if r and r[0] == "fmnist_2c2d"]
    expected = PROBLEMS.get("fmnist_2c2d", "problem").references
    assert [(r[1], float(r[3]), r[6]) for r in published] == [
        (ref.optimizer, ref.value, ref.source) for ref in expected
    ]
    # a report of runs that name no problem has no such table
    plain = tmp_path / "plain.html"
    assert invoke("report", str(write_grid(tmp_path / "grid")), "-o", str(plain)).exit_code == 0
    assert ("table", {"id": "references"}) not in Page(plain.read_text()).tags


def write_benchmark(root: Path) -> Path:
    """A tiny benchmark (2 problems x 2 optimizers, 3 epochs) trained into root/results."""
    pytest.importorskip("optuna")
    import optbench

    suite = {
        "name": "tiny",
        "problems": ["rosenbrock", "branin"],
        "set": {"epochs": 3, "device": "cpu"},
        "optimizers": {"SGD": {"name": "SGD"}, "Adam": {"name": "Adam"}},
        "tune": {
            "space": {"optimizer.lr": {"log_uniform": [1.0e-4, 3.0e-3]}},
            "trials": 2,
            "sampler": "random",
            "pruner": "none",
            "seeds": [0, 1],
        },
        "studies": 2,
        "targets": {"rosenbrock": {"distance_to_optimum": 1.5}},
    }
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(suite))
    results = root / "results"
    optbench.benchmark(path, workers=1, results_dir=results)
    return results


@pytest.mark.slow  # trains a tiny benchmark (torch, Optuna)
def test_a_benchmark_folder_shows_its_profiles_scores_and_switchable_curves(
    tmp_path: Path,
) -> None:
    import pandas as pd

    import optbench

    results = write_benchmark(tmp_path)
    document = json.loads((results / "tiny" / "benchmark.json").read_text())

    written = optbench.report(results, output=tmp_path / "report.html")  # a folder above it
    page = written.path.read_text()
    figures = {figure["id"]: figure for figure in figures_of(page)}
    assert written.figures == list(figures)
    for measure in ("steps", "seconds"):  # one trace per optimizer: the profile as written
        traces = figures[f"fig-profile-{measure}"]["data"]
        assert sorted(t["name"].split(" ")[0] for t in traces) == ["Adam", "SGD"]
        for trace in traces:
            optimizer = trace["name"].split(" ")[0]
            assert decode(trace["y"]).tolist() == document["profiles"][measure][optimizer]
            assert decode(trace["x"]).tolist() == document["profiles"]["tau"]
    # The tables are HTML tables: scores, time to target (every pair, with its chosen
    # hyperparameters), the ratio matrix and the ranks with each problem left out; above them
    # what the benchmark ran with (protocol, spaces, device, versions).
    tables = [t for t in Page(page).tags if t[0] == "table"]
    assert len(tables) == 4
    assert "Protocol: external tuning: 2 studies x 2 trials per pair" in page
    assert "torch " + document["setup"]["versions"]["torch"] in page
    assert "<th>score (steps)</th>" in page and "<th>hyperparameters</th>" in page
    assert "<th>without branin</th>" in page and "<pre>" not in page
    for row in document["pairs"].values():
        for pair in row.values():
            lr = pair["hyperparameters"]["optimizer.lr"]
            assert f"<td>lr={lr:.4g}" in page

    # Per problem: each optimizer's chosen configuration (each study's fastest trial, else its
    # best final trial; epochs.csv read by pandas, averaged; steps per epoch from each run's
    # plan), its x switchable between steps and the calibrated seconds (steps x step cost).
    for index, problem in enumerate(document["targets"]):
        figure = figures[f"fig-problem-{index}"]
        (switch,) = figure["layout"]["updatemenus"]
        steps, seconds = (button["args"][0]["x"] for button in switch["buttons"])
        assert [b["label"] for b in switch["buttons"]] == ["steps", "seconds"]
        lines = 0
        for trace, xs_steps, xs_seconds in zip(figure["data"], steps, seconds, strict=True):
            optimizer = trace["name"].split(" (")[0]  # "(not reached: ...)" where it is not
            if optimizer not in document["pairs"]:
                continue  # a band or a time-to-target marker (tests/test_benchmark_page.py)
            lines += 1
            pair = document["pairs"][optimizer][problem]
            runs = [results / folder / run_id for folder, run_id in pair["curve_runs"]]
            assert len(runs) == 2  # one per study
            frames = [pd.read_csv(run / "epochs.csv") for run in runs]
            length = min(len(f) for f in frames)
            metric = document["targets"][problem]["metric"]
            expected = np.mean([f[metric].to_numpy()[:length] for f in frames], axis=0)
            assert decode(trace["y"]).tolist() == pytest.approx(expected.tolist())
            per_epoch = optbench.plan(runs[0] / "config.yaml").steps_per_epoch
            assert xs_steps == (frames[0]["epoch"][:length] * per_epoch).tolist()
            assert decode(trace["x"]).tolist() == xs_steps
            assert xs_seconds == pytest.approx([x * pair["step_seconds"] for x in xs_steps])
        assert lines == 2
    assert 'http-equiv="Content-Security-Policy"' in page
