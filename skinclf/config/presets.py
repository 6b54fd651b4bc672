"""What a model's name and weights name mean before anything is built: whether torchvision or timm knows them, and how
their weights prepare an image (``${weights_preset:...}``, model.preprocessing's defaults, as timm's
``resolve_data_config`` gives them).

Any torchvision classification model whose last ``nn.Linear`` is its classifier works (``resnet18``,
``resnext50_32x4d``, ``efficientnet_b0``, ``convnext_tiny``...); any timm model by name, with or without its pretrained
tag (``tf_efficientnet_b4.ns_jft_in1k``, ``convnext_tiny.fb_in22k_ft_in1k``), with the optional extra skinclf[timm].
"""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType
from typing import Any

from torchvision import models
from torchvision.models import WeightsEnum, get_model_weights

from skinclf.core.errors import SkinclfError, examples


def check_torchvision_architecture(arch: str) -> None:
    available = models.list_models(module=models)
    if arch not in available:
        raise SkinclfError(
            f"model.arch={arch!r} is not a torchvision classification model; choose one of: {', '.join(available)}"
        )


def is_weights_file(weights: str) -> bool:
    """True when model.weights names a local state-dict file rather than a weights name."""
    return Path(weights).suffix in {".pt", ".pth", ".safetensors"} or "/" in weights


def resolve_weights(arch: str, weights: str | None) -> WeightsEnum | None:
    """The torchvision weights enum named by ``weights`` ("IMAGENET1K_V1", "DEFAULT"...) for arch."""
    if weights is None or is_weights_file(weights):
        return None
    check_torchvision_architecture(arch)
    enum = get_model_weights(arch)
    try:
        return enum.verify(weights)
    except (KeyError, ValueError, TypeError) as error:
        raise SkinclfError(
            f"model.weights={weights!r} is not a weights name of {arch}: choose one of "
            f"{examples([w.name for w in enum] + ['DEFAULT'], 20)}, a path to a .pth file, or null"
        ) from error


def timm_module() -> ModuleType:
    try:
        import timm
    except ImportError as error:
        raise SkinclfError("model=timm needs the optional package timm: pip install 'skinclf[timm]'") from error
    return timm


def check_timm_architecture(arch: str) -> None:
    timm = timm_module()
    name, _, tag = arch.partition(".")
    if not timm.is_model(name):
        similar = timm.list_models(f"*{name.rstrip('0123456789')}*")[:8]
        hint = f" (similar: {', '.join(similar)})" if similar else " (timm.list_models() lists them)"
        raise SkinclfError(f"model.arch={arch!r} is not a timm model{hint}")
    if tag and not timm.list_pretrained(arch):
        tags = ", ".join(timm.list_pretrained(f"{name}.*")[:8])
        raise SkinclfError(f"model.arch={arch!r}: timm has no pretrained tag {tag!r} for {name}; its tags: {tags}")


def _timm_preset(arch: str) -> dict[str, Any]:
    """timm's own resolve_data_config of the arch's pretrained config: sizes (its crop_pct), crop mode, interpolation,
    mean and std."""
    check_timm_architecture(arch)
    timm = timm_module()
    config = timm.models.get_pretrained_cfg(arch)
    if config is None:
        raise SkinclfError(
            f"timm has no pretrained config for {arch}: choose a model with one (timm.list_pretrained())"
        )
    data = timm.data.resolve_data_config(pretrained_cfg=config.to_dict(), use_test_size=False)
    crop = int(data["input_size"][-1])
    return {
        "resize_size": math.floor(crop / data["crop_pct"]),
        "crop_size": crop,
        "crop_mode": data.get("crop_mode") or "center",
        "interpolation": data["interpolation"],
        "mean": [float(m) for m in data["mean"]],
        "std": [float(s) for s in data["std"]],
    }


def preprocessing_preset(arch: str, weights: str | None, library: str = "torchvision") -> dict[str, Any]:
    """Resize and crop sizes, crop mode, interpolation, mean and std of the weights' own eval transforms.

    With random init or a local file, those of the architecture's default weights (for timm, of
    the arch's pretrained config).
    """
    if library == "timm":
        return _timm_preset(arch)
    enum = resolve_weights(arch, weights)
    if enum is None:
        check_torchvision_architecture(arch)
        enum = get_model_weights(arch).DEFAULT
    transforms = enum.transforms()
    return {
        "resize_size": int(transforms.resize_size[0]),
        "crop_size": int(transforms.crop_size[0]),
        "crop_mode": "center",
        "interpolation": transforms.interpolation.value,
        "mean": [float(m) for m in transforms.mean],
        "std": [float(s) for s in transforms.std],
    }
