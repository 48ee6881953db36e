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
