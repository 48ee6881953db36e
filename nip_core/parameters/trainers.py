"""Core parameter sections read by trainers: ``rl``, ``solo_agent``, ``reinforce``.

Sections of trainers that live in plugins (``ppo``, ``spg``, ...) are declared and
registered by those plugins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

from attrs import field
from attrs import validators as v

from nip_core.errors import ConfigProblem
from nip_core.parameters.agents import LrFactors
from nip_core.parameters.base import SubParameters, parameters_class
from nip_core.parameters.base_run import base_run_preserve
from nip_core.parameters.validation import nonfinite_allowed

__all__ = ["ReinforceParameters", "RlTrainerParameters", "SoloAgentParameters"]

_positive_or_none = v.optional(v.ge(1))


def _clip_value_range(instance: object, attribute: object, value: object) -> None:
    if isinstance(value, float | int) and not isinstance(value, bool) and value < 0:
        raise ValueError("must be a non-negative number, true or false")


def frames_per_batch_problem(
    frames: int | None, steps: int, what: str, *, suggest_steps_setting: bool = True
) -> ConfigProblem | None:
    """The problem of an ``rl.frames_per_batch`` that is not a multiple of the
    ``steps`` each environment takes per iteration (``what`` says where they come
    from), with the nearest multiples to use; ``None`` when it is one (or unset)."""
    if frames is None or frames % steps == 0:
        return None
    below = frames // steps * steps
    nearest = " or ".join(str(n) for n in (below, below + steps) if n > 0)
    advice = f"use {nearest}"
    if suggest_steps_setting:
        advice += ", or set rl.steps_per_env_per_iteration"
    return ConfigProblem(
        "rl.frames_per_batch", f"must be a multiple of {what}; {advice}", frames
    )


@parameters_class
class RlTrainerParameters(SubParameters):
    """Parameters common to every reinforcement-learning trainer (section ``rl``).

    Parameters
    ----------
    frames_per_batch : int | None
        Frames (environment steps) sampled per training iteration. ``None``: enough
        for ``rollouts_per_iteration`` rollouts.
    rollouts_per_iteration : int | None
        With ``frames_per_batch`` unset, the rollouts sampled per iteration
        (``frames_per_batch = rollouts_per_iteration * steps_per_env_per_iteration``).
        ``None``: the size of the training set, so every datapoint appears once per
        iteration.
    steps_per_env_per_iteration : int | None
        Each batch is split across environments that each run this many steps (a new
        episode starts as soon as one ends). Must divide ``frames_per_batch``.
        ``None``: the protocol's ``max_message_rounds``.
    num_iterations : int
        Sampling-and-training iterations (at least 1).
    num_epochs : int
        Optimisation epochs per iteration (at least 1).
    minibatch_size : int
        Frames per optimisation step (at least 1).
    lr : float
        The base learning rate (at least 0); each agent's is this times its
        ``agent_lr_factor``.
    anneal_lr : bool
        Anneal the learning rate linearly to 0 over training.
    max_grad_norm : float
        Gradients are clipped to this norm (greater than 0; ``inf`` turns clipping
        off).
    loss_critic_type : {"l1", "l2", "smooth_l1"}
        The loss of the value function.
    clip_value : float | bool | None
        Clip the value prediction around the sampled value estimate: by this amount
        (a number), by the trainer's own clip epsilon (``True``: ``ppo.clip_epsilon``
        for PPO, ``reinforce.clip_epsilon`` for REINFORCE), or not at all
        (``False`` / ``None``).
    normalize_observations : bool
        Normalise the environment's observations.
    num_normalization_steps : int
        Steps of random actions run to estimate the observation mean and standard
        deviation (at least 1).
    gamma : float
        The discount factor, in [0, 1].
    lmbda : float
        The GAE lambda, in [0, 1].
    body_lr_factor_override : LrFactors | None
        When set, used instead of every agent's ``body_lr_factor``.
    use_shared_body : bool
        Whether the actor and the critic share one body (their learning-rate factors
        must then agree).
    num_test_iterations : int
        Iterations of the test loop, each sampling ``frames_per_batch`` frames (0
        turns testing off). Kept when re-running the tests of a base run.
    test_period : int | None
        Also test during training: before every iteration whose index is a multiple
        of this (iteration 0 included, so the untrained agents are measured), run the
        test loop and log its ``test_`` statistics with that iteration's metrics
        (and ``timing.test_s``, its time, which the iteration's timers leave out).
        Each such test starts from the test environment's state at the start of
        training and draws on random streams of its own, so it changes neither the
        training nor the final test: a run with it trains to the same agents, bit
        for bit, as one without. ``None``: test only after training. Needs
        ``num_test_iterations`` of at least 1.
    """

    retired_keys: ClassVar[Mapping[str, str]] = {
        "body_lr_factor": "the original library's key, which its 1.0 trainers did "
        "not read; set each agent's body_lr_factor, or rl.body_lr_factor_override "
        "to use one factor for every agent's body"
    }

    frames_per_batch: int | None = field(default=1000, validator=_positive_or_none)
    rollouts_per_iteration: int | None = field(
        default=None, validator=_positive_or_none
    )
    steps_per_env_per_iteration: int | None = field(
        default=None, validator=_positive_or_none
    )
    num_iterations: int = field(default=1000, validator=v.ge(1))

    num_epochs: int = field(default=4, validator=v.ge(1))
    minibatch_size: int = field(default=64, validator=v.ge(1))
    lr: float = field(default=0.003, validator=v.ge(0))
    anneal_lr: bool = False
    max_grad_norm: float = field(
        default=1.0,
        validator=v.gt(0),
        metadata=nonfinite_allowed("inf: no gradient clipping"),
    )
    loss_critic_type: Literal["l1", "l2", "smooth_l1"] = "smooth_l1"
    clip_value: float | bool | None = field(default=False, validator=_clip_value_range)
    normalize_observations: bool = True
    num_normalization_steps: int = field(default=1000, validator=v.ge(1))

    gamma: float = field(default=0.9, validator=[v.ge(0), v.le(1)])
    lmbda: float = field(default=0.95, validator=[v.ge(0), v.le(1)])

    body_lr_factor_override: LrFactors | None = None
    use_shared_body: bool = True

    num_test_iterations: int = field(
        default=10, validator=v.ge(0), metadata=base_run_preserve("rerun_tests")
    )
    test_period: int | None = field(default=None, validator=_positive_or_none)

    def consistency_problems(self) -> list[ConfigProblem]:
        problems = []
        frames, steps = self.frames_per_batch, self.steps_per_env_per_iteration
        if frames is not None and steps is not None and frames % steps != 0:
            problems.append(
                ConfigProblem(
                    "steps_per_env_per_iteration",
                    f"must divide frames_per_batch ({frames})",
                    steps,
                )
            )
        if self.test_period is not None and self.num_test_iterations == 0:
            problems.append(
                ConfigProblem(
                    "test_period",
                    "tests during training, so needs num_test_iterations of at "
                    "least 1 (it is 0); set rl.test_period=null to test not at all",
                    self.test_period,
                )
            )
        return problems

    @classmethod
    def construct_test_params(cls) -> RlTrainerParameters:
        """Tiny sampling and training loops."""
        return cls(
            frames_per_batch=8,
            num_iterations=2,
            num_epochs=1,
            minibatch_size=4,
            num_normalization_steps=4,
            num_test_iterations=1,
        )


@parameters_class
class SoloAgentParameters(SubParameters):
    """Parameters of supervised training of agents on their own (``solo_agent``).

    Used by the ``solo_agent`` trainer and to pre-train bodies when
    ``pretrain_agents`` is on.

    Parameters
    ----------
    num_epochs : int
        Epochs over the training set (at least 1).
    batch_size : int
        Datapoints per optimisation step (at least 1).
    learning_rate : float
        The learning rate (greater than 0).
    body_lr_factor_override : bool
        Train bodies at the agent's learning rate, ignoring ``body_lr_factor``.
    """

    num_epochs: int = field(default=100, validator=v.ge(1))
    batch_size: int = field(default=256, validator=v.ge(1))
    learning_rate: float = field(default=0.001, validator=v.gt(0))
    body_lr_factor_override: bool = False

    @classmethod
    def construct_test_params(cls) -> SoloAgentParameters:
        """One epoch of small batches."""
        return cls(num_epochs=1, batch_size=4)


@parameters_class
class ReinforceParameters(SubParameters):
    """Parameters of the REINFORCE trainer (section ``reinforce``).

    Parameters
    ----------
    use_advantage_and_critic : bool
        Train a critic and weight log-probabilities by the GAE advantage instead of
        the reward-to-go.
    clip_epsilon : float
        How far the critic's prediction may move from the value the rollout saw,
        when ``rl.clip_value`` is ``true`` (a number there is used instead); greater
        than 0.
    """

    use_advantage_and_critic: bool = False
    clip_epsilon: float = field(default=0.2, validator=v.gt(0))
