"""rdMC vs ULA and MALA on multimodal mixtures: mode-weight error and W2 vs gradient budget.

Targets: ZOD-MC's four-component 2-D mixture ``rdmc_gmm`` (weights 0.1-0.4, modes up to
11 apart) and SLIPS' ``two_modes(8)`` (weights 2/3, 1/3; rdMC with ``inner="lais"``). rdMC (``scoresample.rdmc.RDMC``,
with the settings of the rdmc-modes suite, ``validation.suites.rdmc_modes.TARGETS``, whose
``run_method`` both use) spends more gradients per particle as its inner chains get longer; ULA
and MALA (step 0.5 / curvature, from N(0, I)) run as many steps as rdMC's budget per particle.

Measured per (method, budget): mode-weight TV (samples assigned to their most responsible
component) and the sample W2 to fresh exact samples (``validation.metrics.w2``), mean over
``reps`` seeds with 95% Student-t bars. This is a measurement, not a test: the figure asserts
nothing about which method wins (PITFALLS.md, rdMC).
"""
from __future__ import annotations

import numpy as np
import torch

from validation.suites.rdmc_modes import METHODS, TARGETS, run_method

from ._common import figure, mean_ci, new_figure, plot_rate, save

# the measurement is shared with the rdmc-modes suite (validation.suites.rdmc_modes.run_method)
FIGURE_TARGETS = ("rdmc_gmm", "two_modes_d8")


def _settings(quick: bool) -> dict:
    if quick:
        return dict(inner_steps=[1, 4, 16], n=200, reps=3)
    return dict(inner_steps=[1, 2, 5, 10, 20], n=500, reps=5)   # ~15 min on 2 cores


def _run(target: str, method: str, inner_steps: int, n: int, seed: int, budget: float = 0.0) -> dict:
    """One seed of one method; ULA / MALA take ``budget`` (rdMC's measured gradients per particle) steps."""
    from validation.metrics import w2
    tgt = TARGETS[target][0]()
    g = torch.Generator().manual_seed(seed)
    r = run_method(target, method, n, g, inner_steps=inner_steps, budget=budget)
    x = r["x"][torch.isfinite(r["x"]).all(1)]
    return {"grads": r["grads"], "tv": r["tv"], "w2": float(w2(x, tgt.sample(n, g))), "finite": int(x.shape[0])}


def measure(ctx) -> dict:
    st = _settings(ctx.quick)
    tab = ctx.table(["target", "method", "inner_steps", "rep"])
    out = {}
    todo = [(t, m, k) for t in FIGURE_TARGETS for m in METHODS for k in st["inner_steps"]]
    for target, method, k in ctx.track(todo, desc="rdmc"):
        # rdMC runs first (METHODS order): the baselines get its measured budget of the same seed
        rows = [tab.measure({"target": target, "method": method, "inner_steps": k, "rep": r},
                            lambda: _run(target, method, k, st["n"], 1000 * ctx.seed + 10 * k + r,
                                         tab.get({"target": target, "method": "rdMC", "inner_steps": k,
                                                  "rep": r})["grads"] if method != "rdMC" else 0.0))
                for r in range(st["reps"])]
        entry = out.setdefault(target, {}).setdefault(method, {"grads": [], "tv": [], "w2": []})
        entry["grads"].append(rows[0]["grads"])
        for f in ("tv", "w2"):
            entry[f].append(mean_ci([r[f] for r in rows]))
    return {t: {m: {f: np.array(v) for f, v in d.items()} for m, d in md.items()} for t, md in out.items()}


@figure("rdmc", title="rdMC vs ULA/MALA on multimodal mixtures: mode-weight TV and W2 vs gradient budget",
        paper="Huang, Dong, Hao, Ma, Zhang, 'Reverse Diffusion Monte Carlo', ICLR 2024 (arXiv 2307.02037)")
def rdmc(ctx):
    st = _settings(ctx.quick)
    data = measure(ctx)
    fig, axes = new_figure(4, width=4.3, height=4.2)
    for j, target in enumerate(FIGURE_TARGETS):
        for f, ax in zip(("tv", "w2"), axes[2 * j: 2 * j + 2]):
            for i, method in enumerate(METHODS):
                r = data[target][method]
                v = r[f]
                plot_rate(ax, r["grads"], v[:, 0], ci=(v[:, 1], v[:, 2]), label=method, color=f"C{i}",
                          marker="os^"[i])
            ax.set_xlabel("gradient evaluations per particle")
            ax.set_ylabel("mode-weight TV" if f == "tv" else f"sample W2 to {st['n']} exact samples")
            ax.set_title(f"{target}: {'mode weights' if f == 'tv' else 'W2'}"
                         f"{' (high MC floor in d = 8)' if j and f == 'w2' else ''}\n{st['n']} particles, "
                         f"{st['reps']} seeds (95% CI)", fontsize=9)
            ticks = data[target]["rdMC"]["grads"]
            ax.set_xticks(ticks, [f"{v:.0f}" for v in ticks])
            if f == "tv":
                ax.set_ylim(top=1.0)
            ax.legend(fontsize=7, loc="best")
    save(fig, ctx.png())
