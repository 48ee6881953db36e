"""Parameters of one graph isomorphism agent (imports without torch)."""

from __future__ import annotations

from typing import Literal

from attrs import field
from attrs import validators as v
from nip_core.parameters import AgentParameters, parameters_class
from nip_core.parameters.agents import LrFactors

ActivationFunction = Literal["relu", "tanh", "sigmoid", "gelu"]
ACTIVATION_FUNCTIONS: tuple[str, ...] = ("relu", "tanh", "sigmoid", "gelu")

_positive_int = v.and_(v.instance_of(int), v.ge(1))


@parameters_class
class GraphIsomorphismAgentParameters(AgentParameters):
    """Parameters of a graph isomorphism agent: a GIN + transformer body, MLP heads.

    Defaults are the original library's.

    Parameters
    ----------
    activation_function : {"relu", "tanh", "sigmoid", "gelu"}
        The non-linearity used throughout the agent.
    num_gnn_layers : int
        GIN layers.
    d_gnn : int
        Width of the GIN layers' outputs.
    d_gin_mlp : int
        Hidden width of each GIN layer's MLP.
    gnn_output_digits : int | None
        Round the GNN's output to this many decimal digits (``None``: no rounding).
    gnn_implementation : {"dense", "sparse"}
        How the GIN sums neighbours: ``dense``, a batched product with the padded
        adjacency (fastest for the paper's 7-11 nodes); ``sparse``, torch_geometric
        message passing over the edges (for graphs far larger and sparser). The same
        function and parameters either way.
    use_dual_gnn : bool
        Run a second GIN with all-zero node features beside the one reading the
        message history, and concatenate their outputs.
    num_heads : int
        Attention heads of the transformer.
    num_transformer_layers : int
        Transformer layers.
    d_transformer : int
        Width of the transformer.
    d_transformer_mlp : int
        Hidden width of the transformer's feed-forward layers.
    transformer_dropout : float
        Dropout in the transformer.
    d_node_selector : int
        Hidden width of the MLP choosing the node to send.
    num_node_selector_layers : int
        Layers of that MLP.
    d_decider : int
        Hidden width of the verifier's accept / reject / continue MLP.
    num_decider_layers : int
        Layers of that MLP.
    include_round_in_decider : bool
        Whether the decider sees the round number (one-hot).
    d_linear_message_selector : int
        Hidden width of the linear-message selector (linear message space).
    num_linear_message_selector_layers : int
        Layers of that MLP.
    d_value : int
        Hidden width of the value MLP.
    num_value_layers : int
        Layers of that MLP.
    include_round_in_value : bool
        Whether the value MLP sees the round number (one-hot).
    use_batch_norm : bool
        Batch normalisation of the pooled graph representations.
    noise_sigma : float
        Relative standard deviation of the Gaussian noise added to the pooled graph
        representations (the same noise for both graphs of a pair).
    use_pair_invariant_pooling : bool
        Pool the pair order-invariantly (sum and absolute difference of the two
        graph representations).
    gnn_lr_factor : LrFactors
        GNN learning rate relative to the body's, for the actor and the critic.
    """

    activation_function: ActivationFunction = field(
        default="tanh", validator=v.in_(ACTIVATION_FUNCTIONS)
    )

    num_gnn_layers: int = field(default=5, validator=_positive_int)
    d_gnn: int = field(default=16, validator=_positive_int)
    d_gin_mlp: int = field(default=64, validator=_positive_int)
    gnn_output_digits: int | None = field(
        default=None, validator=v.optional(v.and_(v.instance_of(int), v.ge(0)))
    )
    gnn_implementation: Literal["dense", "sparse"] = "dense"
    use_dual_gnn: bool = field(default=True, validator=v.instance_of(bool))

    num_heads: int = field(default=4, validator=_positive_int)
    num_transformer_layers: int = field(
        default=4, validator=v.and_(v.instance_of(int), v.ge(0))
    )
    d_transformer: int = field(default=16, validator=_positive_int)
    d_transformer_mlp: int = field(default=64, validator=_positive_int)
    transformer_dropout: float = field(default=0.0, validator=[v.ge(0), v.lt(1)])

    d_node_selector: int = field(default=16, validator=_positive_int)
    num_node_selector_layers: int = field(default=2, validator=_positive_int)

    d_decider: int = field(default=16, validator=_positive_int)
    num_decider_layers: int = field(default=2, validator=_positive_int)
    include_round_in_decider: bool = field(default=True, validator=v.instance_of(bool))

    d_linear_message_selector: int = field(default=16, validator=_positive_int)
    num_linear_message_selector_layers: int = field(default=2, validator=_positive_int)

    d_value: int = field(default=16, validator=_positive_int)
    num_value_layers: int = field(default=2, validator=_positive_int)
    include_round_in_value: bool = field(default=True, validator=v.instance_of(bool))

    use_batch_norm: bool = field(default=True, validator=v.instance_of(bool))
    noise_sigma: float = field(default=0.0, validator=v.ge(0))
    use_pair_invariant_pooling: bool = field(
        default=True, validator=v.instance_of(bool)
    )

    gnn_lr_factor: LrFactors = field(factory=LrFactors)

    def __attrs_post_init__(self) -> None:
        if self.d_transformer % self.num_heads:
            raise ValueError(
                f"d_transformer ({self.d_transformer}) must be a multiple of "
                f"num_heads ({self.num_heads})"
            )

    @classmethod
    def construct_test_params(cls) -> GraphIsomorphismAgentParameters:
        """The smallest agent: one GIN layer, one transformer layer, width-1 heads."""
        return cls(
            num_gnn_layers=1,
            d_gnn=1,
            d_gin_mlp=1,
            num_heads=2,
            num_transformer_layers=1,
            d_transformer=2,
            d_transformer_mlp=1,
            d_node_selector=1,
            num_node_selector_layers=1,
            d_decider=1,
            num_decider_layers=1,
            d_linear_message_selector=1,
            num_linear_message_selector_layers=1,
            d_value=1,
            num_value_layers=1,
        )
