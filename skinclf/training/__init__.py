"""From settings to a trained run: building the datamodule, model and trainer, checkpoints, callbacks."""
