"""The built-in image datasets' files: found in data.root, unpacked from Debian's gzipped
IDX copies (Fashion-MNIST, MNIST) or downloaded, and read through torchvision (IDX files,
CIFAR-10's pickles) into the shared tensor file."""

from __future__ import annotations

import functools
import gzip
import shutil
from pathlib import Path

import torch

from optbench.components.data.memory import InMemoryDataset
from optbench.components.data.tensor_cache import exclusive, lock_path, through_tensor_file
from optbench.core.config import SYSTEM_DATA_DIR
from optbench.core.errors import ConfigError
from optbench.storage.results import write_atomic


def _missing(name: str, looked: list[Path], hint: str) -> ConfigError:
    places = " and ".join(str(p) for p in looked)
    return ConfigError(f"dataset {name} was not found in {places}; {hint}")


def _unpack_system_copy(folder: Path, system_dir: Path, files: list[str], lock: Path) -> bool:
    """Unpack Debian's gzipped IDX files into torchvision's raw folder; False if absent.

    One process unpacks while the others wait on the dataset's `lock`, so parallel workers on a
    fresh root unpack it once. Each file goes through a temporary name of its own and is renamed
    into place, so even unlocked no process reads or clobbers another's half-written file.
    """
    if not all((system_dir / f"{f}.gz").is_file() for f in files):
        return False
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with exclusive(lock) as locked:
            if locked:  # what an unpacker killed mid-file left behind
                for leftover in folder.glob(".*.tmp"):
                    leftover.unlink(missing_ok=True)
            for f in files:
                if not (folder / f).exists():
                    with gzip.open(system_dir / f"{f}.gz", "rb") as src:
                        write_atomic(folder / f, functools.partial(shutil.copyfileobj, src))
    except (OSError, ConfigError) as exc:  # write_atomic's errors included
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(
            f"cannot unpack {system_dir} into {folder}: {reason}; "
            "set data.root (or $OPTBENCH_DATA) to a writable folder"
        ) from None
    return True


CIFAR10_FOLDER = "cifar-10-batches-py"  # torchvision.datasets.CIFAR10.base_folder


def load_mnist_like(
    name: str, cls_name: str, debian_dir: str, root: str, download: bool
) -> tuple[InMemoryDataset, InMemoryDataset]:
    raw = Path(root) / cls_name / "raw"
    files = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ]
    system_dir = SYSTEM_DATA_DIR / debian_dir
    have_files = all((raw / f).is_file() for f in files)
    lock = lock_path(root, name)
    if not have_files and not download and not _unpack_system_copy(raw, system_dir, files, lock):
        raise _missing(
            name,
            [raw, system_dir],
            f"set data.download: true to fetch it, or install Debian's dataset-{debian_dir}",
        )

    def read() -> tuple[InMemoryDataset, InMemoryDataset]:
        import torchvision  # only when parsing: the tensor file spares its import (~0.5 s)

        cls = getattr(torchvision.datasets, cls_name)
        splits = []
        for train in (True, False):
            try:
                ds = cls(root, train=train, download=download)
            except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError...
                raise ConfigError(f"could not load {name} from {root}: {exc}") from None
            splits.append(InMemoryDataset(ds.data.unsqueeze(1).contiguous(), ds.targets.long()))
        return splits[0], splits[1]

    return through_tensor_file(name, root, raw, read)


def load_cifar10(root: str, download: bool) -> tuple[InMemoryDataset, InMemoryDataset]:
    folder = Path(root) / CIFAR10_FOLDER
    if not folder.is_dir() and not download:
        raise _missing(
            "cifar10",
            [folder],
            "set data.download: true to fetch it from www.cs.toronto.edu (needs internet)",
        )

    def read() -> tuple[InMemoryDataset, InMemoryDataset]:
        import torchvision

        splits = []
        for train in (True, False):
            try:
                ds = torchvision.datasets.CIFAR10(root, train=train, download=download)
            except Exception as exc:
                raise ConfigError(f"could not load cifar10 from {root}: {exc}") from None
            images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
            splits.append(InMemoryDataset(images, torch.as_tensor(ds.targets, dtype=torch.long)))
        return splits[0], splits[1]

    return through_tensor_file("cifar10", root, folder, read)
