"""Peak memory (RSS) of one optbench run and of a parallel sweep, against the 1 GB goal.

Usage:
    python benchmarks/memory.py [--subset N] [--workers W] [--data-root DIR]

Every measurement is a fresh child process, sampled every ~0.1 s (with its descendants) from
/proc/<pid>/smaps: Rss, Pss (shared pages split between the processes that map them), and the
part of each that maps optbench's dataset tensor file (<root>/optbench-tensors/*.pt). Peak RSS
is the kernel's ru_maxrss from os.wait4 (for a sweep: its largest process), over the process's
whole life, interpreter exit included; a run also reports its ru_maxrss just before exiting.

  baseline       a child that only imports torch and optbench.experiment.runner
  cifar10 cold   cifar_cnn, SGD(lr=0.01, momentum=0.9), batch 64, 1 epoch on the first N train
                 images (--subset; 0 = all 50000) of a CIFAR-10-shaped folder (random uint8, full
                 size: 5 x 10000 train, 10000 test) via run_experiment; parses
                 torchvision's pickles and writes the tensor file
  cifar10 warm   the same again: memory-maps the tensor file (no torchvision import)
  fashion_mnist  the same model and settings on real Fashion-MNIST in --data-root
  sweeps         `optbench sweep` of 4 such fashion_mnist runs (seeds 0-3) on --workers
                 processes: "shared" maps --data-root's tensor file; "private" uses a copy of
                 the raw files under a root where optbench-tensors is a plain file, so no tensor
                 file can be written and every worker parses and keeps its own copy
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' shared helpers
from tests.helpers import write_cifar10

# components.data.TENSOR_FOLDER: not imported, nor is torch (common.py imports it) until the end, so
# this process maps none of torch's libraries and takes no share of the children's Pss of them
TENSOR_FOLDER = "optbench-tensors"
GOAL_MIB = 1e9 / 2**20  # 1 GB
CIFAR_FLOAT32_MIB = 50_000 * 3 * 32 * 32 * 4 / 2**20  # train set
CIFAR_UINT8_MIB = 60_000 * (3 * 32 * 32 + 8) / 2**20  # train + test, images + int64 labels
SWEEP_SEEDS = [0, 1, 2, 3]
FIELDS = ("Rss", "Pss", "Anonymous", "Shared_Clean", "Shared_Dirty", "Data_Rss", "Data_Pss")
# A child's ru_maxrss starts at its parent's peak RSS (exec keeps the old image's high-water
# mark), and this script's own peak is above a small run's; so each command runs under a small
# launcher that forks it and prints its ru_maxrss from os.wait4.
LAUNCHER = """
import os, sys
pid = os.fork()
if not pid:
    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
_, status, usage = os.wait4(pid, 0)
print("ru_maxrss_kib", usage.ru_maxrss, flush=True)
sys.exit(os.waitstatus_to_exitcode(status))
"""
CHILD = """
import json, resource, sys
import torch
from optbench.experiment.runner import run_experiment
md5 = json.loads(sys.argv[3])
if md5:  # accept the CIFAR-10-shaped files that benchmarks/memory.py wrote
    import torchvision
    cls = torchvision.datasets.CIFAR10
    cls.train_list = [[name, md5[name]] for name, _ in cls.train_list]
    cls.test_list = [[name, md5[name]] for name, _ in cls.test_list]
    cls.meta = {**cls.meta, "md5": md5[cls.meta["filename"]]}
status = "completed"
if sys.argv[1] != "-":
    status = run_experiment(sys.argv[1], results_dir=sys.argv[2]).summary.get("status")
print("before_exit_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
sys.exit(0 if status == "completed" else f"run ended {status}")
"""


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


def logged(log: str, key: str) -> float:
    """A `key kib` line that a child printed, in MiB."""
    return int(log.rsplit(key, 1)[1].split()[0]) / 1024


def measure(label: str, arguments: list[str], log: Path) -> dict:
    """Run python with arguments, sampling its process tree: peaks in MiB, peak-Pss sample."""
    print(f"{label} ...", file=sys.stderr, flush=True)
    started, samples = time.perf_counter(), []
    with open(log, "w") as out:
        command = [sys.executable, "-c", LAUNCHER, *arguments]
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    while True:
        pid, status, _ = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        tree = descendants(child.pid)[1:]  # not the launcher
        sample = {p: s for p in tree if (s := smaps(p))}
        samples.append(sample)
        time.sleep(0.1)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        sys.exit(f"{label} failed ({child.returncode}):\n{log.read_text()[-3000:]}")
    total = [{k: sum(s[k] for s in sample.values()) / 1024 for k in FIELDS} for sample in samples]
    peak = max(range(len(total)), key=lambda i: total[i]["Pss"])
    seconds = time.perf_counter() - started
    print(f"  {seconds:.0f} s, {len(samples)} samples", file=sys.stderr, flush=True)
    return {
        "label": label,
        "maxrss": logged(log.read_text(), "ru_maxrss_kib"),
        "rss": max(t["Rss"] for t in total),
        "pss": total[peak]["Pss"],
        "data_rss": total[peak]["Data_Rss"],
        "data_pss": total[peak]["Data_Pss"],
        "at_peak": samples[peak],
        "log": log.read_text(),
    }


def table(*cells: object) -> None:
    """A markdown table row; floats are MiB, rounded."""
    print("| " + " | ".join(f"{c:.0f}" if isinstance(c, float) else str(c) for c in cells) + " |")


def header(names: str) -> None:
    table(names)
    print("|" + "---|" * (names.count(" | ") + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=10_000, help="train images per run, 0=all")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data-root", default=os.environ.get("OPTBENCH_DATA", "data"))
    args = parser.parse_args()
    data_root = str(Path(args.data_root).resolve())
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print("writing a CIFAR-10-shaped folder ...", file=sys.stderr, flush=True)
        md5 = json.dumps(write_cifar10(folder / "cifar", 10_000, 10_000)[1])  # full size
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
            arguments = ["-c", CHILD, path, tempfile.mkdtemp(dir=folder), with_md5]
            result = measure(label, arguments, folder / "child.log")
            return result | {"before_exit": logged(result["log"], "before_exit_kib")}

        def sweep(label: str, path: Path) -> dict:
            results = tempfile.mkdtemp(dir=folder)
            arguments = ["-m", "optbench", "sweep", str(path), "--workers", str(args.workers)]
            result = measure(label, [*arguments, "--results-dir", results], folder / "sweep.log")
            if f"{len(SWEEP_SEEDS)} completed" not in result["log"]:
                sys.exit(f"{label}: expected {len(SWEEP_SEEDS)} completed runs:\n{result['log']}")
            return result

        base = child("baseline (imports only)", "-")
        runs = [
            child("cifar10, cold (parse + write tensor file)", str(paths["cifar"]), md5),
            child("cifar10, warm (map tensor file)", str(paths["cifar"])),
            child(f"fashion_mnist ({'warm' if fashion_warm else 'cold'})", str(paths["fashion"])),
        ]
        sweeps = [
            sweep("sweep, shared", paths["shared"]),
            sweep("sweep, private", paths["private"]),
        ]

    from common import command_line, load_average, machine

    import optbench.components.data

    assert optbench.components.data.TENSOR_FOLDER == TENSOR_FOLDER, (
        optbench.components.data.TENSOR_FOLDER
    )
    subset = f"first {args.subset} of 50000/60000 train images" if args.subset else "all images"
    print("# Memory: peak RSS of one run and of a parallel sweep\n")
    print(f"- command: `{command_line()}`")
    print(f"- machine: {machine()}")
    print(f"- load average (1, 5, 15 min) before: {load_before}, after: {load_average()}")
    print(f"- runs: cifar_cnn, SGD(lr=0.01, momentum=0.9), batch 64, 1 epoch, {subset}, full")
    print("  test set; cifar10 = a CIFAR-10-shaped folder of random uint8 (5 x 10000 + 10000)")
    print(f"- sweep: {len(SWEEP_SEEDS)} such fashion_mnist runs (seeds), --workers {args.workers}")
    print("- MiB; goal 1 GB = 954 MiB. ru_maxrss: from os.wait4, the whole life of the process")
    print("  (interpreter exit included); 'before exit': the child's own ru_maxrss after the run.")
    print("  Rss/Pss: sampled every ~0.1 s from /proc/<pid>/smaps, summed over the process tree;")
    print("  Pss splits a page between all processes mapping it, unrelated ones included;")
    print("  'dataset file': the mappings of optbench-tensors/*.pt; before exit, over baseline:")
    print("  what the run adds to the imports-only child\n")
    header("run | peak RSS (ru_maxrss) | before exit | over baseline | dataset file Rss | < 1 GB")
    for r in [base, *runs]:
        over = r["before_exit"] - base["before_exit"]
        ok = "yes" if r["maxrss"] < GOAL_MIB else "no"
        table(r["label"], r["maxrss"], r["before_exit"], over, r["data_rss"], ok)
    one = runs[-1]
    print(f"\nOne fashion_mnist run, sampled: peak Rss {one['rss']:.0f}, Pss {one['pss']:.0f}.\n")
    header(
        "sweep | peak Σ Rss | x one run's | peak Σ Pss | x one run's | largest process "
        "(ru_maxrss) | dataset file Σ Rss / Σ Pss at peak Pss"
    )
    for w in sweeps:
        data = f"{w['data_rss']:.0f} / {w['data_pss']:.0f}"
        rss, pss = w["rss"] / one["rss"], w["pss"] / one["pss"]
        table(w["label"], w["rss"], f"{rss:.2f}", w["pss"], f"{pss:.2f}", w["maxrss"], data)
    print("\nPer process, at each sweep's peak-Pss sample:\n")
    header("sweep | pid | role | Rss | Pss | anonymous | shared | dataset file Rss / Pss")
    for w in sweeps:
        for pid, p in sorted(w["at_peak"].items()):
            mib = {k: p[k] / 1024 for k in FIELDS}
            shared = mib["Shared_Clean"] + mib["Shared_Dirty"]
            data = f"{mib['Data_Rss']:.0f} / {mib['Data_Pss']:.0f}"
            table(
                w["label"], pid, p["role"], mib["Rss"], mib["Pss"], mib["Anonymous"], shared, data
            )

    cold, warm = runs[0], runs[1]
    shared, private = sweeps
    driver = sum(p["Pss"] for p in shared["at_peak"].values() if p["role"] == "driver") / 1024
    met = "met" if max(cold["maxrss"], warm["maxrss"]) < GOAL_MIB else "NOT met"
    print("\n## Conclusions\n")
    print(
        f"- cifar10 peak RSS {cold['maxrss']:.0f} MiB cold, {warm['maxrss']:.0f} MiB warm: the "
        f"< 1 GB goal is {met}. Importing torch and optbench.experiment.runner alone peaks at "
        f"{base['maxrss']:.0f} MiB ({base['before_exit']:.0f} before exit); the warm run adds "
        f"{warm['before_exit'] - base['before_exit']:.0f} MiB, the cold one (parsing and "
        f"writing the tensor file) {cold['before_exit'] - base['before_exit']:.0f} MiB."
    )
    print(
        f"- uint8 storage: the whole CIFAR-10 is {CIFAR_UINT8_MIB:.0f} MiB as uint8, while as "
        f"float32 its train set alone would be {CIFAR_FLOAT32_MIB:.0f} MiB; the warm run has "
        f"{warm['data_rss']:.0f} MiB of the tensor file resident (only the pages it read)."
    )
    if args.subset:
        more = (50_000 - min(args.subset, 50_000)) * 3072 / 2**20
        print(f"- --subset {args.subset}: a full cifar10 epoch (--subset 0) reads up to {more:.0f}")
        print("  MiB more of the tensor file, so its peak RSS is higher than the warm run's above.")
    print(
        f"- sweep of {len(SWEEP_SEEDS)} runs on {args.workers} workers: peak Σ Rss "
        f"{shared['rss']:.0f} MiB ({shared['rss'] / one['rss']:.2f}x one run's), peak Σ Pss "
        f"{shared['pss']:.0f} MiB ({shared['pss'] / one['pss']:.2f}x one run's); Σ Rss counts "
        "pages shared between the processes (torch's libraries, the dataset file) once per "
        f"process, Σ Pss once. The sweep driver alone holds {driver:.0f} MiB Pss."
    )
    print(
        f"- sharing: with the tensor file mapped, the sweep's peak Σ Pss is "
        f"{private['pss'] - shared['pss']:.0f} MiB below the sweep whose workers each keep a "
        f"private copy ({private['pss']:.0f} MiB); the workers' mapped dataset pages, Σ Rss "
        f"{shared['data_rss']:.0f} MiB, are Σ Pss {shared['data_pss']:.0f} MiB."
    )


if __name__ == "__main__":
    main()
