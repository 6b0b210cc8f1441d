"""The offline demo: the embedded tiny model distilled on the toy world, two ways.

Test-filtered self-distillation (rft) and SSD run from the same base model with the same
evaluation settings, so the base model is evaluated once and shared. Returns base vs
distilled held-out pass@1 for each method, time per stage and samples kept.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from .config import resolve_config
from .loop import run
from .progress import Progress

DEMO_METHODS = {"rft": "tiny-rft", "ssd": "tiny-ssd"}


def run_demo(runs_dir: str | Path = "runs", *, methods=("rft", "ssd"), fresh: bool = False,
             overrides: dict | None = None, assignments=(), progress: Progress = None) -> dict:
    """Both methods from their presets; `assignments` ('KEY=VALUE', as `run --set`) change both."""
    t0 = time.time()
    runs_dir = Path(runs_dir)
    results: dict = {}
    first_base: Path | None = None
    for method in methods:
        name = f"demo-{method}"
        if fresh and (runs_dir / name).exists():
            shutil.rmtree(runs_dir / name)
        config = resolve_config(preset_name=DEMO_METHODS[method], overrides={"name": name, **(overrides or {})},
                                assignments=assignments)
        base_dir = runs_dir / name / "base"
        if first_base is not None and not base_dir.exists():
            # Same base model, same evaluation settings: reuse the first method's base evaluation.
            shutil.copytree(first_base, base_dir)
        # One bar per method and stage: both methods have a "sample round 1".
        tagged = None if progress is None else (lambda stage, info, m=method: progress(f"{m} {stage}", info))
        summary = run(config, runs_dir, progress=tagged)
        first_base = first_base or runs_dir / name / "base"
        last = summary["rounds"][-1]
        results[method] = {
            "base_pass_at_1": summary.get("base_pass_at_1"),
            "distilled_pass_at_1": summary.get("distilled_pass_at_1"),
            "distilled_ci": last["eval"]["pass_at_1_ci"] if last.get("eval") else None,
            "base_ci": summary["base_eval"]["pass_at_1_ci"] if "base_eval" in summary else None,
            "samples": last["samples"],
            "kept": last["kept"],
            "seconds": {"base_eval": summary.get("base_eval_seconds", 0.0), **last["seconds"]},
            "run_dir": summary["run_dir"],
        }
    head = results[methods[0]]
    return {
        "eval_sampling": dict(config.eval.__dict__),  # the same for every method (the base is shared)
        "method": methods[0],
        "base_pass_at_1": head["base_pass_at_1"],
        "distilled_pass_at_1": head["distilled_pass_at_1"],
        "gain_points": None if head["base_pass_at_1"] is None else
        round(100 * (head["distilled_pass_at_1"] - head["base_pass_at_1"]), 1),
        "methods": results,
        "seconds": round(time.time() - t0, 1),
    }
