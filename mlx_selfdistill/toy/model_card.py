"""Measure the tiny model's held-out pass@1 (sampled at T=1.0 and greedy) for its model card."""

from __future__ import annotations

import tempfile
from pathlib import Path

HELDOUT_PROBLEMS = 200


def measure_pass_at_1(model_path: str | Path, *, problems: int = HELDOUT_PROBLEMS, n_sampled: int = 4,
                      max_tokens: int = 96, seed: int = 0) -> dict:
    """Held-out pass@1 of the model folder at T=1.0 (n samples per problem) and greedy.

    Measured through the product's own path (sampler + sandbox), so the card's figures are
    the ones `eval` would print for the same settings.
    """
    from ..evaluation import evaluate_model
    from ..fingerprint import model_identity
    from ..models import load_model
    from .world import toy_problems

    pair = load_model(str(model_path))
    heldout = toy_problems("heldout", problems)
    out = {"problems": len(heldout), "max_tokens": max_tokens, "seed": seed}
    with tempfile.TemporaryDirectory() as work:
        for label, temperature, n in (("t1", 1.0, n_sampled), ("greedy", 0.0, 1)):
            result = evaluate_model(pair, heldout, work_dir=Path(work) / label, n=n, temperature=temperature,
                                    max_tokens=max_tokens, seed=seed, model_id=model_identity(str(model_path)))
            out[f"pass_at_1_{label}"] = round(result["pass_at_1"], 4)
            out[f"pass_at_1_{label}_ci"] = [round(x, 4) for x in result["pass_at_1_ci"]]
            if label == "t1":
                out["samples_per_problem_t1"] = n
    return out
