"""Text rollouts per second against a local endpoint that answers after a fixed
latency, at several concurrency limits.

A local OpenAI-compatible server (``python -m nip_core.testing.openai_server``, a
separate process, scripted model of the synthetic text scenario) answers every
request after ``--latency`` seconds. Each case samples ``--episodes`` episodes of
the synthetic text scenario under ``nip`` (3 rounds: 2 verifier turns and 1 prover
turn) through the ``openai`` backend with ``text_backend.max_concurrency`` = c,
``--episodes-per-slot`` episodes per slot. A client that keeps c requests in flight
at all times reaches c / latency requests per second: the *concurrency bound*. The
figure of merit is the achieved fraction of it. (An episode's turns depend on each
other, so the last episodes of a batch cannot fill every slot: even a client with no
overhead stays some way below the bound, about 0.6 s of the run with 3 turns of 0.2
s; with ``--episodes-per-slot`` 32, the default, that tail is about 3 % of the run.)

Each case runs in its own process, cases round-robin over ``--repeats`` processes
(so a burst of load hits every case alike); the table gives medians and the load
average before and after::

    python benchmarks/text_rollouts.py
    python benchmarks/text_rollouts.py --latency 0.2 --concurrency 1 8 32 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

RESULT_PREFIX = "RESULT "


def run_case(base_url: str, concurrency: int, episodes: int) -> dict:
    """Sample the episodes once (in this process) and time it."""
    import tempfile
    from pathlib import Path

    from nip_core.factory import build_scenario_instance
    from nip_core.testing.fixtures import isolated_plugin_manager
    from nip_core.testing.openai_server import OpenAiTestServer
    from nip_core.testing.synthetic_text import SYNTHETIC_TEXT_PLUGIN
    from nip_core.testing.synthetic_text.fixtures import SyntheticTextScenario
    from nip_core.text.sampling import sample_rollouts

    class Remote(OpenAiTestServer):
        """Stands in for the server object: only its base URL is read."""

        def __init__(self, url: str):
            self._url = url

        @property
        def base_url(self) -> str:
            return self._url

    with isolated_plugin_manager({"synthetic_text": SYNTHETIC_TEXT_PLUGIN}):
        scenario = SyntheticTextScenario(Path(tempfile.mkdtemp()), Remote(base_url))
        hyper_params = scenario.hyper_params(
            "nip",
            dataset="small",
            text_backend={"max_concurrency": concurrency, "request_timeout": 60.0},
        )
        instance = build_scenario_instance(hyper_params, scenario.settings())
        env = instance.train_environment
        indices = [i % len(env.dataset) for i in range(episodes)]
        # one warm-up request: connection set-up is not what is measured
        sample_rollouts(env, instance.agents, indices[:1])
        start = time.perf_counter()
        rollouts = sample_rollouts(env, instance.agents, indices, iteration=1)
        elapsed = time.perf_counter() - start
        instance.close()
    requests = int(rollouts["agents.active"].sum() + rollouts["agents.retries"].sum())
    return {
        "concurrency": concurrency,
        "episodes": episodes,
        "requests": requests,
        "seconds": elapsed,
        "requests_per_s": requests / elapsed,
        "episodes_per_s": episodes / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument(
        "--episodes-per-slot",
        type=int,
        default=32,
        help="episodes per concurrency slot (concurrency > 1): the dependent turns "
        "of the last episodes leave slots empty, a tail that more episodes make a "
        "smaller part of the run",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--case", nargs=3, metavar=("URL", "C", "EPISODES"))
    args = parser.parse_args()

    if args.case:
        url, concurrency, episodes = args.case
        result = run_case(url, int(concurrency), int(episodes))
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return

    load_before = os.getloadavg()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nip_core.testing.openai_server",
            "--latency",
            str(args.latency),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = server.stdout.readline().strip()
        results: dict[int, list[dict]] = {c: [] for c in args.concurrency}
        for _ in range(args.repeats):
            for concurrency in args.concurrency:
                # Episodes are chains of dependent turns: the last ones leave slots
                # empty, so each case gets --episodes-per-slot episodes per slot
                # (the tail is then a small part of the time); at concurrency 1 a
                # few episodes do
                episodes = (
                    max(args.episodes, args.episodes_per_slot * concurrency)
                    if concurrency > 1
                    else min(args.episodes, 8)
                )
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--case",
                        base_url,
                        str(concurrency),
                        str(episodes),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                line = next(
                    x for x in out.stdout.splitlines() if x.startswith(RESULT_PREFIX)
                )
                results[concurrency].append(json.loads(line[len(RESULT_PREFIX) :]))
    finally:
        server.terminate()
        server.wait(timeout=10)
    load_after = os.getloadavg()

    print(
        f"latency {args.latency:g} s per request; {args.repeats} process(es) per "
        f"case, round-robin; load average before {load_before[0]:.2f}, after "
        f"{load_after[0]:.2f} (1 min)"
    )
    print(
        f"{'concurrency':>11} {'requests/s':>11} {'bound':>7} {'of bound':>9} "
        f"{'episodes/s':>11}   per process (requests/s)"
    )
    table = []
    for concurrency, runs in results.items():
        rate = statistics.median(r["requests_per_s"] for r in runs)
        episodes = statistics.median(r["episodes_per_s"] for r in runs)
        bound = concurrency / args.latency
        each = ", ".join(f"{r['requests_per_s']:.1f}" for r in runs)
        print(
            f"{concurrency:>11} {rate:>11.1f} {bound:>7.1f} {rate / bound:>9.1%} "
            f"{episodes:>11.2f}   {each}"
        )
        table.append(
            {
                "concurrency": concurrency,
                "median_requests_per_s": rate,
                "bound_requests_per_s": bound,
                "fraction_of_bound": rate / bound,
                "median_episodes_per_s": episodes,
                "runs": runs,
            }
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "latency": args.latency,
                    "load_before": load_before,
                    "load_after": load_after,
                    "cases": table,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
