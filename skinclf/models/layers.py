"""Where things are inside a backbone, found by running it rather than by its names: every module's output shape,
and the early stage whose feature map shows how an image was taken."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def output_shapes(backbone: nn.Module, size: int) -> dict[str, tuple[int, ...]]:
    """The shape of every module's output for a (1, 3, size, size) input; {} where the model takes no such input."""
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: object, output: object) -> None:  # returns None: the output stays
            shapes.setdefault(name, tuple(output.shape) if isinstance(output, torch.Tensor) else ())

        return hook

    hooks = [module.register_forward_hook(record(name)) for name, module in backbone.named_modules() if name]
    modes = {module: module.training for module in backbone.modules()}  # training goes on as it was
    try:
        with torch.no_grad():
            backbone.eval()(torch.zeros(1, 3, size, size))
    except (RuntimeError, AssertionError, ValueError):  # a transformer made for one input size
        return {}
    finally:
        for hook in hooks:
            hook.remove()
        for module, training in modes.items():
            module.train(training)
    return shapes


#: The side of the input the early stage is found at (any size a backbone takes would do).
PROBE_SIDE = 64


def early_stage_input(backbone: nn.Module) -> nn.Module | None:
    """The module whose input is the backbone's last feature map at 1/4 of the image's side (ResNets' layer1 output,
    EfficientNets' second stage's, ConvNeXts' first stage's): the first module, in the order the network defines
    them, whose output is at 1/8. None where there is none (a vision transformer's 1/16 patches)."""
    shapes = output_shapes(backbone, PROBE_SIDE)
    for name, module in backbone.named_modules():
        shape = shapes.get(name, ())
        if len(shape) == 4 and shape[2] == PROBE_SIDE // 8 and shape[3] == PROBE_SIDE // 8:
            return module
    return None
