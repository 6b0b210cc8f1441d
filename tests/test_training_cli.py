"""The `train` and `fuse` commands: flags, YAML config, JSON output, one-line errors."""

import json

import mlx.core as mx
import pytest

from mlx_selfdistill import prompts
from mlx_selfdistill.cli import main
from mlx_selfdistill.toy.world import toy_problems


def _run(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(list(args))
        raise SystemExit(0)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"messages": prompts.chat_messages(
        p, prompts.assistant_message(p.canonical_solution))}) + "\n" for p in toy_problems("train", 8)))
    return path


def test_train_with_a_yaml_config_then_fuse(capsys, tmp_path, data):
    config = tmp_path / "lora.yaml"
    config.write_text(f"model: tiny\ndata: {data}\nlora_parameters: {{rank: 4, scale: 10.0, dropout: 0.0}}\n"
                      "learning_rate: 1.0e-3\niters: 3\nbatch_tokens: 512\n")
    code, out, err = _run(capsys, "train", "-c", str(config), "--adapter-path", str(tmp_path / "ad"),
                          "--iters", "2", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["steps"] == 2  # the flag beats the file
    saved = json.loads((tmp_path / "ad" / "adapter_config.json").read_text())
    assert saved["lora_parameters"]["rank"] == 4 and saved["train_config"]["lr"] == 1e-3
    assert mx.load(str(tmp_path / "ad" / "adapters.safetensors"))["model.layers.0.self_attn.q_proj.lora_a"].shape[1] == 4

    code, out, err = _run(capsys, "fuse", "--adapter-path", str(tmp_path / "ad"), "--save-path",
                          str(tmp_path / "fused"), "--json")
    assert code == 0, err
    assert json.loads(out)["fused_layers"] > 0 and (tmp_path / "fused" / "model.safetensors").exists()


def test_train_table_to_stdout_and_progress_to_stderr(capsys, tmp_path, data):
    code, out, err = _run(capsys, "train", "--data", str(data), "--adapter-path", str(tmp_path / "ad"),
                          "--iters", "2", "--batch-tokens", "512", "--valid-data", str(data))
    assert code == 0
    assert "final loss" in out and "tokens / sec" in out and "validation loss" in out
    assert "2/2" in err and "final loss" not in err


@pytest.mark.parametrize("args, message", [
    (["--data", "{missing}"], "no such file"),
    (["--data", "{bad}"], "bad.jsonl:1: missing or empty 'messages'"),
    (["--data", "{data}", "-c", "{yaml}"], "unknown option(s) rnk"),
    (["--data", "{data}", "--fine-tune-type", "lora", "--rank", "0"], "rank must be a positive integer"),
])
def test_train_errors_are_one_line(capsys, tmp_path, data, args, message):
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x"}\n')
    (tmp_path / "c.yaml").write_text("rnk: 4\n")
    paths = {"missing": tmp_path / "nope.jsonl", "bad": tmp_path / "bad.jsonl", "data": data,
             "yaml": tmp_path / "c.yaml"}
    args = [a.format(**paths) for a in args]
    code, out, err = _run(capsys, "train", "--adapter-path", str(tmp_path / "ad"), *args)
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: ") and message in line


def test_fuse_without_an_adapter_is_a_user_error(capsys, tmp_path):
    code, _, err = _run(capsys, "fuse", "--adapter-path", str(tmp_path), "--save-path", str(tmp_path / "out"))
    assert code == 2 and "not an adapter folder" in err
