"""The synthetic scenario's environment."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase

from nip_core.scenario.environment import TensorDictEnvironment


class SyntheticEnvironment(TensorDictEnvironment):
    """Agents see the bit-vector ``x`` and the messages; a message is a position.

    Provers may only point at positions ``0 .. n - 2`` (the first bit of a pair);
    the verifier may point anywhere.
    """

    @property
    def num_bits(self) -> int:
        return int(self.hyper_params.synthetic.num_bits)

    @property
    def message_space_shape(self) -> tuple[int, ...]:
        return (self.num_bits,)

    def compute_valid_message_mask(self, env_td: TensorDictBase) -> torch.Tensor:
        shape = (
            *env_td.batch_size,
            self.num_agents,
            self.num_message_channels,
            self.message_size,
            self.num_messages,
        )
        valid = torch.ones(shape, dtype=torch.bool, device=self.device)
        provers = [
            index
            for index, name in enumerate(self.agent_names)
            if name in self.protocol_handler.prover_names
        ]
        valid[..., provers, :, :, self.num_bits - 1] = False
        return valid
