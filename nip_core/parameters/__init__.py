"""The experiment's hyper-parameters: one validated tree of attrs classes.

>>> from nip_core.parameters import HyperParameters
>>> hyper_params = HyperParameters(
...     scenario="graph_isomorphism",
...     trainer="vanilla_ppo",
...     dataset="eru10000",
...     agents={"verifier": {"num_gnn_layers": 2}, "prover": {"d_gnn": 128}},
...     rl={"num_iterations": 100},
... )  # doctest: +SKIP
>>> hyper_params.rl.num_iterations  # doctest: +SKIP
100

See ``docs/parameters.md``. Nothing in this package imports torch.
"""

from nip_core.parameters.agents import (
    DEFAULT_AGENT_KEY,
    AgentParameters,
    AgentsParameters,
    LrFactors,
    RandomAgentParameters,
)
from nip_core.parameters.base import (
    BaseHyperParameters,
    SubParameters,
    get_path,
    parameters_class,
)
from nip_core.parameters.base_run import (
    BaseRunParameters,
    BaseRunType,
    base_run_preserve,
    preserved_paths,
)
from nip_core.parameters.converter import (
    converter,
    structure,
    structure_agents,
    unstructure,
)
from nip_core.parameters.hyper_parameters import (
    CORE_FIELD_NAMES,
    ZERO_KNOWLEDGE_AGENTS,
    HyperParameters,
    is_path_like_dataset,
)
from nip_core.parameters.message_regression import MessageRegressionParameters
from nip_core.parameters.migrations import (
    SCHEMA_VERSION,
    ParameterMigrationWarning,
    version_key,
)
from nip_core.parameters.trainers import (
    ReinforceParameters,
    RlTrainerParameters,
    SoloAgentParameters,
)
from nip_core.parameters.update_schedule import (
    AgentUpdateSchedule,
    AlternatingPeriodicUpdateSchedule,
    ConstantUpdateSchedule,
    ContiguousPeriodicUpdateSchedule,
)
from nip_core.parameters.validation import ValueProblem, nonfinite_allowed

AgentsParams = AgentsParameters
"""The seed API's short name for :class:`AgentsParameters`."""

__all__ = [
    "CORE_FIELD_NAMES",
    "DEFAULT_AGENT_KEY",
    "SCHEMA_VERSION",
    "ZERO_KNOWLEDGE_AGENTS",
    "AgentParameters",
    "AgentUpdateSchedule",
    "AgentsParameters",
    "AgentsParams",
    "AlternatingPeriodicUpdateSchedule",
    "BaseHyperParameters",
    "BaseRunParameters",
    "BaseRunType",
    "ConstantUpdateSchedule",
    "ContiguousPeriodicUpdateSchedule",
    "HyperParameters",
    "LrFactors",
    "MessageRegressionParameters",
    "ParameterMigrationWarning",
    "RandomAgentParameters",
    "ReinforceParameters",
    "RlTrainerParameters",
    "SoloAgentParameters",
    "SubParameters",
    "ValueProblem",
    "base_run_preserve",
    "converter",
    "get_path",
    "is_path_like_dataset",
    "nonfinite_allowed",
    "parameters_class",
    "preserved_paths",
    "structure",
    "structure_agents",
    "unstructure",
    "version_key",
]
