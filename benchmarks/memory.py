"""Peak memory (RSS) of one optbench run and of a parallel sweep, against the 1 GB goal.

Usage:
    python benchmarks/memory.py [--subset N] [--workers W] [--data-root DIR]

Every measurement is a fresh child process, sampled every ~0.1 s (with its descendants) from
/proc/<pid>/smaps: Rss, Pss (shared pages split between the processes that map them), and the
part of each that maps optbench's dataset tensor file (<root>/optbench-tensors/*.pt). The
child's own peak RSS is the kernel's ru_maxrss from os.wait4 (for a sweep: its largest process).

  baseline       a child that only imports torch, torchvision and optbench.runner
  cifar10 cold   cifar_cnn, SGD(lr=0.01, momentum=0.9), batch 64, 1 epoch on the first N train
                 images (--subset; 0 = all 50000) of a CIFAR-10-shaped folder (random uint8, full
                 size: 5 x 10000 train, 10000 test) via optbench.runner.run_experiment; parses
                 torchvision's pickles and writes the tensor file
  cifar10 warm   the same again: memory-maps the tensor file
  fashion_mnist  the same model and settings on real Fashion-MNIST in --data-root
  sweeps         `optbench sweep` of 4 such fashion_mnist runs (seeds 0-3) on --workers
                 processes: "shared" maps --data-root's tensor file; "private" uses a copy of
                 the raw files under a root where optbench-tensors is a plain file, so no tensor
                 file can be written and every worker parses and keeps its own copy
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from common import command_line, load_average, machine

from optbench.data import TENSOR_FOLDER

GOAL_MB = 1000.0  # 1 GB
CIFAR_FLOAT32_MB = 50_000 * 3 * 32 * 32 * 4 / 1e6
CIFAR_UINT8_MB = 60_000 * 3 * 32 * 32 / 1e6  # train + test
SWEEP_SEEDS = [0, 1, 2, 3]
FIELDS = ("Rss", "Pss", "Anonymous", "Shared_Clean", "Shared_Dirty", "Data_Rss", "Data_Pss")
CHILD = """
import json, sys
import torch, torchvision
from optbench.runner import run_experiment
md5 = json.loads(sys.argv[3])
if md5:  # accept the CIFAR-10-shaped files that benchmarks/memory.py wrote
    cls = torchvision.datasets.CIFAR10
    cls.train_list = [[name, md5[name]] for name, _ in cls.train_list]
    cls.test_list = [[name, md5[name]] for name, _ in cls.test_list]
    cls.meta = {**cls.meta, "md5": md5[cls.meta["filename"]]}
if sys.argv[1] != "-":
    status = run_experiment(sys.argv[1], results_dir=sys.argv[2]).summary.get("status")
    sys.exit(0 if status == "completed" else f"run ended {status}")
"""


def write_cifar10(root: Path) -> dict[str, str]:
    """CIFAR-10's on-disk format (pickled batches of 3072-byte rows), full size; md5 per file."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng, md5 = np.random.default_rng(0), {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    for name in names:
        content: dict = {"label_names": [f"class{i}" for i in range(10)]}
        if name != "batches.meta":
            data = rng.integers(0, 256, size=(10_000, 3072), dtype=np.uint8)
            content = {"data": data, "labels": rng.integers(0, 10, size=10_000).tolist()}
        blob = pickle.dumps(content)
        (folder / name).write_bytes(blob)
        md5[name] = hashlib.md5(blob).hexdigest()
    return md5


def config(dataset: str, root: str, subset: int, sweep: bool = False) -> dict:
    data = {"dataset": dataset, "root": root, "batch_size": 64}
    return {
        "name": f"memory_{dataset}",
        "seed": 0,
        "epochs": 1,
        "device": "cpu",
        "data": data | ({"subset": subset} if subset else {}),
        "model": {"name": "cifar_cnn"},
        "loss": "cross_entropy",
        "optimizer": {"name": "SGD", "lr": 0.01, "momentum": 0.9},
        **({"sweep": {"seed": SWEEP_SEEDS}} if sweep else {}),
    }


def descendants(pid: int) -> list[int]:
    """pid and every process below it, from the parent ids in /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


def smaps(pid: int) -> dict[str, int] | None:
    """kB per field over all mappings; Data_* for the mappings of the dataset tensor file."""
    try:
        text = Path(f"/proc/{pid}/smaps").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    totals, in_data = dict.fromkeys(FIELDS, 0), False
    for line in text.splitlines():
        if not line[:1].isupper():  # a mapping's header: address range ... path
            in_data = TENSOR_FOLDER in line
            continue
        key, _, value = line.partition(":")
        if key in totals:
            totals[key] += int(value.split()[0])
            if in_data and key in ("Rss", "Pss"):
                totals[f"Data_{key}"] += int(value.split()[0])
    roles = {"spawn_main": "worker", "resource_tracker": "resource tracker", " sweep ": "driver"}
    role = next((r for marker, r in roles.items() if marker in cmdline), "run")
    return totals | {"role": role}  # type: ignore[dict-item]


def measure(label: str, command: list[str], log: Path) -> dict:
    """Run command, sampling its process tree; peaks in MB and the peak-Pss sample."""
    print(f"{label} ...", file=sys.stderr, flush=True)
    started, samples = time.perf_counter(), []
    with open(log, "w") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        sample = {p: s for p in descendants(child.pid) if (s := smaps(p))}
        samples.append(sample)
        time.sleep(0.1)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        sys.exit(f"{label} failed ({child.returncode}):\n{log.read_text()[-3000:]}")
    total = [{k: sum(s[k] for s in sample.values()) / 1024 for k in FIELDS} for sample in samples]
    peak = max(range(len(total)), key=lambda i: total[i]["Pss"])
    seconds = time.perf_counter() - started
    print(f"  {seconds:.1f} s, {len(samples)} samples", file=sys.stderr, flush=True)
    return {
        "label": label,
        "maxrss": usage.ru_maxrss / 1024,
        "rss": max(t["Rss"] for t in total),
        "pss": total[peak]["Pss"],
        "data_rss": total[peak]["Data_Rss"],
        "data_pss": total[peak]["Data_Pss"],
        "at_peak": samples[peak],
        "log": log.read_text(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=10_000, help="train images per run, 0=all")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data-root", default=os.environ.get("OPTBENCH_DATA", "data"))
    args = parser.parse_args()
    data_root = str(Path(args.data_root).resolve())
    load_before = load_average()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print("writing a CIFAR-10-shaped folder ...", file=sys.stderr, flush=True)
        md5 = json.dumps(write_cifar10(folder / "cifar"))
        private = folder / "private"
        raw = Path(data_root) / "FashionMNIST" / "raw"
        if raw.is_dir():  # else optbench unpacks Debian's copy there, as it would into data_root
            shutil.copytree(raw, private / "FashionMNIST" / "raw")
        private.mkdir(exist_ok=True)
        (private / TENSOR_FOLDER).write_text("a file, so no tensor file can be written here\n")
        paths = {}
        for name, dataset, root, sweep in (
            ("cifar", "cifar10", str(folder / "cifar"), False),
            ("fashion", "fashion_mnist", data_root, False),
            ("shared", "fashion_mnist", data_root, True),
            ("private", "fashion_mnist", str(private), True),
        ):
            paths[name] = folder / f"{name}.yaml"
            paths[name].write_text(yaml.safe_dump(config(dataset, root, args.subset, sweep)))
        fashion_warm = any((Path(data_root) / TENSOR_FOLDER).glob("fashion_mnist-*.pt"))

        def child(label: str, path: str, with_md5: str = "{}") -> dict:
            command = [sys.executable, "-c", CHILD, path, tempfile.mkdtemp(dir=folder), with_md5]
            return measure(label, command, folder / "child.log")

        def sweep(label: str, path: Path) -> dict:
            results = tempfile.mkdtemp(dir=folder)
            command = [sys.executable, "-m", "optbench", "sweep", str(path), "--workers"]
            command += [str(args.workers), "--results-dir", results]
            result = measure(label, command, folder / "sweep.log")
            if f"{len(SWEEP_SEEDS)} completed" not in result["log"]:
                sys.exit(f"{label}: expected {len(SWEEP_SEEDS)} completed runs:\n{result['log']}")
            return result

        base = child("baseline (imports only)", "-")
        runs = [
            child("cifar10, cold (parse + write tensor file)", str(paths["cifar"]), md5),
            child("cifar10, warm (map tensor file)", str(paths["cifar"]), md5),
            child(f"fashion_mnist ({'warm' if fashion_warm else 'cold'})", str(paths["fashion"])),
        ]
        sweeps = [
            sweep("sweep, shared", paths["shared"]),
            sweep("sweep, private", paths["private"]),
        ]

    subset = f"first {args.subset} of 50000/60000 train images" if args.subset else "all images"
    print("# Memory: peak RSS of one run and of a parallel sweep\n")
    print(f"- command: `{command_line()}`")
    print(f"- machine: {machine()}")
    print(f"- load average (1, 5, 15 min) before: {load_before}, after: {load_average()}")
    print(f"- runs: cifar_cnn, SGD(lr=0.01, momentum=0.9), batch 64, 1 epoch, {subset}, full")
    print("  test set; cifar10 is a CIFAR-10-shaped folder of random uint8 (5 x 10000 + 10000)")
    print(f"- sweep: {len(SWEEP_SEEDS)} fashion_mnist runs (seeds), --workers {args.workers}")
    print("- MB = 10^6 bytes; Rss/Pss sampled every ~0.1 s from /proc/<pid>/smaps over the process")
    print("  tree; 'dataset file' = mappings of optbench-tensors/*.pt; ru_maxrss from os.wait4\n")
    print(
        "| run | peak RSS (ru_maxrss) MB | over baseline MB | vs 1 GB goal | dataset file Rss MB |"
    )
    print("|---|---|---|---|---|")
    for r in [base, *runs]:
        over = r["maxrss"] - base["maxrss"]
        verdict = "meets" if r["maxrss"] < GOAL_MB else "misses"
        print(
            f"| {r['label']} | {r['maxrss']:.0f} | {over:.0f} | {verdict} | {r['data_rss']:.0f} |"
        )
    one = runs[-1]
    print(f"\nOne run's peak (fashion_mnist): ru_maxrss {one['maxrss']:.0f} MB, sampled Rss ")
    print(f"{one['rss']:.0f} MB, Pss {one['pss']:.0f} MB.\n")
    print(
        "| sweep | peak Σ Rss MB | peak Σ Pss MB | Σ Pss / one run's Pss | "
        "largest process peak (ru_maxrss) MB | dataset file Σ Rss / Σ Pss MB at peak Pss |"
    )
    print("|---|---|---|---|---|---|")
    for s in sweeps:
        print(
            f"| {s['label']} | {s['rss']:.0f} | {s['pss']:.0f} | {s['pss'] / one['pss']:.2f}x | "
            f"{s['maxrss']:.0f} | {s['data_rss']:.0f} / {s['data_pss']:.0f} |"
        )
    print("\nPer process, at each sweep's peak-Pss sample (MB):\n")
    print("| sweep | pid | role | Rss | Pss | anonymous | shared | dataset file Rss / Pss |")
    print("|---|---|---|---|---|---|---|---|")
    for s in sweeps:
        for pid, p in sorted(s["at_peak"].items()):
            mb = {k: p[k] / 1024 for k in FIELDS}
            shared = mb["Shared_Clean"] + mb["Shared_Dirty"]
            print(
                f"| {s['label']} | {pid} | {p['role']} | {mb['Rss']:.0f} | {mb['Pss']:.0f} | "
                f"{mb['Anonymous']:.0f} | {shared:.0f} | {mb['Data_Rss']:.0f} / "
                f"{mb['Data_Pss']:.0f} |"
            )
    cold, warm = runs[0]["maxrss"], runs[1]["maxrss"]
    shared, private = sweeps
    print("\n## Conclusions\n")
    print(
        f"- cifar10 peak RSS: {cold:.0f} MB cold, {warm:.0f} MB warm: goal (< 1 GB) "
        f"{'met' if max(cold, warm) < GOAL_MB else 'NOT met'}. The images are kept as uint8 "
        f"({CIFAR_UINT8_MB:.0f} MB train + test); as float32 the train set alone would be "
        f"{CIFAR_FLOAT32_MB:.0f} MB, vs {warm - base['maxrss']:.0f} MB the warm run adds over "
        f"importing torch ({base['maxrss']:.0f} MB)."
    )
    print(
        f"- sweep of {len(SWEEP_SEEDS)} runs on {args.workers} workers: peak Σ Pss "
        f"{shared['pss']:.0f} MB = {shared['pss'] / one['pss']:.2f}x one run's "
        f"({one['pss']:.0f} MB); Σ Rss {shared['rss']:.0f} MB counts shared pages (torch's "
        f"libraries, the dataset file) once per process. With the tensor file shared, Σ Pss is "
        f"{private['pss'] - shared['pss']:.0f} MB below the private-copy sweep's "
        f"({private['pss']:.0f} MB)."
    )
    print(
        "- the dataset file's pages are mapped by every worker but counted once in Σ Pss "
        f"(Σ Rss {shared['data_rss']:.0f} MB vs Σ Pss {shared['data_pss']:.0f} MB at the peak); "
        "only the pages a run touched are resident (with --subset, a part of the train set)."
    )


if __name__ == "__main__":
    main()
