"""Training on the tiny model: loss goes down, exact resume, mlx_lm-format adapters, fuse,
DoRA / full / QLoRA, gradient checkpointing, divergence detection."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import pytest
from mlx.utils import tree_flatten

from mlx_selfdistill import prompts
from mlx_selfdistill.models import DEFAULT_MODEL, load_model
from mlx_selfdistill.toy.world import toy_problems
from mlx_selfdistill.training import TrainConfig, TrainingDiverged, evaluate_loss, fuse_adapter, train
from mlx_selfdistill.training import batching
from mlx_selfdistill.training.data import tokenize_examples

FAST = dict(batch_tokens=512, save_every=0, lr=2e-3)


def _examples(n, offset=0):
    # Replies with a comment the model has never seen, so there is something to learn.
    out = []
    for i, p in enumerate(toy_problems("train", n + offset)[offset:]):
        reply = prompts.assistant_message(f"# solution {i} by the fine-tuned model\n" + p.canonical_solution)
        out.append({"messages": prompts.chat_messages(p, reply)})
    return out


def _write(path: Path, examples) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in examples))
    return path


def _weights(adapter_dir) -> dict:
    return mx.load(str(Path(adapter_dir) / "adapters.safetensors"))


def _same(a: dict, b: dict, atol=1e-6) -> bool:
    return a.keys() == b.keys() and all(mx.allclose(a[k], b[k], atol=atol).item() for k in a)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    return _write(d / "train.jsonl", _examples(16))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    """One LoRA run with validation on the training data: (adapter dir, result)."""
    out = tmp_path_factory.mktemp("lora") / "adapters"
    result = train("tiny", data, out, TrainConfig(iters=8, **FAST), valid_data=data)
    return out, result


def test_loss_decreases_and_the_adapter_is_in_mlx_lm_format(trained, data):
    out, result = trained
    model, tok = load_model("tiny")
    examples = tokenize_examples(tok, data)
    before = evaluate_loss(model, examples, TrainConfig())
    assert result["val_loss"] < 0.8 * before
    assert result["steps"] == 8 and result["tokens"] > 0 and 0 <= result["padding_fraction"] < 0.2
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["fine_tune_type"] == "lora" and config["lora_parameters"]["rank"] == 8
    # mlx_lm itself loads it, and the loaded model has the loss the trainer measured.
    from mlx_lm import load

    m2, _ = load(str(DEFAULT_MODEL), adapter_path=str(out))
    assert abs(evaluate_loss(m2, examples, TrainConfig()) - result["val_loss"]) < 1e-4


def test_fuse_gives_a_standalone_model_with_the_same_logits(trained, tmp_path):
    out, _ = trained
    info = fuse_adapter("tiny", out, tmp_path / "fused")
    assert info["fused_layers"] > 0 and (tmp_path / "fused" / "config.json").exists()
    assert not (tmp_path / "fused" / "adapter_config.json").exists()
    with_adapter, tok = load_model("tiny", out)
    fused, _ = load_model(tmp_path / "fused")
    tokens = mx.array([tok.encode("def add(a, b):\n    return a + b\n")])
    a, b = with_adapter(tokens), fused(tokens)
    base = load_model("tiny")[0](tokens)
    assert mx.allclose(a, b, atol=1e-4).item()
    assert not mx.allclose(a, base, atol=1e-3).item()  # the adapter did something


class _Stop(Exception):
    pass


def test_resume_is_exact(tmp_path, data):
    cfg = TrainConfig(iters=4, save_every=2, warmup=1, grad_accum=2, dropout=0.1, batch_tokens=512, lr=2e-3)
    straight = train("tiny", data, tmp_path / "a", cfg)

    def stop_at_2(info):
        if info["completed"] == 2:
            raise _Stop
    with pytest.raises(_Stop):
        train("tiny", data, tmp_path / "b", cfg, on_step=stop_at_2)
    # Debris of a checkpoint write killed half-way must be ignored.
    (tmp_path / "b" / "checkpoints" / ".tmp-step_0000004-999999").mkdir()
    (tmp_path / "b" / "checkpoints" / "step_0000003").mkdir()  # no state.json: incomplete
    (tmp_path / "b" / ".adapters.tmp-999999.safetensors").write_bytes(b"half")
    resumed = train("tiny", data, tmp_path / "b", cfg, resume=True)
    assert resumed["start_step"] == 2 and resumed["resumed_from"].endswith("step_0000002")
    assert _same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    assert resumed["losses"] == pytest.approx(straight["losses"], abs=1e-5)
    assert not (tmp_path / "b" / "checkpoints" / ".tmp-step_0000004-999999").exists()
    assert not (tmp_path / "b" / ".adapters.tmp-999999.safetensors").exists()
    # Resuming a finished run trains nothing and keeps the adapter.
    again = train("tiny", data, tmp_path / "b", cfg, resume=True)
    assert again["start_step"] == 4 and _same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    # A checkpoint made with other settings is refused, not silently mixed in.
    with pytest.raises(Exception, match="lr="):
        train("tiny", data, tmp_path / "b", TrainConfig(**{**cfg.to_dict(), "lr": 1e-3}), resume=True)
    # Checkpoints from before length_grouping existed sorted the whole epoch, and say so.
    state_file = tmp_path / "b" / "checkpoints" / "step_0000004" / "state.json"
    state = json.loads(state_file.read_text())
    del state["config"]["length_grouping"]
    state_file.write_text(json.dumps(state))
    with pytest.raises(Exception, match="length_grouping='epoch', not 'batch'"):
        train("tiny", data, tmp_path / "b", cfg, resume=True)
    old = train("tiny", data, tmp_path / "b", TrainConfig(**{**cfg.to_dict(), "length_grouping": "epoch"}),
                resume=True)
    assert old["start_step"] == 4


@pytest.mark.slow
def test_sigkill_during_training_then_resume_matches_a_straight_run(tmp_path, data):
    args = ["--data", str(data), "--iters", "10", "--save-every", "1", "--batch-tokens", "256",
            "--lr", "2e-3", "--warmup", "2"]
    cli = [sys.executable, "-m", "mlx_selfdistill.cli", "train"]
    ref = subprocess.run(cli + args + ["--adapter-path", str(tmp_path / "ref"), "--json"], capture_output=True)
    assert ref.returncode == 0, ref.stderr.decode()[-2000:]
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(cli + args + ["--adapter-path", str(killed_dir)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not (killed_dir / "checkpoints" / "step_0000004").exists():
        assert proc.poll() is None and time.time() - t0 < 120, "training ended before the kill"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    res = subprocess.run(cli + args + ["--adapter-path", str(killed_dir), "--resume", "--json"], capture_output=True)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    assert 4 <= json.loads(res.stdout)["start_step"] < 10  # the kill landed mid-training
    assert _same(_weights(tmp_path / "ref"), _weights(killed_dir), atol=1e-5)


@pytest.mark.parametrize("kind", ["dora", "full"])
def test_dora_and_full_fine_tuning_train_and_load_in_mlx_lm(tmp_path, data, kind):
    from mlx_lm import load

    out = tmp_path / kind
    result = train("tiny", data, out, TrainConfig(fine_tune_type=kind, iters=4, **{**FAST, "lr": 1e-3}),
                   valid_data=data)
    assert result["losses"][-1] < result["losses"][0]
    weights = _weights(out)
    if kind == "dora":
        assert any(k.endswith(".m") for k in weights)
    else:
        assert result["trainable_parameters"] == result["total_parameters"]
        assert "model.embed_tokens.weight" in weights
    model, tok = load(str(DEFAULT_MODEL), adapter_path=str(out))
    assert abs(evaluate_loss(model, tokenize_examples(tok, data), TrainConfig()) - result["val_loss"]) < 1e-4


def test_qlora_on_a_quantized_base(tmp_path, data):
    from mlx_lm import load
    from mlx_lm.utils import save

    model, tok, config = load(str(DEFAULT_MODEL), return_config=True)
    nn.quantize(model, group_size=32, bits=4)  # 32 divides the 128- and 352-wide layers
    config["quantization"] = {"group_size": 32, "bits": 4}
    save(tmp_path / "q4", str(DEFAULT_MODEL), model, tok, config, donate_model=False)
    small = _write(tmp_path / "small.jsonl", _examples(4))
    result = train(str(tmp_path / "q4"), small, tmp_path / "qlora", TrainConfig(iters=3, **FAST), valid_data=small)
    assert result["losses"][-1] < result["losses"][0]
    qmodel, qtok = load(str(tmp_path / "q4"), adapter_path=str(tmp_path / "qlora"))
    assert any(isinstance(m, nn.QuantizedLinear) for _, m in qmodel.named_modules())
    assert abs(evaluate_loss(qmodel, tokenize_examples(qtok, small), TrainConfig()) - result["val_loss"]) < 1e-4


def test_a_model_passed_in_comes_back_unchanged(data, tmp_path):
    model, tok = load_model("tiny")
    before = dict(tree_flatten(model.parameters()))
    types = {k: type(m) for k, m in model.named_modules()}
    train((model, tok), data, tmp_path / "q", TrainConfig(iters=2, quantize_bits=4, grad_checkpoint=True, **FAST))
    train((model, tok), data, tmp_path / "f", TrainConfig(iters=2, fine_tune_type="full", **FAST))
    assert {k: type(m) for k, m in model.named_modules()} == types
    after = dict(tree_flatten(model.parameters()))
    assert _same(before, after, atol=0)
    assert len(tree_flatten(model.trainable_parameters())) == len(before)


def test_gradient_checkpointing_changes_nothing_but_memory_and_patches_no_class(tmp_path, data):
    from mlx_lm.models.llama import TransformerBlock

    original_call = TransformerBlock.__call__
    model, tok = load_model("tiny")
    seen = {}

    def look(info):
        seen["layer_type"] = type(model.layers[0])
        seen["class_call"] = TransformerBlock.__call__
    cfg = TrainConfig(iters=3, **FAST)
    plain = train("tiny", data, tmp_path / "plain", cfg)
    ckpt = train((model, tok), data, tmp_path / "ckpt", TrainConfig(**{**cfg.to_dict(), "grad_checkpoint": True}),
                 on_step=look)
    assert seen["layer_type"] is not TransformerBlock and issubclass(seen["layer_type"], TransformerBlock)
    assert seen["class_call"] is original_call  # the class itself was never touched
    assert type(model.layers[0]) is TransformerBlock  # and the instance is given back as it was
    assert ckpt["losses"] == pytest.approx(plain["losses"], abs=1e-5)
    assert _same(_weights(tmp_path / "plain"), _weights(tmp_path / "ckpt"), atol=1e-5)
    # The compiled step (with checkpointing inside) computes the same thing.
    compiled = train("tiny", data, tmp_path / "compiled",
                     TrainConfig(**{**cfg.to_dict(), "grad_checkpoint": True, "compile": True}))
    assert compiled["losses"] == pytest.approx(plain["losses"], abs=1e-5)
    assert _same(_weights(tmp_path / "plain"), _weights(tmp_path / "compiled"), atol=1e-5)


def test_cutting_batches_into_chunks_changes_nothing_but_padding(tmp_path, data, monkeypatch):
    cfg = TrainConfig(iters=3, **FAST)
    monkeypatch.setattr(batching, "CHUNK_OVERHEAD", 10 ** 9)  # every batch one padded matrix
    whole = train("tiny", data, tmp_path / "whole", cfg)
    monkeypatch.setattr(batching, "CHUNK_OVERHEAD", 0)  # a chunk wherever it saves padding
    cut = train("tiny", data, tmp_path / "cut", cfg)
    assert cut["padding_fraction"] < whole["padding_fraction"]
    assert cut["losses"] == pytest.approx(whole["losses"], abs=1e-5)
    # The sums run in another order, and Adam's first steps (about lr * sign(g)) magnify the
    # rounding of near-zero gradients: the weights agree to 1e-4 after updates of ~2e-3 each.
    assert _same(_weights(tmp_path / "whole"), _weights(tmp_path / "cut"), atol=1e-4)


def test_nan_loss_stops_with_a_clear_message(tmp_path, data):
    model, tok = load_model("tiny")
    model.model.norm.weight = mx.full(model.model.norm.weight.shape, float("nan"))
    with pytest.raises(TrainingDiverged, match="diverged at step 1: loss nan") as err:
        train((model, tok), data, tmp_path / "nan", TrainConfig(iters=3, **FAST))
    assert "\n" not in str(err.value) and "lower lr" in str(err.value)


def test_examples_longer_than_max_seq_len_are_dropped_not_truncated(tmp_path, data):
    result = train("tiny", data, tmp_path / "short", TrainConfig(iters=1, max_seq_len=100, **FAST))
    assert result["dropped_too_long"] > 0 and result["examples"] + result["dropped_too_long"] == 16
    with pytest.raises(Exception, match="raise max_seq_len"):
        train("tiny", data, tmp_path / "none", TrainConfig(iters=1, max_seq_len=20, **FAST))
