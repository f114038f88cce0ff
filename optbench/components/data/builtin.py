"""The registry of built-in datasets: each one's name, description, shape, loader and default
normalisation, registered into DATASETS in the order `optbench list` shows them."""

from __future__ import annotations

import functools

from optbench.components.data.sklearn_sets import (
    SKLEARN_DATASETS,
    check_sklearn,
    load_sklearn,
    sklearn_spec,
    split_options,
)
from optbench.components.data.spec import DATASETS, DatasetInfo, DataSpec
from optbench.components.data.synthetic import (
    check_synthetic,
    deepobs_quadratic,
    deepobs_quadratic_validation,
    deepobs_two_d,
    deepobs_two_d_validation,
    synthetic_regression,
)
from optbench.components.data.text import (
    FORTUNES_FOLDER,
    FORTUNES_INSTALL,
    SPLIT,
    fortunes_options,
    load_fortunes,
    load_text,
    text_options,
)
from optbench.components.data.torchvision_files import load_cifar10, load_mnist_like


def _register_torchvision() -> None:
    """cifar10, fashion_mnist and mnist; their sources are named, not imported (torchvision's
    import costs ~0.5 s), so `torchvision.datasets.CIFAR10` resolves to `cifar10`."""
    DATASETS.register(
        "cifar10",
        DatasetInfo(
            "cifar10",
            "CIFAR-10: 50k/10k colour images 3x32x32, 10 classes (torchvision.datasets.CIFAR10)",
            lambda options: DataSpec((3, 32, 32), 10, 50_000),
            lambda root, download: load_cifar10(root, download),
            ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ),
        source="torchvision.datasets.cifar.CIFAR10",
    )
    for name, cls_name, debian_dir, mean, std, what in (
        ("fashion_mnist", "FashionMNIST", "fashion-mnist", 0.5, 0.5, "clothing"),
        ("mnist", "MNIST", "mnist", 0.1307, 0.3081, "digit"),
    ):
        DATASETS.register(
            name,
            DatasetInfo(
                name,
                f"{cls_name}: 60k/10k grey {what} images 1x28x28, 10 classes "
                f"(torchvision.datasets.{cls_name})",
                lambda options: DataSpec((1, 28, 28), 10, 60_000),
                functools.partial(load_mnist_like, name, cls_name, debian_dir),
                ((mean,), (std,)),
            ),
            source=f"torchvision.datasets.mnist.{cls_name}",
        )


def _register_sklearn() -> None:
    """The sklearn_* datasets; their sources are named, not imported, so
    `sklearn.datasets.load_digits` resolves to `sklearn_digits`."""
    for name, dataset in SKLEARN_DATASETS.items():
        DATASETS.register(
            name,
            DatasetInfo(
                name,
                f"scikit-learn's {dataset.what}, {dataset.samples} samples (sklearn.datasets."
                f"{dataset.loader}; options: split_seed, test_size, standardize"
                f"{'' if dataset.classes else ', standardize_target'}; needs "
                "optbench[sklearn])",
                functools.partial(sklearn_spec, name),
                functools.partial(load_sklearn, name),
                None,
                options=split_options(name),
                code_args=("name",),
                check_options=functools.partial(check_sklearn, name),
            ),
            source=f"sklearn.datasets._base.{dataset.loader}",
        )


def _register_synthetic() -> None:
    """synthetic_regression, drawn from the run's seed."""
    DATASETS.register(
        "synthetic_regression",
        DatasetInfo(
            "synthetic_regression",
            "y = x·w + b + noise with x ~ N(0, I), generated from the seed (options: n_train, "
            "n_test, features, noise, data_seed)",
            lambda options: DataSpec((options["features"],), None, options["n_train"]),
            lambda root, download, **options: synthetic_regression(**options),
            None,
            options=synthetic_regression,
            code_args=("seed",),
            check_options=check_synthetic,
            takes_seed=True,
        ),
        source=synthetic_regression,
    )


def _register_deepobs() -> None:
    """quadratic and two_d: DeepOBS's fixed-seed noise for its test functions."""
    for name, load, validation, spec, what in (
        (
            "quadratic",
            deepobs_quadratic,
            deepobs_quadratic_validation,
            DataSpec((100,), None, 1000),
            "DeepOBS's quadratic data: 1000/1000 draws of N(0, 0.6^2 I) in 100 dimensions, "
            "fixed seeds 42/43, validation 1000 from seed 44 (quadratic_deep)",
        ),
        (
            "two_d",
            deepobs_two_d,
            deepobs_two_d_validation,
            DataSpec((2,), None, 10_000),
            "DeepOBS's 2-D noise: 10000 (x, y) pairs of N(0, 1), fixed seed 42, validation "
            "10000 from seed 44; test set zeros (rosenbrock, beale, branin)",
        ),
    ):
        DATASETS.register(
            name,
            DatasetInfo(
                name,
                what,
                functools.partial(lambda options, spec: spec, spec=spec),
                functools.partial(lambda root, download, load: load(), load=load),
                None,
                validation=functools.partial(lambda root, download, load: load(), load=validation),
            ),
            source=load,
        )


def _register_text() -> None:
    """text (a user's file or folder) and fortunes (Debian's corpus): byte-level token windows
    (data/text.py), read while planning, identified by a hash of their bytes."""
    blocks = "/".join(f"{f:g}" for f in SPLIT)
    for name, load, options, what in (
        (
            "text",
            load_text,
            text_options,
            "A text file or a folder of .txt files (path:)",
        ),
        (
            "fortunes",
            load_fortunes,
            fortunes_options,
            f"Debian's fortunes corpus, 2.6 MB of English quotations ({FORTUNES_INSTALL}; "
            f"read from {FORTUNES_FOLDER})",
        ),
    ):
        DATASETS.register(
            name,
            DatasetInfo(
                name,
                f"{what} as tokens (bytes, or its characters with vocabulary: chars), "
                f"train/validation/test {blocks} contiguous blocks, (input, next-token) windows "
                f"(options: {'path, ' if name == 'text' else ''}context, windows_per_epoch, "
                "vocabulary)",
                None,
                load,
                None,
                options=options,
                by_tensors=True,
                listed="context tokens, a class per token",
            ),
            source=load,
        )


# The order `optbench list` has always shown.
_register_synthetic()
_register_torchvision()
_register_sklearn()
_register_deepobs()
_register_text()
