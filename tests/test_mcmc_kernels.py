"""MCMC kernels: exact checks on Gaussians (affine maps), detailed balance, reversibility, bad input."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scoresample import AnalyticScore, Gaussian, Target
from scoresample.mcmc import HMC, MALA, RWM, ULA, AnnealedLangevin, Noise, UnderdampedLangevin
from scoresample.processes import VE
from scoresample.testing import strategies as sst
from validation.suites.langevin_bias import kernel_map, problem, stationary
from validation.suites.mcmc_exactness import (HMCFullFirstKick, HMCNoKinetic, MALANoCorrection, hmc_balance_residual,
                                              leapfrog_log_det, leapfrog_reversibility, mala_balance_residual,
                                              mixture_problem)

F64 = torch.float64


def std_normal(d):
    return Gaussian(torch.zeros(d, dtype=F64), 1.0)


# ---- exact laws on Gaussians -----------------------------------------------------------------
def test_ula_stationary_law_closed_form():
    tgt = problem()
    lam, U = torch.linalg.eigh(tgt.cov)
    h = 0.4
    m, S = stationary(ULA(tgt, h))
    closed = (U * (lam / (1.0 - h / (2.0 * lam)))) @ U.T
    torch.testing.assert_close(S, closed, rtol=1e-10, atol=0)
    torch.testing.assert_close(m, tgt.mean, rtol=1e-12, atol=1e-12)


def test_ula_wrong_noise_scale_is_detected():
    """Mutation: sqrt(h) instead of sqrt(2h) noise changes the stationary covariance."""
    tgt = std_normal(2)

    class BadULA(ULA):
        def _step(self, state, noise, **params):
            return super()._step(state, Noise(noise.normal / math.sqrt(2.0)), **params)

    _, S = stationary(BadULA(tgt, 0.1))
    assert abs(S[0, 0].item() - 1.0 / (1.0 - 0.05)) > 0.1


@pytest.mark.parametrize("gamma", [0.5, 2.0])
@pytest.mark.parametrize("h", [0.1, 0.7])
def test_baoab_position_marginal_exact(h, gamma):
    tgt = problem()
    m, S = stationary(UnderdampedLangevin(tgt, h, friction=gamma))
    d = tgt.dim
    torch.testing.assert_close(S[:d, :d], tgt.cov, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(m[:d], tgt.mean, rtol=1e-10, atol=1e-12)


def test_obabo_position_variance_closed_form():
    _, S = stationary(UnderdampedLangevin(std_normal(1), 0.5, scheme="obabo"))
    assert S[0, 0].item() == pytest.approx(1.0 / (1.0 - 0.25 / 4.0), rel=1e-12)
    assert S[0, 0].item() == pytest.approx(1.066667, abs=1e-6)
    assert S[1, 1].item() == pytest.approx(1.0, rel=1e-12)


def test_underdamped_kernel_is_affine_and_probe_refuses_mixture():
    from scoresample import GaussianMixture
    A, c, B = kernel_map(UnderdampedLangevin(std_normal(2), 0.3))
    assert A.shape == (4, 4) and B.shape == (4, 2)
    mix = GaussianMixture(torch.tensor([0.5, 0.5], dtype=F64), torch.tensor([[-2.0, 0.0], [2.0, 0.0]], dtype=F64),
                          torch.eye(2, dtype=F64).expand(2, 2, 2))
    with pytest.raises(ValueError, match="not affine"):
        kernel_map(ULA(mix, 0.1))


def test_annealed_langevin_law_matches_scalar_recursion():
    """NCSN steps a_i = eps sigma_i^2 / sigma_L^2 on N(mu, c) + sigma_i^2: per-level ULA recursion in closed form."""
    from validation.exact import gaussian_pushforward
    mu, c = 0.7, 0.5
    tgt = Gaussian(torch.tensor([mu], dtype=F64), c)
    sigmas = [3.0, 1.0, 0.3]
    eps, T = 0.01, 7
    kern = AnnealedLangevin(AnalyticScore(tgt, VE(sigma_min=0.01, sigma_max=10.0)), sigmas, eps=eps,
                            steps_per_level=T)

    def fn(x, z):
        state = kern.init(x)
        for j in range(kern.n_steps):
            state, _ = kern.step(state, noise=Noise(z[j][None]))
        return state.position

    m0, v0 = 2.0, 4.0
    m, S = gaussian_pushforward(fn, torch.tensor([m0], dtype=F64), torch.tensor([[v0]], dtype=F64),
                                noise_draws=kern.n_steps)
    mm, vv = m0, v0
    for s in sigmas:
        h = 0.5 * eps * s ** 2 / sigmas[-1] ** 2
        ci = c + s ** 2
        for _ in range(T):
            mm = (1 - h / ci) * mm + h * mu / ci
            vv = (1 - h / ci) ** 2 * vv + 2 * h
    assert m.item() == pytest.approx(mm, rel=1e-12)
    assert S.item() == pytest.approx(vv, rel=1e-12)


# ---- detailed balance / reversibility on generated targets (exact, no Monte Carlo) -------------
def _pairs(target, seed, scale):
    g = torch.Generator().manual_seed(seed)
    x = target.sample(64, generator=g)
    return x, x + scale * torch.randn(x.shape, generator=g, dtype=F64), torch.randn(x.shape, generator=g, dtype=F64)


def _min_std(target):
    return float(torch.linalg.eigvalsh(target.covs).min().sqrt())


@settings(max_examples=8)
@given(sst.gaussian_mixtures(dim=st.integers(1, 3), condition_number=st.floats(1.0, 10.0)), st.integers(0, 99))
def test_mala_detailed_balance(target, seed):
    h = 0.3 * _min_std(target) ** 2
    x, y, _ = _pairs(target, seed, math.sqrt(2 * h))
    assert mala_balance_residual(MALA(target, h), x, y, h) < 1e-10
    assert mala_balance_residual(MALANoCorrection(target, h), x, y, h) > 1e-6


@settings(max_examples=8)
@given(sst.gaussian_mixtures(dim=st.integers(1, 3), condition_number=st.floats(1.0, 10.0)), st.integers(0, 99))
def test_hmc_detailed_balance_reversibility_volume(target, seed):
    h = 0.2 * _min_std(target)
    x, _, p = _pairs(target, seed, 0.0)
    assert hmc_balance_residual(HMC(target, h, 5), x, p, h, 5) < 1e-10
    assert leapfrog_reversibility(HMC(target, h, 5), x, p, h, 5) < 1e-12
    assert leapfrog_log_det(HMC(target, h, 5), x[:2], p[:2], h, 5) < 1e-12
    assert hmc_balance_residual(HMCNoKinetic(target, h, 5), x, p, h, 5) > 1e-6
    assert leapfrog_reversibility(HMCFullFirstKick(target, h, 5), x, p, h, 5) > 1e-6


# ---- behaviour -------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda t: ULA(t, 0.1), lambda t: MALA(t, 0.5),
                                  lambda t: UnderdampedLangevin(t, 0.3, scheme="obabo"),
                                  lambda t: HMC(t, 0.2, 4, jitter=0.2, jitter_steps=True), lambda t: RWM(t, 0.3)])
def test_same_seed_same_chain_and_dtype_follows_input(make):
    tgt = std_normal(3)
    outs = []
    for _ in range(2):
        g = torch.Generator().manual_seed(7)
        k = make(tgt)
        s = k.init(torch.zeros(5, 3, dtype=torch.float32), g)
        for _ in range(5):
            s, info = k.step(s, g)
        outs.append(s.position)
    assert outs[0].dtype == torch.float32 and info.acceptance_rate.dtype == torch.float32
    assert torch.equal(outs[0], outs[1])


def test_non_finite_proposal_is_rejected_not_raised():
    # log density NaN for x > 1: proposals there must be rejected and flagged
    tgt = Target.from_log_prob(lambda x: torch.where(x[:, 0] < 1.0, -0.5 * x[:, 0] ** 2,
                                                     torch.full_like(x[:, 0], math.nan)), 1)
    k = MALA(tgt, 0.5)
    s = k.init(torch.full((4, 1), 0.5, dtype=F64))
    xi = torch.tensor([[[5.0], [5.0], [-0.1], [-0.1]]], dtype=F64)
    new, info = k.step(s, noise=Noise(xi, torch.full((1, 4), 1e-9, dtype=F64)))
    assert info.is_divergent.tolist() == [True, True, False, False]
    assert info.is_accepted.tolist() == [False, False, True, True]
    assert torch.equal(new.position[:2], s.position[:2])
    assert torch.isfinite(new.log_prob).all()


def test_hmc_energy_divergence_flagged():
    tgt = Target.from_log_prob(lambda x: -(x ** 4).sum(-1), 2)
    k = HMC(tgt, 1.0, 5)
    s = k.init(torch.full((3, 2), 3.0, dtype=F64))
    new, info = k.step(s, torch.Generator().manual_seed(0))
    assert info.is_divergent.all() and not info.is_accepted.any()
    assert torch.equal(new.position, s.position)


def test_counts():
    tgt = std_normal(2)
    g = torch.Generator().manual_seed(0)
    for k, n_grad in [(ULA(tgt, 0.1), 1), (MALA(tgt, 0.1), 1), (UnderdampedLangevin(tgt, 0.1), 1),
                      (HMC(tgt, 0.1, 7), 7), (RWM(tgt, 0.1), 0)]:
        _, info = k.step(k.init(torch.zeros(2, 2, dtype=F64), g), g)
        assert info.n_grad == n_grad


# ---- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("h", [0.0, -1.0, math.nan, math.inf])
def test_bad_step_size(h):
    tgt = std_normal(2)
    for cls in (ULA, MALA, UnderdampedLangevin, HMC, RWM):
        with pytest.raises(ValueError, match="step_size"):
            cls(tgt, h)
    k = MALA(tgt, 0.1)
    s = k.init(torch.zeros(2, 2, dtype=F64))
    with pytest.raises(ValueError, match="step_size"):
        k.step(s, step_size=h)
    with pytest.raises(ValueError, match="step_size"):
        k.step(s, step_size=torch.tensor([0.1, h], dtype=F64))


def test_bad_x0_and_target():
    tgt = std_normal(2)
    k = ULA(tgt, 0.1)
    with pytest.raises(ValueError, match="x0 must have shape"):
        k.init(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="x0 must have shape"):
        k.init(torch.zeros(2))
    with pytest.raises(ValueError, match="non-finite"):
        k.init(torch.tensor([[0.0, math.inf]]))
    with pytest.raises(ValueError, match="non-finite"):
        k.init(torch.tensor([[0.0, math.nan]]))
    with pytest.raises(TypeError, match="x0"):
        k.init([[0.0, 0.0]])
    with pytest.raises(TypeError, match="target"):
        ULA(lambda x: x, 0.1)

    class NoDensity(Target):
        dim = 2
    with pytest.raises(TypeError, match="log density and a score"):
        MALA(NoDensity(), 0.1).init(torch.zeros(1, 2))
    zero_density = Target.from_log_prob(lambda x: 0.0 * x[:, 0] - math.inf, 2)
    with pytest.raises(ValueError, match="chains \\[0\\]"):
        MALA(zero_density, 0.1).init(torch.zeros(1, 2))
    with pytest.raises(TypeError, match="unknown parameters"):
        k.step(k.init(torch.zeros(1, 2)), friction=1.0)
    with pytest.raises(ValueError, match="noise"):
        k.step(k.init(torch.zeros(1, 2)), noise=Noise(torch.zeros(1, 2, 2)))
    with pytest.raises(ValueError, match="scheme"):
        UnderdampedLangevin(tgt, 0.1, scheme="leapfrog")
    with pytest.raises(ValueError, match="jitter"):
        HMC(tgt, 0.1, 3, jitter=1.5)
    with pytest.raises(ValueError, match="alpha = 1"):
        from scoresample.processes import VPLinear
        AnnealedLangevin(AnalyticScore(tgt, VPLinear()), [1.0, 0.1])
    with pytest.raises(ValueError, match="decreasing"):
        AnnealedLangevin(AnalyticScore(tgt, VE()), [0.1, 1.0])


class _Regions(Target):
    """1-D N(0, 1) for x < 1; beyond, one failure mode per unit interval (by proposal position)."""

    dim = 1

    def _log_prob_and_score(self, x):
        x0 = x[:, 0]
        lp = torch.where(x0 < 1, -0.5 * x0 ** 2, torch.where(x0 < 2, -0.5, torch.where(
            x0 < 3, math.inf, torch.where(x0 < 4, -math.inf, math.nan))))
        s = torch.where(x < 1, -x, torch.where(x < 2, math.inf, torch.zeros_like(x)))
        return lp, s


@pytest.mark.parametrize("kind", ["mala", "hmc"])
def test_each_non_finite_mode_is_a_rejection(kind):
    """The fused finiteness check: infinite score, +inf / NaN log density are divergent rejections;
    log density -inf (density 0) is a plain rejection for MALA (HMC counts its infinite energy error)."""
    tgt = _Regions()
    # MALA h = 0.5 and HMC one leapfrog step h = 1 both propose y = 0.25 + xi from x = 0.5
    k = MALA(tgt, 0.5) if kind == "mala" else HMC(tgt, 1.0, 1)
    s = k.init(torch.full((5, 1), 0.5, dtype=F64))
    xi = torch.tensor([1.25, 2.25, 3.25, 4.25, -0.25], dtype=F64).reshape(1, 5, 1)
    # uniform = 0 is a legal draw (torch.rand returns it about once in 2^24 float32 draws): log u = -inf must
    # still reject zero-density and diverged proposals
    for u in (1e-9, 0.0):
        new, info = k.step(s, noise=Noise(xi, torch.full((k.n_uniform, 5), u, dtype=F64)))
        assert info.is_divergent.tolist() == [True, True, kind == "hmc", True, False]
        assert info.is_accepted.tolist() == [False, False, False, False, True]
    assert new.position[4, 0].item() == pytest.approx(0.0, abs=1e-15)
    assert torch.isfinite(new.log_prob).all() and torch.isfinite(new.score).all()


@pytest.mark.parametrize("tensor_h", [False, True])
def test_mala_log_accept_ratio_matches_scipy_densities(tensor_h):
    """The noise form of the MH ratio equals pi(y) q(x|y) / (pi(x) q(y|x)) with q from scipy."""
    from scipy import stats
    tgt = mixture_problem()
    g = torch.Generator().manual_seed(3)
    x, y = tgt.sample(6, generator=g), tgt.sample(6, generator=g)
    h = torch.linspace(0.1, 0.6, 6, dtype=F64) if tensor_h else 0.3
    k = MALA(tgt, 0.3)
    sx, sy = k.init(x), k.init(y)
    got = k.log_accept_ratio(sx, sy, h.reshape(-1, 1) if tensor_h else h)
    hs = h.tolist() if tensor_h else [h] * 6
    for i in range(6):
        def log_q(b, a, sa):
            return stats.multivariate_normal(mean=(a + hs[i] * sa).numpy(), cov=2 * hs[i]).logpdf(b.numpy())
        want = (tgt.log_prob(y[i:i + 1]).item() - tgt.log_prob(x[i:i + 1]).item()
                + log_q(x[i], y[i], sy.score[i]) - log_q(y[i], x[i], sx.score[i]))
        assert got[i].item() == pytest.approx(want, rel=1e-10, abs=1e-10)


# ---- random-walk Metropolis ------------------------------------------------------------------------
def _numpy_log_prob(x):
    """A log density computed outside torch (no autograd: only gradient-free kernels can use it)."""
    import numpy as np
    v = x.detach().cpu().numpy()
    return torch.as_tensor(-0.5 * ((v - 1.0) ** 2 / 0.5).sum(-1) - np.abs(v).sum(-1), dtype=x.dtype)


def test_rwm_acceptance_matches_scipy_and_needs_no_score():
    """With explicit noise the move is y = x + sqrt(2h) xi, accepted iff u < pi(y) / pi(x) (scipy densities)."""
    from scipy import stats
    tgt = mixture_problem()
    g = torch.Generator().manual_seed(4)
    x = tgt.sample(200, generator=g)
    h = 0.4
    k = RWM(tgt, h)
    st0 = k.init(x)
    assert st0.score.shape == (200, 0)
    noise = k.draw_noise(x, g)
    new, info = k.step(st0, noise=noise)
    y = x + math.sqrt(2 * h) * noise.normal[0]
    mix = [stats.multivariate_normal(m.numpy(), c.numpy()) for m, c in zip(tgt.means, tgt.covs)]
    def pdf(z):
        return sum(w.item() * d.pdf(z.numpy()) for w, d in zip(tgt.weights, mix))
    ratio = pdf(y) / pdf(x)
    want = torch.as_tensor(noise.uniform[0].numpy() < ratio)
    assert torch.equal(info.is_accepted, want) and 0 < int(want.sum()) < 200
    assert torch.allclose(info.acceptance_rate, torch.as_tensor(ratio).clamp(max=1.0), rtol=1e-10)
    assert torch.allclose(new.position, torch.where(want[:, None], y, x), rtol=0, atol=1e-14)
    assert info.n_grad == 0 and info.n_log_prob == 1
    # a target whose log density autograd cannot differentiate: RWM runs, MALA cannot
    black_box = Target.from_log_prob(_numpy_log_prob, 3)
    s = RWM(black_box, 0.2).init(torch.zeros(4, 3, dtype=F64))
    s, _ = RWM(black_box, 0.2).step(s, g)
    assert torch.isfinite(s.position).all()
    with pytest.raises(Exception):
        MALA(black_box, 0.2).init(torch.zeros(4, 3, dtype=F64))


class _RWMNoMetropolis(RWM):
    """Mutation: every proposal accepted (a plain Gaussian random walk)."""

    def _step(self, state, noise, **params):
        return super()._step(state, noise._replace(uniform=torch.zeros_like(noise.uniform)), **params)


@pytest.mark.parametrize("cls, invariant", [(RWM, True), (_RWMNoMetropolis, False)])
def test_rwm_leaves_the_target_invariant(cls, invariant):
    """Chains started at exact draws of a 2-D Gaussian stay exactly distributed after 10 RWM steps: the mean and
    variance of each coordinate pass z-tests (n = 20000 independent chains; alpha 1e-4 over 4 assertions; the
    variance's SE from the Gaussian fourth moment). Accepting every proposal (mutation) adds 10 * 2h variance."""
    tgt = Gaussian(torch.tensor([0.5, -1.0]), torch.tensor([[1.0, 0.3], [0.3, 0.5]]), dtype=F64)
    g = torch.Generator().manual_seed(8)
    n = 20000
    k = cls(tgt, 0.3)
    s = k.init(tgt.sample(n, generator=g))
    for _ in range(10):
        s, _ = k.step(s, g)
    x = s.position
    var = torch.diagonal(tgt.cov)
    z_mean = (x.mean(0) - tgt.mean) / (var / n).sqrt()
    z_var = (x.var(0) - var) / (var * math.sqrt(2 / n))
    zc = 4.2   # two-sided, alpha 1e-4 / 4
    assert bool((torch.cat([z_mean, z_var]).abs() < zc).all()) == invariant, (z_mean, z_var)
