"""``TransformersBackend``: local Hugging Face models for the text world.

Generation runs in the run's process, batched (see
:mod:`nip_plugin_transformers.generation`), on ``settings.device``. Fine-tuning runs
in worker processes (:mod:`nip_plugin_transformers.jobs`), so the trainer keeps its
create / poll / switch shape and a run killed while a job trains finds the job
again when it resumes. A fine-tuned model's id is the path of its directory, under
the run directory.

Loaded models are kept in a small pool: each base model once (up to
``transformers_backend.max_loaded_models``, least recently used dropped first),
with the LoRA adapters fine-tuned from it loaded on top under their own names (up
to ``transformers_backend.max_loaded_adapters`` per base, least recently used
unloaded first), so a verifier and a prover fine-tuned from one base share its
weights in memory.
"""

from __future__ import annotations

import hashlib
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from nip_core.errors import BackendError, NipConfigError
from nip_core.settings import cache_dir_or_default, device_problems
from nip_core.text.backend import (
    FineTuneJob,
    FineTuneRequest,
    GenerationChoice,
    GenerationRequest,
    GenerationResult,
    TextBackend,
    cut_at_stop,
)
from nip_plugin_transformers.jobs import JobManager, JobRecord, start_zygote
from nip_plugin_transformers.models import (
    ResolvedModel,
    load_model,
    load_tokenizer,
    resolve_dtype,
    resolve_model,
)
from nip_plugin_transformers.parameters import TransformersBackendParameters

__all__ = ["JOBS_DIR", "TransformersBackend"]

JOBS_DIR = "transformers_jobs"
"""The job registry's directory inside a run directory."""


class _LoadedBase:
    """A base model in memory, with the adapters loaded onto it (at most
    ``max_adapters``, the least recently used unloaded first)."""

    def __init__(self, model: Any, tokenizer: Any, max_adapters: int = 4):
        self.model = model
        self.tokenizer = tokenizer
        self.max_adapters = max_adapters
        self.adapters: OrderedDict[str, str] = OrderedDict()
        """Adapter directory → adapter name in the peft model, least recently
        used first."""

    def activate(self, resolved: ResolvedModel) -> Any:
        """The model to generate with for ``resolved`` (the base, or an adapter)."""
        from contextlib import nullcontext

        if resolved.kind != "adapter":
            if self.adapters:
                return self.model, self.model.disable_adapter()
            return self.model, nullcontext()
        key = str(resolved.path)
        name = self.adapters.get(key)
        if name is not None:
            self.adapters.move_to_end(key)
        else:
            from peft import PeftModel

            name = "a" + hashlib.sha1(key.encode()).hexdigest()[:16]
            with warnings.catch_warnings():
                # peft calls an attribute transformers 5 deprecated; not actionable
                warnings.simplefilter("ignore", FutureWarning)
                if not self.adapters:
                    self.model = PeftModel.from_pretrained(
                        self.model, key, adapter_name=name, is_trainable=False
                    )
                else:
                    self.model.load_adapter(key, adapter_name=name, is_trainable=False)
            self.model.eval()
            self.adapters[key] = name
            self._unload_old_adapters()
        self.model.set_adapter(name)
        return self.model, nullcontext()

    def _unload_old_adapters(self) -> None:
        """Unload the least recently used adapters beyond ``max_adapters`` (never
        the newest, which is about to be used)."""
        while len(self.adapters) > self.max_adapters:
            _, name = self.adapters.popitem(last=False)
            self.model.delete_adapter(name)


class TransformersBackend(TextBackend):
    """The ``transformers`` text backend (see the module docstring)."""

    supports_seed: ClassVar[bool] = True
    prefers_batches: ClassVar[bool] = True
    """Samplers send each round's turns as one batch (the device batches them)."""

    def __init__(self, hyper_params: Any, settings: Any, name: str):
        super().__init__(hyper_params, settings, name)
        params = getattr(hyper_params, "transformers_backend", None)
        self.params: TransformersBackendParameters = (
            params if params is not None else TransformersBackendParameters()
        )
        self.device = str(getattr(settings, "device", "cpu") or "cpu")
        # a run checks its device before it builds a backend; a backend built
        # from Python, outside a run, would otherwise fail at its first model
        # load with torch's own words ("Torch not compiled with CUDA enabled")
        problems = device_problems(self.device)
        if problems:
            raise NipConfigError(problems)
        self.cache_root = (
            cache_dir_or_default(getattr(settings, "cache_dir", None)) / "transformers"
        )
        self.jobs = JobManager(
            self._jobs_root(settings),
            max_worker_restarts=self.params.max_worker_restarts,
            max_concurrent_jobs=self.params.max_concurrent_jobs,
            worker_start=self.params.worker_start,
        )
        self._bases: OrderedDict[str, _LoadedBase] = OrderedDict()
        self._resolved: dict[str, ResolvedModel] = {}
        self._generation_lock = threading.Lock()
        self._dtype: Any = None

    def _jobs_root(self, settings: Any) -> Path:
        """Where fine-tune jobs live: in the run directory; for a test run (which
        writes nothing) a scratch directory of this backend's own, removed when it
        closes, so that no later test run finds a job of the same name and takes
        its model as if it had trained it; without a run, the cache."""
        run_id = getattr(settings, "run_id", None)
        if getattr(settings, "test_run", False):
            import tempfile

            self._scratch_jobs = Path(tempfile.mkdtemp(prefix="nip-test-run-jobs-"))
            return self._scratch_jobs
        if run_id:
            return Path(settings.runs_dir).expanduser().absolute() / run_id / JOBS_DIR
        return self.cache_root / "jobs"

    @property
    def dtype(self) -> Any:
        """The torch dtype models are loaded in (``transformers_backend.dtype``)."""
        if self._dtype is None:
            self._dtype = resolve_dtype(self.params.dtype, self.device)
        return self._dtype

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    # ----------------------------------------------------------------------------------
    # Models

    def resolve(self, model: str, *, fine_tuning: bool = False) -> ResolvedModel:
        """What a model id names (memoised; raises one clear ``BackendError``)."""
        if fine_tuning:
            return resolve_model(model, self.params, self.cache_root, fine_tuning=True)
        resolved = self._resolved.get(model)
        if resolved is None:
            resolved = resolve_model(model, self.params, self.cache_root)
            self._resolved[model] = resolved
        return resolved

    def _base(self, resolved: ResolvedModel) -> _LoadedBase:
        root = resolved.root
        key = str(root.path)
        loaded = self._bases.get(key)
        if loaded is not None:
            self._bases.move_to_end(key)
            return loaded
        while len(self._bases) >= self.params.max_loaded_models:
            self._bases.popitem(last=False)
            self._free_memory(collect=True)
        tokenizer = load_tokenizer(root, self.params, padding_side="left")
        model = load_model(root, self.params, self.device, self.dtype)
        model.eval()
        loaded = _LoadedBase(model, tokenizer, self.params.max_loaded_adapters)
        self._bases[key] = loaded
        return loaded

    def _free_memory(self, collect: bool = False) -> None:
        cuda = self.device.startswith("cuda")
        if collect or cuda:
            import gc

            gc.collect()  # a model's reference cycles hold its weights until then
        if cuda:
            import torch

            torch.cuda.empty_cache()

    def unload_models(self) -> None:
        """Drop every loaded model (they load again when next used)."""
        had_models = bool(self._bases)
        self._bases.clear()
        if had_models:
            self._free_memory()

    def check_model(self, model: str) -> None:
        """Resolve the model and load its tokenizer (a missing model, or one without
        a chat template, fails here with one message)."""
        resolved = self.resolve(model)
        load_tokenizer(resolved, self.params, padding_side="left")
        self._check_causal_lm(resolved)

    def _check_causal_lm(self, resolved: ResolvedModel) -> None:
        """Refuse a model that is not a causal language model (an encoder-decoder
        such as T5, an encoder, a vision model) before any rollout: it would
        fail only at the first generation, with transformers' list of some 200
        configuration classes. Reads the config alone."""
        from transformers import AutoConfig
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        )

        root = resolved.root
        if root.kind == "gguf":
            return  # reading a GGUF file's config parses it (seconds); llama.cpp's
            # files are causal language models
        try:
            config = AutoConfig.from_pretrained(root.load_path, local_files_only=True)
        except Exception:  # noqa: BLE001 - loading the model reports what is wrong
            return
        model_type = getattr(config, "model_type", None)
        if model_type and model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            raise BackendError(
                f"model {resolved.model_id!r} is a {model_type!r} model, which "
                "transformers cannot load as a causal language model "
                "(AutoModelForCausalLM): the transformers backend generates with "
                "decoder-only chat models (Llama, Qwen2, SmolLM2, Mistral, ...)"
            )

    def check_fine_tune_model(self, model: str) -> None:
        """Refuse a model that cannot be fine-tuned (a GGUF file unless converted);
        start the warm worker process while the run samples its rollouts."""
        resolved = self.resolve(model, fine_tuning=True)
        self._check_lora_targets(resolved)
        if self.params.worker_start == "fork":
            start_zygote()

    def _check_lora_targets(self, resolved: ResolvedModel) -> None:
        """Refuse ``lora_target_modules`` that name no module of the model, before
        any rollout (a fine-tune would fail only after a whole iteration). The
        model is built on the meta device: no weights are read."""
        targets = self.params.lora_target_modules
        if self.params.lora == "off" or not targets:
            return
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        root = resolved.root
        try:
            config = AutoConfig.from_pretrained(
                root.load_path, local_files_only=True, **root.load_kwargs
            )
            with torch.device("meta"):
                skeleton = AutoModelForCausalLM.from_config(config)
        except Exception:  # noqa: BLE001 - the fine-tune reports what is wrong
            return
        if not self.params.uses_lora(sum(p.numel() for p in skeleton.parameters())):
            return
        names = [name for name, _ in skeleton.named_modules() if name]
        missing = [
            target
            for target in targets
            if not any(name == target or name.endswith("." + target) for name in names)
        ]
        if missing:
            linear = sorted(
                {
                    name.rsplit(".", 1)[-1]
                    for name, module in skeleton.named_modules()
                    if isinstance(module, torch.nn.Linear)
                }
            )
            verb = "is not a module" if len(missing) == 1 else "are not modules"
            raise BackendError(
                f"transformers_backend.lora_target_modules: {', '.join(missing)} "
                f"{verb} of model {resolved.model_id!r}; its linear layers are "
                f"{', '.join(linear)} (or null for every linear layer but the output "
                "head)"
            )

    # ----------------------------------------------------------------------------------
    # Generation

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        progress: Callable[[int], None] | None = None,
    ) -> list[GenerationResult]:
        """Generate every request, batched per model (see the module docstring)."""
        if not requests:
            return []
        with self._generation_lock:
            return self._generate(list(requests), progress)

    def _generate(
        self,
        requests: list[GenerationRequest],
        progress: Callable[[int], None] | None,
    ) -> list[GenerationResult]:
        from nip_plugin_transformers.generation import Row, generate_rows, sampling_seed

        by_model: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            if request.n < 1:
                raise BackendError(f"a request asks for n={request.n} completions")
            by_model.setdefault(request.model, []).append(index)
        results: list[GenerationResult | None] = [None] * len(requests)
        for model_id, indices in by_model.items():
            resolved = self.resolve(model_id)
            base = self._base(resolved)
            tokenizer = base.tokenizer
            rows: list[Row] = []
            owners: list[int] = []
            prompt_tokens: dict[int, int] = {}
            context = _context_length(base.model)
            for index in indices:
                request = requests[index]
                prompt = self._prompt_ids(tokenizer, request, model_id)
                prompt_tokens[index] = len(prompt)
                limit = request.max_tokens or self.params.max_new_tokens
                if context:
                    if len(prompt) >= context:
                        raise BackendError(
                            f"a chat of {len(prompt)} tokens does not fit the "
                            f"{context}-token context of model {model_id!r}; shorten "
                            "the prompts (fewer rounds, a lower word limit) or use a "
                            "model with a longer context"
                        )
                    limit = min(limit, context - len(prompt))
                for choice in range(request.n):
                    rows.append(
                        Row(
                            prompt_ids=tuple(prompt),
                            temperature=_or(request.temperature, 1.0),
                            top_p=_or(request.top_p, 1.0),
                            repetition_penalty=_or(request.repetition_penalty, 1.0),
                            max_new_tokens=int(limit),
                            seed=sampling_seed(request.seed, choice),
                            stop=tuple(request.stop),
                        )
                    )
                    owners.append(index)
            on_batch = _progress_by_request(
                owners, {index: requests[index].n for index in indices}, progress
            )

            model, context_manager = base.activate(resolved)
            try:
                with context_manager:
                    sampled = generate_rows(
                        model,
                        tokenizer,
                        rows,
                        self.params.generation_batch_size,
                        on_batch,
                    )
            except BackendError:
                raise
            except Exception as error:  # noqa: BLE001 - torch raises many kinds
                raise BackendError(
                    f"generating with model {model_id!r} failed: "
                    f"{type(error).__name__}: {error}"
                ) from error
            choices: dict[int, list[GenerationChoice]] = {i: [] for i in indices}
            used: dict[int, int] = dict.fromkeys(indices, 0)
            for owner, row in zip(owners, sampled, strict=True):
                text = tokenizer.decode(list(row.token_ids), skip_special_tokens=True)
                choices[owner].append(
                    cut_at_stop(
                        GenerationChoice(text=text, finish_reason=row.finish_reason),
                        requests[owner].stop,
                    )
                )
                used[owner] += len(row.token_ids)
            for index in indices:
                results[index] = GenerationResult(
                    choices=choices[index],
                    prompt_tokens=prompt_tokens[index],
                    completion_tokens=used[index],
                )
        return [r for r in results if r is not None]

    def _prompt_ids(
        self, tokenizer: Any, request: GenerationRequest, model_id: str
    ) -> list[int]:
        try:
            text = tokenizer.apply_chat_template(
                [dict(m) for m in request.messages],
                tokenize=False,
                add_generation_prompt=True,
            )
        except Exception as error:  # noqa: BLE001 - Jinja raises many kinds
            raise BackendError(
                f"the chat template of model {model_id!r} could not render the chat: "
                f"{error} (give another in transformers_backend.chat_template)"
            ) from error
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    # ----------------------------------------------------------------------------------
    # Fine-tuning

    def _job(self, record: JobRecord) -> FineTuneJob:
        return FineTuneJob(
            id=record.id,
            name=record.name,
            status=record.status,
            fine_tuned_model=record.fine_tuned_model,
            error=record.error,
            metrics=dict(record.metrics),
        )

    def create_fine_tune_job(self, request: FineTuneRequest) -> FineTuneJob:
        """Register the job in the run directory and start its worker (or queue it
        behind ``max_concurrent_jobs`` others)."""
        if not request.examples:
            raise BackendError(f"fine-tune job {request.name!r} has no examples")
        self.resolve(request.base_model, fine_tuning=True)
        if request.method == "supervised":
            for number, chat in enumerate(request.examples_as_dicts()):
                if not any(m["role"] == "assistant" for m in chat["messages"]):
                    raise BackendError(
                        f"fine-tune job {request.name!r}: example {number} has no "
                        "assistant message; supervised examples are whole chats, "
                        "trained on their assistant messages"
                    )
        seed = request.seed
        if seed is None:
            from nip_core.seeding import derive_seed

            seed = derive_seed(0, f"transformers/job/{request.name}")
        if self.device.startswith("cuda"):
            # the worker needs the memory more than generation, which waits for it
            self.unload_models()
        record = self.jobs.create(
            name=request.name,
            method=request.method,
            base_model=request.base_model,
            seed=int(seed),
            request={
                "format": 1,
                "name": request.name,
                "method": request.method,
                "base_model": request.base_model,
                "seed": int(seed),
                "examples": request.examples_as_dicts()
                if request.method == "dpo"
                else [list(chat["messages"]) for chat in request.examples_as_dicts()],
                "params": self.params.to_dict(),
                "device": self.device,
                "dtype": self.dtype_name,
                "cache_root": str(self.cache_root),
            },
        )
        return self._job(record)

    def find_fine_tune_job(self, name: str) -> FineTuneJob | None:
        record = self.jobs.find(name)
        return None if record is None else self._job(record)

    def get_fine_tune_job(self, job_id: str) -> FineTuneJob:
        return self._job(self.jobs.get(job_id))

    def cancel_fine_tune_job(self, job_id: str) -> FineTuneJob:
        return self._job(self.jobs.cancel(job_id))

    def cleanup_fine_tune_job(self, job_id: str) -> None:
        """Delete the job's copy of its training data and its checkpoints; the
        fine-tuned model stays (it is the id the agents now use)."""
        self.jobs.cleanup(job_id)

    # ----------------------------------------------------------------------------------
    # Lifetime

    def close(self) -> None:
        """Drop the loaded models. Jobs in flight keep training (a resumed run finds
        them); cancel a job to stop it. A test run's jobs are cancelled and their
        scratch directory removed."""
        self.unload_models()
        self._resolved.clear()
        super().close()
        scratch = self.__dict__.pop("_scratch_jobs", None)
        if scratch is not None:
            import shutil

            for record in self.jobs._records():
                if not record.finished:
                    try:
                        self.jobs.cancel(record.id)
                    except Exception:  # noqa: BLE001 - removed regardless
                        pass
            # A worker whose job just finished may still write its last files
            # (its log, its exit status) while the tree is removed, and a
            # directory that gained a file is left behind: remove again until
            # nothing is left, for a few seconds at most.
            deadline = time.monotonic() + 10.0
            shutil.rmtree(scratch, ignore_errors=True)
            while scratch.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
                shutil.rmtree(scratch, ignore_errors=True)


def _progress_by_request(
    owners: Sequence[int],
    remaining: dict[int, int],
    progress: Callable[[int], None] | None,
) -> Callable[[Sequence[int]], None]:
    """A batch callback calling ``progress(1)`` once all of a request's rows are
    done (``owners[row]`` is the row's request; ``remaining`` its rows to do)."""

    def on_batch(done: Sequence[int]) -> None:
        for row in done:
            owner = owners[row]
            remaining[owner] -= 1
            if remaining[owner] == 0 and progress is not None:
                progress(1)

    return on_batch


def _or(value: float | None, default: float) -> float:
    return float(default if value is None else value)


def _context_length(model: Any) -> int | None:
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
