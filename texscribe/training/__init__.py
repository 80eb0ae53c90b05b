"""Training: the LightningModule, callbacks and `train(config)` (see `run.py`)."""

from texscribe.checkpoint import export_checkpoint
from texscribe.training.run import TrainResult, train

__all__ = ["TrainResult", "export_checkpoint", "train"]
