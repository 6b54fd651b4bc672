"""Backbone factory and the LightningModule."""

from skinclf.models.module import LesionClassifier

__all__ = ["LesionClassifier"]
