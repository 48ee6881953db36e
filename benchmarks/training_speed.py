"""Training speed and peak memory of tensor-world RL training (vanilla_ppo).

For each protocol and each setting (the ``ppo_gi`` config and the ``default``
experiment of nip-plugin-ppo) this runs, in a fresh process so that peak memory is
its own, a few training iterations and reports

- frames per second of the whole iteration, and the time split into collection,
  advantage (GAE) and update, each the median over the measured iterations after
  warm-up ones;
- peak memory: the process's resident-set high-water mark (``VmHWM``, from
  ``/proc/self/status``, or ``ru_maxrss``), which covers torch's allocations, read
  after the timed iterations (the FLOP counting comes after it);
- floating-point operations per frame, counted by
  :class:`torch.utils.flop_counter.FlopCounterMode` over one collection and one
  update (the matrix multiplications, convolutions and attention torch counts);
- this machine's float32 matrix-multiply throughput (a timed large matmul), and the
  fraction of it the training loop achieves.

Usage::

    python benchmarks/training_speed.py                      # GI, nip + debate
    python benchmarks/training_speed.py --protocols nip --settings default
    python benchmarks/training_speed.py --scenario synthetic  # no GI plugin needed
    python benchmarks/training_speed.py --profile             # + cProfile top list
    python benchmarks/training_speed.py --torch-profile       # + torch operator table
    python benchmarks/training_speed.py --override rl.normalize_observations=false
    python benchmarks/training_speed.py --repeats 3 --baseline HEAD~1   # A/B
    python benchmarks/training_speed.py --repeats 3 --baseline-override X=false
    python benchmarks/training_speed.py --device cuda                 # on a GPU
    python benchmarks/training_speed.py --compile-loss                # run.compile_loss
    python benchmarks/training_speed.py --repeats 3 --baseline-compile-loss true
    python benchmarks/training_speed.py --repeats 3 --baseline-agent-threads 1  # A/B
    python benchmarks/training_speed.py --repeats 3 --baseline-counted-rows false
    python benchmarks/training_speed.py --repeats 3 --external-baseline 'CMD'  # other
    python benchmarks/training_speed.py --matmul-ceiling     # products timed alone

Ratios are printed only between processes of the same invocation: ``--baseline``
runs every case on another git revision's code as well (a worktree of it, first on
the import path), ``--baseline-override`` with a switch changed, alternating process
by process; the ratio is the median of the per-pair ratios. The original library's
figures are printed beside the results with where and when they were measured, not
divided into them. The load average is recorded with every process.

The training loop is the core's (``TensorDictRlTrainer``): the benchmark builds it as
``train`` does (GAE without vmap, the training contexts entered) and calls its
``_collect``, ``_prepare_rollout``, value estimator and ``_train_on_rollout`` one
after the other, exactly as ``_run_train_loop`` does, with timers between them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SETTINGS = ("ppo_gi", "default")
# The original library, measured on this machine kind (2 CPU cores). Printed beside
# the results with where and when they were taken, never divided into them: a ratio
# is a result only between processes run in the same sitting (--baseline).
_ORIGINAL = (
    "the original library (its code rebuilt from the public repository, on the "
    "torch 2.7.0 and torchrl 0.6.0 of its uv.lock), alternated process by process "
    "with this project, medians of 3 (benchmarks/README.md, 2026-12-07, twelfth "
    "session; sittings since 2026-12-06 gave 220, 131, 131 and 116 frames/s for "
    "nip: the original's speed moves with the host's state, so compare only "
    "within one invocation)"
)
REFERENCE = {
    ("nip", "ppo_gi"): {"fps": 116.0, "peak_gb": 8.2, "source": _ORIGINAL},
    ("debate", "ppo_gi"): {"fps": 73.0, "peak_gb": 11.6, "source": _ORIGINAL},
}


def peak_rss_bytes() -> int:
    """The process's resident-set high-water mark."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def matmul_gflops(size: int = 2048, repeats: int = 5, device: str = "cpu") -> float:
    """Measured float32 matmul throughput of this machine (GFLOP/s, best of runs).

    On a GPU the product is 8192 × 8192 (2048 is too small to fill one) and timed
    with the device synchronised; TF32 stays off, as in training."""
    import torch

    if device != "cpu":
        size = max(size, 8192)
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        a @ b
        _synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def _synchronize(device: str) -> None:
    """Wait for the device's queued work (timers on a GPU measure nothing without)."""
    if device != "cpu":
        import torch

        torch.cuda.synchronize(device)


# The products whose speed bounds the loop's fraction of matmul throughput
_MATMUL_OPS = ("mm", "addmm", "bmm", "baddbmm")


def _matmul_recorder() -> Any:
    """A dispatch mode recording every matrix product the code under it issues:
    (operator, operand shapes and strides) -> calls. Used to time the loop's own
    products alone (``--matmul-ceiling``)."""
    from collections import Counter

    from torch.utils._python_dispatch import TorchDispatchMode

    class MatmulRecorder(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.calls: Counter = Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            name = func.overloadpacket.__name__
            if name in _MATMUL_OPS:
                operands = tuple(
                    (tuple(a.shape), tuple(a.stride()))
                    for a in args
                    if hasattr(a, "stride")
                )
                self.calls[(name, operands)] += 1
            return func(*args, **(kwargs or {}))

    return MatmulRecorder()


def _product_flops(name: str, operands: tuple) -> int:
    """FLOPs of one product as torch's counter counts them (2 m k n per matrix)."""
    *_, (first, _), (second, _) = operands
    if name in ("mm", "addmm"):
        return 2 * first[0] * first[1] * second[1]
    return 2 * first[0] * first[1] * first[2] * second[2]


def time_products(calls: dict, threads: int, device: str = "cpu") -> dict[str, Any]:
    """Time each recorded product alone (its own shapes and strides, random values)
    on ``threads`` intra-op threads: the seconds a loop made of nothing but these
    products would take, and their FLOPs. The median of 5 timings of a batch of
    calls for each distinct product."""
    import torch

    torch.set_num_threads(threads)
    total_s = 0.0
    total_flops = 0
    by_op: dict[str, list[float]] = {}
    for (name, operands), count in calls.items():
        tensors = [
            torch.empty_strided(shape, stride, device=device).normal_()
            for shape, stride in operands
        ]
        op = getattr(torch.ops.aten, name)
        flops = _product_flops(name, operands)
        batch = max(1, min(200, int(2e8 // max(flops, 1))))
        op(*tensors)
        samples = []
        for _ in range(5):
            _synchronize(device)
            start = time.perf_counter()
            for _ in range(batch):
                op(*tensors)
            _synchronize(device)
            samples.append((time.perf_counter() - start) / batch)
        seconds = statistics.median(samples) * count
        total_s += seconds
        total_flops += flops * count
        entry = by_op.setdefault(name, [0.0, 0.0])
        entry[0] += seconds
        entry[1] += flops * count
    return {
        "seconds": total_s,
        "flops": total_flops,
        "distinct_products": len(calls),
        "calls": sum(calls.values()),
        "by_op": {
            name: {"seconds": s, "gflops": f / s / 1e9 if s else 0.0}
            for name, (s, f) in by_op.items()
        },
    }


def _hyper_params(args: argparse.Namespace, protocol: str, setting: str) -> Any:
    """The hyper-parameters of one benchmark case, from the plugin's configs."""
    from nip_core.cli import compose as composer

    total = args.warmup + args.iterations
    overrides = [
        f"interaction_protocol={protocol}",
        f"rl.num_iterations={total}",
        "rl.num_test_iterations=0",
        *args.override,
    ]
    with composer.hydra_app() as app:
        config = composer.to_plain_dict(composer.compose(app, setting, overrides))
    config.pop("run", None)
    if args.scenario != "graph_isomorphism":
        # Keep the trainer's settings, use the scenario's own agents and data
        from nip_core.testing.synthetic.fixtures import SyntheticScenario

        scenario = SyntheticScenario(Path(args.workdir))
        keep = {k: config[k] for k in ("rl", "ppo", "protocol_common") if k in config}
        keep["rl"] = {
            k: v for k, v in keep["rl"].items() if k != "num_normalization_steps"
        }
        rounds = {
            k: config[k]
            for k in ("nip_protocol", "debate_protocol", "mnip_protocol")
            if k in config
        }
        return scenario.hyper_params(
            protocol,
            trainer="vanilla_ppo",
            agents={"_default": {"d_hidden": 16}},
            synthetic={"train_size": 2000, "test_size": 100},
            **keep,
            **rounds,
        )
    from nip_core.parameters import HyperParameters

    return HyperParameters.from_dict(config)


def run_case(args: argparse.Namespace, protocol: str, setting: str) -> dict[str, Any]:
    """Measure one (protocol, setting) case in this process."""
    import resource

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from nip_core.experiment import prepare_experiment
    from nip_core.settings import ExperimentSettings

    torch.set_num_threads(args.threads)
    if args.scenario != "graph_isomorphism":
        from nip_core.plugins import get_plugin_manager
        from nip_core.testing.synthetic import SYNTHETIC_PLUGIN

        get_plugin_manager().register(SYNTHETIC_PLUGIN, name="synthetic")
    hp = _hyper_params(args, protocol, setting)
    extra = {}
    if args.agent_threads is not None:
        # only given when asked: a baseline revision may predate the setting
        extra["agent_threads"] = args.agent_threads
    if args.counted_rows is not None:
        extra["counted_rows"] = args.counted_rows == "true"
    settings = ExperimentSettings(
        **extra,
        device=args.device,
        compile_loss=args.compile_loss,
        runs_dir=str(Path(args.workdir) / "runs"),
        data_dir=args.data_dir,
        cache_dir=str(Path(args.workdir) / "cache"),
        show_progress=False,
        checkpoint_period=None,
    )
    build_start = time.perf_counter()
    trainer = prepare_experiment(hp, settings).trainer
    rss_before_normalization = peak_rss_bytes()
    if hp.rl.normalize_observations:
        trainer._add_normalization_transforms()
    rss_after_normalization = peak_rss_bytes()
    trainer._build_operators()
    trainer.replay_buffer = trainer._get_replay_buffer()
    trainer.loss_module, trainer.gae = trainer._get_loss_module_and_gae()
    if trainer.gae is not None and hasattr(trainer.gae, "deactivate_vmap"):
        # as TensorDictRlTrainer.train does before its loop
        trainer.gae.deactivate_vmap = True
    trainer.optimizer = trainer._get_optimizer()
    build_time = time.perf_counter() - build_start
    # The contexts the training loop runs in (on CPU: the MATH kernel for
    # scaled-dot-product attention), entered for the rest of the process
    agent_threads = (
        trainer._agent_threads()[0] if hasattr(trainer, "_agent_threads") else 1
    )
    # (kept until the end: a context is left when its stack is collected)
    train_contexts = contextlib.ExitStack()
    trainer._build_train_context(train_contexts)

    env = trainer.train_environment
    steps = trainer._steps_per_iteration(env)
    updates = dict.fromkeys(trainer.agent_names, True)
    carry = None
    timings: dict[str, list[float]] = {
        "collection_s": [],
        "advantage_s": [],
        "update_s": [],
        "iteration_s": [],
    }
    page_faults: list[int] = []
    frames = 0
    profiler = None
    for iteration in range(args.warmup + args.iterations):
        measured = iteration >= args.warmup
        if measured and args.profile and profiler is None:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        if measured and args.torch_profile and profiler is None:
            from torch.profiler import profile

            profiler = profile()
            profiler.__enter__()
        faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        _synchronize(args.device)
        t0 = time.perf_counter()
        trainer.set_agents_mode(True)
        rollout, carry = trainer._collect(env, carry, steps)
        _synchronize(args.device)
        t1 = time.perf_counter()
        trainer._prepare_rollout(rollout)
        with torch.no_grad():
            trainer.gae(rollout)
        _synchronize(args.device)
        t2 = time.perf_counter()
        trainer._train_on_rollout(rollout, updates)
        _synchronize(args.device)
        t3 = time.perf_counter()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
        if profiler is not None and measured:
            if args.torch_profile:
                if iteration == args.warmup:
                    profiler.__exit__(None, None, None)
            else:
                profiler.disable()
        frames = rollout.numel()
        if measured:
            timings["collection_s"].append(t1 - t0)
            timings["advantage_s"].append(t2 - t1)
            timings["update_s"].append(t3 - t2)
            timings["iteration_s"].append(t3 - t0)
            page_faults.append(faults)

    rss_after_training = peak_rss_bytes()
    gpu_peak = (
        torch.cuda.max_memory_allocated(args.device) if args.device != "cpu" else None
    )

    # FLOPs of one collection and one update (counted, not timed), without the agent
    # threads: the counter sees only the operators of the thread it runs in
    train_contexts.close()
    # with --matmul-ceiling, the products the loop issues, recorded under the counter
    recorder = _matmul_recorder() if args.matmul_ceiling else contextlib.nullcontext()
    with FlopCounterMode(display=False) as counter, recorder:
        rollout, carry = trainer._collect(env, carry, steps)
    collection_flops = counter.get_total_flops()
    trainer._prepare_rollout(rollout)
    with torch.no_grad(), FlopCounterMode(display=False) as counter, recorder:
        trainer.gae(rollout)
    advantage_flops = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter, recorder:
        trainer._train_on_rollout(rollout, updates)
    update_flops = counter.get_total_flops()

    median = {k: statistics.median(v) for k, v in timings.items()}
    total_flops = collection_flops + advantage_flops + update_flops
    result: dict[str, Any] = {
        "scenario": args.scenario,
        "protocol": protocol,
        "setting": setting,
        "threads": args.threads,
        # run.agent_threads as resolved: threads running the agents' bodies
        "agent_threads": agent_threads,
        "frames_per_iteration": frames,
        "minibatch_size": int(hp.rl.minibatch_size),
        "num_epochs": int(hp.rl.num_epochs),
        "build_s": build_time,
        **{f"median_{k}": v for k, v in median.items()},
        "fps": frames / median["iteration_s"],
        # the training's own high-water mark: FlopCounterMode, run afterwards, keeps
        # more alive than training does and would raise it
        "peak_rss_gb": rss_after_training / 1e9,
        "peak_rss_with_flop_counting_gb": peak_rss_bytes() / 1e9,
        # The high-water mark before the observation-normalisation rollout (the
        # core's rl.num_normalization_steps random steps, all kept in memory) and
        # after it: the training loop's own peak is known when it stays below
        "peak_rss_before_normalization_gb": rss_before_normalization / 1e9,
        "peak_rss_after_normalization_gb": rss_after_normalization / 1e9,
        "device": args.device,
        "device_name": (
            torch.cuda.get_device_name(args.device) if args.device != "cpu" else "cpu"
        ),
        # the GPU's allocator high-water mark during training (None on the CPU)
        "peak_gpu_memory_gb": None if gpu_peak is None else gpu_peak / 1e9,
        "flops_per_frame": total_flops / frames,
        "collection_flops_per_frame": collection_flops / frames,
        "advantage_flops_per_frame": advantage_flops / frames,
        "update_flops_per_frame": update_flops / frames,
        "achieved_gflops": total_flops / median["iteration_s"] / 1e9,
        # minor page faults: memory the allocator gave back and faults in again
        "median_page_faults_per_iteration": statistics.median(page_faults),
    }
    if args.matmul_ceiling:
        # The loop's own products timed alone on one core, against one core's
        # throughput on a large product: the fraction of matmul throughput a loop
        # of nothing but these products would reach, its ceiling at these shapes
        products = time_products(recorder.calls, threads=1, device=args.device)
        torch.set_num_threads(1)
        one_core = matmul_gflops(device=args.device)
        torch.set_num_threads(args.threads)
        kernel_gflops = products["flops"] / products["seconds"] / 1e9
        result["matmul_ceiling"] = {
            **products,
            "single_thread_matmul_gflops": one_core,
            "kernel_gflops_one_thread": kernel_gflops,
            "kernel_fraction_of_one_thread_peak": kernel_gflops / one_core,
            "share_of_counted_flops": products["flops"] / total_flops,
            # the products' own time, as a share of the iteration's core-seconds
            "share_of_core_time": products["seconds"]
            / (median["iteration_s"] * max(args.threads, agent_threads)),
        }
    if profiler is not None and args.torch_profile:
        result["profile"] = profiler.key_averages().table(
            sort_by="self_cpu_time_total", row_limit=40
        )
    elif profiler is not None:
        import io
        import pstats

        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(40)
        result["profile"] = stream.getvalue()
    return result


def _spawn(
    args: argparse.Namespace,
    protocol: str,
    setting: str,
    baseline: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One case in a fresh process; ``baseline`` runs it on the baseline's code
    (its checkout first on the import path) and with its extra overrides, or runs
    its external ``command``."""
    if baseline and baseline.get("command"):
        return _spawn_external(args, protocol, setting, baseline["command"])
    command = [
        sys.executable,
        __file__,
        "--single",
        protocol,
        setting,
        "--scenario",
        args.scenario,
        "--iterations",
        str(args.iterations),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
        "--workdir",
        args.workdir,
        "--device",
        args.device,
    ]
    if (baseline or {}).get("compile_loss", args.compile_loss):
        command.append("--compile-loss")
    agent_threads = (baseline or {}).get("agent_threads", args.agent_threads)
    if agent_threads is not None:
        command += ["--agent-threads", str(agent_threads)]
    counted_rows = (baseline or {}).get("counted_rows") or args.counted_rows
    if counted_rows is not None:
        command += ["--counted-rows", counted_rows]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    if args.profile:
        command.append("--profile")
    if args.torch_profile:
        command.append("--torch-profile")
    if args.matmul_ceiling and not baseline:
        command.append("--matmul-ceiling")
    overrides = [*args.override, *(baseline or {}).get("overrides", [])]
    if overrides:
        command += ["--override", *overrides]
    env = None
    if baseline and baseline.get("pythonpath"):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [*baseline["pythonpath"], *filter(None, [env.get("PYTHONPATH")])]
        )
    load_before = _load_average()
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    load_after = _load_average()
    if done.returncode != 0:
        return {
            "protocol": protocol,
            "setting": setting,
            "error": done.stderr.strip().splitlines()[-5:],
        }
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_average_before"] = load_before
    result["load_average_after"] = load_after
    return result


def _spawn_external(
    args: argparse.Namespace, protocol: str, setting: str, template: str
) -> dict[str, Any]:
    """One case of ``--external-baseline``: the command, its ``{protocol}``,
    ``{setting}``, ``{iterations}``, ``{warmup}`` and ``{threads}`` filled in, run
    in a shell; its last line of output is a JSON object with ``fps`` (and
    ``peak_rss_gb``, 10^9 bytes, if it measures it)."""
    command = template.format(
        protocol=protocol,
        setting=setting,
        iterations=args.iterations,
        warmup=args.warmup,
        threads=args.threads,
    )
    load_before = _load_average()
    done = subprocess.run(
        command, shell=True, capture_output=True, text=True, check=False
    )
    load_after = _load_average()
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if done.returncode == 0 and lines else None
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict) or "fps" not in result:
        return {
            "protocol": protocol,
            "setting": setting,
            "external": True,
            "error": (done.stderr or done.stdout).strip().splitlines()[-5:]
            or [f"exit status {done.returncode}, no JSON line with fps"],
        }
    return {
        **result,
        "protocol": protocol,
        "setting": setting,
        "external": True,
        "command": command,
        "load_average_before": load_before,
        "load_average_after": load_after,
    }


def _load_average() -> float | None:
    """The 1-minute load average (another job on the cores ruins a measurement)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _baseline_checkout(revision: str, workdir: str) -> list[str]:
    """The import path of ``revision``'s code: a detached git worktree of it (made
    once under ``workdir``), its core and every plugin's ``src``."""
    root = Path(__file__).resolve().parent.parent
    commit = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--verify", f"{revision}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if commit.returncode != 0:
        raise SystemExit(f"--baseline: {revision!r} is not a commit of {root}")
    sha = commit.stdout.strip()
    tree = Path(workdir) / f"baseline-{sha[:12]}"
    if not tree.exists():
        tree.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "-C", str(root), "worktree", "add", "--detach", str(tree), sha],
            check=True,
            capture_output=True,
        )
    return [str(tree), *sorted(str(p) for p in tree.glob("plugins/*/src"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocols", nargs="+", default=["nip", "debate"])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    parser.add_argument(
        "--scenario",
        default="graph_isomorphism",
        choices=["graph_isomorphism", "synthetic"],
    )
    parser.add_argument("--iterations", type=int, default=3, help="measured")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: steady on a busy machine)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="run.device of the cases: cpu, cuda, cuda:N (the matmul reference too)",
    )
    parser.add_argument(
        "--compile-loss",
        action="store_true",
        help="run.compile_loss: the loss through torch.compile (the first, warm-up "
        "iteration compiles it)",
    )
    parser.add_argument(
        "--agent-threads",
        type=int,
        default=None,
        help="run.agent_threads (default: the setting's auto)",
    )
    parser.add_argument(
        "--counted-rows",
        choices=["true", "false"],
        default=None,
        help="run.counted_rows (default: the setting's default)",
    )
    parser.add_argument("--workdir", default="/tmp/nip-benchmark")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--profile", action="store_true", help="cProfile listing")
    parser.add_argument(
        "--torch-profile",
        action="store_true",
        help="torch.profiler operator table of the first measured iteration",
    )
    parser.add_argument(
        "--matmul-ceiling",
        action="store_true",
        help="time the loop's own matrix products alone on one thread: the "
        "fraction of matmul throughput they reach at these shapes",
    )
    parser.add_argument(
        "--override",
        nargs="*",
        default=[],
        help="extra Hydra overrides, e.g. rl.normalize_observations=false",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="processes per case, run round-robin; figures are their medians",
    )
    parser.add_argument(
        "--baseline",
        metavar="REVISION",
        help="also run every case on this git revision's code (a worktree under "
        "--workdir), interleaved process by process, and report the ratios",
    )
    parser.add_argument(
        "--baseline-override",
        nargs="*",
        default=[],
        help="the baseline's extra Hydra overrides (a switch turned off); with no "
        "--baseline the baseline is today's code with these overrides",
    )
    parser.add_argument(
        "--baseline-agent-threads",
        type=int,
        default=None,
        help="the baseline's run.agent_threads (1: off); with no --baseline the "
        "baseline is today's code with it",
    )
    parser.add_argument(
        "--baseline-compile-loss",
        choices=["true", "false"],
        default=None,
        help="the baseline's run.compile_loss; with no --baseline the baseline is "
        "today's code with it (compiled against eager in one invocation)",
    )
    parser.add_argument(
        "--baseline-counted-rows",
        choices=["true", "false"],
        default=None,
        help="the baseline's run.counted_rows; with no --baseline the baseline is "
        "today's code with it (the update's policy on every row against the "
        "counted rows, in one invocation)",
    )
    parser.add_argument(
        "--external-baseline",
        metavar="COMMAND",
        help="the baseline is this shell command (another library's benchmark): "
        "{protocol}, {setting}, {iterations}, {warmup} and {threads} are filled in; "
        "its last output line is a JSON object with fps (and peak_rss_gb)",
    )
    parser.add_argument(
        "--external-label",
        default="external baseline",
        help="what --external-baseline measures, for the report",
    )
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--single", nargs=2, metavar=("PROTOCOL", "SETTING"))
    args = parser.parse_args(argv)

    if args.single:
        print(json.dumps(run_case(args, *args.single)))
        return 0

    peak = matmul_gflops(device=args.device)
    baseline: dict[str, Any] | None = None
    baseline_compile = (
        args.compile_loss
        if args.baseline_compile_loss is None
        else args.baseline_compile_loss == "true"
    )
    if args.external_baseline:
        if (
            args.baseline
            or args.baseline_override
            or args.baseline_agent_threads
            or args.baseline_counted_rows
        ):
            parser.error("--external-baseline replaces the other --baseline options")
        baseline = {
            "command": args.external_baseline,
            "label": args.external_label,
        }
    elif (
        args.baseline
        or args.baseline_override
        or args.baseline_agent_threads
        or args.baseline_compile_loss is not None
        or args.baseline_counted_rows is not None
    ):
        baseline = {
            "agent_threads": args.baseline_agent_threads or args.agent_threads,
            "compile_loss": baseline_compile,
            "counted_rows": args.baseline_counted_rows,
            "pythonpath": (
                _baseline_checkout(args.baseline, args.workdir) if args.baseline else []
            ),
            "overrides": list(args.baseline_override),
            "label": " ".join(
                filter(
                    None,
                    [
                        args.baseline and f"revision {args.baseline}",
                        args.baseline_override
                        and "with " + " ".join(args.baseline_override),
                        args.baseline_agent_threads
                        and f"run.agent_threads={args.baseline_agent_threads}",
                        args.baseline_compile_loss is not None
                        and f"run.compile_loss={args.baseline_compile_loss}",
                        args.baseline_counted_rows is not None
                        and f"run.counted_rows={args.baseline_counted_rows}",
                    ],
                )
            ),
        }
    print(f"load average at the start: {_load_average()}", flush=True)
    cases = [(p, st) for st in args.settings for p in args.protocols]
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {case: [] for case in cases}
    base_runs: dict[tuple[str, str], list[dict[str, Any]]] = {c: [] for c in cases}
    for repeat in range(args.repeats):
        for protocol, setting in cases:
            # this code and the baseline alternate process by process, so a burst of
            # load on the machine hits both alike
            result = _spawn(args, protocol, setting)
            runs[(protocol, setting)].append(result)
            if args.repeats > 1 or baseline:
                print(f"  [{repeat + 1}/{args.repeats}] " + _row(result), flush=True)
            if baseline:
                base = _spawn(args, protocol, setting, baseline)
                base_runs[(protocol, setting)].append(base)
                print(
                    f"  [{repeat + 1}/{args.repeats}] baseline " + _row(base),
                    flush=True,
                )
    results = []
    for (protocol, setting), case_runs in runs.items():
        result = _combine(case_runs)
        result["matmul_gflops"] = peak
        if "achieved_gflops" in result:
            result["fraction_of_matmul_peak"] = result["achieved_gflops"] / peak
        if baseline:
            result["baseline"] = _combine(base_runs[(protocol, setting)])
            result["baseline"]["label"] = baseline["label"]
            pairs = [
                mine["fps"] / theirs["fps"]
                for mine, theirs in zip(
                    case_runs, base_runs[(protocol, setting)], strict=True
                )
                if "fps" in mine and "fps" in theirs
            ]
            if pairs:
                result["speedup_vs_baseline"] = statistics.median(pairs)
                result["speedup_vs_baseline_per_pair"] = pairs
        results.append(result)
        print(_row(result), flush=True)
        if "speedup_vs_baseline" in result:
            base_peak = result["baseline"].get("peak_rss_gb")
            print(
                f"{'':>18}vs {baseline['label']}: "
                f"{result['baseline'].get('fps', float('nan')):.1f} frames/s"
                + (f" and {base_peak:.2f} GB peak, " if base_peak else ", ")
                + f"{result['speedup_vs_baseline']:.2f}x (median of process pairs: "
                + ", ".join(f"{r:.2f}" for r in result["speedup_vs_baseline_per_pair"])
                + ")",
                flush=True,
            )
        reference = REFERENCE.get((protocol, setting))
        if reference and args.scenario == "graph_isomorphism":
            print(
                f"{'':>18}reference, not measured now: {reference['fps']:.0f} frames/s "
                f"and {reference['peak_gb']} GB peak for {reference['source']}",
                flush=True,
            )
        if "matmul_ceiling" in result:
            print(_ceiling_row(result["matmul_ceiling"]), flush=True)
        if "profile" in result:
            print(result["profile"])
    where = "this machine" if args.device == "cpu" else args.device
    print(f"float32 matmul throughput of {where}: {peak:.1f} GFLOP/s")
    print(f"load average at the end: {_load_average()}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def _combine(case_runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One case's processes as one result: the median of each figure (the first
    process's profile), with every process's frames per second kept."""
    ok = [r for r in case_runs if "error" not in r]
    if not ok:
        return case_runs[0]
    combined = dict(ok[0])
    for key, value in ok[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            combined[key] = statistics.median(r[key] for r in ok)
    combined["fps_per_process"] = [r["fps"] for r in ok]
    combined["processes"] = len(ok)
    return combined


def _ceiling_row(c: dict[str, Any]) -> str:
    ops = ", ".join(
        f"{name} {v['gflops']:.1f}" for name, v in sorted(c["by_op"].items())
    )
    return (
        f"{'':>18}the loop's {c['calls']} products ({c['distinct_products']} "
        f"distinct) alone on one thread: {c['kernel_gflops_one_thread']:.1f} GFLOP/s "
        f"({ops}), {100 * c['kernel_fraction_of_one_thread_peak']:.1f}% of one "
        f"thread's {c['single_thread_matmul_gflops']:.1f} on a large product; "
        f"{100 * c['share_of_counted_flops']:.1f}% of the counted FLOPs, "
        f"{100 * c['share_of_core_time']:.1f}% of the iteration's core time"
    )


def _processes_and_load(r: dict[str, Any]) -> str:
    """The end of a row: every process's frames per second, and the load."""
    text = ""
    if r.get("processes", 1) > 1:
        text += (
            f"  (median of {r['processes']} processes: "
            + ", ".join(f"{fps:.0f}" for fps in r["fps_per_process"])
            + ")"
        )
    if r.get("load_average_before") is not None:
        text += f"  load {r['load_average_before']:.2f}"
    return text


def _row(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{r['protocol']:>8} {r['setting']:>8}  FAILED: {' | '.join(r['error'])}"
    if r.get("external"):
        return (
            f"{r['protocol']:>8} {r['setting']:>8}  {r['fps']:8.1f} frames/s"
            + (
                f"  peak {r['peak_rss_gb']:.2f} GB"
                if r.get("peak_rss_gb") is not None
                else ""
            )
            + _processes_and_load(r)
        )
    return (
        f"{r['protocol']:>8} {r['setting']:>8}  {r['fps']:8.1f} frames/s  "
        f"agent threads {int(r.get('agent_threads', 1))}  "
        f"iteration {r['median_iteration_s']:.2f} s (collection "
        f"{r['median_collection_s']:.2f}, advantage {r['median_advantage_s']:.2f}, "
        f"update {r['median_update_s']:.2f})  peak {r['peak_rss_gb']:.2f} GB "
        f"(before normalisation {r['peak_rss_before_normalization_gb']:.2f}, after "
        f"{r['peak_rss_after_normalization_gb']:.2f})  "
        + (
            f"GPU peak {r['peak_gpu_memory_gb']:.2f} GB on {r['device_name']}  "
            if r.get("peak_gpu_memory_gb") is not None
            else ""
        )
        + f"{r['flops_per_frame'] / 1e6:.2f} MFLOP/frame  "
        # the machine's matmul throughput is measured once, after every process:
        # a single process's row has no fraction of it yet
        + (
            f"{100 * r['fraction_of_matmul_peak']:.1f}% of matmul peak  "
            if "fraction_of_matmul_peak" in r
            else ""
        )
        + f"{r['median_page_faults_per_iteration'] / 1e3:.0f}k page faults/iteration"
        + _processes_and_load(r)
    )


if __name__ == "__main__":
    sys.exit(main())
