"""Message regression: can a datapoint's label be read off the messages an agent sends?

Under a shared reward a prover may simply tell the verifier the answer. To detect
this, each iteration a small classifier is fitted, per agent, to predict the label
``y`` from the messages *that agent sent* in each episode, and its accuracy on held
out episodes is logged as ``{agent}.message_regression_test_accuracy``. Accuracy near
1 means the agent's messages give the label away; near chance (the majority class
rate) means they carry no information about it.

(The original library fitted the classifier on the *incoming* message of the
agent's first active round, that is on what the other agents said; here the features
are the agent's own messages, on every round it spoke.)

Features of one episode for agent ``a``: the one-hot encoding of the message it
selected (``("agents", "message_selected")``, ``(*batch, A, C, P)``), at every
round, channel and position, set only where the agent was active
(``("agents", "active_mask")``, ``(*batch, A, C)``) and zero elsewhere, flattened to
a vector of ``R * C * P * N`` numbers (``R`` rounds, ``C`` channels, ``P`` message
positions, ``N`` possible messages). With ``linear_message_selected`` in the
rollout, its one-hot (``R * C * P * D``) is appended. Episodes in which the agent
never spoke are left out of its data.

The classifier (``message_regression`` section):

``mlp``
    ``mlp_num_layers`` linear layers with ``mlp_activation`` between them, hidden
    width ``mlp_hidden_size``; one layer is logistic regression.
``cnn``
    ``mlp_num_layers`` 1-d convolutions over the rounds (kernel 3, width
    ``mlp_hidden_size``), max-pooled over rounds, then a linear layer: it sees
    *when* a message was sent only locally, so it generalises across rounds.

Both train with Adam (``mlp_learning_rate``) on cross-entropy for
``mlp_num_epochs`` epochs of ``mlp_batch_size`` episodes. A fraction ``test_size``
of the episodes (at least one) is held out. Everything random (the split, the
initialisation, the batches) is seeded from the seed given and the iteration, inside
:func:`torch.random.fork_rng`, so running the analysis does not change the training
run's random stream.

How a trainer calls it::

    from nip_core.analysis.message_regression import MessageRegressor

    # once, when building the trainer
    regressor = MessageRegressor(
        hyper_params.message_regression, agent_names, seed=hyper_params.seed
    )
    # each iteration, after collecting ``rollout`` (batch (*env_batch, time))
    metrics.update(regressor.metrics(rollout, iteration))  # {} unless enabled
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs
import torch
from torch import nn

from nip_core.errors import NipConfigError
from nip_core.parameters.message_regression import MessageRegressionParameters
from nip_core.seeding import derive_seed

__all__ = [
    "METRIC_NAME",
    "EpisodeMessages",
    "MessageRegressor",
    "episode_message_features",
    "message_regression_accuracies",
]

METRIC_NAME = "{agent}.message_regression_test_accuracy"
"""The logged metric, per analysed agent."""

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}

_MESSAGE_SELECTED = ("agents", "message_selected")
_LINEAR_MESSAGE_SELECTED = ("agents", "linear_message_selected")
_ACTIVE_MASK = ("agents", "active_mask")
_DONE = ("next", "done")


def _get(td: Any, key: Any) -> torch.Tensor | None:
    try:
        return td.get(key, None)
    except KeyError:
        return None


@attrs.frozen(eq=False)
class EpisodeMessages:
    """Per-episode message features of one agent.

    Attributes
    ----------
    features : torch.Tensor
        float ``(episodes, R, F)``: per round, the one-hot messages the agent sent
        (``F = C * P * N``, plus ``C * P * D`` with linear messages).
    labels : torch.Tensor
        long ``(episodes,)``: each episode's label.
    """

    features: torch.Tensor
    labels: torch.Tensor


def _episode_ids(done: torch.Tensor) -> torch.Tensor:
    """Episode index per step of an ``(env, time)`` done mask, dense from 0."""
    done = done.long()
    within_row = torch.cumsum(done, dim=1) - done
    rows = torch.arange(done.shape[0], device=done.device).unsqueeze(1)
    raw = rows * (done.shape[1] + 1) + within_row
    return torch.unique(raw.reshape(-1), return_inverse=True)[1].reshape(done.shape)


def _size_from(rollout: Any, keys: Sequence[Any], selected: torch.Tensor) -> int:
    for key in keys:
        tensor = _get(rollout, key)
        if tensor is not None:
            return int(tensor.shape[-1])
    return int(selected.max().item()) + 1 if selected.numel() else 1


def _one_hot_sent(
    selected: torch.Tensor,
    active: torch.Tensor,
    episode: torch.Tensor,
    rounds: torch.Tensor,
    num_episodes: int,
    num_rounds: int,
    size: int,
) -> torch.Tensor:
    """``(episodes, R, C, P, size)`` one-hot of the messages sent where active."""
    _, _, channels, positions = selected.shape
    out = torch.zeros(
        num_episodes, num_rounds, channels, positions, size, device=selected.device
    )
    mask = active.unsqueeze(-1).expand_as(selected) & (rounds < num_rounds).reshape(
        *rounds.shape, 1, 1
    )
    env, time, channel, position = mask.nonzero(as_tuple=True)
    out[
        episode[env, time],
        rounds[env, time],
        channel,
        position,
        selected[env, time, channel, position].clamp(0, size - 1),
    ] = 1.0
    return out


def episode_message_features(
    rollout: Any,
    agent_names: Sequence[str],
    *,
    num_rounds: int | None = None,
    num_messages: int | None = None,
) -> dict[str, EpisodeMessages]:
    """Cut a rollout into episodes and encode the messages each agent sent.

    Parameters
    ----------
    rollout : TensorDictBase
        A collected rollout with batch shape ``(*env_batch, time)``, holding
        ``("agents", "message_selected")``, ``("agents", "active_mask")``, ``"y"``,
        ``"round"`` and ``("next", "done")`` (without it, each environment's row is
        one episode).
    agent_names : Sequence[str]
        The agents, in the order of the rollout's agent dimension.
    num_rounds : int | None
        ``R``; by default the round dimension of ``"message_history"``, else the
        largest round in the rollout plus one. Pass it to keep the feature size
        fixed across iterations.
    num_messages : int | None
        ``N``; by default the last dimension of ``("agents", "valid_message_mask")``
        or of the message logits, else the largest message sent plus one.

    Returns
    -------
    dict[str, EpisodeMessages]
        Per agent, its episodes (those in which it was active at least once).
    """
    time = rollout.shape[-1]
    flat = rollout.reshape(-1, time) if len(rollout.shape) > 1 else rollout.unsqueeze(0)
    selected = flat.get(_MESSAGE_SELECTED).long()
    envs = flat.shape[0]
    selected = selected.reshape(envs, time, len(agent_names), *selected.shape[-2:])
    active = flat.get(_ACTIVE_MASK).bool().reshape(envs, time, len(agent_names), -1)
    rounds = flat.get("round").long().reshape(envs, time)
    labels_per_step = flat.get("y").long().reshape(envs, time)
    done = _get(flat, _DONE)
    if done is None:
        done = torch.zeros(envs, time, dtype=torch.bool, device=selected.device)
    else:
        done = done.reshape(envs, time, -1).any(-1)
    episode = _episode_ids(done)
    num_episodes = int(episode.max().item()) + 1

    if num_rounds is None:
        history = _get(flat, "message_history")
        num_rounds = (
            int(history.shape[2])
            if history is not None
            else int(rounds.max().item()) + 1
        )
    if num_messages is None:
        num_messages = _size_from(
            flat,
            [("agents", "valid_message_mask"), ("agents", "main_message_logits")],
            selected,
        )
    linear = _get(flat, _LINEAR_MESSAGE_SELECTED)
    if linear is not None:
        linear = linear.long().reshape(selected.shape)
        linear_size = _size_from(flat, [("agents", "linear_message_logits")], linear)

    labels = torch.zeros(num_episodes, dtype=torch.long, device=selected.device)
    labels[episode.reshape(-1)] = labels_per_step.reshape(-1)

    result: dict[str, EpisodeMessages] = {}
    for index, name in enumerate(agent_names):
        agent_active = active[:, :, index]
        parts = [
            _one_hot_sent(
                selected[:, :, index],
                agent_active,
                episode,
                rounds,
                num_episodes,
                num_rounds,
                num_messages,
            )
        ]
        if linear is not None:
            parts.append(
                _one_hot_sent(
                    linear[:, :, index],
                    agent_active,
                    episode,
                    rounds,
                    num_episodes,
                    num_rounds,
                    linear_size,
                )
            )
        features = torch.cat(
            [p.reshape(num_episodes, num_rounds, -1) for p in parts], -1
        )
        spoke = torch.zeros(num_episodes, dtype=torch.bool, device=selected.device)
        spoke[episode[agent_active.any(-1)]] = True
        result[name] = EpisodeMessages(features=features[spoke], labels=labels[spoke])
    return result


class _RoundConvolution(nn.Module):
    """1-d convolutions over rounds, max-pooled, then a linear read-out."""

    def __init__(
        self,
        in_features: int,
        hidden: int,
        num_layers: int,
        activation: type[nn.Module],
        num_classes: int,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(num_layers):
            layers += [nn.Conv1d(width, hidden, kernel_size=3, padding=1), activation()]
            width = hidden
        self.convolutions = nn.Sequential(*layers)
        self.read_out = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, rounds, features) -> channels-first for Conv1d
        hidden = self.convolutions(x.transpose(1, 2))
        return self.read_out(hidden.amax(dim=-1))


def _build_model(
    params: MessageRegressionParameters,
    in_shape: tuple[int, int],
    num_classes: int,
) -> nn.Module:
    activation = _ACTIVATIONS[params.mlp_activation]
    rounds, features = in_shape
    if params.regression_method == "cnn":
        return _RoundConvolution(
            features,
            params.mlp_hidden_size,
            params.mlp_num_layers,
            activation,
            num_classes,
        )
    layers: list[nn.Module] = [nn.Flatten()]
    width = rounds * features
    for _ in range(params.mlp_num_layers - 1):
        layers += [nn.Linear(width, params.mlp_hidden_size), activation()]
        width = params.mlp_hidden_size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


class MessageRegressor:
    """Fits, per agent, a classifier of the label from the agent's own messages.

    Parameters
    ----------
    params : MessageRegressionParameters
        The ``message_regression`` section (classifier, test size, ...).
    agent_names : Sequence[str]
        The protocol's agents, in the order of the rollout's agent dimension.
        ``params.agents`` (when set) picks which of them are analysed.
    seed : int
        The experiment's seed; each fit derives its own from it, the agent and the
        iteration.
    num_classes : int
        The number of labels (2 for accept / reject).

    Raises
    ------
    NipConfigError
        When ``params.agents`` names an agent the protocol does not have.
    """

    def __init__(
        self,
        params: MessageRegressionParameters,
        agent_names: Sequence[str],
        *,
        seed: int = 0,
        num_classes: int = 2,
    ):
        self.params = params
        self.agent_names = tuple(agent_names)
        self.seed = seed
        self.num_classes = num_classes
        analysed = self.agent_names if params.agents is None else tuple(params.agents)
        unknown = [name for name in analysed if name not in self.agent_names]
        if unknown:
            raise NipConfigError(
                f"message_regression.agents names {', '.join(map(repr, unknown))}, "
                f"not an agent of the protocol ({', '.join(self.agent_names)})"
            )
        self.analysed_agents = analysed
        self._models: dict[str, tuple[tuple[int, int], nn.Module]] = {}

    def fit_score(self, rollout: Any, iteration: int = 0) -> dict[str, float]:
        """Fit each analysed agent's classifier and return its held-out accuracy.

        An agent with too few episodes to hold one out and train on another gets
        ``nan``.
        """
        data = episode_message_features(rollout, self.agent_names)
        scores: dict[str, float] = {}
        with torch.inference_mode(False), torch.enable_grad():
            for name in self.analysed_agents:
                seed = derive_seed(self.seed, f"message_regression:{name}:{iteration}")
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    scores[name] = self._fit_score_agent(name, data[name], seed)
        return scores

    def metrics(self, rollout: Any, iteration: int = 0) -> dict[str, float]:
        """The metrics to log (``{agent}.message_regression_test_accuracy``); empty
        when the section is not ``enabled``."""
        if not self.params.enabled:
            return {}
        return {
            METRIC_NAME.format(agent=name): score
            for name, score in self.fit_score(rollout, iteration).items()
        }

    def _model_for(self, name: str, in_shape: tuple[int, int]) -> nn.Module:
        kept = self._models.get(name)
        if kept is None or self.params.reset_on_fit or kept[0] != in_shape:
            kept = (in_shape, _build_model(self.params, in_shape, self.num_classes))
            self._models[name] = kept
        return kept[1]

    def _fit_score_agent(self, name: str, data: EpisodeMessages, seed: int) -> float:
        features = data.features.detach().clone().float()
        labels = data.labels.detach().clone()
        num = features.shape[0]
        num_test = math.ceil(num * self.params.test_size)
        if num_test < 1 or num - num_test < 1:
            return math.nan
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(num, generator=generator).to(features.device)
        test, train = order[:num_test], order[num_test:]

        model = self._model_for(name, (features.shape[1], features.shape[2]))
        model.to(features.device).train()
        optimiser = torch.optim.Adam(
            model.parameters(), lr=self.params.mlp_learning_rate
        )
        batch_size = self.params.mlp_batch_size
        for _ in range(self.params.mlp_num_epochs):
            shuffled = train[torch.randperm(len(train), generator=generator)]
            for start in range(0, len(shuffled), batch_size):
                batch = shuffled[start : start + batch_size]
                optimiser.zero_grad()
                loss = nn.functional.cross_entropy(
                    model(features[batch]), labels[batch]
                )
                loss.backward()
                optimiser.step()
        model.eval()
        with torch.no_grad():
            predicted = model(features[test]).argmax(-1)
        return float((predicted == labels[test]).float().mean().item())


def message_regression_accuracies(
    rollout: Any,
    agent_names: Sequence[str],
    params: MessageRegressionParameters,
    seed: int = 0,
    iteration: int = 0,
) -> dict[str, float]:
    """Fit fresh classifiers on one rollout; return the metrics to log.

    Runs whether or not ``params.enabled`` is set (the caller decides). For
    ``reset_on_fit=False`` across iterations keep a :class:`MessageRegressor`.

    Returns
    -------
    dict[str, float]
        ``{"{agent}.message_regression_test_accuracy": accuracy}`` per analysed
        agent (``params.agents``, or every agent).
    """
    regressor = MessageRegressor(params, agent_names, seed=seed)
    return {
        METRIC_NAME.format(agent=name): score
        for name, score in regressor.fit_score(rollout, iteration).items()
    }
