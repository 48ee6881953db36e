"""The plugin's parameter section, ``template``.

Parameter classes are plain attrs classes: they must import without torch, because
nip builds and validates configurations before anything heavy is loaded.
"""

from __future__ import annotations

from typing import Literal

from attrs import field
from attrs import validators as v
from nip_core.parameters.base import SubParameters, parameters_class


@parameters_class
class TemplateParameters(SubParameters):
    """Parameters of the template plugin (``hyper_params.template``).

    Parameters
    ----------
    num_hidden_layers : int
        Hidden layers of the (imaginary) network this plugin would build.
    hidden_size : int
        Width of each hidden layer.
    activation : {"relu", "tanh"}
        Activation between layers.
    dropout : float
        Dropout probability, in [0, 1).
    """

    num_hidden_layers: int = field(default=2, validator=v.ge(0))
    hidden_size: int = field(default=16, validator=v.ge(1))
    activation: Literal["relu", "tanh"] = field(
        default="relu", validator=v.in_(("relu", "tanh"))
    )
    dropout: float = field(default=0.0, validator=[v.ge(0.0), v.lt(1.0)])
