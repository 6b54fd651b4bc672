"""``python -m skinclf.bench``: how fast the input pipeline, the model step and the full loop run."""
