"""The scenario contract suite: checks every tensor scenario must pass.

A scenario plugin's tests subclass :class:`ScenarioContract` and say how to make
hyper-parameters for it::

    from nip_core.parameters import HyperParameters
    from nip_core.testing.contracts.scenario import ScenarioContract

    class TestMyScenarioContract(ScenarioContract):
        scenario_name = "my_scenario"

        def make_hyper_params(self, interaction_protocol, zero_knowledge=False):
            return HyperParameters(
                scenario="my_scenario",
                trainer="vanilla_ppo",
                dataset="tiny",
                interaction_protocol=interaction_protocol,
                protocol_common={"zero_knowledge": zero_knowledge},
                agents={"_default": MyAgentParameters.construct_test_params()},
                rl={"frames_per_batch": None, "rollouts_per_iteration": 4},
            )

If the scenario is not installed as a plugin (e.g. the plugin's own tests run from
a checkout), override the ``scenario_plugin`` fixture to register it with the
``register_plugin`` fixture.

The suite checks, for every protocol the scenario supports (and zero knowledge on
the protocols that allow it), the test protocol ``multi_channel_test`` included:

- ``torchrl.envs.utils.check_env_specs`` passes;
- reset gives fresh episodes of the declared shapes;
- a step writes the active agents' messages into the history at the current round
  and channel, advances the round, and resets finished episodes;
- the dataset round-trips through the processed-data cache;
- every registered agent part, and the combined parts, produce their declared keys
  with the right shapes;
- the random policy head acts uniformly over the valid messages;
- an agent made random (``is_random``) runs beside real agents: its body's
  outputs stack with theirs in the combined body, whatever it lacks of the real
  agents' parameters.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import torch
from tensordict import TensorDictBase

from nip_core.records import resolve_ref
from nip_core.scenario import keys as K
from nip_core.scenario.agents import (
    Agent,
    CombinedPolicyHead,
    CombinedValueHead,
    ConstantAgentValueHead,
    RandomAgentPolicyHead,
    agent_view,
    combine_parts,
)
from nip_core.scenario.distributions import NipActionDistribution
from nip_core.scenario.instance import ScenarioInstance
from nip_core.seeding import derive_seed

PART_ROLES_TO_CHECK: tuple[str, ...] = (
    "body",
    "policy_head",
    "value_head",
    "solo_head",
    "random_policy_head",
    "constant_value_head",
)
"""The part roles the suite builds when the scenario registers them."""


def supported_protocols(scenario_name: str, plugin_manager: Any = None) -> list[str]:
    """The protocols a tensor scenario supports (registered and steppable)."""
    if plugin_manager is None:
        from nip_core.plugins import get_plugin_manager

        plugin_manager = get_plugin_manager()
    spec = plugin_manager.scenarios[scenario_name]
    names = []
    for name, protocol in plugin_manager.protocols.items():
        if spec.data_world not in protocol.data_worlds:
            continue
        if (
            spec.supported_protocols is not None
            and name not in spec.supported_protocols
        ):
            continue
        names.append(name)
    return names


def zero_knowledge_protocols(
    scenario_name: str, plugin_manager: Any = None
) -> list[str]:
    """The supported protocols the zero-knowledge wrapper may wrap."""
    if plugin_manager is None:
        from nip_core.plugins import get_plugin_manager

        plugin_manager = get_plugin_manager()
    return [
        name
        for name in supported_protocols(scenario_name, plugin_manager)
        if plugin_manager.protocols[name].supports_zero_knowledge
    ]


def part_class(
    scenario_name: str, role: str, plugin_manager: Any = None
) -> type | None:
    """The scenario's registered class for a part role, or ``None``."""
    if plugin_manager is None:
        from nip_core.plugins import get_plugin_manager

        plugin_manager = get_plugin_manager()
    key = f"{scenario_name}/{role}"
    if key not in plugin_manager.agent_parts:
        return None
    return resolve_ref(plugin_manager.agent_parts[key].part_class)


def build_scenario_components(
    hyper_params: Any,
    settings: Any,
    *,
    roles: tuple[str, ...] = ("body", "policy_head", "value_head", "solo_head"),
    plugin_manager: Any = None,
) -> ScenarioInstance:
    """Build a tensor scenario's components directly from its registrations.

    A light stand-in for the experiment factory, for tests: the protocol handler,
    both datasets, both environments, every agent with the parts of ``roles`` (each
    agent seeded from ``hyper_params.seed`` and its name) and the combined parts.
    With no ``roles``, no agents are built.
    Random agents (``is_random``) get the ``random_policy_head`` and
    ``constant_value_head`` parts (falling back to the core's generic classes).
    Bodies are told which outputs their heads read, as the factory does.
    """
    from nip_core.protocols import build_protocol_handler

    if plugin_manager is None:
        from nip_core.plugins import get_plugin_manager

        plugin_manager = get_plugin_manager()
    spec = plugin_manager.scenarios[hyper_params.scenario]
    handler = build_protocol_handler(
        hyper_params, settings, plugin_manager=plugin_manager
    )
    dataset_class = resolve_ref(spec.dataset_class)
    train_dataset = dataset_class(hyper_params, settings, handler, split="train")
    test_dataset = dataset_class(hyper_params, settings, handler, split="test")
    environment_class = resolve_ref(spec.environment_class)
    train_environment = environment_class(
        hyper_params, settings, train_dataset, handler
    )
    test_environment = environment_class(hyper_params, settings, test_dataset, handler)

    fallbacks = {
        "random_policy_head": RandomAgentPolicyHead,
        "constant_value_head": ConstantAgentValueHead,
    }
    agents: dict[str, Agent] = {}
    for name in handler.agent_names if roles else ():
        torch.manual_seed(derive_seed(int(hyper_params.seed), name))
        is_random = bool(getattr(hyper_params.agents[name], "is_random", False))
        parts = {}
        for role in roles:
            # policy and value bodies are the scenario's body class
            class_role = "body" if role in ("policy_body", "value_body") else role
            if is_random and role == "policy_head":
                class_role = "random_policy_head"
            elif is_random and role == "value_head":
                class_role = "constant_value_head"
            cls = part_class(spec.name, class_role, plugin_manager)
            if cls is None:
                cls = fallbacks.get(class_role)
            if cls is None:
                raise KeyError(f"scenario {spec.name!r} registers no {class_role!r}")
            parts[role] = cls(hyper_params, settings, name, handler)
        agents[name] = Agent(
            agent_name=name, agent_params=hyper_params.agents[name], **parts
        )

    from nip_core.factory import restrict_body_outputs

    restrict_body_outputs(agents)
    combined = {
        f"combined_{role}": combine_parts(agents, role, hyper_params, settings, handler)
        for role in roles
    }
    return ScenarioInstance(
        train_dataset=train_dataset,
        test_dataset=test_dataset,
        protocol_handler=handler,
        agents=agents,
        train_environment=train_environment,
        test_environment=test_environment,
        **combined,
    )


def continue_actions(env: Any, env_td: TensorDictBase, generator: torch.Generator):
    """Fill ``env_td`` with random valid messages and "continue" decisions."""
    valid = env_td[K.AGENTS, K.VALID_MESSAGE_MASK].float()
    flat = valid.reshape(-1, valid.shape[-1])
    choice = torch.multinomial(flat, 1, generator=generator).reshape(valid.shape[:-1])
    env_td[K.AGENTS, K.MESSAGE_SELECTED] = choice
    env_td[K.AGENTS, K.DECISION] = torch.full(
        (*env_td.batch_size, env.num_agents), 2, dtype=torch.long
    )
    env_td[K.AGENTS, K.MAIN_MESSAGE_LOGITS] = torch.zeros(
        (*valid.shape,), dtype=torch.float
    )
    env_td[K.AGENTS, K.DECISION_LOGITS] = torch.zeros(
        (*env_td.batch_size, env.num_agents, 3), dtype=torch.float
    )
    if env.include_linear_message_space:
        env_td[K.AGENTS, K.LINEAR_MESSAGE_SELECTED] = torch.zeros_like(choice)
        env_td[K.AGENTS, K.LINEAR_MESSAGE_LOGITS] = torch.zeros(
            (*choice.shape, env.d_linear_message_space), dtype=torch.float
        )
    return env_td


class ScenarioContract:
    """The checks every tensor scenario must pass; subclass it in a test module.

    Class attributes
    ----------------
    scenario_name : str
        The scenario's registry key.
    protocols : tuple[str, ...] | None
        The protocols to check; ``None`` (default): every protocol the scenario
        supports.
    zero_knowledge : bool
        Also check the zero-knowledge version of the protocols that allow it.
    """

    scenario_name: ClassVar[str]
    protocols: ClassVar[tuple[str, ...] | None] = None
    zero_knowledge: ClassVar[bool] = True

    def make_hyper_params(
        self, interaction_protocol: str, zero_knowledge: bool = False
    ) -> Any:
        """Small hyper-parameters of the scenario for one protocol (implement it)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement make_hyper_params(interaction_"
            f"protocol, zero_knowledge=False) returning HyperParameters of "
            f"{getattr(self, 'scenario_name', '?')!r}"
        )

    # --- fixtures ---------------------------------------------------------------------

    @pytest.fixture
    def scenario_plugin(self) -> Iterator[None]:
        """Make the scenario available; override to register an uninstalled plugin."""
        yield None

    @pytest.fixture(autouse=True)
    def _test_protocols(self, scenario_plugin: Any) -> Iterator[None]:
        """Check the scenario with the test protocol ``multi_channel_test`` too
        (registered after the scenario, into the manager it was registered in)."""
        from nip_core.plugins import get_plugin_manager
        from nip_core.testing.protocols import (
            TEST_PROTOCOLS_PLUGIN,
            TEST_PROTOCOLS_PLUGIN_NAME,
        )

        manager = get_plugin_manager()
        if manager.has_plugin(TEST_PROTOCOLS_PLUGIN_NAME):
            yield None
            return
        manager.register(TEST_PROTOCOLS_PLUGIN, name=TEST_PROTOCOLS_PLUGIN_NAME)
        try:
            yield None
        finally:
            if manager.has_plugin(TEST_PROTOCOLS_PLUGIN_NAME):
                manager.unregister(TEST_PROTOCOLS_PLUGIN_NAME)

    @pytest.fixture
    def scenario_settings(self, tmp_path: Any) -> Any:
        """Settings writing data and caches under the test's temporary directory."""
        from nip_core.settings import ExperimentSettings

        return ExperimentSettings(
            device="cpu",
            data_dir=str(tmp_path / "data"),
            cache_dir=str(tmp_path / "cache"),
            runs_dir=str(tmp_path / "runs"),
            show_progress=False,
        )

    def _cases(self) -> list[tuple[str, bool]]:
        protocols = self.protocols
        if protocols is None:
            protocols = tuple(supported_protocols(self.scenario_name))
        cases = [(name, False) for name in protocols]
        if self.zero_knowledge:
            zk = set(zero_knowledge_protocols(self.scenario_name))
            cases += [(name, True) for name in protocols if name in zk]
        return cases

    def _build(self, protocol: str, zk: bool, settings: Any, roles=None) -> Any:
        hyper_params = self.make_hyper_params(protocol, zero_knowledge=zk)
        kwargs = {} if roles is None else {"roles": roles}
        return build_scenario_components(hyper_params, settings, **kwargs)

    def _each_case(self, settings: Any, roles=None) -> Iterator[tuple[str, Any]]:
        for protocol, zk in self._cases():
            label = f"{protocol}{' (zero knowledge)' if zk else ''}"
            yield label, self._build(protocol, zk, settings, roles)

    # --- environment ------------------------------------------------------------------

    def test_check_env_specs(self, scenario_plugin: Any, scenario_settings: Any):
        from torchrl.envs.utils import check_env_specs

        for label, instance in self._each_case(scenario_settings, roles=()):
            try:
                check_env_specs(instance.train_environment, seed=0)
            except Exception as error:  # re-raised with the protocol named
                raise AssertionError(f"check_env_specs failed for {label}") from error

    def test_reset_gives_fresh_episodes(
        self, scenario_plugin: Any, scenario_settings: Any
    ):
        for label, instance in self._each_case(scenario_settings, roles=()):
            env = instance.train_environment
            handler = instance.protocol_handler
            td = env.reset()
            B, A, C = env.num_envs, env.num_agents, env.num_message_channels
            assert td.batch_size == torch.Size([B]), label
            assert td[K.MESSAGE_HISTORY].shape == env.message_history_shape, label
            assert not td[K.MESSAGE_HISTORY].any(), label
            assert (td[K.ROUND] == 0).all(), label
            assert not td[K.DONE].any(), label
            assert td[K.AGENTS, K.ACTIVE_MASK].shape == (B, A, C), label
            expected_active = handler.get_active_agents_mask_from_rounds_and_seed(
                td[K.ROUND], td[K.SEED]
            )
            assert torch.equal(td[K.AGENTS, K.ACTIVE_MASK], expected_active), label
            valid = td[K.AGENTS, K.VALID_MESSAGE_MASK]
            assert valid.shape == (B, A, C, env.message_size, env.num_messages), label
            assert valid.any(-1).all(), f"{label}: an agent has no valid message"
            ids = td[K.DATAPOINT_ID]
            assert torch.equal(
                td[K.Y].squeeze(-1), instance.train_dataset.data["y"][ids]
            ), label

    def test_step_writes_messages_and_advances(
        self, scenario_plugin: Any, scenario_settings: Any
    ):
        generator = torch.Generator().manual_seed(0)
        for label, instance in self._each_case(scenario_settings, roles=()):
            env = instance.train_environment
            td = continue_actions(env, env.reset(), generator)
            active = td[K.AGENTS, K.ACTIVE_MASK]
            out = env.step(td.clone())
            nxt = out["next"]
            assert torch.equal(nxt[K.ROUND], td[K.ROUND] + 1), label
            one_hot = torch.nn.functional.one_hot(
                td[K.AGENTS, K.MESSAGE_SELECTED], env.num_messages
            ).float()
            expected = (one_hot * active[..., None, None]).sum(dim=1)
            expected = expected.reshape(nxt[K.MESSAGE].shape)
            assert torch.equal(nxt[K.MESSAGE], expected), label
            history = nxt[K.MESSAGE_HISTORY]
            assert torch.equal(history[:, 0], expected), label
            assert not history[:, 1:].any(), label
            for key in env.data_keys:
                assert torch.equal(nxt[key], td[key]), f"{label}: {key} changed"

    def test_finished_episodes_reset(
        self, scenario_plugin: Any, scenario_settings: Any
    ):
        generator = torch.Generator().manual_seed(1)
        for label, instance in self._each_case(scenario_settings, roles=()):
            env = instance.train_environment
            td = env.reset()
            for _ in range(env.max_message_rounds):
                td = continue_actions(env, td, generator)
                stepped, td = env.step_and_maybe_reset(td)
            # Everyone always continued, so every episode ran to its last round and
            # started again.
            assert stepped["next", K.DONE].all(), label
            assert (td[K.ROUND] == 0).all(), label
            assert not td[K.MESSAGE_HISTORY].any(), label
            assert not td[K.DONE].any(), label

    # --- data ------------------------------------------------------------------------

    def test_dataset_cache_round_trip(
        self, scenario_plugin: Any, scenario_settings: Any
    ):
        import attrs

        protocol, zk = self._cases()[0]
        hyper_params = self.make_hyper_params(protocol, zero_knowledge=zk)
        from nip_core.plugins import get_plugin_manager
        from nip_core.protocols import build_protocol_handler

        spec = get_plugin_manager().scenarios[self.scenario_name]
        dataset_class = resolve_ref(spec.dataset_class)
        handler = build_protocol_handler(hyper_params, scenario_settings)
        first = dataset_class(hyper_params, scenario_settings, handler, split="train")
        second = dataset_class(hyper_params, scenario_settings, handler, split="train")
        assert second.loaded_from_cache
        assert second.cache_key == first.cache_key
        assert (second.data == first.data).all()
        rebuilt_settings = attrs.evolve(scenario_settings, ignore_cache=True)
        rebuilt = dataset_class(hyper_params, rebuilt_settings, handler, split="train")
        assert not rebuilt.loaded_from_cache
        assert (rebuilt.data == first.data).all()
        assert torch.equal(first.data["id"], torch.arange(len(first)))

    # --- agent parts -----------------------------------------------------------------

    def test_parts_produce_declared_keys(
        self, scenario_plugin: Any, scenario_settings: Any
    ):
        for label, instance in self._each_case(scenario_settings):
            env = instance.train_environment
            td = env.reset()
            B, A = env.num_envs, env.num_agents
            C, P, N = env.num_message_channels, env.message_size, env.num_messages
            instance.combined_body(td)
            body_keys = instance.combined_body.out_keys
            for key in body_keys:
                assert td.get(key).shape[:2] == (B, A), f"{label}: {key}"
            for combined, expected in (
                (
                    instance.combined_policy_head,
                    {
                        (K.AGENTS, K.MAIN_MESSAGE_LOGITS): (B, A, C, P, N),
                        (K.AGENTS, K.DECISION_LOGITS): (B, A, 3),
                    },
                ),
                (instance.combined_value_head, {(K.AGENTS, K.VALUE): (B, A, 1)}),
                (instance.combined_solo_head, {(K.AGENTS, K.SOLO_LOGITS): (B, A, 2)}),
            ):
                out = combined(td.clone())
                assert set(expected) <= set(combined.out_keys), label
                for key, shape in expected.items():
                    assert tuple(out.get(key).shape) == shape, f"{label}: {key}"
                    assert torch.isfinite(out.get(key)).all(), f"{label}: {key}"
            # Each part on its own produces exactly its declared keys.
            for agent in instance.agents.values():
                for role, part in agent.parts.items():
                    if role.endswith("head"):
                        continue
                    view = agent_view(td, part, part.agent_index, None)
                    out = part(view)
                    assert set(part.out_keys) <= set(out.keys(True, True)), (
                        f"{label}: {agent.agent_name}.{role}"
                    )

    def test_rows_independent_parts_give_each_row_its_own_outputs(
        self, scenario_plugin: Any, scenario_settings: Any
    ):
        """A body or policy head that says ``rows_independent`` (training mode)
        gives some rows of a batch the outputs it gives them among all: the
        update may then run it on the rows where its agent's choices count."""
        for label, instance in self._each_case(scenario_settings):
            env = instance.train_environment
            td = env.reset()
            if env.num_envs < 2:
                continue
            rows = torch.arange(0, env.num_envs, 2)
            for module in (instance.combined_body, instance.combined_policy_head):
                module.train(True)
            instance.combined_body(td)
            for agent in instance.agents.values():
                for role in ("body", "policy_head"):
                    part = agent.parts.get(role)
                    if part is None or not part.rows_independent:
                        continue
                    view = agent_view(td, part, part.agent_index, None)
                    full = part(view)
                    some = part(view[rows])
                    where = f"{label}: {agent.agent_name}.{role}"
                    for key in part.out_keys:
                        value = full.get(key)
                        if not isinstance(value, torch.Tensor):
                            continue
                        close = torch.allclose(
                            some.get(key), value[rows], rtol=1e-4, atol=1e-5
                        )
                        assert close, (
                            f"{where} says rows_independent, but its {key!r} on "
                            "some rows differs from those rows' among all"
                        )

    def test_a_random_agent_runs_beside_real_ones(
        self, scenario_plugin: Any, scenario_settings: Any
    ):
        from nip_core.parameters import RandomAgentParameters

        for protocol, zk in self._cases():
            hyper_params = self.make_hyper_params(protocol, zero_knowledge=zk)
            probe = build_scenario_components(hyper_params, scenario_settings, roles=())
            names = probe.protocol_handler.agent_names
            for random_name in names:
                label = (
                    f"{protocol}{' (zero knowledge)' if zk else ''}, "
                    f"{random_name} random"
                )
                hyper_params = self.make_hyper_params(protocol, zero_knowledge=zk)
                hyper_params.agents[random_name] = RandomAgentParameters()
                instance = build_scenario_components(
                    hyper_params,
                    scenario_settings,
                    roles=("body", "policy_head", "value_head"),
                )
                td = instance.train_environment.reset()
                try:
                    instance.combined_body(td)
                    instance.combined_policy_head(td)
                    instance.combined_value_head(td)
                except Exception as error:  # re-raised with the case named
                    raise AssertionError(f"{label}: {error!r}") from error
                index = names.index(random_name)
                logits = td[K.AGENTS, K.MAIN_MESSAGE_LOGITS][:, index]
                assert torch.isfinite(logits).all(), label
                assert torch.isfinite(td[K.AGENTS, K.VALUE]).all(), label

    def test_random_agents_act_uniformly(
        self, scenario_plugin: Any, scenario_settings: Any
    ):
        for label, instance in self._each_case(scenario_settings, roles=()):
            env = instance.train_environment
            handler = instance.protocol_handler
            hyper_params = env.hyper_params
            random_class = (
                part_class(self.scenario_name, "random_policy_head")
                or RandomAgentPolicyHead
            )
            constant_class = (
                part_class(self.scenario_name, "constant_value_head")
                or ConstantAgentValueHead
            )
            heads = {
                name: random_class(hyper_params, env.settings, name, handler)
                for name in handler.agent_names
            }
            combined = CombinedPolicyHead(hyper_params, env.settings, handler, heads)
            td = combined(env.reset())
            dist = NipActionDistribution(
                td[K.AGENTS, K.MAIN_MESSAGE_LOGITS],
                td[K.AGENTS, K.DECISION_LOGITS],
                td[K.AGENTS, K.ACTIVE_MASK],
                td[K.AGENTS, K.DECISION_MASK],
                td[K.AGENTS, K.VALID_MESSAGE_MASK],
            )
            valid = td[K.AGENTS, K.VALID_MESSAGE_MASK]
            probs = dist.message_dist.probs
            expected = valid.float() / valid.sum(-1, keepdim=True)
            assert torch.allclose(probs, expected), label
            assert torch.allclose(
                dist.decision_dist.probs,
                torch.full_like(dist.decision_dist.probs, 1 / 3),
            ), label
            values = {
                name: constant_class(hyper_params, env.settings, name, handler)
                for name in handler.agent_names
            }
            value_td = CombinedValueHead(hyper_params, env.settings, handler, values)(
                td
            )
            value = value_td[K.AGENTS, K.VALUE]
            assert torch.equal(value, torch.full_like(value, constant_class.value)), (
                label
            )
