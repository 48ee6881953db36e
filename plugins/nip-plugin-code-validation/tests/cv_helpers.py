"""The local OpenAI test server playing the plugin's scripted model
(:mod:`nip_plugin_code_validation.scripted`), and small parameters pointing the
``openai`` backend at it."""

from __future__ import annotations

from typing import Any

from nip_core.testing.openai_server import OpenAiTestServer

from nip_plugin_code_validation.scripted import responder


def code_server(**options: Any) -> OpenAiTestServer:
    options.setdefault("models", ["code-model"])
    options.setdefault("responder", responder)
    return OpenAiTestServer(**options)


def hyper_params_dict(protocol: str, base_url: str, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "scenario": "code_validation",
        "trainer": "synthetic_text_sft",
        "dataset": "test",
        "interaction_protocol": protocol,
        "agents": {
            "_default": {
                "model_name": "code-model",
                "num_invalid_generation_retries": 3,
                "max_response_words": 40,
            }
        },
        "text_rl": {
            "num_iterations": 1,
            "rollouts_per_iteration": 4,
            "num_test_rollouts": 4,
            "min_fine_tune_examples": 1,
        },
        "text_backend": {
            "max_concurrency": 4,
            "retry_initial_delay": 0.01,
            "retry_max_delay": 0.05,
            "request_timeout": 5.0,
            "fine_tune_poll_interval": 0.01,
        },
        "openai_backend": {"base_url": base_url},
        "nip_protocol": {"max_message_rounds": 3, "min_message_rounds": 1},
        "debate_protocol": {"max_message_rounds": 3, "min_message_rounds": 1},
        "mnip_protocol": {"max_message_rounds": 3, "min_message_rounds": 1},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base
