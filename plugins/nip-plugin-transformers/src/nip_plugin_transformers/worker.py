"""Worker processes of fine-tune jobs.

``python -m nip_plugin_transformers.worker JOB_DIR`` runs one job in a fresh
interpreter (``worker_start: spawn``).

``python -m nip_plugin_transformers.worker --zygote`` is the warm process of
``worker_start: fork``: it imports torch, transformers, TRL and peft once (the
seconds a fresh interpreter spends before it can train), then reads one JSON line
per job on its standard input (``{"job_dir": ..., "log": ..., "env": {...}}``),
forks a worker for it, and answers ``{"pid": ...}`` on its standard output. It
never runs a torch operation itself, so each fork starts from a clean state (no
thread pools, no CUDA context). It reaps its children and writes each one's exit
status to ``worker_exit.json`` in the job directory, and exits when its standard
input closes (its parent ended); workers already running carry on, like a job on a
remote service, and the next run that looks at their job finds their result.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

__all__ = ["EXIT_FILE", "main"]

EXIT_FILE = "worker_exit.json"


def _preload() -> None:
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from trl import DPOTrainer, SFTTrainer  # noqa: F401

    import nip_plugin_transformers.training  # noqa: F401

    try:  # transformers compiles a thousand regexes on the first model load
        from transformers.conversion_mapping import get_checkpoint_conversion_mapping

        get_checkpoint_conversion_mapping("llama")
    except Exception:  # noqa: BLE001 - an internal of transformers; only a speed-up
        pass
    # Workers are forked from here: objects that exist now are never collected, so
    # a worker's garbage collections do not walk (and copy) the whole import heap
    gc.collect()
    gc.freeze()


def _run_child(request: dict[str, Any]) -> int:
    from nip_plugin_transformers.training import run_job

    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    os.environ.clear()
    os.environ.update(request.get("env") or {})
    return run_job(request["job_dir"])


def _zygote() -> int:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    reply = sys.stdout
    try:
        _preload()
    except BaseException:  # noqa: BLE001 - reported to the parent
        reply.write(json.dumps({"ready": False, "error": traceback.format_exc()}))
        reply.write("\n")
        reply.flush()
        return 1
    children: dict[int, str] = {}

    def reap(*_: Any) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job_dir = children.pop(pid, None)
            if job_dir is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            try:
                Path(job_dir, EXIT_FILE).write_text(
                    json.dumps({"pid": pid, "exit_code": code}), encoding="utf-8"
                )
            except OSError:
                pass

    signal.signal(signal.SIGCHLD, reap)
    # Ctrl-C reaches the whole process group: the parent and the workers stop; the
    # zygote ends when its input closes
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    reply.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    reply.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        # SIGCHLD waits until the child is recorded, so its exit is never missed
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            request = json.loads(line)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
        except BaseException as error:  # noqa: BLE001 - reported to the parent
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
            reply.write(json.dumps({"error": f"{type(error).__name__}: {error}"}))
            reply.write("\n")
            reply.flush()
            continue
        if pid == 0:
            code = 1
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
                signal.signal(signal.SIGINT, signal.default_int_handler)
                code = _run_child(request)
            except BaseException:  # noqa: BLE001 - a child must never return
                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        children[pid] = request["job_dir"]
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        reply.write(json.dumps({"pid": pid}) + "\n")
        reply.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--zygote"]:
        return _zygote()
    if len(args) == 1 and not args[0].startswith("-"):
        from nip_plugin_transformers.training import run_job

        return run_job(args[0])
    print(
        "usage: python -m nip_plugin_transformers.worker JOB_DIR | --zygote",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
