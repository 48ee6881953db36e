"""Opponent-shaping and Stackelberg gradient updates (the SPG family).

Every function here works on plain differentiable losses: agent ``i`` *minimises*
``losses[i]``, a scalar tensor that may depend on every agent's parameters. The SPG
trainer builds those losses as policy-gradient surrogates over the joint likelihood of
the sampled actions, so their cross-derivatives are the score-function estimates of
the true ones; the tests use small games whose derivatives are known in closed form.

Notation (Letcher et al., 2019, "Stable Opponent Shaping"): ``xi_i = grad_i L_i`` is
the simultaneous gradient; for a leader ``l`` and a follower ``f``

- ``chi_l = (grad_l grad_f L_f)^T grad_f L_l``: the opponent-shaping term (how the
  leader changes the follower's step, applied to the leader's loss);
- ``(H_o xi)_l = (grad_f grad_l L_l) xi_f``: the look-ahead term (the leader's loss
  after the follower's naive step).

Variants:

- ``spg`` / ``pspg``: the Stackelberg gradient of the leader,
  ``xi_l - (grad_l grad_f L_f)^T (H_ff + rho I)^{-1} grad_f L_l`` with
  ``H_ff = grad_f^2 L_f``, whose inverse-Hessian-vector product is approximated with
  the Nyström method (:func:`nystrom_ihvp`).
- ``lola`` / ``pola``: the inverse Hessian is replaced by the follower's learning rate
  ``alpha_f`` times the identity: ``xi_l - alpha_f chi_l`` (minus
  ``alpha_f (H_o xi)_l`` too with ``additional_lola_term``).
- ``sos`` / ``psos``: ``xi_0 - p alpha chi`` with ``xi_0 = xi - alpha H_o xi`` and the
  coefficient ``p`` chosen by the SOS rule (:func:`sos_coefficient`).

Followers (agents that lead nobody) follow their simultaneous gradient. Each leader
shapes each of its followers (every agent in a later group of the Stackelberg
sequence) directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

SPG_VARIANTS = ("spg", "pspg", "lola", "pola", "sos", "psos")
"""The variants of the SPG trainer; the ``p`` variants use the clipped PPO gain."""


def _flat(tensors: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflat(vector: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    out, start = [], 0
    for t in like:
        out.append(vector[start : start + t.numel()].view_as(t))
        start += t.numel()
    return out


def _grad(
    output: Tensor, params: Sequence[Tensor], *, create_graph: bool = True
) -> Tensor:
    if not output.requires_grad:
        # constant in every parameter (e.g. a first derivative that no parameter
        # of the other agent reaches, taken without a graph): its derivative is 0
        return torch.cat([torch.zeros_like(p).reshape(-1) for p in params])
    grads = torch.autograd.grad(
        output,
        list(params),
        retain_graph=True,
        create_graph=create_graph,
        allow_unused=True,
    )
    return _flat(
        [
            torch.zeros_like(p) if g is None else g
            for g, p in zip(grads, params, strict=True)
        ]
    )


def nystrom_ihvp(
    loss: Tensor,
    params: Sequence[Tensor],
    vector: Tensor,
    *,
    rank: int,
    rho: float,
    generator: torch.Generator | None = None,
    grad: Tensor | None = None,
) -> Tensor:
    """Approximate ``(H + rho I)^{-1} v`` for ``H`` the Hessian of ``loss``.

    The Hessian is approximated by the Nyström method from ``rank`` of its columns,
    chosen uniformly at random: ``H ~ C W^+ C^T`` with ``C = H[:, S]`` and
    ``W = H[S, S]``; the inverse of ``rho I + C W^+ C^T`` applied to ``v`` then
    follows from the Woodbury identity,
    ``v / rho - C (rho W + C^T C)^{-1} C^T v / rho``. The result is exact when
    ``rank`` columns span the Hessian's column space (e.g. ``rank`` equal to the
    number of parameters).

    Parameters
    ----------
    loss : Tensor
        Scalar whose Hessian with respect to ``params`` is inverted.
    params : Sequence[Tensor]
        The parameters (requiring grad).
    vector : Tensor
        Flat vector ``v`` of the parameters' total size.
    rank : int
        Number of Hessian columns sampled (capped at the number of parameters).
    rho : float
        Damping ``rho > 0``.
    generator : torch.Generator, optional
        Random generator choosing the columns.
    grad : Tensor, optional
        ``grad loss`` already computed with ``create_graph=True``.

    Returns
    -------
    Tensor
        The flat approximate inverse-Hessian-vector product (detached).
    """
    if rho <= 0:
        raise ValueError(f"rho must be positive, got {rho}")
    flat_grad = _grad(loss, params) if grad is None else grad
    n = flat_grad.numel()
    k = max(1, min(rank, n))
    # drawn where the generator lives (the loss seeds a CPU one, which CUDA's
    # randperm refuses), so the columns are the same on every device; only their
    # indices are used
    device = generator.device if generator is not None else flat_grad.device
    index = torch.randperm(n, generator=generator, device=device)[:k]
    # The Hessian is symmetric, so row i of it is column i: grad of (grad_i loss).
    columns = torch.stack(
        [_grad(flat_grad[i], params, create_graph=False) for i in index.tolist()],
        dim=1,
    ).detach()  # C: (n, k)
    w = columns[index]  # W = H[S, S]: (k, k)
    v = vector.detach()
    inner = rho * w + columns.T @ columns
    # W may be singular: the pseudo-inverse of the (symmetric) inner matrix, by its
    # eigendecomposition, truncating eigenvalues below the dtype's precision. Not
    # `torch.linalg.lstsq`: its default CPU driver (gelsy, QR with pivoting) returned
    # different solutions for the same ill-conditioned input, even within one
    # process, which made spg / pspg runs irreproducible; and its only CUDA driver
    # assumes full rank.
    inner_pinv = torch.linalg.pinv(inner, hermitian=True)
    return (v - columns @ (inner_pinv @ (columns.T @ v))) / rho


def sos_coefficient(
    xi: Tensor,
    xi_0: Tensor,
    shaping: Tensor,
    *,
    scaling_factor: float,
    threshold_factor: float,
) -> float:
    """The SOS coefficient ``p`` (Letcher et al., 2019, Algorithm 1).

    Parameters
    ----------
    xi : Tensor
        The simultaneous gradient (flat, all agents).
    xi_0 : Tensor
        The look-ahead gradient ``(I - alpha H_o) xi``.
    shaping : Tensor
        The opponent-shaping term already scaled by the learning rate,
        ``alpha chi``.
    scaling_factor : float
        ``a`` in the paper, in (0, 1).
    threshold_factor : float
        ``b`` in the paper, in (0, 1).
    """
    inner = float(torch.dot(-shaping, xi_0))
    if inner >= 0:
        p1 = 1.0
    else:
        p1 = min(1.0, -scaling_factor * float(torch.dot(xi_0, xi_0)) / inner)
    xi_norm_sq = float(torch.dot(xi, xi))
    p2 = xi_norm_sq if xi_norm_sq < threshold_factor**2 else 1.0
    return min(p1, p2)


def followers_of(sequence: Sequence[Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """Map each agent of a Stackelberg sequence to every agent in a later group."""
    followers: dict[str, tuple[str, ...]] = {}
    for position, group in enumerate(sequence):
        later = tuple(name for g in sequence[position + 1 :] for name in g)
        for name in group:
            followers[name] = later
    return followers


def stackelberg_update(
    variant: str,
    losses: Mapping[str, Tensor],
    params: Mapping[str, Sequence[Tensor]],
    sequence: Sequence[Sequence[str]],
    learning_rates: Mapping[str, float],
    *,
    ihvp_rank: int = 5,
    ihvp_rho: float = 0.1,
    sos_scaling_factor: float = 0.5,
    sos_threshold_factor: float = 0.1,
    additional_lola_term: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, list[Tensor]]:
    """Compute every agent's update direction (a gradient to descend) for a variant.

    Parameters
    ----------
    variant : str
        One of :data:`SPG_VARIANTS`. The ``p`` variants differ from their partners
        only in the losses the trainer passes in (clipped PPO gain), so here ``pspg``
        behaves as ``spg``, ``pola`` as ``lola`` and ``psos`` as ``sos``.
    losses : Mapping[str, Tensor]
        Each agent's scalar loss, differentiable in every agent's parameters.
    params : Mapping[str, Sequence[Tensor]]
        Each agent's parameters.
    sequence : Sequence[Sequence[str]]
        The Stackelberg sequence: groups of agents, leaders first.
    learning_rates : Mapping[str, float]
        Each agent's learning rate (``alpha_f`` of a follower in LOLA and SOS).
    ihvp_rank, ihvp_rho : int, float
        Nyström rank and damping for ``spg`` / ``pspg``.
    sos_scaling_factor, sos_threshold_factor : float
        ``a`` and ``b`` of the SOS rule.
    additional_lola_term : bool
        Whether LOLA includes the look-ahead term ``-alpha H_o xi``.
    generator : torch.Generator, optional
        Random generator for the Nyström column choice.

    Returns
    -------
    dict[str, list[Tensor]]
        Per agent, one detached tensor per parameter (same shapes), to be written to
        ``param.grad`` before an optimiser step.
    """
    if variant not in SPG_VARIANTS:
        raise ValueError(f"unknown SPG variant {variant!r}; valid: {SPG_VARIANTS}")
    base = {"pspg": "spg", "pola": "lola", "psos": "sos"}.get(variant, variant)
    agents = [name for group in sequence for name in group]
    missing = set(losses) ^ set(agents)
    repeated = sorted({name for name in agents if agents.count(name) > 1})
    if missing or repeated:
        details = [f"mismatch: {sorted(missing)}"] if missing else []
        details += [f"named twice: {repeated}"] if repeated else []
        raise ValueError(
            f"the Stackelberg sequence {sequence} must name every agent exactly once; "
            + "; ".join(details)
        )
    followers = followers_of(sequence)

    # grads[i][j] = grad_j L_i, kept differentiable for second derivatives.
    grads: dict[str, dict[str, Tensor]] = {
        i: {j: _grad(losses[i], params[j]) for j in agents} for i in agents
    }
    xi = {i: grads[i][i].detach() for i in agents}
    shaping = {i: torch.zeros_like(xi[i]) for i in agents}  # alpha chi (or SPG term)
    look_ahead = {i: torch.zeros_like(xi[i]) for i in agents}  # alpha H_o xi

    for leader in agents:
        for follower in followers[leader]:
            follower_own = grads[follower][follower]  # grad_f L_f (differentiable)
            leader_on_follower = grads[leader][follower]  # grad_f L_l
            if base == "spg":
                multiplier = nystrom_ihvp(
                    losses[follower],
                    params[follower],
                    leader_on_follower.detach(),
                    rank=ihvp_rank,
                    rho=ihvp_rho,
                    generator=generator,
                    grad=follower_own,
                )
                scale = 1.0
            else:
                multiplier = leader_on_follower.detach()
                scale = learning_rates[follower]
            # (grad_l grad_f L_f)^T m  ==  grad_l (grad_f L_f . m)
            chi = _grad(
                torch.dot(follower_own, multiplier), params[leader], create_graph=False
            )
            shaping[leader] += scale * chi.detach()
            if base != "spg" and (base == "sos" or additional_lola_term):
                # (grad_f grad_l L_l) xi_f  ==  grad_l (grad_f L_l . xi_f)
                h_o_xi = _grad(
                    torch.dot(leader_on_follower, xi[follower]),
                    params[leader],
                    create_graph=False,
                )
                look_ahead[leader] += scale * h_o_xi.detach()

    if base == "sos":
        flat_xi = torch.cat([xi[i] for i in agents])
        flat_xi_0 = torch.cat([xi[i] - look_ahead[i] for i in agents])
        flat_shaping = torch.cat([shaping[i] for i in agents])
        p = sos_coefficient(
            flat_xi,
            flat_xi_0,
            flat_shaping,
            scaling_factor=sos_scaling_factor,
            threshold_factor=sos_threshold_factor,
        )
        update = {i: xi[i] - look_ahead[i] - p * shaping[i] for i in agents}
    else:
        update = {i: xi[i] - look_ahead[i] - shaping[i] for i in agents}

    return {i: _unflat(update[i], list(params[i])) for i in agents}
