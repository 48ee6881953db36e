"""Built-in plugin of nip-core: the text world's parameter sections, the
``openai`` backend and the cheap rollout analysers.

Registered before installed plugins, through the same hooks. Light: the backend class
is given as a reference, so importing this module imports neither openai nor torch.
"""

from __future__ import annotations

from nip_core import hookimpl
from nip_core.records import ParameterSectionSpec, RolloutAnalyserSpec, TextBackendSpec


@hookimpl
def register_text_backends() -> list[TextBackendSpec]:
    return [
        TextBackendSpec(
            name="openai",
            backend_class="nip_core.text.openai_backend:OpenAiBackend",
            parameter_section="openai_backend",
            description=(
                "any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, OpenRouter): "
                "chat completions and fine-tuning jobs"
            ),
        )
    ]


@hookimpl
def register_rollout_analysers() -> list[RolloutAnalyserSpec]:
    module = "nip_core.text.analysis"
    return [
        RolloutAnalyserSpec(
            name="message_lengths",
            analyser_class=f"{module}:MessageLengthAnalyser",
            description="per agent: words and characters of its messages",
        ),
        RolloutAnalyserSpec(
            name="decisions",
            analyser_class=f"{module}:DecisionAnalyser",
            description="accept / reject / no-verdict rates and the verdict's round",
        ),
        RolloutAnalyserSpec(
            name="invalid_responses",
            analyser_class=f"{module}:InvalidResponseAnalyser",
            description="per agent: turns invalid after every retry, turns retried",
        ),
    ]


@hookimpl
def register_parameter_sections() -> list[ParameterSectionSpec]:
    from nip_core.parameters.text import (
        OpenAiBackendParameters,
        TextBackendParameters,
        TextRlParameters,
    )

    return [
        ParameterSectionSpec(
            name="text_rl",
            parameters_class=TextRlParameters,
            description="The staged text trainer: iterations, rollouts, tests, "
            "fine-tune data",
        ),
        ParameterSectionSpec(
            name="text_backend",
            parameters_class=TextBackendParameters,
            description="Text agents' default backend, concurrency, retries, timeouts",
        ),
        ParameterSectionSpec(
            name="openai_backend",
            parameters_class=OpenAiBackendParameters,
            description="The openai backend: endpoint, API key variable, fine-tune "
            "options",
        ),
    ]
