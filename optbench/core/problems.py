"""Named, versioned test problems: a dataset, model, loss and budget defined once, after a source.

`problem: fmnist_2c2d` in a config supplies the problem's sections (data, model, loss, epochs,
batch size, any fixed regularisation); keys the config sets itself override them, and
`validate` shows and config.yaml records which ones did. Each record says where its definition
comes from, what differs from that source, the exact parameter count the source gives (tested),
the metric it is judged by, and the published figures one can stand next to.

Torch-free: `optbench list problems` and the config loader read it without importing torch.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from optbench.core.errors import ConfigError
from optbench.core.metrics import RankableName
from optbench.core.registry import Registry

# What a problem is judged by (a column training is judged by); compare ranks by it by default.
ProblemMetric = RankableName


@dataclass(frozen=True)
class Reference:
    """A published figure for a problem: not a run, a number someone reported."""

    optimizer: str  # as the source names it, e.g. "SGD", "Momentum", "Adam"
    metric: str  # a column of epochs.csv, e.g. "test_accuracy"
    value: float
    epoch: int  # the epoch the figure is at
    settings: str  # the conditions, e.g. "lr 0.0316 (tuned), batch 128, 100 epochs"
    source: str  # where it is published
    # True: the figure is the problem's target, the level a run must reach to count as
    # converged (DeepOBS's "convergence performance", which its speed metric counts epochs to).
    target: bool = False


@dataclass(frozen=True)
class ProblemInfo:
    name: str
    version: int  # bumped whenever the definition changes, so runs of two versions never mix
    description: str
    config: dict[str, Any]  # the config sections the problem supplies
    parameters: int  # the trainable parameter count, as the source gives it
    metric: ProblemMetric
    source: str  # where the definition is read from
    differs: str = ""  # what differs from the source, and why (empty: nothing)
    references: tuple[Reference, ...] = field(default_factory=tuple)
    # (metric, value, why): the benchmark's target where the source publishes none.
    own_target: tuple[str, float, str] | None = None
    # (data.validation, why): the validation split a tune or benchmark of the problem holds
    # out when its config sets none; DeepOBS's size where it has one. Every problem has one.
    validation: tuple[float | int | str, str] | None = None

    @property
    def default_validation(self) -> float | int | str:
        """The `data.validation` a tune of this problem uses when its config sets none."""
        assert self.validation is not None, f"{self.name}: no validation split"
        return self.validation[0]

    @property
    def target(self) -> tuple[str, float] | None:
        """(metric, value) a run must reach to count as converged, when the source gives one."""
        return next(((r.metric, r.value) for r in self.references if r.target), None)

    @property
    def benchmark_target(self) -> tuple[str, float]:
        """The target `optbench benchmark` scores time to: the published one, else optbench's
        own (`own_target`, justified where it is set); every registered problem has one."""
        if self.target is not None:
            return self.target
        assert self.own_target is not None, f"{self.name}: no target"
        return self.own_target[0], self.own_target[1]


PROBLEMS: Registry[ProblemInfo] = Registry("problem")


def _merged(base: Any, override: Any) -> Any:
    """`override` on top of `base`, mapping by mapping; anything else replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = copy.deepcopy(base)
        for key, value in override.items():
            merged[key] = _merged(merged.get(key), value) if key in merged else value
        return merged
    return copy.deepcopy(override)


def _overrides(problem: Any, given: Any, prefix: str = "") -> dict[str, Any]:
    """The dotted keys `given` sets differently from `problem` (what the user changed)."""
    if isinstance(problem, dict) and isinstance(given, dict):
        changed: dict[str, Any] = {}
        for key, value in given.items():
            changed |= _overrides(problem.get(key), value, f"{prefix}{key}.")
        return changed
    return {} if problem == given else {prefix.rstrip("."): given}


def apply_problem(data: dict[str, Any]) -> dict[str, Any]:
    """A config mapping with its `problem:` expanded: the problem's sections, then the config's
    own keys on top. `problem` becomes {name, version, overrides} for the record."""
    name = data.get("problem")
    if name is None or isinstance(name, dict):  # none, or expanded already (a resolved config)
        return data
    if not isinstance(name, str):
        raise ConfigError("problem", f"must be a problem's name, got {name!r}")
    info = PROBLEMS.get(name, "problem")
    own = {k: v for k, v in data.items() if k != "problem"}
    merged = _merged(info.config, own)
    overrides = {
        k: v for k, v in _overrides(info.config, own).items() if k.split(".")[0] in info.config
    }
    merged["problem"] = {"name": info.name, "version": info.version, "overrides": overrides}
    return merged


# --------------------------------------------------------------------------- the problems
# Each family registers below; tests/test_problems.py is parametrized over PROBLEMS.

# ---- DeepOBS image classification problems
# Read from DeepOBS's PyTorch code (github.com/fsschneider/DeepOBS, deepobs/pytorch/): the nets
# in testproblems/testproblems_modules.py, the data in datasets/, batch size and epochs from
# DEFAULT_TEST_PROBLEMS_SETTINGS in deepobs/config.py. The published figures attached are
# DeepOBS's baselines (its baselines/ result files: SGD, Momentum and Adam at their tuned lr)
# where it published them, and its convergence performance (deepobs/run_utils.py): the test
# accuracy its speed metric counts epochs to, set from those baselines.

_DEEPOBS = "https://github.com/fsschneider/DeepOBS/blob/master/deepobs/pytorch/testproblems/"
_UNIT_SCALE = {"mean": [0.0], "std": [1.0]}  # ToTensor only: uint8 / 255, nothing more
_RUN_UTILS = "DeepOBS, deepobs/run_utils.py convergence_performance (fsschneider/DeepOBS@5f7c813)"
# DeepOBS's own convergence performances (test accuracy), by problem.
_CONVERGENCE = {"mnist_mlp": 0.97, "fmnist_2c2d": 0.9186, "cifar10_3c3d": 0.8279}


# optbench's own targets where DeepOBS gives no convergence performance: (metric, value, why).
# Each is a level a tuned classic optimizer reaches within the problem's budget; a suite can
# set its own (`targets:`) for a shorter budget.
_OWN_TARGETS: dict[str, tuple[str, float, str]] = {
    "fmnist_logreg": ("test_accuracy", 0.84, "about what linear softmax reaches on Fashion-MNIST"),
    "mnist_logreg": ("test_accuracy", 0.92, "about what linear softmax reaches on MNIST"),
    "fmnist_mlp": ("test_accuracy", 0.88, "just under fmnist_2c2d's 0.9186: an MLP reaches less"),
    "mnist_2c2d": ("test_accuracy", 0.99, "a small convnet's usual MNIST level, above mnist_mlp's"),
    "quadratic_deep": (
        "test_loss",
        87.5,
        "DeepOBS's three tuned baselines all end at or below it (SGD 87.442, the worst)",
    ),
    "rosenbrock": ("distance_to_optimum", 0.1, "within 0.1 of (1, 1), from 1.58 away"),
    "beale": ("distance_to_optimum", 1.0, "out of the flat valley: 1 from (3, 0.5), from 8.5"),
    "branin": ("distance_to_optimum", 0.1, "within 0.1 of a minimum, from 5.7 away"),
    "digits_mlp": ("test_accuracy", 0.95, "a 1-hidden-layer MLP's usual level on 8x8 digits"),
    "diabetes_linear": (
        "test_loss",
        0.56,
        "within 10% of least squares' test MSE on this split with standardised targets (0.5085, "
        "sklearn LinearRegression; 3180 in the raw units, whose std is 79.1)",
    ),
}

_BASELINES_SOURCE = (
    "DeepOBS's baselines, baselines/{name}/{folder}/ (fsschneider/DeepOBS@873bbc2): TensorFlow "
    "runs at the learning rate DeepOBS's grid search chose"
)
# DeepOBS's published baselines at their tuned settings: (optimizer, DeepOBS's class, lr,
# momentum, final mean, sample std, the seeds' final values averaged: those its baseline
# folder holds in the index read, of the ten it ran), at the last of 100 epochs, batch 128.
_BASELINES: dict[str, tuple[str, tuple[tuple[Any, ...], ...]]] = {
    "fmnist_2c2d": (
        "test_accuracy",
        (
            ("SGD", "GradientDescentOptimizer", 0.15848931925, None, 0.9227, 0.0013, 7),
            ("Momentum", "MomentumOptimizer", 0.0025118864315, 0.99, 0.9207, 0.0024, 6),
            ("Adam", "AdamOptimizer", 0.00025118864315, None, 0.9243, 0.0031, 6),
        ),
    ),
    "cifar10_3c3d": (
        "test_accuracy",
        (
            ("SGD", "GradientDescentOptimizer", 0.063095734448, None, 0.8390, 0.0074, 5),
            ("Momentum", "MomentumOptimizer", 0.00039810717055, 0.99, 0.8466, 0.0050, 6),
            ("Adam", "AdamOptimizer", 0.00039810717055, None, 0.8447, 0.0036, 4),
        ),
    ),
    "quadratic_deep": (  # DeepOBS publishes its loss, not a distance to the optimum
        "test_loss",
        (
            ("SGD", "GradientDescentOptimizer", 0.015848931925, None, 87.442, 0.189, 4),
            ("Momentum", "MomentumOptimizer", 0.0025118864315, 0.99, 87.055, 0.026, 3),
            ("Adam", "AdamOptimizer", 0.039810717055, None, 87.106, 0.024, 5),
        ),
    ),
}


def _baselines(name: str, epochs: int) -> tuple[Reference, ...]:
    """DeepOBS's SGD, Momentum and Adam baselines of `name` at their tuned settings (none: ())."""
    if name not in _BASELINES:
        return ()
    metric, rows = _BASELINES[name]
    references = []
    for optimizer, deepobs, lr, momentum, mean, std, seeds in rows:
        torch_optim = f"SGD lr {lr:.3g}" if optimizer != "Adam" else f"Adam lr {lr:.3g}"
        if momentum is not None:
            torch_optim += f", momentum {momentum}"
        settings = (
            f"{torch_optim} (DeepOBS's tuned {deepobs}), batch 128, {epochs} epochs; "
            f"mean ± {std:g} (sample std) over {seeds} seeds"
        )
        source = _BASELINES_SOURCE.format(name=name, folder=deepobs)
        references.append(Reference(optimizer, metric, mean, epochs, settings, source))
    return tuple(references)


def _convergence(name: str, epochs: int) -> tuple[Reference, ...]:
    """DeepOBS's convergence performance for `name` as a reference and target (none: ())."""
    if name not in _CONVERGENCE:
        return ()
    settings = (
        "convergence performance (DeepOBS's target: a run has converged once it reaches it), "
        f"set from its tuned SGD, Momentum and Adam baselines; batch 128, {epochs} epochs"
    )
    return (
        Reference(
            "DeepOBS baselines",
            "test_accuracy",
            _CONVERGENCE[name],
            epochs,
            settings,
            _RUN_UTILS,
            target=True,
        ),
    )


_CIFAR10_NORMALIZE = {  # DeepOBS's datasets/cifar10.py
    "mean": [0.49139968, 0.48215841, 0.44653091],
    "std": [0.24703223, 0.24348513, 0.26158784],
}
# What every one of these differs in from DeepOBS's pipeline.
_PIPELINE = (
    "Trains on the whole training set and keeps the last, smaller batch; DeepOBS holds out "
    "10,000 random training images as a validation set and drops the last batch "
    "(drop_last=True); data: {validation: 10000, drop_last: true} does the same. "
    "Truncated-normal weights (where used) are drawn by torch's trunc_normal_ "
    "(the same distribution: N(0, std^2) cut at 2 std), not by scipy seeded from a torch draw, "
    "so a seed gives other initial weights than DeepOBS's."
)
_NO_TRUNCATION = (
    "Trains on the whole training set and keeps the last, smaller batch; DeepOBS holds out "
    "10,000 random training images as a validation set and drops the last batch "
    "(drop_last=True); data: {validation: 10000, drop_last: true} does the same."
)


# DeepOBS's image datasets hold out a validation set the size of the test set (10,000) from
# the training data (deepobs/pytorch/datasets/, train_eval_size and the validation split).
_DEEPOBS_VALIDATION = "10,000 training images, the size of the test set, as DeepOBS holds out"


def _deepobs_problem(
    name: str,
    what: str,
    dataset: str,
    model: str,
    epochs: int,
    parameters: int,
    differs: str,
    normalize: dict[str, list[float]] | None = None,
    version: int = 1,
    augment: str | None = None,
    **extra: Any,
) -> None:
    config: dict[str, Any] = {
        "data": {
            "dataset": dataset,
            "batch_size": 128,
            "normalize": normalize or _UNIT_SCALE,
            **({"augment": augment} if augment is not None else {}),
        },
        "model": {"name": model},
        "loss": {"name": "cross_entropy"},
        "epochs": epochs,
        **extra,
    }
    PROBLEMS.register(
        name,
        ProblemInfo(
            name=name,
            version=version,
            description=what,
            config=config,
            parameters=parameters,
            metric="test_accuracy",
            source=f"{_DEEPOBS}{name}.py",
            differs=differs,
            references=_baselines(name, epochs) + _convergence(name, epochs),
            own_target=_OWN_TARGETS.get(name),
            validation=(10_000, _DEEPOBS_VALIDATION),
        ),
    )


for _data, _dataset in (("fmnist", "fashion_mnist"), ("mnist", "mnist")):
    _images = "Fashion-MNIST" if _data == "fmnist" else "MNIST"
    _deepobs_problem(
        f"{_data}_logreg",
        f"DeepOBS {_data}_logreg: multinomial logistic regression on {_images}, weights and "
        "biases zero, batch 128, 50 epochs",
        _dataset,
        "deepobs_logreg",
        50,
        7_850,
        _NO_TRUNCATION,
    )
    _deepobs_problem(
        f"{_data}_mlp",
        f"DeepOBS {_data}_mlp: MLP 1000-500-100-10 with ReLUs on {_images}, batch 128, 100 epochs",
        _dataset,
        "deepobs_mlp",
        100,
        1_336_610,
        _PIPELINE,
    )
    _deepobs_problem(
        f"{_data}_2c2d",
        f"DeepOBS {_data}_2c2d: two conv, two dense layers on {_images}, batch 128, 100 epochs",
        _dataset,
        "deepobs_2c2d",
        100,
        3_274_634,
        _PIPELINE,
    )

_deepobs_problem(
    "cifar10_3c3d",
    "DeepOBS cifar10_3c3d: three conv, three dense layers on CIFAR-10, L2 0.002 on the "
    "weights, batch 128, 100 epochs",
    "cifar10",
    "deepobs_3c3d",
    100,
    895_210,
    "Data augmentation as DeepOBS's (pad 2, random crop 32, random horizontal flip, colour "
    "jitter: brightness 63/255, saturation [0.5, 1.5], contrast [0.2, 1.8], in a random order "
    "per image), done on whole batches (data.augment: deepobs_cifar10, components/augment.py): "
    "each image's crop, flip, factors and order have the distributions torchvision's "
    "per-sample transforms give them, but are drawn from another random stream (one generator "
    "seeded from the run's seed, not the global RNG sample by sample), so a seed augments "
    "differently from DeepOBS. The colour operations are torchvision's tensor kernels (float, "
    "clamped to [0, 1], grey = 0.2989 R + 0.587 G + 0.114 B); DeepOBS applies them to PIL "
    "images, which round to 8 bits after each operation, weigh grey 0.299/0.587/0.114 and "
    "round the contrast mean to an integer. " + _NO_TRUNCATION + " The test loss is the data "
    "loss alone; DeepOBS's includes the L2 penalty.",
    normalize=_CIFAR10_NORMALIZE,
    version=2,  # 2: augmented as DeepOBS (1 trained without augmentation)
    augment="deepobs_cifar10",
    regularization={"l2": 0.002, "params": "*weight*"},
)

# ---- DeepOBS quadratic and 2-D problems
# The model is the point being optimised, the data its noise, the loss the function's value
# (components/models.py, components/data/synthetic.py, components/twod.py); runs log
# `distance_to_optimum`.

_DEEPOBS = "https://github.com/fsschneider/DeepOBS/blob/master/"
_DRAWN_VALIDATION = "fresh noise from RandomState(44), as DeepOBS draws its validation set"
_DROPS_LAST = (
    "DeepOBS drops the last partial batch of each epoch and of the test set; optbench keeps it "
    "(one more, smaller step per epoch). Shuffling is torch's, not DeepOBS's loader's, and a "
    "new order every epoch; DeepOBS's published TensorFlow runs replay one order. "
    "data: {shuffle: once, drop_last: true, test_batch_size: 128} is that pipeline "
    "(docs/problems.md)."
)

PROBLEMS.register(
    "quadratic_deep",
    ProblemInfo(
        name="quadratic_deep",
        version=1,
        description="DeepOBS's 100-dimensional noisy quadratic 0.5 (θ - x)ᵀ Q (θ - x), Q with "
        "90 eigenvalues in (0, 1) and 10 in (30, 60), θ from ones",
        config={
            "data": {"dataset": "quadratic", "batch_size": 128},
            "model": {"name": "quadratic_deep"},
            "loss": "function_value",
            "epochs": 100,  # deepobs/config.py DEFAULT_TEST_PROBLEMS_SETTINGS: 128, 100
        },
        parameters=100,
        metric="distance_to_optimum",
        source=f"{_DEEPOBS}deepobs/pytorch/testproblems/quadratic_deep.py "
        "(data: deepobs/pytorch/datasets/quadratic.py)",
        differs=f"{_DROPS_LAST} The optimum (θ = 0, the minimiser of the expected loss) is "
        "optbench's; DeepOBS names none. Q is float32 (DeepOBS builds it in float64).",
        references=_baselines("quadratic_deep", 100),
        own_target=_OWN_TARGETS["quadratic_deep"],
        validation=("own", _DRAWN_VALIDATION),
    ),
)
for _name, _start, _minimum in (
    ("rosenbrock", "(-0.5, 1.5)", "minimum (1, 1)"),
    ("beale", "(-4.5, 4.5)", "minimum (3, 0.5)"),
    ("branin", "(2.5, 12.5)", "minima (-π, 12.275), (π, 2.275), (9.42478, 2.475)"),
):
    PROBLEMS.register(
        _name,
        ProblemInfo(
            name=_name,
            version=1,
            description=f"DeepOBS's noisy 2-D {_name.capitalize()} f(u, v) + u·x + v·y, "
            f"x, y ~ N(0, 1), from {_start}; {_minimum}",
            config={
                "data": {"dataset": "two_d", "batch_size": 128},
                "model": {"name": _name},
                "loss": "function_value",
                "epochs": 100,
            },
            parameters=2,
            metric="distance_to_optimum",
            source=f"{_DEEPOBS}deepobs/tensorflow/testproblems/two_d_{_name}.py "
            "(data: deepobs/tensorflow/datasets/two_d.py)",
            differs=f"DeepOBS gives no batch size or epochs for the 2-D problems "
            "(deepobs/config.py lists none): 128 and 100 are its usual ones. "
            f"{_DROPS_LAST} No validation set (DeepOBS's is drawn from RandomState(44)).",
            own_target=_OWN_TARGETS[_name],
            validation=("own", _DRAWN_VALIDATION),
        ),
    )

# ---- scikit-learn's bundled datasets
# Real data that installs offline (optbench[sklearn]); the split and the standardisation are
# optbench's (sklearn ships each dataset unsplit), pinned here so a changed default cannot
# change the problem.

_SKLEARN_SPLIT = {"split_seed": 0, "test_size": 0.25, "standardize": True}
_SKLEARN_DIFFERS = (
    "sklearn ships the data unsplit: optbench splits it with train_test_split (split_seed 0, "
    "test_size 0.25, stratified for classes) and standardises the features with the training "
    "split's statistics"
)

_SKLEARN_VALIDATION = "20% of the training split (optbench's: the source holds none out)"

PROBLEMS.register(
    "digits_mlp",
    ProblemInfo(
        "digits_mlp",
        1,
        "MLP 64-100-10 (ReLU) on scikit-learn's 8x8 digits as 64 features, 1347/450 split",
        {
            "data": {"dataset": "sklearn_digits", **_SKLEARN_SPLIT, "batch_size": 32},
            "model": {"name": "mlp", "hidden_sizes": [100], "activation": "relu"},
            "loss": {"name": "cross_entropy"},
            "epochs": 30,
        },
        parameters=7_510,  # 64·100 + 100 (hidden layer) + 100·10 + 10 (output layer)
        metric="test_accuracy",
        source="scikit-learn bundled dataset (sklearn.datasets.load_digits)",
        differs=_SKLEARN_DIFFERS,
        own_target=_OWN_TARGETS["digits_mlp"],
        validation=(0.2, _SKLEARN_VALIDATION),
    ),
)
PROBLEMS.register(
    "diabetes_linear",
    ProblemInfo(
        "diabetes_linear",
        2,  # 2: targets standardised (version 1 kept sklearn's 25-346)
        "Linear regression (nn.Linear(10, 1), MSE) on scikit-learn's diabetes, 331/111 split, "
        "standardised targets",
        {
            "data": {
                "dataset": "sklearn_diabetes",
                **_SKLEARN_SPLIT,
                "standardize_target": True,
                "batch_size": 32,
            },
            "model": {"name": "linear"},
            "loss": {"name": "mse"},
            "epochs": 100,
        },
        parameters=11,  # 10 weights + 1 bias
        metric="test_loss",
        source="scikit-learn bundled dataset (sklearn.datasets.load_diabetes)",
        differs=_SKLEARN_DIFFERS
        + "; the targets (25-346) are standardised with the training split's mean and std too "
        "(test_loss in units of the target's variance: multiply by 6254 for sklearn's units), "
        "so that no optimizer needs an lr beyond a shared range",
        own_target=_OWN_TARGETS["diabetes_linear"],
        validation=(0.2, _SKLEARN_VALIDATION),
    ),
)

# ---- a byte-level language model
# nanoGPT's shape (components/gpt.py) at CPU size on a real corpus that installs from Debian's
# registry (components/data/text.py): what optimizers are compared on today, small enough to
# train in about two minutes on two cores.

PROBLEMS.register(
    "char_gpt",
    ProblemInfo(
        "char_gpt",
        1,
        "Byte-level GPT (nanoGPT's shape: 2 layers, 2 heads, width 64, context 64) on Debian's "
        "fortunes corpus, 1000 steps of 32 windows",
        {
            "data": {
                "dataset": "fortunes",
                "context": 64,
                "windows_per_epoch": 6400,
                "batch_size": 32,
                "test_batch_size": 256,
            },
            "model": {"name": "gpt", "n_layer": 2, "n_head": 2, "n_embd": 64},
            "loss": {"name": "token_cross_entropy"},
            "epochs": 5,
        },
        # V·C + T·C + n_layer (12·C² + 13·C) + 2·C with V 256, T 64, C 64 (gpt_parameters)
        parameters=120_576,
        metric="test_bits_per_byte",
        source="nanoGPT's model.py (github.com/karpathy/nanoGPT), its shakespeare_char recipe "
        "scaled down; data: Debian's fortunes and fortunes-min packages",
        differs="nanoGPT's shakespeare_char trains 6 layers of width 384 for 5000 steps on "
        "1 MB of Shakespeare; this is a 0.12M-parameter model for CPUs. Evaluation reads the "
        "test block's non-overlapping windows (every token predicted once, with 0 to 63 tokens "
        "of context), not nanoGPT's random windows.",
        references=(
            Reference(
                "AdamW",
                "test_bits_per_byte",
                3.2465,
                5,
                "lr 0.003, weight_decay 0.1 (none on biases, LayerNorms and embeddings), "
                "betas (0.9, 0.999), seed 0; configs/problems/char_gpt.yaml",
                "measured with optbench (BENCHMARKS.md, section 11; docs/language-models.md)",
            ),
        ),
        own_target=(
            "test_bits_per_byte",
            3.5,
            "AdamW at lr 0.003 reaches 3.40 at epoch 4 and 3.25 at epoch 5 (lr 0.01: 3.63 at "
            "epoch 4); 3.5 is a level a tuned optimizer reaches inside the budget",
        ),
        validation=("own", "the corpus's contiguous validation block (5% of its bytes)"),
    ),
)
