import pytest
from click.testing import CliRunner

from mlx_selfdistill.cli import cli, main
from mlx_selfdistill.config import RunConfig, list_presets, preset, resolve_config
from mlx_selfdistill.errors import UserError


def test_presets_include_the_papers_ssd_setting():
    names = list_presets()
    assert {"ssd-qwen3-4b-instruct", "tiny-rft", "tiny-ssd"} <= set(names)
    cfg = resolve_config(preset_name="ssd-qwen3-4b-instruct")
    assert cfg.method == "ssd"
    assert (cfg.sample.temperature, cfg.sample.top_k, cfg.sample.top_p) == (1.6, 20, 0.8)
    assert cfg.eval.temperature == 1.1


def test_precedence_preset_then_file_then_flags(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("sample:\n  n: 3\n  temperature: 0.7\nrounds: 2\n")
    cfg = resolve_config(preset_name="tiny-rft", config_file=str(f), overrides={"sample": {"n": 5, "top_k": None}})
    assert cfg.sample.n == 5 and cfg.sample.temperature == 0.7 and cfg.rounds == 2
    assert cfg.model == "tiny" and cfg.method == "rft"


@pytest.mark.parametrize("text, message", [
    ("method: magic\n", "unknown method 'magic'"),
    ("sample: {n: 2\n", "malformed YAML"),
    ("sample:\n  nn: 2\n", "unknown key 'nn' in config section 'sample'"),
    ("- a\n- b\n", "must be a mapping"),
    ("rounds: 0\n", "rounds must be a positive integer"),
])
def test_bad_configs_are_one_line_errors(tmp_path, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(UserError, match=message) as info:
        resolve_config(config_file=str(f))
    assert "\n" not in str(info.value)


def test_unknown_preset_and_missing_file():
    with pytest.raises(UserError, match="unknown preset 'nope'"):
        preset("nope")
    with pytest.raises(UserError, match="no such config file"):
        resolve_config(config_file="/nonexistent/x.yaml")


def test_cli_bad_config_exits_2_without_traceback(tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text("method: magic\n")
    with pytest.raises(SystemExit) as exc:
        main(["run", "--config", str(f), "--runs-dir", str(tmp_path / "runs")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_lists_presets():
    result = CliRunner().invoke(cli, ["presets", "--json"])
    assert result.exit_code == 0
    assert "ssd-qwen3-4b-instruct" in result.output


def test_run_config_rejects_unknown_method_directly():
    with pytest.raises(UserError):
        RunConfig(method="x")


def test_assignments_set_fields_to_none_and_typed_values(tmp_path):
    cfg = resolve_config(preset_name="tiny-rft", overrides={"eval": {"problems": None}},  # a flag left out
                         assignments=["eval.problems=none", "teacher=tiny", "train.epochs=none", "train.iters=7", "eval.ks=[1, 2]",
                                      "sample.max_kv_tokens=4096", "sample.max_kv_tokens=null", "evaluate_base=false"])
    assert cfg.eval.problems is None and cfg.sample.max_kv_tokens is None
    assert cfg.teacher == "tiny" and cfg.train["iters"] == 7 and cfg.eval.ks == [1, 2] and cfg.evaluate_base is False
    assert resolve_config(preset_name="tiny-rft").eval.problems == "toy:heldout:100"  # the default it replaced
    f = tmp_path / "c.yaml"
    f.write_text("eval:\n  problems: null\n")  # a YAML null unsets it too
    assert resolve_config(preset_name="tiny-rft", config_file=str(f)).eval.problems is None


@pytest.mark.parametrize("text, message", [
    ("eval.problems", "expected KEY=VALUE"),
    ("=3", "expected KEY=VALUE"),
    ("eval..n=3", "expected KEY=VALUE"),
    ("model.name=3", "'model' is a single value"),
    ("sample.nn=3", "unknown key 'nn' in config section 'sample'"),
    ("eval.n=[1", "not valid YAML"),
])
def test_bad_assignments_are_one_line_errors(text, message):
    with pytest.raises(UserError, match=message) as info:
        resolve_config(preset_name="tiny-rft", assignments=[text])
    assert "\n" not in str(info.value)


def test_cli_set_none_skips_evaluation(tmp_path):
    """`run --set eval.problems=none`: a real (tiny) run that trains and evaluates nothing."""
    runs = tmp_path / "runs"
    result = CliRunner().invoke(cli, [
        "run", "--preset", "tiny-ssd", "--name", "noeval", "--problems", "toy:train:3", "-n", "1", "--iters", "1",
        "--set", "eval.problems=none",
        "--set", "train.epochs=none",  # the preset's epochs would clash with --iters
        "--runs-dir", str(runs), "--json"])
    assert result.exit_code == 0, result.output
    import json

    saved = json.loads((runs / "noeval" / "config.json").read_text())
    assert saved["eval"]["problems"] is None
    assert not (runs / "noeval" / "base" / "eval.json").exists()
    assert not (runs / "noeval" / "round_1" / "eval.json").exists()
    assert (runs / "noeval" / "round_1" / "adapters" / "adapters.safetensors").exists()


def test_unsafe_no_isolation_is_not_part_of_a_runs_identity():
    from mlx_selfdistill.config import RunConfig

    assert RunConfig(unsafe_no_isolation=True).identity() == RunConfig().identity()
    assert "unsafe_no_isolation" not in RunConfig().identity() and RunConfig().to_dict()["unsafe_no_isolation"] is False


def test_flags_left_out_keep_the_defaults_without_a_preset_or_file():
    """`run --method rft --model tiny --problems X` (no preset, no file): a section's flags that
    were not given (None) must not overwrite its defaults (eval.temperature was set to None)."""
    config = resolve_config(overrides={"method": "rft", "model": "tiny", "problems": "toy:train:4",
                                       "sample": {"n": 2, "temperature": None, "top_k": None},
                                       "eval": {"problems": "toy:heldout:2", "temperature": None}})
    assert config.sample.n == 2 and config.eval.problems == "toy:heldout:2"
    assert config.eval.temperature == RunConfig().eval.temperature is not None
    assert config.sample.temperature == RunConfig().sample.temperature is not None
