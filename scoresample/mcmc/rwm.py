"""Random-walk Metropolis: the gradient-free Metropolis kernel."""
from __future__ import annotations

import math

import torch

from .base import Info, Kernel, State, accept, axpy, finite_rows, select, sqrt

Tensor = torch.Tensor


class RWM(Kernel):
    """Random-walk Metropolis (Metropolis et al. 1953): proposal y = x + sqrt(2h) xi, accepted with
    probability min(1, pi(y) / pi(x)).

    Gradient-free: one log-density evaluation per step, no score. The proposal variance 2h puts
    ``step_size`` on MALA's scale (MALA's noise term is the same). ``State.score`` is an empty
    (n, 0) tensor. A non-finite proposal or a NaN density is rejected and flagged ``is_divergent``.

    Parameters
    ----------
    target : Target with a log density (no score needed)
    step_size : float, h > 0 (overridable per ``step`` call, also as an (n,) tensor)

    References
    ----------
    Metropolis, Rosenbluth, Rosenbluth, Teller & Teller, "Equation of state calculations by fast
    computing machines", J. Chem. Phys. 1953. Roberts, Gelman & Gilks, "Weak convergence and optimal
    scaling of random walk Metropolis algorithms", Ann. Appl. Probab. 1997 (acceptance 0.234).
    """

    n_uniform = 1
    metropolis = True
    needs_score = False
    default_target_accept = 0.234

    def _eval(self, x: Tensor):
        return self.target._log_prob(x), x.new_zeros(x.shape[0], 0)

    def _step(self, state, noise, **params):
        h = self._params(params)["step_size"]
        y = axpy(state.position, sqrt(2.0 * h), noise.normal[0])
        lp, s = self._eval(y)
        ok = finite_rows(y, lp, s)                  # s is (n, 0): position finite, log_prob not NaN / +inf
        log_r = torch.where(ok, lp - state.log_prob, torch.full_like(lp, -math.inf))
        acc, prob = accept(log_r, noise.uniform[0])
        new = State(select(acc, y, state.position), torch.where(acc, lp, state.log_prob), s, None, state.count + 1)
        return new, Info(prob, acc, ~ok, 0, 1)
