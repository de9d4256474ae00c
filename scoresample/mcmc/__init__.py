"""MCMC on unnormalized densities: Langevin family, HMC, random-walk Metropolis, step-size adaptation,
the run loop, diagnostics.

Kernels follow the BlackJAX contract, batched over chains: ``state = kernel.init(x0)``,
``state, info = kernel.step(state, generator, step_size=...)``; ``run(kernel, x0, n_steps)``
drives them and returns samples (n_kept, n_chains, d) with diagnostics.
"""
from .adaptation import DualAveraging
from .base import Info, Kernel, Noise, State
from .diagnostics import ess, ess_bulk, ess_tail, split_rhat
from .hmc import HMC
from .langevin import MALA, ULA, AnnealedLangevin, UnderdampedLangevin
from .run import DivergenceError, RunResult, run
from .rwm import RWM

__all__ = ["ULA", "MALA", "UnderdampedLangevin", "HMC", "AnnealedLangevin", "RWM", "run", "RunResult",
           "DivergenceError", "Kernel", "State", "Info", "Noise", "DualAveraging", "ess", "ess_bulk",
           "ess_tail", "split_rhat"]
