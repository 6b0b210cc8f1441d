"""Self-distillation rounds: sample -> verify -> filter -> train -> evaluate.

A run is a directory:

    runs/NAME/config.json             the resolved config (a rerun must match it)
    runs/NAME/inputs.json             the identities of its model(s) and problem sets (run_state.py)
    runs/NAME/base/eval.json          base model on the evaluation problems
    runs/NAME/round_1/samples.jsonl   ... verdicts.jsonl, train.jsonl, adapters/, eval/, eval.json
    runs/NAME/*/validation/           the validation gate's evaluations (base/, round_N/, round_N/select/*/)
    runs/NAME/kept.json               the model the run hands back: the best round on validation, or the base
    runs/NAME/summary.json

Every stage appends to or atomically writes its own file and reads only the previous
stage's, so `run` killed at any moment continues, when started again, from the last
completed unit of work: samples and verdicts are skipped by key, training resumes from
its last checkpoint, finished stages leave a marker and are not redone. Records are read in
key order, never file order, so a resumed run ends with the same adapter bytes and the same
evaluation as an uninterrupted one (tests/test_resume.py kills a run in every stage).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .config import RunConfig
from .errors import UserError
from .filtering import FilterConfig, filter_samples, to_train_examples
from .jsonl import write_json_atomic, write_jsonl_atomic
from .progress import Progress, stage_callback
from .records import Problem, Sample, Verdict, in_key_order, read_records



@dataclass
class RoundResult:
    round: int
    samples: int = 0
    kept: int = 0
    filter_stats: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    eval: Optional[dict] = None
    validation: Optional[dict] = None  # the validation gate's evaluation of this round's student
    seconds: dict = field(default_factory=dict)


class Run:
    """One run directory and the config it was started with."""

    def __init__(self, config: RunConfig, runs_dir: str | Path = "runs", *, overwrite: bool = False):
        from .run_state import open_run_dir, run_inputs

        self.config = config
        self.dir = Path(runs_dir) / config.name
        self._problems: dict[str, list[Problem]] = {}
        self._loaded: dict[tuple, tuple] = {}
        self._identities: dict[tuple, str] = {}
        # Models and problem sources resolve first: a typo must not leave a run dir behind.
        inputs = run_inputs(config, self.problems)
        if config.gate.enabled:
            self.train_problems()  # too few problems to hold a validation slice back: say so before any work
        self.status = open_run_dir(self.dir, config, inputs, overwrite=overwrite)

    # -- bookkeeping --------------------------------------------------------------------
    def identity(self, model: str, adapter: str | None = None) -> str:
        """fingerprint.model_identity, once per (model, adapter) in this invocation."""
        key = (model, adapter)
        if key not in self._identities:
            from .fingerprint import model_identity

            self._identities[key] = model_identity(model, adapter)
        return self._identities[key]

    def round_dir(self, r: int) -> Path:
        return self.dir / f"round_{r}"

    def problems(self, spec: str) -> list[Problem]:
        if spec not in self._problems:
            from .problems import load_problems

            self._problems[spec] = load_problems(spec)
            if not self._problems[spec]:
                raise UserError(f"problem source {spec!r} is empty")
        return self._problems[spec]

    def train_problems(self) -> list[Problem]:
        """The training problems, less the validation gate's held-back slice (gate.py)."""
        from .gate import held_back

        problems = self.problems(self.config.problems)
        gate = self.config.gate
        if gate.problems is not None or gate.holdout <= 0:
            return problems
        kept_back = held_back([p.id for p in problems], gate.holdout)
        return [p for p in problems if p.id not in kept_back]

    def val_problems(self) -> list[Problem]:
        """What the validation gate evaluates on: gate.problems, else the held-back slice."""
        gate = self.config.gate
        if gate.problems is not None:
            return self.problems(gate.problems)
        train_ids = {p.id for p in self.train_problems()}
        return [p for p in self.problems(self.config.problems) if p.id not in train_ids]

    def load(self, model: str, adapter: str | None = None):
        key = (model, adapter)
        if key not in self._loaded:
            from .models import load_model

            self._loaded.clear()  # one model in memory at a time: a 7B pair would not fit
            self._loaded[key] = load_model(model, adapter)
        return self._loaded[key]

    # -- which model does what ------------------------------------------------------------
    def student_after(self, r: int) -> tuple[str, str | None]:
        """(model, adapter) of the student after round r (r=0: the base model)."""
        if r == 0:
            return self.config.model, None
        rd = self.round_dir(r)
        if self.config.restart_from_base or self.config.rounds == 1:
            return self.config.model, str(rd / "adapters")
        return str(rd / "model"), None

    def sampler_for(self, r: int) -> tuple[str, str | None]:
        if self.config.teacher:
            return self.config.teacher, None
        return self.student_after(r - 1)

    def train_base_for(self, r: int) -> str:
        if self.config.restart_from_base or r == 1:
            return self.config.model
        return self.student_after(r - 1)[0]

    # -- stages -----------------------------------------------------------------------------
    def sample(self, r: int, progress: Progress = None) -> list[Sample]:
        from .sampling import sample_problems

        cfg, rd = self.config.sample, self.round_dir(r)
        problems = self.train_problems()
        path = rd / "samples.jsonl"
        existing = read_records(path, Sample, missing_ok=True)
        if len(existing) < len(problems) * cfg.n:
            model, adapter = self.sampler_for(r)
            m, tok = self.load(model, adapter)
            callback, total = stage_callback(progress, "sample", r), len(problems) * cfg.n
            if callback:
                callback({"completed": len(existing), "total": total})
            sample_problems(m, tok, problems, cfg.draw(seed_offset=1000 * r), round=r, out_path=path,
                            model_name=self.identity(model, adapter),
                            on_sample=(lambda s: callback({"advance": 1})) if callback else None)
            existing = read_records(path, Sample, missing_ok=True)
        return in_key_order(existing)  # a resumed run appended them in another order

    def needs_verdicts(self) -> bool:
        return "tests" in self.filter_config().filters

    def verify(self, r: int, samples: list[Sample], progress: Progress = None) -> list[Verdict]:
        from .execution import verify_into_file

        path = self.round_dir(r) / "verdicts.jsonl"
        callback = stage_callback(progress, "verify", r)
        total = len({s.key for s in samples})
        verdicts, _ = verify_into_file(self.problems(self.config.problems), samples, path,
                                       workers=self.config.workers, timeout_s=self.config.timeout_s,
                                       unsafe_no_isolation=self.config.unsafe_no_isolation,
                                       on_result=(lambda v: callback({"advance": 1, "total": total}))
                                       if callback else None)
        return verdicts

    def filter_config(self) -> FilterConfig:
        values = dict(self.config.filter_defaults())
        values.update(self.config.filter)
        return FilterConfig(**values)

    def filter(self, r: int, samples: list[Sample], verdicts: list[Verdict]) -> tuple[list[dict], dict]:
        kept, stats = filter_samples(samples, verdicts, self.filter_config())
        problems = {p.id: p for p in self.problems(self.config.problems)}
        examples = to_train_examples(kept, problems)
        write_jsonl_atomic(self.round_dir(r) / "train.jsonl", examples)
        return examples, stats

    def train(self, r: int, examples: list[dict], progress: Progress = None, *, where: Path | None = None,
              overrides: dict | None = None) -> dict:
        """Train round r's adapter into round_r/adapters (fused into round_r/model when rounds build
        on each other); with `where` and `overrides`, one candidate setting of the validation gate's
        --select, into where/adapters and never fused (gate.select_round installs the winner)."""
        from .training import TrainConfig, train

        rd = self.round_dir(r)
        where = where or rd
        marker = where / "train_done.json"
        if marker.exists():
            return json.loads(marker.read_text())
        if not examples:
            raise UserError(f"round {r}: the filter kept no samples, nothing to train on "
                            "(sample more, raise the temperature, or use method 'ssd')")
        config = TrainConfig(**{"seed": self.config.sample.seed, **self.config.train, **(overrides or {})})
        base = self.train_base_for(r)
        resume = (where / "adapters").exists() and any((where / "adapters").iterdir())
        result = train(self.load(base), rd / "train.jsonl", where / "adapters", config, resume=resume,
                       on_step=stage_callback(progress, "train", r))
        if where == rd:
            self.fuse_if_needed(r)
        write_json_atomic(marker, _plain(result))
        return result

    def fuse_if_needed(self, r: int) -> None:
        """Rounds that build on each other sample and train from the previous round's fused model."""
        if not (self.config.restart_from_base or self.config.rounds == 1):
            from .training import fuse_adapter

            rd = self.round_dir(r)
            fuse_adapter(self.train_base_for(r), rd / "adapters", rd / "model")

    def evaluate(self, label: str, model: str, adapter: str | None, progress: Progress = None, *,
                 problems: list[Problem] | None = None, out_dir: Path | None = None) -> dict:
        """pass@k of (model, adapter) on the evaluation problems (or `problems`), kept in
        <run>/<label>/ (or out_dir): eval/ holds its samples and verdicts, eval.json the result."""
        from .evaluation import evaluate_model, temperature_sweep

        cfg = self.config.eval
        out_dir = out_dir or self.dir / label
        out = out_dir / "eval.json"
        if out.exists():
            return json.loads(out.read_text())
        validating = problems is not None
        problems = problems if validating else self.problems(cfg.problems)
        kw = dict(n=cfg.n, top_k=cfg.top_k, top_p=cfg.top_p, min_p=cfg.min_p, max_tokens=cfg.max_tokens,
                  seed=cfg.seed, ks=cfg.ks, workers=self.config.workers, timeout_s=self.config.timeout_s,
                  unsafe_no_isolation=self.config.unsafe_no_isolation,
                  progress=stage_callback(progress, "eval", label),
                  prompt_style=cfg.prompt_style or self.config.sample.prompt_style,
                  sampling_kw={"raw_prompt": self.config.sample.raw_prompt and cfg.prompt_style is None,
                               "max_batch": self.config.sample.max_batch,
                               "max_kv_tokens": self.config.sample.max_kv_tokens,
                               "exact": self.config.sample.exact})
        loaded = self.load(model, adapter)
        kw["model_id"] = self.identity(model, adapter)
        result = evaluate_model(loaded, problems, work_dir=out_dir / "eval", temperature=cfg.temperature, **kw)
        result["model"], result["adapter"] = model, adapter
        result.pop("timing", None)  # wall-clock: eval.json holds what a resumed run reproduces
        if cfg.sweep and not validating:
            result["sweep"] = temperature_sweep(loaded, problems, cfg.sweep, work_dir=out_dir / "sweep", **kw)
        write_json_atomic(out, result)
        return result


def _spent(stage_dir: Path, stage: str, t0: float) -> float:
    """Seconds spent on a stage over every invocation of the run (kept in stage_dir/timing.json),
    so a resumed run reports what the work cost, not the few seconds of finding it done."""
    path = stage_dir / "timing.json"
    spent = json.loads(path.read_text()) if path.exists() else {}
    spent[stage] = round(spent.get(stage, 0.0) + time.time() - t0, 2)
    write_json_atomic(path, spent)
    return spent[stage]


def _plain(obj):
    return json.loads(json.dumps(obj, default=lambda o: getattr(o, "tolist", lambda: str(o))()))


def run(config: RunConfig, runs_dir: str | Path = "runs", *, overwrite: bool = False,
        progress: Progress = None) -> dict:
    """Run (or resume) all rounds; returns the summary also written to summary.json.

    A finished run (summary.json present, config and inputs unchanged) returns its summary as
    written, first timings included. Progress notes (resuming, finished, what --overwrite
    removed, train/eval overlap) go to stderr."""
    from . import gate
    from .overlap import find_overlap, warn

    r_ = Run(config, runs_dir, overwrite=overwrite)
    for line in r_.status.messages(r_.dir):
        warn(line)
    if r_.status.state == "finished":
        return json.loads((r_.dir / "summary.json").read_text())
    if config.eval.problems:
        warn(find_overlap(r_.problems(config.problems), r_.problems(config.eval.problems))
             .warning(f"--problems {config.problems}", f"--eval-problems {config.eval.problems}"))
    if config.gate.enabled:
        warn(gate.too_few_warning(config, len(r_.val_problems())))
    t_start = time.time()
    summary: dict = {"name": config.name, "method": config.method, "model": config.model,
                     "teacher": config.teacher, "rounds": [], "run_dir": str(r_.dir)}
    if config.evaluate_base and config.eval.problems:
        t0 = time.time()
        summary["base_eval"] = r_.evaluate("base", config.model, None, progress)
        summary["base_eval_seconds"] = _spent(r_.dir / "base", "eval", t0)
    if config.gate.enabled:
        if config.eval.problems:
            warn(find_overlap(r_.train_problems(), r_.val_problems())
                 .warning(f"--problems {config.problems}", "the validation problems"))
        t0 = time.time()
        summary["base_validation"] = gate.validate(r_, r_.dir / "base", config.model, None, progress)
        summary["base_validation_seconds"] = _spent(r_.dir / "base", "validate", t0)
    for r in range(1, config.rounds + 1):
        res = RoundResult(round=r)
        rd = r_.round_dir(r)
        t0 = time.time()
        samples = r_.sample(r, progress)
        res.samples, res.seconds["sample"] = len(samples), _spent(rd, "sample", t0)
        verdicts: list[Verdict] = []
        if r_.needs_verdicts():
            t0 = time.time()
            verdicts = r_.verify(r, samples, progress)
            res.seconds["verify"] = _spent(rd, "verify", t0)
        t0 = time.time()
        examples, res.filter_stats = r_.filter(r, samples, verdicts)
        res.kept, res.seconds["filter"] = len(examples), _spent(rd, "filter", t0)
        t0 = time.time()
        res.train = gate.select_round(r_, r, examples, progress) if config.gate.select else \
            r_.train(r, examples, progress)
        res.seconds["train"] = _spent(rd, "train", t0)
        if config.gate.enabled:
            t0 = time.time()
            res.validation = (res.train["selected"]["validation"] if config.gate.select
                              else gate.validate(r_, rd, *r_.student_after(r), progress))
            res.seconds["validate"] = _spent(rd, "validate", t0)
        if config.eval.problems:
            t0 = time.time()
            model, adapter = r_.student_after(r)
            res.eval = r_.evaluate(f"round_{r}", model, adapter, progress)
            res.seconds["eval"] = _spent(rd, "eval", t0)
        if verdicts:
            res.filter_stats["train_pass_rate"] = sum(v.passed for v in verdicts) / len(verdicts)
        summary["rounds"].append(res.__dict__)
    # The work over every invocation (each stage's timing.json), not the seconds of finding it done.
    summary["seconds"] = round(summary.get("base_eval_seconds", 0.0)
                               + sum(sum(r["seconds"].values()) for r in summary["rounds"]), 2)
    summary["invocation_seconds"] = round(time.time() - t_start, 2)
    kept_round = config.rounds
    if config.gate.enabled:
        summary["kept"] = gate.decide(r_, summary["base_validation"], {r["round"]: r["validation"]
                                                                       for r in summary["rounds"]})
        kept_round = summary["kept"]["round"]
        warn(summary["kept"]["message"])
    if summary["rounds"] and summary["rounds"][-1]["eval"] and "base_eval" in summary:
        summary["base_pass_at_1"] = summary["base_eval"]["pass_at_1"]
        # what the run hands back: the kept round's student, or the base model
        summary["distilled_pass_at_1"] = (summary["rounds"][kept_round - 1]["eval"]["pass_at_1"] if kept_round
                                          else summary["base_eval"]["pass_at_1"])
    write_json_atomic(r_.dir / "summary.json", _plain(summary))
    return summary
