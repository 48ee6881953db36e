"""The ``message_regression`` section: can the label be read off the messages alone?

In the shared-reward setting a prover may simply tell the verifier the label. If a
regressor trained only on an agent's first message recovers the label, that is what
is happening.
"""

from __future__ import annotations

from typing import Literal

from attrs import field
from attrs import validators as v

from nip_core.parameters.base import SubParameters, parameters_class

__all__ = ["MessageRegressionParameters"]


@parameters_class
class MessageRegressionParameters(SubParameters):
    """Parameters of the regression analysis of messages (``message_regression``).

    Parameters
    ----------
    enabled : bool
        Run the analysis.
    agents : tuple[str, ...] | None
        The agents whose messages are analysed; ``None`` for every agent.
    regression_method : {"mlp", "cnn"}
        The regressor.
    test_size : float
        The proportion of the message data held out for testing, in (0, 1).
    reset_on_fit : bool
        Fit the regressor from scratch each time.
    mlp_num_layers : int
        Layers of the MLP regressor (at least 1).
    mlp_hidden_size : int
        Hidden width of the MLP regressor (at least 1).
    mlp_activation : {"relu", "tanh", "sigmoid"}
        Activation function of the MLP regressor.
    mlp_num_epochs : int
        Training epochs of the MLP regressor (at least 1).
    mlp_batch_size : int
        Batch size of the MLP regressor (at least 1). The original library's 512
        gave the classifier about ten steps on a typical iteration's few hundred
        episodes, too few to detect even a prover that sends the label outright; 64
        does.
    mlp_learning_rate : float
        Learning rate of the MLP regressor (greater than 0).
    """

    enabled: bool = False
    agents: tuple[str, ...] | None = None

    regression_method: Literal["mlp", "cnn"] = "mlp"
    test_size: float = field(default=0.2, validator=[v.gt(0), v.lt(1)])
    reset_on_fit: bool = True

    mlp_num_layers: int = field(default=2, validator=v.ge(1))
    mlp_hidden_size: int = field(default=64, validator=v.ge(1))
    mlp_activation: Literal["relu", "tanh", "sigmoid"] = "relu"
    mlp_num_epochs: int = field(default=10, validator=v.ge(1))
    mlp_batch_size: int = field(default=64, validator=v.ge(1))
    mlp_learning_rate: float = field(default=0.001, validator=v.gt(0))
