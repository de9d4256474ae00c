"""``scoresample bench``: samplers on unnormalized benchmark densities at a fixed gradient budget.

Protocol (../shared/BENCHMARKS.md, PITFALLS.md "Benchmarks protocol"):

- **Budget**: ``--budget`` gradient (score) evaluations **per chain**, warm-up, adaptation
  and pilot runs included; a cell runs ``--chains`` chains, so it spends budget x chains
  evaluations in total. ``--budgets`` adds smaller budgets for the error-vs-budget figure.
- **Initial laws** (``INITIAL_LAWS``): gmm40 uniform on [-45, 45]^2; nine_gmm uniform on
  [-7, 7]^2; rdmc_gmm uniform on [-3, 14]^2; many_well, funnel, two_modes and user targets N(0, I).
- **Samplers** (``SAMPLERS``, extend with ``register_sampler``): ``mala`` and ``hmc`` (10 leapfrog
  steps, step size and trajectory jittered by +-20%) adapt their step size by dual averaging
  during the first half of the budget (targets 0.574 / 0.65), then sample; ``ula`` and
  ``underdamped`` (BAOAB, friction 1) take their step size from a MALA dual-averaging pilot
  run on the first 20% of the budget (halved for ULA's bias), then run the rest, half of it
  as burn-in. Chains that become non-finite are dropped and counted. ``smc`` (tempered SMC, particles =
  chains, reference fitted to the initial points), ``rdmc`` and ``rdmc-lais`` (reverse diffusion Monte
  Carlo with the paper's and the mixture-importance-sampling score estimators, their own start law)
  spend the same gradient budget per particle (see ``_smc``, ``_rdmc``).
- **Evaluation set**: ``--n-eval`` draws pooled from the second half of all chains (evenly
  thinned), against as many exact samples of the target.
- **Metrics**, per (target, sampler, budget, seed), mean and 95% t-interval over seeds:
  exact-OT W2 (POT) for d <= 10, sliced W2 (256 fixed projections) above; the Gaussian-kernel
  MMD (biased V-statistic, median bandwidth); the noise floor of both (exact vs exact, same size);
  mode coverage and mode-weight total variation for mixtures (and many_well's per-pair
  deep-well fraction error); bulk ESS per gradient evaluation (min over coordinates,
  all chains' evaluations counted); wall time.

Outputs in ``--out``: ``results.json`` / ``results.csv`` (one row per cell, rewritten
atomically after every cell, so an interrupted run resumes without recomputing finished
cells), ``summary.csv`` / ``summary.json`` (means and CIs over seeds), ``error_vs_budget.png``.
"""
from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import math
import time
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional

import numpy as np
import torch

from .targets.base import Target
from .utils import atomic_savefig, atomic_write_text

Tensor = torch.Tensor


class SamplerOutput(NamedTuple):
    """What a registered sampler returns: ``samples`` (n, d) to evaluate, gradient evaluations per
    chain actually spent, bulk ESS per gradient evaluation (NaN if unknown), and the number of
    chains that diverged."""

    samples: Tensor
    n_grad: int
    ess_per_grad: float
    diverged: int = 0


SamplerFn = Callable[..., SamplerOutput]   # fn(target, x0, budget, n_eval, generator, progress) -> SamplerOutput
SAMPLERS: Dict[str, SamplerFn] = {}


def register_sampler(name: str, fn: SamplerFn) -> None:
    """Add a sampler to the bench: ``fn(target, x0 (chains, d), budget (grads per chain), n_eval, generator,
    progress) -> SamplerOutput``. SMC, rdMC and diffusion-based samplers plug in here."""
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    SAMPLERS[name] = fn


class BenchTarget(NamedTuple):
    factory: Callable[[], Target]
    initial: Callable[[int, int, torch.Generator, torch.dtype], Tensor]   # (n, d, generator, dtype) -> x0
    initial_doc: str


def _uniform(lo: float, hi: float):
    def draw(n, d, g, dtype):
        return lo + (hi - lo) * torch.rand(n, d, generator=g, dtype=dtype)
    return draw


def _normal(n, d, g, dtype):
    return torch.randn(n, d, generator=g, dtype=dtype)


INITIAL_LAWS = {"gmm40": (_uniform(-45.0, 45.0), "uniform on [-45, 45]^2"),
                "nine_gmm": (_uniform(-7.0, 7.0), "uniform on [-7, 7]^2"),
                "rdmc_gmm": (_uniform(-3.0, 14.0), "uniform on [-3, 14]^2")}
TARGETS: Dict[str, BenchTarget] = {}


def register_target(name: str, factory: Callable[[], Target], initial=None, initial_doc: str = "N(0, I)") -> None:
    """Add a target (e.g. ``lambda: Target.from_log_prob(fn, dim, sample=...)``); ``initial(n, d, generator,
    dtype)`` draws the chains' starting points (default N(0, I))."""
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {type(factory).__name__}")
    TARGETS[name] = BenchTarget(factory, initial or _normal, initial_doc)


def _builtin_targets() -> None:
    from .targets.benchmarks import BENCHMARKS
    for name, bm in BENCHMARKS.items():
        if name not in TARGETS:
            init, doc = INITIAL_LAWS.get(name, (_normal, "N(0, I)"))
            register_target(name, bm, init, doc)


# ---- samplers ------------------------------------------------------------------------------------
def _pool(samples: Tensor, n_eval: int, generator) -> Tensor:
    """n_eval draws from (n_kept, chains, d), evenly spread over time and chains."""
    flat = samples.reshape(-1, samples.shape[-1])
    flat = flat[torch.isfinite(flat).all(-1)]
    if flat.shape[0] <= n_eval:
        return flat
    idx = torch.linspace(0, flat.shape[0] - 1, n_eval).round().long()
    return flat[idx]


def _mcmc(kernel, x0, steps: int, n_eval: int, generator, progress: bool, adapt: bool) -> SamplerOutput:
    from .mcmc import run
    burn = steps // 2
    n_steps = max(steps - burn, 1)
    per_chain = max(1, math.ceil(n_eval / x0.shape[0]))
    thin = max(1, n_steps // per_chain)
    r = run(kernel, x0, n_steps, burn_in=burn, thin=thin, adapt=adapt and burn > 0, generator=generator,
            on_divergence="drop", progress=progress)
    ess = r.ess_per_grad if r.samples.shape[0] >= 4 else math.nan
    return SamplerOutput(_pool(r.samples, n_eval, generator), r.n_grad, ess,
                         int((r.diverged_at >= 0).sum()))


def _pilot_step(target, x0, grads: int, generator, progress):
    """(step size, final positions, gradients used) of a MALA dual-averaging run of ``grads`` steps."""
    from .mcmc import MALA, run
    r = run(MALA(target, 0.1), x0, 1, burn_in=max(grads - 1, 1), adapt=True, generator=generator,
            on_divergence="drop", progress=progress)
    return r.step_size, r.state.position, r.n_grad


def _mala(target, x0, budget, n_eval, generator, progress):
    from .mcmc import MALA
    return _mcmc(MALA(target, 0.1), x0, budget, n_eval, generator, progress, adapt=True)


def _hmc(target, x0, budget, n_eval, generator, progress):
    from .mcmc import HMC
    n_leap = 10
    return _mcmc(HMC(target, 0.1, n_leap, jitter=0.2, jitter_steps=False), x0, max(budget // n_leap, 2),
                 n_eval, generator, progress, adapt=True)


def _unadjusted(make, scale):
    def sampler(target, x0, budget, n_eval, generator, progress):
        pilot = max(budget // 5, 2)
        h, x1, used = _pilot_step(target, x0, pilot, generator, progress)
        out = _mcmc(make(target, scale * h), x1, max(budget - used, 2), n_eval, generator, progress, adapt=False)
        ess = out.ess_per_grad * out.n_grad / (out.n_grad + used) if math.isfinite(out.ess_per_grad) else math.nan
        return SamplerOutput(out.samples, out.n_grad + used, ess, out.diverged)
    return sampler


def _smc(target, x0, budget, n_eval, generator, progress):
    """Tempered SMC (MALA moves, 10 per step) from a Gaussian fitted to x0 (mean, diagonal variance) to the
    target on the fixed schedule beta_k = (k/K)^4 with K = (budget - 1) // 10; particles = chains, resampled
    by their final weights to n_eval draws."""
    from .smc import TemperedSMC, resample
    from .targets import Gaussian
    n_moves = 10 if budget >= 21 else 1
    steps = max((int(budget) - 1) // n_moves, 1)
    var = x0.var(0).clamp_min(1e-6) if x0.shape[0] > 1 else torch.ones_like(x0[0])
    ref = Gaussian(x0.mean(0), torch.diag(var), dtype=x0.dtype)
    schedule = (torch.arange(steps + 1, dtype=torch.float64) / steps) ** 4
    res = TemperedSMC(ref, target, schedule=schedule.tolist(), n_moves=n_moves).run(x0.shape[0], generator,
                                                                                   dtype=x0.dtype)
    idx = resample(res.log_weights, n_eval, generator=generator)
    return SamplerOutput(res.x[idx], res.n_grad // x0.shape[0], math.nan, 0)


def _rdmc(target, x0, budget, n_eval, generator, progress, inner="mala"):
    """rdMC with as many outer steps as the gradient budget allows, T = 2, 2 ULA steps on p_T.
    ``inner="mala"`` (sampler ``rdmc``): the paper's estimator, 4 chains x 5 steps per score estimate from
    256 importance draws; ``inner="lais"`` (``rdmc-lais``): 16 chains x 2 steps, mixture importance
    weights over 64 draws. Its start law is its own (N(0, I) then ULA on p_T), not x0; density
    evaluations (importance draws) are not gradients and are not counted in the budget."""
    from .rdmc import RDMC
    init, (m, k) = 2, ((16, 2) if inner == "lais" else (4, 5))
    if (init + 1) * m * (k + 1) > budget:
        m, k = 1, 1
    steps = max(int(budget) // (m * (k + 1)) - init, 1)
    res = RDMC(target, T=2.0, n_steps=steps, inner=inner, inner_samples=m, inner_steps=k,
               is_samples=64 if inner == "lais" else 256, init_steps=init).sample(
                   x0.shape[0], generator, dtype=x0.dtype, progress=progress)
    return SamplerOutput(_pool(res.x[None], n_eval, generator), res.n_grad // x0.shape[0], math.nan, 0)


def _builtin_samplers() -> None:
    from .mcmc import ULA, UnderdampedLangevin
    defaults = {"ula": _unadjusted(lambda t, h: ULA(t, h), 0.5),
                "mala": _mala, "hmc": _hmc,
                "underdamped": _unadjusted(lambda t, h: UnderdampedLangevin(t, h, friction=1.0), 1.0),
                "smc": _smc, "rdmc": _rdmc, "rdmc-lais": functools.partial(_rdmc, inner="lais")}
    for k, v in defaults.items():
        SAMPLERS.setdefault(k, v)


# ---- metrics ---------------------------------------------------------------------------------------
def _metrics(target: Target, name: str, x: Tensor, ref: Tensor, ref2: Tensor, generator) -> dict:
    from validation import metrics as M
    d = target.dim
    out = {}
    if x.shape[0] < 2:
        return {"dist": math.nan, "mmd": math.nan}
    if d <= 10:
        dist = lambda a, b: M.w2(a, b)  # noqa: E731
        out["dist_kind"] = "w2"
    else:
        proj = torch.randn(256, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        dist = lambda a, b: M.sliced_w2(a, b, projections=proj)  # noqa: E731
        out["dist_kind"] = "sliced_w2"
    out["dist"] = dist(x, ref)
    out["dist_floor"] = dist(ref2, ref)
    out["mmd"] = M.mmd(x, ref, estimator="biased")
    out["mmd_floor"] = M.mmd(ref2, ref, estimator="biased")
    try:
        from .targets import benchmarks as B
        if name == "many_well" or isinstance(target, B.ManyWell):
            out["mode_weight_error"] = float((B.well_positive_fraction(x) - B.MANY_WELL_POSITIVE_MASS).abs().mean())
        else:
            w, w_ref = B.mode_weights(target, x), B.reference_mode_weights(target)
            out["mode_weight_error"] = 0.5 * float((w - w_ref).abs().sum())      # total variation
            out["mode_coverage"] = float((w > 0).double().mean())
    except (TypeError, ValueError, ImportError):
        pass
    return out


# ---- bookkeeping -----------------------------------------------------------------------------------------
FIELDS = ["target", "sampler", "budget", "seed", "chains", "n_eval", "dist_kind", "dist", "dist_floor", "mmd",
          "mmd_floor", "mode_coverage", "mode_weight_error", "ess_per_grad", "n_grad", "diverged", "wall_s"]
METRICS = ["dist", "dist_floor", "mmd", "mmd_floor", "mode_coverage", "mode_weight_error", "ess_per_grad",
           "wall_s"]


def _csv(rows: List[dict], fields: List[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in fields})
    return buf.getvalue()


def _key(r: dict) -> tuple:
    return (r["target"], r["sampler"], int(r["budget"]), int(r["seed"]), int(r["chains"]), int(r["n_eval"]))


def summarize(rows: List[dict]) -> List[dict]:
    """Mean and 95% t-interval over seeds of every metric, per (target, sampler, budget)."""
    from scipy import stats
    groups: Dict[tuple, List[dict]] = {}
    for r in rows:
        groups.setdefault((r["target"], r["sampler"], int(r["budget"])), []).append(r)
    out = []
    for (t, s, b), rs in sorted(groups.items()):
        row = {"target": t, "sampler": s, "budget": b, "seeds": len(rs), "dist_kind": rs[0].get("dist_kind", "")}
        for m in METRICS:
            v = np.array([r[m] for r in rs if isinstance(r.get(m), (int, float)) and math.isfinite(r[m])])
            row[m] = float(v.mean()) if v.size else math.nan
            if v.size >= 2:
                half = stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
                row[m + "_lo"], row[m + "_hi"] = row[m] - half, row[m] + half
            else:
                row[m + "_lo"] = row[m + "_hi"] = math.nan
        out.append(row)
    return out


def _figure(summary: List[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    targets = sorted({r["target"] for r in summary})
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.6), squeeze=False)
    for ax, t in zip(axes[0], targets):
        rows = [r for r in summary if r["target"] == t]
        for s in sorted({r["sampler"] for r in rows}):
            rs = sorted((r for r in rows if r["sampler"] == s), key=lambda r: r["budget"])
            b = [r["budget"] for r in rs]
            y = np.array([r["dist"] for r in rs])
            lo = np.array([r["dist_lo"] for r in rs])
            hi = np.array([r["dist_hi"] for r in rs])
            err = np.where(np.isfinite(lo), np.vstack([y - lo, hi - y]), 0.0)
            ax.errorbar(b, y, yerr=err, marker="o", capsize=3, label=s)
        floor = np.nanmean([r["dist_floor"] for r in rows])
        if math.isfinite(floor):
            ax.axhline(floor, color="k", ls="--", lw=1, label="exact vs exact")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("gradient evaluations per chain")
        ax.set_ylabel(rows[0].get("dist_kind", "dist") + " to exact samples")
        ax.set_title(t)
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)


def _names(value: str, known: Dict, what: str, parser) -> List[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in names if v not in known]
    if unknown or not names:
        parser.error(f"unknown {what} {unknown}; known: {sorted(known)}")
    return names


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``scoresample bench``; returns the exit code."""
    _builtin_targets()
    _builtin_samplers()
    p = argparse.ArgumentParser(prog="scoresample bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default="gmm40,funnel,many_well", help=f"comma list of {sorted(TARGETS)}")
    p.add_argument("--samplers", default="ula,mala,hmc,underdamped", help=f"comma list of {sorted(SAMPLERS)}")
    p.add_argument("--budget", type=float, default=None, help="gradient evaluations per chain (default 1e5; quick 2e3)")
    p.add_argument("--budgets", default=None, help="comma list of budgets for the figure (default budget/16, /4, 1)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5; quick 2)")
    p.add_argument("--chains", type=int, default=None, help="chains per cell (default 256; quick 64)")
    p.add_argument("--n-eval", type=int, default=1000, help="samples compared with as many exact samples")
    p.add_argument("--out", default="bench_out", help="output folder (resumes finished cells)")
    p.add_argument("--quick", action="store_true", help="small budget, few chains and seeds")
    p.add_argument("--float32", action="store_true", help="run the chains in float32 (default float64)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    targets = _names(a.targets, TARGETS, "target(s)", p)
    samplers = _names(a.samplers, SAMPLERS, "sampler(s)", p)
    budget = a.budget if a.budget is not None else (2e3 if a.quick else 1e5)
    seeds = a.seeds if a.seeds is not None else (2 if a.quick else 5)
    chains = a.chains if a.chains is not None else (64 if a.quick else 256)
    if not (math.isfinite(budget) and budget >= 10):
        p.error(f"--budget must be >= 10 gradient evaluations per chain, got {budget}")
    if seeds < 1 or chains < 2 or a.n_eval < 10:
        p.error(f"need --seeds >= 1, --chains >= 2, --n-eval >= 10; got {seeds}, {chains}, {a.n_eval}")
    if a.budgets:
        try:
            budgets = sorted({int(float(b)) for b in a.budgets.split(",")})
        except ValueError:
            p.error(f"--budgets must be a comma list of numbers, got {a.budgets!r}")
    else:
        budgets = sorted({max(int(budget) // 16, 10), max(int(budget) // 4, 10), int(budget)})
    dtype = torch.float32 if a.float32 else torch.float64
    out = Path(a.out)
    res_path = out / "results.json"
    rows = json.loads(res_path.read_text())["cells"] if res_path.exists() else []
    done = {_key(r) for r in rows}
    cells = [(t, s, b, seed) for t in targets for s in samplers for b in budgets for seed in range(seeds)]
    todo = [c for c in cells if (c[0], c[1], c[2], c[3], chains, a.n_eval) not in done]
    print(f"bench: {len(cells)} cells ({len(cells) - len(todo)} already in {res_path}); budget counts gradient "
          f"evaluations per chain incl. warm-up; {chains} chains per cell")
    from tqdm.auto import tqdm
    built: Dict[str, Target] = {}
    for t, s, b, seed in tqdm(todo, desc="bench", disable=a.no_progress):
        if t not in built:
            built[t] = TARGETS[t].factory()
        target = built[t]
        g = torch.Generator().manual_seed(1000 * seed + 17)
        x0 = TARGETS[t].initial(chains, target.dim, g, dtype)
        t0 = time.perf_counter()
        res = SAMPLERS[s](target, x0, b, a.n_eval, g, False)
        wall = time.perf_counter() - t0
        row = {"target": t, "sampler": s, "budget": b, "seed": seed, "chains": chains, "n_eval": a.n_eval,
               "n_grad": int(res.n_grad), "ess_per_grad": float(res.ess_per_grad), "diverged": int(res.diverged),
               "wall_s": wall}
        if getattr(target, "has_sampler", False):
            gr = torch.Generator().manual_seed(10 ** 6 + seed)
            ref = target.sample(a.n_eval, generator=gr).to(torch.float64)
            ref2 = target.sample(res.samples.shape[0] or 1, generator=gr).to(torch.float64)
            row.update(_metrics(target, t, res.samples.to(torch.float64), ref, ref2, g))
        rows.append(row)
        atomic_write_text(res_path, json.dumps({"cells": rows}, indent=1))
        atomic_write_text(out / "results.csv", _csv(rows, FIELDS))
    summary = summarize([r for r in rows if r["target"] in targets and r["sampler"] in samplers
                         and int(r["budget"]) in budgets and int(r["chains"]) == chains])
    sfields = ["target", "sampler", "budget", "seeds", "dist_kind"] + [f"{m}{x}" for m in METRICS
                                                                        for x in ("", "_lo", "_hi")]
    atomic_write_text(out / "summary.csv", _csv(summary, sfields))
    atomic_write_text(out / "summary.json", json.dumps({"protocol": {
        "budget": "gradient evaluations per chain, warm-up/adaptation/pilot included", "chains": chains,
        "n_eval": a.n_eval, "seeds": seeds, "dtype": str(dtype),
        "initial_laws": {t: TARGETS[t].initial_doc for t in targets}}, "summary": summary}, indent=1))
    _figure(summary, out / "error_vs_budget.png")
    _print_summary(summary)
    return 0


def _print_summary(summary: List[dict]) -> None:
    def f(r, m):
        v, lo, hi = r[m], r[m + "_lo"], r[m + "_hi"]
        if not math.isfinite(v):
            return "-"
        return f"{v:.3g}" + (f" ±{(hi - lo) / 2:.2g}" if math.isfinite(lo) else "")
    head = ("target", "sampler", "budget", "dist (floor)", "mmd (floor)", "mode err", "ESS/grad", "wall s")
    print("  ".join(f"{h:<16}" for h in head))
    for r in summary:
        vals = (r["target"], r["sampler"], str(r["budget"]), f"{f(r, 'dist')} ({f(r, 'dist_floor')})",
                f"{f(r, 'mmd')} ({f(r, 'mmd_floor')})", f(r, "mode_weight_error"), f(r, "ess_per_grad"),
                f(r, "wall_s"))
        print("  ".join(f"{v:<16}" for v in vals))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
