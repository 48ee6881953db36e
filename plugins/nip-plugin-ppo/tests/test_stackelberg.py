"""The SPG-family update rules, checked against closed forms."""

import pytest
import torch

from nip_plugin_ppo.stackelberg import (
    followers_of,
    nystrom_ihvp,
    sos_coefficient,
    stackelberg_update,
)


def _quadratic(theta, a, b):
    return 0.5 * theta @ a @ theta + b @ theta


@pytest.mark.parametrize("n", [1, 3, 6])
def test_nystrom_full_rank_equals_closed_form(n):
    gen = torch.Generator().manual_seed(n)
    m = torch.randn(n, n, generator=gen, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(n, dtype=torch.float64)
    b = torch.randn(n, generator=gen, dtype=torch.float64)
    theta = torch.randn(n, dtype=torch.float64, generator=gen, requires_grad=True)
    v = torch.randn(n, dtype=torch.float64, generator=gen)
    rho = 0.3
    got = nystrom_ihvp(_quadratic(theta, a, b), [theta], v, rank=n, rho=rho)
    expected = torch.linalg.solve(a + rho * torch.eye(n, dtype=torch.float64), v)
    torch.testing.assert_close(got, expected)


def test_nystrom_low_rank_hessian_is_exact_with_enough_columns():
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(5, 2, generator=gen, dtype=torch.float64)
    a = u @ u.T  # rank 2, so any two generic columns span its column space
    theta = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    v = torch.randn(5, generator=gen, dtype=torch.float64)
    rho = 0.7
    got = nystrom_ihvp(
        _quadratic(theta, a, torch.zeros(5, dtype=torch.float64)),
        [theta],
        v,
        rank=2,
        rho=rho,
        generator=torch.Generator().manual_seed(3),
    )
    expected = torch.linalg.solve(a + rho * torch.eye(5, dtype=torch.float64), v)
    torch.testing.assert_close(got, expected)


def test_nystrom_is_deterministic_on_ill_conditioned_hessians():
    # A saturated tanh network: its Hessian is nearly singular, where LAPACK's
    # pivoted-QR least squares gave a different answer from one call to the next.
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)
    )
    x = torch.randn(256, 8) + 12.0
    params = list(net.parameters())
    n = sum(p.numel() for p in params)
    v = torch.randn(n)
    results, ballast = [], []
    for i in range(12):
        ballast.append(torch.empty(7 * i + 1))  # vary the allocations in between
        loss = net(x).pow(2).mean()
        results.append(
            nystrom_ihvp(
                loss,
                params,
                v,
                rank=40,
                rho=0.1,
                generator=torch.Generator().manual_seed(1),
            )
        )
    assert torch.isfinite(results[0]).all()
    for result in results[1:]:
        assert torch.equal(result, results[0])


def test_nystrom_rejects_non_positive_damping():
    theta = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="rho"):
        nystrom_ihvp((theta**2).sum(), [theta], torch.ones(2), rank=2, rho=0.0)


# A two-player game small enough to differentiate by hand. The leader (verifier)
# controls x, the follower (prover) y:
#   L_v = a x^2 / 2 + b x y + c y^2 / 2,    L_p = d y^2 / 2 + e x y
# With a..e = 1..5, x = 1, y = -1:
#   xi_v = a x + b y = -1,  xi_p = d y + e x = 1,  dL_v/dy = b x + c y = -1,
#   d2 L_p / dx dy = e = 5,  d2 L_p / dy2 = d = 4,  d2 L_v / dx dy = b = 2.
A, B, C, D, E = 1.0, 2.0, 3.0, 4.0, 5.0
ALPHA = 0.1  # the follower's learning rate
RHO = 0.5


def _game():
    x = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([-1.0], dtype=torch.float64, requires_grad=True)
    losses = {
        "verifier": (A * x**2 / 2 + B * x * y + C * y**2 / 2).sum(),
        "prover": (D * y**2 / 2 + E * x * y).sum(),
    }
    return losses, {"verifier": [x], "prover": [y]}


def _update(variant, **kwargs):
    losses, params = _game()
    out = stackelberg_update(
        variant,
        losses,
        params,
        (("verifier",), ("prover",)),
        {"verifier": 0.2, "prover": ALPHA},
        ihvp_rank=1,
        ihvp_rho=RHO,
        **kwargs,
    )
    return out["verifier"][0].item(), out["prover"][0].item()


@pytest.mark.parametrize("variant", ["spg", "pspg"])
def test_spg_leader_follows_stackelberg_gradient(variant):
    # xi_v - e (d + rho)^-1 dL_v/dy = -1 - 5 * (-1) / 4.5
    leader, follower = _update(variant)
    assert leader == pytest.approx(-1 + 5 / 4.5)
    assert follower == pytest.approx(1.0)


@pytest.mark.parametrize("variant", ["lola", "pola"])
def test_lola_update(variant):
    # xi_v - alpha (b xi_p + e dL_v/dy) = -1 - 0.1 * (2 - 5)
    leader, follower = _update(variant)
    assert leader == pytest.approx(-0.7)
    assert follower == pytest.approx(1.0)
    # Without the look-ahead term: xi_v - alpha e dL_v/dy = -1 + 0.5
    leader, _ = _update(variant, additional_lola_term=False)
    assert leader == pytest.approx(-0.5)


@pytest.mark.parametrize("variant", ["sos", "psos"])
def test_sos_update(variant):
    # xi_0 = (-1 - 0.1 * 2 * 1, 1) = (-1.2, 1); alpha chi = (-0.5, 0).
    # <-alpha chi, xi_0> = -0.6 < 0, so p1 = min(1, a * |xi_0|^2 / 0.6);
    # |xi|^2 = 2 > b^2, so p2 = 1.
    leader, follower = _update(variant, sos_scaling_factor=0.5)
    assert leader == pytest.approx(-1.2 + 0.5)  # p1 = min(1, 2.033) = 1
    leader, follower = _update(variant, sos_scaling_factor=0.1)
    p = 0.1 * 2.44 / 0.6
    assert leader == pytest.approx(-1.2 + p * 0.5)
    assert follower == pytest.approx(1.0)


def test_sos_coefficient_small_gradient_scales_down():
    xi = torch.tensor([0.01, 0.02])
    p = sos_coefficient(
        xi, xi, torch.tensor([0.0, 0.0]), scaling_factor=0.5, threshold_factor=0.1
    )
    assert p == pytest.approx(0.0005)


def test_followers_of_sequence():
    seq = (("verifier",), ("prover0", "prover1"), ("x",))
    assert followers_of(seq) == {
        "verifier": ("prover0", "prover1", "x"),
        "prover0": ("x",),
        "prover1": ("x",),
        "x": (),
    }


def test_sequence_must_name_every_agent():
    losses, params = _game()
    with pytest.raises(ValueError, match="every agent"):
        stackelberg_update("spg", losses, params, (("verifier",),), {"verifier": 1.0})


def test_sequence_naming_an_agent_twice_is_refused():
    # It used to be accepted: the last occurrence won, so (v, p, v) made the
    # prover lead the verifier (the verifier's direction came out as its plain
    # gradient -1, the prover's as a LOLA leader's, 4).
    losses, params = _game()
    with pytest.raises(ValueError, match=r"named twice: \['verifier'\]"):
        stackelberg_update(
            "lola",
            losses,
            params,
            (("verifier",), ("prover",), ("verifier",)),
            {"verifier": 0.2, "prover": ALPHA},
        )


@pytest.mark.parametrize("variant", ["spg", "lola", "sos"])
def test_follower_loss_constant_in_its_own_parameters(variant):
    # L_p = 5 x^2 does not depend on y: grad_y L_p has no graph, and every
    # second derivative through it is 0. It used to fail ("element 0 of tensors
    # does not require grad"); the leader follows xi_v = x + 2 y = -1.
    x = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([-1.0], dtype=torch.float64, requires_grad=True)
    losses = {"verifier": (x**2 / 2 + 2 * x * y).sum(), "prover": (5 * x**2).sum()}
    out = stackelberg_update(
        variant,
        losses,
        {"verifier": [x], "prover": [y]},
        (("verifier",), ("prover",)),
        {"verifier": 0.2, "prover": ALPHA},
        ihvp_rank=1,
        ihvp_rho=RHO,
    )
    assert out["verifier"][0].item() == -1.0
    assert out["prover"][0].item() == 0.0


# A four-agent game with several parameters per agent, non-quadratic losses (so
# every second derivative depends on the point) and its own learning rate per
# agent: each rule against an independent float64 computation.
_SIZES = {"verifier": 2, "prover0": 3, "prover1": 2, "judge": 2}
_LRS = {"verifier": 0.05, "prover0": 0.1, "prover1": 0.07, "judge": 0.03}


def _coefficients():
    gen = torch.Generator().manual_seed(0)
    n = sum(_SIZES.values())
    coefficients = {
        name: tuple(
            torch.randn(*shape, generator=gen, dtype=torch.float64)
            for shape in ((n, n), (n,), (n,))
        )
        for name in _SIZES
    }
    return coefficients, torch.randn(n, generator=gen, dtype=torch.float64)


def _four_agent_loss(coefficients, name, theta):
    a, b, c = coefficients[name]
    return (
        0.5 * theta @ a @ theta
        + b @ theta
        + (c * theta).pow(3).sum() / 6
        + torch.sin(theta).prod()
    )


def _slices():
    slices, start = {}, 0
    for name, size in _SIZES.items():
        slices[name] = slice(start, start + size)
        start += size
    return slices


def _four_agent_update(variant, sequence, **kwargs):
    coefficients, theta = _coefficients()
    slices = _slices()
    leaves = {k: theta[s].clone().requires_grad_(True) for k, s in slices.items()}
    full = torch.cat([leaves[k] for k in _SIZES])
    agents = [name for group in sequence for name in group]
    out = stackelberg_update(
        variant,
        {k: _four_agent_loss(coefficients, k, full) for k in agents},
        {k: [leaves[k]] for k in agents},
        sequence,
        {k: _LRS[k] for k in agents},
        ihvp_rank=100,
        **kwargs,
    )
    return {k: v[0] for k, v in out.items()}


def test_lola_is_the_first_order_look_ahead_gradient_with_two_followers():
    # Debate's shape: the verifier leads two provers. LOLA's leader gradient is
    # grad_v L_v(theta_v, theta_f - alpha_f xi_f(theta)) to first order in every
    # alpha_f: its value at alpha = 0 plus alpha_f times its alpha_f-derivative,
    # taken here by autograd through the look-ahead itself.
    coefficients, theta = _coefficients()
    slices = _slices()
    followers = ("prover0", "prover1")

    def leader_gradient(alphas):
        x = theta.clone().requires_grad_(True)
        shifted = x
        for alpha, f in zip(alphas, followers, strict=True):
            xi_f = torch.autograd.grad(
                _four_agent_loss(coefficients, f, x), x, create_graph=True
            )[0][slices[f]]
            step = torch.zeros_like(x).index_put(
                (torch.arange(slices[f].start, slices[f].stop),), alpha * xi_f
            )
            shifted = shifted - step
        loss = _four_agent_loss(coefficients, "verifier", shifted)
        return torch.autograd.grad(loss, x, create_graph=True)[0][slices["verifier"]]

    zero = torch.zeros(2, dtype=torch.float64)
    expected = leader_gradient(zero)
    expected = expected + torch.autograd.functional.jacobian(leader_gradient, zero) @ (
        torch.tensor([_LRS[f] for f in followers], dtype=torch.float64)
    )
    got = _four_agent_update("lola", (("verifier",), followers))
    torch.testing.assert_close(got["verifier"], expected.detach())
    for f in followers:  # followers follow their own gradient
        x = theta.clone().requires_grad_(True)
        xi_f = torch.autograd.grad(_four_agent_loss(coefficients, f, x), x)[0]
        torch.testing.assert_close(got[f], xi_f[slices[f]])


def test_spg_is_the_total_derivative_through_the_best_response():
    # The follower's loss is quadratic in its parameters y with a leader-dependent
    # linear term, L_p = y^T A y / 2 + y . b(x), so its best response
    # y*(x) = -A^{-1} b(x) is exact; at y = y*(x) the Stackelberg gradient is
    # d/dx L_v(x, y*(x)), taken here by autograd through the solve. (A full-rank
    # Nystrom sample and damping 1e-6, which moves the result by about 1e-6
    # relative: smaller damping loses digits to the Woodbury form's v / rho.)
    gen = torch.Generator().manual_seed(5)
    m = torch.randn(3, 3, generator=gen, dtype=torch.float64)
    a = m @ m.T + torch.eye(3, dtype=torch.float64)
    w = torch.randn(3, 2, generator=gen, dtype=torch.float64)
    u = torch.randn(5, generator=gen, dtype=torch.float64)

    def b(x):
        return w @ torch.sin(x) + w @ x**2

    def leader_loss(x, y):
        return torch.cos(x @ w.T @ y) + u[:2] @ x**3 + u[2:] @ y**2 + x.prod() * y.sum()

    x0 = torch.tensor([0.3, -0.7], dtype=torch.float64)
    expected = torch.autograd.grad(
        leader_loss(x := x0.clone().requires_grad_(True), -torch.linalg.solve(a, b(x))),
        x,
    )[0]
    x = x0.clone().requires_grad_(True)
    y = (-torch.linalg.solve(a, b(x0))).requires_grad_(True)
    out = stackelberg_update(
        "spg",
        {"verifier": leader_loss(x, y), "prover": 0.5 * y @ a @ y + y @ b(x)},
        {"verifier": [x], "prover": [y]},
        (("verifier",), ("prover",)),
        {"verifier": 1.0, "prover": 1.0},
        ihvp_rank=3,
        ihvp_rho=1e-6,
    )
    torch.testing.assert_close(out["verifier"][0], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["prover"][0], torch.zeros(3, dtype=torch.float64))


def _documented_update(variant, sequence, *, rho, a, b, additional_lola_term):
    """The rules as docs/trainers.md states them, from full float64 Hessians."""
    from torch.autograd.functional import hessian, jacobian

    coefficients, theta = _coefficients()
    slices = _slices()
    agents = [name for group in sequence for name in group]
    later = {
        name: [f for g in sequence[i + 1 :] for f in g]
        for i, group in enumerate(sequence)
        for name in group
    }
    grad = {
        k: jacobian(lambda t, k=k: _four_agent_loss(coefficients, k, t), theta)
        for k in agents
    }
    hess = {
        k: hessian(lambda t, k=k: _four_agent_loss(coefficients, k, t), theta)
        for k in agents
    }
    xi = {k: grad[k][slices[k]] for k in agents}
    shaping = {k: torch.zeros_like(xi[k]) for k in agents}
    look_ahead = {k: torch.zeros_like(xi[k]) for k in agents}
    base = variant.removeprefix("p") if variant != "pola" else "lola"
    for leader in agents:
        sl = slices[leader]
        for f in later[leader]:
            sf = slices[f]
            cross = hess[f][sf, sl]  # grad_l grad_f L_f, (n_f, n_l)
            leader_on_f = grad[leader][sf]  # grad_f L_l
            if base == "spg":
                h = hess[f][sf, sf] + rho * torch.eye(
                    sf.stop - sf.start, dtype=theta.dtype
                )
                shaping[leader] += cross.T @ torch.linalg.solve(h, leader_on_f)
            else:
                shaping[leader] += _LRS[f] * cross.T @ leader_on_f
                if base == "sos" or additional_lola_term:
                    look_ahead[leader] += _LRS[f] * hess[leader][sl, sf] @ xi[f]
    p = 1.0
    if base == "sos":
        flat_xi = torch.cat([xi[k] for k in agents])
        xi_0 = torch.cat([xi[k] - look_ahead[k] for k in agents])
        inner = float(-torch.cat([shaping[k] for k in agents]) @ xi_0)
        p1 = 1.0 if inner >= 0 else min(1.0, -a * float(xi_0 @ xi_0) / inner)
        norm_sq = float(flat_xi @ flat_xi)
        p = min(p1, norm_sq if norm_sq < b**2 else 1.0)
    return {k: xi[k] - look_ahead[k] - p * shaping[k] for k in agents}


@pytest.mark.parametrize(
    "sequence",
    [
        (("verifier",), ("prover0", "prover1")),
        (("verifier",), ("prover0",), ("judge",)),
        (("verifier", "judge"), ("prover0", "prover1")),
        (("verifier",), ("prover0",), ("prover1", "judge")),
    ],
)
@pytest.mark.parametrize("variant", ["pspg", "pola", "psos"])
@pytest.mark.parametrize(
    ("a", "b", "additional_lola_term"),
    [(0.5, 0.1, True), (0.01, 100.0, False)],  # the second: p = min(p1, |xi|^2)
)
def test_every_rule_on_multi_agent_sequences(
    variant, sequence, a, b, additional_lola_term
):
    options = dict(a=a, b=b, additional_lola_term=additional_lola_term, rho=0.3)
    expected = _documented_update(variant, sequence, **options)
    got = _four_agent_update(
        variant,
        sequence,
        ihvp_rho=0.3,
        sos_scaling_factor=a,
        sos_threshold_factor=b,
        additional_lola_term=additional_lola_term,
        generator=torch.Generator().manual_seed(1),
    )
    assert set(got) == set(expected)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-10, atol=1e-12)
