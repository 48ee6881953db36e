"""Built-in plugin of nip-core: the ``solo_agent`` and ``reinforce`` trainers.

Registered before installed plugins, through the same hook. Trainer classes are given
as references, so this module does not import torch.
"""

from __future__ import annotations

from nip_core import hookimpl
from nip_core.records import TrainerSpec


@hookimpl
def register_trainers() -> list[TrainerSpec]:
    return [
        TrainerSpec(
            name="solo_agent",
            trainer_class="nip_core.trainers.solo_agent:SoloAgentTrainer",
            data_world="tensor",
            trainer_type="solo_agent",
            required_parts=("body", "solo_head"),
            parameter_sections=("solo_agent",),
            description="each agent alone, supervised on the labels (cross-entropy)",
        ),
        TrainerSpec(
            name="reinforce",
            trainer_class="nip_core.trainers.reinforce:ReinforceTrainer",
            data_world="tensor",
            trainer_type="rl",
            required_parts=("body", "policy_head"),
            parameter_sections=("rl", "reinforce"),
            config_problems="nip_core.trainers.checks:reinforce_config_problems",
            description=(
                "REINFORCE: -log pi x reward-to-go, or x GAE advantage with a critic"
            ),
        ),
    ]
