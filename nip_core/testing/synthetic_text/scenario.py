"""The synthetic text scenario: parameters, dataset and agent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nip_core.parameters import parameters_class
from nip_core.parameters.text import TextAgentParameters
from nip_core.text.agents import TextWholeAgent, TurnContext
from nip_core.text.data import TextDataset
from nip_core.text.parsing import describe_spectrum

__all__ = [
    "DATASET_SIZES",
    "SyntheticTextAgent",
    "SyntheticTextAgentParameters",
    "SyntheticTextDataset",
]

DATASET_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"train": 8, "test": 4, "validation": 4},
    "small": {"train": 64, "test": 32, "validation": 32},
}
"""Datapoints per split of each named dataset."""


@parameters_class
class SyntheticTextAgentParameters(TextAgentParameters):
    """Agents of the synthetic text scenario.

    Parameters
    ----------
    model_name : str
        The model (``scripted`` on the test server).
    """

    model_name: str = "scripted"

    @classmethod
    def construct_test_params(cls) -> SyntheticTextAgentParameters:
        return cls(num_invalid_generation_retries=3)


class SyntheticTextDataset(TextDataset):
    """Numbers, balanced between even and odd, fixed per split."""

    instance_keys = ("number",)

    def load_rows(self) -> Sequence[Mapping[str, Any]]:
        sizes = DATASET_SIZES.get(self.name)
        if sizes is None:
            raise self.dataset_not_found(
                f"known synthetic text datasets: {', '.join(DATASET_SIZES)}"
            )
        size = sizes[self.split]
        offset = {"train": 0, "test": 10_000, "validation": 20_000}[self.split]
        rng = np.random.default_rng(offset + size)
        rows = []
        for i in range(size):
            number = int(rng.integers(10, 9_999)) // 2 * 2 + (i % 2)
            rows.append({"number": number, "y": int(number % 2 == 0)})
        return rows


class SyntheticTextAgent(TextWholeAgent):
    """Prompts of the synthetic text scenario."""

    def system_prompt(self, context: TurnContext) -> str:
        number = context.datapoint["number"]
        words = self.agent_params.max_response_words
        if self.is_verifier:
            handler = self.protocol_handler
            return (
                f"You are the verifier. The claim is: the number {number} is even. "
                f"You may ask questions ({handler.max_verifier_questions} turns at "
                f"most) before you decide. To decide, end with 'Decision: ' and "
                f"{describe_spectrum(self.spectrum)}. Use at most {words} words."
            )
        stance = context.target_verdict
        side = "holds" if stance != 0 else "fails"
        return (
            f"You are a prover. The claim is: the number {number} is even. Argue "
            f"that the claim {side}. Use at most {words} words."
        )
