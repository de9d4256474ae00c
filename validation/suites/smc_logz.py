"""smc-logz: tempered SMC / AIS normalizing constants against known values, and their Monte Carlo rate."""
from __future__ import annotations

import math

import torch

from scoresample import Gaussian, GaussianMixture
from scoresample.smc import TemperedSMC
from scoresample.targets import Target, funnel, many_well, nine_gmm

from . import Case, register

Z_CRIT = 4.4  # two-sided, alpha 1e-5


def normal_1d(mean, sd, log_z=0.0):
    """exp(log_z) N(mean, sd^2) in 1-D by hand (closed-form score and sampler): a known normalizer, fast."""
    def log_prob(x):
        return -0.5 * ((x[:, 0] - mean) / sd) ** 2 - math.log(sd) - 0.5 * math.log(2 * math.pi) + log_z

    def sample(n, generator=None):
        return mean + sd * torch.randn(n, 1, generator=generator, dtype=torch.float64)

    return Target.from_log_prob(log_prob, 1, log_normalizer=log_z, score=lambda x: -(x - mean) / sd ** 2,
                                sample=sample)


FUNNEL_LOG_SCALES = (-9.0, -6.0, -3.0, 0.0, 3.0, 6.0, 9.0)  # log-variances of x_1..: x0 +-3 sd (neck ... mouth)


def funnel_scale_mixture_reference(dim: int = 10, dtype=torch.float64) -> GaussianMixture:
    """Reference that covers the funnel's neck and mouth: x0 ~ N(0, 9) independent of
    x_{1:d-1} ~ (1/7) sum_k N(0, e^{c_k} I), c_k = -9, -6, ..., 9 (x0's +-3 sd).

    Why (measured): along the geometric path from a product reference with x_i ~ N(0, s^2), integrating
    out x_1..9 gives pi_b(x0) a factor ~ (e^{b (c - x0)/2} / sqrt(1 - b))^9 for x0 > c = log s^2, so the
    mouth above c opens only at 1 - b < e^{c - x0}, and for x0 < c a factor e^{9 (1 - b)(x0 - c)/2} that
    keeps the neck shut until 1 - b ~ 1/|x0 - c|. From N(0, I) (c = 0) the mouth x0 > 5 (mass 0.048) never
    fills: log Z-hat is -0.24 +- 0.04 at 512 particles and a 60-step schedule geometric in 1 - b down to 1e-4
    still leaves -0.084 +- 0.014 at 2048 particles; cess 0.99 (-0.17, 1650 gradients per particle) and 30 moves
    (-0.16, 2250) barely help. A single wide Gaussian N(0, diag(9, 90, ...)) finds the
    mouth and loses the neck. Every scale e^{c_k} opens the funnel around x0 = c_k from the start; x0 stays
    independent of the scale, so the tempering and the moves still have to build the funnel's coupling
    (particles whose x0 does not match their scale die or move). Grids that stop at +-6 leave the tails
    |x0| > 7 (mass 0.020) half empty and log Z-hat ~0.015 low (5 scales: -0.016 +- 0.006 at 4096 particles);
    Gaussian weights on the +-9 grid (the product of the funnel's marginals) also starve the tails
    (-0.021 +- 0.010 at 4096); wider step_spread (3, 4) does not fill them either. With this reference and
    HMC 10 moves x 10 leapfrog (~1900 gradients per particle) log Z-hat is -0.035 +- 0.042, +0.039 +- 0.019,
    +0.005 +- 0.008 at 256, 1024, 4096 particles (8 runs each; spread 0.12, 0.053, 0.022: the rate -1/2) and the
    particles hold P(x0 > 5) = 0.043-0.056, P(x0 > 7) = 0.008-0.014 (exact 0.048, 0.0099).
    """
    k = len(FUNNEL_LOG_SCALES)
    var = torch.tensor([[9.0] + [math.exp(c)] * (dim - 1) for c in FUNNEL_LOG_SCALES], dtype=dtype)
    return GaussianMixture(torch.full((k,), 1.0 / k, dtype=dtype), torch.zeros(k, dim, dtype=dtype),
                           torch.diag_embed(var))


@register("smc-logz", description="TemperedSMC/AIS log Z on Gaussians, mixtures, many_well and funnel; "
          "Monte Carlo rate and unbiasedness of Z-hat", quick_budget_s=60)
def smc_logz(ctx):
    from validation.rates import fit_rate
    cases = []
    g = ctx.generator()
    ref1, tgt1 = normal_1d(0.0, 1.0), normal_1d(1.5, 0.5, log_z=3.0)
    ais = TemperedSMC.ais(ref1, tgt1, torch.linspace(0, 1, 6).tolist(), n_moves=1, step_size=0.05, adapt=False)
    # unbiasedness of Z-hat (not log Z-hat)
    R = 200 if ctx.quick else 2000
    ratio = torch.tensor([math.exp(ais.run(32, g).log_z - 3.0) for _ in range(R)])
    m, se = ratio.mean().item(), ratio.std().item() / math.sqrt(R)
    cases.append(Case("ais_1d_gaussian_Zhat_over_Z", "value", m, abs(m - 1) < Z_CRIT * se, theory=1.0,
                      ci=(m - Z_CRIT * se, m + Z_CRIT * se), note=f"{R} runs of 32 particles; E[Z_hat] = Z"))
    # RMSE of log Z-hat vs particles: Monte Carlo rate -1/2
    ns = [64, 256, 1024, 4096]
    reps = 100 if ctx.quick else 400
    rmse = [math.sqrt(sum((ais.run(n, g).log_z - 3.0) ** 2 for _ in range(reps)) / reps) for n in ns]
    rate = fit_rate(ns, rmse, kind="mc")
    cases.append(Case("ais_1d_logz_rmse_vs_particles", "rate", rate.slope, rate.ci[0] <= -0.5 <= rate.ci[1],
                      theory=-0.5, ci=rate.ci, note=f"RMSE {['%.3g' % e for e in rmse]} at n = {ns}"))
    # adaptive tempered SMC on targets with known log Z
    refs = {"gaussian_2d": (Gaussian(torch.zeros(2), 1.0, dtype=torch.float64),
                            Gaussian(torch.tensor([1.0, -2.0]), torch.tensor([[0.3, 0.1], [0.1, 0.2]]),
                                     dtype=torch.float64), 1000, 4),
            "nine_gmm": (Gaussian(torch.zeros(2), 25.0, dtype=torch.float64), nine_gmm(dtype=torch.float64), 1000, 4)}
    for name, (ref, tgt, n, reps) in refs.items():
        res = [TemperedSMC(ref, tgt, n_moves=5).run(n, g) for _ in range(reps)]
        err = sum(r.log_z for r in res) / reps - tgt.log_normalizer
        sd = math.sqrt(sum(r.log_z_var for r in res) / reps / reps)
        cases.append(Case(f"tempered_smc_{name}_logz_error", "value", err, abs(err) <= Z_CRIT * sd, theory=0.0,
                          ci=(err - Z_CRIT * sd, err + Z_CRIT * sd),
                          note=f"{reps} runs x {n} particles, {len(res[0].betas) - 1} adaptive steps; "
                               "CI from the delta-method variance"))
    # hard benchmarks. The CI comes from the spread over independent runs (t interval), not from the
    # delta-method variance, which ignores resampling correlations and under-covers here.
    n, reps = (512, 10) if ctx.quick else (4096, 20)
    hard = {"many_well": (many_well(dtype=torch.float64), None,
                          dict(kernel="hmc", n_moves=4, n_leapfrog=5, step_spread=0.5), n, reps),
            # N(0, I) reference: only a one-sided bound holds (see funnel_scale_mixture_reference)
            "funnel_standard_normal_reference": (funnel(dtype=torch.float64), None,
                                                 dict(kernel="hmc", n_moves=10, n_leapfrog=5, step_spread=2.0), n,
                                                 reps if ctx.quick else 10),
            "funnel": (funnel(dtype=torch.float64), funnel_scale_mixture_reference(),
                       dict(kernel="hmc", n_moves=10, n_leapfrog=10, step_spread=2.0), n, reps if ctx.quick else 12)}
    for name, (tgt, ref, kw, n, reps) in hard.items():
        ref = Gaussian(torch.zeros(tgt.dim), 1.0, dtype=torch.float64) if ref is None else ref
        res = [TemperedSMC(ref, tgt, cess=0.95, **kw).run(n, g) for _ in ctx.track(range(reps), name)]
        errs = torch.tensor([r.log_z - tgt.log_normalizer for r in res], dtype=torch.float64)
        grads = res[0].n_grad // n
        what = (f"log Z = {tgt.log_normalizer:.5f}; {reps} runs x {n} particles, {kw['kernel']} moves "
                f"({kw['n_moves']} x {kw['n_leapfrog']} leapfrog), ~{grads} gradients per particle, "
                "adaptive cess 0.95")
        err, se, tc = _t_interval(errs)
        # two-sided: the estimate must agree with log Z up to its spread and the Jensen bias -Var/2
        jensen = 0.5 * errs.var().item()
        ok = -tc * se - jensen <= err <= tc * se
        if name == "funnel_standard_normal_reference":
            # only E[log Z-hat] <= log Z (Jensen, unbiased Z-hat) is asserted; see funnel_scale_mixture_reference
            cases.append(Case(f"tempered_smc_{name}_logz_error", "bound", err, err <= tc * se, theory=0.0,
                              ci=(err - tc * se, err + tc * se),
                              note=what + "; asserted: not above log Z (one-sided t-test). N(0, I) misses the "
                                          "funnel's mouth (x0 > 5, mass 0.048): the geometric path opens it only "
                                          "at 1 - beta < e^{-x0}; a two-sided t-test would "
                                          + ("not reject: rare runs that reach the mouth widen the spread"
                                             if ok else "reject")))
            continue
        cases.append(Case(f"tempered_smc_{name}_logz_error", "value", err, ok, theory=0.0,
                          ci=(err - tc * se, err + tc * se),
                          note=what + f"; errors {['%.3f' % e for e in errs.tolist()]}; t-test over runs "
                                      f"(alpha 1e-4) allowing the Jensen bias {-jensen:.4f}"
                                      + ("; reference: funnel_scale_mixture_reference" if name == "funnel" else "")))
        if name == "funnel" and not ctx.quick:
            # error vs particles: per-run |log Z-hat - log Z| regressed on n (replicates as points), Monte Carlo
            # rate -1/2; the largest n reuses the runs above
            ns, abs_err = [], []
            for m in (256, 1024):
                for _ in ctx.track(range(reps), f"funnel n={m}"):
                    ns.append(m)
                    abs_err.append(abs(TemperedSMC(ref, tgt, cess=0.95, **kw).run(m, g).log_z - tgt.log_normalizer))
            ns += [n] * reps
            abs_err += errs.abs().tolist()
            rate = fit_rate(ns, abs_err, kind="mc")
            rmse = {m: math.sqrt(sum(e * e for k, e in zip(ns, abs_err) if k == m) / reps) for m in (256, 1024, n)}
            cases.append(Case("tempered_smc_funnel_logz_error_vs_particles", "rate", rate.slope,
                              rate.ci[0] <= -0.5 <= rate.ci[1], theory=-0.5, ci=rate.ci,
                              note=f"RMSE {', '.join('%d: %.3g' % kv for kv in rmse.items())} ({reps} runs each); "
                                   "slope of log |error| per run on log n"))
    return cases


def _t_interval(errs):
    """Mean, standard error and two-sided t critical value (alpha 1e-4) of independent runs' errors."""
    from scipy.stats import t as student_t
    reps = len(errs)
    return (errs.mean().item(), errs.std().item() / math.sqrt(reps), float(student_t.isf(1e-4 / 2, reps - 1)))
