from pathlib import Path

import pytest

import mlx_selfdistill  # noqa: F401  first: binds MLX to the fast BLAS before any test imports mlx

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


def make_random_adapter(path: Path) -> Path:
    """A real mlx_lm LoRA adapter for the tiny model, with B randomised so it changes outputs."""
    import json

    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.tuner.utils import linear_to_lora_layers

    from mlx_selfdistill.models import load_model

    model, _ = load_model("tiny")
    config = {"fine_tune_type": "lora", "num_layers": 2,
              "lora_parameters": {"rank": 4, "scale": 8.0, "dropout": 0.0}}
    mx.random.seed(7)
    linear_to_lora_layers(model, config["num_layers"], config["lora_parameters"])
    weights = {}
    for i, (name, value) in enumerate(tree_flatten(model.parameters())):
        if name.endswith("lora_a"):
            weights[name] = value
        elif name.endswith("lora_b"):
            weights[name] = 0.05 * mx.random.normal(value.shape, key=mx.random.key(i))
    assert weights, "no LoRA layers were created"
    path.mkdir(parents=True)
    mx.save_safetensors(str(path / "adapters.safetensors"), weights)
    (path / "adapter_config.json").write_text(json.dumps(config))
    return path


SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"


def real_model_file(name: str):
    """A real model file in $MLX_SELFDISTILL_TEST_MODELS (.ci/run fetches SmolLM2 there), or None."""
    import os

    folder = os.environ.get("MLX_SELFDISTILL_TEST_MODELS")
    path = Path(folder) / name if folder else None
    return path if path is not None and path.exists() else None


def needs_real_model(path):
    return pytest.mark.skipif(path is None, reason="real model file absent (benchmarks/fetch_models.py; "
                                                   "$MLX_SELFDISTILL_TEST_MODELS)")


def main_exit(argv) -> int:
    """The CLI's exit code, without leaving the test process."""
    from mlx_selfdistill.cli import main

    try:
        main(argv)
    except SystemExit as exc:
        return exc.code or 0
    return 0
