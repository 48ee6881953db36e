"""Speed-up of one run across processes (``torchrun``) over one process.

Runs the same experiment (by default the ``default`` config: graph isomorphism,
``vanilla_ppo``, 640 frames per batch, minibatch 128, 4 epochs) as

- ``1 process, 1 shard``: the plain loop, with every core's thread (the best one
  process does);
- ``1 process, 1 shard, 1 thread``: what a single core does;
- ``1 process, N shards``: the sharded loop in one process (the reference a
  torchrun run reproduces);
- ``torchrun N processes, N shards``: one thread each (torchrun's default).

Each case is a fresh ``nip run`` (``--repeats`` times, round-robin so that a burst
of load on the machine hits every case alike). Reported per case: the median
seconds per training iteration (``timing.iteration_s`` of every iteration but the
first, over the repeats) with its collection and training parts, frames per second,
and the speed-up over the plain one-process loop with every core's thread and with
one thread. Needs nip-plugin-graph-isomorphism and nip-plugin-ppo (or any
``--config`` whose plugins are installed).

Usage::

    python benchmarks/distributed_speedup.py
    python benchmarks/distributed_speedup.py --nproc 2 --iterations 8 --repeats 3
    python benchmarks/distributed_speedup.py --device cuda      # NCCL on GPUs
    python benchmarks/distributed_speedup.py --override rl.frames_per_batch=2048

Run it on a quiet machine and quote the load average it prints.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cases(nproc: int, cores: int) -> list[dict]:
    return [
        {"name": "1 process, 1 shard", "nproc": None, "shards": 1, "threads": cores},
        {
            "name": "1 process, 1 shard, 1 thread",
            "nproc": None,
            "shards": 1,
            "threads": 1,
        },
        {
            "name": f"1 process, {nproc} shards",
            "nproc": None,
            "shards": nproc,
            "threads": cores,
        },
        {
            "name": f"1 process, {nproc} shards, 1 thread",
            "nproc": None,
            "shards": nproc,
            "threads": 1,
        },
        {
            "name": f"torchrun {nproc} processes, {nproc} shards",
            "nproc": nproc,
            "shards": nproc,
            "threads": max(1, cores // nproc),
        },
    ]


def run_case(case: dict, args: argparse.Namespace, root: Path, run_id: str) -> dict:
    overrides = [
        f"rl.num_iterations={args.iterations}",
        "rl.num_test_iterations=1",
        f"distributed.num_shards={case['shards']}",
        f"run.runs_dir={root}",
        f"run.run_id={run_id}",
        f"run.device={args.device}",
        "run.checkpoint_period=null",
        "run.rollout_sample_period=null",
        "run.show_progress=false",
        *args.override,
    ]
    command = [sys.executable]
    if case["nproc"] is not None:
        command += [
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={case['nproc']}",
        ]
    command += ["-m", "nip_core.cli.main", "run", "-c", args.config, *overrides]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(case["threads"]),
        "MKL_NUM_THREADS": str(case["threads"]),
    }
    start = time.perf_counter()
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"{case['name']} failed:\n{completed.stderr[-4000:]}")
    records = [
        json.loads(line)
        for line in (root / run_id / "metrics.jsonl").read_text().splitlines()
    ]
    train = [r for r in records if "timing.iteration_s" in r]
    return {
        "iteration_s": [r["timing.iteration_s"] for r in train[1:]],
        "collection_s": [r["timing.collection_s"] for r in train[1:]],
        "training_s": [r["timing.training_s"] for r in train[1:]],
        "frames": train[-1]["timing.fps"] * train[-1]["timing.iteration_s"],
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="default")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--override", action="append", default=[])
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    print(f"cores: {cores}; load average before: {os.getloadavg()}")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for k, case in enumerate(cases(args.nproc, cores)):
                measured = run_case(case, args, Path(tmp), f"r{repeat}-c{k}")
                entry = results.setdefault(
                    case["name"],
                    {
                        "iteration_s": [],
                        "collection_s": [],
                        "training_s": [],
                        "wall_s": [],
                        "case": case,
                    },
                )
                for key in ("iteration_s", "collection_s", "training_s"):
                    entry[key] += measured[key]
                entry["wall_s"].append(measured["wall_s"])
                entry["frames"] = measured["frames"]
    print(f"load average after: {os.getloadavg()}")
    baseline = statistics.median(results["1 process, 1 shard"]["iteration_s"])
    one_thread = statistics.median(
        results["1 process, 1 shard, 1 thread"]["iteration_s"]
    )
    print(
        f"{'case':<40} {'s/iteration':>12} {'collect':>8} {'train':>8} "
        f"{'frames/s':>9} {'speed-up':>9} {'vs 1 thread':>11}"
    )
    summary = {}
    for name, entry in results.items():
        median = statistics.median(entry["iteration_s"])
        fps = entry["frames"] / median
        collect = statistics.median(entry["collection_s"])
        train = statistics.median(entry["training_s"])
        summary[name] = {
            "seconds_per_iteration": median,
            "collection_s": collect,
            "training_s": train,
            "frames_per_second": fps,
            "speed_up": baseline / median,
            "speed_up_over_one_thread": one_thread / median,
            "process_wall_s": entry["wall_s"],
            "threads_per_process": entry["case"]["threads"],
        }
        print(
            f"{name:<40} {median:>12.3f} {collect:>8.3f} {train:>8.3f} "
            f"{fps:>9.0f} {baseline / median:>8.2f}x {one_thread / median:>10.2f}x"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
