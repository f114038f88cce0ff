"""Storage's typed records: summary.json and tune.json read and written through them keep the
files as they are, and a run's learning rate is read one way, SAM's (under its base optimizer)
included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

import optbench
from optbench.analysis.compare import compare_runs, tuneability_frame
from optbench.core.config import validate_config
from optbench.core.errors import ConfigError
from optbench.core.metrics import METRICS
from optbench.experiment.plan import make_plan
from optbench.experiment.train import train
from optbench.storage import results
from optbench.storage.records import Summary, TuneFile, learning_rate
from optbench.storage.results import RunDir, epochs_csv, epochs_frame, read_run
from tests.helpers import REPO, regression_dict

BASELINES = REPO / "results" / "baselines"


def test_shipped_summaries_read_and_write_back_byte_for_byte(tmp_path: Path) -> None:
    paths = sorted(BASELINES.glob("**/summary.json"))
    assert paths, "results/baselines ships runs"
    for path in paths:
        record = RunDir(path.parent).read_summary()
        assert record is not None and record.run_id == path.parent.name
        copy = RunDir(tmp_path)
        copy.write_summary(record)
        assert copy.summary_path.read_text() == path.read_text(), path


@pytest.mark.parametrize("problem", ["regression", "digits_mlp", "rosenbrock"])
def test_a_runs_epoch_table_is_pandas_text_written_without_pandas(
    problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = regression_dict() if problem == "regression" else {"name": "t", "problem": problem}
    config = {**config, "epochs": 2, "optimizer": {"name": "Adam", "lr": 0.01}}
    rows = train(make_plan(validate_config(config))).rows
    by_pandas = epochs_frame(rows).to_csv(index=False)
    monkeypatch.setattr(results, "epochs_frame", None)  # a run's rows never need it
    assert results.epochs_csv(rows) == by_pandas


CELLS = st.one_of(
    st.none(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=4),
)


@given(st.lists(st.dictionaries(st.sampled_from([m.name for m in METRICS]), CELLS), max_size=5))
def test_epoch_tables_are_written_as_pandas_writes_them(rows: list[dict]) -> None:
    """epochs.csv is written without pandas where it can be; whatever a row holds, the text is
    pandas' own."""
    assert epochs_csv(rows) == epochs_frame(rows).to_csv(index=False)


@given(st.lists(st.dictionaries(st.sampled_from([m.name for m in METRICS]), CELLS), max_size=5))
def test_epoch_tables_read_back_as_pandas_reads_them(rows: list[dict]) -> None:
    """A run's epoch rows read back (a tune reads each trial's at its telling) are
    `pandas.read_csv(...).to_dict("records")` with NaN as None, value for value and type for
    type, whatever the rows held; without pandas where they hold numbers alone."""
    import io
    import math
    import tempfile

    import pandas as pd

    text = epochs_csv(rows)
    if text.strip() == "":
        return  # pandas refuses a file with no columns
    by_pandas = [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        for row in pd.read_csv(io.StringIO(text)).to_dict("records")
    ]
    with tempfile.TemporaryDirectory() as folder:
        run = RunDir(Path(folder))
        run.epochs_path.write_text(text)
        read = run.epoch_rows()
    assert read == by_pandas
    assert [[type(v) for v in row.values()] for row in read] == [
        [type(v) for v in row.values()] for row in by_pandas
    ]
    numbers = all(
        v is None or ((type(v) in (int, float) and abs(v) < 10**15) or v != v)
        for row in rows
        for v in row.values()
    )
    assert numbers <= (results.epochs_records(text) is not None)  # numbers: no pandas


@pytest.mark.parametrize("problem", ["digits_mlp", "rosenbrock"])
def test_a_runs_epoch_rows_read_without_pandas_are_pandas_records(
    problem: str, tmp_path: Path
) -> None:
    config = {"name": "t", "problem": problem, "epochs": 2, "optimizer": {"name": "Adam"}}
    run = RunDir(tmp_path)
    run.write_epochs(train(make_plan(validate_config(config))).rows)
    text = run.epochs_path.read_text()
    frame = run.read_epochs()
    assert results.epochs_records(text) == frame.astype(object).where(frame.notna(), None).to_dict(
        "records"
    )
    assert run.epoch_rows() == results.epochs_records(text)


def test_old_or_odd_files_read_tolerantly() -> None:
    odd = {"status": "completed", "seed": "x", "final": None, "added_later": [1]}
    record = Summary.from_dict(odd)
    assert (record.seed, record.final, record.run_id, record.diverged_epoch) == (
        None,
        {},
        None,
        None,
    )
    assert record.to_dict()["added_later"] == [1]  # unknown keys are kept
    tune = TuneFile.from_dict({"optimizers": {"SGD": {"best": "?", "seed_run_ids": [1, "a"]}}})
    assert tune.optimizers["SGD"].best is None and tune.optimizers["SGD"].seed_run_ids == ["a"]


def test_a_tune_file_without_optimizers_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "tune.json"
    path.write_text(json.dumps({"format": 1}))
    with pytest.raises(ConfigError, match=r"tune\.json: it has no 'optimizers' mapping"):
        TuneFile.read(path)


SAM = "pytorch_optimizer.SAM"


def _sam(lr: float) -> dict[str, object]:
    return {"name": SAM, "rho": 0.05, "base_optimizer": {"name": "SGD", "lr": lr}}


def test_learning_rate_finds_sams_under_its_base_optimizer() -> None:
    assert learning_rate({"optimizer": _sam(0.1)}) == 0.1
    assert learning_rate({"optimizer": {"name": "SGD", "lr": 0.05}}) == 0.05
    assert learning_rate({"optimizer.base_optimizer.lr": 0.2}) == 0.2  # tune.json's params
    assert learning_rate({"optimizer": {"name": "SGD", "lr": -1}}) is None
    assert learning_rate({}) is None


def test_sam_runs_keep_their_lr_in_the_tuneability_frame(tmp_path: Path) -> None:
    """SAM (pytorch_optimizer's class) trained at two base lrs: the config.yaml the runner
    writes holds the lr under base_optimizer, and the tuneability frame plots both points."""
    pytest.importorskip("pytorch_optimizer")
    results = tmp_path / "r"
    for lr in (0.01, 0.05):
        config = regression_dict(name="sam", epochs=1, optimizer=_sam(lr))
        run = optbench.run(config, results_dir=results)
        assert run.status == "completed"
        written = yaml.safe_load((run.dir / "config.yaml").read_text())
        assert learning_rate(written) == lr
        assert read_run(run.dir).record.run_id == run.run_id
    frame = tuneability_frame(compare_runs([results], "final_test_loss"))
    assert sorted(frame["lr"]) == [0.01, 0.05] and frame["final_mean"].notna().all()
