import numpy as np
import pytest
from scipy.optimize import root

from mixscale.core.predict import Optimum, predict_continuous, predict_discrete
from mixscale.errors import InputError


def opt(tokens, domains=("a", "b")):
    return Optimum("x", list(domains), np.array(tokens, dtype=float))


REMARK1 = [  # (total, share of a in %) from the paper's Remark 1
    (1300, 69),
    (3500, 77),
    (9700, 84),
    (27500, 88),
    (79300, 92),
    (231500, 94),
    (681700, 96),
]


def test_remark1_discrete_numbers():
    optima = [opt([100, 100]), opt([300, 200])]
    expected_a = [900, 2700, 8100, 24300, 72900, 218700, 656100]
    for (total, share), a in zip(REMARK1, expected_a, strict=True):
        out = predict_discrete(optima, total)
        assert out["tokens"]["a"] == pytest.approx(a)
        assert out["total_tokens"] == pytest.approx(total)
        assert round(100 * out["weights"]["a"]) == share


def test_discrete_overshoots_and_says_where_it_stopped():
    out = predict_discrete([opt([100, 100]), opt([300, 200])], 1000)
    assert out["total_tokens"] == pytest.approx(1300)
    assert out["overshoot"] == pytest.approx(0.3)
    assert out["target_tokens"] == 1000


def test_continuous_hits_the_target_exactly_and_agrees_on_remark1_scales():
    optima = [opt([100, 100]), opt([300, 200])]
    for total, _ in REMARK1:
        out = predict_continuous(optima, total)
        assert out["total_tokens"] == pytest.approx(total, rel=1e-12)
        disc = predict_discrete(optima, total)
        assert out["weights"]["a"] == pytest.approx(disc["weights"]["a"], rel=1e-9)
    mid = predict_continuous(optima, 1000)
    assert mid["total_tokens"] == pytest.approx(1000, rel=1e-12)
    assert 2 < mid["k"] < 3


def true_optimum(beta, gamma, total):
    """Independent: Newton on the KKT system beta_i gamma_i N_i^-(gamma_i+1) = mu, sum N = total."""
    m = len(beta)

    def eqs(x):
        logn, logmu = x[:m], x[m]
        kkt = np.log(beta * gamma) - (gamma + 1) * logn - logmu
        return np.append(kkt, np.log(np.exp(logn).sum()) - np.log(total))

    x0 = np.append(np.full(m, np.log(total / m)), 0.0)
    sol = root(eqs, x0, method="hybr", tol=1e-14)
    assert np.max(np.abs(eqs(sol.x))) < 1e-12  # converged, whatever hybr's flag says
    return np.exp(sol.x[:m])


@pytest.mark.parametrize("seed", range(3))
def test_separable_world_prediction_is_exact_at_10x_and_100x(seed):
    rng = np.random.default_rng(seed)
    m = 5
    beta = rng.uniform(1, 50, m)
    gamma = rng.uniform(0.1, 0.8, m)
    n1, n2 = 1e8, 3e8
    optima = [opt(true_optimum(beta, gamma, n), "abcde") for n in (n1, n2)]
    for target in (10 * n2, 100 * n2):
        pred = predict_continuous(optima, target)
        truth = true_optimum(beta, gamma, target)
        got = np.array([pred["tokens"][d] for d in "abcde"])
        assert np.max(np.abs(got / truth - 1)) < 1e-6


def test_three_scales_fit_and_leave_one_out():
    beta = np.array([5.0, 20.0, 9.0])
    gamma = np.array([0.2, 0.5, 0.35])
    optima = [opt(true_optimum(beta, gamma, n), "abc") for n in (1e7, 4e7, 1.6e8)]
    out = predict_continuous(optima, 1e10)
    truth = true_optimum(beta, gamma, 1e10)
    got = np.array([out["tokens"][d] for d in "abc"])
    assert np.max(np.abs(got / truth - 1)) < 1e-6
    assert out["fit_rmse_log_tokens"] < 1e-9
    assert out["leave_one_out"][0]["max_abs_weight_error"] < 1e-9
    # a scale that breaks the log-linear law shows up in the leave-one-out error
    bent = [optima[0], optima[1], opt(true_optimum(beta, gamma, 1.6e8) * [1.3, 0.8, 1.0], "abc")]
    assert predict_continuous(bent, 1e10)["leave_one_out"][0]["max_abs_weight_error"] > 0.01


def test_bad_inputs():
    optima = [opt([100, 100]), opt([300, 200])]
    with pytest.raises(InputError, match="only goes up from the largest DDO scale"):
        predict_discrete(optima, 400)
    with pytest.raises(InputError, match="domains differ"):
        predict_continuous([opt([100, 100]), opt([300, 200], "ac")], 1000)
    with pytest.raises(InputError, match="same scale"):
        predict_continuous([opt([100, 100]), opt([150, 50])], 1000)
