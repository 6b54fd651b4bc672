"""Export: ``python -m skinclf.export ckpt=<path> format=onnx|torchscript [output=<file>]``.

The exported model takes a batch of uint8 images (N, 3, crop, crop), pixel values 0-255, resized
and centre-cropped as the metadata says, and returns the probability of malignancy of each; the
normalisation is inside. A JSON file beside it holds the preprocessing and the thresholds chosen on
validation. The export is checked against PyTorch on random images before it is kept.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from skinclf.atomic import atomic_path
from skinclf.checkpoints import load_classifier, stored_run_info, stored_validation, thresholds_for_recalls
from skinclf.config import CONFIG_PATH, register_configs
from skinclf.errors import SkinclfError, exit_on_user_error
from skinclf.evaluation.outputs import write_json
from skinclf.schema import validate

log = logging.getLogger(__name__)

SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1)
    torch.onnx.export(
        model,
        (example,),
        path,
        input_names=["image"],
        output_names=["probability"],
        dynamic_shapes=({0: batch},),
        dynamo=True,
        external_data=False,  # one self-contained file
    )


def run_onnx(path: Path, images: torch.Tensor) -> np.ndarray:
    import onnxruntime  # optional dependency: pip install 'skinclf[export]'

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": images.numpy()})[0]


def export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    torch.jit.trace(model, example).save(str(path))


def run_torchscript(path: Path, images: torch.Tensor) -> np.ndarray:
    return torch.jit.load(str(path)).eval()(images).detach().numpy()


EXPORTERS = {"onnx": (export_onnx, run_onnx), "torchscript": (export_torchscript, run_torchscript)}


def largest_difference(model: nn.Module, path: Path, run_export: object, crop_size: int, batch: int = 4) -> float:
    """Largest absolute difference of probabilities between the export and PyTorch, on random images."""
    images = torch.randint(
        0, 256, (batch, 3, crop_size, crop_size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    with torch.inference_mode():
        expected = model(images).numpy()
    return float(np.abs(run_export(path, images) - expected).max())


@hydra.main(config_path=CONFIG_PATH, config_name="export", version_base="1.3")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    validate(cfg)  # format is onnx or torchscript, the target recalls in (0, 1]
    classifier, checkpoint = load_classifier(cfg.ckpt)
    hparams = classifier.hparams
    output = Path(cfg.output).expanduser() if cfg.output else Path(cfg.ckpt).with_suffix(SUFFIXES[cfg.format])
    output.parent.mkdir(parents=True, exist_ok=True)
    model = classifier.probability_model()
    export, run_export = EXPORTERS[cfg.format]
    example = torch.zeros(2, 3, hparams.crop_size, hparams.crop_size, dtype=torch.uint8)
    with atomic_path(output) as partial:  # kept only if it passes the parity check
        try:
            export(model, example, partial)
        except ImportError as error:
            raise SkinclfError(
                f"{cfg.format} export needs the optional packages: pip install 'skinclf[export]' ({error})"
            ) from error
        difference = largest_difference(model, partial, run_export, hparams.crop_size)
        if not difference <= cfg.tolerance:
            raise SkinclfError(
                f"the {cfg.format} export differs from PyTorch by {difference:.2e}, more than "
                f"tolerance={cfg.tolerance:g}: nothing written"
            )
    validation = stored_validation(checkpoint)
    metadata = {
        "model": str(output.name),
        "format": cfg.format,
        "checkpoint": str(Path(cfg.ckpt).resolve()),
        "run": stored_run_info(checkpoint),
        "input": {
            "name": "image",
            "dtype": "uint8",
            "layout": "NCHW, RGB, pixel values 0-255",
            "preprocessing": f"resize the shorter side to {hparams.resize_size} px (bilinear), then centre-crop "
            f"{hparams.crop_size}x{hparams.crop_size}; EXIF orientation applied",
            "resize_size": hparams.resize_size,
            "crop_size": hparams.crop_size,
            "mean": list(hparams.mean),
            "std": list(hparams.std),
            "normalisation": "inside the model: (pixels / 255 - mean) / std",
        },
        "output": {"name": "probability", "meaning": "probability of malignancy, one per image"},
        "thresholds": thresholds_for_recalls(validation, list(cfg.target_recalls)) if validation is not None else {},
        "thresholds_meaning": "malignant when probability >= threshold; chosen on validation per target recall",
        "parity_check": {"max_abs_difference": difference, "tolerance": cfg.tolerance, "images": 4},
    }
    metadata_path = output.with_name(output.name + ".json")
    write_json(metadata_path, metadata)
    print(f"wrote {output} and {metadata_path}")
    print(f"largest difference from PyTorch: {difference:.2e} (tolerance {cfg.tolerance:g})")


register_configs()

if __name__ == "__main__":
    main()
