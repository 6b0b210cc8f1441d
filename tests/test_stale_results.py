"""A cached or resumed result is never another model's, adapter's, problem set's or setting's
(issue 23, reproduction 1: `eval` printed the tiny model's pass@1 for SmolLM2 from the same --out)."""

import json
import os
import shutil
from pathlib import Path

import mlx.core as mx
import pytest

from mlx_selfdistill.errors import UserError
from mlx_selfdistill.evaluation import evaluate_model
from mlx_selfdistill.fingerprint import model_identity, problems_identity
from mlx_selfdistill.models import DEFAULT_MODEL
from mlx_selfdistill.problems import load_problems

from conftest import main_exit, make_random_adapter

MODELS = Path(os.environ.get("MLX_SELFDISTILL_TEST_MODELS") or "/root/.cache/mlx-selfdistill/models")
SMOLLM2 = MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf"


def perturbed_tiny(folder: Path, seed: int = 0) -> Path:
    """A copy of the tiny model with other weights (same files, same names)."""
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(DEFAULT_MODEL, folder)
    weights = mx.load(str(folder / "model.safetensors"))
    key = mx.random.key(seed)
    changed = {k: v + 0.2 * mx.random.normal(v.shape, key=mx.random.split(key, i + 2)[i + 1]) if v.ndim == 2 else v
               for i, (k, v) in enumerate(sorted(weights.items()))}
    mx.save_safetensors(str(folder / "model.safetensors"), changed)
    return folder


def _eval(model, out, *extra):
    args = ["eval", "--model", str(model), "--problems", "toy:heldout:4", "-n", "1", "--max-tokens", "40",
            "--out", str(out), "--json", *extra]
    return main_exit(args)


def _printed(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def _completions(result: dict) -> list[str]:
    path = Path(result["work_dir"]) / "samples.jsonl"
    return [json.loads(line)["completion"] for line in path.read_text().splitlines()]


def test_eval_never_reports_another_models_samples_from_the_same_out(tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL, model)
    assert _eval(model, tmp_path / "out") == 0
    first = _printed(capsys)["base"]
    perturbed_tiny(model)  # other weights under the same path: the name alone would match
    assert _eval(model, tmp_path / "out") == 0
    second = _printed(capsys)["base"]
    assert _eval(model, tmp_path / "fresh") == 0
    fresh = _printed(capsys)["base"]
    assert _completions(second) == _completions(fresh) != _completions(first)
    assert second["model_identity"] == fresh["model_identity"] != first["model_identity"]
    # Sample records carry the model's identity (the weights' hash), not "".
    record = json.loads((Path(second["work_dir"]) / "samples.jsonl").read_text().splitlines()[0])
    assert record["model"] == second["model_identity"] and "@sha256:" in record["model"]


def test_eval_keys_max_tokens_and_the_adapters_weights(tmp_path, capsys):
    assert _eval("tiny", tmp_path / "out") == 0
    short = _printed(capsys)["base"]
    assert _eval("tiny", tmp_path / "out", "--max-tokens", "8") == 0
    shorter = _printed(capsys)["base"]
    assert shorter["work_dir"] != short["work_dir"] and shorter["sampling"]["max_tokens"] == 8
    assert max(len(c) for c in _completions(shorter)) < max(len(c) for c in _completions(short))

    adapter = make_random_adapter(tmp_path / "adapter")
    assert _eval("tiny", tmp_path / "out", "--adapter", str(adapter)) == 0
    before = _printed(capsys)["adapter"]
    shutil.rmtree(adapter)
    make_random_adapter(adapter)  # same folder, new weights
    weights = mx.load(str(adapter / "adapters.safetensors"))
    mx.save_safetensors(str(adapter / "adapters.safetensors"), {k: 3 * v for k, v in weights.items()})
    assert _eval("tiny", tmp_path / "out", "--adapter", str(adapter)) == 0
    after = _printed(capsys)["adapter"]
    assert after["model_identity"] != before["model_identity"] and after["work_dir"] != before["work_dir"]


def test_a_work_dir_holding_another_evaluation_is_refused_naming_what_differs(tmp_path):
    problems = load_problems("toy:heldout:3")
    kw = dict(work_dir=tmp_path / "w", n=1, max_tokens=16, seed=1)
    evaluate_model("tiny", problems, **kw)
    with pytest.raises(UserError, match=r"another model\b") as info:
        evaluate_model(str(perturbed_tiny(tmp_path / "other")), problems, **kw)
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="sampling.max_tokens"):
        evaluate_model("tiny", problems, **{**kw, "max_tokens": 8})
    with pytest.raises(UserError, match="problems"):
        evaluate_model("tiny", load_problems("toy:heldout:4"), **kw)
    with pytest.raises(UserError, match="prompt_style"):
        evaluate_model("tiny", problems, prompt_style="raw", **kw)
    # Files from before fingerprints cannot be checked: refused, not trusted.
    (tmp_path / "legacy").mkdir()
    shutil.copy(tmp_path / "w" / "samples.jsonl", tmp_path / "legacy" / "samples.jsonl")
    with pytest.raises(UserError, match="record no fingerprint"):
        evaluate_model("tiny", problems, **{**kw, "work_dir": tmp_path / "legacy"})


def test_sample_refuses_to_append_another_models_samples(tmp_path, capsys):
    out = tmp_path / "s.jsonl"
    args = ["--problems", "toy:heldout:2", "-n", "1", "--max-tokens", "16", "-o", str(out), "--json"]
    assert main_exit(["sample", "--model", "tiny", *args]) == 0
    capsys.readouterr()
    assert main_exit(["sample", "--model", str(perturbed_tiny(tmp_path / "m")), *args]) == 2
    assert "holds samples of model" in capsys.readouterr().err
    assert main_exit(["sample", "--model", "tiny", *args[:-1], "--max-tokens", "8", "--json"]) == 2
    assert "max_tokens" in capsys.readouterr().err


def test_identities_follow_content_not_names(tmp_path):
    a = perturbed_tiny(tmp_path / "a", seed=1)
    ident = model_identity(str(a))
    assert model_identity(str(a)) == ident
    perturbed_tiny(a, seed=2)
    assert model_identity(str(a)) != ident
    assert model_identity("tiny") == model_identity("default")
    p3, p4 = load_problems("toy:heldout:3"), load_problems("toy:heldout:4")
    assert problems_identity(p3) != problems_identity(p4)
    edited = [p for p in p3]
    edited[0] = type(edited[0])(**{**edited[0].to_dict(), "tests": edited[0].tests[:1]})
    same_ids = problems_identity(edited)
    assert same_ids["ids_sha256"] == problems_identity(p3)["ids_sha256"]
    assert same_ids["content_sha256"] != problems_identity(p3)["content_sha256"]


@pytest.mark.slow
@pytest.mark.skipif(not SMOLLM2.exists(), reason=f"SmolLM2 GGUF absent from {MODELS} "
                    "(python benchmarks/fetch_models.py --only smollm2; $MLX_SELFDISTILL_TEST_MODELS)")
def test_issue_reproduction_tiny_then_smollm2_in_the_same_out(tmp_path, capsys):
    assert _eval("tiny", tmp_path / "eval_out") == 0
    tiny = _printed(capsys)["base"]
    assert _eval(SMOLLM2, tmp_path / "eval_out") == 0
    smol = _printed(capsys)["base"]
    assert smol["model_identity"].startswith(str(SMOLLM2)) and smol["work_dir"] != tiny["work_dir"]
    assert _completions(smol) != _completions(tiny)


def test_bench_records_what_each_number_belongs_to_and_never_reuses_samples(tmp_path, capsys):
    args = ["bench", "--problems", "toy:heldout:2", "-n", "1", "--trials", "1", "--max-tokens", "16",
            "--decode-tokens", "4", "--idle-seconds", "0", "--workers", "1", "--out", str(tmp_path / "b"), "--json"]
    assert main_exit([*args, "--model", "tiny"]) == 0
    first = _printed(capsys)
    other = perturbed_tiny(tmp_path / "other")
    assert main_exit([*args, "--model", str(other)]) == 0
    second = _printed(capsys)
    saved = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert saved["models"]["base"]["model_identity"] == second["models"]["base"]["model_identity"] \
        == model_identity(str(other)) != first["models"]["base"]["model_identity"]
    assert saved["config"]["problems_identity"] == problems_identity(load_problems("toy:heldout:2"))
    record = json.loads((tmp_path / "b" / "base" / "samples.jsonl").read_text().splitlines()[0])
    assert record["model"] == model_identity(str(other))


def test_a_gguf_is_hashed_once_per_version(tmp_path, monkeypatch):
    """A 1 GB GGUF must not be re-hashed on every call: the digest is kept per (path, size, mtime)."""
    from mlx_selfdistill.export import export_gguf
    from mlx_selfdistill.fingerprint import file_digest

    monkeypatch.setenv("MLX_SELFDISTILL_GGUF_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "m.gguf"
    export_gguf("tiny", gguf, out_type="q8_0")
    real = file_digest(gguf)
    assert model_identity(str(gguf)) == f"{gguf}@sha256:{real}"
    [memo] = (tmp_path / "cache" / "sha256").iterdir()
    memo.write_text("0" * 64)  # what a second call reads instead of hashing the file again
    assert model_identity(str(gguf)) == f"{gguf}@sha256:{'0' * 64}"
    os.utime(gguf, ns=(gguf.stat().st_atime_ns, gguf.stat().st_mtime_ns + 10**9))  # a new version
    assert model_identity(str(gguf)) == f"{gguf}@sha256:{real}"


def test_a_loaded_pair_without_its_spec_is_identified_by_its_weights(tmp_path):
    from mlx_selfdistill.models import load_model

    problems = load_problems("toy:heldout:2")
    kw = dict(n=1, max_tokens=16, seed=1)
    first = evaluate_model(load_model("tiny"), problems, work_dir=tmp_path / "w", **kw)
    assert first["model_identity"].startswith("loaded-model@sha256:")
    assert evaluate_model(load_model("tiny"), problems, work_dir=tmp_path / "w", **kw)["pass_at_1"] == first["pass_at_1"]
    with pytest.raises(UserError, match="another model"):
        evaluate_model(load_model(str(perturbed_tiny(tmp_path / "o"))), problems, work_dir=tmp_path / "w", **kw)
