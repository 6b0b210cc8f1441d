"""sample_problems / sample_file: problems in, Sample records out, resumable.

Samples are appended to the JSONL output as they finish. A rerun reads the file and
skips the (problem_id, sample_index) pairs already there; because each sample's
randomness is a function of (seed, problem_id, sample_index) alone, the resumed run
draws the samples an uninterrupted run would have drawn.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from .. import blas_governor
from ..errors import UserError
from ..jsonl import JsonlWriter
from ..prompts import PromptStyle, get_style
from ..records import Problem, Sample, read_records
from . import distributed as dist
from .draw import DrawSettings
from .engine import Finished, Request, SamplingEngine
from .prefix import shared_length, style_header
from .samplers import sequence_seed

# Settings that change what a (problem_id, sample_index) is: a file must not mix them.
IDENTITY_FIELDS = ("temperature", "top_k", "top_p", "min_p", "seed", "max_tokens")


def read_samples(path: os.PathLike) -> list[Sample]:
    """The complete Sample records of a JSONL file (a killed writer's partial tail is ignored)."""
    return read_records(path, Sample)


def _existing(path: Optional[Path], sampling: dict, style: str = "", model: str = "") -> dict:
    if path is None or not path.exists():
        return {}
    done = {}
    for s in read_samples(path):
        # A field the record lacks was not recorded by the version that wrote it: not a difference.
        old = {k: s.sampling.get(k) for k in IDENTITY_FIELDS if k in s.sampling}
        new = {k: sampling[k] for k in old}
        if old != new:
            raise UserError(f"{path}: holds samples drawn with {old}, but this run asks for {new}; "
                            "use another output file or the same settings")
        if s.prompt_style and style and s.prompt_style != style:  # "": written before styles were recorded
            raise UserError(f"{path}: holds samples of prompt style {s.prompt_style!r}, but this run asks for "
                            f"{style!r}; use another output file or the same style")
        if bool(s.sampling.get("exact")) != bool(sampling.get("exact")):
            had, asked = ("with", "without") if s.sampling.get("exact") else ("without", "with")
            raise UserError(f"{path}: holds samples drawn {had} --exact, but this run asks for them {asked} it; "
                            "use another output file or the same setting")
        if s.model and model and s.model != model:  # "": written before models were identified
            raise UserError(f"{path}: holds samples of model {s.model}, but this run samples {model}; "
                            "use another output file")
        done.setdefault(s.key, s)
    return done


def _to_sample(fin: Finished, problem: Problem, prompt: str, *, round_: int, model_name: str,
               sampling: dict, style: PromptStyle) -> Sample:
    extracted = style.extract(fin.text, problem)
    return Sample(
        problem_id=problem.id, sample_index=fin.sample_index, completion=fin.text, code=extracted.code,
        round=round_, model=model_name, prompt_text=prompt, finish_reason=fin.finish_reason,
        num_tokens=fin.num_tokens, mean_logprob=fin.mean_logprob,
        mean_sampling_logprob=fin.mean_sampling_logprob, sampling=dict(sampling),
        reasoning=extracted.reasoning, prompt_style=style.name,
    )


def sample_problems(model, tokenizer, problems: Iterable[Problem], draw: DrawSettings = DrawSettings(), *,
                    round: int = 0, model_name: str = "", out_path=None,
                    on_sample: Optional[Callable[[Sample], None]] = None,
                    on_tokens: Optional[Callable[[int], None]] = None,
                    group="auto", stats: Optional[dict] = None) -> list[Sample]:
    """Draw samples 0..draw.n-1 of every problem; returns all of them (old and new) in
    problem order then sample_index order.

    Under `mlx.launch` (group="auto") each rank draws its share (problems[rank::size]);
    rank 0 merges everything into out_path and returns all samples, the other ranks
    return their own. Pass group=None to ignore a launcher.

    `draw.prompt_style` names the prompt and extraction (prompts/styles.py); its stop strings
    join `draw.stop`. `draw.max_batch="auto"`: the rows this machine decodes fastest with,
    measured once per model (rows.py).
    """
    from ..models import prompt_text, prompt_tokens

    n = draw.n
    style = get_style(draw.prompt_style, raw=draw.raw_prompt)
    stop = draw.stop + tuple(s for s in style.stop if s not in draw.stop)
    sampling = draw.identity()
    problems = list(problems)
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise UserError(f"problem id {dup!r} appears twice: problem ids must be unique")

    group = dist.launched_group() if group == "auto" else group
    rank, size = (group.rank(), group.size()) if group is not None else (0, 1)
    out_path = Path(out_path) if out_path is not None else None
    write_path = dist.shard_path(out_path, rank, size) if (group is not None and out_path) else out_path

    done = _existing(out_path, sampling, style.name, model_name)
    if write_path != out_path:
        done.update({k: v for k, v in _existing(write_path, sampling, style.name, model_name).items()
                     if k not in done})

    mine = problems[rank::size]
    by_id = {p.id: p for p in problems}
    requests, prompts = [], {}
    header = style_header(tokenizer, style.name)
    for p in mine:
        missing = [i for i in range(n) if (p.id, i) not in done]
        if not missing:
            continue
        prompts[p.id] = prompt_text(tokenizer, p, style=style.name)
        tokens = prompt_tokens(tokenizer, p, style=style.name)
        requests.append(Request(prompt=tokens, sample_indices=missing,
                                seeds=[sequence_seed(draw.params.seed, p.id, i) for i in missing], tag=p.id,
                                shared=shared_length(tokens, header)))

    max_batch = draw.max_batch
    if max_batch == "auto":
        from ..metrics import weight_bytes
        from .rows import rows_for

        max_batch = rows_for(model, model_name or f"{type(model).__module__}:{weight_bytes(model)}").rows
    engine = SamplingEngine(model, tokenizer, draw.params, max_tokens=draw.max_tokens, stop=stop,
                            max_batch=max_batch, max_kv_tokens=draw.max_kv_tokens, prefill_step=draw.prefill_step,
                            runaway=draw.runaway, exact=draw.exact)
    new: list[Sample] = []
    t0 = time.perf_counter()
    writer = JsonlWriter(write_path) if write_path is not None and requests else None
    try:
        for fin in engine.run(requests, on_tokens=on_tokens):
            sample = _to_sample(fin, by_id[fin.tag], prompts[fin.tag], round_=round, model_name=model_name,
                                sampling=sampling, style=style)
            if writer:
                writer.write(sample)
            new.append(sample)
            if on_sample:
                on_sample(sample)
    finally:
        if writer:
            writer.close()
    seconds = time.perf_counter() - t0
    if stats is not None:
        stats.update(new=len(new), skipped=sum(1 for p in mine for i in range(n) if (p.id, i) in done),
                     generated_tokens=engine.generated_tokens, prompt_tokens=engine.prompt_tokens,
                     header_cache=engine.headers.stats(), blas_threads=blas_governor.summary(),
                     seconds=seconds, rank=rank, world_size=size, max_batch=max_batch, exact=draw.exact,
                     row_floor=engine.row_floor,
                     tokens_per_sec=engine.generated_tokens / seconds if seconds > 0 else None)

    have = dict(done)
    have.update({s.key: s for s in new})
    if group is not None:
        have = _merge_ranks(group, out_path, write_path, have, mine, n)
        if rank != 0:
            problems = mine
    return [have[(p.id, i)] for p in problems for i in range(n) if (p.id, i) in have]


def _merge_ranks(group, out_path, shard, have: dict, mine: list[Problem], n: int) -> dict:
    """Rank 0 collects every rank's samples and appends the ones out_path lacks."""
    own = [have[(p.id, i)].to_dict() for p in mine for i in range(n) if (p.id, i) in have]
    gathered = dist.gather_records(own, group)
    if group.rank() == 0:
        merged = {**have, **{(r["problem_id"], r["sample_index"]): Sample.from_dict(r) for r in gathered}}
        if out_path is not None:
            present = set(_existing(out_path, next(iter(merged.values())).sampling) if merged else {})
            with JsonlWriter(out_path) as writer:
                for key, s in merged.items():
                    if key not in present:
                        writer.write(s)
        have = merged
    dist.barrier(group)  # out_path holds everything: the shards can go
    if shard is not None and shard != out_path and Path(shard).exists():
        Path(shard).unlink()
    return have


def sample_file(model_spec, problems_spec, out_path, draw: DrawSettings = DrawSettings(), *, adapter=None,
                limit: Optional[int] = None, **kwargs) -> list[Sample]:
    """Load a model (and adapter) and a problem source, sample, append to out_path."""
    from ..fingerprint import model_identity
    from ..models import load_model
    from ..problems import load_problems

    problems = load_problems(problems_spec, limit=limit)
    model, tokenizer = load_model(model_spec, adapter)
    kwargs.setdefault("model_name", model_identity(model_spec, adapter))
    return sample_problems(model, tokenizer, problems, draw, out_path=out_path, **kwargs)


def summarize_samples(samples: Sequence[Sample]) -> dict:
    reasons: dict = {}
    for s in samples:
        reasons[s.finish_reason] = reasons.get(s.finish_reason, 0) + 1
    lps = [s.mean_logprob for s in samples if s.mean_logprob is not None]
    return {
        "samples": len(samples),
        "problems": len({s.problem_id for s in samples}),
        "finish_reasons": reasons,
        "mean_tokens": round(sum(s.num_tokens for s in samples) / len(samples), 1) if samples else 0,
        "with_code": sum(1 for s in samples if s.code.strip()),
        "mean_logprob": round(sum(lps) / len(lps), 4) if lps else None,
    }
