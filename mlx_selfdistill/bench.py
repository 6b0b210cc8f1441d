"""The bench: speed, quality, energy and memory of a base model, its distilled version and
(optionally) the teacher it was distilled from, measured in the same run on the same machine.

    result = run_bench("tiny", "runs/r1/adapters", problems="toy:heldout:50", out_dir="bench")
    result = run_bench(STUDENT, "runs/r1/adapters", teacher=TEACHER)   # + a "teacher" block

How it measures, and why:

- **Idle baseline first**, with the same meter, so every phase can be reported gross and
  net of the machine's idle draw. Without an energy meter nothing is slept or invented:
  energy is "unavailable".
- **Warm-up** of every model (one short speed loop and one short sampling call) before
  anything is timed: first calls pay allocation, kernel loading and caching.
- **ABAB interleaving**: trial t runs base, distilled (and teacher) on the same slice of
  problems (problems[t::trials]), then trial t+1 does the same. Thermal throttling, background load
  and battery state drift over minutes; interleaving spreads that drift over all models
  instead of charging it all to whichever ran second. Over all trials each problem is
  sampled n times by each model, so quality costs the same as one evaluation.
- **Speed at batch 1** is our own timed loop over the model with mlx_lm's KV cache:
  prefill of a real problem prompt, then a fixed number of greedy decode steps (EOS is
  ignored so every run decodes the same count); `speed_repeats` runs per trial, median
  over all of them. The next step is queued with `async_eval` while the host reads the
  previous token, as real generation does.
- **Batched sampling throughput** is generated tokens / wall seconds of `sample_problems`
  (n samples per prompt, one prefill per prompt), the generation energy phase.
- **Verification** (sandboxed unit tests) is its own energy phase: J per solve counts
  generation + verification, what obtaining a correct solution costs.
- With an adapter, the distilled model is the base with the adapter fused in memory by
  default (what `mlx_lm.fuse` would ship; same weight bytes as the base); `fuse=False`
  measures the unfused LoRA layers instead.
- **The teacher** is a different model with its own tokenizer, measured in the same schedule
  with the same problems, seeds and decoding, so its J per solve, pass@1 per watt and tokens/s
  sit beside the student's on equal terms: what distilling saves per solved problem.
- **Nothing is reused**: every bench samples afresh, and bench.json records what each number
  belongs to (each model's identity, the hash of its weights; the problems' ids and content hash).
- **Memory** per model: all models stay resident, so MLX's raw peak during one model's slot
  also counts the others' weights. The reported peak is that model's weights plus the most its
  own phases (speed loop, sampling) allocated above what was resident when its slot began: what
  running it alone would need, as MLX counts it. The raw peak is kept beside it.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Sequence

from . import blas_governor, metrics
from .energy import EnergyMeter, EnergyReading, IdleBaseline, detect_meter, measure_idle, phase_energy
from .decoding import EVAL
from .errors import UserError
from .progress import Progress, stage_callback
from .prompts import get_style
from .records import Problem, Sample, Verdict
from .report import SCHEMA_VERSION


DEFAULT_PROBLEMS = "toy:heldout:50"
# pass@k reported besides pass@1 (when n allows), and always pass@n.
STANDARD_KS = (1, 5, 10, 20, 50, 100)


# -- scheduling ------------------------------------------------------------------------

def abab_schedule(labels: Sequence[str], trials: int) -> list[tuple[int, str]]:
    """[(trial, label), ...]: every model once per trial, in the same order, trial after trial
    (A B A B ...), so slow drift over the run falls on all models alike."""
    if trials < 1:
        raise UserError(f"--trials must be at least 1, got {trials}")
    return [(t, label) for t in range(trials) for label in labels]


def trial_slices(problems: Sequence[Problem], trials: int) -> list[list[Problem]]:
    """Problem t::trials for trial t: each trial sees a similar mix of the source (which is
    often sorted by difficulty), and all trials together cover every problem once."""
    return [list(problems[t::trials]) for t in range(trials)]


def default_ks(n: int) -> tuple[int, ...]:
    return tuple(sorted({k for k in STANDARD_KS if k <= n} | {n}))


# -- speed at batch 1 --------------------------------------------------------------------

def measure_speed(model, prompt: Sequence[int], decode_tokens: int, *, prefill_step: int = 2048) -> dict:
    """Prefill and greedy-decode timings of one prompt at batch 1.

    Prefill runs in chunks of `prefill_step` tokens (as mlx_lm does) and is timed until the
    first token and every layer's KV cache are computed. Decode then runs exactly
    `decode_tokens` steps, whatever the tokens are.
    """
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache

    if not prompt:
        raise UserError("speed measurement needs a non-empty prompt")
    if decode_tokens < 1:
        raise UserError(f"decode tokens must be at least 1, got {decode_tokens}")
    blas_governor.tick()  # here, not between steps: the decode below keeps MLX's stream busy
    cache = make_prompt_cache(model)
    tokens = mx.array(list(prompt), dtype=mx.int32)[None]

    t0 = time.perf_counter()
    for start in range(0, tokens.shape[1], prefill_step):
        logits = model(tokens[:, start:start + prefill_step], cache=cache)
        if start + prefill_step < tokens.shape[1]:
            mx.eval([c.state for c in cache])
    y = mx.argmax(logits[:, -1, :], axis=-1)
    mx.eval(y, [c.state for c in cache])
    t1 = time.perf_counter()

    def step(prev):
        out = model(prev[:, None], cache=cache)
        return mx.argmax(out[:, -1, :], axis=-1)

    nxt = step(y)
    mx.async_eval(nxt)
    for _ in range(decode_tokens - 1):
        following = step(nxt)
        mx.async_eval(following)
        nxt.item()  # the host reads each token, as a generator must
        nxt = following
    nxt.item()
    t2 = time.perf_counter()
    prefill_s, decode_s = t1 - t0, t2 - t1
    return {"prompt_tokens": len(prompt), "prefill_s": prefill_s, "prefill_tok_s": len(prompt) / prefill_s,
            "decode_tokens": decode_tokens, "decode_s": decode_s, "decode_tok_s": decode_tokens / decode_s}


# -- energy ---------------------------------------------------------------------------------

def combine_readings(readings: Sequence[EnergyReading]) -> EnergyReading:
    """One phase's windows (one per trial) summed into one reading; unavailable if any is."""
    duration = sum(r.duration_s for r in readings)
    if not readings:
        return EnergyReading.unavailable("none", 0.0, "the phase never ran")
    missing = next((r for r in readings if not r.available), None)
    if missing is not None:
        return EnergyReading.unavailable(missing.source, duration, missing.reason)
    joules: dict[str, float] = defaultdict(float)
    for r in readings:
        for domain, j in r.joules.items():
            joules[domain] += j
    notes = list(dict.fromkeys(n for r in readings for n in r.notes))
    first = readings[0]
    return EnergyReading(source=first.source, boundary=first.boundary, duration_s=duration,
                         joules=dict(joules), total_j=sum(r.total_j for r in readings),
                         is_estimate=any(r.is_estimate for r in readings), notes=notes)


def idle_baseline(meter: EnergyMeter, seconds: float) -> IdleBaseline:
    """Measure the idle draw; without a meter, say so at once instead of sleeping."""
    reason = meter.check()
    if meter.name == "none" or reason is not None:
        return IdleBaseline(False, 0.0, source=meter.name,
                            reason=getattr(meter, "reason", None) or reason or "no energy meter")
    return measure_idle(meter, seconds)


# -- assembling one model's block --------------------------------------------------------

@dataclass
class ModelRun:
    """What the trials collected for one model."""
    label: str
    spec: str
    adapter: Optional[str]
    weight_bytes: int
    read_bytes_per_token: Optional[int] = None  # metrics.bytes_read_per_token; None: weight_bytes
    speeds: list[dict] = field(default_factory=list)
    sample_seconds: list[float] = field(default_factory=list)
    verify_seconds: list[float] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    generation: list[EnergyReading] = field(default_factory=list)
    verification: list[EnergyReading] = field(default_factory=list)
    memory: list[tuple[int, int]] = field(default_factory=list)  # (resident at slot start, MLX peak) bytes


def memory_block(run: ModelRun) -> dict:
    """Peak memory of one model in GB (see the module docstring; None = never measured)."""
    gb = lambda b: b / 1e9
    if not run.memory:
        return {"weights_gb": gb(run.weight_bytes), "peak_gb": None, "working_gb": None, "process_peak_gb": None}
    working = max(max(peak - resident, 0) for resident, peak in run.memory)
    return {"weights_gb": gb(run.weight_bytes), "peak_gb": gb(run.weight_bytes + working),
            "working_gb": gb(working), "process_peak_gb": gb(max(peak for _, peak in run.memory))}


def model_block(run: ModelRun, problems: Sequence[Problem], *, n: int, idle: IdleBaseline | None,
                bandwidth_gbs: float | None, ks: Sequence[int] | None = None) -> dict:
    """The report's block for one model (see report.py's schema)."""
    from .evaluation import evaluate_verdicts

    generated = sum(s.num_tokens for s in run.samples)
    sample_s = sum(run.sample_seconds)
    decode = [s["decode_tok_s"] for s in run.speeds]
    prefill = [s["prefill_tok_s"] for s in run.speeds]
    speed = {
        "prefill_tok_s": statistics.median(prefill) if prefill else None,
        "decode_tok_s": statistics.median(decode) if decode else None,
        "batched_tok_s": generated / sample_s if sample_s > 0 else None,
        "batch_size": n,
        "trials": len(run.sample_seconds),
        "speed_measurements": len(run.speeds),
        "decode_tok_s_range": [min(decode), max(decode)] if decode else None,
        "prefill_tok_s_range": [min(prefill), max(prefill)] if prefill else None,
        "per_measurement": run.speeds,
        "sample_s_per_trial": run.sample_seconds,
    }
    quality = evaluate_verdicts(problems, run.verdicts, ks or default_ks(n))
    energy = {"generation": phase_energy(combine_readings(run.generation), idle),
              "verification": phase_energy(combine_readings(run.verification), idle)}
    from .report import efficiency_block

    return {
        "model": run.spec,
        "adapter": run.adapter,
        "weight_bytes": run.weight_bytes,
        "read_bytes_per_token": run.read_bytes_per_token or run.weight_bytes,
        "speed": speed,
        "quality": quality,
        "mean_output_tokens": generated / len(run.samples) if run.samples else 0.0,
        "generated_tokens": generated,
        "finish_reasons": dict(sorted(_count(s.finish_reason for s in run.samples).items())),
        "timing": {"generation_s": sample_s, "verification_s": sum(run.verify_seconds)},
        "energy": energy,
        "memory": memory_block(run),
        "efficiency": efficiency_block(quality, energy, generated, speed["decode_tok_s"],
                                       run.read_bytes_per_token or run.weight_bytes, bandwidth_gbs),
    }


def _count(items) -> dict:
    out: dict = defaultdict(int)
    for x in items:
        out[x] += 1
    return out


# -- the run ---------------------------------------------------------------------------------

def _check_options(n: int, trials: int, idle_seconds: float, decode_tokens: int, max_tokens: int) -> None:
    if n < 1:
        raise UserError(f"-n must be at least 1 sample per problem, got {n}")
    if trials < 1:
        raise UserError(f"--trials must be at least 1, got {trials}")
    if idle_seconds < 0:
        raise UserError(f"--idle-seconds must be >= 0, got {idle_seconds}")
    if decode_tokens < 1:
        raise UserError(f"--decode-tokens must be at least 1, got {decode_tokens}")
    if max_tokens < 1:
        raise UserError(f"--max-tokens must be at least 1, got {max_tokens}")


def _write_records(path: Path, records) -> None:
    from .jsonl import JsonlWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with JsonlWriter(path) as writer:
        for r in records:
            writer.write(r)


def check_models(model: str, adapter: str | None = None, teacher: str | None = None) -> None:
    """Resolve every model spec and check the adapter folder, so that a typo is a one-line
    error before the idle baseline and the progress bars, not after them."""
    from .models import check_adapter, resolve_model

    check_adapter(adapter)
    resolve_model(model)
    if teacher is not None:
        try:
            resolve_model(teacher)
        except UserError as exc:
            raise UserError(f"teacher: {exc}") from None


def run_bench(model: str = "tiny", adapter: str | None = None, *, teacher: str | None = None,
              problems: str | Sequence[Problem] = DEFAULT_PROBLEMS,
              n: int = EVAL.n, trials: int = 2, out_dir: str | Path = "bench_out",
              temperature: float = EVAL.temperature, top_k: int = EVAL.top_k, top_p: float = EVAL.top_p,
              min_p: float = EVAL.min_p, max_tokens: int = EVAL.max_tokens, seed: int = EVAL.seed,
              idle_seconds: float = 5.0, decode_tokens: int = 64, speed_repeats: int = 3, workers: int | None = None,
              timeout_s: float = 5.0, fuse: bool = True, raw_prompt: bool = False, prompt_style: str | None = None,
              meter: EnergyMeter | None = None, progress: Progress = None, write: bool = True,
              unsafe_no_isolation: bool = False) -> dict:
    """Bench the model (with an adapter also the distilled model, with a teacher also the
    teacher) and write bench.json, bench.md and bench.png into out_dir. Returns the result
    dict (report.py's schema)."""
    import mlx.core as mx

    from .execution import SandboxPool, verify_samples
    from .fingerprint import model_identity, problems_identity
    from .models import load_model, model_name, prompt_tokens
    from .platform_info import blas_threads, environment
    from .problems import load_problems
    from .sampling import DrawSettings, SamplingParams, sample_problems
    from .training.fuse import fuse_in_memory

    _check_options(n, trials, idle_seconds, decode_tokens, max_tokens)
    style = get_style(prompt_style, raw=raw_prompt).name
    if speed_repeats < 1:
        raise UserError(f"speed repeats must be at least 1, got {speed_repeats}")
    check_models(model, adapter, teacher)  # before the idle baseline: a typo should not cost its seconds
    problem_list = list(load_problems(problems) if isinstance(problems, str) else problems)
    if not problem_list:
        raise UserError(f"problem source {problems!r} is empty: nothing to bench")
    out = Path(out_dir)
    meter = meter or detect_meter()
    env = environment()
    bandwidth, bandwidth_note = metrics.memory_bandwidth_gbs(env.get("chip"), env.get("cpu_cores"))
    env.update(energy_meter=meter.name, memory_bandwidth_gbs=bandwidth, memory_bandwidth_note=bandwidth_note)
    if meter.name == "none":
        env["energy_meter_reason"] = getattr(meter, "reason", None)

    labels = ["base"] + (["distilled"] if adapter else []) + (["teacher"] if teacher else [])
    schedule = abab_schedule(labels, trials)
    slices = trial_slices(problem_list, trials)
    total_steps = 2 + len(labels) + 3 * len(schedule)  # idle, load, warm-ups, (speed, sample, verify) per slot
    overall = stage_callback(progress, "bench", "")

    def step(text: str) -> None:
        if overall:
            overall({"advance": 1, "total": total_steps, "text": text})

    # 1. Idle baseline before anything is loaded or computed.
    if overall:
        overall({"advance": 0, "total": total_steps, "text": "idle baseline"})
    idle = idle_baseline(meter, idle_seconds)
    step("idle baseline done")

    # 2. Load every model (kept resident so the trials can alternate between them).
    loaded, runs, identities = {}, {}, {}
    for label in labels:
        spec = teacher if label == "teacher" else model
        # What the numbers belong to: the weights' hashes, recorded in bench.json and every sample.
        identities[label] = model_identity(spec, adapter if label == "distilled" else None)
        m, tok = load_model(spec, adapter if label == "distilled" else None)
        if label == "distilled" and fuse:
            fuse_in_memory(m)
        loaded[label] = (m, tok)
        runs[label] = ModelRun(label, model_name(spec), adapter if label == "distilled" else None,
                               metrics.weight_bytes(m), metrics.bytes_read_per_token(m))
    step("models loaded")

    speed_prompt = {label: prompt_tokens(tok, problem_list[0], style=style) for label, (_, tok) in loaded.items()}
    draw = DrawSettings(n=n, params=SamplingParams(temperature=temperature, top_k=int(top_k), top_p=top_p,
                                                   min_p=min_p, seed=seed), max_tokens=max_tokens, prompt_style=style)
    warm_up = replace(draw, n=min(n, 2), max_tokens=min(8, max_tokens))

    # One sandbox pool for the whole run: its start-up is paid here, not in a metered phase.
    with SandboxPool(workers=workers, timeout_s=timeout_s, unsafe_no_isolation=unsafe_no_isolation) as pool:
        # 3. Warm-up: nothing here is timed or metered.
        for label, (m, tok) in loaded.items():
            measure_speed(m, speed_prompt[label], min(8, decode_tokens))
            sample_problems(m, tok, problem_list[:1], warm_up, group=None)
            step(f"warm-up {label}")

        # 4. Trials, interleaved A B (C) A B (C).
        executed: list[dict] = []
        for trial, label in schedule:
            m, tok = loaded[label]
            run = runs[label]
            where = f"{label} {trial + 1}/{trials}"
            t_start = time.perf_counter()
            mx.reset_peak_memory()
            resident = mx.get_active_memory()
            run.speeds += [measure_speed(m, speed_prompt[label], decode_tokens) for _ in range(speed_repeats)]
            step(f"speed {where}")

            chunk = slices[trial]
            samples: list[Sample] = []
            verdicts: list[Verdict] = []
            if chunk:
                on_sample = stage_callback(progress, "sample", where)
                meter.start()
                t0 = time.perf_counter()
                samples = sample_problems(m, tok, chunk, draw, group=None, model_name=identities[label],
                                          on_sample=(lambda s: on_sample({"advance": 1, "total": len(chunk) * n}))
                                          if on_sample else None)
                run.sample_seconds.append(time.perf_counter() - t0)
                run.generation.append(meter.stop())
            else:
                run.sample_seconds.append(0.0)
            run.memory.append((resident, mx.get_peak_memory()))
            step(f"sample {where}")

            if samples:
                on_verdict = stage_callback(progress, "verify", where)
                meter.start()
                t0 = time.perf_counter()
                verdicts = verify_samples(chunk, samples, pool=pool,
                                          on_result=(lambda v: on_verdict({"advance": 1, "total": len(samples)}))
                                          if on_verdict else None)
                run.verify_seconds.append(time.perf_counter() - t0)
                run.verification.append(meter.stop())
            step(f"verify {where}")
            run.samples += samples
            run.verdicts += verdicts
            executed.append({"trial": trial, "model": label, "problems": len(chunk), "samples": len(samples),
                             "start_s": t_start, "end_s": time.perf_counter()})

    t_origin = executed[0]["start_s"] if executed else 0.0
    for e in executed:  # seconds since the first trial began, readable in bench.json
        e["start_s"], e["end_s"] = round(e["start_s"] - t_origin, 4), round(e["end_s"] - t_origin, 4)

    models = {label: {**model_block(runs[label], problem_list, n=n, idle=idle, bandwidth_gbs=bandwidth),
                      "model_identity": identities[label]} for label in labels}
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": {"model": model_name(model), "adapter": adapter, "fused_adapter": bool(adapter and fuse),
                   "teacher": model_name(teacher) if teacher else None,
                   "problems": problems if isinstance(problems, str) else f"<{len(problem_list)} problems>",
                   "num_problems": len(problem_list), "problems_identity": problems_identity(problem_list),
                   "n": n, "trials": trials, "temperature": temperature,
                   "top_k": top_k, "top_p": top_p, "min_p": min_p, "max_tokens": max_tokens, "seed": seed,
                   "idle_seconds": idle_seconds, "decode_tokens": decode_tokens, "speed_repeats": speed_repeats,
                   "raw_prompt": style == "raw", "prompt_style": style,
                   "speed_prompt_tokens": len(speed_prompt["base"])},
        "environment": {**env, "blas_threads": blas_threads()},  # what the threads did during the run
        "idle": idle.to_dict(),
        "schedule": executed,
        "models": models,
        "definitions": dict(metrics.DEFINITIONS),
    }
    if write:
        from .report import write_report

        for label in labels:
            _write_records(out / label / "samples.jsonl", runs[label].samples)
            _write_records(out / label / "verdicts.jsonl", runs[label].verdicts)
        result["outputs"] = {kind: str(out / f"bench.{kind}") for kind in ("json", "md", "png")}
        write_report(result, out)
    return result
