"""The bench: scheduling, speed loop, metric assembly, and end-to-end runs on the tiny model."""

import io
import json

import pytest
from rich.console import Console

from mlx_selfdistill import bench, report
from mlx_selfdistill.energy import EnergyMeter, EnergyReading, IdleBaseline, NoneMeter, detect_meter
from mlx_selfdistill.errors import UserError
from mlx_selfdistill.records import Problem, Sample, Verdict

from conftest import main_exit, make_random_adapter

# Small enough for the 2-core CI machine; real sampling and sandboxed verification all the same.
E2E = dict(problems="toy:heldout:4", n=2, trials=2, max_tokens=24, decode_tokens=8, idle_seconds=0.0, workers=2)


# -- scheduling ----------------------------------------------------------------------------

def test_abab_schedule_interleaves_models_trial_by_trial():
    assert bench.abab_schedule(["base", "distilled"], 3) == [
        (0, "base"), (0, "distilled"), (1, "base"), (1, "distilled"), (2, "base"), (2, "distilled")]
    assert bench.abab_schedule(["base"], 2) == [(0, "base"), (1, "base")]
    assert bench.abab_schedule(["base", "distilled", "teacher"], 2) == [
        (0, "base"), (0, "distilled"), (0, "teacher"), (1, "base"), (1, "distilled"), (1, "teacher")]
    with pytest.raises(UserError, match="trials"):
        bench.abab_schedule(["base"], 0)


def test_trial_slices_cover_every_problem_once():
    problems = [Problem(id=f"p{i}", prompt="x", tests=[]) for i in range(7)]
    slices = bench.trial_slices(problems, 3)
    assert [[p.id for p in s] for s in slices] == [["p0", "p3", "p6"], ["p1", "p4"], ["p2", "p5"]]
    assert bench.trial_slices(problems[:1], 2)[1] == []


def test_default_ks():
    assert bench.default_ks(1) == (1,)
    assert bench.default_ks(4) == (1, 4)
    assert bench.default_ks(12) == (1, 5, 10, 12)


# -- energy helpers ---------------------------------------------------------------------------

def _reading(total, seconds, source="fake"):
    return EnergyReading(source=source, boundary="package", duration_s=seconds,
                         joules={"cpu": total * 0.75, "dram": total * 0.25}, total_j=total)


def test_combine_readings_sums_windows_and_propagates_unavailable():
    combined = bench.combine_readings([_reading(10.0, 2.0), _reading(30.0, 4.0)])
    assert combined.available and combined.total_j == pytest.approx(40.0)
    assert combined.duration_s == pytest.approx(6.0)
    assert combined.joules == pytest.approx({"cpu": 30.0, "dram": 10.0})
    gone = bench.combine_readings([_reading(10.0, 2.0), EnergyReading.unavailable("fake", 1.0, "counter lost")])
    assert not gone.available and gone.reason == "counter lost" and gone.duration_s == pytest.approx(3.0)


class ScriptedMeter(EnergyMeter):
    """A counter meter with a scripted power draw: joules = watts x measured seconds, where the
    first window draws `first_watts` (the idle baseline) and every later one `watts`."""
    name = "scripted"
    boundary = "package"

    def __init__(self, watts, first_watts=None):
        super().__init__()
        self.watts, self.first_watts = watts, first_watts
        self.windows = []

    def _probe(self):
        return None

    def _begin(self):
        pass

    def _end(self, duration_s):
        watts = self.first_watts if (self.first_watts is not None and not self.windows) else self.watts
        self.windows.append(duration_s)
        return EnergyReading(source=self.name, boundary=self.boundary, duration_s=duration_s,
                             joules={"package": watts * duration_s}, total_j=watts * duration_s)


def test_idle_baseline_measures_with_a_meter_and_skips_without():
    idle = bench.idle_baseline(ScriptedMeter(4.0), 0.05)
    assert idle.available and idle.watts == pytest.approx(4.0) and idle.duration_s >= 0.05
    none = bench.idle_baseline(NoneMeter({"rapl": "no powercap"}), 60.0)  # must not sleep a minute
    assert not none.available and "no powercap" in none.reason and none.duration_s == 0.0


# -- metric assembly on known inputs ---------------------------------------------------------

def _known_run():
    problems = [Problem(id=f"p{i}", prompt="x", tests=[], difficulty="easy") for i in range(3)]
    passing = {("p0", 0), ("p0", 1), ("p1", 0)}  # p0: 2/2, p1: 1/2, p2: 0/2
    samples = [Sample(problem_id=f"p{i}", sample_index=j, completion="c", code="c", num_tokens=10 * (i + 1),
                      finish_reason="stop" if j == 0 else "length") for i in range(3) for j in range(2)]
    verdicts = [Verdict(problem_id=s.problem_id, sample_index=s.sample_index,
                        status="pass" if s.key in passing else "fail") for s in samples]
    run = bench.ModelRun("base", "tiny-coder", None, weight_bytes=2_000_000_000,
                         speeds=[{"prefill_tok_s": 100.0, "decode_tok_s": 20.0},
                                 {"prefill_tok_s": 300.0, "decode_tok_s": 30.0},
                                 {"prefill_tok_s": 200.0, "decode_tok_s": 40.0}],
                         sample_seconds=[2.0, 1.0, 1.0], verify_seconds=[0.5, 0.5, 0.5],
                         samples=samples, verdicts=verdicts,
                         generation=[_reading(60.0, 2.0), _reading(20.0, 2.0)],
                         verification=[_reading(10.0, 1.0)])
    return problems, run


def test_model_block_numbers_on_known_inputs():
    problems, run = _known_run()
    idle = IdleBaseline(True, 10.0, watts=5.0, domain_watts={"cpu": 4.0, "dram": 1.0}, source="fake")
    block = bench.model_block(run, problems, n=2, idle=idle, bandwidth_gbs=100.0)

    speed = block["speed"]
    assert speed["decode_tok_s"] == 30.0 and speed["prefill_tok_s"] == 200.0   # medians
    assert speed["decode_tok_s_range"] == [20.0, 40.0] and speed["trials"] == 3
    tokens = 2 * (10 + 20 + 30)
    assert block["generated_tokens"] == tokens and block["mean_output_tokens"] == pytest.approx(20.0)
    assert speed["batched_tok_s"] == pytest.approx(tokens / 4.0)
    assert block["finish_reasons"] == {"length": 3, "stop": 3}

    q = block["quality"]
    assert q["pass_at_1"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert q["pass_at_k"]["2"] == pytest.approx(2 / 3)
    assert q["passing_samples"] == 3 and q["pass_at_1_ci"][0] <= q["pass_at_1"] <= q["pass_at_1_ci"][1]

    gen, ver = block["energy"]["generation"], block["energy"]["verification"]
    assert gen["gross_j"] == pytest.approx(80.0) and gen["duration_s"] == pytest.approx(4.0)
    assert gen["net_j"] == pytest.approx(80.0 - 5.0 * 4.0)
    assert ver["gross_j"] == pytest.approx(10.0) and ver["net_j"] == pytest.approx(5.0)

    eff = block["efficiency"]
    assert eff["joules_per_solve"] == pytest.approx(90.0 / 3)
    assert eff["joules_per_solve_net"] == pytest.approx((60.0 + 5.0) / 3)
    assert eff["tokens_per_joule"] == pytest.approx(tokens / 80.0)
    assert eff["mean_watts"] == pytest.approx(20.0)
    assert eff["pass1_per_watt"] == pytest.approx(q["pass_at_1"] / 20.0)
    # 100 GB/s over 2 GB per token -> 50 tok/s limit; decode median 30 -> 60 %
    assert eff["bandwidth_fraction"] == pytest.approx(0.6)


def test_model_block_without_meter_reports_unavailable():
    problems, run = _known_run()
    none = NoneMeter({"rapl": "no powercap"})
    none.start()
    run.generation = [none.stop()]
    run.verification = []
    block = bench.model_block(run, problems, n=2, idle=None, bandwidth_gbs=None)
    assert block["energy"]["generation"]["status"] == "unavailable"
    assert block["energy"]["verification"]["status"] == "unavailable"
    assert all(block["efficiency"][k] is None for k in
               ("joules_per_solve", "tokens_per_joule", "mean_watts", "pass1_per_watt", "bandwidth_fraction"))


# -- speed loop on the real tiny model --------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    from mlx_selfdistill.models import load_model

    return load_model("tiny")


def test_measure_speed_decodes_exactly_the_asked_tokens(tiny):
    model, tokenizer = tiny
    prompt = tokenizer.encode("def add(a, b):\n    return", add_special_tokens=False)
    calls = []
    original = model.__call__

    class Counting:
        layers = model.layers

        def make_cache(self):
            from mlx_lm.models.cache import make_prompt_cache
            return make_prompt_cache(model)

        def __call__(self, x, cache=None):
            calls.append(x.shape[1])
            return original(x, cache=cache)

    out = bench.measure_speed(Counting(), prompt, 12)
    assert calls[0] == len(prompt) and calls[1:] == [1] * 12  # one prefill, then 12 single-token steps
    assert out["prompt_tokens"] == len(prompt) and out["decode_tokens"] == 12
    assert out["prefill_tok_s"] > 0 and out["decode_tok_s"] > 0
    with pytest.raises(UserError):
        bench.measure_speed(model, [], 4)


# -- end to end ---------------------------------------------------------------------------------

def make_deeper_model(path):
    """A teacher for the tests: the tiny model with its 4 layers repeated (8 layers), in a
    folder of its own with its own tokenizer files: more weights, different outputs."""
    import shutil

    import mlx.core as mx

    from mlx_selfdistill.models import DEFAULT_MODEL

    shutil.copytree(DEFAULT_MODEL, path)
    weights = mx.load(str(path / "model.safetensors"))
    config = json.loads((path / "config.json").read_text())
    depth = config["num_hidden_layers"]
    for name, value in list(weights.items()):
        if name.startswith("model.layers."):
            i, rest = name[len("model.layers."):].split(".", 1)
            weights[f"model.layers.{int(i) + depth}.{rest}"] = value
    mx.save_safetensors(str(path / "model.safetensors"), weights, metadata={"format": "mlx"})
    config["num_hidden_layers"] = 2 * depth
    (path / "config.json").write_text(json.dumps(config))
    return path


def _check_outputs(result, out, labels):
    for kind in ("json", "md", "png"):
        assert (out / f"bench.{kind}").is_file()
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "bench.json").read_text())
    assert set(saved["models"]) == set(labels)
    for key in ("schema_version", "config", "environment", "idle", "schedule", "models", "definitions"):
        assert key in saved
    assert saved["environment"]["energy_meter"] == "none"
    assert saved["environment"]["blas_threads"]["mode"] in ("auto", "fixed")  # how the numbers were made
    assert saved["idle"]["status"] == "unavailable"
    for label in labels:
        m = saved["models"][label]
        for key in ("prefill_tok_s", "decode_tok_s", "batched_tok_s", "batch_size", "trials"):
            assert key in m["speed"]
        assert m["speed"]["decode_tok_s"] > 0 and m["speed"]["batched_tok_s"] > 0
        assert m["speed"]["trials"] == 2 and m["speed"]["batch_size"] == 2
        assert m["quality"]["num_problems"] == 4 and m["quality"]["samples_per_problem"] == 2
        assert 0.0 <= m["quality"]["pass_at_1"] <= 1.0 and "2" in m["quality"]["pass_at_k"]
        assert m["generated_tokens"] > 0
        assert m["energy"]["generation"]["status"] == "unavailable"
        assert m["energy"]["verification"]["status"] == "unavailable"
        assert m["efficiency"]["joules_per_solve"] is None and m["efficiency"]["pass1_per_watt"] is None
        mem = m["memory"]  # MLX counts its allocations on the CPU backend too
        assert mem["weights_gb"] == pytest.approx(m["weight_bytes"] / 1e9) and mem["working_gb"] > 0
        assert mem["peak_gb"] == pytest.approx(mem["weights_gb"] + mem["working_gb"])
        assert mem["process_peak_gb"] >= mem["peak_gb"] * (1 - 1e-9)  # the raw peak also holds the other models
        assert len((out / label / "samples.jsonl").read_text().splitlines()) == 8
        assert len((out / label / "verdicts.jsonl").read_text().splitlines()) == 8
    md = (out / "bench.md").read_text()
    assert "unavailable" in md and "pass@1 per W" in md and "pass@1_per_watt" in md
    assert "| Peak memory GB |" in md and "| Weights GB |" in md
    assert "Setup: 4 problems from toy:heldout:4, n=2 samples each" in md and "2 interleaved trials" in md
    return saved


@pytest.mark.slow
def test_bench_cli_without_adapter(tmp_path, capsys):
    from mlx_selfdistill.cli import main

    if detect_meter().name != "none":
        pytest.skip("this machine has an energy meter; the test expects none")
    out = tmp_path / "bench"
    main(["bench", "--model", "tiny", "--problems", E2E["problems"], "-n", "2", "--trials", "2",
          "--max-tokens", "24", "--decode-tokens", "8", "--idle-seconds", "0", "--workers", "2",
          "--out", str(out), "--json"])
    printed = json.loads(capsys.readouterr().out)
    saved = _check_outputs(printed, out, ["base"])
    assert printed["models"]["base"]["quality"] == saved["models"]["base"]["quality"]
    assert [(e["trial"], e["model"]) for e in saved["schedule"]] == [(0, "base"), (1, "base")]


@pytest.mark.slow
def test_bench_with_adapter_and_teacher_interleaves_three_models(tmp_path):
    if detect_meter().name != "none":
        pytest.skip("this machine has an energy meter; the test expects none")
    adapter = make_random_adapter(tmp_path / "adapter")
    teacher = make_deeper_model(tmp_path / "teacher-model")
    events = []

    def progress(stage, info):
        if stage in ("sample", "verify"):
            events.append((stage, info["where"]))

    out = tmp_path / "bench"
    result = bench.run_bench("tiny", str(adapter), teacher=str(teacher), out_dir=out, progress=progress, **E2E)
    saved = _check_outputs(result, out, ["base", "distilled", "teacher"])
    assert saved["schema_version"] == report.SCHEMA_VERSION == 2

    # A B C A B C, each slot finished before the next began
    order = [(e["trial"], e["model"]) for e in saved["schedule"]]
    assert order == [(0, "base"), (0, "distilled"), (0, "teacher"), (1, "base"), (1, "distilled"), (1, "teacher")]
    ends = [(e["start_s"], e["end_s"]) for e in saved["schedule"]]
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(ends, ends[1:]))
    seen = list(dict.fromkeys(where for stage, where in events if stage == "sample"))
    assert seen == ["base 1/2", "distilled 1/2", "teacher 1/2", "base 2/2", "distilled 2/2", "teacher 2/2"]

    # the distilled model really is base + adapter, the teacher its own model: same seeds, other completions
    read = lambda label: [json.loads(l)["completion"] for l in (out / label / "samples.jsonl").read_text().splitlines()]
    assert read("base") != read("distilled") and read("base") != read("teacher")
    assert saved["config"]["fused_adapter"] is True
    assert saved["models"]["distilled"]["adapter"] == str(adapter)
    base, distilled, taught = (saved["models"][k] for k in ("base", "distilled", "teacher"))
    assert distilled["weight_bytes"] == base["weight_bytes"]  # fused
    assert saved["config"]["teacher"] == taught["model"] == str(teacher) and taught["adapter"] is None
    # twice the layers: about twice the weights, and more memory than the student while it runs
    assert 1.9 < taught["weight_bytes"] / base["weight_bytes"] < 2.1
    assert taught["memory"]["peak_gb"] > base["memory"]["peak_gb"]
    assert taught["speed"]["per_measurement"][0]["prompt_tokens"] > 0

    # the terminal table: three models, both ratio columns, the energy line verbatim (no markup eaten)
    console = Console(file=io.StringIO(), width=1000)
    console.print(report.render_table(result))
    text = console.file.getvalue()
    assert "distilled / base" in text and "distilled / teacher" in text and "Decode tok/s (batch 1)" in text
    assert report.energy_summary(result) in " ".join(text.split())
    header, rows = report.table_rows(saved)
    assert header == ["Metric", "base", "distilled", "teacher", "distilled / base", "distilled / teacher"]
    jps = next(r for r in rows if r[0] == "J per solve")
    assert jps[1:4] == ["unavailable"] * 3  # no meter here: the teacher's cost is unavailable too


@pytest.mark.slow
def test_bench_with_a_meter_reports_gross_net_and_efficiency(tmp_path):
    meter = ScriptedMeter(9.0, first_watts=2.0)
    result = bench.run_bench("tiny", problems="toy:heldout:2", n=2, trials=1, max_tokens=24, decode_tokens=4,
                             idle_seconds=0.05, workers=2, meter=meter, out_dir=tmp_path)
    assert len(meter.windows) == 3  # idle, generation, verification
    assert result["idle"]["status"] == "measured" and result["idle"]["watts"] == pytest.approx(2.0)
    m = result["models"]["base"]
    gen, ver = m["energy"]["generation"], m["energy"]["verification"]
    assert gen["duration_s"] == pytest.approx(meter.windows[1]) and ver["duration_s"] == pytest.approx(meter.windows[2])
    assert gen["gross_j"] == pytest.approx(9.0 * gen["duration_s"])
    assert gen["net_j"] == pytest.approx(7.0 * gen["duration_s"])
    eff = m["efficiency"]
    assert eff["mean_watts"] == pytest.approx(9.0)
    assert eff["tokens_per_joule"] == pytest.approx(m["generated_tokens"] / gen["gross_j"])
    assert eff["pass1_per_watt"] == pytest.approx(m["quality"]["pass_at_1"] / 9.0)
    passing = m["quality"]["passing_samples"]
    expected = (gen["gross_j"] + ver["gross_j"]) / passing if passing else None
    assert eff["joules_per_solve"] == (pytest.approx(expected) if passing else None)
    assert "Energy: scripted, boundary package" in (tmp_path / "bench.md").read_text()


def test_bench_rejects_bad_options(tmp_path):
    with pytest.raises(UserError, match="-n"):
        bench.run_bench("tiny", problems="toy:heldout:2", n=0, out_dir=tmp_path)
    with pytest.raises(UserError, match="not an adapter folder"):
        bench.run_bench("tiny", str(tmp_path), problems="toy:heldout:2", idle_seconds=0, out_dir=tmp_path)


def test_bench_rejects_a_bad_teacher_before_the_idle_baseline(tmp_path):
    meter = ScriptedMeter(9.0)
    for bad, why in ((tmp_path / "missing", "no such folder"), (tmp_path, "not a model folder"),
                     (tmp_path / "missing.gguf", "missing.gguf")):
        with pytest.raises(UserError, match=why) as exc:
            bench.run_bench("tiny", teacher=str(bad), problems="toy:heldout:2", idle_seconds=5.0,
                            meter=meter, out_dir=tmp_path / "out")
        assert str(exc.value).startswith("teacher: ")
    assert meter.windows == []  # failed before the idle baseline was measured


def test_bench_cli_bad_teacher_is_a_one_line_error(tmp_path, capsys):
    code = main_exit(["bench", "--teacher", str(tmp_path / "missing"), "--idle-seconds", "0",
                      "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.strip().startswith("error: teacher: ") and "missing" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_bench_cli_bad_adapter_is_a_one_line_error(tmp_path, capsys):
    from mlx_selfdistill.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["bench", "--adapter", str(tmp_path / "missing"), "--idle-seconds", "0", "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().startswith("error: ") and "not an adapter folder" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
