"""torchvision backbones with a one-logit head, and their ImageNet weights.

Any torchvision classification model whose last ``nn.Linear`` is its classifier works:
``resnet18``, ``resnext50_32x4d``, ``efficientnet_b0``, ``convnext_tiny``, ``mobilenet_v3_small``...
"""

from __future__ import annotations

import pickle
import urllib.error
from pathlib import Path

import torch
from torch import nn
from torchvision import models
from torchvision.models import WeightsEnum, get_model, get_model_weights

from skinclf.atomic import load_torch
from skinclf.errors import SkinclfError, examples


def _check_architecture(arch: str) -> None:
    available = models.list_models(module=models)
    if arch not in available:
        raise SkinclfError(
            f"model.arch={arch!r} is not a torchvision classification model; choose one of: {', '.join(available)}"
        )


def is_weights_file(weights: str) -> bool:
    """True when model.weights names a local state-dict file rather than a torchvision weights enum."""
    return Path(weights).suffix in {".pt", ".pth"} or "/" in weights


def resolve_weights(arch: str, weights: str | None) -> WeightsEnum | None:
    """The torchvision weights enum named by ``weights`` ("IMAGENET1K_V1", "DEFAULT"...) for arch."""
    if weights is None or is_weights_file(weights):
        return None
    _check_architecture(arch)
    enum = get_model_weights(arch)
    try:
        return enum.verify(weights)
    except (KeyError, ValueError, TypeError) as error:
        raise SkinclfError(
            f"model.weights={weights!r} is not a weights name of {arch}: choose one of "
            f"{examples([w.name for w in enum] + ['DEFAULT'], 20)}, a path to a .pth file, or null"
        ) from error


def preprocessing_preset(arch: str, weights: str | None) -> dict[str, int | list[float]]:
    """Resize and crop sizes, mean and std of the weights' own eval transforms.

    With random init or a local file, those of the architecture's default weights.
    """
    enum = resolve_weights(arch, weights)
    if enum is None:
        _check_architecture(arch)
        enum = get_model_weights(arch).DEFAULT
    transforms = enum.transforms()
    return {
        "resize_size": int(transforms.resize_size[0]),
        "crop_size": int(transforms.crop_size[0]),
        "mean": [float(m) for m in transforms.mean],
        "std": [float(s) for s in transforms.std],
    }


def _classifier_name(model: nn.Module) -> str:
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise SkinclfError(f"{type(model).__name__} has no nn.Linear classifier layer to replace")
    return names[-1]


def build_backbone(arch: str, outputs: int = 1) -> nn.Module:
    """The architecture with its classifier replaced by ``outputs`` logits (Xavier-normal weight, zero bias)."""
    _check_architecture(arch)
    model = get_model(arch)
    head_name = _classifier_name(model)
    parent_name, _, attribute = head_name.rpartition(".")
    parent = model.get_submodule(parent_name)
    head = nn.Linear(getattr(parent, attribute).in_features, outputs)
    nn.init.xavier_normal_(head.weight)
    nn.init.zeros_(head.bias)
    setattr(parent, attribute, head)
    return model


def _download_hint(enum: WeightsEnum) -> str:
    filename = enum.url.rsplit("/", 1)[-1]
    target = Path(torch.hub.get_dir()) / "checkpoints" / filename
    return (
        f"put the file {enum.url} at {target} (or set TORCH_HOME to a folder whose "
        f"hub/checkpoints/ holds it), pass model.weights=<path to a .pth file>, or pass "
        "model.weights=null to train from random initialisation"
    )


def pretrained_state_dict(arch: str, weights: str) -> dict[str, torch.Tensor]:
    """The ImageNet state dict named by ``weights``: a torchvision enum name or a local file."""
    if is_weights_file(weights):
        state = load_torch(Path(weights).expanduser(), "weights file", "model.weights names a .pth state-dict file")
        return state.get("state_dict", state)
    enum = resolve_weights(arch, weights)
    try:
        return get_model(arch, weights=enum).state_dict()
    except urllib.error.URLError as error:
        raise SkinclfError(
            f"cannot download the {arch} {enum.name} weights (no network? {error.reason}): " + _download_hint(enum)
        ) from error
    except (RuntimeError, EOFError, pickle.UnpicklingError) as error:  # a truncated cached file
        raise SkinclfError(
            f"the cached {arch} {enum.name} weights cannot be loaded ({error}): delete the file and "
            + _download_hint(enum)
        ) from error


def load_pretrained(backbone: nn.Module, arch: str, weights: str) -> None:
    """Copy pretrained weights into every layer of backbone but its new one-logit head."""
    head_prefix = _classifier_name(backbone) + "."
    state = {k: v for k, v in pretrained_state_dict(arch, weights).items() if not k.startswith(head_prefix)}
    try:
        result = backbone.load_state_dict(state, strict=False)
    except RuntimeError as error:
        raise SkinclfError(f"the weights {weights} do not fit {arch}: {error}") from error
    missing = [k for k in result.missing_keys if not k.startswith(head_prefix)]
    if missing or result.unexpected_keys:
        raise SkinclfError(
            f"the weights {weights} do not fit {arch}: missing {examples(missing)}, "
            f"unexpected {examples(result.unexpected_keys)}"
        )
