"""The packages users bring, through optbench as a new user writes them: timm's models,
wrapper optimizers (torch-optimizer, schedulefree, pytorch_optimizer), heavyball's and
pytorch_optimizer's own lists of optimizers. Each trains a small problem with a finite loss,
or is refused while planning with a reason; nothing is run wrongly. The counts of the
registry blocks are printed at the end of the test run."""

from __future__ import annotations

import importlib
import inspect
import itertools
import math
import re
import socket
from pathlib import Path

import pytest
import torch

from optbench.core.config import validate_config
from optbench.core.errors import ConfigError
from optbench.experiment.plan import make_plan
from optbench.experiment.train import train
from tests.helpers import (
    ECOSYSTEM_OUTCOMES,
    assert_one_error_line,
    assert_resumes_exactly,
    invoke,
    regression_dict,
    write_config,
)

po = pytest.importorskip("pytorch_optimizer")

# --------------------------------------------------------------------------- timm's models

GRAYSCALE = {"dataset": "grey_images.digits", "batch_size": 8, "test_batch_size": 16}
_GREY_IMAGES = """
import torch


def digits(n: int = 16):
    \"\"\"n grey 28x28 images per split, 10 classes (Fashion-MNIST's shape, in memory).\"\"\"
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2 * n, 1, 28, 28, generator=g)
    y = torch.arange(2 * n) % 10
    return (x[:n], y[:n]), (x[n:], y[n:])


def colour(n: int = 8, size: int = 32):
    \"\"\"n colour size x size images per split, 4 classes.\"\"\"
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2 * n, 3, size, size, generator=g)
    y = torch.arange(2 * n) % 4
    return (x[:n], y[:n]), (x[n:], y[n:])
"""


@pytest.fixture(autouse=True)
def _grey_images(tmp_path_factory, monkeypatch) -> None:
    folder = tmp_path_factory.mktemp("grey")
    (folder / "grey_images.py").write_text(_GREY_IMAGES)
    monkeypatch.syspath_prepend(str(folder))


def _image_plan(model: dict, **data: object):
    config = regression_dict(
        epochs=1, data={**GRAYSCALE, **data}, model=model, loss="cross_entropy"
    )
    return make_plan(validate_config(config))


def test_timm_create_model_takes_its_model_keys_and_the_data_fills_classes_and_channels() -> None:
    pytest.importorskip("timm")
    plan = _image_plan({"name": "timm.create_model", "model_name": "test_resnet"})
    model = plan.build_model()
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.in_channels == 1  # in_chans from the grey images
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)  # num_classes from their 10 classes
    assert plan.resolved["model"]["in_chans"] == 1 and plan.resolved["model"]["num_classes"] == 10
    result = train(plan)
    assert result.status == "completed" and math.isfinite(result.rows[-1]["train_loss"])


def test_timm_short_form_and_every_spelling_of_one_model_is_one_run_id() -> None:
    timm = pytest.importorskip("timm")
    spellings = [
        {"name": "timm/test_resnet"},
        {"name": "timm.create_model", "model_name": "test_resnet"},
        {"name": "timm.create_model", "model_name": "test_resnet", "num_classes": 10},
        {"name": "timm.models._factory:create_model", "model_name": "test_resnet"},
    ]
    run_ids = {_image_plan(model).run_id for model in spellings}
    assert len(run_ids) == 1
    # the same network as timm builds it by hand for this data
    torch.manual_seed(0)
    ours = _image_plan(spellings[0]).build_model(torch.device("cpu"))
    theirs = timm.create_model("test_resnet", num_classes=10, in_chans=1)
    assert [p.shape for p in ours.parameters()] == [p.shape for p in theirs.parameters()]


def test_a_timm_builder_refuses_a_key_its_model_does_not_take_while_planning() -> None:
    pytest.importorskip("timm")
    with pytest.raises(ConfigError, match="nonsense"):
        _image_plan({"name": "timm/test_resnet", "nonsense": 3})
    with pytest.raises(ConfigError, match=r"model\.model_name.*given twice"):
        _image_plan({"name": "timm/test_resnet", "model_name": "resnet18"})


def test_pretrained_weights_are_refused_in_one_line_when_the_internet_is_out_of_reach(
    tmp_path, monkeypatch
) -> None:
    pytest.importorskip("timm")

    def unreachable(*args: object, **kwargs: object) -> socket.socket:
        raise OSError("Name or service not known")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    config = regression_dict(
        data=GRAYSCALE, model={"name": "timm/test_resnet", "pretrained": True}, loss="cross_entropy"
    )
    result = invoke("validate", str(write_config(tmp_path, config)))
    assert_one_error_line(result, "model.pretrained", "huggingface.co")


@pytest.mark.slow  # over 10 s in the loaded inner loop (~3 s alone)
def test_a_three_channel_model_on_grey_images_is_told_what_to_do_and_data_channels_does_it() -> (
    None
):
    with pytest.raises(ConfigError, match=r"to have 3 channels.*data\.channels: 3"):
        _image_plan({"name": "torchvision.models.resnet18"})
    plan = _image_plan({"name": "torchvision.models.resnet18"}, channels=3)
    assert plan.resolved["data"]["channels"] == 3
    model = plan.build_model()
    names = [n for n, _ in model.named_parameters()]
    assert names[0] == "conv1.weight"  # the adapter adds no parameters, param_groups see resnet's
    grey = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        model.eval()  # forward() skips the adapter: the channel repeated by hand
        assert torch.equal(model(grey), model.forward(grey.repeat(1, 3, 1, 1)))
    result = train(plan)
    assert result.status == "completed" and math.isfinite(result.rows[-1]["train_loss"])


def test_data_channels_unset_stays_out_of_the_resolved_config() -> None:
    plan = make_plan(validate_config(regression_dict()))
    assert "channels" not in plan.resolved["data"]
    with pytest.raises(ConfigError, match=r"data\.channels"):
        make_plan(
            validate_config(regression_dict(data={**regression_dict()["data"], "channels": 3}))
        )


def _optimizer_classes(package: str) -> list[str]:
    """A package's own list (its __all__, else its public names), the optimizer classes only,
    wrappers that take an optimizer object included ([] when not installed)."""
    from optbench.components.optimizers import wrapped_arg

    try:
        module = importlib.import_module(package)
    except ImportError:
        return []
    names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    return [
        name
        for name in names
        if inspect.isclass(cls := getattr(module, name))
        and (issubclass(cls, torch.optim.Optimizer) or wrapped_arg(cls) is not None)
    ]


def _planned_or_refused(config: dict, label: str) -> object | None:
    """The plan of `config`, or None when planning refuses it in one line naming the optimizer
    (counted as refused in the summary printed at the end of the test run)."""
    try:
        return make_plan(validate_config(config))
    except ConfigError as refusal:
        message = str(refusal)
        assert message.count("\n") == 0 and message.startswith("optimizer"), message
        ECOSYSTEM_OUTCOMES.setdefault("refused", []).append(f"{label}: {message}")
        return None


def _trains_and_resumes(config: dict, name: str, outcome: str, folder: Path) -> None:
    """`config` trained through optbench.run with its checkpoints, killed after epoch 1 and
    resumed to the unbroken run's table bit for bit (helpers.assert_resumes_exactly), with a
    finite loss in each epoch; counted under `outcome` in the summary printed at the end."""
    run = assert_resumes_exactly(config, folder)
    assert all(math.isfinite(loss) for loss in run.epochs["train_loss"]), name
    ECOSYSTEM_OUTCOMES.setdefault(outcome, []).append(name)


def _timm_sample() -> list[str]:
    """A fixed sample of timm's own list at small sizes: the names that say they are small,
    sorted, taken at an even stride (so the sample is the package's, not hand-picked)."""
    try:
        import timm
    except ImportError:
        return []
    small = sorted(n for n in timm.list_models() if re.search(SMALL_TIMM_NAMES, n))
    return small[:: max(1, len(small) // TIMM_SAMPLE)][:TIMM_SAMPLE]


SMALL_TIMM_NAMES = r"tiny|small|_050|_035|resnet10t|test_"
TIMM_SAMPLE = 7
# Every third model of the sample, from the second, is also killed and resumed through
# optbench.run: the whole sample so takes 8 minutes on 2 cores (each model planned 4 times and
# trained 5 epochs); the stride (2 models) about 2 min there.
TIMM_RESUME_STRIDE = 3


def _smallest_input(name: str) -> tuple[int, dict]:
    """The image size to train `name` on, and the model keys it needs there: 32 pixels (a
    multiple of its patch size for a patch model), with `img_size` for classes that take it
    (ViTs fix their position embeddings to it). Read from the model built on the meta device."""
    import timm

    with torch.device("meta"):
        model = timm.create_model(name)
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    patch = patch[0] if isinstance(patch, (tuple, list)) else patch
    size = patch * math.ceil(32 / patch) if patch else 32
    takes_size = "img_size" in inspect.signature(type(model)).parameters
    return size, ({"img_size": size} if takes_size else {})


@pytest.mark.slow  # 7 models of 0.5-27 M parameters, built and trained: ~5 min on a busy 2-core box
@pytest.mark.parametrize("name", _timm_sample())
def test_a_sample_of_timms_small_models_trains_and_resumes_or_is_refused_in_one_true_line(
    name: str, tmp_path: Path
) -> None:
    pytest.importorskip("timm")
    size, keys = _smallest_input(name)
    data = {"dataset": "grey_images.colour", "size": size, "batch_size": 4, "test_batch_size": 8}
    config = regression_dict(
        epochs=1, data=data, model={"name": f"timm/{name}", **keys}, loss="cross_entropy"
    )
    try:
        plan = make_plan(validate_config(config))
    except ConfigError as refusal:
        message = str(refusal)
        assert message.count("\n") == 0 and message.startswith("model"), message
        ECOSYSTEM_OUTCOMES.setdefault("refused", []).append(f"timm/{name}: {message}")
        return
    model = plan.build_model()
    assert model(torch.zeros(2, 3, size, size)).shape == (2, 4)  # num_classes from the data
    assert plan.resolved["model"]["num_classes"] == 4 and plan.resolved["model"]["in_chans"] == 3
    if name in _timm_sample()[1::TIMM_RESUME_STRIDE]:
        _trains_and_resumes(config, name, "trained and resumed (timm)", tmp_path)
        return
    result = train(plan)
    assert result.status == "completed" and math.isfinite(result.rows[-1]["train_loss"])
    ECOSYSTEM_OUTCOMES.setdefault("trained (timm)", []).append(name)


# --------------------------------------------------------------------------- wrapper optimizers

WRAPPERS = [
    ("torch_optimizer", "torch_optimizer.Lookahead", "optimizer"),
    ("schedulefree", "schedulefree.ScheduleFreeWrapper", "base"),
    ("pytorch_optimizer", "pytorch_optimizer.Lookahead", "optimizer"),
]


def _wrapper_config(path: str, base_lr: float, **sections: object) -> dict:
    optimizer = {"name": path, "base_optimizer": {"name": "SGD", "lr": base_lr}}
    data = {"dataset": "synthetic_regression", "n_train": 64, "n_test": 16, "batch_size": 16}
    return regression_dict(epochs=1, data=data, optimizer=optimizer, **sections)


def _wrapper_plan(path: str, base_lr: float):
    return make_plan(validate_config(_wrapper_config(path, base_lr)))


@pytest.mark.parametrize(("package", "path", "argument"), WRAPPERS)
def test_a_wrapper_optimizer_wraps_its_base_optimizer_from_a_nested_section(
    package: str, path: str, argument: str, tmp_path: Path
) -> None:
    pytest.importorskip(package)
    plan = _wrapper_plan(path, 0.05)
    base = {"name": "SGD", **plan.optimizer.base.hyperparameters}
    assert plan.resolved["optimizer"]["base_optimizer"] == base
    assert plan.resolved["optimizer"]["base_optimizer"]["lr"] == 0.05
    assert _wrapper_plan(path, 0.1).run_id != plan.run_id
    built = plan.build_optimizer(plan.build_model())
    inner = getattr(built, argument)  # where each package keeps the optimizer it wraps
    assert isinstance(inner, torch.optim.SGD) and inner.param_groups[0]["lr"] == 0.05
    # the README's example, through `optbench run` with its checkpoints
    _trains_and_resumes(
        _wrapper_config(path, 0.05), path, "trained and resumed (wrapper)", tmp_path
    )


# (schedulefree's wrapper is no torch Optimizer: a scheduler cannot take it)
@pytest.mark.parametrize(
    ("package", "path", "argument"), [w for w in WRAPPERS if "Lookahead" in w[1]]
)
def test_a_wrapper_and_its_base_share_their_groups_after_a_resume_so_a_scheduler_moves_both(
    package: str, path: str, argument: str, tmp_path: Path
) -> None:
    # Lookahead's load_state_dict gives it and its base two lists of groups: the scheduler's
    # lr after epoch 2 would reach only the wrapper's, and epoch 3 train at the old lr.
    pytest.importorskip(package)
    config = _wrapper_config(path, 0.05, scheduler={"name": "StepLR", "step_size": 1})
    config["epochs"] = 3
    unbroken = assert_resumes_exactly(config, tmp_path)
    assert unbroken.epochs["lr"].tolist() == pytest.approx([0.05, 0.005, 0.0005])


def test_a_wrapper_without_its_base_optimizer_is_refused_naming_the_section() -> None:
    pytest.importorskip("torch_optimizer")
    config = regression_dict(optimizer={"name": "torch_optimizer.Lookahead"})
    with pytest.raises(ConfigError, match=r"optimizer\.base_optimizer.*wraps a base optimizer"):
        make_plan(validate_config(config))


# --------------------------------------------------------------------------- pytorch_optimizer

SAM_FAMILY = ["SAM", "GSAM", "WSAM", "BSAM", "FriendlySAM", "LookSAM"]
NAMES = [*po.get_supported_optimizers(), *SAM_FAMILY]


def _load(name: str) -> type:
    return getattr(po, name) if name in SAM_FAMILY else po.load_optimizer(name)


@pytest.mark.slow  # 134 optimizers, each planned and trained
@pytest.mark.parametrize("name", NAMES)
def test_every_pytorch_optimizer_trains_and_resumes_or_is_refused_with_a_reason(
    name: str, tmp_path: Path
) -> None:
    try:
        cls = _load(name)
    except (ImportError, NotImplementedError) as exc:  # an optional dependency, or CUDA
        ECOSYSTEM_OUTCOMES.setdefault("skipped", []).append(f"{name}: {exc}")
        pytest.skip(f"{name}: {exc}")
    parameters = inspect.signature(cls).parameters
    optimizer: dict = {"name": f"{cls.__module__}.{cls.__qualname__}"}
    if "lr" in parameters:
        optimizer["lr"] = 0.01
    if "base_optimizer" in parameters:
        optimizer["base_optimizer"] = {"name": "SGD", "lr": 0.05}
    config = regression_dict(
        epochs=1,
        data={"dataset": "synthetic_regression", "n_train": 64, "n_test": 16, "batch_size": 16},
        model={"name": "mlp", "hidden_sizes": [8]},
        optimizer=optimizer,
    )
    try:
        plan = make_plan(validate_config(config))
    except ConfigError as refusal:
        message = str(refusal)
        assert message.count("\n") == 0 and message.startswith("optimizer"), message
        if "needs a package that is not installed" in message:
            ECOSYSTEM_OUTCOMES.setdefault("skipped", []).append(f"{name}: {message}")
            pytest.skip(message)
        ECOSYSTEM_OUTCOMES.setdefault("refused", []).append(f"{name}: {message}")
        return
    outcome = f"trained and resumed ({plan.optimizer.protocol.name})"
    _trains_and_resumes(config, name, outcome, tmp_path)


# --------------------------------------------------------------------------- torch-optimizer


def _needs_create_graph(cls: type) -> bool:
    """What the package documents for its second-order classes (Adahessian's docstring:
    `loss.backward(create_graph=True)`): those are stepped with `protocol: second_order`."""
    return "create_graph=True" in (inspect.getdoc(cls) or "")


@pytest.mark.slow  # 30 classes, each trained 3 times through optbench.run: ~30 s in all
@pytest.mark.parametrize("name", _optimizer_classes("torch_optimizer"))
def test_every_torch_optimizer_trains_and_resumes_or_is_refused_in_one_true_line(
    name: str, tmp_path: Path
) -> None:
    torch_optimizer = pytest.importorskip("torch_optimizer")
    cls = getattr(torch_optimizer, name)
    parameters = inspect.signature(cls).parameters
    optimizer: dict = {"name": f"torch_optimizer.{name}"}
    if "params" not in parameters:  # a wrapper (Lookahead): it takes an optimizer object
        optimizer["base_optimizer"] = {"name": "SGD", "lr": 0.05}
    elif "lr" in parameters:
        optimizer["lr"] = 0.01
    if _needs_create_graph(cls):
        optimizer["protocol"] = "second_order"
    config = _small_regression(optimizer)
    plan = _planned_or_refused(config, f"torch_optimizer.{name}")
    if plan is None:
        return
    assert plan.optimizer.protocol.name == ("second_order" if _needs_create_graph(cls) else "plain")
    _trains_and_resumes(config, name, "trained and resumed (torch_optimizer)", tmp_path)


# --------------------------------------------------------------------------- heavyball


@pytest.fixture
def _heavyball_uncompiled(monkeypatch):
    """heavyball compiles its updates with torch.compile: minutes on a CPU, so tests skip it."""
    heavyball = pytest.importorskip("heavyball")
    monkeypatch.setattr(heavyball.utils, "compile_mode", None)
    return heavyball


def _small_regression(optimizer: dict) -> dict:
    return regression_dict(
        epochs=1,
        data={"dataset": "synthetic_regression", "n_train": 32, "n_test": 8, "batch_size": 16},
        model={"name": "mlp", "hidden_sizes": [8]},
        optimizer=optimizer,
    )


@pytest.mark.slow  # ~40 classes, each trained 3 times through optbench.run: ~40 s in all
@pytest.mark.parametrize("name", _optimizer_classes("heavyball"))
def test_every_heavyball_optimizer_trains_and_resumes_or_is_refused_in_one_true_line(
    name: str, _heavyball_uncompiled, tmp_path: Path
) -> None:
    cls = getattr(_heavyball_uncompiled, name)
    optimizer: dict = {"name": f"heavyball.{name}"}
    if "lr" in inspect.signature(cls).parameters:
        optimizer["lr"] = 0.001
    config = _small_regression(optimizer)
    if _planned_or_refused(config, f"heavyball.{name}") is not None:
        _trains_and_resumes(config, name, "trained and resumed (heavyball)", tmp_path)


# --------------------------------------------------------------------------- schedulefree


@pytest.mark.slow  # 10 classes, each trained 3 times through optbench.run: ~10 s in all
@pytest.mark.parametrize("name", _optimizer_classes("schedulefree"))
def test_every_schedulefree_optimizer_trains_and_resumes_or_is_refused_in_one_true_line(
    name: str, tmp_path: Path
) -> None:
    import schedulefree

    from optbench.components.optimizers import wrapped_arg

    cls = getattr(schedulefree, name)
    optimizer: dict = {"name": f"schedulefree.{name}"}
    if wrapped_arg(cls) is not None:
        optimizer["base_optimizer"] = {"name": "SGD", "lr": 0.05}
    elif "lr" in inspect.signature(cls).parameters:
        optimizer["lr"] = 0.01
    config = _small_regression(optimizer)
    if _planned_or_refused(config, f"schedulefree.{name}") is not None:
        _trains_and_resumes(config, name, "trained and resumed (schedulefree)", tmp_path)


def test_planning_steps_on_a_batch_like_the_data_so_psgdkron_is_not_refused(
    _heavyball_uncompiled,
) -> None:
    # PSGDKron refuses all-zero gradients ("Grad or HVP is all 0s"), as a batch of zeros gives
    plan = make_plan(validate_config(_small_regression({"name": "heavyball.PSGDKron"})))
    result = train(plan)
    assert result.status == "completed" and math.isfinite(result.rows[-1]["train_loss"])


def test_validate_says_the_first_steps_pay_heavyballs_compilation_while_it_is_on(
    tmp_path, monkeypatch
) -> None:
    heavyball = pytest.importorskip("heavyball")
    assert heavyball.utils.compile_mode is not None  # the package's own default compiles
    # planning's trial step would compile (44 s on a CPU); the line is about the setting
    monkeypatch.setattr("optbench.experiment.plan._try_step", lambda *args: None)
    config = write_config(tmp_path, _small_regression({"name": "heavyball.AdamW"}))
    result = invoke("validate", str(config))
    assert result.exit_code == 0, result.output
    assert "compiles its step with torch.compile" in result.output
    assert "AdamW's first 5 steps took 3.4 s" in result.output
    monkeypatch.setattr(heavyball.utils, "compile_mode", None)
    result = invoke("validate", str(config))
    assert result.exit_code == 0 and "torch.compile" not in result.output
    sgd = invoke("validate", str(write_config(tmp_path, _small_regression({"name": "SGD"}))))
    assert sgd.exit_code == 0 and "torch.compile" not in sgd.output


@pytest.mark.slow  # one compilation of heavyball's step: ~10 s on a CPU in torch's default mode
def test_a_sweep_worker_compiles_heavyballs_step_once_not_once_per_run(
    tmp_path, monkeypatch
) -> None:
    heavyball = pytest.importorskip("heavyball")
    from torch._dynamo.utils import counters

    from optbench.sweeps.executors import train_point

    # The package's max-autotune searches kernels for ~40 s more; its guards are the same.
    monkeypatch.setattr(heavyball.utils, "compile_mode", "default")
    points = [_small_regression({"name": "heavyball.AdamW", "lr": lr}) for lr in (1e-3, 2e-3, 3e-3)]
    with monkeypatch.context() as driver:  # the driver's run-ids, planned without compiling
        driver.setattr("optbench.experiment.plan._try_step", lambda *args: None)
        run_ids = [make_plan(validate_config(config)).run_id for config in points]
    graphs = [counters["stats"]["unique_graphs"]]
    # what a worker process does with the points it is sent, one after another
    for run_id, config in zip(run_ids, points, strict=True):
        result = train_point(run_id, config, str(tmp_path))
        assert result.status == "completed", result.error
        graphs.append(counters["stats"]["unique_graphs"])
    compiled = [after - before for before, after in itertools.pairwise(graphs)]
    assert compiled[0] > 0 and compiled[1:] == [0, 0], compiled  # torch's own count of graphs


# --------------------------------------------------------------------------- Muon's groups

MUON_FAMILY = [n for n in po.get_supported_optimizers() if "muon" in n or n == "adago"]


@pytest.mark.parametrize("name", MUON_FAMILY)
def test_the_muon_family_gets_use_muon_groups_by_the_documented_rule_and_trains(
    name: str,
) -> None:
    cls = po.load_optimizer(name)
    optimizer = {"name": f"{cls.__module__}.{cls.__qualname__}"}
    if name == "distributedmuon":  # it needs torch.distributed's process group: a true refusal
        with pytest.raises(ConfigError, match="process group has not been initialized"):
            make_plan(validate_config(_small_regression(optimizer)))
        return
    plan = make_plan(validate_config(_small_regression(optimizer)))
    model = plan.build_model()
    built = plan.build_optimizer(model)
    by_name = {id(p): n for n, p in model.named_parameters()}
    muon = {by_name[id(p)] for g in built.param_groups if g["use_muon"] for p in g["params"]}
    assert muon == {"1.weight"}  # the hidden layer's weight; not its bias, not the output layer
    adamw = next(g for g in built.param_groups if not g["use_muon"])
    defaults = inspect.signature(cls).parameters
    assert adamw["lr"] == defaults["adamw_lr"].default  # the package filled its AdamW group
    result = train(plan)
    assert result.status == "completed", (name, result.diverged_at)
    assert all(math.isfinite(row["train_loss"]) for row in result.rows)


def test_a_param_groups_entry_sets_use_muon_itself() -> None:
    optimizer = {
        "name": "pytorch_optimizer.Muon",
        "param_groups": [{"params": ["3.weight"], "use_muon": True}],
    }
    plan = make_plan(validate_config(_small_regression(optimizer)))
    model = plan.build_model()
    by_name = {id(p): n for n, p in model.named_parameters()}
    built = plan.build_optimizer(model)
    muon = {by_name[id(p)] for g in built.param_groups if g["use_muon"] for p in g["params"]}
    assert muon == {"1.weight", "3.weight"}
    assert plan.resolved["optimizer"]["param_groups"][0]["use_muon"] is True  # in the run-id


# --------------------------------------------------------------------------- effective lr

SELF_TUNING = [
    ("prodigyopt", "prodigyopt.Prodigy"),
    ("dadaptation", "dadaptation.DAdaptAdam"),
    ("dadaptation", "dadaptation.DAdaptSGD"),
    ("pytorch_optimizer", "pytorch_optimizer.DAdaptAdam"),
    ("pytorch_optimizer", "pytorch_optimizer.Prodigy"),
]


@pytest.mark.parametrize(("package", "path"), SELF_TUNING)
def test_an_optimizer_that_adapts_its_step_size_logs_d_times_lr_as_effective_lr(
    package: str, path: str, tmp_path
) -> None:
    pytest.importorskip(package)
    from optbench.experiment.checkpoint import CheckpointFile

    config = _small_regression({"name": path})
    config["epochs"] = 2
    plan = make_plan(validate_config(config))
    checkpoints = CheckpointFile(tmp_path / "checkpoint.pt", plan.run_id)
    result = train(plan, checkpoints=checkpoints)
    assert result.status == "completed"
    # what the package's own state holds after the last epoch (its d, its lr)
    group = checkpoints.load(torch.device("cpu"))["optimizer"]["param_groups"][0]
    assert result.rows[-1]["effective_lr"] == pytest.approx(group["d"] * group["lr"])
    assert result.rows[-1]["lr"] == 1.0 and result.rows[-1]["effective_lr"] != 1.0
    assert result.rows[0]["effective_lr"] != result.rows[-1]["effective_lr"]  # d moved


def test_an_optimizer_with_a_given_step_size_leaves_effective_lr_empty() -> None:
    result = train(make_plan(validate_config(_small_regression({"name": "SGD", "lr": 0.01}))))
    assert all(row["effective_lr"] is None for row in result.rows)


# --------------------------------------------------------------------------- Schedule-Free, BN

_BN_MODELS = """
from torch import nn


class BatchNormMLP(nn.Sequential):
    def __init__(self, in_features: int, num_outputs: int, width: int = 8) -> None:
        super().__init__(
            nn.Linear(in_features, width), nn.BatchNorm1d(width), nn.ReLU(),
            nn.Linear(width, num_outputs),
        )
"""


def _schedule_free_hand_loop(plan, recompute: bool) -> list[float]:
    """schedulefree's README loop, by hand: optimizer.train()/eval() around training and
    evaluation, and for BatchNorm, training batches through the model in train mode after
    optimizer.eval() (in order; optbench takes up to 50)."""
    import itertools

    import schedulefree
    from torch.utils.data import DataLoader

    from optbench.components.data import keep_batch, load_data

    config = plan.config
    torch.manual_seed(config.seed)
    model = plan.build_model()
    optimizer = schedulefree.SGDScheduleFree(model.parameters(), lr=0.05)
    train_set, test_set = load_data(plan.data, config.seed)
    loader = DataLoader(
        train_set,
        batch_size=config.data.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(config.seed),
        collate_fn=keep_batch,
    )
    test_losses = []
    for _ in range(config.epochs):
        model.train()
        optimizer.train()
        for inputs, targets in loader:
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(inputs), targets).backward()
            optimizer.step()
        optimizer.eval()
        if recompute:  # the README's recipe
            model.train()
            with torch.no_grad():
                for inputs, _ in itertools.islice(train_set.batches(config.data.batch_size), 50):
                    model(inputs)
        model.eval()
        torch.empty((), dtype=torch.int64).random_()  # what optbench's evaluation draws
        with torch.no_grad():
            total = sum(
                torch.nn.functional.mse_loss(model(x), y).item() * len(y)
                for x, y in test_set.batches(config.data.test_batch_size)
            )
        test_losses.append(total / len(test_set))
    return test_losses


def test_schedule_free_recomputes_batch_norm_statistics_as_its_readme_says(
    tmp_path, monkeypatch
) -> None:
    pytest.importorskip("schedulefree")
    (tmp_path / "bn_models.py").write_text(_BN_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = _small_regression({"name": "schedulefree.SGDScheduleFree", "lr": 0.05})
    config.update(epochs=2, model={"name": "bn_models.BatchNormMLP"})
    plan = make_plan(validate_config(config))
    rows = train(plan).rows
    ours = [row["test_loss"] for row in rows]
    assert ours == pytest.approx(_schedule_free_hand_loop(plan, recompute=True), rel=1e-6)
    assert ours != pytest.approx(_schedule_free_hand_loop(plan, recompute=False), rel=1e-6)
