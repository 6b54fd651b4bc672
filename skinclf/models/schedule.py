"""Learning-rate schedule of the reference: linear warmup, then cosine decay to zero, per step."""

from __future__ import annotations

import math


class WarmupCosine:
    """LambdaLR factor: rises linearly over warmup_steps, then follows a cosine down to 0.

    A class rather than a closure so that LambdaLR can save it in checkpoints.
    """

    def __init__(self, warmup_steps: int, total_steps: int) -> None:
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(f"need 0 <= warmup_steps ({warmup_steps}) < total_steps ({total_steps})")
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
