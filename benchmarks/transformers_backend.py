"""Speed of the ``transformers`` text backend (nip-plugin-transformers).

Generated tokens per second by batch size, and fine-tune examples per second (LoRA
SFT and DPO), for the default model (SmolLM2-135M-Instruct) or any local model, on
the CPU or a GPU. Every case runs in its own process; with ``--repeats N`` the cases
run round-robin N times (so a burst of load on the machine hits each case alike)
and each figure is the median over the processes. The load average is printed
before and after: compare figures taken on a quiet machine only.

    python benchmarks/transformers_backend.py
    python benchmarks/transformers_backend.py --batch-sizes 1 8 --repeats 3
    python benchmarks/transformers_backend.py --device cuda --batch-sizes 1 8 32 64
    python benchmarks/transformers_backend.py --model ./my-model --skip-fine-tune
    python benchmarks/transformers_backend.py --json results.json
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
from types import SimpleNamespace
from typing import Any

PROMPT = "Write a long story about a river that runs through a small town."


def _backend(args: argparse.Namespace, root: Path, **params: Any) -> Any:
    from nip_core.settings import ExperimentSettings
    from nip_plugin_transformers.backend import TransformersBackend
    from nip_plugin_transformers.parameters import TransformersBackendParameters

    settings = ExperimentSettings(
        device=args.device,
        run_id="benchmark",
        runs_dir=str(root / "runs"),
        cache_dir=args.cache_dir,
        show_progress=False,
    )
    section = TransformersBackendParameters(dtype=args.dtype, **params)
    return TransformersBackend(
        SimpleNamespace(transformers_backend=section), settings, "transformers"
    )


def _requests(args: argparse.Namespace, count: int, offset: int) -> list[Any]:
    from nip_core.text.backend import GenerationRequest

    return [
        GenerationRequest(
            model=args.model,
            messages=[{"role": "user", "content": PROMPT}],
            temperature=1.0,
            max_tokens=args.max_tokens,
            seed=offset + i,
        )
        for i in range(count)
    ]


def case_generate(args: argparse.Namespace, batch_size: int) -> dict[str, Any]:
    """Tokens per second of one batch of ``batch_size`` requests (median of
    ``--rounds`` batches, after a warm-up batch)."""
    with tempfile.TemporaryDirectory() as root:
        backend = _backend(args, Path(root), generation_batch_size=batch_size)
        start = time.perf_counter()
        backend.generate(_requests(args, 1, 10_000))  # load the model, warm up
        load_s = time.perf_counter() - start
        rates, seconds = [], []
        for round_ in range(args.rounds):
            requests = _requests(args, batch_size, round_ * batch_size)
            start = time.perf_counter()
            results = backend.generate(requests)
            elapsed = time.perf_counter() - start
            tokens = sum(r.completion_tokens for r in results)
            rates.append(tokens / elapsed)
            seconds.append(elapsed)
        backend.close()
    return {
        "tokens_per_s": statistics.median(rates),
        "batch_s": statistics.median(seconds),
        "load_and_warm_up_s": load_s,
    }


def _chats(count: int) -> list[list[dict[str, str]]]:
    return [
        [
            {"role": "system", "content": "You are the prover. Convince the verifier."},
            {"role": "user", "content": f"Is {1000 + 2 * i} even? Explain."},
            {
                "role": "assistant",
                "content": f"Yes: {1000 + 2 * i} ends in an even digit, so it is "
                "divisible by two, which is what even means. Decision: accept.",
            },
        ]
        for i in range(count)
    ]


def case_fine_tune(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """Examples per second of one fine-tune job (``--examples`` examples, one epoch,
    batch ``--train-batch-size``), and its wall time from creation to success
    (worker start and model loading included)."""
    from nip_core.text.backend import FineTuneRequest, PreferenceExample

    chats = _chats(args.examples)
    if method == "dpo":
        examples: list[Any] = [
            PreferenceExample(
                prompt=chat[:2],
                chosen=chat[2]["content"],
                rejected=chat[2]["content"].replace("accept", "reject"),
            )
            for chat in chats
        ]
    else:
        examples = chats
    with tempfile.TemporaryDirectory() as root:
        backend = _backend(
            args,
            Path(root),
            lora=args.lora,
            batch_size=args.train_batch_size,
            checkpoint_steps=None,
        )
        backend.check_fine_tune_model(args.model)  # starts the warm worker process
        _wait_for_warm_worker()
        start = time.perf_counter()
        job = backend.create_fine_tune_job(
            FineTuneRequest(
                name=f"benchmark-{method}",
                base_model=args.model,
                method=method,
                examples=examples,
                seed=0,
            )
        )
        while not (job := backend.get_fine_tune_job(job.id)).finished:
            time.sleep(0.1)
        wall = time.perf_counter() - start
        if job.status != "succeeded":
            raise RuntimeError(f"the {method} job failed: {job.error}")
        summary = json.loads(
            (Path(job.fine_tuned_model) / "nip_model.json").read_text("utf-8")
        )
        backend.close()
    return {
        "examples_per_s": args.examples / summary["train_runtime_s"],
        "train_s": summary["train_runtime_s"],
        "job_wall_s": wall,
        "lora": summary["lora"],
        "steps": summary["steps"],
    }


def _wait_for_warm_worker() -> None:
    from nip_plugin_transformers import jobs

    with jobs._LOCK:
        if jobs._ZYGOTE is not None:
            jobs._ZYGOTE.wait_ready()


def _run_case(args: argparse.Namespace, case: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--case", case, *args.passthrough]
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--train-batch-size", type=int, default=4)
    parser.add_argument("--lora", default="auto", choices=["auto", "on", "off"])
    parser.add_argument("--skip-fine-tune", action="store_true")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.passthrough = [
        a
        for pair in (
            ("--model", args.model),
            ("--device", args.device),
            ("--dtype", args.dtype),
            ("--max-tokens", str(args.max_tokens)),
            ("--rounds", str(args.rounds)),
            ("--examples", str(args.examples)),
            ("--train-batch-size", str(args.train_batch_size)),
            ("--lora", args.lora),
        )
        for a in pair
    ] + (["--cache-dir", args.cache_dir] if args.cache_dir else [])

    if args.case is not None:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        kind, _, value = args.case.partition(":")
        if kind == "generate":
            result = case_generate(args, int(value))
        else:
            result = case_fine_tune(args, value)
        print(json.dumps(result))
        return 0

    # convert the default model once, outside the measured processes
    from nip_core.settings import cache_dir_or_default
    from nip_plugin_transformers.models import resolve_model
    from nip_plugin_transformers.parameters import TransformersBackendParameters

    resolve_model(
        args.model,
        TransformersBackendParameters(),
        cache_dir_or_default(args.cache_dir) / "transformers",
    )
    cases = [f"generate:{b}" for b in args.batch_sizes]
    if not args.skip_fine_tune:
        cases += ["fine_tune:supervised", "fine_tune:dpo"]
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(
        f"model {args.model}, device {args.device}, torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs, threads {args.threads or 'default'}, CUDA: {gpu}"
    )
    print(f"load average before: {_load()}")
    results: dict[str, list[dict[str, Any]]] = {case: [] for case in cases}
    for _ in range(args.repeats):
        for case in cases:
            results[case].append(_run_case(args, case))
    print(f"load average after:  {_load()}")

    base = None
    print(f"\n{'batch':>5}  {'tokens/s (median)':>18}  {'vs batch 1':>10}  per process")
    for b in args.batch_sizes:
        rates = [r["tokens_per_s"] for r in results[f"generate:{b}"]]
        median = statistics.median(rates)
        base = median if b == args.batch_sizes[0] else base
        each = ", ".join(f"{x:.1f}" for x in rates)
        print(f"{b:>5}  {median:>18.1f}  {median / base:>9.2f}×  {each}")
    if not args.skip_fine_tune:
        print(
            f"\n{'job':>10}  {'examples/s (median)':>19}  {'train s':>8}  "
            f"{'job wall s':>10}  per process"
        )
        for method in ("supervised", "dpo"):
            runs = results[f"fine_tune:{method}"]
            rates = [r["examples_per_s"] for r in runs]
            each = ", ".join(f"{x:.2f}" for x in rates)
            print(
                f"{method:>10}  {statistics.median(rates):>19.2f}  "
                f"{statistics.median(r['train_s'] for r in runs):>8.1f}  "
                f"{statistics.median(r['job_wall_s'] for r in runs):>10.1f}  {each}"
                f"  (LoRA: {runs[0]['lora']})"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
