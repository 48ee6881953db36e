"""The synthetic scenario's dataset, generated in memory from a seed."""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import torch
from tensordict import TensorDict

from nip_core.scenario.data import TensorDictDataset


def has_adjacent_ones(x: torch.Tensor) -> torch.Tensor:
    """Whether each bit-vector ``(..., n)`` holds two adjacent ones: bool ``(...)``."""
    x = x.bool()
    return (x[..., :-1] & x[..., 1:]).any(dim=-1)


class SyntheticDataset(TensorDictDataset):
    """Bit-vectors ``x`` (float ``(n,)``); ``y = 1`` iff ``x`` holds "11".

    Half the datapoints have each label. Negatives are random vectors with every
    pair broken; positives are such vectors with one pair planted at a random
    position. Everything comes from a generator seeded by ``synthetic.data_seed``,
    the dataset name and the split.
    """

    instance_keys: ClassVar[tuple[str, ...]] = ("x",)

    @property
    def section(self) -> Any:
        return self.hyper_params.synthetic

    @property
    def size(self) -> int:
        if self.split == "train":
            return int(self.section.train_size)
        return int(self.section.test_size)

    def cache_key_dict(self) -> dict[str, Any]:
        key = super().cache_key_dict()
        key.update(
            num_bits=int(self.section.num_bits),
            size=self.size,
            data_seed=int(self.section.data_seed),
            bit_probability=float(self.section.bit_probability),
        )
        return key

    def _generator(self) -> torch.Generator:
        text = f"{self.section.data_seed}:{self.name}:{self.split}"
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        generator = torch.Generator()
        generator.manual_seed(seed & ((1 << 63) - 1))
        return generator

    def build_tensor_dict(self) -> TensorDict:
        n, size = int(self.section.num_bits), self.size
        generator = self._generator()
        y = (torch.arange(size) % 2)[torch.randperm(size, generator=generator)]
        x = torch.rand(size, n, generator=generator) < float(
            self.section.bit_probability
        )
        for i in range(1, n):
            x[:, i] &= ~x[:, i - 1]
        starts = torch.randint(0, n - 1, (size,), generator=generator)
        rows = torch.nonzero(y == 1).squeeze(-1)
        x[rows, starts[rows]] = True
        x[rows, starts[rows] + 1] = True
        return TensorDict({"x": x.float(), "y": y.long()}, batch_size=[size])
