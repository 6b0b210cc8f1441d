"""Bench report outputs from a realistic result dict, built with the real helpers."""

import json

import pytest
from rich.console import Console

from mlx_selfdistill import metrics, platform_info, report
from mlx_selfdistill.energy import EnergyReading, IdleBaseline, NoneMeter, phase_energy

BASE_COUNTS = [(4, 1), (4, 0), (4, 2), (4, 0), (4, 4), (4, 1), (4, 0), (4, 0)]
DISTILLED_COUNTS = [(4, 2), (4, 1), (4, 3), (4, 0), (4, 4), (4, 2), (4, 0), (4, 1)]
WEIGHT_BYTES = 2_400_000_000


def _reading(joules, seconds):
    return EnergyReading(source="apple-ioreport", boundary="SoC (CPU + GPU + ANE + DRAM)",
                         duration_s=seconds, joules={"cpu": joules * 0.2, "gpu": joules * 0.7,
                                                     "dram": joules * 0.1}, total_j=joules)


def _model(counts, speed, tokens, gen, ver, idle, bandwidth):
    quality = metrics.summarize_quality(counts, ks=(1, 4))
    energy = {"generation": phase_energy(gen, idle), "verification": phase_energy(ver, idle)}
    return {
        "model": "mlx_selfdistill/assets/tiny-coder", "adapter": None, "weight_bytes": WEIGHT_BYTES,
        "speed": speed, "quality": quality,
        "mean_output_tokens": tokens / sum(n for n, _ in counts), "generated_tokens": tokens,
        "energy": energy,
        "efficiency": report.efficiency_block(quality, energy, tokens, speed["decode_tok_s"],
                                              WEIGHT_BYTES, bandwidth),
    }


def make_result(measured: bool) -> dict:
    env = platform_info.environment()
    if measured:
        env.update(chip="Apple M2 Pro", memory_total_gb=32.0, energy_meter="apple-ioreport")
        idle = IdleBaseline.from_reading(_reading(30.0, 10.0))  # 3 W
        readings = [_reading(240.0, 20.0), _reading(12.0, 3.0), _reading(200.0, 20.0), _reading(11.0, 3.0)]
    else:
        env.update(energy_meter="none")
        meter = NoneMeter({"rapl": "no powercap"})
        readings = []
        for _ in range(4):
            meter.start()
            readings.append(meter.stop())
        idle = IdleBaseline.from_reading(readings[0])
    bandwidth, _ = metrics.memory_bandwidth_gbs(env["chip"], 12)
    env["memory_bandwidth_gbs"] = bandwidth
    base = _model(BASE_COUNTS, {"prefill_tok_s": 812.4, "decode_tok_s": 41.8, "batched_tok_s": 190.2,
                                "batch_size": 8, "trials": 3},
                  4100, readings[0], readings[1], idle, bandwidth)
    distilled = _model(DISTILLED_COUNTS, {"prefill_tok_s": 805.1, "decode_tok_s": 41.2,
                                          "batched_tok_s": 188.7, "batch_size": 8, "trials": 3},
                       3500, readings[2], readings[3], idle, bandwidth)
    distilled["adapter"] = "runs/r1/adapters"
    return {"schema_version": report.SCHEMA_VERSION, "created_at": "2025-03-14T09:26:53Z",
            "config": {"problems": "toy", "n": 4, "trials": 3}, "environment": env,
            "idle": idle.to_dict(), "models": {"base": base, "distilled": distilled},
            "definitions": dict(metrics.DEFINITIONS)}


def test_efficiency_numbers_when_measured():
    r = make_result(measured=True)
    base = r["models"]["base"]
    eff = base["efficiency"]
    passing = sum(c for _, c in BASE_COUNTS)           # 8 passing samples
    assert eff["joules_per_solve"] == pytest.approx((240.0 + 12.0) / passing)
    assert eff["joules_per_solve_net"] == pytest.approx((240 - 60 + 12 - 9) / passing)
    assert eff["tokens_per_joule"] == pytest.approx(4100 / 240.0)
    assert eff["mean_watts"] == pytest.approx(12.0)
    assert eff["pass1_per_watt"] == pytest.approx(base["quality"]["pass_at_1"] / 12.0)
    # M2 Pro: 200 GB/s -> 2.4 GB of weights -> limit 83.3 tok/s
    assert eff["bandwidth_fraction"] == pytest.approx(41.8 / (200e9 / WEIGHT_BYTES))


def test_report_files_when_energy_unavailable(tmp_path):
    result = make_result(measured=False)
    paths = report.write_report(result, tmp_path / "bench")
    assert sorted(p.name for p in paths.values()) == ["bench.json", "bench.md", "bench.png"]

    data = json.loads(paths["json"].read_text())
    assert set(data) >= {"environment", "idle", "models", "definitions", "schema_version"}
    assert set(data["models"]) == {"base", "distilled"}
    for m in data["models"].values():
        assert set(m) >= {"speed", "quality", "mean_output_tokens", "energy", "efficiency"}
        assert m["energy"]["generation"]["status"] == "unavailable"
        assert m["efficiency"]["joules_per_solve"] is None
        assert m["efficiency"]["pass1_per_watt"] is None
    assert data["idle"]["status"] == "unavailable"
    assert "pass@1_per_watt" in data["definitions"]

    md = paths["md"].read_text()
    assert md.count("|") > 40 and "| Metric | base | distilled | distilled / base |" in md
    row = next(line for line in md.splitlines() if line.startswith("| J per solve"))
    assert row.count("unavailable") == 2
    assert "Energy: unavailable" in md
    assert "pass@1 / mean watts" in md  # the definition is printed beside the numbers

    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_report_when_measured(tmp_path):
    result = make_result(measured=True)
    paths = report.write_report(result, tmp_path)
    md = paths["md"].read_text()
    row = next(line for line in md.splitlines() if line.startswith("| J per solve"))
    assert "unavailable" not in row
    assert "31.50" in row and "x" in row.split("|")[-2]  # base 252 J / 8 passing; a ratio
    gen = next(line for line in md.splitlines() if line.startswith("| Generation energy"))
    assert "240.0 (net 180.0)" in gen
    assert "apple-ioreport" in md and "idle 3.00 W" in md
    assert "Apple M2 Pro" in md

    import matplotlib.image
    img = matplotlib.image.imread(paths["png"])
    assert img.shape[0] > 500 and img.shape[1] > 1000


def test_rich_table_lists_the_metrics():
    console = Console(record=True, width=160)
    console.print(report.render_table(make_result(measured=False)))
    text = console.export_text()
    for label in ("Prefill tok/s", "Decode tok/s (batch 1)", "pass@1 [95% CI]", "pass@4",
                  "J per solve", "Tokens per J", "pass@1 per W", "unavailable"):
        assert label in text


def test_single_model_report(tmp_path):
    result = make_result(measured=False)
    del result["models"]["distilled"]
    header, rows = report.table_rows(result)
    assert header == ["Metric", "base"]
    assert all(len(r) == 2 for r in rows)
    report.write_report(result, tmp_path)
    assert (tmp_path / "bench.png").exists()


def test_validate_names_missing_keys():
    result = make_result(measured=False)
    del result["models"]["base"]["speed"]
    del result["idle"]
    with pytest.raises(ValueError, match=r"idle.*models\.base\.speed"):
        report.write_report(result, "/nonexistent/never-written")


def test_teacher_column_and_its_ratios(tmp_path):
    result = make_result(measured=True)
    teacher = result["models"].pop("distilled")
    teacher.update(model="teacher-7b", adapter=None, memory={"weights_gb": 4.8, "peak_gb": 6.0,
                                                             "working_gb": 1.2, "process_peak_gb": 9.0})
    result["models"]["base"]["memory"] = {"weights_gb": 2.4, "peak_gb": 3.0, "working_gb": 0.6,
                                          "process_peak_gb": 9.0}
    result["models"]["teacher"] = teacher
    header, rows = report.table_rows(result)
    assert header == ["Metric", "base", "teacher", "base / teacher"]  # no distilled: the base is the student
    assert next(r for r in rows if r[0] == "Peak memory GB") == ["Peak memory GB", "3.00", "6.00", "x0.50"]
    assert next(r for r in rows if r[0] == "Weights GB")[1:] == ["2.40", "4.80", "x0.50"]
    result["models"]["distilled"] = dict(result["models"]["base"], adapter="runs/r1/adapters")
    assert report.table_rows(result)[0] == ["Metric", "base", "distilled", "teacher",
                                            "distilled / base", "distilled / teacher"]
    md = report.write_report(result, tmp_path)["md"].read_text()
    assert "| Metric | base | distilled | teacher | distilled / base | distilled / teacher |" in md


def test_a_version_1_file_still_renders(tmp_path):
    result = make_result(measured=False)  # built without memory blocks, as version 1 wrote them
    result["schema_version"] = 1
    paths = report.write_report(json.loads(json.dumps(result)), tmp_path)
    md = paths["md"].read_text()
    peak = next(line for line in md.splitlines() if line.startswith("| Peak memory GB"))
    assert peak.count("unavailable") == 2
    assert "| Weights GB | 2.40 | 2.40 | x1.00 |" in md  # from weight_bytes
