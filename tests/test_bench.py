"""``scoresample bench`` end to end on a tiny budget: outputs, resume, registries, bad names."""
import json

import pytest
import torch

from scoresample import Target, bench

ARGS = ["--targets", "nine_gmm", "--samplers", "mala,ula", "--budget", "40", "--budgets", "20,40",
        "--seeds", "2", "--chains", "8", "--n-eval", "50", "--no-progress"]


def test_bench_end_to_end_and_resume(tmp_path, monkeypatch, capsys):
    out = tmp_path / "b"
    assert bench.main(ARGS + ["--out", str(out)]) == 0
    for f in ("results.json", "results.csv", "summary.csv", "summary.json", "error_vs_budget.png"):
        assert (out / f).exists(), f
    cells = json.loads((out / "results.json").read_text())["cells"]
    assert len(cells) == 2 * 2 * 2                       # samplers x budgets x seeds
    for c in cells:
        assert c["dist_kind"] == "w2" and c["dist"] > 0 and c["dist_floor"] > 0 and c["mmd"] >= 0
        assert 0 <= c["mode_weight_error"] <= 1 and 0 < c["mode_coverage"] <= 1
        assert c["n_grad"] <= c["budget"]                 # the budget is respected, per chain
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol"]["initial_laws"]["nine_gmm"] == "uniform on [-7, 7]^2"
    assert {(r["sampler"], r["budget"]) for r in summary["summary"]} == {(s, b) for s in ("mala", "ula")
                                                                         for b in (20, 40)}
    # resume: drop two finished mala cells, re-run; only those two are recomputed
    kept = [c for c in cells if not (c["sampler"] == "mala" and c["budget"] == 40)]
    (out / "results.json").write_text(json.dumps({"cells": kept}))
    calls = []
    inner = bench.SAMPLERS["mala"]
    monkeypatch.setitem(bench.SAMPLERS, "mala", lambda *a: calls.append(1) or inner(*a))
    monkeypatch.setitem(bench.SAMPLERS, "ula", lambda *a: calls.append(2) or inner(*a))
    assert bench.main(ARGS + ["--out", str(out)]) == 0
    assert calls == [1, 1]
    assert len(json.loads((out / "results.json").read_text())["cells"]) == 8
    assert "already in" in capsys.readouterr().out


def test_unknown_names_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--targets", "nine_gmm,gmm4O", "--out", str(tmp_path)])
    assert "gmm4O" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--samplers", "mala,nuts", "--out", str(tmp_path)])
    assert "nuts" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--budget", "0", "--out", str(tmp_path)])


def test_user_target_and_sampler_plug_in(tmp_path):
    def sample(n, generator=None):
        return torch.randn(n, 3, generator=generator, dtype=torch.float64) + 1.0
    mine = Target.from_log_prob(lambda x: -0.5 * ((x - 1.0) ** 2).sum(-1), 3, sample=sample)
    bench.register_target("mine", lambda: mine)

    def exact(target, x0, budget, n_eval, generator, progress):   # an "oracle" sampler: W2 must sit at the floor
        return bench.SamplerOutput(target.sample(n_eval, generator=generator), 0, float("nan"))
    bench.register_sampler("exact", exact)
    try:
        out = tmp_path / "u"
        assert bench.main(["--targets", "mine", "--samplers", "exact,mala", "--budget", "20", "--budgets", "20",
                           "--seeds", "1", "--chains", "4", "--n-eval", "40", "--no-progress", "--out", str(out)]) == 0
        cells = {c["sampler"]: c for c in json.loads((out / "results.json").read_text())["cells"]}
        assert set(cells) == {"exact", "mala"} and "mode_weight_error" not in cells["exact"]
    finally:
        bench.SAMPLERS.pop("exact", None)
        bench.TARGETS.pop("mine", None)


def test_smc_and_rdmc_are_bench_samplers(tmp_path):
    """TemperedSMC and RDMC (both estimators) plug into the bench and respect the per-chain gradient budget."""
    out = tmp_path / "s"
    assert bench.main(["--targets", "nine_gmm", "--samplers", "smc,rdmc,rdmc-lais", "--budget", "200",
                       "--budgets", "30,200",
                       "--seeds", "1", "--chains", "16", "--n-eval", "40", "--no-progress", "--out", str(out)]) == 0
    cells = json.loads((out / "results.json").read_text())["cells"]
    assert {(c["sampler"], c["budget"]) for c in cells} == {(s, b) for s in ("smc", "rdmc", "rdmc-lais")
                                                            for b in (30, 200)}
    for c in cells:
        assert 0 < c["n_grad"] <= c["budget"], c
        assert c["dist"] > 0 and 0 <= c["mode_weight_error"] <= 1
