"""Tempered sequential Monte Carlo and annealed importance sampling.

The path of targets is the geometric bridge ``pi_b(x) ∝ ref(x)^(1-b) target(x)^b``,
b from 0 to 1. Each step raises b by ``delta``, multiplies the weights by
``exp(delta * (log target - log ref))``, resamples when the ESS falls below a
fraction of the particles, and moves the particles with ``scoresample.mcmc`` MALA,
HMC or (gradient-free) random-walk Metropolis kernels that leave ``pi_b`` invariant. The
normalizer ratio is the product over steps of the weighted mean incremental weight, so
``exp(log_z)`` is an unbiased estimate of Z_target / Z_ref (for a fixed schedule and fixed
kernels); ``log_z`` itself is biased down by about half its variance.

References
----------
Neal, "Annealed Importance Sampling", Statistics and Computing 2001.
Del Moral, Doucet & Jasra, "Sequential Monte Carlo Samplers", JRSS-B 2006.
Jasra, Stephens, Doucet & Tsagaris, "Inference for Lévy-Driven Stochastic Volatility Models via
Adaptive Sequential Monte Carlo", Scand. J. Stat. 2011 (adaptive tempering).
Zhou, Johansen & Aston, "Toward Automatic Model Comparison: An Adaptive Sequential Monte Carlo
Approach", JCGS 2016 (conditional ESS).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence, Tuple

import torch

from .._checks import check_count, check_generator, check_positive
from ..mcmc import HMC, MALA, RWM
from ..mcmc.base import State, select
from ..targets.base import Target
from .particles import SCHEMES, _ess, _resample, check_threshold

Tensor = torch.Tensor


class SMCResult(NamedTuple):
    """Output of ``TemperedSMC.run``.

    Attributes
    ----------
    x : (n, d) final particles.
    log_weights : (n,) final log-weights (weighted particles target ``target``).
    log_z : estimate of log(Z_target / Z_ref) (add the reference's log-normalizer for log Z).
    log_z_var : delta-method estimate of Var(log_z): sum over resampling segments of
        1/ESS - 1/n (ignores the correlations that resampling induces).
    betas : (K+1,) the tempering schedule, 0 ... 1.
    ess : (K,) ESS after each reweighting (before resampling).
    resampled : (K,) bool, whether the step resampled.
    acceptance : (K,) mean acceptance probability of each step's moves.
    n_grad : gradient evaluations of the target, summed over particles (0 with ``kernel="rwm"``).
    min_ess : smallest ESS seen; ``collapsed`` is True when it reached 1 (one particle
        carried all the weight).
    n_logp : log-density evaluations of the target, summed over particles.
    """

    x: Tensor
    log_weights: Tensor
    log_z: float
    log_z_var: float
    betas: Tensor
    ess: Tensor
    resampled: Tensor
    acceptance: Tensor
    n_grad: int
    min_ess: float
    collapsed: bool
    n_logp: int = 0


class _Bridge(Target):
    """The tempered density ``ref^(1 - beta) target^beta`` as a Target for the MCMC kernels.

    It remembers the parts ``(log ref, grad log ref, log target, grad log target)`` of its most
    recent evaluation, so that the sampler keeps both caches without evaluating anything twice:
    MALA and HMC evaluate their proposal last, and the sampler keeps these parts where the
    proposal was accepted.
    """

    def __init__(self, ref: Target, tgt: Target, with_score: bool = True):
        self.ref, self.tgt, self.dim, self.beta = ref, tgt, tgt.dim, 0.0
        self.with_score = with_score
        self.dtype, self.device = tgt.dtype, tgt.device
        self.last: Optional[Tuple[Tensor, Tensor, Tensor, Tensor]] = None

    def parts(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        if not self.with_score:                  # gradient-free moves: empty (n, 0) gradients
            empty = x.new_zeros(x.shape[0], 0)
            return self.ref._log_prob(x), empty, self.tgt._log_prob(x), empty
        return (*self.ref._log_prob_and_score(x), *self.tgt._log_prob_and_score(x))

    def combine(self, lr, gr, lt, gt) -> Tuple[Tensor, Tensor]:
        b = self.beta
        # beta = 0 or 1 exactly: never multiply an infinite part by 0
        lp = lr if b == 0.0 else lt if b == 1.0 else (1 - b) * lr + b * lt
        s = gr if b == 0.0 else gt if b == 1.0 else (1 - b) * gr + b * gt
        return lp, s

    def _log_prob_and_score(self, x):
        self.last = self.parts(x)
        return self.combine(*self.last)

    def _log_prob(self, x):
        return self._log_prob_and_score(x)[0]

    def _score(self, x):
        return self._log_prob_and_score(x)[1]


KERNELS = ("mala", "hmc", "rwm")


class TemperedSMC:
    """Tempered SMC sampler with adaptive tempering (Del Moral, Doucet & Jasra 2006); AIS without resampling.

    Parameters
    ----------
    reference : tractable Target with an exact sampler (e.g. a Gaussian); ``log_z`` is relative
        to its normalizer.
    target : Target with ``log_prob_and_score`` (a log density alone with ``kernel="rwm"``).
    schedule : optional fixed increasing sequence of betas from 0 to 1. When None the next
        beta is found by bisection so that the conditional ESS of the increment equals
        ``cess`` (Zhou, Johansen & Aston 2016).
    cess : target conditional-ESS fraction in (0, 1] for adaptive tempering.
    resampling : a scheme of ``resample`` or None (never resample: annealed importance sampling).
    ess_threshold : resample when ESS < ess_threshold * n, in (0, 1].
    kernel : "mala", "hmc" or "rwm": the move, ``scoresample.mcmc.MALA`` / ``HMC`` / ``RWM`` on the
        tempered density; "rwm" needs no gradients (random-walk Metropolis, proposal N(x, 2h I)).
    n_moves : kernel steps per tempering step (0: pure importance sampling along the path).
    n_leapfrog : leapfrog steps of an HMC move.
    step_size : initial step size h (MALA proposal y = x + h grad + sqrt(2h) xi; HMC leapfrog step).
    step_spread : every move draws each particle's step size as h exp(step_spread (2U - 1)),
        U ~ U(0, 1) independent of the particle, so one population explores scales a factor
        exp(2 step_spread) apart (the funnel's neck and mouth). The kernel stays invariant (a
        mixture of invariant kernels), unlike per-particle step sizes adapted to each particle's
        own history. 0 disables it.
    adapt : after each move scale h by exp(mean acceptance - target acceptance) (0.574 for MALA,
        0.65 for HMC, 0.234 for RWM; population-wide). Set False for exactly unbiased normalizer estimates.
    max_steps : cap on the number of adaptive tempering steps.

    References
    ----------
    Del Moral, Doucet & Jasra, "Sequential Monte Carlo Samplers", JRSS-B 2006.
    Neal, "Annealed Importance Sampling", Statistics and Computing 2001.
    Beskos, Jasra, Kantas & Thiery, "On the convergence of adaptive sequential Monte Carlo methods",
    Ann. Appl. Probab. 2016 (population-adapted kernels).
    """

    def __init__(self, reference: Target, target: Target, *, schedule: Optional[Sequence[float]] = None,
                 cess: float = 0.9, resampling: Optional[str] = "systematic", ess_threshold: float = 0.5,
                 kernel: str = "mala", n_moves: int = 5, n_leapfrog: int = 5, step_size: float = 0.1,
                 step_spread: float = 0.0, adapt: bool = True, max_steps: int = 10_000):
        for name, t in (("reference", reference), ("target", target)):
            if not isinstance(t, Target):
                raise TypeError(f"{name} must be a Target, got {type(t).__name__}")
        if reference.dim != target.dim:
            raise ValueError(f"reference and target must share a dimension, got {reference.dim} and {target.dim}")
        if not reference.has_sampler:
            raise ValueError("reference must have an exact sampler (e.g. a Gaussian)")
        if resampling is not None and resampling not in SCHEMES:
            raise ValueError(f"resampling must be one of {SCHEMES} or None, got {resampling!r}")
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        self.reference, self.target, self.kernel = reference, target, kernel
        self.cess = check_threshold(cess, "cess")
        self.ess_threshold = check_threshold(ess_threshold, "ess_threshold")
        self.resampling = resampling
        self.n_moves = check_count(n_moves, "n_moves", minimum=0)
        self.n_leapfrog = check_count(n_leapfrog, "n_leapfrog")
        self.step_size = check_positive(step_size, "step_size")
        self.step_spread = check_positive(step_spread, "step_spread", strict=False)
        self.adapt = bool(adapt)
        self.max_steps = check_count(max_steps, "max_steps")
        self.schedule = None if schedule is None else self._check_schedule(schedule)

    @staticmethod
    def _check_schedule(schedule) -> Tensor:
        b = torch.as_tensor(schedule, dtype=torch.float64).flatten()
        if b.numel() < 2 or torch.isnan(b).any():
            raise ValueError("schedule must hold at least two betas and no NaN")
        if b[0] != 0.0 or b[-1] != 1.0 or not (b[1:] > b[:-1]).all():
            raise ValueError("schedule must increase strictly from 0 to 1")
        return b

    @classmethod
    def ais(cls, reference: Target, target: Target, schedule: Sequence[float], **kwargs) -> "TemperedSMC":
        """Annealed importance sampling (Neal 2001): a fixed schedule and no resampling."""
        return cls(reference, target, schedule=schedule, resampling=None, **kwargs)

    def _next_beta(self, beta: float, log_w: Tensor, ell: Tensor) -> float:
        """Largest beta' <= 1 with conditional ESS of exp((beta' - beta) ell) >= cess (bisection)."""
        logW = torch.log_softmax(log_w.to(torch.float64), 0)
        ell = ell.to(torch.float64)
        ell = torch.where(torch.isfinite(ell), ell, torch.full_like(ell, -math.inf))

        def cess(delta: float) -> float:
            # (sum W u)^2 / sum W u^2 with u = exp(delta ell): a fraction in (0, 1]
            return math.exp(2 * torch.logsumexp(logW + delta * ell, 0).item()
                            - torch.logsumexp(logW + 2 * delta * ell, 0).item())

        lo, hi = 0.0, 1.0 - beta
        if cess(hi) >= self.cess:
            return 1.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if cess(mid) >= self.cess else (lo, mid)
        return beta + max(lo, 1e-12)

    def _make_kernel(self, bridge: _Bridge):
        if self.kernel == "hmc":
            return HMC(bridge, self.step_size, self.n_leapfrog)
        return (MALA if self.kernel == "mala" else RWM)(bridge, self.step_size)

    def run(self, n: int, generator: Optional[torch.Generator] = None, *, dtype: Optional[torch.dtype] = None,
            device=None, progress: bool = False) -> SMCResult:
        """Run the sampler with ``n`` particles; randomness only from ``generator``. ``progress``: a bar
        over beta from 0 to 1 (adaptive steps are not known in advance)."""
        from tqdm.auto import tqdm
        n = check_count(n, "n")
        device = torch.device(device) if device is not None else self.reference.device
        check_generator(generator, device)
        x = self.reference.sample(n, generator, dtype=dtype or torch.float64, device=device)
        bridge = _Bridge(self.reference, self.target, with_score=self.kernel != "rwm")
        kern = self._make_kernel(bridge)
        parts = bridge.parts(x)          # (log ref, grad log ref, log target, grad log target) at x
        n_grad, n_logp = (n if bridge.with_score else 0), n
        log_w = torch.zeros(n, dtype=torch.float64, device=device)
        h = self.step_size
        beta, betas, ess_trace, resampled, acc_trace = 0.0, [0.0], [], [], []
        log_z, log_z_var = 0.0, 0.0
        k = 0
        bar = tqdm(total=1.0, desc="TemperedSMC", disable=not progress, leave=False,
                   bar_format="{l_bar}{bar}| beta {n:.3g} [{elapsed}]")
        while beta < 1.0:
            ell = (parts[2] - parts[0]).to(torch.float64)
            if self.schedule is not None:
                new_beta = float(self.schedule[k + 1])
            elif k >= self.max_steps:
                raise ValueError(f"max_steps={self.max_steps} tempering steps did not reach beta = 1 "
                                 f"(beta = {beta:.3g}); raise max_steps or lower cess")
            else:
                new_beta = self._next_beta(beta, log_w, ell)
            delta = new_beta - beta
            inc = torch.where(torch.isfinite(ell), delta * ell, torch.full_like(ell, -math.inf))
            # log of sum_i W_i exp(inc_i): the normalizer-ratio factor of this step
            log_z += (torch.logsumexp(log_w + inc, 0) - torch.logsumexp(log_w, 0)).item()
            log_w = log_w + inc
            if not torch.isfinite(torch.logsumexp(log_w, 0)):
                raise ValueError(f"every particle has zero weight at step {k} (beta = {new_beta:.3g})")
            e = _ess(log_w).item()
            ess_trace.append(e)
            do_resample = self.resampling is not None and e < self.ess_threshold * n
            if do_resample or new_beta == 1.0:
                log_z_var += 1.0 / e - 1.0 / n
            if do_resample:
                idx = _resample(torch.softmax(log_w, 0), n, self.resampling, generator)
                x, parts = x[idx], tuple(a[idx] for a in parts)
                log_w = torch.zeros_like(log_w)
            resampled.append(do_resample)
            bridge.beta = new_beta
            state = State(x, *bridge.combine(*parts))
            acc_sum = 0.0
            for _ in range(self.n_moves):
                hs = h
                if self.step_spread > 0:
                    u = torch.rand(n, generator=generator, dtype=x.dtype, device=device)
                    hs = h * torch.exp(self.step_spread * (2.0 * u - 1.0))
                state, info = kern.step(state, generator, step_size=hs)
                # the bridge's last evaluation is the proposal: keep its parts where it was accepted
                parts = tuple(select(info.is_accepted, new, old) for new, old in zip(bridge.last, parts))
                n_grad += n * info.n_grad
                n_logp += n * info.n_log_prob
                rate = info.acceptance_rate.mean().item()
                acc_sum += rate
                if self.adapt:
                    h = h * math.exp(rate - kern.default_target_accept)
            x = state.position
            acc_trace.append(acc_sum / max(self.n_moves, 1))
            bar.update(new_beta - beta)
            beta = new_beta
            betas.append(beta)
            k += 1
        bar.close()
        min_ess = min(ess_trace)
        return SMCResult(x, log_w, log_z, log_z_var, torch.tensor(betas, dtype=torch.float64),
                         torch.tensor(ess_trace, dtype=torch.float64), torch.tensor(resampled),
                         torch.tensor(acc_trace, dtype=torch.float64), n_grad, min_ess, min_ess < 1.0 + 1e-6, n_logp)
