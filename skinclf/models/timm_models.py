"""timm backbones (``model=timm``, the optional extra ``skinclf[timm]``): any timm model by name.

``model.arch`` is a timm model name, with or without its pretrained tag
(``tf_efficientnet_b4.ns_jft_in1k``, ``convnext_tiny.fb_in22k_ft_in1k``, ``efficientnet_b0``).
``model.weights=pretrained`` reads the tag's ImageNet weights through timm (from the Hugging Face
cache, downloading them when online); a file path reads a local state dict; null is random init.
Preprocessing comes from the model's pretrained config, as torchvision's from its weights.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import torch
from torch import nn

from skinclf.errors import SkinclfError

#: model.weights of a timm model that names its own pretrained weights (those of the arch's tag).
PRETRAINED = "pretrained"


def _timm() -> ModuleType:
    try:
        import timm
    except ImportError as error:
        raise SkinclfError("model=timm needs the optional package timm: pip install 'skinclf[timm]'") from error
    return timm


def check_architecture(arch: str) -> None:
    timm = _timm()
    name, _, tag = arch.partition(".")
    if not timm.is_model(name):
        similar = timm.list_models(f"*{name.rstrip('0123456789')}*")[:8]
        hint = f" (similar: {', '.join(similar)})" if similar else " (timm.list_models() lists them)"
        raise SkinclfError(f"model.arch={arch!r} is not a timm model{hint}")
    if tag and not timm.list_pretrained(arch):
        tags = ", ".join(timm.list_pretrained(f"{name}.*")[:8])
        raise SkinclfError(f"model.arch={arch!r}: timm has no pretrained tag {tag!r} for {name}; its tags: {tags}")


def create(arch: str) -> nn.Module:
    """The timm model, randomly initialised, with its ImageNet head."""
    check_architecture(arch)
    return _timm().create_model(arch, pretrained=False)


def preprocessing_preset(arch: str) -> dict[str, Any]:
    """Resize and crop sizes (timm's crop_pct), interpolation, mean and std of the model's pretrained config."""
    check_architecture(arch)
    config = _timm().models.get_pretrained_cfg(arch)
    if config is None:
        raise SkinclfError(
            f"timm has no pretrained config for {arch}: choose a model with one (timm.list_pretrained())"
        )
    crop = int(config.input_size[-1])
    return {
        "resize_size": math.floor(crop / config.crop_pct),
        "crop_size": crop,
        "interpolation": config.interpolation,
        "mean": [float(m) for m in config.mean],
        "std": [float(s) for s in config.std],
    }


def pretrained_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """The ImageNet weights of the arch's pretrained tag, read through timm (Hugging Face cache or download)."""
    check_architecture(arch)
    timm = _timm()
    config = timm.models.get_pretrained_cfg(arch)
    try:
        return timm.create_model(arch, pretrained=True).state_dict()
    except (OSError, ValueError, RuntimeError) as error:  # offline, not in the cache, or a broken file
        source = f"https://huggingface.co/{config.hf_hub_id}" if config and config.hf_hub_id else "its timm URL"
        raise SkinclfError(
            f"cannot read the pretrained weights of {arch} ({type(error).__name__}: {error}): download "
            f"model.safetensors from {source} and pass model.weights=<its path>, fill the Hugging Face cache "
            "(HF_HOME) on a machine with network, or pass model.weights=null to train from random initialisation "
            "(offline, HF_HUB_OFFLINE=1 skips the download attempts)"
        ) from error
