"""Training: the LightningModule, callbacks and `train(config)` (see `run.py`)."""

from texscribe.training.run import TrainResult, export_checkpoint, train

__all__ = ["TrainResult", "export_checkpoint", "train"]
