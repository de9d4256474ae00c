"""Reverse diffusion Monte Carlo (rdMC): sampling an unnormalized density along the reverse OU process.

The forward process is the OU process dX = -X dt + sqrt(2) dB (alpha = e^{-t},
sigma^2 = 1 - e^{-2t}, g = sqrt(2)). The score of its marginal p_t is, by Tweedie,

    grad log p_t(x) = E_{q_t}[(e^{-t} x0 - x) / (1 - e^{-2t})],
    q_t(x0 | x) ∝ p(x0) exp(-||x - e^{-t} x0||^2 / (2 (1 - e^{-2t}))),

estimated from inner samples of q_t. Writing r = e^{2t} - 1, the likelihood factor is
N(x0; e^t x, r I), so q_t ∝ p(x0) N(x0; e^t x, r I) and grad log q_t = grad log p(x0) - (x0 - e^t x)/r.

Outer step (exponential integrator): in generation time the reverse OU SDE is
dY = (Y + 2 grad log p_{T - tau}(Y)) dtau + sqrt(2) dB, the drift being -f Y + g^2 s with
f = -1, g^2 = 2. Freezing the score at v over a step of length eta and integrating the
linear part exactly, Y(eta) = e^eta Y + 2 v int_0^eta e^{eta - u} du + sqrt(2) int_0^eta e^{eta - u} dB_u,
i.e. x <- e^eta x + 2 (e^eta - 1) v + sqrt(e^{2 eta} - 1) xi: the factor 2 is g^2.

References
----------
Huang, Dong, Hao, Ma, Zhang, "Reverse Diffusion Monte Carlo", ICLR 2024 (arXiv 2307.02037).
He, Rojas, Tao, "Zeroth-Order Sampling Methods for Non-Log-Concave Distributions: Alleviating
Metastability by Denoising Diffusion", 2024 (the same estimator; the gradient-free IS variant).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Tuple

import torch

from ._checks import check_count, check_generator, check_points, check_positive
from .targets.base import Target

Tensor = torch.Tensor

INNER = ("ula", "mala", "is", "lais")


class RDMCResult(NamedTuple):
    """Output of ``RDMC.sample``.

    Attributes
    ----------
    x : (n, d) samples at the grid's last time t_min (approximately p_{t_min}, close to p).
    times : (K+1,) the outer grid, T ... t_min.
    n_grad : gradient evaluations of log p, summed over particles (inner chains and warm start).
    n_logp : log-density evaluations without a gradient (importance-sampling warm starts and the
        gradient-free estimator), summed over particles.
    inner_acceptance : mean MALA acceptance of the inner chains (nan for ULA / IS).
    inner_ess : mean effective sample size of the "lais" importance weights per score estimate
        (nan for the other estimators); near 1 means the kernels miss q_t.
    """

    x: Tensor
    times: Tensor
    n_grad: int
    n_logp: int
    inner_acceptance: float
    inner_ess: float = math.nan


class RDMC:
    """Reverse diffusion Monte Carlo, Huang et al. 2024 (ICLR), with a Tweedie score from inner MCMC.

    Parameters
    ----------
    target : Target known through log_prob / log_prob_and_score (unnormalized is fine).
    T : horizon of the OU process; the start law at T is made explicit by ``init_steps`` ULA
        steps on p_T from N(0, I) driven by the estimated score.
    n_steps : outer steps on a uniform grid from T to t_min.
    t_min : last time (> 0; p_{t_min} is p convolved by a tiny Gaussian and shrunk by e^{-t_min}).
    inner : how q_t(x0 | x) is sampled for the Tweedie mean:
        "ula" or "mala" (the paper's estimator: ``inner_samples`` chains per particle from an
        importance-resampled warm start, one gradient per step and chain; the mean over the chains'
        end points), "is" (gradient-free self-normalized importance sampling with proposal
        N(e^t x, r I); He et al. 2024) or "lais" (MALA chains from ``inner_samples`` distinct
        warm-start draws locate q_t's modes, then self-normalized importance sampling from a mixture
        of Gaussian kernels at one Newton step from each chain's end point, with the chain's secant
        curvature, sets their masses; Martino et al. 2017). Chains never cross between well-separated
        modes, so "ula" / "mala" inherit the warm start's mode masses, which the importance weights
        get wrong once the proposal is much wider than the modes (``two_modes``, d >= 8: weights
        pulled toward equal); "lais" corrects them with weights, exactly when the kernels match q_t's
        components.
    inner_samples : chains per particle and score estimate (m).
    inner_steps : inner chain steps (ignored by "is").
    is_samples : proposals of the importance-sampling warm start, and of the "is" / "lais" estimators,
        per particle.
    inner_step : inner step scale c; the inner step is h(t) = c r / (1 + curvature r),
        r = e^{2t} - 1, i.e. c over an upper bound of q_t's curvature (1/r + curvature):
        it shrinks like 2 c t at small t, where a fixed step diverges.
    curvature : upper bound L of -grad^2 log p (the smoothness constant), used in h(t) and, for
        "lais", as the kernels' fallback precision L + 1/r where a chain has no secant curvature
        (the kernels' precision is otherwise measured along each chain's moves).
    defensive : weight of the defensive component N(e^t x, r I) in the "lais" proposal, in [0, 1).
    init_steps, init_step : ULA warm start on p_T (step init_step).

    Budget per particle: (n_steps + init_steps) * inner_samples * (inner_steps + 1) gradients and
    (n_steps + init_steps) * is_samples density evaluations (twice that for "lais"); both are
    counted in the result.

    References
    ----------
    Martino, Elvira, Luengo, Corander, "Layered adaptive importance sampling", Statistics and
    Computing 2017. Hesterberg, "Weighted average importance sampling and defensive mixture
    distributions", Technometrics 1995.
    """

    def __init__(self, target: Target, *, T: float = 2.0, n_steps: int = 20, t_min: float = 1e-3,
                 inner: str = "mala", inner_samples: int = 16, inner_steps: int = 20, is_samples: int = 64,
                 inner_step: float = 0.5, curvature: float = 1.0, defensive: float = 0.05, init_steps: int = 16,
                 init_step: float = 0.2):
        if not isinstance(target, Target):
            raise TypeError(f"target must be a Target, got {type(target).__name__}")
        if inner not in INNER:
            raise ValueError(f"inner must be one of {INNER}, got {inner!r}")
        self.target, self.inner = target, inner
        self.T = check_positive(T, "T")
        self.t_min = check_positive(t_min, "t_min")
        if not self.t_min < self.T:
            raise ValueError(f"t_min must be < T, got t_min={t_min}, T={T}")
        self.n_steps = check_count(n_steps, "n_steps")
        self.inner_samples = check_count(inner_samples, "inner_samples")
        self.inner_steps = check_count(inner_steps, "inner_steps")
        self.is_samples = check_count(is_samples, "is_samples")
        self.inner_step = check_positive(inner_step, "inner_step")
        self.curvature = check_positive(curvature, "curvature", strict=False)
        self.defensive = check_positive(defensive, "defensive", strict=False)
        if not self.defensive < 1.0:
            raise ValueError(f"defensive must lie in [0, 1), got {defensive}")
        if inner == "lais" and self.inner_samples > self.is_samples:
            raise ValueError(f"inner='lais' draws inner_samples={inner_samples} distinct warm starts from "
                             f"is_samples={is_samples} proposals: need inner_samples <= is_samples")
        self.init_steps = check_count(init_steps, "init_steps", minimum=0)
        self.init_step = check_positive(init_step, "init_step")

    # ---- the score estimator ------------------------------------------------------------
    def score(self, x: Tensor, t: float, generator: Optional[torch.Generator] = None) -> Tensor:
        """Monte Carlo estimate of grad log p_t(x), shape (n, d) (Tweedie over samples of q_t(. | x))."""
        x = check_points(x, self.target.dim)
        t = float(t)
        if not 0.0 < t <= self.T:
            raise ValueError(f"t must lie in (0, {self.T}], got {t}")
        check_generator(generator, x.device)
        return self._score(x, t, generator)[0]

    def _is_draws(self, x: Tensor, t: float, generator) -> Tuple[Tensor, Tensor, Tensor]:
        """Proposals x0 = e^t x + sqrt(r) z (n, k, d), their standard normals z and log-weights log p(x0) (n, k)."""
        n, d = x.shape
        r = math.expm1(2 * t)
        z = torch.randn((n, self.is_samples, d), generator=generator, dtype=x.dtype, device=x.device)
        x0 = math.exp(t) * x[:, None] + math.sqrt(r) * z
        logw = _nan_to_zero_weight(self.target._log_prob(x0.reshape(-1, d)).reshape(n, self.is_samples))
        return x0, z, logw

    def _score(self, x: Tensor, t: float, generator) -> Tuple[Tensor, int, int, float, float]:
        """(score estimate, gradient evaluations, density evaluations, acceptance, "lais" ESS) for all particles."""
        n, d = x.shape
        m = self.inner_samples
        r = math.expm1(2 * t)
        c = 1.0 / -math.expm1(-2 * t)            # 1 / sigma_t^2 = 1 / (1 - e^{-2t})
        x0, z, logw = self._is_draws(x, t, generator)
        n_logp = n * self.is_samples
        if self.inner == "is":
            # e^{-t} x0 - x = sqrt(1 - e^{-2t}) z, so the Tweedie mean is the weighted mean of z / sqrt(1 - e^{-2t})
            W = torch.softmax(logw, 1)
            return (W[..., None] * z).sum(1) / math.sqrt(-math.expm1(-2 * t)), 0, n_logp, math.nan, math.nan
        W = _self_normalized(logw)
        if self.inner == "lais":
            # m distinct starts: the chains are only there to find q_t's modes, so diversity beats
            # replicating the few proposals that carry all the weight
            W = W + torch.finfo(W.dtype).tiny
        # importance-resampled warm start: m draws per particle from the IS approximation of q_t
        idx = torch.multinomial(W, m, replacement=self.inner != "lais", generator=generator)
        y = torch.gather(x0, 1, idx[..., None].expand(n, m, d)).reshape(n * m, d)
        centre = math.exp(t) * x                   # e^t x, the centre of the likelihood factor N(x0; e^t x, r I)
        y, gq, acc, kappa = self._chains(y, centre.repeat_interleave(m, 0), r, generator)
        n_grad = n * m * (self.inner_steps + 1)
        if self.inner == "lais":
            mean_x0, ess = self._mixture_is(y.reshape(n, m, d), gq.reshape(n, m, d), kappa.reshape(n, m, 1),
                                            centre, r, generator)
            n_logp += n * self.is_samples
        else:
            mean_x0, ess = y.reshape(n, m, d).mean(1), math.nan
        return c * (math.exp(-t) * mean_x0 - x), n_grad, n_logp, acc, ess

    def _chains(self, y: Tensor, centre: Tensor, r: float, generator) -> Tuple[Tensor, Tensor, float, Tensor]:
        """Run the inner ULA / MALA chains on q_t ∝ p(x0) N(x0; centre, r I) from ``y`` (rows):
        (final states, grad log q_t there, mean acceptance or nan for ULA, secant curvature per row,
        tracked for "lais" only, else None).

        The secant curvature is sum(-dy . dg) / sum(|dy|^2) over every proposal's move dy and gradient
        change dg (accepted or not): the Rayleigh quotient of -grad^2 log q_t along the moves, exact
        for an isotropic quadratic (the Barzilai-Borwein step's inverse); NaN where no move was finite."""
        secant = self.inner == "lais"
        h = self.inner_step * r / (1.0 + self.curvature * r)

        def logq_and_grad(y):
            lp, s = self.target._log_prob_and_score(y)
            diff = y - centre
            return lp - (diff * diff).sum(1) / (2 * r), s - diff / r

        lq, gq = logq_and_grad(y)
        acc = 0.0
        num = torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
        den = torch.zeros_like(num)
        for _ in range(self.inner_steps):
            prop = y + h * gq + math.sqrt(2 * h) * torch.randn(y.shape, generator=generator, dtype=y.dtype,
                                                                 device=y.device)
            lq_p, gq_p = logq_and_grad(prop)
            if secant:
                dy, dg = prop - y, gq_p - gq
                fin = torch.isfinite(dg).all(1)
                num = num + torch.where(fin, -(dy * dg).sum(1), torch.zeros_like(num))
                den = den + torch.where(fin, (dy * dy).sum(1), torch.zeros_like(den))
            if self.inner == "ula":
                y, gq = prop, gq_p
                continue
            log_a = (lq_p - lq - ((y - prop - h * gq_p) ** 2).sum(1) / (4 * h)
                     + ((prop - y - h * gq) ** 2).sum(1) / (4 * h))
            ok = torch.isfinite(log_a) & torch.isfinite(gq_p).all(1)
            u = torch.rand(log_a.shape, generator=generator, dtype=log_a.dtype, device=log_a.device)
            accept = ok & (torch.log(u) < torch.where(ok, log_a, torch.zeros_like(log_a)))
            y = torch.where(accept[:, None], prop, y)
            lq = torch.where(accept, lq_p, lq)
            gq = torch.where(accept[:, None], gq_p, gq)
            acc += accept.to(y.dtype).mean().item()
        return y, gq, (acc / self.inner_steps if self.inner != "ula" else math.nan), (num / den if secant else None)

    def _mixture_is(self, y: Tensor, gq: Tensor, kappa: Tensor, centre: Tensor, r: float,
                    generator) -> Tuple[Tensor, float]:
        """Self-normalized IS estimate of E_{q_t}[x0] per particle, shape (n, d), and the mean ESS.

        Proposal: the deterministic mixture (Martino et al. 2017, LAIS) of the m Gaussian kernels
        N(y_j + s_j grad log q_t(y_j), s_j I), s_j = 1 / kappa_j the inverse secant curvature of chain j
        (``_chains``; 1 / (curvature + 1/r) where it has none) -- one Newton step, exact for an
        isotropic Gaussian component -- plus a defensive component N(centre, r I) of weight
        ``defensive`` (Hesterberg 1995) that keeps the weights q_t / Q bounded. The chains only locate
        the modes; the weights set the mode masses. The kernels depend on the chains only, so the
        weights q_t / Q with Q's exact mixture density stay valid.
        """
        n, m, d = y.shape
        K, eps = self.is_samples, self.defensive
        # kernel variance: the inverse secant curvature of each chain (>= the likelihood's 1/r); the bound
        # 1 / (curvature + 1/r) where the chain has no usable secant (no finite move, or non-convex)
        ok = torch.isfinite(kappa) & (kappa > 0)
        s = torch.where(ok, 1.0 / kappa.clamp(min=1.0 / r), torch.full_like(kappa, r / (1.0 + self.curvature * r)))
        mu = y + s * gq                                              # (n, m, d), one Newton step per chain
        # a chain stuck where the density is 0 or its gradient is not finite gets the likelihood N(centre, r I)
        lost = ~torch.isfinite(mu).all(-1, keepdim=True)
        mu = torch.where(lost, centre[:, None], mu)
        s = torch.where(lost, torch.full_like(s, r), s)
        opts = dict(dtype=y.dtype, device=y.device)
        comp = torch.randint(0, m, (n, K), generator=generator, device=y.device)
        z = torch.randn((n, K, d), generator=generator, **opts)   # one normal per proposal, whichever component
        pick = (torch.rand((n, K), generator=generator, **opts) < eps)[..., None]
        sd = torch.gather(s.sqrt(), 1, comp[..., None])                  # (n, K, 1)
        prop = torch.where(pick, centre[:, None] + math.sqrt(r) * z,
                           torch.gather(mu, 1, comp[..., None].expand(n, K, d)) + sd * z)
        # direct differences: the matmul form of cdist cancels catastrophically for nearby points
        d2 = torch.cdist(prop, mu, compute_mode="donot_use_mm_for_euclid_dist").pow(2)     # (n, K, m)
        log_kernels = -d2 / (2 * s.transpose(1, 2)) - 0.5 * d * torch.log(2 * math.pi * s.transpose(1, 2))
        dev = prop - centre[:, None]
        log_lik = -(dev * dev).sum(2) / (2 * r) - 0.5 * d * math.log(2 * math.pi * r)   # N(x0; centre, r I)
        log_q_prop = torch.logsumexp(log_kernels, 2) - math.log(m)
        if eps > 0:
            log_q_prop = torch.logaddexp(log_q_prop + math.log1p(-eps), log_lik + math.log(eps))
        lp = self.target._log_prob(prop.reshape(-1, d)).reshape(n, K)
        W = _self_normalized(_nan_to_zero_weight(lp + log_lik - log_q_prop))
        return (W[..., None] * prop).sum(1), (1.0 / (W * W).sum(1)).mean().item()

    # ---- the sampler --------------------------------------------------------------------
    def sample(self, n: int, generator: Optional[torch.Generator] = None, *, dtype=torch.float64,
               device=None, progress: bool = False) -> RDMCResult:
        """Draw ``n`` samples: explicit start law at T, then ``n_steps`` exponential-integrator steps
        (``progress``: a bar over the ``init_steps + n_steps`` score estimates)."""
        from tqdm.auto import tqdm
        n = check_count(n, "n")
        device = torch.device(device) if device is not None else self.target.device
        check_generator(generator, device)
        x = torch.randn((n, self.target.dim), generator=generator, dtype=dtype, device=device)
        n_grad = n_logp = 0
        accs, esss = [], []
        bar = tqdm(total=self.init_steps + self.n_steps, desc="rdMC", disable=not progress, leave=False)

        def estimate(x, t):
            nonlocal n_grad, n_logp
            v, g_, l_, a, e = self._score(x, t, generator)
            n_grad, n_logp = n_grad + g_, n_logp + l_
            accs.append(a)
            esss.append(e)
            bar.update(1)
            return v

        # start law at T: ULA on p_T with the estimated score, from N(0, I) (p_T -> N(0, I) as T grows)
        for _ in range(self.init_steps):
            v = estimate(x, self.T)
            x = x + self.init_step * v + math.sqrt(2 * self.init_step) * torch.randn(
                x.shape, generator=generator, dtype=dtype, device=device)
        times = torch.linspace(self.T, self.t_min, self.n_steps + 1, dtype=torch.float64)
        for t0, t1 in zip(times[:-1].tolist(), times[1:].tolist()):
            eta = t0 - t1
            v = estimate(x, t0)
            xi = torch.randn(x.shape, generator=generator, dtype=dtype, device=device)
            x = math.exp(eta) * x + 2.0 * math.expm1(eta) * v + math.sqrt(math.expm1(2 * eta)) * xi
        bar.close()
        return RDMCResult(x, times, n_grad, n_logp, _nanmean(accs), _nanmean(esss))


def _nan_to_zero_weight(logw: Tensor) -> Tensor:
    """NaN log-weights (a density that could not be evaluated) become -inf: zero weight."""
    return torch.where(torch.isnan(logw), torch.full_like(logw, -math.inf), logw)


def _self_normalized(logw: Tensor) -> Tensor:
    """Row-wise softmax of (n, K) log-weights; a row with no positive weight falls back to uniform."""
    W = torch.softmax(logw, 1)
    return torch.where(torch.isfinite(W).all(1, keepdim=True), W, torch.full_like(W, 1.0 / logw.shape[1]))


def _nanmean(values) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan
