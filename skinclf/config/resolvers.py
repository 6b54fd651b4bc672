"""Where the Hydra configs live, and the resolvers and schemas Hydra needs before it composes them."""

from __future__ import annotations

from omegaconf import OmegaConf

from skinclf.config.presets import preprocessing_preset
from skinclf.config.schema import register_schemas
from skinclf.core.machine import runs_on_gpu, usable_cpus

#: conf/ of the checkout, installed as the package skinclf.conf (see pyproject.toml).
CONFIG_PATH = "pkg://skinclf.conf"


def weights_preset(key: str, library: str, arch: str, weights: str | None) -> int:
    """``${weights_preset:resize_size,${..library},${..arch},${..weights}}``: a value of the weights' own eval
    transforms (model.preprocessing's defaults; the resolver's cache looks them up once per model)."""
    return preprocessing_preset(arch, weights, library)[key]


def scaled_probability(probability: float, strength: float) -> float:
    """``${scaled_p:0.33,${aug.strength}}``: how often an augmentation applies, at a strength (1: as written)."""
    return min(1.0, probability * strength)


def cpus_up_to(limit: int) -> int:
    """``${cpus_up_to:8}``: the number of CPUs this process may use, at most limit."""
    return max(1, min(limit, usable_cpus()))


def mixed_on_gpus(accelerator: str) -> str:
    """``${mixed_on_gpus:${.accelerator}}``: bf16 autocast on GPUs, 32-bit elsewhere (CPU bf16 convolutions crawl)."""
    return "bf16-mixed" if runs_on_gpu(accelerator) else "32-true"


def register_configs() -> None:
    """Register the resolvers and the typed schemas; safe to call more than once."""
    OmegaConf.register_new_resolver("weights_preset", weights_preset, replace=True, use_cache=True)
    OmegaConf.register_new_resolver("scaled_p", scaled_probability, replace=True)
    OmegaConf.register_new_resolver("cpus_up_to", cpus_up_to, replace=True)
    OmegaConf.register_new_resolver("mixed_on_gpus", mixed_on_gpus, replace=True)
    register_schemas()
