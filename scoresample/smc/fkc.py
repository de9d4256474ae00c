"""Feynman-Kac correctors: weighted reverse SDEs with resampling for annealed, product and CFG targets.

One formula covers every case of Skreta et al. (2025). The experts are scores
``s_i = grad log q^i_t`` of one forward process ``dx = f(t) x dt + g(t) dW``; the target
path is ``p~_t = prod_i (q^i_t)^{b_i}`` (annealing: one expert, b = beta; product of
experts: b = (beta, beta); classifier-free guidance: b = (1 - beta, beta)). With
``S_b = sum_i b_i s_i`` and ``B = sum_i b_i``, particles follow, in generation time
(our t decreases, a step t_k -> t_{k+1} has Delta = t_k - t_{k+1} > 0),

    x <- x + [-f x + (1 + zeta^2)/2 g^2 S_b] Delta + zeta g sqrt(Delta) xi,
    log w += [(B - 1) d f + (g^2 / 2)(||S_b||^2 - sum_i b_i ||s_i||^2)] Delta.

This reproduces Props 3.1-3.3: annealing gives eta = beta (1 + zeta^2)/2 and
dw = (beta - 1)[d f + (g^2/2) beta ||s||^2]; the product gives
dw = beta (beta - 1) (g^2/2) ||s1 + s2||^2 + beta g^2 <s1, s2> + (2 beta - 1) d f; CFG gives
dw = (g^2/2) beta (beta - 1) ||s1 - s2||^2. The weight makes the Feynman-Kac PDE hold
exactly for the *unnormalized* p~_t (residual identically zero, not just constant in x),
so ``exp(total log-weight)`` also estimates normalizer ratios of p~.

Derivation (checked numerically by ``FeynmanKac.pde_residual``): the forward Fokker-Planck equation
gives d_t log q = -d f - f <x, s> + (g^2/2)(Delta log q + ||s||^2). A weighted SDE
dx = v dtau + zeta g dW with weight rate w has unnormalized density rho with
d_tau log rho = -div v - <v, grad log rho> + (zeta^2 g^2 / 2)(Delta log rho + ||grad log rho||^2) + w.
Setting rho = p~ and tau = -t, the Laplacian terms cancel iff the drift's score
coefficient is b_i (1 + zeta^2)/2, and what remains is the weight above.

References
----------
Skreta, Akhound-Sadegh, Ohanesian, Bondesan, Aspuru-Guzik, Doucet, Brekelmans, Tong, Neklyudov,
"Feynman-Kac Correctors in Diffusion: Annealing, Guidance, and Product of Experts", ICML 2025
(arXiv 2503.02819), Props 3.1-3.3.
"""
from __future__ import annotations

import itertools
import math
import warnings
from typing import NamedTuple, Optional, Sequence, Tuple

import torch

from .._checks import check_count, check_generator, check_points
from ..scores.analytic import AnalyticScore
from ..scores.base import ScoreModel
from ..solvers.base import GeneratorNoise, Noise, as_noise
from ..targets.combinators import Product, closed_form_gaussian
from ..targets.gaussian import Gaussian, GaussianMixture
from .particles import SCHEMES, _ess, _resample, check_log_weights, check_threshold

Tensor = torch.Tensor

VARIANTS = ("target_score", "tempered_noise")


def _min_eig(m: Tensor) -> Tuple[float, Tensor]:
    w, v = torch.linalg.eigh(m)
    return float(w[0]), v[:, 0]


def _certificate(ms: Tensor, iters: int = 400) -> Tuple[float, Tensor]:
    """max over the simplex of lambda_min(sum_I lambda_I M_I) (a concave function), and the minimizing
    eigenvector there: golden section for two matrices, exponentiated subgradient ascent for more."""
    k = ms.shape[0]
    if k == 1:
        return _min_eig(ms[0])
    if k == 2:
        f = lambda a: _min_eig(a * ms[0] + (1 - a) * ms[1])   # noqa: E731
        lo, hi, r = 0.0, 1.0, (math.sqrt(5) - 1) / 2
        for _ in range(80):
            a, b = hi - r * (hi - lo), lo + r * (hi - lo)
            lo, hi = (lo, b) if f(a)[0] >= f(b)[0] else (a, hi)
        return f(0.5 * (lo + hi))
    lam = torch.full((k,), 1.0 / k, dtype=ms.dtype)
    scale = float(torch.linalg.matrix_norm(ms, ord=2).max())
    best = (-math.inf, None)
    for it in range(iters):
        g, v = _min_eig(torch.einsum("k,kij->ij", lam, ms))
        if g > best[0]:
            best = (g, v)
        grad = torch.einsum("i,kij,j->k", v, ms, v) / scale     # a supergradient of the concave min-eigenvalue
        lam = lam * torch.exp(grad / math.sqrt(it + 1))
        lam = lam / lam.sum()
    return best


def _witness(ms: Tensor, starts, iters: int = 200) -> Tuple[float, Tensor]:
    """min over unit u of max_I u^T M_I u, searched locally (projected subgradient) from ``starts``."""
    u = torch.stack(list(starts))
    u = u / u.norm(dim=1, keepdim=True)
    norms = torch.linalg.matrix_norm(ms, ord=2)
    best = (math.inf, None)
    for it in range(iters):           # all starts at once
        vals = torch.einsum("si,kij,sj->sk", u, ms, u)
        top, i = vals.max(1)
        j = int(top.argmin())
        if float(top[j]) < best[0]:
            best = (float(top[j]), u[j].clone())
        step = torch.einsum("sij,sj->si", ms[i], u) / norms[i][:, None]
        u = u - (0.5 / math.sqrt(it + 1)) * step
        u = u / u.norm(dim=1, keepdim=True)
    return best


def _tail_verdict(precs, tol: float = 1e-9) -> Tuple[str, Optional[Tensor]]:
    """"ok", "fail" (with a direction u along which prod_i q_i^{b_i} grows) or "undecided", from the
    experts' component precisions ``precs = [(b_i, (k_i, d, d))]`` (see ``FeynmanKac._check_normalizable``)."""
    pos = [(b, P) for b, P in precs if b > 0]
    neg = [(b, P) for b, P in precs if b < 0]
    scale = max(abs(b) * float(torch.linalg.matrix_norm(P, ord=2).max()) for b, P in precs)
    verdict = "ok"
    for J in itertools.product(*[range(P.shape[0]) for _, P in pos]):
        a = sum(b * P[j] for (b, P), j in zip(pos, J))
        ms = torch.stack([a + sum((b * P[i] for (b, P), i in zip(neg, I)), torch.zeros_like(a))
                          for I in itertools.product(*[range(P.shape[0]) for _, P in neg])])
        if (torch.linalg.eigvalsh(ms)[:, 0] > tol * scale).any():
            continue                         # one positive-definite M_JI: a certificate already
        g, v = _certificate(ms)
        if g > tol * scale:
            continue
        # local search from the certificate's eigenvector, each M's flattest direction and fixed random
        # directions (an axis can be a saddle of max_I u^T M_I u)
        rand = torch.randn(16, a.shape[0], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        starts = [v] + [torch.linalg.eigh(m)[1][:, 0] for m in ms] + list(rand.to(a.dtype))
        w, u = _witness(ms, starts)
        if w < -tol * scale:
            return "fail", u
        verdict = "undecided"
    return verdict, None


class FKCResult(NamedTuple):
    """Output of ``FeynmanKac.sample``.

    Attributes
    ----------
    x : (n, d) particles at the grid's last time.
    log_weights : (n,) log-weights since the last resampling (self-normalize them).
    log_z : estimate of log E[exp(total log-weight)]: log(Z~_{t_end} / Z~_{t_start}) for particles
        started exactly from p~_{t_start}; log Z~_{t_end} for particles started from a normalized
        proposal with the initial log-weight log p~ - log proposal.
    ess : (K,) ESS after each step's reweighting (before resampling).
    resampled : (K,) bool.
    min_ess : the smallest ESS; ``collapsed`` is True when it reached 1 (all weight on one particle).
    nfe : expert score evaluations (per particle, summed over experts).
    """

    x: Tensor
    log_weights: Tensor
    log_z: float
    ess: Tensor
    resampled: Tensor
    min_ess: float
    collapsed: bool
    nfe: int


class FeynmanKac:
    """Feynman-Kac corrector (FKC) sampler, Skreta et al. 2025, Props 3.1-3.3.

    Samples ``p~_t ∝ prod_i (q^i_t)^{b_i}`` along a reverse-time grid with a weighted
    Euler-Maruyama SDE and resampling; exact as particles -> inf and steps -> 0.
    Use the constructors ``annealing``, ``product`` and ``cfg`` for the paper's cases.

    Parameters
    ----------
    scores : ScoreModels of one process (the experts q^i).
    powers : exponents b_i (any sign, B = sum b_i > 0).
    zeta : noise multiplier; the drift's score coefficient is (1 + zeta^2)/2 (so that the
        Laplacian terms of the Feynman-Kac PDE cancel).
    resampling : scheme of ``resample``, or None for importance weights only.
    ess_threshold : resample when ESS < ess_threshold * n, in (0, 1] (1: every step, as the paper).
    window : ``(t_lo, t_hi)``; resample only after steps that land at t_{k+1} in [t_lo, t_hi]
        (the paper's active window). None: everywhere.
    """

    def __init__(self, scores: Sequence[ScoreModel], powers: Sequence[float], *, zeta: float = 1.0,
                 resampling: Optional[str] = "systematic", ess_threshold: float = 1.0,
                 window: Optional[Tuple[float, float]] = None):
        scores = tuple(scores)
        if len(scores) == 0:
            raise ValueError("scores: at least one expert is needed")
        for i, s in enumerate(scores):
            if not isinstance(s, ScoreModel):
                raise TypeError(f"scores[{i}] must be a ScoreModel, got {type(s).__name__}")
        if any(s.process != scores[0].process for s in scores):
            raise ValueError("scores must all belong to one process")
        powers = tuple(float(b) for b in powers)
        if len(powers) != len(scores) or not all(math.isfinite(b) for b in powers):
            raise ValueError(f"powers must be {len(scores)} finite numbers, got {powers}")
        if not sum(powers) > 0:
            raise ValueError(f"powers must have a positive sum (a normalizable target), got {powers}")
        if isinstance(zeta, bool) or not isinstance(zeta, (int, float)) or not zeta > 0 or not math.isfinite(zeta):
            raise ValueError(f"zeta must be a positive number, got {zeta!r}")
        if resampling is not None and resampling not in SCHEMES:
            raise ValueError(f"resampling must be one of {SCHEMES} or None, got {resampling!r}")
        if window is not None:
            if len(window) != 2 or not window[0] <= window[1]:
                raise ValueError(f"window must be (t_lo, t_hi) with t_lo <= t_hi, got {window!r}")
            window = (float(window[0]), float(window[1]))
        self.scores, self.powers, self.zeta = scores, powers, float(zeta)
        self.process = scores[0].process
        self.resampling, self.window = resampling, window
        self.ess_threshold = check_threshold(ess_threshold)
        self.dim = scores[0].dim
        if any(b < 0 for b in powers):
            self._check_normalizable()

    # ---- the paper's cases -------------------------------------------------------------
    @staticmethod
    def _beta(beta) -> float:
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta > 0 or not math.isfinite(beta):
            raise ValueError(f"beta must be a positive number, got {beta!r}")
        return float(beta)

    @classmethod
    def annealing(cls, score: ScoreModel, beta: float, variant: str = "target_score", **kwargs) -> "FeynmanKac":
        """Annealed marginals q_t^beta (Prop 3.2).

        ``variant="target_score"``: eta = beta, zeta = 1; ``"tempered_noise"``: eta = (1 + beta)/2,
        zeta = 1/sqrt(beta). Both share the weight (beta - 1)[d f + (g^2/2) beta ||s||^2].
        """
        beta = cls._beta(beta)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        zeta = 1.0 if variant == "target_score" else 1.0 / math.sqrt(beta)
        return cls([score], [beta], zeta=zeta, **kwargs)

    @classmethod
    def product(cls, scores: Sequence[ScoreModel], beta: float = 1.0, **kwargs) -> "FeynmanKac":
        """Annealed product of experts (prod_i q^i_t)^beta (Prop 3.3; beta = 1: the plain product)."""
        beta = cls._beta(beta)
        scores = tuple(scores)
        return cls(scores, [beta] * len(scores), **kwargs)

    @classmethod
    def cfg(cls, unconditional: ScoreModel, conditional: ScoreModel, beta: float, **kwargs) -> "FeynmanKac":
        """Classifier-free guidance / geometric average q1^(1 - beta) q2^beta (Prop 3.1).

        beta > 1 extrapolates; the target is then normalizable iff, along every direction, the flattest
        components' combination (1 - beta) Lambda1_k + beta Lambda2_j is positive: checked on 65 times of
        [t_min, T] for Gaussian and Gaussian-mixture experts (ValueError when a growing direction is
        found, RuntimeWarning when undecided or not checkable; see ``_check_normalizable``).
        """
        beta = cls._beta(beta)
        return cls([unconditional, conditional], [1.0 - beta, beta], **kwargs)

    def _gaussians(self):
        """The experts' data laws if they are all closed-form Gaussians (AnalyticScore), else None."""
        out = []
        for s in self.scores:
            g = closed_form_gaussian(s.target) if isinstance(s, AnalyticScore) else None
            if g is None:
                return None
            out.append(g)
        return out

    def _component_laws(self):
        """Per expert with b_i != 0, its data law as a GaussianMixture or Gaussian (AnalyticScore), else None."""
        out = []
        for b, s in zip(self.powers, self.scores):
            if b == 0:
                continue
            tgt = s.target if isinstance(s, AnalyticScore) else None
            law = closed_form_gaussian(tgt) if tgt is not None else None
            if law is None and isinstance(tgt, GaussianMixture):
                law = tgt
            if law is None:
                return None
            out.append((b, law))
        return out

    def _check_normalizable(self) -> None:
        """Raise if p~_t = prod_i (q^i_t)^{b_i} is not normalizable at some t of [t_min, T]; warn if undecided.

        Along a direction u the log-density of a mixture falls like -(r^2/2) min_k u^T Lambda_k u (its
        flattest component), so log p~ falls like -(r^2/2) phi(u) with
        phi(u) = sum_i b_i min_k u^T Lambda_ik u = min_J max_I u^T M_JI u, where J picks a component of every
        expert with b_i > 0, I one of every expert with b_i < 0, and M_JI = sum_i b_i Lambda_{i, (J, I)_i}
        (for CFG, M_jk = beta Lambda2_j + (1 - beta) Lambda1_k). p~ is normalizable if phi > 0 on the unit
        sphere and not if phi(u) < 0 for some u. Per J we look for a certificate, weights lambda >= 0 with
        sum_I lambda_I M_JI positive definite (then max_I u^T M_JI u > 0 for every u; the condition is also
        necessary for two matrices, by Dines' theorem, and for commuting ones, by LP duality), or a witness
        u with u^T M_JI u < 0 for all I. Neither (phi = 0 somewhere, or more than two non-commuting
        matrices) gives a warning.
        """
        laws = self._component_laws()
        if laws is None:
            warnings.warn(f"powers={self.powers} include a negative power and the experts are not closed-form "
                          "Gaussian mixtures: whether p~_t is normalizable cannot be checked", RuntimeWarning,
                          stacklevel=3)
            return
        p = self.process
        undecided = None
        for t in torch.linspace(p.t_min, p.T, 65, dtype=torch.float64).tolist():
            precs = []
            for b, law in laws:
                nl = law.noised(p.alpha(t), p.sigma(t))
                covs = nl.covs if isinstance(nl, GaussianMixture) else nl.cov[None]
                precs.append((b, torch.linalg.inv(covs.to(torch.float64))))
            verdict, u = _tail_verdict(precs)
            if verdict == "fail":
                raise ValueError(
                    f"powers={self.powers}: p~_t is not normalizable at t = {t:.4g}: the combined precision "
                    f"sum_i b_i Lambda_i(t) of the flattest components is not positive definite (the density "
                    f"grows like exp(+c r^2) along u = {[round(v, 4) for v in u.tolist()]}). Classifier-free "
                    f"guidance with beta > 1 needs (1 - beta) Lambda_1 + beta Lambda_2 > 0 for the components "
                    f"that dominate each tail; lower beta")
            if verdict == "undecided" and undecided is None:
                undecided = t
        if undecided is not None:
            warnings.warn(f"powers={self.powers}: normalizability of p~_t could not be decided at t = {undecided:.4g} "
                          "(the tail exponent is zero in some direction, or no certificate was found for more "
                          "than two non-commuting components); results may be meaningless", RuntimeWarning,
                          stacklevel=3)

    # ---- drift and weight (particle-free) -----------------------------------------------
    def _terms(self, x: Tensor, t: float) -> Tuple[Tensor, Tensor]:
        f = self.process.f(t)
        g2 = self.process.g2(t)
        s_b = torch.zeros_like(x)
        sq = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for b, sm in zip(self.powers, self.scores):
            s = sm._score(x, t)
            s_b = s_b + b * s
            sq = sq + b * (s * s).sum(1)
        drift = -f * x + 0.5 * (1.0 + self.zeta ** 2) * g2 * s_b
        rate = (sum(self.powers) - 1.0) * x.shape[1] * f + 0.5 * g2 * ((s_b * s_b).sum(1) - sq)
        return drift, rate

    def drift(self, x: Tensor, t: float) -> Tensor:
        """Generation-time drift v(x, t) = -f x + (1 + zeta^2)/2 g^2 sum_i b_i s_i, shape (n, d)."""
        return self._terms(check_points(x, self.dim), self._time(t))[0]

    def log_weight_rate(self, x: Tensor, t: float) -> Tensor:
        """Log-weight rate per unit generation time (log w += rate * Delta), shape (n,)."""
        return self._terms(check_points(x, self.dim), self._time(t))[1]

    def pde_residual(self, x: Tensor, t: float) -> Tensor:
        """Feynman-Kac PDE residual of the unnormalized path p~_t = prod_i (q^i_t)^{b_i} at (x, t), shape (n,).

        With tau = -t (generation time), v = ``drift`` and w = ``log_weight_rate``,

            d_tau log p~ + div v + <v, grad log p~> - (zeta^2 g^2 / 2)(Lap log p~ + ||grad log p~||^2) - w,

        by autograd (exact Hessians and time derivative). It is zero at every x when drift, noise
        and weight are right (it may only be constant in x for the normalized path), and of order
        one for a wrong sign or time direction: a particle-free check of Props 3.1-3.3.
        Needs experts that know ``log_prob(x, t)`` (``AnalyticScore``); use float64.
        """
        x = check_points(x, self.dim)
        t = self._time(t)
        for i, s in enumerate(self.scores):
            if not hasattr(s, "log_prob"):
                raise TypeError(f"scores[{i}] has no log_prob(x, t): the residual needs the experts' densities")
        n, d = x.shape
        with torch.enable_grad():
            tt = torch.full((n,), t, dtype=x.dtype, device=x.device, requires_grad=True)
            xx = x.detach().clone().requires_grad_(True)
            lp = sum(b * s.log_prob(xx, tt) for b, s in zip(self.powers, self.scores))
            gx, gt = torch.autograd.grad(lp.sum(), (xx, tt), create_graph=True)
            lap = sum(torch.autograd.grad(gx[:, i].sum(), xx, retain_graph=True)[0][:, i] for i in range(d))
            v, rate = self._terms(xx, t)
            div = sum(torch.autograd.grad(v[:, i].sum(), xx, retain_graph=True)[0][:, i] for i in range(d))
            g2 = self.process.g2(t)
            res = (-gt + div + (v * gx).sum(1) - 0.5 * self.zeta ** 2 * g2 * (lap + (gx * gx).sum(1)) - rate)
        return res.detach()

    def _time(self, t) -> float:
        t = float(t)
        if not 0.0 <= t <= self.process.T:
            raise ValueError(f"t must lie in [0, {self.process.T}], got {t}")
        return t

    # ---- start law ----------------------------------------------------------------------
    def initial(self, n: int, generator: Optional[torch.Generator] = None, *, t: Optional[float] = None,
                proposal: str = "exact", dtype=torch.float64, device=None) -> Tuple[Tensor, Tensor]:
        """Particles and initial log-weights for p~_t at the start time t (default process.T).

        ``proposal="exact"``: exact draws from p~_t (Gaussian experts only), zero log-weights.
        ``"annealed"``: N(0, prior_var / B I), the Gaussian approximation of prod_i N(0, prior_var I)^{b_i};
        ``"prior"``: the process prior. For these two the log-weight is log p~_t - log proposal when the
        experts know their densities (AnalyticScore), making the start exact in the weighted sense;
        otherwise it is zero and the proposal is an approximation of p~_t.
        """
        n = check_count(n, "n")
        p = self.process
        t = p.T if t is None else self._time(t)
        device = torch.device(device) if device is not None else torch.device("cpu")
        check_generator(generator, device)
        gauss = self._gaussians()
        zeros = torch.zeros(n, dtype=dtype, device=device)
        if proposal == "exact":
            if gauss is None:
                raise ValueError('proposal="exact" needs closed-form Gaussian experts (AnalyticScore); '
                                 'use "annealed" or "prior"')
            law = Product(*[g.noised(p.alpha(t), p.sigma(t)) for g in gauss], powers=self.powers)
            return law.sample(n, generator, dtype=dtype, device=device), zeros
        if proposal not in ("annealed", "prior"):
            raise ValueError(f'proposal must be "exact", "annealed" or "prior", got {proposal!r}')
        var = p.prior_var / (sum(self.powers) if proposal == "annealed" else 1.0)
        prop = Gaussian(torch.zeros(self.dim, dtype=torch.float64, device=device), var, dtype=dtype)
        x = prop.sample(n, generator, dtype=dtype, device=device)
        if not all(isinstance(s, AnalyticScore) for s in self.scores):
            return x, zeros
        log_pt = sum(b * s.log_prob(x, t) for b, s in zip(self.powers, self.scores))
        return x, log_pt - prop._log_prob(x)

    # ---- the sampler --------------------------------------------------------------------
    def sample(self, x: Tensor, grid: Tensor, *, log_weights: Optional[Tensor] = None,
               generator: Optional[torch.Generator] = None, noise=None, progress: bool = False) -> FKCResult:
        """Run the weighted SDE from ``x`` (n, d) at ``grid[0]`` down the decreasing ``grid``.

        Parameters
        ----------
        x : (n, d) particles at grid[0] (see ``initial``).
        grid : (K+1,) strictly decreasing times in [0, T] (e.g. ``scoresample.solvers.grid``).
        log_weights : (n,) initial log-weights (default zeros).
        generator : explicit torch.Generator for the resampling, and for the SDE noise unless
            ``noise`` is given.
        noise : the SDE's standard-normal draws, as for ``Solver.solve``: a ``Noise`` source
            (``GeneratorNoise``, ``SequenceNoise``, a ``BrownianPath``, ``RecordingNoise``) or
            explicit draws (K, n, d), one per step. Runs can then be coupled across step counts
            (Brownian path) and, without resampling, probed exactly on Gaussian data (the map
            from (x, draws) to the particles is affine).
        progress : a progress bar over the grid's steps.
        """
        from tqdm.auto import tqdm
        x = check_points(x, self.dim)
        grid = torch.as_tensor(grid, dtype=torch.float64).flatten().tolist()
        if len(grid) < 2 or any(not b < a for a, b in zip(grid[:-1], grid[1:])):
            raise ValueError("grid must hold at least two strictly decreasing times")
        if grid[-1] < 0 or grid[0] > self.process.T:
            raise ValueError(f"grid must lie in [0, {self.process.T}]")
        check_generator(generator, x.device)
        src: Noise = GeneratorNoise(generator) if noise is None else as_noise(None, noise)
        n = x.shape[0]
        if log_weights is None:
            log_w = torch.zeros(n, dtype=torch.float64, device=x.device)
        else:
            log_w = check_log_weights(log_weights).to(torch.float64)
            if log_w.shape[0] != n:
                raise ValueError(f"log_weights must have shape ({n},), got {tuple(log_w.shape)}")
        log_z = 0.0
        ess_trace, resampled = [], []
        steps = list(zip(grid[:-1], grid[1:]))
        for t0, t1 in tqdm(steps, desc="FeynmanKac", disable=not progress, leave=False):
            delta = t0 - t1
            drift, rate = self._terms(x, t0)
            log_w = log_w + (rate * delta).to(torch.float64)
            x = x + drift * delta + self.zeta * math.sqrt(self.process.g2(t0) * delta) * src(x, t0, t1)
            lse = torch.logsumexp(log_w, 0)
            if not torch.isfinite(lse):
                raise ValueError(f"log-weights became non-finite at t = {t1:.4g}")
            e = _ess(log_w).item()
            ess_trace.append(e)
            in_window = self.window is None or self.window[0] <= t1 <= self.window[1]
            do = self.resampling is not None and in_window and e < self.ess_threshold * n
            if do:
                log_z += (lse - math.log(n)).item()
                idx = _resample(torch.softmax(log_w, 0), n, self.resampling, generator)
                x, log_w = x[idx], torch.zeros_like(log_w)
            resampled.append(do)
        log_z += (torch.logsumexp(log_w, 0) - math.log(n)).item()
        min_ess = min(ess_trace)
        return FKCResult(x, log_w, log_z, torch.tensor(ess_trace, dtype=torch.float64), torch.tensor(resampled),
                         min_ess, min_ess < 1.0 + 1e-6, len(self.scores) * (len(grid) - 1))
