"""Where the Hydra configs live and the resolvers they use."""

from __future__ import annotations

from omegaconf import OmegaConf

from skinclf.models.backbones import preprocessing_preset

#: conf/ of the checkout, installed as the package skinclf.conf (see pyproject.toml).
CONFIG_PATH = "pkg://skinclf.conf"


def weights_preset(key: str, arch: str, weights: str | None) -> int:
    """``${weights_preset:resize_size,${model.arch},${model.weights}}``: a value of the weights' transforms."""
    return preprocessing_preset(arch, weights)[key]


def register_resolvers() -> None:
    """Make the resolvers known to OmegaConf; safe to call more than once."""
    OmegaConf.register_new_resolver("weights_preset", weights_preset, replace=True)
