"""The core's representation value and solo heads, on the synthetic scenario's body."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from nip_core.scenario import keys as K
from nip_core.scenario.agents import CombinedSoloHead, CombinedValueHead, agent_view
from nip_core.scenario.heads import RepresentationSoloHead, RepresentationValueHead
from nip_core.testing.synthetic.agents import REPRESENTATION

D_REPRESENTATION = 4
MAX_ROUNDS = 3


class ValueHead(RepresentationValueHead):
    representation_key = REPRESENTATION


class SoloHead(RepresentationSoloHead):
    representation_key = REPRESENTATION


class WideMixin:
    """A scenario mixin giving the width its own way (first in the bases)."""

    @property
    def d_representation(self) -> int:
        return 6


class WideValueHead(WideMixin, ValueHead):
    pass


def head_params(**overrides: Any) -> SimpleNamespace:
    values: dict[str, Any] = dict(
        d_value=5,
        num_value_layers=2,
        include_round_in_value=True,
        d_decider=3,
        num_decider_layers=3,
        activation_function="tanh",
    )
    values.update(overrides)
    return SimpleNamespace(**values)


@pytest.fixture
def setup(synthetic_scenario):
    """The synthetic scenario's handler, settings and a reset environment whose
    body outputs are filled in, and hyper-parameters whose agents have the heads'
    parameters (the synthetic agents have none)."""
    hyper_params = synthetic_scenario.hyper_params("nip")
    settings = synthetic_scenario.settings()
    instance = synthetic_scenario.build(
        hyper_params, settings, roles=("body", "solo_head")
    )
    td = instance.train_environment.reset()
    td[K.ROUND] = torch.arange(td.batch_size[0]) % (MAX_ROUNDS + 1)
    instance.combined_body(td)

    handler = instance.protocol_handler

    def hyper(**overrides: Any) -> SimpleNamespace:
        agents = {name: head_params(**overrides) for name in handler.agent_names}
        return SimpleNamespace(agents=agents, d_representation=D_REPRESENTATION)

    return SimpleNamespace(handler=handler, settings=settings, td=td, hyper=hyper)


def view_for(setup, head):
    return agent_view(setup.td, head, head.agent_index, None)


def test_value_head_is_an_mlp_on_the_representation_and_the_round(setup) -> None:
    head = ValueHead(setup.hyper(), setup.settings, "verifier", setup.handler)
    assert head.in_keys == [K.ROUND, REPRESENTATION]
    assert head.out_keys == [K.VALUE]
    # the round after the last one is encoded too: one-hot size max rounds + 1
    assert head.round_one_hot_size == MAX_ROUNDS + 1
    view = view_for(setup, head)
    value = head(view)[K.VALUE]
    assert value.shape == setup.td.batch_size
    features = torch.cat(
        (view[REPRESENTATION], F.one_hot(view[K.ROUND], MAX_ROUNDS + 1).float()), -1
    )
    expected = head.value_mlp.mlp(features).squeeze(-1)
    torch.testing.assert_close(value, expected)


def test_value_head_without_the_round_ignores_it(setup) -> None:
    head = ValueHead(
        setup.hyper(include_round_in_value=False),
        setup.settings,
        "verifier",
        setup.handler,
    )
    assert head.env_level_in_keys == ()
    assert head.in_keys == [REPRESENTATION]
    view = view_for(setup, head)
    assert K.ROUND not in view.keys()
    first = head(view)[K.VALUE]
    view[K.ROUND] = torch.full(setup.td.batch_size, 2)
    torch.testing.assert_close(head(view)[K.VALUE], first)
    assert head.value_mlp.mlp[0].in_features == D_REPRESENTATION


def test_solo_head_gives_two_logits_from_the_representation(setup) -> None:
    head = SoloHead(setup.hyper(), setup.settings, "prover", setup.handler)
    assert head.in_keys == [REPRESENTATION]
    assert head.out_keys == [K.SOLO_LOGITS]
    view = view_for(setup, head)
    logits = head(view)[K.SOLO_LOGITS]
    assert logits.shape == (*setup.td.batch_size, 2)
    torch.testing.assert_close(logits, head.decider.mlp(view[REPRESENTATION]))


def test_state_dict_keys_and_shapes_are_those_checkpoints_hold(setup) -> None:
    hyper = setup.hyper()
    value = ValueHead(hyper, setup.settings, "verifier", setup.handler)
    assert {k: tuple(t.shape) for k, t in value.state_dict().items()} == {
        "value_mlp.mlp.0.weight": (5, D_REPRESENTATION + MAX_ROUNDS + 1),
        "value_mlp.mlp.0.bias": (5,),
        "value_mlp.mlp.2.weight": (1, 5),
        "value_mlp.mlp.2.bias": (1,),
    }
    solo = SoloHead(hyper, setup.settings, "verifier", setup.handler)
    assert {k: tuple(t.shape) for k, t in solo.state_dict().items()} == {
        "decider.mlp.0.weight": (3, D_REPRESENTATION),
        "decider.mlp.0.bias": (3,),
        "decider.mlp.2.weight": (3, 3),
        "decider.mlp.2.bias": (3,),
        "decider.mlp.4.weight": (2, 3),
        "decider.mlp.4.bias": (2,),
    }


def test_a_scenario_mixin_sets_the_width(setup) -> None:
    head = WideValueHead(setup.hyper(), setup.settings, "verifier", setup.handler)
    assert head.value_mlp.mlp[0].in_features == 6 + MAX_ROUNDS + 1


def test_orthogonal_initialisation_is_applied(setup) -> None:
    hyper = setup.hyper(
        use_orthogonal_initialisation=True, orthogonal_initialisation_gain=1.0
    )
    head = SoloHead(hyper, setup.settings, "verifier", setup.handler)
    for index in (0, 2, 4):
        layer = head.decider.mlp[index]
        assert not layer.bias.any()
        weight = layer.weight
        rows, cols = weight.shape
        gram = weight @ weight.T if rows <= cols else weight.T @ weight
        torch.testing.assert_close(gram, torch.eye(min(rows, cols)))


def test_heads_stack_in_the_combined_parts(setup) -> None:
    hyper = setup.hyper()
    names = setup.handler.agent_names
    args = (hyper, setup.settings)
    values = {name: ValueHead(*args, name, setup.handler) for name in names}
    solos = {name: SoloHead(*args, name, setup.handler) for name in names}
    td = setup.td.clone()
    CombinedValueHead(hyper, setup.settings, setup.handler, values)(td)
    CombinedSoloHead(hyper, setup.settings, setup.handler, solos)(td)
    batch = setup.td.batch_size[0]
    assert td[K.AGENTS, K.VALUE].shape == (batch, len(names), 1)
    assert td[K.AGENTS, K.SOLO_LOGITS].shape == (batch, len(names), 2)
    for index, name in enumerate(names):
        own = values[name](view_for(setup, values[name]))[K.VALUE]
        torch.testing.assert_close(td[K.AGENTS, K.VALUE][:, index, 0], own)


def test_a_head_without_a_representation_key_is_refused(setup) -> None:
    class Unnamed(RepresentationValueHead):
        pass

    with pytest.raises(TypeError, match="representation_key"):
        Unnamed(setup.hyper(), setup.settings, "verifier", setup.handler)


def test_the_core_heads_run_on_agent_threads_only_with_their_own_forward():
    """Their own forward draws no random numbers: they may run in their body's
    task (``run.agent_threads``); a subclass that overrides ``forward`` may not
    (it could add dropout) unless it says so itself."""

    class DropoutValueHead(ValueHead):
        def forward(self, tensordict):
            return super().forward(tensordict)

    class Vouched(DropoutValueHead):
        @property
        def concurrent_safe(self) -> bool:
            return True

    for cls, expected in (
        (ValueHead, True),
        (WideValueHead, True),
        (SoloHead, True),
        (DropoutValueHead, False),
        (Vouched, True),
    ):
        head = cls.__new__(cls)
        assert head.concurrent_safe is expected, cls.__name__
