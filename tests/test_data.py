"""Data: torchvision's real loading code, in-memory batches identical to ToTensor + Normalize."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import torchvision.transforms as T

from optbench.components.data import (
    CIFAR10_FOLDER,
    TENSOR_FOLDER,
    TENSOR_FORMAT,
    BoundData,
    InMemoryDataset,
    ShuffledBatches,
    bind_data,
    keep_batch,
    load_data,
)
from optbench.components.data.bind import _load_cached
from optbench.core.config import validate_config
from optbench.core.errors import ConfigError
from tests.helpers import FASHION_MNIST_GZ, REPO, regression_dict


def _data_config(**data):
    return validate_config(regression_dict(data=data)).data


def _bound(root: str | Path, **data) -> BoundData:
    return bind_data(_data_config(**data), str(root))


def test_cifar10_goes_through_torchvision_and_matches_its_transforms(cifar_root) -> None:
    root, images = cifar_root
    train, test = load_data(_bound(root, dataset="cifar10"), 0)
    assert (len(train), len(test)) == (100, 30)
    assert train.inputs.dtype == torch.uint8 and train.inputs.shape == (100, 3, 32, 32)

    reference = torchvision.datasets.CIFAR10(
        root, train=True, transform=T.Compose([T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])
    )
    inputs, targets = train.__getitems__([0, 57, 99])
    for row, index in enumerate([0, 57, 99]):
        image, label = reference[index]
        assert torch.equal(inputs[row], image)  # bit-identical, not just close
        assert targets[row].item() == label
    assert np.array_equal(reference.data, images)


def test_cifar10_folder_is_torchvisions() -> None:
    assert torchvision.datasets.CIFAR10.base_folder == CIFAR10_FOLDER


def _load_cifar(root: Path) -> tuple[InMemoryDataset, InMemoryDataset]:
    _load_cached.cache_clear()  # as a fresh process would
    return load_data(_bound(root, dataset="cifar10"), 0)


def _mapped_files() -> str:
    return Path("/proc/self/maps").read_text()


def test_images_come_from_one_memory_mapped_tensor_file_keyed_by_the_sources(cifar_root) -> None:
    root, images = cifar_root
    first, _ = _load_cifar(root)  # parses torchvision's files and writes the tensor file
    (tensor_file,) = (root / TENSOR_FOLDER).glob("cifar10-*.pt")
    second, second_test = _load_cifar(root)  # maps the tensor file
    assert torch.equal(first.inputs, second.inputs) and torch.equal(first.targets, second.targets)
    assert torch.equal(second.inputs.permute(0, 2, 3, 1), torch.from_numpy(images))
    assert len(second_test) == 30
    if Path("/proc/self/maps").exists():  # shared with every other process that maps it
        assert str(tensor_file) in _mapped_files()

    batch = root / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(batch.read_bytes())  # same bytes, new modification time: a new key
    _load_cifar(root)
    (renewed,) = (root / TENSOR_FOLDER).glob("cifar10-*.pt")
    assert renewed != tensor_file


def test_a_damaged_tensor_file_falls_back_to_the_sources(cifar_root) -> None:
    root, images = cifar_root
    _load_cifar(root)
    (tensor_file,) = (root / TENSOR_FOLDER).glob("cifar10-*.pt")
    tensor_file.write_bytes(b"not a zip")
    train, _ = _load_cifar(root)
    assert torch.equal(train.inputs.permute(0, 2, 3, 1), torch.from_numpy(images))
    _load_cifar(root)
    assert tensor_file.stat().st_size > 100 * 3072  # written again


def test_an_unwritable_root_keeps_a_private_copy(cifar_root) -> None:
    root, images = cifar_root
    (root / TENSOR_FOLDER).write_text("a file where the folder would go")
    train, _ = _load_cifar(root)
    assert torch.equal(train.inputs.permute(0, 2, 3, 1), torch.from_numpy(images))


@pytest.mark.parametrize("other_format", ["optbench-tensors-1", None])  # None: no format entry
def test_a_tensor_file_of_another_format_is_rebuilt_not_trusted(
    cifar_root, other_format: str | None
) -> None:
    root, images = cifar_root
    _load_cifar(root)
    (tensor_file,) = (root / TENSOR_FOLDER).glob("cifar10-*.pt")
    saved = torch.load(tensor_file, weights_only=True)
    assert saved["format"] == TENSOR_FORMAT
    foreign = {**saved, "train_inputs": torch.zeros_like(saved["train_inputs"])}
    foreign.pop("format")
    if other_format is not None:
        foreign["format"] = other_format
    torch.save(foreign, root / "foreign.pt")
    os.replace(root / "foreign.pt", tensor_file)  # same name and key, wrong images
    train, _ = _load_cifar(root)
    assert torch.equal(train.inputs.permute(0, 2, 3, 1), torch.from_numpy(images))
    (rebuilt,) = (root / TENSOR_FOLDER).glob("cifar10-*.pt")
    assert rebuilt == tensor_file
    assert torch.load(rebuilt, weights_only=True)["format"] == TENSOR_FORMAT


LOAD_WHEN_TOLD = """
import hashlib, json, sys, time
from pathlib import Path

import torch

from optbench.core.config import DataConfig
from optbench.components.data import TENSOR_FOLDER, bind_data, load_data

root, go = sys.argv[1], Path(sys.argv[2])
bound = bind_data(DataConfig(dataset="fashion_mnist"), root)
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
train, test = load_data(bound, 0)
digests = {
    name: hashlib.sha256(tensor.to(torch.uint8).numpy().tobytes()).hexdigest()
    for name, tensor in [
        ("train-images-idx3-ubyte", train.inputs), ("train-labels-idx1-ubyte", train.targets),
        ("t10k-images-idx3-ubyte", test.inputs), ("t10k-labels-idx1-ubyte", test.targets),
    ]
}
mapped = f"{root}/{TENSOR_FOLDER}/fashion_mnist-" in Path("/proc/self/maps").read_text()
print(json.dumps({"digests": digests, "parsed": "torchvision" in sys.modules, "mapped": mapped}))
"""


@pytest.mark.slow
def test_parallel_first_loads_unpack_and_write_the_tensor_file_once(
    fashion_root: Path, tmp_path: Path
) -> None:
    """Two fresh processes load Fashion-MNIST from Debian's copy into one new root at once."""
    root, go = tmp_path / "data", tmp_path / "go"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", LOAD_WHEN_TOLD, str(root), str(go)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for worker in workers:  # both imported and waiting: then they start together
            assert worker.stdout.readline() == "ready\n", worker.communicate()
        go.touch()
        outputs = [worker.communicate(timeout=240) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
    assert [w.returncode for w in workers] == [0, 0], outputs
    loads = [json.loads(out) for out, _ in outputs]

    def debian(name: str) -> str:
        """The digest of Debian's file without its IDX header."""
        data = gzip.decompress((FASHION_MNIST_GZ.parent / f"{name}.gz").read_bytes())
        return hashlib.sha256(data[16 if "images" in name else 8 :]).hexdigest()

    expected = {name: debian(name) for name in loads[0]["digests"]}
    assert [load["digests"] for load in loads] == [expected, expected]  # Debian's bytes, both
    assert sorted(load["parsed"] for load in loads) == [False, True]  # one parsed, one waited
    assert all(load["mapped"] for load in loads)  # and both map the file it wrote
    assert len(list((root / TENSOR_FOLDER).glob("fashion_mnist-*.pt"))) == 1
    assert sorted(p.name for p in (root / "FashionMNIST" / "raw").iterdir()) == sorted(expected)
    assert not list(root.rglob("*.tmp")) and not list(root.rglob("*.partial"))


def test_missing_cifar10_says_where_it_looked_and_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_data(_bound(str(tmp_path), dataset="cifar10"), 0)
    message = str(error.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "data.download: true" in message


def test_download_without_internet_fails_clearly(tmp_path: Path, monkeypatch) -> None:
    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.datasets.utils, "download_url", offline)
    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    with pytest.raises(ConfigError, match=r"could not load cifar10 .*name resolution"):
        load_data(_bound(str(tmp_path), dataset="cifar10", download=True), 0)


def test_fashion_mnist_is_unpacked_from_the_debian_package(fashion_root: Path) -> None:
    train, test = load_data(_bound(str(fashion_root), dataset="fashion_mnist"), 0)
    assert (len(train), len(test)) == (60_000, 10_000)
    assert (fashion_root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    reference = torchvision.datasets.FashionMNIST(
        fashion_root, train=False, transform=T.Compose([T.ToTensor(), T.Normalize((0.5,), (0.5,))])
    )
    inputs, targets = test.__getitems__([0, 9_999])
    assert torch.equal(inputs[1], reference[9_999][0]) and targets[1].item() == reference[9_999][1]


def test_missing_fashion_mnist_names_both_places(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(
        "optbench.components.data.torchvision_files.SYSTEM_DATA_DIR", tmp_path / "system"
    )
    with pytest.raises(ConfigError) as error:
        load_data(_bound(str(tmp_path / "empty"), dataset="fashion_mnist"), 0)
    message = str(error.value)
    assert "FashionMNIST/raw" in message and str(tmp_path / "system") in message
    assert "dataset-fashion-mnist" in message
    assert not (tmp_path / "empty").exists()  # nothing written


def test_subset_keeps_the_first_samples() -> None:
    full, _ = load_data(_bound("unused", dataset="synthetic_regression"), 0)
    part, _ = load_data(_bound("unused", dataset="synthetic_regression", subset=10), 0)
    assert torch.equal(part.inputs, full.inputs[:10])


def test_synthetic_data_follows_the_seed_and_not_the_global_rng() -> None:
    data = _bound("unused", dataset="synthetic_regression")
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, _ = load_data(data, 1)
    assert torch.equal(torch.get_rng_state(), state)
    b, _ = load_data(data, 2)
    assert not torch.equal(a.inputs, b.inputs)


def test_batched_fetch_keeps_dataloaders_exact_shuffling() -> None:
    inputs, targets = torch.arange(100).float().view(100, 1), torch.arange(100)

    def batches(dataset, **kwargs):
        generator = torch.Generator().manual_seed(7)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=16, shuffle=True, generator=generator, **kwargs
        )
        return [(x.tolist(), y.tolist()) for epoch in range(2) for x, y in loader]

    ours = batches(InMemoryDataset(inputs, targets), collate_fn=keep_batch)
    reference = batches(torch.utils.data.TensorDataset(inputs, targets))
    assert ours == reference
    assert [len(y) for _, y in ours[:7]] == [16] * 6 + [4]


@pytest.mark.parametrize("n", [96, 100, 5])  # a multiple of the batch, a short last batch, one
def test_shuffled_batches_draw_what_torchs_dataloader_draws(n: int) -> None:
    """ShuffledBatches against torch's DataLoader(shuffle=True, generator): the same batches and
    the same generator state after every batch, over three passes (what a checkpoint saves)."""
    inputs, targets = torch.arange(n).float().view(n, 1), torch.arange(n)

    def walk(batches, generator):
        return [
            (x.tolist(), y.tolist(), generator.get_state()) for _ in range(3) for x, y in batches
        ]

    reference_generator = torch.Generator().manual_seed(7)
    reference = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(inputs, targets),
        batch_size=16,
        shuffle=True,
        generator=reference_generator,
    )
    generator = torch.Generator().manual_seed(7)
    ours = ShuffledBatches(InMemoryDataset(inputs, targets), 16, generator)
    assert len(ours) == len(reference)
    expected, got = walk(reference, reference_generator), walk(ours, generator)
    assert [(x, y) for x, y, _ in got] == [(x, y) for x, y, _ in expected]
    assert all(torch.equal(a, b) for (_, _, a), (_, _, b) in zip(got, expected, strict=True))
    assert torch.equal(generator.get_state(), reference_generator.get_state())


def test_a_first_download_takes_the_unpacking_lock(tmp_path: Path, monkeypatch) -> None:
    """Two loads of a dataset with download: true on a fresh root: one downloads while the
    other waits on the dataset's lock, then maps the tensor file (no internet: a stand-in for
    torchvision's class downloads, slowly, and counts how many download at once)."""
    import threading
    import time

    from optbench.components.data.torchvision_files import load_mnist_like

    raw_files = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]
    raw_files += ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    active, most, downloads = [0], [0], []
    guard = threading.Lock()

    class SlowDownload:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            raw = Path(root) / "FashionMNIST" / "raw"
            if download and not all((raw / f).is_file() for f in raw_files):
                with guard:
                    active[0] += 1
                    most[0] = max(most[0], active[0])
                time.sleep(0.3)
                raw.mkdir(parents=True, exist_ok=True)
                for name in raw_files:
                    (raw / name).write_bytes(b"idx")
                downloads.append(train)
                with guard:
                    active[0] -= 1
            self.data = torch.zeros(4 if train else 2, 28, 28, dtype=torch.uint8)
            self.targets = torch.arange(4 if train else 2)

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", SlowDownload)
    root, loads = tmp_path / "fresh", []

    def load() -> None:
        loads.append(load_mnist_like("fashion_mnist", "FashionMNIST", "fm", str(root), True))

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(loads) == 2 and most[0] == 1 and downloads == [True]
    assert len(list((root / TENSOR_FOLDER).glob("fashion_mnist-*.pt"))) == 1
    assert [len(train) for train, _ in loads] == [4, 4]


_COUNTED_DATA = '''
import torch


def counted(calls: str):
    """Appends a line to `calls` each time it is called: the test counts the calls."""
    with open(calls, "a") as log:
        log.write("called\\n")
    inputs = torch.arange(48, dtype=torch.float32).reshape(24, 2)
    return (inputs, inputs.sum(1)), (inputs[:8], inputs[:8].sum(1))
'''

_LOAD_IN_A_PROCESS = """
import json, sys
from optbench.components.data import load_data
from optbench.core.config import validate_config
from optbench.experiment.plan import make_plan
from optbench.sweeps.executors import train_point

config = json.loads(sys.argv[1])
if sys.argv[2] == "plan":  # the driver of a sweep: plans the point
    print(make_plan(validate_config(config)).run_id)
else:  # a sweep's worker: trains the point the driver planned
    result = train_point(sys.argv[3], config, sys.argv[4])
    train, _ = load_data(make_plan(validate_config(config)).data, 0)
    mapped = {line.split()[-1] for line in open("/proc/self/maps") if line.endswith(".pt\\n")}
    print(result.status.value, result.error, *mapped)  # the tensor files this process maps
"""


@pytest.mark.slow
def test_a_sweeps_worker_maps_the_drivers_tensor_file_of_an_imported_dataset(
    tmp_path: Path,
) -> None:
    """Two processes, a sweep's driver then one of its workers, load one imported dataset: the
    worker maps the tensor file the driver wrote (named by the tensors' hash) and the user's
    function, which logs each call to a file, runs once."""
    project, root, calls = tmp_path / "proj", tmp_path / "data", tmp_path / "calls.log"
    project.mkdir()
    (project / "counted_data.py").write_text(_COUNTED_DATA)
    section = {"dataset": "counted_data.counted", "calls": str(calls), "root": str(root)}
    config = json.dumps(regression_dict(data={**section, "batch_size": 8}, epochs=1))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(project)])}

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", _LOAD_IN_A_PROCESS, config, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    run_id = run("plan")
    assert calls.read_text().count("called") == 1
    (tensor_file,) = (root / TENSOR_FOLDER).glob("content-*.pt")
    inputs = torch.load(tensor_file, weights_only=True)["train_inputs"]
    assert torch.equal(inputs, torch.arange(48, dtype=torch.float32).reshape(24, 2))

    status, error, *mapped = run("work", run_id, str(tmp_path / "results")).split(" ")
    assert (status, error) == ("completed", "None")
    assert calls.read_text().count("called") == 1  # the worker did not call it again
    assert list((root / TENSOR_FOLDER).glob("content-*.pt")) == [tensor_file]
    assert mapped == [str(tensor_file)]  # its tensors are the file's pages, not a copy


def test_two_spellings_of_one_data_file_share_one_tensor_file(tmp_path: Path) -> None:
    """A .npz file and a .pt file holding the same tensors: one content-keyed file, which
    holds what numpy's own reader reads from the .npz."""
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 255, (12, 1, 5, 5), dtype=np.uint8),
        "y_train": np.arange(12) % 3,
        "x_test": rng.integers(0, 255, (6, 1, 5, 5), dtype=np.uint8),
        "y_test": np.arange(6) % 3,
    }
    np.savez(tmp_path / "a.npz", **arrays)
    torch.save({k: torch.as_tensor(v) for k, v in arrays.items()}, tmp_path / "b.pt")
    for name in ("a.npz", "b.pt"):
        _load_cached.cache_clear()
        train, _ = load_data(_bound(tmp_path, dataset=str(tmp_path / name)), 0)
        assert np.array_equal(train.inputs.numpy(), np.load(tmp_path / "a.npz")["x_train"])
    (shared,) = (tmp_path / TENSOR_FOLDER).glob("content-*.pt")
    assert len(list((tmp_path / TENSOR_FOLDER).glob("*.digest"))) == 2  # one per file
    assert np.array_equal(torch.load(shared, weights_only=True)["test_inputs"], arrays["x_test"])
