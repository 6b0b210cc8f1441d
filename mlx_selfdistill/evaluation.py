"""pass@k of a model on a problem set: unbiased estimator, 95 % interval, per difficulty.

`evaluate_verdicts` turns verdicts into numbers; `evaluate_model` samples, verifies and
summarises (resumable through its working directory); `temperature_sweep` is the paper's
third step: decode with a separately tuned temperature, and report the best one.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from .decoding import EVAL
from .errors import UserError
from .metrics import summarize_quality
from .progress import stage_callback
from .records import Problem, Verdict


def counts_by_problem(problems: Sequence[Problem], verdicts: Iterable[Verdict]) -> dict[str, tuple[int, int]]:
    """(samples, passing samples) per problem that has at least one verdict, in the problems'
    order: verdicts arrive in completion order, and the bootstrap interval must not depend on it."""
    known = {p.id for p in problems}
    n, c = defaultdict(int), defaultdict(int)
    for v in verdicts:
        if v.problem_id not in known:
            continue
        n[v.problem_id] += 1
        c[v.problem_id] += int(v.passed)
    return {p.id: (n[p.id], c[p.id]) for p in problems if p.id in n}


def evaluate_verdicts(problems: Sequence[Problem], verdicts: Iterable[Verdict], ks: Iterable[int] = (1,),
                      seed: int = 0) -> dict:
    """Overall and per-difficulty pass@k with intervals."""
    counts = counts_by_problem(problems, verdicts)
    if not counts:
        raise UserError("no verdicts match these problems: nothing to evaluate")
    ks = tuple(ks)
    result = summarize_quality(list(counts.values()), ks, seed=seed)
    by_level: dict[str, list] = defaultdict(list)
    for p in problems:
        if p.id in counts:
            by_level[p.difficulty or "unknown"].append(counts[p.id])
    result["by_difficulty"] = {
        level: summarize_quality(level_counts, ks, seed=seed) for level, level_counts in sorted(by_level.items())
    }
    return result


def evaluate_model(model, problems: Sequence[Problem], *, work_dir: str | Path, adapter=None, n: int = EVAL.n,
                   temperature: float = EVAL.temperature, top_k: int = EVAL.top_k, top_p: float = EVAL.top_p,
                   min_p: float = EVAL.min_p, max_tokens: int = EVAL.max_tokens, seed: int = EVAL.seed,
                   ks: Iterable[int] = (1,), workers=None,
                   timeout_s: float = 5.0, progress=None, prompt_style: str | None = None,
                   sampling_kw: dict | None = None, unsafe_no_isolation: bool = False,
                   model_id: str | None = None, subfolder_per_key: bool = False,
                   stats: dict | None = None) -> dict:
    """Sample n per problem, verify in the sandbox, summarise. Resumes from work_dir's files.

    `model` is a model spec (path, hub id, 'tiny') or a loaded (model, tokenizer) pair; pass a
    loaded pair's `model_id` (fingerprint.model_identity of its spec) where known, else its weights
    are hashed (fingerprint.loaded_identity).
    `prompt_style` names the prompt (prompts/styles.py), e.g. 'evalplus' for figures
    comparable with the EvalPlus leaderboard. `sampling_kw`: the sampler's other settings
    (DrawSettings fields: raw_prompt, max_batch, max_kv_tokens, exact). `stats`, if given,
    receives the sampler's figures for this call (sample_problems' stats).

    work_dir is keyed (fingerprint.evaluation_key: model, problems, prompt, sampling, timeout):
    files made with anything else are never reused. A work_dir holding another key is refused,
    or, with `subfolder_per_key`, the evaluation goes to work_dir/<key> beside the others.
    """
    from .execution import verify_into_file
    from .fingerprint import claim, evaluation_key, loaded_identity, model_identity, short
    from .prompts import get_style
    from .records import Sample, in_key_order, read_records
    from .sampling import DrawSettings, SamplingParams, sample_problems

    if isinstance(model, tuple):
        loaded = model
        model_id = model_id or loaded_identity(*loaded)
    else:
        from .models import load_model

        model_id = model_id or model_identity(model, adapter)
        loaded = load_model(model, adapter)
    params = SamplingParams(temperature=temperature, top_k=int(top_k), top_p=top_p, min_p=min_p, seed=seed)
    draw = DrawSettings(n=n, params=params, max_tokens=max_tokens, prompt_style=prompt_style, **(sampling_kw or {}))
    style = get_style(draw.prompt_style, raw=draw.raw_prompt)
    sampling = {"n": n, **draw.identity()}  # exact only when set: stored evaluations keep their keys
    key = evaluation_key(model_id, problems, prompt_style=style.name, sampling=sampling, timeout_s=timeout_s)
    work_dir = Path(work_dir) / short(key) if subfolder_per_key else Path(work_dir)
    claim(work_dir, key, hint="use another output folder or delete it")
    samples_path = work_dir / "samples.jsonl"
    total = 2 * len(problems) * n  # each sample is drawn, then verified
    tick = (lambda *_: progress({"advance": 1, "total": total})) if progress else None
    stats = {} if stats is None else stats
    sample_problems(loaded[0], loaded[1], list(problems), draw, out_path=samples_path, on_sample=tick,
                    model_name=model_id, stats=stats)
    samples = in_key_order(read_records(samples_path, Sample))  # file order depends on resumes
    verdicts, _ = verify_into_file(list(problems), samples, work_dir / "verdicts.jsonl", workers=workers,
                                   timeout_s=timeout_s, on_result=tick, unsafe_no_isolation=unsafe_no_isolation)
    result = evaluate_verdicts(problems, verdicts, ks, seed=seed)
    result["sampling"] = sampling
    result["prompt_style"] = style.name
    result["mean_output_tokens"] = sum(s.num_tokens for s in samples) / max(1, len(samples))
    result["model_identity"], result["work_dir"] = model_id, str(work_dir)
    # Wall-clock figures of this call, apart from the results (a resumed run must give the same
    # results): generated tokens per second of its sampling, None when every sample was on disk.
    rate = stats.get("tokens_per_sec") if stats.get("new") else None
    result["timing"] = {"sampling_tokens_per_sec": round(rate, 2) if rate else None,
                        "max_batch": stats.get("max_batch")}
    return result


def temperature_sweep(model, problems: Sequence[Problem], temperatures: Sequence[float], *, work_dir, **kw) -> dict:
    """Evaluate at each temperature; report every result and the best temperature by pass@1."""
    if not temperatures:
        raise UserError("temperature sweep needs at least one temperature")
    from .fingerprint import loaded_identity, model_identity

    loaded = model
    if not isinstance(model, tuple):
        from .models import load_model

        adapter = kw.pop("adapter", None)
        kw["model_id"] = kw.get("model_id") or model_identity(model, adapter)
        loaded = load_model(model, adapter)
    kw["model_id"] = kw.get("model_id") or loaded_identity(*loaded)  # once for every temperature
    results = {}
    for t in temperatures:
        results[f"{t:g}"] = evaluate_model(loaded, problems, work_dir=Path(work_dir) / f"T{t:g}", temperature=t, **kw)
        results[f"{t:g}"].pop("timing")  # wall-clock; the sweep is a result a rerun reproduces
    best = max(results, key=lambda k: (results[k]["pass_at_1"], -float(k)))
    return {"results": results, "best_temperature": float(best), "best_pass_at_1": results[best]["pass_at_1"]}


def compare_models(model, adapter, problems_spec, out_dir, *, sweep=(), progress=None, **kw) -> dict:
    """Evaluate the base model and, with an adapter, the adapted one, on the same problems and
    seeds (side by side); with `sweep`, also each one's best decoding temperature."""
    from .fingerprint import model_identity
    from .jsonl import write_json_atomic
    from .models import check_adapter, load_model
    from .problems import load_problems

    adapter = check_adapter(adapter)  # before spending time on the base model
    problems = load_problems(problems_spec)
    if adapter:
        from .overlap import warn_adapter_overlap

        warn_adapter_overlap(adapter, problems, problems_spec)
    out_dir = Path(out_dir)
    results = {}
    for label, adapter_path in [("base", None)] + ([("adapter", adapter)] if adapter else []):
        # Each evaluation in its own out_dir/label/<key>: another model, adapter, problem set or
        # setting never resumes from (or reports) this one's samples.
        model_id = model_identity(model, adapter_path)
        loaded = load_model(model, adapter_path)
        res = evaluate_model(loaded, problems, work_dir=out_dir / label, model_id=model_id, subfolder_per_key=True,
                             progress=stage_callback(progress, "eval", label), **kw)
        if sweep:
            sweep_kw = {k: v for k, v in kw.items() if k != "temperature"}
            res["sweep"] = temperature_sweep(loaded, problems, sweep, work_dir=Path(res["work_dir"]) / "sweep",
                                             model_id=model_id, **sweep_kw)
        results[label] = res
    write_json_atomic(out_dir / "eval.json", results)
    return results
