"""The MCMC kernel contract: ``init(x0) -> State``, ``step(state, generator) -> (State, Info)``.

Every kernel is batched over chains: positions are (n, d), one row per chain.
``State`` caches ``log_prob`` and ``score`` at the current position so that
nothing is evaluated twice. Step parameters (``step_size``, ...) are constructor
defaults that every ``step`` call may override, so that step-size adaptation and
SMC can move them. Randomness comes from an explicit ``torch.Generator`` or from
explicit noise (``Noise``), which makes the unadjusted kernels exactly probe-able
on Gaussian targets (affine in the state and the noise).

Inner kernels never raise: a non-finite proposal is rejected by Metropolis
kernels and flagged in ``Info.is_divergent``; ``run`` decides what to do.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Tuple, Union

import torch

from .._checks import check_generator
from ..targets.base import Target

Tensor = torch.Tensor
StepSize = Union[float, Tensor]


class State(NamedTuple):
    """Chain state, batched over chains.

    Attributes
    ----------
    position : (n, d)
    log_prob : (n,) log density at ``position`` (NaN where the kernel has none, e.g. annealed Langevin)
    score : (n, d) gradient of the log density at ``position``
    momentum : (n, d) or None, velocity of the underdamped kernels
    count : int, number of steps taken (annealed Langevin reads its noise level from it)
    """

    position: Tensor
    log_prob: Tensor
    score: Tensor
    momentum: Optional[Tensor] = None
    count: int = 0


class Info(NamedTuple):
    """What one transition did, per chain.

    Attributes
    ----------
    acceptance_rate : (n,) Metropolis acceptance probability min(1, r) (1 for unadjusted kernels)
    is_accepted : (n,) bool
    is_divergent : (n,) bool, non-finite proposal (rejected by Metropolis kernels) or, for HMC,
        an energy error above ``divergence_threshold``
    n_grad : int, score evaluations per chain in this transition
    n_log_prob : int, log-density evaluations per chain in this transition
    """

    acceptance_rate: Tensor
    is_accepted: Tensor
    is_divergent: Tensor
    n_grad: int
    n_log_prob: int


class Noise(NamedTuple):
    """Explicit randomness of one transition.

    Attributes
    ----------
    normal : (k, n, d) standard normal draws (k = ``kernel.n_normal``)
    uniform : (m, n) U(0, 1) draws (m = ``kernel.n_uniform``), or None when m = 0
    """

    normal: Tensor
    uniform: Optional[Tensor] = None


def finite_rows(position: Tensor, log_prob: Tensor, score: Tensor) -> Tensor:
    """(n,) bool: position and score finite and log_prob not NaN / +inf (-inf is a legal density 0).

    The per-step check, fused into two row reductions: a row sum is NaN or +-inf exactly when an
    entry is (or when finite entries overflow the dtype, |x| ~ 1e38 in float32, which is flagged too).
    """
    return torch.isfinite(position.sum(-1) + score.sum(-1)) & (log_prob < math.inf)


def axpy(y: Tensor, a: StepSize, x: Tensor, inplace: bool = False) -> Tensor:
    """``y + a x`` in one fused op; ``a`` a float or an (n, 1) tensor. ``inplace`` overwrites ``y``."""
    if isinstance(a, Tensor):
        return y.addcmul_(a, x) if inplace else torch.addcmul(y, a, x)
    return y.add_(x, alpha=a) if inplace else torch.add(y, x, alpha=a)


def check_step_size(value: StepSize, n: Optional[int] = None, name: str = "step_size") -> StepSize:
    """A positive float, or a positive tensor of shape () / (n,) (returned as (n or 1, 1) for broadcasting)."""
    if isinstance(value, Tensor):
        if not torch.is_floating_point(value) or value.ndim > 1 or (
                value.ndim == 1 and n is not None and value.shape[0] not in (1, n)):
            raise ValueError(f"{name} must be a positive float or a floating tensor of shape (n,) = ({n},), "
                             f"got {value.dtype} {tuple(value.shape)}")
        if not bool((value > 0).all()) or not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name} must be > 0 and finite, got values in "
                             f"[{value.min().item():.6g}, {value.max().item():.6g}]")
        return value.reshape(-1, 1)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be > 0 and finite, got {value}")
    return float(value)


def sqrt(h: StepSize) -> StepSize:
    return h.sqrt() if isinstance(h, Tensor) else math.sqrt(h)


class Kernel:
    """Base class of the batched MCMC kernels.

    Subclasses set ``n_normal`` / ``n_uniform`` (draws per transition and chain)
    and implement ``_step(state, noise, **params)``; the public ``init`` and
    ``step`` validate once, the inner loop uses the target's unvalidated fast path
    ``target._log_prob_and_score``.
    """

    n_normal: int = 1
    n_uniform: int = 0
    needs_score: bool = True        # False: the kernel uses log densities only (State.score is (n, 0))
    metropolis: bool = False        # True for kernels with an accept/reject step (adaptable step size)
    step_size: float

    def __init__(self, target: Target, step_size: float):
        if not isinstance(target, Target):
            raise TypeError(f"target must be a scoresample Target, got {type(target).__name__}")
        self.target = target
        self.step_size = check_step_size(step_size)

    # ---- public API ------------------------------------------------------------------
    def init(self, x0: Tensor, generator: Optional[torch.Generator] = None) -> State:
        """Initial state at ``x0`` (n_chains, d): validates ``x0`` and evaluates log_prob and score once."""
        x0 = check_x0(x0, self.target.dim)
        check_generator(generator, x0.device)
        try:
            if self.needs_score:
                lp, s = self.target.log_prob_and_score(x0)
            else:                                        # gradient-free kernels: an empty (n, 0) score
                lp, s = self.target.log_prob(x0), x0.new_zeros(x0.shape[0], 0)
        except NotImplementedError as exc:
            raise TypeError(f"{type(self).__name__} needs a target with a log density and a score; "
                            f"{type(self.target).__name__} has none ({exc})") from exc
        bad = ~(torch.isfinite(s).all(-1) & torch.isfinite(lp))
        if bad.any():
            idx = torch.nonzero(bad).flatten()[:10].tolist()
            raise ValueError(f"x0: log_prob or score is not finite at chains {idx} (start where the density is > 0)")
        return self._init(x0, lp, s, generator)

    def step(self, state: State, generator: Optional[torch.Generator] = None, *,
             noise: Optional[Noise] = None, **params) -> Tuple[State, Info]:
        """One transition of every chain. ``params`` override the constructor's (e.g. ``step_size=``)."""
        if not isinstance(state, State):
            raise TypeError(f"state must be a State from {type(self).__name__}.init, got {type(state).__name__}")
        n = state.position.shape[0]
        if "step_size" in params:
            params["step_size"] = check_step_size(params["step_size"], n)
        if noise is None:
            check_generator(generator, state.position.device)
            noise = self.draw_noise(state.position, generator)
        else:
            self._check_noise(noise, state.position)
        return self._step(state, noise, **params)

    def draw_noise(self, like: Tensor, generator: Optional[torch.Generator] = None) -> Noise:
        """The draws of one transition for chains shaped like ``like`` (n, d)."""
        n = like.shape[0]
        normal = torch.randn((self.n_normal,) + tuple(like.shape), generator=generator,
                             dtype=like.dtype, device=like.device)
        uniform = None
        if self.n_uniform:
            uniform = torch.rand((self.n_uniform, n), generator=generator, dtype=like.dtype, device=like.device)
        return Noise(normal, uniform)

    # ---- helpers ---------------------------------------------------------------------
    def _init(self, x0: Tensor, lp: Tensor, s: Tensor, generator) -> State:
        return State(x0, lp, s)

    def _step(self, state: State, noise: Noise, **params) -> Tuple[State, Info]:
        raise NotImplementedError

    def _eval(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        return self.target._log_prob_and_score(x)

    def _check_noise(self, noise: Noise, like: Tensor) -> None:
        want = (self.n_normal,) + tuple(like.shape)
        if not isinstance(noise, Noise) or tuple(noise.normal.shape) != want:
            raise ValueError(f"noise must be a Noise with normal of shape {want}, "
                             f"got {getattr(getattr(noise, 'normal', None), 'shape', type(noise).__name__)}")
        if self.n_uniform and (noise.uniform is None or tuple(noise.uniform.shape) != (self.n_uniform, like.shape[0])):
            raise ValueError(f"noise.uniform must have shape ({self.n_uniform}, {like.shape[0]})")

    def _params(self, params) -> dict:
        unknown = set(params) - set(self.param_names)
        if unknown:
            raise TypeError(f"{type(self).__name__}.step got unknown parameters {sorted(unknown)}; "
                            f"known: {list(self.param_names)}")
        return {k: params.get(k, getattr(self, k)) for k in self.param_names}

    param_names: Tuple[str, ...] = ("step_size",)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.param_names)
        return f"{type(self).__name__}({self.target!r}, {args})"


def check_x0(x0, dim: int, name: str = "x0") -> Tensor:
    """x0 must be a floating tensor (n_chains, dim) with finite entries."""
    if not isinstance(x0, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (n_chains, {dim}), got {type(x0).__name__}")
    if not torch.is_floating_point(x0):
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x0.dtype}")
    if x0.ndim != 2 or x0.shape[1] != dim or x0.shape[0] < 1:
        raise ValueError(f"{name} must have shape (n_chains, {dim}), got {tuple(x0.shape)}")
    if not bool(torch.isfinite(x0).all()):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return x0


def accept(log_ratio: Tensor, uniform: Tensor) -> Tuple[Tensor, Tensor]:
    """Metropolis test: ``(is_accepted, acceptance probability)``; a NaN or -inf ratio is a rejection.

    ``torch.nan_to_num`` must not be used here: it also maps -inf to the most negative finite float,
    and ``log(0) = -inf`` (``torch.rand`` returns exactly 0 about once in 2^24 float32 draws) would
    then accept a zero-density or diverged proposal.
    """
    log_ratio = torch.where(torch.isnan(log_ratio), torch.full_like(log_ratio, -math.inf), log_ratio)
    return (torch.log(uniform) < log_ratio) & (log_ratio > -math.inf), torch.exp(log_ratio.clamp(max=0.0))


def select(mask: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """Row-wise choice: ``new`` where mask (n,) else ``old``."""
    return torch.where(mask.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)
