"""Supervised fine-tuning on chat examples with MLX: LoRA, DoRA, full and QLoRA.

    from mlx_selfdistill.training import TrainConfig, train
    result = train("tiny", "train.jsonl", "adapters/", TrainConfig(iters=100), resume=True)
"""

from .config import TrainConfig
from .data import TokenizedExample, tokenize_example, tokenize_examples
from .fuse import fuse_adapter, fuse_in_memory
from .trainer import TrainingDiverged, evaluate_loss, train

__all__ = ["TrainConfig", "TokenizedExample", "TrainingDiverged", "evaluate_loss", "fuse_adapter",
           "fuse_in_memory", "tokenize_example", "tokenize_examples", "train"]
