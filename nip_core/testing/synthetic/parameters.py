"""Parameters of the synthetic scenario (no torch)."""

from __future__ import annotations

from attrs import field
from attrs import validators as v

from nip_core.parameters import AgentParameters, SubParameters, parameters_class


@parameters_class
class SyntheticParameters(SubParameters):
    """The synthetic scenario's data (section ``synthetic``).

    Parameters
    ----------
    num_bits : int
        The length of each bit-vector (at least 2).
    train_size : int
        Datapoints in the train split.
    test_size : int
        Datapoints in the test and validation splits.
    data_seed : int
        The seed the datapoints are generated from (independent of the run's seed,
        as a fixed dataset would be).
    bit_probability : float
        The probability of each bit before pairs are removed or planted.
    """

    num_bits: int = field(default=6, validator=v.ge(2))
    train_size: int = field(default=64, validator=v.ge(1))
    test_size: int = field(default=32, validator=v.ge(1))
    data_seed: int = field(default=0, validator=v.ge(0))
    bit_probability: float = field(default=0.4, validator=[v.ge(0), v.le(1)])


@parameters_class
class SyntheticAgentParameters(AgentParameters):
    """An agent of the synthetic scenario: a small MLP.

    Parameters
    ----------
    d_hidden : int
        The width of the body's hidden layers (its output has the experiment's
        ``d_representation``, the same for every agent).
    num_layers : int
        The number of hidden layers of the body.
    include_round : bool
        Give the body a one-hot encoding of the round.
    """

    d_hidden: int = field(default=16, validator=v.ge(1))
    num_layers: int = field(default=1, validator=v.ge(1))
    include_round: bool = True

    @classmethod
    def construct_test_params(cls) -> SyntheticAgentParameters:
        """The smallest agent: width 4, one layer."""
        return cls(d_hidden=4, num_layers=1)
