"""Probability-flow ODE solvers: DDIM, EDM Euler/Heun, DPM-Solver, DPM-Solver++ and UniPC.

The probability-flow ODE of a process ``x_t = alpha_t x_0 + sigma_t eps`` is
``dx/dt = f(t) x - g(t)^2/2 s(x, t)``. In ``lambda = log(alpha/sigma)`` its linear part
integrates exactly (Lu et al. 2022): for a step s -> t with ``h = lambda_t - lambda_s > 0``

    noise form: x_t = (alpha_t/alpha_s) x_s - sigma_t int_0^h e^{u} eps_hat(lambda_s + u) du
    data form:  x_t = (sigma_t/sigma_s) x_s + alpha_t int_0^h e^{u-h} x0_hat(lambda_s + u) du

and a Taylor expansion of the prediction gives the exponential-integrator weights
``h^{k+1} phi_{k+1}(+-h)``, ``phi_k(z) = sum_j z^j/(j+k)!``. The ``phi_k`` are evaluated by
their series for |z| < 1, so no coefficient loses digits to cancellation at small h.

Every solver here is deterministic except DDIM with eta > 0; each declares ``order``
(its global order on smooth problems) and accepts ``final_step="none"|"denoise"``
(a last Tweedie jump ``x <- x0_hat(x, t_min)``, one extra score evaluation; the
trajectory then ends with the denoised state).
"""
from __future__ import annotations

import functools
import math
from typing import Callable, List, NamedTuple, Optional, Tuple

import numpy as np
import torch

from .base import LinComb as L
from .base import Noise, Solver

Tensor = torch.Tensor
Flow = Callable[[Tensor, float, float], Tensor]

_FINAL_STEPS = ("none", "denoise")
_WARM_STARTS = ("lower_order", "singlestep", "exact")


@functools.lru_cache(maxsize=4096)  # a grid's steps repeat across solves; the series costs ~10 us
def _phi(k: int, z: float) -> float:
    """phi_k(z) = sum_{j>=0} z^j / (j + k)!  (phi_0 = e^z, phi_1 = (e^z - 1)/z, ...), accurate at small z."""
    if abs(z) < 1.0:
        term, total = 1.0 / math.factorial(k), 0.0
        for j in range(40):
            total += term
            term *= z / (j + k + 1)
            if abs(term) < 1e-18 * abs(total):
                break
        return total + term
    val = math.expm1(z) / z  # phi_1, then phi_{j+1} = (phi_j - 1/j!)/z
    for j in range(1, k):
        val = (val - 1.0 / math.factorial(j)) / z
    return math.exp(z) if k == 0 else val


class _Grid(NamedTuple):
    """Per-grid-time coefficients as Python floats (computed once per solve)."""

    t: List[float]
    alpha: List[float]
    sigma: List[float]
    lam: List[float]


def _grid_coefs(process, grid: Tensor) -> _Grid:
    return _Grid(grid.tolist(), process.alpha(grid).tolist(), process.sigma(grid).tolist(),
                 process.lambda_(grid).tolist())


def _check_choice(value, name: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


class _PFODESolver(Solver):
    """Shared machinery: the final denoising jump, score views, and coefficients at any lambda."""

    exponential: bool = False  # exponential integrators need sigma > 0 (finite lambda) at every grid time

    def __init__(self, *, final_step: str = "none", progress: bool = False):
        super().__init__(progress=progress)
        self.final_step = _check_choice(final_step, "final_step", _FINAL_STEPS)

    def _solve(self, score, x, grid, noise, trajectory):
        process = score.process
        g = _grid_coefs(process, grid)
        if self.exponential and not all(math.isfinite(v) for v in g.lam):
            raise ValueError(f"grid: {type(self).__name__} needs sigma(t) > 0 at every grid time; end the grid at "
                             "t_min > 0 and use final_step='denoise' for a last jump to the data")
        x = self._integrate(score, x, g, noise, trajectory)
        if self.final_step == "denoise" and g.sigma[-1] > 0:
            x = self._x0(score, x, g.t[-1], g.alpha[-1], g.sigma[-1]).tensor()
            if trajectory is not None:
                trajectory.append(x)
        return x

    def _integrate(self, score, x: Tensor, g: _Grid, noise: Noise, trajectory) -> Tensor:
        raise NotImplementedError

    # The views are lazy linear combinations (``LinComb``) of x and the score: a step's formula is
    # written as in the paper and evaluated in one fused sweep per tensor by ``.tensor()``.
    @staticmethod
    def _eps(score, x, t, alpha, sigma) -> L:
        """Noise prediction ``-sigma s(x, t)``."""
        return L(score._score(x, t)) * -sigma

    @staticmethod
    def _x0(score, x, t, alpha, sigma) -> L:
        """Data prediction (Tweedie) ``(x + sigma^2 s(x, t)) / alpha``."""
        return (L(x) + L(score._score(x, t)) * (sigma * sigma)) / alpha

    @staticmethod
    def _stages(process, g: _Grid, r: float, n: Optional[int] = None):
        """(t, alpha, sigma) lists at ``lambda_i + r h_i`` for the first ``n`` intervals (all by default;
        intermediate stages of singlestep methods), computed in one vectorised call."""
        lam = torch.tensor(g.lam if n is None else g.lam[:n + 1], dtype=torch.float64)
        t = process.t_of_lambda(lam[:-1] + r * (lam[1:] - lam[:-1]))
        return list(zip(t.tolist(), process.alpha(t).tolist(), process.sigma(t).tolist()))


# ------------------------------------------------------------------------------------------
# DDIM, Euler, Heun
# ------------------------------------------------------------------------------------------
class DDIM(_PFODESolver):
    """DDIM, Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models" (eq. 12 and 16).

    One step s -> t: ``x_t = alpha_t x0_hat + sqrt(sigma_t^2 - varsigma^2) eps_hat + varsigma z``,
    with ``varsigma = eta sigma_t sqrt(1 - e^{-2h})``, ``h = lambda_t - lambda_s``. For VP this
    is the paper's ``eta sqrt((1 - abar_{t})/(1 - abar_{s})) sqrt(1 - abar_s/abar_t)`` (abar = alpha^2),
    written so that it holds for any process (VE, EDM) as well. ``eta = 0`` is the
    deterministic DDIM (= DPM-Solver-1, first order); ``eta = 1`` is DDPM's ancestral step;
    ``eta > 0`` draws one (n, d) noise per step from the Noise source (weak order 1).

    Parameters
    ----------
    eta : float in [0, 1].
    final_step : "none" | "denoise".
    """

    exponential = True
    order = 1

    def __init__(self, eta: float = 0.0, *, final_step: str = "none", progress: bool = False):
        super().__init__(final_step=final_step, progress=progress)
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be a number in [0, 1], got {eta!r}")
        self.eta = float(eta)
        self.stochastic = self.eta > 0

    def _integrate(self, score, x, g, noise, trajectory):
        for i, t_s, t_t in self._steps(torch.tensor(g.t, dtype=torch.float64)):
            a_s, s_s, a_t, s_t = g.alpha[i], g.sigma[i], g.alpha[i + 1], g.sigma[i + 1]
            h = g.lam[i + 1] - g.lam[i]
            eps = self._eps(score, x, t_s, a_s, s_s)
            if self.eta > 0:
                x0 = (L(x) - eps * s_s) / a_s
                var = (self.eta * s_t) ** 2 * -math.expm1(-2.0 * h)
                x = (x0 * a_t + eps * math.sqrt(max(s_t * s_t - var, 0.0))
                     + L(noise(x, t_s, t_t)) * math.sqrt(var)).tensor()
            else:
                # x_t = (alpha_t/alpha_s) x_s - sigma_t (e^h - 1) eps: the same map, written without cancellation
                x = (L(x) * (a_t / a_s) - eps * (s_t * h * _phi(1, h))).tensor()
            if trajectory is not None:
                trajectory.append(x)
        return x


class Euler(_PFODESolver):
    """Euler's method for the probability-flow ODE, Karras et al. 2022, "Elucidating the Design Space of
    Diffusion-Based Generative Models" (Alg. 1 without the Heun correction).

    Integrates ``dx/dt = f(t) x - g(t)^2/2 s(x, t)`` in t on the given grid, for any process
    (for EDM this is ``dx/dsigma = (x - D(x, sigma))/sigma``). First order.
    """

    order = 1

    @staticmethod
    def _fg2(process, g: _Grid):
        """f and g^2 at every grid time (floats), in one vectorised call each."""
        t = torch.tensor(g.t, dtype=torch.float64)
        return t, process.f(t).tolist(), process.g2(t).tolist()

    @staticmethod
    def _velocity(score, x, i, t, f, g2) -> L:
        """PF-ODE velocity ``f x - g^2/2 s(x, t)`` at grid time ``t = g.t[i]``."""
        return L(x) * f[i] - L(score._score(x, t)) * (0.5 * g2[i])

    def _integrate(self, score, x, g, noise, trajectory):
        t, f, g2 = self._fg2(score.process, g)
        for i, t_s, t_t in self._steps(t):
            x = (L(x) + self._velocity(score, x, i, t_s, f, g2) * (t_t - t_s)).tensor()
            if trajectory is not None:
                trajectory.append(x)
        return x


class Heun(Euler):
    """Heun's second-order method for the probability-flow ODE, Karras et al. 2022, "Elucidating the Design
    Space of Diffusion-Based Generative Models", Alg. 1 (deterministic sampler).

    Euler predictor, trapezoidal corrector; where the next noise level is zero
    (sigma(t_next) = 0, the score is singular) the step stays an Euler step, as in the
    paper. Second order; 2 score evaluations per step.
    """

    order = 2

    def _integrate(self, score, x, g, noise, trajectory):
        t, f, g2 = self._fg2(score.process, g)
        for i, t_s, t_t in self._steps(t):
            dt = t_t - t_s
            v = self._velocity(score, x, i, t_s, f, g2)
            x_e = (L(x) + v * dt).tensor()
            if g.sigma[i + 1] > 0:
                x = (L(x) + (v + self._velocity(score, x_e, i + 1, t_t, f, g2)) * (0.5 * dt)).tensor()
            else:
                x = x_e
            if trajectory is not None:
                trajectory.append(x)
        return x


# ------------------------------------------------------------------------------------------
# DPM-Solver (noise prediction, singlestep)
# ------------------------------------------------------------------------------------------
class DPMSolver(_PFODESolver):
    """DPM-Solver-1/2/3 (singlestep, noise prediction), Lu et al. 2022, "DPM-Solver: A Fast ODE Solver for
    Diffusion Probabilistic Model Sampling in Around 10 Steps" (arXiv 2206.00927), Alg. 1 (r1 = 1/2) and
    Alg. 2 (r1 = 1/3, r2 = 2/3).

    Each grid interval is one step of ``order`` score evaluations at ``lambda_s + r h``;
    global order ``order``. DPM-Solver-1 is DDIM (eta = 0).
    """

    exponential = True

    def __init__(self, order: int = 2, *, final_step: str = "none", progress: bool = False):
        super().__init__(final_step=final_step, progress=progress)
        self.order = _check_order(order, (1, 2, 3))

    def _integrate(self, score, x, g, noise, trajectory):
        process, p = score.process, self.order
        r1, r2 = (0.5, None) if p == 2 else (1.0 / 3.0, 2.0 / 3.0)
        st1 = self._stages(process, g, r1) if p > 1 else None
        st2 = self._stages(process, g, r2) if p > 2 else None
        for i, t_s, t_t in self._steps(torch.tensor(g.t, dtype=torch.float64)):
            a_s, s_s, a_t, s_t = g.alpha[i], g.sigma[i], g.alpha[i + 1], g.sigma[i + 1]
            h = g.lam[i + 1] - g.lam[i]
            X, e0 = L(x), self._eps(score, x, t_s, a_s, s_s)
            x_new = X * (a_t / a_s) - e0 * (s_t * h * _phi(1, h))
            if p == 2:
                t1, a1, s1 = st1[i]
                u = (X * (a1 / a_s) - e0 * (s1 * r1 * h * _phi(1, r1 * h))).tensor()
                d1 = self._eps(score, u, t1, a1, s1) - e0
                x_new = x_new - d1 * (s_t / (2 * r1) * h * _phi(1, h))
            elif p == 3:
                (t1, a1, s1), (t2, a2, s2) = st1[i], st2[i]
                u1 = (X * (a1 / a_s) - e0 * (s1 * r1 * h * _phi(1, r1 * h))).tensor()
                d1 = self._eps(score, u1, t1, a1, s1) - e0
                u2 = (X * (a2 / a_s) - e0 * (s2 * r2 * h * _phi(1, r2 * h))
                      - d1 * (s2 * r2 / r1 * r2 * h * _phi(2, r2 * h))).tensor()
                d2 = self._eps(score, u2, t2, a2, s2) - e0
                x_new = x_new - d2 * (s_t / r2 * h * _phi(2, h))
            x = x_new.tensor()
            if trajectory is not None:
                trajectory.append(x)
        return x


def _check_order(order, allowed) -> int:
    if isinstance(order, bool) or not isinstance(order, int) or order not in allowed:
        raise ValueError(f"order must be one of {allowed}, got {order!r}")
    return order


# ------------------------------------------------------------------------------------------
# multistep data-prediction solvers: DPM-Solver++ and UniPC
# ------------------------------------------------------------------------------------------
class _Multistep(_PFODESolver):
    """History handling shared by multistep solvers (data prediction x0_hat at past lambdas).

    ``warm_start``: the first ``p - 1`` steps lack history. ``"lower_order"`` takes them
    with the highest order the history allows (1, 2, ...): one step of order q has local
    error O(h^{q+1}), so a first-order start caps the global order at 2 wherever the data
    prediction changes along the first step. ``"singlestep"`` takes them with the singlestep
    DPM-Solver++ of order p (2S, 3S; p score evaluations per start-up step, local error
    O(h^{p+1})), which keeps the declared global order (p for DPM-Solver++(pM), p + 1 for
    UniPC-p) at (p - 1)^2 extra evaluations. ``"exact"`` takes them with the exact flow
    ``flow(x, t_from, t_to)`` (e.g. ``validation.exact.exact_flow`` for Gaussian data), so the
    measured error is the multistep method's own.
    ``lower_order_final``: lower the order of the last steps to the number of steps left
    (diffusers' rule; it stabilises very short grids). Off by default: order tests need it off.
    """

    exponential = True
    _corrector = False

    def __init__(self, steps_order: int, *, warm_start: str = "lower_order", lower_order_final: bool = False,
                 flow: Optional[Flow] = None, final_step: str = "none", progress: bool = False):
        super().__init__(final_step=final_step, progress=progress)
        self._p = steps_order
        self.warm_start = _check_choice(warm_start, "warm_start", _WARM_STARTS)
        if warm_start == "exact" and not callable(flow):
            raise ValueError("flow must be a callable flow(x, t_from, t_to) -> x when warm_start='exact' "
                             "(e.g. validation.exact.exact_flow(process, mean, cov) for Gaussian data)")
        if not isinstance(lower_order_final, bool):
            raise TypeError(f"lower_order_final must be a bool, got {type(lower_order_final).__name__}")
        self.lower_order_final = lower_order_final
        self.flow = flow

    def _integrate(self, score, x, g, noise, trajectory):
        N, p = len(g.t) - 1, self._p
        hist: List[tuple] = []  # (lambda, x0_hat as a LinComb), most recent last
        start = min(p - 1, N) if self.warm_start != "lower_order" else 0
        x_T = x
        stages = self._singlestep_stages(score.process, g, p, start) if self.warm_start == "singlestep" else None
        for i in range(start):
            m = L(self._x0(score, x, g.t[i], g.alpha[i], g.sigma[i]).tensor())
            hist.append((g.lam[i], m))
            if self.warm_start == "exact":
                x = self.flow(x_T, g.t[0], g.t[i + 1])
            else:
                x = self._singlestep(score, x, m, g, i, p, stages)
            if trajectory is not None:
                trajectory.append(x)
        prev = None  # the last step's history, for the corrector
        for i, t_s, t_t in self._steps(torch.tensor(g.t, dtype=torch.float64)):
            if i < start:
                continue
            # x0_hat is stored as a tensor: kept lazy (x and the score), the later steps' combinations of
            # nearly cancelling x terms lose up to 2.4x float32 accuracy (2M) for a ~2 % speed gain
            m = L(self._x0(score, x, t_s, g.alpha[i], g.sigma[i]).tensor())
            X = L(x)
            if self._corrector and prev is not None:
                # The corrected state is x + (corrector step - predictor step), a combination of predictions
                # only; kept lazy, it is folded into the next step's sweep instead of costing one of its own.
                X = X + self._correction(prev, m, g, i - 1)
                if trajectory is not None:
                    trajectory[-1] = X.tensor()
            hist.append((g.lam[i], m))
            del hist[:-p]
            order = min(p, len(hist))
            if self.lower_order_final:
                order = min(order, N - i)
            prev = hist[-order:]
            x = self._update(X, prev, g, i).tensor()
            if trajectory is not None:
                trajectory.append(x)
        return x

    def _update(self, X: L, hist, g, i) -> L:
        """One multistep step over interval i from the state ``X`` with the predictions ``hist`` (most recent
        last), as a lazy combination."""
        raise NotImplementedError

    def _correction(self, hist, m_new, g, i) -> L:
        """What re-taking the step over interval i, knowing the prediction ``m_new`` at its end, adds to
        the predictor's result (a combination of predictions)."""
        raise NotImplementedError

    @classmethod
    def _singlestep_stages(cls, process, g: _Grid, q: int, n: Optional[int] = None):
        """Intermediate stages (t, alpha, sigma) of the singlestep DPM-Solver++ of order q on the first n intervals."""
        r1, r2 = (0.5, None) if q == 2 else (1.0 / 3.0, 2.0 / 3.0)
        st1 = cls._stages(process, g, r1, n) if q > 1 else None
        st2 = cls._stages(process, g, r2, n) if q > 2 else None
        return r1, r2, st1, st2

    def _singlestep(self, score, x, m0: L, g: _Grid, i: int, q: int, stages) -> Tensor:
        """One singlestep DPM-Solver++ step of order q (1, 2S, 3S) over interval i, given m0 = x0_hat(x, t_i)
        (a LinComb: lazy, it costs no sweep of its own); q - 1 further score evaluations (Lu et al. 2022,
        DPM-Solver++ Alg. 1, r = 1/2; 3S with r = 1/3, 2/3)."""
        r1, r2, st1, st2 = stages
        s_s, a_t, s_t = g.sigma[i], g.alpha[i + 1], g.sigma[i + 1]
        h = g.lam[i + 1] - g.lam[i]
        X = L(x)
        x_new = X * (s_t / s_s) + m0 * (a_t * h * _phi(1, -h))
        if q == 2:
            t1, a1, s1 = st1[i]
            u = (X * (s1 / s_s) + m0 * (a1 * r1 * h * _phi(1, -r1 * h))).tensor()
            x_new = x_new + (self._x0(score, u, t1, a1, s1) - m0) * (a_t / (2 * r1) * h * _phi(1, -h))
        elif q == 3:
            (t1, a1, s1), (t2, a2, s2) = st1[i], st2[i]
            u1 = (X * (s1 / s_s) + m0 * (a1 * r1 * h * _phi(1, -r1 * h))).tensor()
            d1 = self._x0(score, u1, t1, a1, s1) - m0
            u2 = (X * (s2 / s_s) + m0 * (a2 * r2 * h * _phi(1, -r2 * h))
                  + d1 * (a2 * r2 / r1 * r2 * h * _phi(2, -r2 * h))).tensor()
            d2 = self._x0(score, u2, t2, a2, s2) - m0
            x_new = x_new + d2 * (a_t / r2 * h * _phi(2, -h))
        return x_new.tensor()


class DPMSolverPP(_Multistep):
    """DPM-Solver++ (2S singlestep; 2M and 3M multistep), Lu et al. 2022, "DPM-Solver++: Fast Solver for
    Guided Sampling of Diffusion Probabilistic Models" (arXiv 2211.01095), Alg. 1 and 2; data prediction.

    ``method="singlestep"``: orders 1, 2 (2S, Alg. 1, r = 1/2) and 3 (3S, r = 1/3, 2/3);
    ``order`` score evaluations per grid interval. ``method="multistep"``: orders 1, 2 (2M,
    Alg. 2) and 3 (3M); one evaluation per interval.

    DPM-Solver++(3M): with the backward differences ``D1 ~ h x0'`` and ``D2 ~ h^2 x0''/2``
    the step is ``x_t = (sigma_t/sigma_s) x + alpha_t [h phi_1 m0 + h phi_2 D1 + 2 h phi_3 D2]``
    (``phi_k = phi_k(-h)``), which matches the Taylor expansion of the exact solution to
    third order: ``order = 3``. The reference code (dpm-solver, diffusers, k-diffusion)
    uses ``1 * h phi_3 D2``, an O(h^3) local error, i.e. a second-order method;
    ``reference_compatible=True`` reproduces it and declares ``order = 2``.

    Parameters
    ----------
    order : 1, 2 or 3.
    method : "singlestep" | "multistep".
    warm_start, lower_order_final, flow : multistep start-up and end options (see below).
    reference_compatible : 3M only: the reference codes' phi_3 coefficient (second order).
    final_step : "none" | "denoise".

    Notes
    -----
    ``warm_start="lower_order"`` starts 2M/3M with 1-, 2-step updates (the reference codes'
    rule; it can cap 3M at order 2); ``"singlestep"`` takes the first ``order - 1`` steps with
    2S/3S (``order`` evaluations each: NFE = steps + (order - 1)^2); ``"exact"`` takes them with
    ``flow(x_T, t_0, t_i)``. ``lower_order_final=True`` lowers the order to the number of
    remaining steps (default False).
    """

    def __init__(self, order: int = 2, method: str = "multistep", *, warm_start: str = "lower_order",
                 lower_order_final: bool = False, reference_compatible: bool = False, flow: Optional[Flow] = None,
                 final_step: str = "none", progress: bool = False):
        order = _check_order(order, (1, 2, 3))
        self.method = _check_choice(method, "method", ("singlestep", "multistep"))
        super().__init__(order if method == "multistep" else 1, warm_start=warm_start,
                         lower_order_final=lower_order_final, flow=flow, final_step=final_step, progress=progress)
        if not isinstance(reference_compatible, bool):
            raise TypeError(f"reference_compatible must be a bool, got {type(reference_compatible).__name__}")
        if reference_compatible and not (order == 3 and method == "multistep"):
            raise ValueError("reference_compatible applies only to order=3, method='multistep' (3M)")
        self.reference_compatible = reference_compatible
        self.solver_order = order
        self.order = 2 if reference_compatible else order

    def _integrate(self, score, x, g, noise, trajectory):
        if self.method == "multistep":
            return super()._integrate(score, x, g, noise, trajectory)
        p = self.solver_order
        stages = self._singlestep_stages(score.process, g, p)
        for i, t_s, t_t in self._steps(torch.tensor(g.t, dtype=torch.float64)):
            x = self._singlestep(score, x, self._x0(score, x, t_s, g.alpha[i], g.sigma[i]), g, i, p, stages)
            if trajectory is not None:
                trajectory.append(x)
        return x

    def _update(self, X, hist, g, i):
        s_s, a_t, s_t = g.sigma[i], g.alpha[i + 1], g.sigma[i + 1]
        lam_s, m0 = hist[-1]
        h = g.lam[i + 1] - lam_s
        x_new = X * (s_t / s_s) + m0 * (a_t * h * _phi(1, -h))
        if len(hist) == 2:
            lam_1, m1 = hist[-2]
            r0 = (lam_s - lam_1) / h
            x_new = x_new + (m0 - m1) * (0.5 * a_t * h * _phi(1, -h) / r0)  # Alg. 2: D = m0 + (m0 - m1)/(2 r)
        elif len(hist) == 3:
            (lam_2, m2), (lam_1, m1) = hist[-3], hist[-2]
            r0, r1 = (lam_s - lam_1) / h, (lam_1 - lam_2) / h
            d1_0, d1_1 = (m0 - m1) / r0, (m1 - m2) / r1
            d1 = d1_0 + (d1_0 - d1_1) * (r0 / (r0 + r1))       # ~ h x0'
            d2 = (d1_0 - d1_1) / (r0 + r1)                      # ~ h^2 x0'' / 2
            c3 = 1.0 if self.reference_compatible else 2.0      # Taylor consistency needs 2 (see class docstring)
            x_new = x_new + d1 * (a_t * h * _phi(2, -h)) + d2 * (c3 * a_t * h * _phi(3, -h))
        return x_new


class UniPC(_Multistep):
    """UniPC-p: the UniP-p multistep predictor with the UniC corrector, Zhao et al. 2023, "UniPC: A Unified
    Predictor-Corrector Framework for Fast Sampling of Diffusion Models" (arXiv 2302.04867); data prediction.

    Predictor UniP-p: ``x_t = (sigma_t/sigma_s) x + alpha_t h phi_1(-h) m0 + alpha_t sum_k a_k D_k`` with
    ``D_k = (m_k - m0)/r_k`` the scaled differences to the ``p - 1`` previous predictions
    (``r_k = (lambda_k - lambda_s)/h``). UniC re-takes the same step once the prediction
    ``m_t`` at the new point is known (it is needed for the next step anyway, so no extra
    evaluation) with ``D_t = m_t - m0`` as one more difference: order p + 1.
    The weights solve the order conditions ``sum_k a_k r_k^{n-1} = n! h phi_{n+1}(-h)``,
    n = 1..K, exactly. The paper writes them as ``a_k = -B(h) rho_k`` with a free
    ``B(h) = O(h)``; solving the conditions exactly makes ``B(h) a`` independent of B, so
    this is UniPC with any B(h) whose one-condition cases (UniP-2, UniC-1) use the exact
    weight ``h phi_2(-h)/B(h)`` instead of the paper's limit 1/2 (which differs by O(h) and
    keeps the order). The last step is not corrected (that would cost an evaluation).

    Parameters
    ----------
    order : predictor order p in {1, 2, 3}; the declared ``order`` is p + 1 with the
        corrector, p without (``predictor_order`` keeps p).
    corrector : apply UniC.
    warm_start, lower_order_final, flow, final_step : see DPMSolverPP (``"singlestep"`` starts
        with DPM-Solver++ 2S/3S, whose local error O(h^{p+1}) keeps the order p + 1).
    """

    def __init__(self, order: int = 2, *, corrector: bool = True, warm_start: str = "lower_order",
                 lower_order_final: bool = False, flow: Optional[Flow] = None, final_step: str = "none",
                 progress: bool = False):
        p = _check_order(order, (1, 2, 3))
        super().__init__(p, warm_start=warm_start, lower_order_final=lower_order_final, flow=flow,
                         final_step=final_step, progress=progress)
        if not isinstance(corrector, bool):
            raise TypeError(f"corrector must be a bool, got {type(corrector).__name__}")
        self._corrector = corrector
        self.predictor_order = p
        self.order = p + 1 if corrector else p

    @staticmethod
    @functools.lru_cache(maxsize=4096)
    def _weights(h: float, rs: Tuple[float, ...]) -> Tuple[float, ...]:
        """a solving sum_k a_k r_k^{n-1} = n! h phi_{n+1}(-h), n = 1..len(rs) (a K x K Vandermonde system, K <= 3)."""
        K = len(rs)
        R = np.array([[r ** n for r in rs] for n in range(K)])
        b = np.array([math.factorial(n) * h * _phi(n + 1, -h) for n in range(1, K + 1)])
        return tuple(np.linalg.solve(R, b).tolist())

    def _differences(self, hist, g, i, m_new: Optional[L] = None) -> L:
        """``alpha_t sum_k a_k D_k`` of the UniP step over interval i with history ``hist``; with the prediction
        ``m_new`` at its end (``r = 1``) that of the UniC step."""
        lam_s, m0 = hist[-1]
        h = g.lam[i + 1] - lam_s
        rs = [(lam_k - lam_s) / h for lam_k, _ in hist[-2::-1]]
        ds = [(m_k - m0) / r for (_, m_k), r in zip(hist[-2::-1], rs)]
        if m_new is not None:
            rs, ds = rs + [1.0], ds + [m_new - m0]
        out = L(terms={})  # empty for UniP-1
        for a_k, d_k in zip(self._weights(h, tuple(rs)) if rs else [], ds):
            out = out + d_k * (g.alpha[i + 1] * a_k)
        return out

    def _update(self, X, hist, g, i):
        lam_s, m0 = hist[-1]
        h = g.lam[i + 1] - lam_s
        x_new = X * (g.sigma[i + 1] / g.sigma[i]) + m0 * (g.alpha[i + 1] * h * _phi(1, -h))
        return x_new + self._differences(hist, g, i)

    def _correction(self, hist, m_new, g, i):
        # UniC and UniP share the state and m0 terms: only the weighted differences differ
        return self._differences(hist, g, i, m_new) - self._differences(hist, g, i)
