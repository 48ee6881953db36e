"""The TensorDict keys of the tensor world, in one place.

Environment-level keys have batch shape ``(*batch,)`` (``batch = (num_envs,)`` when
stepping, ``(num_envs, steps)`` in collected rollouts). Agent-level keys sit under
``"agents"`` and add an agent dimension: ``(*batch, num_agents)``, agents in the order
of ``protocol_handler.agent_names``. Below, ``R`` = ``max_message_rounds``, ``C`` =
number of message channels, ``P`` = ``message_size``, ``M`` = the scenario's message
space shape and ``N`` = ``prod(M)``.
"""

from __future__ import annotations

AGENTS = "agents"
"""The sub-TensorDict holding per-agent entries."""

# --- observations (environment level) -----------------------------------------

ROUND = "round"
"""long ``(*batch,)``: the round about to be played (0-based)."""

SEED = "seed"
"""long ``(*batch,)``: the episode's seed in ``[0, 2**16)``, drawn at reset; protocols
with random turn orders (merlin_arthur) read it."""

MESSAGE_HISTORY = "message_history"
"""float ``(*batch, R, C, P, *M)``: one-hot messages per round, channel and position
(a sum when several active agents speak on one channel)."""

MESSAGE = "message"
"""float ``(*batch, C, P, *M)``: the latest message (zeros at the first round)."""

LINEAR_MESSAGE_HISTORY = "linear_message_history"
"""float ``(*batch, R, C, P, D)``, ``D = d_linear_message_space``: the linear message
space's history (only with ``include_linear_message_space``)."""

LINEAR_MESSAGE = "linear_message"
"""float ``(*batch, C, P, D)``: the latest linear message."""

DECISION_RESTRICTION = "decision_restriction"
"""int ``(*batch,)``: 0 = the verifier may decide anything, 1 = only continue, 2 = only
guess (accept or reject)."""

PRETRAINED_EMBEDDINGS = "pretrained_embeddings"
"""Sub-TensorDict ``(*batch,)``: one entry per pretrained model, its embedding."""

# --- observations (agent level) -----------------------------------------------

ACTIVE_MASK = "active_mask"
"""bool ``(*batch, A, C)`` under ``"agents"``: whether the agent speaks on the channel
this round (``protocol_handler.get_active_agents_mask_from_rounds_and_seed``)."""

DECISION_MASK = "decision_mask"
"""bool ``(*batch, A)`` under ``"agents"``: whether the agent's decision takes effect
this round (a verifier, on a round it may guess, from ``min_message_rounds - 1`` on,
that is not already done)."""

VALID_MESSAGE_MASK = "valid_message_mask"
"""bool ``(*batch, A, C, P, N)`` under ``"agents"``: the messages the agent may send
(the scenario's rule, e.g. graph isomorphism's provers pick a node of the graph opposite
the latest message; padding is invalid). Invalid messages get logit ``-inf``."""

# --- state --------------------------------------------------------------------

Y = "y"
"""long ``(*batch, 1)``: the label of the episode's datapoint."""

DATAPOINT_ID = "datapoint_id"
"""long ``(*batch,)``: the index of the episode's datapoint in its dataset."""

# --- actions (agent level, under "agents") ------------------------------------

ACTION = "action"
"""long ``(*batch, A, C*P + 1 [+ C*P])``: every choice of an agent packed into one
tensor: its messages (``C*P``, channel-major), its decision, then its linear messages
when the linear message space is on. The policy writes it beside the unpacked keys
below (which the environment reads); TorchRL losses take it as their one action key
(see :mod:`nip_core.scenario.distributions`)."""

MESSAGE_SELECTED = "message_selected"
"""long ``(*batch, A, C, P)``: the index in ``[0, N)`` of the message each agent
sends per channel and position (flattened message space)."""

DECISION = "decision"
"""long ``(*batch, A)``: 0 = reject, 1 = accept, 2 = continue."""

LINEAR_MESSAGE_SELECTED = "linear_message_selected"
"""long ``(*batch, A, C, P)``: the linear message, in ``[0, D)``."""

MAIN_MESSAGE_LOGITS = "main_message_logits"
"""float ``(*batch, A, C, P, N)``: the policy's message logits (before masking)."""

DECISION_LOGITS = "decision_logits"
"""float ``(*batch, A, 3)``: the policy's decision logits (before masking)."""

LINEAR_MESSAGE_LOGITS = "linear_message_logits"
"""float ``(*batch, A, C, P, D)``: the linear message logits."""

SAMPLE_LOG_PROB = "sample_log_prob"
"""float ``(*batch, A)`` under ``"agents"``: log-probability of the sampled action,
counting active agents, channels and decisions only."""

# --- other agent outputs (under "agents") -------------------------------------

VALUE = "value"
"""float ``(*batch, A, 1)``: the value heads' estimates (each head gives
``(*batch,)``; the combined value head adds the trailing 1 TorchRL expects)."""

SOLO_LOGITS = "solo_logits"
"""float ``(*batch, A, 2)``: the solo heads' logits for the label (reject, accept)."""

# --- reward and done ----------------------------------------------------------

REWARD = "reward"
"""float ``(*batch, A, 1)`` under ``"agents"``."""

DONE = "done"
"""bool ``(*batch,)`` at the root (the episode is over) and ``(*batch, A, 1)`` under
``"agents"`` (the agent is done)."""

TERMINATED = "terminated"
"""bool ``(*batch,)`` at the root: the episode ran out of rounds without a decision
(the verifier got ``verifier_terminated_penalty``). Under ``"agents"``,
``(*batch, A, 1)``: equal to the agent's ``done`` (every episode end is a true
termination, so value estimators must not bootstrap past it)."""
