"""Hook implementations of the transformers plugin (light: no torch, transformers or
TRL import here; the backend module is named by reference)."""

from __future__ import annotations

from nip_core import hookimpl
from nip_core.records import ParameterSectionSpec, TextBackendSpec


@hookimpl
def register_text_backends() -> list[TextBackendSpec]:
    return [
        TextBackendSpec(
            name="transformers",
            backend_class="nip_plugin_transformers.backend:TransformersBackend",
            parameter_section="transformers_backend",
            description=(
                "local Hugging Face models (default: SmolLM2-135M-Instruct, offline): "
                "batched generation, SFT / DPO fine-tuning with TRL and LoRA"
            ),
        )
    ]


@hookimpl
def register_parameter_sections() -> list[ParameterSectionSpec]:
    from nip_plugin_transformers.parameters import TransformersBackendParameters

    return [
        ParameterSectionSpec(
            name="transformers_backend",
            parameters_class=TransformersBackendParameters,
            description="The transformers backend: dtype, LoRA, fine-tuning and "
            "worker options",
        )
    ]
