"""The policy and value operators of tensor RL trainers, from the combined parts."""

from __future__ import annotations

from typing import Any


def build_policy_and_value_operators(
    scenario_instance: Any,
    environment: Any,
    *,
    use_single_body: bool,
    use_critic: bool,
    include_linear_message_space: bool = False,
) -> tuple[Any, Any | None]:
    """Build ``(policy_operator, value_operator)``.

    The policy operator runs the combined (policy) body and policy head and samples
    the actions of every agent from
    :class:`~nip_core.scenario.distributions.NipActionDistribution`, writing
    ``("agents", "sample_log_prob")``. The value operator runs the combined (value)
    body and value head, writing ``("agents", "value")``; it is ``None`` without a
    critic. With a shared body both operators hold the same body module.
    """
    from tensordict.nn import TensorDictSequential

    from nip_core.scenario.distributions import build_policy_actor

    instance = scenario_instance
    if use_single_body:
        policy_body = value_body = instance.combined_body
    else:
        policy_body = instance.combined_policy_body
        value_body = instance.combined_value_body
    # run.agent_threads: a body read by one head runs that head in its tasks, and
    # separate policy and value bodies run in one threaded section
    if hasattr(policy_body, "chain") and (not use_single_body or not use_critic):
        policy_body.chain(instance.combined_policy_head)
    if use_critic and not use_single_body and hasattr(policy_body, "pair_with"):
        policy_body.pair_with(value_body)
        value_body.chain(instance.combined_value_head)
    policy_module = TensorDictSequential(policy_body, instance.combined_policy_head)
    policy_operator = build_policy_actor(
        policy_module, include_linear_message_space=include_linear_message_space
    )
    value_operator = None
    if use_critic:
        value_operator = TensorDictSequential(value_body, instance.combined_value_head)
    return policy_operator, value_operator
