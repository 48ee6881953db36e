"""Parameter sections of the PPO plugin: ``ppo``, ``vanilla_ppo`` and ``spg``.

These classes import without torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

from attrs import field
from attrs import validators as v

from nip_core.parameters.base import SubParameters, parameters_class

PpoLossType = Literal["clip", "kl_penalty"]
SpgVariant = Literal["spg", "pspg", "lola", "pola", "sos", "psos"]
IhvpVariant = Literal["nystrom"]


def _positive(instance, attribute, value):
    if value <= 0:
        raise ValueError(f"must be > 0, got {value!r}")


def _half_open_unit_interval(instance, attribute, value):
    # 0 would switch the SOS rule's shaping off whenever it opposes the look-ahead
    # (a) or never let its threshold test fire (b): the rule needs both in (0, 1]
    if not 0 < value <= 1:
        raise ValueError(f"must be in (0, 1], got {value!r}")


def _sequence(value):
    """Lists of lists of names (YAML, JSON) become tuples; anything else is left for
    the type check to refuse (a string would otherwise become one group per
    letter)."""
    if isinstance(value, list | tuple) and all(
        isinstance(group, list | tuple) for group in value
    ):
        return tuple(tuple(group) for group in value)
    return value


@parameters_class
class PpoParameters(SubParameters):
    """Parameters common to the PPO trainers (``vanilla_ppo``, and the ``p`` variants of
    ``spg``).

    Parameters
    ----------
    loss_type : {"clip", "kl_penalty"}
        The PPO objective: the clipped surrogate, or the adaptive KL-penalty one.
    clip_epsilon : float
        The clip range of the clipped objective.
    kl_target : float
        The target KL divergence of the KL-penalty objective.
    kl_beta : float
        The initial coefficient of the KL penalty.
    kl_decrement : float
        Factor applied to the coefficient when the KL is below ``kl_target / 1.5``.
    kl_increment : float
        Factor applied to the coefficient when the KL is above ``1.5 * kl_target``.
    critic_coef : float
        The weight of the critic loss.
    entropy_eps : float
        The weight of the entropy bonus.
    normalize_advantage : bool
        Whether advantages are normalised, per agent, in each minibatch.
    """

    loss_type: PpoLossType = field(
        default="clip", validator=v.in_(("clip", "kl_penalty"))
    )
    clip_epsilon: float = field(default=0.2, validator=_positive)
    kl_target: float = field(default=0.01, validator=_positive)
    kl_beta: float = field(default=1.0, validator=v.ge(0))
    kl_decrement: float = field(default=0.5, validator=_positive)
    kl_increment: float = field(default=2.0, validator=_positive)
    critic_coef: float = field(default=1.0, validator=v.ge(0))
    entropy_eps: float = field(default=0.001, validator=v.ge(0))
    normalize_advantage: bool = field(default=True, validator=v.instance_of(bool))


@parameters_class
class VanillaPpoParameters(SubParameters):
    """Parameters of the ``vanilla_ppo`` trainer beyond the ``ppo`` section.

    Parameters
    ----------
    log_kl_and_ess : bool
        Whether the KL divergence between the behaviour and the updated policy and the
        effective sample size of the importance weights are logged each iteration.
    """

    log_kl_and_ess: bool = field(default=True, validator=v.instance_of(bool))


@parameters_class
class SpgParameters(SubParameters):
    """Parameters of the ``spg`` trainer and its variants.

    Parameters
    ----------
    variant : {"spg", "pspg", "lola", "pola", "sos", "psos"}
        The update rule. ``spg``, ``lola`` and ``sos`` use the policy-gradient gain;
        ``pspg``, ``pola`` and ``psos`` the clipped PPO gain.
    stackelberg_sequence : tuple of tuples of agent names, optional
        Groups of agents, leaders first. ``None``: the verifiers lead and the other
        agents follow.
    additional_lola_term : bool
        Whether LOLA and POLA include the look-ahead term (the later form of LOLA).
    sos_scaling_factor : float
        ``a`` of the SOS rule, in (0, 1].
    sos_threshold_factor : float
        ``b`` of the SOS rule, in (0, 1].
    ihvp_variant : {"nystrom"}
        How the inverse-Hessian-vector product of ``spg`` / ``pspg`` is approximated.
    ihvp_num_iterations : int
        Iterations of iterative inverse-Hessian approximations (kept for
        compatibility; the Nyström method is direct).
    ihvp_rank : int
        The number of Hessian columns the Nyström approximation samples.
    ihvp_rho : float
        The damping added to the Hessian before inversion.
    """

    retired_keys: ClassVar[Mapping[str, str]] = {
        "sos_a_param": "the original library's name; use spg.sos_scaling_factor",
        "sos_b_param": "the original library's name; use spg.sos_threshold_factor",
    }

    variant: SpgVariant = field(
        default="psos", validator=v.in_(("spg", "pspg", "lola", "pola", "sos", "psos"))
    )
    stackelberg_sequence: tuple[tuple[str, ...], ...] | None = field(
        default=None, converter=_sequence
    )
    additional_lola_term: bool = field(default=True, validator=v.instance_of(bool))
    sos_scaling_factor: float = field(default=0.5, validator=_half_open_unit_interval)
    sos_threshold_factor: float = field(default=0.1, validator=_half_open_unit_interval)
    ihvp_variant: IhvpVariant = field(default="nystrom", validator=v.in_(("nystrom",)))
    ihvp_num_iterations: int = field(default=5, validator=v.ge(1))
    ihvp_rank: int = field(default=5, validator=v.ge(1))
    ihvp_rho: float = field(default=0.1, validator=_positive)
