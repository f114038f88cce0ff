"""The validation split, evaluation by steps and DeepOBS's pipeline options, each against a loop
written by hand with torch's own DataLoader (and Subset, and drop_last), not against optbench.

- `data.validation` holds out the samples the documented draw names (the first `count` of
  torch.randperm(n) from a generator seeded VALIDATION_SEED): disjoint from training, together
  the whole training set, and the run trains on exactly the rest;
- `eval_every` adds evaluations between steps without changing training: the parameters,
  optimizer state and epoch rows are the run's without it, bit for bit, with dropout,
  BatchNorm and Schedule-Free's weight swap in play;
- `data.shuffle: once` and `data.drop_last` give the batches of the loop that replays one order
  and drops the partial batch (training and evaluation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Subset

from optbench.components.data import bind_data, keep_batch, load_data, load_splits
from optbench.core.config import VALIDATION_SEED, validate_config
from optbench.core.metrics import written_columns
from optbench.core.problems import PROBLEMS
from optbench.experiment.checkpoint import CheckpointFile
from optbench.experiment.plan import make_plan
from optbench.experiment.train import completed_epochs, train
from optbench.sweeps.tune_setup import DEFAULT_VALIDATION_FRACTION, describe_tune, load_tune
from tests.helpers import StopAt, regression_dict

pytest.importorskip("sklearn")

DIGITS: dict[str, Any] = {
    "name": "digits",
    "seed": 3,
    "epochs": 2,
    "device": "cpu",
    "data": {"dataset": "sklearn_digits", "batch_size": 50, "test_batch_size": 128},
    # dropout: the global RNG, which evaluation draws from, changes the training numbers
    "model": {"name": "mlp", "hidden_sizes": [32], "dropout": 0.3},
    "loss": "cross_entropy",
    "optimizer": {"name": "SGD", "lr": 0.1, "momentum": 0.9},
}
_NOT_TIMED = ("seconds", "eval_seconds")


def _plan(base: dict[str, Any] = DIGITS, **changes: Any) -> Any:
    config = {**base, **changes}
    config["data"] = {**base["data"], **changes.get("data", {})}
    return make_plan(validate_config(config))


def _shuffled(plan: Any, train_set: Any, drop_last: bool = False) -> DataLoader:
    """The notebook loop's DataLoader(shuffle=True) over `train_set`, seeded as the run."""
    return DataLoader(
        train_set,
        batch_size=plan.config.data.batch_size,
        shuffle=True,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(plan.config.seed),
        collate_fn=keep_batch,
    )


def _by_hand(plan: Any, loader: Any, evaluated: list[Any], drop_last: bool = False) -> list:
    """The notebook loop over `loader`'s batches each epoch, then every set of `evaluated`
    through its own DataLoader(shuffle=False, drop_last), each of which draws its base seed
    from the global RNG. Per epoch: (train loss, each evaluated loss)."""
    config = plan.config
    torch.manual_seed(config.seed)
    model = plan.build_model()
    optimizer = plan.build_optimizer(model)
    loss_fn = plan.build_loss()
    rows = []
    for _ in range(config.epochs):
        model.train()
        losses = []
        for inputs, targets in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(inputs), targets)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        model.eval()
        row = [sum(losses) / len(losses)]
        for data in evaluated:
            total, count = 0.0, 0
            test_loader = DataLoader(
                data, batch_size=config.data.test_batch_size, drop_last=drop_last,
                collate_fn=keep_batch,
            )  # fmt: skip
            with torch.no_grad():
                for inputs, targets in test_loader:
                    total += loss_fn(model(inputs), targets).item() * len(targets)
                    count += len(targets)
            row.append(total / count)
        rows.append(row)
    return rows


def _flat(rows: list[list[float]]) -> list[float]:
    return [value for row in rows for value in row]


def test_the_validation_draw_is_disjoint_from_training_and_covers_it_once() -> None:
    plan = _plan(data={"validation": 0.2})
    whole, _ = load_data(_plan().data, 0)
    train_set, valid_set, _ = load_splits(plan.data, 0)
    n = len(whole)
    held = torch.randperm(n, generator=torch.Generator().manual_seed(VALIDATION_SEED))[
        : round(0.2 * n)
    ]  # the documented draw, written out
    kept = sorted(set(range(n)) - set(held.tolist()))
    assert (
        valid_set is not None
        and len(valid_set) == len(held)
        and plan.data_spec.train_size == (len(kept))
    )
    assert torch.equal(valid_set.inputs, whole.inputs[held.sort().values])
    assert torch.equal(train_set.inputs, whole.inputs[kept])
    # no training sample is a validation sample (rows compared, not only indices)
    rows = {tuple(r.tolist()) for r in train_set.inputs}
    assert not any(tuple(r.tolist()) in rows for r in valid_set.inputs)
    # one split for every seed of the problem
    assert torch.equal(load_splits(_plan(seed=9, data={"validation": 0.2}).data, 9)[1].inputs,
                       valid_set.inputs)  # fmt: skip


@pytest.mark.slow  # over 10 s in the loaded inner loop (~3 s alone)
def test_a_run_with_validation_trains_on_exactly_the_rest_as_a_hand_written_loop() -> None:
    plan = _plan(data={"validation": 300})
    whole, test = load_data(_plan().data, plan.config.seed)
    held = torch.randperm(len(whole), generator=torch.Generator().manual_seed(VALIDATION_SEED))
    held = held[:300].sort().values
    kept = [i for i in range(len(whole)) if i not in set(held.tolist())]
    loader = _shuffled(plan, Subset(whole, kept))
    expected = _by_hand(plan, loader, [Subset(whole, held.tolist()), test])
    rows = train(plan).rows
    ours = [[r["train_loss"], r["valid_loss"], r["test_loss"]] for r in rows]
    assert _flat(ours) == pytest.approx(_flat(expected), rel=1e-6, abs=1e-7)
    assert all(r["valid_accuracy"] is not None for r in rows)


def test_without_validation_nothing_changes_in_the_config_or_the_files() -> None:
    plan = _plan()
    assert "validation" not in plan.resolved["data"] and "eval_every" not in plan.resolved
    for written in ("shuffle", "drop_last"):
        assert written not in plan.resolved["data"]
    # the default written out is the same experiment, one run-id
    same = _plan(data={"shuffle": "epoch", "drop_last": False})
    assert same.run_id == plan.run_id
    rows = train(plan).rows
    columns = written_columns(rows)
    assert not {"step", "valid_loss", "valid_accuracy"} & set(columns)
    assert _plan(data={"validation": 0.2}).run_id != plan.run_id


_BN_MODEL = """
from torch import nn

class BatchNormDropout(nn.Sequential):
    def __init__(self, in_features, num_outputs):
        super().__init__(
            nn.Linear(in_features, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3),
            nn.Linear(16, num_outputs),
        )
"""


def _trained(plan: Any, folder: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    checkpoint = CheckpointFile(folder / f"{plan.run_id}.pt", plan.run_id)
    rows = train(plan, checkpoints=checkpoint).rows
    return rows, torch.load(checkpoint.path, weights_only=True)


def _same_tensors(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_tensors(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.slow  # over 10 s in the loaded inner loop (~3 s alone)
@pytest.mark.parametrize(
    "optimizer",
    [
        {"name": "SGD", "lr": 0.1, "momentum": 0.9},
        {"name": "schedulefree.SGDScheduleFree", "lr": 0.05},  # eval() swaps weights, BN redone
    ],
    ids=["sgd", "schedule-free"],
)
def test_evaluating_between_steps_leaves_training_bit_for_bit_as_it_was(
    optimizer: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if optimizer["name"].startswith("schedulefree"):
        pytest.importorskip("schedulefree")
    (tmp_path / "bn_dropout.py").write_text(_BN_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    base = {**DIGITS, "optimizer": optimizer, "model": {"name": "bn_dropout.BatchNormDropout"}}
    plain = _plan(base)
    stepped = _plan(base, eval_every=7)  # 27 steps per epoch: mid-epoch and not at its end
    rows, state = _trained(plain, tmp_path)
    stepped_rows, stepped_state = _trained(stepped, tmp_path)
    assert _same_tensors(state["model"], stepped_state["model"])
    assert _same_tensors(state["optimizer"], stepped_state["optimizer"])
    assert _same_tensors(state["rng"], stepped_state["rng"])
    steps = plain.steps_per_epoch
    assert [r["step"] for r in stepped_rows] == [
        *range(7, steps, 7), steps, *range(7 * (steps // 7 + 1), 2 * steps, 7), 2 * steps
    ]  # fmt: skip
    ends = [r for r in stepped_rows if r["step"] in (steps, 2 * steps)]
    assert completed_epochs(stepped_rows) == 2
    for end, row in zip(ends, rows, strict=True):
        assert {k: v for k, v in end.items() if k not in (*_NOT_TIMED, "step")} == {
            k: v for k, v in row.items() if k not in (*_NOT_TIMED, "step")
        }


def test_a_row_between_steps_is_the_test_loss_a_hand_written_loop_sees_at_that_step() -> None:
    """Evaluated after steps 3, 6, 9, ... and at each epoch's end (8 steps an epoch); the train
    loss of a row between steps is the mean of its epoch's batch losses so far."""
    plan = _plan(regression_dict(), eval_every=3)
    train_set, test = load_data(plan.data, plan.config.seed)
    torch.manual_seed(plan.config.seed)
    model = plan.build_model()
    optimizer = plan.build_optimizer(model)
    loader = DataLoader(
        train_set, batch_size=32, shuffle=True, collate_fn=keep_batch,
        generator=torch.Generator().manual_seed(plan.config.seed),
    )  # fmt: skip
    expected, step = [], 0
    for epoch in range(1, plan.config.epochs + 1):
        losses = []
        for batch, (inputs, targets) in enumerate(loader, start=1):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(inputs), targets)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
            if step % 3 == 0 or batch == len(loader):
                with torch.no_grad():
                    test_loss = torch.nn.functional.mse_loss(model(test.inputs), test.targets)
                expected.append([epoch, step, sum(losses) / len(losses), test_loss.item()])
    rows = train(plan).rows
    ours = [[r["epoch"], r["step"], r["train_loss"], r["test_loss"]] for r in rows]
    assert [row[:2] for row in ours] == [row[:2] for row in expected]
    assert _flat(ours) == pytest.approx(_flat(expected), rel=1e-6)
    assert all(r["seconds"] >= 0 and r["eval_seconds"] >= 0 for r in rows)


@pytest.mark.slow  # over 10 s in the loaded inner loop (~3 s alone)
def test_shuffle_once_and_drop_last_give_the_batches_of_the_loop_that_replays_one_order() -> None:
    """DeepOBS's TensorFlow pipeline by hand: one torch.randperm(n) from the run's seed, its
    whole batches every epoch, evaluation on whole batches."""
    plan = _plan(data={"shuffle": "once", "drop_last": True})
    config = plan.config
    train_set, test = load_data(plan.data, config.seed)
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(config.seed))
    size = config.data.batch_size
    once = [
        train_set.__getitems__(order[start : start + size].tolist())
        for start in range(0, len(train_set) - size + 1, size)
    ]  # the same whole batches every epoch
    expected = _by_hand(plan, once, [test], drop_last=True)
    rows = train(plan).rows
    assert plan.steps_per_epoch == len(train_set) // size
    ours = [[r["train_loss"], r["test_loss"]] for r in rows]
    assert _flat(ours) == pytest.approx(_flat(expected), rel=1e-5)


def test_drop_last_alone_is_dataloaders_drop_last_in_training_and_evaluation() -> None:
    plan = _plan(data={"drop_last": True})
    train_set, test = load_data(plan.data, plan.config.seed)
    expected = _by_hand(plan, _shuffled(plan, train_set, True), [test], drop_last=True)
    rows = train(plan).rows
    ours = [[r["train_loss"], r["test_loss"]] for r in rows]
    assert _flat(ours) == pytest.approx(_flat(expected), rel=1e-6, abs=1e-7)


# --------------------------------------------------------------------------- defaults and tune


@pytest.mark.parametrize("name", [info.name for info in PROBLEMS])
def test_every_problem_declares_a_validation_split_its_runs_accept(name: str) -> None:
    info = PROBLEMS.get(name, "problem")
    assert info.validation is not None and info.validation[1]
    config = {"name": "p", "problem": name, "epochs": 1, "optimizer": "SGD"}
    whole = bind_data(validate_config(config).data, "data")
    config["data"] = {"validation": info.default_validation}
    held_out = bind_data(validate_config(config).data, "data")  # the data section's checks
    held = info.default_validation
    if isinstance(held, int):  # DeepOBS's count: the training set shrinks by it
        assert held_out.spec.train_size == whole.spec.train_size - held
    elif held == "own":  # a split of its own: training keeps every sample
        assert held_out.spec.train_size == whole.spec.train_size


def _tune_config(**changes: Any) -> dict[str, Any]:
    return {
        "name": "t",
        "problem": "digits_mlp",
        "epochs": 1,
        "optimizer": {"name": "SGD", "lr": 0.1},
        "tune": {"space": {"optimizer.lr": {"log_uniform": [0.01, 1.0]}}, "trials": 2},
        **changes,
    }


def test_a_tune_without_validation_holds_out_the_problems_default_says_so_and_selects_on_it():
    setup = load_tune(_tune_config())
    held = PROBLEMS.get("digits_mlp", "problem").default_validation
    assert setup.metric == "valid_accuracy"  # the problem's test_accuracy, on validation
    assert [arm.config["data"]["validation"] for arm in setup.arms] == [held]
    assert f"holds out {held} (digits_mlp's default" in setup.notes[0]
    assert "data.validation" in describe_tune(setup)


def test_a_tune_of_a_config_that_is_no_problem_holds_out_the_default_fraction() -> None:
    config = {**regression_dict(), "tune": _tune_config()["tune"]}
    setup = load_tune(config)
    assert setup.metric == "valid_loss"
    assert setup.arms[0].config["data"]["validation"] == DEFAULT_VALIDATION_FRACTION
    assert "no registered problem" in setup.notes[0]


def test_a_tune_keeps_the_configs_own_validation_without_a_note() -> None:
    setup = load_tune(_tune_config(data={"validation": 100}))
    assert setup.arms[0].config["data"]["validation"] == 100 and setup.notes == []


def test_selecting_on_a_test_metric_needs_saying_so_and_is_warned_about() -> None:
    config = _tune_config()
    config["tune"] = {**config["tune"], "metric": "test_accuracy"}
    setup = load_tune(config)
    assert setup.metric == "test_accuracy"
    assert setup.arms[0].config["data"].get("validation") is None
    (warning,) = setup.notes
    assert warning.startswith("warning: tune.metric test_accuracy selects on the test split")


def test_compare_tuned_chooses_each_optimizers_setting_on_validation_and_reports_its_test(
    tmp_path: Path,
) -> None:
    """Without a tune.json, `compare --tuned` picks each optimizer's setting as DeepOBS picks
    from a grid on its validation set: lr 0.01 validates better, lr 0.1 tests better."""
    import pandas as pd

    from optbench.analysis.compare import compare_runs, tuned_frame
    from tests.test_compare import _resolved, _write_run

    valid = {0.1: 0.6, 0.01: 0.8}
    for lr, test in ((0.1, 0.9), (0.01, 0.7)):
        config = _resolved({"name": "SGD", "lr": lr}, 0, epochs=2)
        run_dir = _write_run(tmp_path, config, [1 - test] * 2, [test] * 2, [1.0] * 2)
        epochs = pd.read_csv(run_dir / "epochs.csv")
        epochs["valid_accuracy"] = valid[lr]
        epochs.to_csv(run_dir / "epochs.csv", index=False)
    comparison = compare_runs([tmp_path], "final_test_accuracy")
    tuned = tuned_frame(comparison)
    assert tuned["lr"].tolist() == [0.01]
    assert tuned["final_mean"].tolist() == [pytest.approx(0.7)]  # its test figure, reported


@pytest.mark.slow
def test_deepobs_pipeline_reproduces_the_published_quadratic_deep_momentum_figure() -> None:
    """DeepOBS's published Momentum (0.99) row on quadratic_deep, a TensorFlow run that replays
    one shuffle order, drops the partial batch and tests on whole batches (896 of 1000), is
    reproduced within its spread with `shuffle: once, drop_last: true` over its seed count.
    (A new order every epoch ends near 89: docs/problems.md.)"""
    info = PROBLEMS.get("quadratic_deep", "problem")
    published = next(r for r in info.references if r.optimizer == "Momentum")
    mean, std = published.value, 0.026  # DeepOBS's sample std over its 3 seeds (the record)
    assert f"mean ± {std:g}" in published.settings
    finals = []
    for seed in range(3):
        config = {
            "name": "deepobs",
            "problem": "quadratic_deep",
            "seed": seed,
            "device": "cpu",
            "fast": True,
            "optimizer": {"name": "SGD", "lr": 0.0025118864315, "momentum": 0.99},
            "data": {"shuffle": "once", "drop_last": True, "test_batch_size": 128},
        }
        finals.append(train(make_plan(validate_config(config))).rows[-1]["test_loss"])
    assert sum(finals) / len(finals) == pytest.approx(mean, abs=3 * std)


@pytest.mark.slow  # over 10 s in the loaded inner loop (~3 s alone)
def test_a_run_with_eval_every_stopped_mid_epoch_resumes_to_the_uninterrupted_rows(
    tmp_path: Path,
) -> None:
    """Checkpoints stay per epoch: the resumed run redoes the stopped epoch's evaluations and
    ends with the uninterrupted run's rows (the ones between steps included)."""
    config = {**DIGITS, "data": {**DIGITS["data"], "validation": 0.2}}
    plan = _plan(config, eval_every=10, epochs=3)
    whole = train(plan).rows
    checkpoints = CheckpointFile(tmp_path / "checkpoint.pt", plan.run_id)
    with pytest.raises(KeyboardInterrupt):
        train(plan, StopAt(2, 15), checkpoints)  # after step 10 of epoch 2's evaluation
    torch.manual_seed(12345)  # a resumed process starts with unrelated random state
    resumed = train(plan, checkpoints=checkpoints).rows

    def untimed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k not in _NOT_TIMED} for r in rows]

    assert untimed(resumed) == untimed(whole)
    assert completed_epochs(resumed) == 3 and len(resumed) > 3


def test_runs_with_rows_between_steps_compare_by_their_epoch_ends(tmp_path: Path) -> None:
    """compare's per-epoch curves (DeepOBS's best of the mean curve, seed bands) read each
    epoch's last row; the ranking's final values are the runs' last rows."""
    import optbench
    from optbench.analysis.compare import compare_runs, seed_bands

    finals = []
    for seed in (0, 1):
        config = regression_dict(seed=seed, eval_every=3, data={
            **regression_dict()["data"], "validation": 0.25})  # fmt: skip
        run = optbench.run(config, results_dir=tmp_path)
        epochs = run.epochs
        assert len(epochs) > 2 and epochs["epoch"].nunique() == 2
        finals.append(epochs.groupby("epoch").last())
    comparison = compare_runs([tmp_path / "tiny"], "final_valid_loss")
    row = comparison.table.iloc[0]
    assert row["epochs_mean"] == 2 and row["completed"] == 2
    mean = (finals[0]["valid_loss"] + finals[1]["valid_loss"]) / 2  # the ranked column's
    assert row["mean_curve_best"] == pytest.approx(mean.min())
    (band,) = seed_bands(
        comparison.frame, comparison.table, comparison.runs, "valid_loss", 1
    ).values()
    assert band["mean"].tolist() == pytest.approx(
        ((finals[0]["valid_loss"] + finals[1]["valid_loss"]) / 2).tolist()
    )
