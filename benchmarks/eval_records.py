"""What the study scripts report about an evaluation folder (samples.jsonl + verdicts.jsonl):
passes, the ids that passed (for paired flips), the EOS stop rate and the mean length. One
place, so mbpp_study, real_distill and code_run count the same way."""

from __future__ import annotations

from pathlib import Path


def sample_stats(samples) -> dict:
    """The share of samples that stopped at EOS (or a stop string), and their mean length in tokens."""
    n = max(1, len(samples))
    return {"eos_stop_rate": round(sum(s.finish_reason == "stop" for s in samples) / n, 4),
            "mean_tokens": round(sum(s.num_tokens for s in samples) / n, 1)}


def eval_dir_stats(eval_dir: Path) -> dict:
    """Passes, total, the passing problem ids, the verdict statuses and sample_stats of one
    evaluation folder."""
    from collections import Counter

    from mlx_selfdistill.records import Sample, Verdict, read_records

    samples = read_records(Path(eval_dir) / "samples.jsonl", Sample)
    verdicts = read_records(Path(eval_dir) / "verdicts.jsonl", Verdict)
    return {"passed": sum(v.passed for v in verdicts), "total": len(verdicts),
            "passed_ids": sorted(v.problem_id for v in verdicts if v.passed),
            "statuses": dict(Counter(v.status for v in verdicts)), **sample_stats(samples)}
