"""One fine-tune job, as a worker process runs it: TRL's ``SFTTrainer`` or
``DPOTrainer``, optionally with LoRA (peft).

The job directory holds everything (see :mod:`nip_plugin_transformers.jobs`); the
worker reads ``request.json`` and writes

- ``progress.json``: the step, the total steps and the last loss, after each log;
- ``checkpoints/``: TRL checkpoints every ``checkpoint_steps`` steps (the last one
  kept), from which a restarted worker continues;
- ``model/``: the fine-tuned model (an adapter directory, or a full model when LoRA
  is off or merged), written as ``model.partial/`` and renamed when complete;
- ``result.json``: ``succeeded`` (with the model's path) or ``failed`` (with the
  reason), written last;
- ``tmp/``: the worker's temporary directory while it runs (``TMPDIR``: the
  ``datasets`` library's cache files of in-memory datasets, and whatever else the
  libraries put there), removed when the job ends, before ``result.json`` is
  written (a job with a result has left nothing there). A worker forked by the zygote
  ends with ``os._exit``, which runs no finaliser, so files the libraries would
  remove at exit are left behind unless they live here.

A worker that dies (killed, out of memory) writes no result; the backend notices
and starts another, which continues from the last checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nip_core.runs.io import atomic_write_json

__all__ = ["REQUEST_FILE", "RESULT_FILE", "PROGRESS_FILE", "run_job"]

REQUEST_FILE = "request.json"
RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.json"
MODEL_DIR = "model"
CHECKPOINTS_DIR = "checkpoints"
SCRATCH_DIR = "tmp"


def _write_result(job_dir: Path, **result: Any) -> None:
    atomic_write_json(job_dir / RESULT_FILE, {"time": time.time(), **result})


def run_job(job_dir: str | os.PathLike[str]) -> int:
    """Run the job in ``job_dir``; returns the process exit status.

    Interrupts (SIGINT) leave no result, so the job is continued later; any other
    error is written as a failed result, with its traceback in the log.
    """
    job_dir = Path(job_dir)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with _scratch_directory(job_dir / SCRATCH_DIR):
        status, result = _run_job(job_dir)
    # written once the scratch directory is gone: a job whose result is there has
    # left nothing behind
    if result is not None:
        _write_result(job_dir, **result)
    return status


@contextlib.contextmanager
def _scratch_directory(path: Path) -> Iterator[None]:
    """The process's temporary directory is ``path`` (emptied first: a killed
    worker may have left files there) until the block ends, then removed."""
    shutil.rmtree(path, ignore_errors=True)
    # (what the removal could not take, such as a network filesystem's .nfs* files
    # of a file still open, is no reason to fail the job)
    path.mkdir(parents=True, exist_ok=True)
    saved = os.environ.get("TMPDIR"), tempfile.tempdir
    # ``datasets`` reads the variable itself; ``tempfile`` caches its choice
    os.environ["TMPDIR"] = tempfile.tempdir = str(path)
    try:
        yield
    finally:
        environ_value, tempfile.tempdir = saved
        if environ_value is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = environ_value
        shutil.rmtree(path, ignore_errors=True)


def _run_job(job_dir: Path) -> tuple[int, dict[str, Any] | None]:
    """Train; the exit status and the result to write (``None``: interrupted, none)."""
    try:
        model_dir = job_dir / MODEL_DIR
        from nip_plugin_transformers.models import MODEL_INFO_FILE

        if not (model_dir / MODEL_INFO_FILE).is_file():
            request = json.loads((job_dir / REQUEST_FILE).read_text("utf-8"))
            summary = _train(job_dir, request)
        else:  # a previous worker finished the model but died before its result
            summary = json.loads((model_dir / MODEL_INFO_FILE).read_text("utf-8"))
    except KeyboardInterrupt:
        print("interrupted; the job continues when the run resumes", flush=True)
        return 130, None
    except BaseException as error:  # noqa: BLE001 - every failure is reported
        traceback.print_exc()
        sys.stdout.flush()
        return 1, {"status": "failed", "error": _describe(error)}
    return 0, {
        "status": "succeeded",
        "fine_tuned_model": str(job_dir / MODEL_DIR),
        "summary": summary,
    }


def _describe(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    if "out of memory" in str(error).lower():
        text += (
            " (lower transformers_backend.batch_size or max_seq_length, turn on "
            "gradient_checkpointing, or use LoRA: transformers_backend.lora: on)"
        )
    return text


def _last_complete_checkpoint(output_dir: Path) -> str | None:
    """The newest checkpoint a killed worker finished writing (``trainer_state.json``
    is written last); partial ones are deleted."""
    if not output_dir.is_dir():
        return None
    found = []
    for path in output_dir.glob("checkpoint-*"):
        step = path.name.removeprefix("checkpoint-")
        if path.is_dir() and step.isdigit():
            found.append((int(step), path))
    for _, path in sorted(found, reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text("utf-8"))
            return str(path)
        except (OSError, ValueError):
            print(f"deleting {path.name}, which its worker did not finish", flush=True)
            shutil.rmtree(path, ignore_errors=True)
    return None


def _is_peft(model: Any) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def _root_model_id(resolved: Any) -> str:
    """How a fine-tuned adapter names its base: as the user did for the default
    model and hub ids, else by absolute path."""
    from nip_plugin_transformers.models import DEFAULT_MODEL

    root = resolved.root
    if root.model_id == DEFAULT_MODEL or not Path(root.model_id).expanduser().exists():
        return root.model_id
    return str(root.path)


class _Progress:
    """A TrainerCallback writing ``progress.json`` (made a subclass lazily, so this
    module imports without transformers)."""

    @staticmethod
    def make(job_dir: Path) -> Any:
        from transformers import TrainerCallback

        class ProgressCallback(TrainerCallback):
            # the last training loss logged: the trainer's closing summary log
            # (train_runtime, train_loss) has none and must not erase it
            last_loss: float | None = None

            def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
                loss = (logs or {}).get("loss")
                if loss is not None:
                    self.last_loss = loss
                atomic_write_json(
                    job_dir / PROGRESS_FILE,
                    {
                        "step": state.global_step,
                        "max_steps": state.max_steps,
                        "epoch": state.epoch,
                        "loss": self.last_loss,
                        "time": time.time(),
                    },
                )

        return ProgressCallback()


def _train(job_dir: Path, request: dict[str, Any]) -> dict[str, Any]:
    import datasets
    import torch
    import transformers
    from datasets import Dataset
    from transformers.utils import logging as hf_logging

    from nip_plugin_transformers.data import preference_rows, supervised_rows
    from nip_plugin_transformers.models import (
        MODEL_INFO_FILE,
        load_model,
        load_tokenizer,
        resolve_model,
    )
    from nip_plugin_transformers.parameters import TransformersBackendParameters

    hf_logging.set_verbosity_warning()
    datasets.disable_progress_bars()
    params = TransformersBackendParameters.from_dict(request["params"])
    if params.worker_threads:
        torch.set_num_threads(int(params.worker_threads))
    device = str(request["device"])
    dtype = getattr(torch, request["dtype"])
    seed = int(request["seed"])
    transformers.set_seed(seed)
    print(
        f"job {request['name']}: {request['method']} fine-tuning of "
        f"{request['base_model']} on {len(request['examples'])} examples, "
        f"{device}, {request['dtype']}, seed {seed}",
        flush=True,
    )

    resolved = resolve_model(
        request["base_model"],
        params,
        Path(request["cache_root"]),
        fine_tuning=True,
    )
    tokenizer = load_tokenizer(resolved, params, padding_side="right")
    model = load_model(resolved, params, device, dtype)
    num_parameters = sum(p.numel() for p in model.parameters())
    lora = params.uses_lora(num_parameters)
    if dtype == torch.float16 and not lora:
        # float16 training keeps float32 master weights (mixed precision)
        model = model.float()
    peft_config = None
    if resolved.kind == "adapter":
        from peft import PeftModel

        if lora:  # continue training the adapter
            model = PeftModel.from_pretrained(
                model, str(resolved.path), is_trainable=True
            )
        else:  # full fine-tuning of the adapted model
            model = PeftModel.from_pretrained(model, str(resolved.path))
            model = model.merge_and_unload()
    elif lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=params.lora_rank,
            lora_alpha=params.lora_alpha,
            lora_dropout=params.lora_dropout,
            target_modules=list(params.lora_target_modules or ()) or "all-linear",
            task_type="CAUSAL_LM",
        )

    output_dir = job_dir / CHECKPOINTS_DIR
    common: dict[str, Any] = dict(
        output_dir=str(output_dir),
        num_train_epochs=params.num_epochs,
        per_device_train_batch_size=params.batch_size,
        gradient_accumulation_steps=params.gradient_accumulation_steps,
        learning_rate=params.resolved_learning_rate(lora),
        lr_scheduler_type=params.lr_scheduler,
        warmup_steps=params.warmup_ratio,
        weight_decay=params.weight_decay,
        max_length=params.max_seq_length,
        logging_steps=1,
        save_strategy="steps" if params.checkpoint_steps else "no",
        save_steps=params.checkpoint_steps or 500,
        save_total_limit=1,
        report_to="none",
        disable_tqdm=True,
        seed=seed,
        data_seed=seed,
        use_cpu=device == "cpu",
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        activation_checkpointing=params.gradient_checkpointing,
        dataloader_num_workers=0,
    )
    callbacks = [_Progress.make(job_dir)]
    examples = request["examples"]
    cut = dropped = 0
    if request["method"] == "dpo":
        from trl import DPOConfig, DPOTrainer

        is_peft = peft_config is not None or _is_peft(model)
        trainer = DPOTrainer(
            model=model,
            args=DPOConfig(
                **common,
                beta=params.dpo_beta,
                # without LoRA, the reference log-probabilities are computed once
                # by the model before it trains, instead of by a second copy
                precompute_ref_log_probs=not is_peft,
            ),
            train_dataset=Dataset.from_list(preference_rows(examples)),
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=callbacks,
        )
    else:
        from trl import SFTConfig, SFTTrainer

        rows, cut, dropped = fit_rows(
            supervised_rows(tokenizer, examples), params.max_seq_length
        )
        trainer = SFTTrainer(
            model=model,
            args=SFTConfig(**common, packing=False),
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=callbacks,
        )
    last = _last_complete_checkpoint(output_dir)
    if last:
        print(f"continuing from {last}", flush=True)
    result = trainer.train(resume_from_checkpoint=last)

    partial = job_dir / (MODEL_DIR + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    trained = trainer.model
    merged = False
    if _is_peft(trained):
        if "ref" in trained.peft_config:
            trained.delete_adapter("ref")
        if params.lora_merge:
            trained = trained.merge_and_unload()
            trained.save_pretrained(str(partial))
            merged = True
        else:
            trained.save_pretrained(str(partial), selected_adapters=["default"])
            config_path = partial / "adapter_config.json"
            config = json.loads(config_path.read_text("utf-8"))
            config["base_model_name_or_path"] = _root_model_id(resolved)
            config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    else:
        trained.save_pretrained(str(partial))
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(str(partial))
    summary = {
        "job": request["name"],
        "method": request["method"],
        "base_model": request["base_model"],
        "root_model": _root_model_id(resolved),
        "lora": lora,
        "merged": merged,
        "num_examples": len(examples),
        # supervised examples longer than max_seq_length: cut at the end, and of
        # those, left out for having no assistant token left
        "num_examples_cut": cut,
        "num_examples_left_out": dropped,
        "num_parameters": num_parameters,
        "seed": seed,
        "steps": int(result.global_step),
        "train_loss": float(result.training_loss),
        "train_runtime_s": float((result.metrics or {}).get("train_runtime", 0.0)),
        "resumed_from": last,
    }
    (partial / MODEL_INFO_FILE).write_text(json.dumps(summary, indent=2), "utf-8")
    final = job_dir / MODEL_DIR
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    print(f"wrote {final} ({result.global_step} steps)", flush=True)
    return summary


def fit_rows(
    rows: list[dict[str, list[int]]], max_length: int
) -> tuple[list[dict[str, list[int]]], int, int]:
    """The supervised rows that leave something to train on within ``max_length``
    tokens (training cuts each row at the end), how many are cut, and how many are
    left out for having no assistant token before the cut. Says so in the job's
    log; none left is an error naming ``max_seq_length``."""
    cut = [row for row in rows if len(row["input_ids"]) > max_length]
    kept = [row for row in rows if any(row["assistant_masks"][:max_length])]
    dropped = len(rows) - len(kept)
    if not kept:
        longest = max(len(row["input_ids"]) for row in rows)
        raise ValueError(
            f"all {len(rows)} examples have their assistant messages beyond "
            f"transformers_backend.max_seq_length={max_length} tokens (the longest "
            f"example is {longest} tokens): raise it in a new run (a resumed run "
            "keeps its settings, and this job would fail again)"
        )
    if cut:
        print(
            f"{len(cut)} of {len(rows)} examples are longer than "
            f"transformers_backend.max_seq_length={max_length} tokens and are cut at "
            f"the end; {dropped} of them keep no assistant token and are left out",
            flush=True,
        )
    return kept, len(cut), dropped
