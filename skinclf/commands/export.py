"""Export: ``python -m skinclf.export ckpt=<checkpoint | ensemble folder> format=onnx|torchscript``.

Writes model.onnx (or model.pt) into its output folder. The exported model takes a batch of uint8
images (N, 3, crop, crop), pixel values 0-255, resized and centre-cropped as the metadata says, and
returns the probability of malignancy of each (and, for task=diagnosis, a second output: the
probability of each diagnosis); the normalisation is inside. A JSON file beside it holds the
preprocessing and the thresholds chosen on validation. The export is checked against PyTorch on
random images before it is kept. An ensemble (a folder written by skinclf.ensemble) is exported
as one model that combines its members as evaluated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from skinclf.artifact import CheckpointModel, EnsembleModel, TrainedModel, load_model
from skinclf.atomic import atomic_path, write_json
from skinclf.commands.entry import command, output_folder
from skinclf.data.color import SHADES_OF_GRAY_HOW
from skinclf.data.metadata import feature_names
from skinclf.errors import SkinclfError
from skinclf.inference import Inference, inference_trainer
from skinclf.metrics.calibration import TemperatureScaled, calibrate
from skinclf.metrics.thresholds import thresholds_for_recalls
from skinclf.schema import EvaluationSettings, ExportConfig, Preprocessing

log = logging.getLogger(__name__)

SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
#: Names of the outputs: the probability of malignancy, and for task=diagnosis that of each diagnosis.
OUTPUTS = ("probability", "diagnosis_probabilities")


def outputs_of(model: TrainedModel) -> list[str]:
    """The names of the exported model's outputs: an ensemble's score, or a checkpoint's probabilities."""
    diagnoses = isinstance(model, CheckpointModel) and model.settings.head.diagnoses
    return list(OUTPUTS if diagnoses else OUTPUTS[:1])


#: Names of the inputs: the images, and for a model with metadata the encoded metadata.
INPUTS = ("image", "metadata")


def metadata_encoding(model: TrainedModel) -> list[dict] | None:
    return model.settings.metadata_encoding if isinstance(model, CheckpointModel) else None


def example_inputs(model: TrainedModel, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs of the exported model: uint8 images, and encoded metadata where the model reads it."""
    generator = torch.Generator().manual_seed(seed)
    crop = model.preprocessing.crop_size
    images = torch.randint(0, 256, (batch, 3, crop, crop), dtype=torch.uint8, generator=generator)
    encoding = metadata_encoding(model)
    if not encoding:
        return (images,)
    return images, torch.randn(batch, len(feature_names(encoding)), generator=generator)


def export_onnx(model: nn.Module, example: tuple[torch.Tensor, ...], path: Path, outputs: list[str]) -> None:
    batch = torch.export.Dim("batch", min=1)
    names = list(INPUTS[: len(example)])
    torch.onnx.export(
        model,
        example,
        path,
        input_names=names,
        output_names=outputs,
        dynamic_shapes=tuple({0: batch} for _ in example),
        dynamo=True,
        external_data=False,  # one self-contained file
        verbose=False,
    )


def run_onnx(path: Path, inputs: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    import onnxruntime  # optional dependency: pip install 'skinclf[export]'

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {name: x.numpy() for name, x in zip(INPUTS, inputs, strict=False)})


#: PyTorch 2.15 deprecates TorchScript itself; format=torchscript asks for it knowingly (README: onnx is the
#: lasting format), so the deprecation of each torch.jit call is not repeated to the user.
TORCHSCRIPT_DEPRECATED = r"`torch\.jit\.\w+` is deprecated"


@contextlib.contextmanager
def torchscript_quietly() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=TORCHSCRIPT_DEPRECATED, category=FutureWarning)
        yield


def export_torchscript(model: nn.Module, example: tuple[torch.Tensor, ...], path: Path, outputs: list[str]) -> None:
    with torchscript_quietly():
        torch.jit.trace(model, example).save(str(path))


def run_torchscript(path: Path, inputs: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    with torchscript_quietly():
        return as_arrays(torch.jit.load(str(path)).eval()(*inputs))


#: How many random inputs the parity check compares.
PARITY_IMAGES = 4

EXPORTERS = {"onnx": (export_onnx, run_onnx), "torchscript": (export_torchscript, run_torchscript)}


def as_arrays(outputs: torch.Tensor | tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    return [o.detach().numpy() for o in (outputs if isinstance(outputs, tuple) else (outputs,))]


def largest_difference(model: nn.Module, path: Path, run_export: object, inputs: tuple[torch.Tensor, ...]) -> float:
    """Largest absolute difference of any output between the export and PyTorch, on the given inputs."""
    with torch.inference_mode():
        expected = as_arrays(model(*inputs))
    exported = run_export(path, inputs)
    return max(float(np.abs(e - x).max()) for e, x in zip(exported, expected, strict=True))


def export_checked(model: TrainedModel, module: nn.Module, settings: ExportConfig, output: Path) -> float:
    """Write the export of the model's module to output only if it matches PyTorch within the tolerance; returns the
    largest difference."""
    export, run_export = EXPORTERS[settings.format]
    tolerance = settings.tolerance
    if isinstance(model, EnsembleModel) and model.rule == "rank":
        # a percentile is a step function: a probability within float precision of a member's validation
        # value may land one step (1 / (2 x its validation images)) away in the export; allow that much
        tolerance += max(1 / (2 * len(run.val)) for run in model.member_runs) / len(model.members)
    with atomic_path(output) as partial:  # kept only if it passes the parity check
        try:
            export(module, example_inputs(model, 2), partial, outputs_of(model))
        except ImportError as error:
            raise SkinclfError(
                f"{settings.format} export needs the optional packages: pip install 'skinclf[export]' ({error})"
            ) from error
        difference = largest_difference(module, partial, run_export, example_inputs(model, PARITY_IMAGES, seed=1))
        if not difference <= tolerance:
            raise SkinclfError(
                f"the {settings.format} export differs from PyTorch by {difference:.2e}, more than "
                f"tolerance={tolerance:g}: nothing written"
            )
    return difference


def metadata_input(encoding: list[dict] | None) -> dict | None:
    """The second input of a model with metadata: its features, and how to compute them from a table."""
    if not encoding:
        return None
    return {
        "name": "metadata",
        "dtype": "float32",
        "layout": "N x features, in the order of 'features'",
        "features": feature_names(encoding),
        "encoding": encoding,
        "meaning": "numeric columns: (value - mean) / std, 0 when missing; other columns: 1 for the value seen, "
        "else 0; each column's '<column> missing' is 1 when its value is missing",
    }


def input_description(preprocessing: Preprocessing) -> dict:
    """The image input of an exported model, and how to prepare it."""
    return {
        "name": "image",
        "dtype": "uint8",
        "layout": "NCHW, RGB, pixel values 0-255",
        "preprocessing": f"resize the shorter side to {preprocessing.resize_size} px (bilinear), then centre-crop "
        f"{preprocessing.crop_size}x{preprocessing.crop_size}; EXIF orientation applied"
        + (
            f"; a JPEG decoded by DCT scaling (libjpeg scale 1/2, 1/4 or 1/8, the smallest whose shorter side is "
            f">= {preprocessing.resize_size} px; Pillow's Image.draft) before the resize"
            if preprocessing.jpeg_dct_scaling
            else ""
        ),
        "resize_size": preprocessing.resize_size,
        "crop_size": preprocessing.crop_size,
        "mean": list(preprocessing.mean),
        "std": list(preprocessing.std),
        "normalisation": "inside the model: (pixels / 255 - mean) / std",
        "color_constancy": preprocessing.color_constancy,
        **({"color_constancy_how": SHADES_OF_GRAY_HOW} if preprocessing.color_constancy == "shades_of_gray" else {}),
    }


def output_description(model: TrainedModel) -> dict:
    """The outputs of an exported model, and what they mean."""
    if isinstance(model, EnsembleModel):
        averaged = "probabilities" if model.rule == "mean" else "percentiles among their own validation probabilities"
        return {
            "names": outputs_of(model),
            "meaning": f"the ensemble's score of malignancy, one per image: the {model.rule} of its members' "
            + averaged,
        }
    return {
        "names": outputs_of(model),
        "meaning": "probability of malignancy, one per image; diagnosis_probabilities: one per image and diagnosis",
        "diagnoses": model.settings.head.diagnoses,
    }


@dataclass(frozen=True)
class Operating:
    """What the exported model decides with: its thresholds, what chose them, and its temperature, if calibrated."""

    thresholds: dict[str, float]
    chosen_on: str
    temperature: float | None


def operating(model: TrainedModel, evaluation: EvaluationSettings) -> Operating:
    """The thresholds for each target recall, chosen on the predictions the model's operating points are chosen on
    (its stored validation, or evaluation.threshold_source), at its temperature if calibrated; none where the model
    keeps no validation predictions and no threshold_source is given."""
    inference = Inference(inference_trainer("cpu"), batch_size=64, num_workers=0)
    if evaluation.threshold_source is None and model.stored_validation("none") is None:
        return Operating({}, "nothing: the model keeps no validation predictions", None)
    # the exported model sees each image once: no test-time views
    validation, chosen_on = model.operating_predictions(dataclasses.replace(evaluation, tta="none"), inference)
    temperature = None
    if evaluation.calibration == "temperature":
        calibration, validation, _ = calibrate(validation, {}, model.malignant_diagnoses, chosen_on)
        temperature = calibration.temperature
    return Operating(thresholds_for_recalls(validation, evaluation.target_recalls), chosen_on, temperature)


def at_temperature(module: nn.Module, model: TrainedModel, temperature: float | None) -> nn.Module:
    """The module export writes: the model's probabilities, at its temperature when calibrated."""
    if temperature is None:
        return module
    diagnoses = isinstance(model, CheckpointModel) and model.settings.head.diagnoses
    mask = torch.tensor([d in model.malignant_diagnoses for d in diagnoses]) if diagnoses else None
    return TemperatureScaled(module, temperature, mask).eval()


def description(
    model: TrainedModel, settings: ExportConfig, output: Path, difference: float, chosen: Operating
) -> dict:
    """What a user of the exported file needs: its input, preprocessing, output and thresholds."""
    meaning = f"malignant when probability >= threshold; chosen on {chosen.chosen_on} per target recall"
    return {
        "model": output.name,
        "format": settings.format,
        "input": input_description(model.preprocessing),
        "output": output_description(model),
        "calibration": {"method": "temperature", "temperature": chosen.temperature, "inside the model": True}
        if chosen.temperature is not None
        else None,
        "thresholds": chosen.thresholds,
        "thresholds_meaning": meaning,
        "metadata": metadata_input(metadata_encoding(model)),
        "parity_check": {
            "max_abs_difference": difference,
            "tolerance": settings.tolerance,
            "images": PARITY_IMAGES,
        },
        "source": str(model.path.resolve()),
        "run": model.run_info,
    }


@command("export")
def main(settings: ExportConfig) -> None:
    folder = output_folder()
    model = load_model(settings.ckpt)
    module = model.probability_model()  # first: it says why a model cannot be exported as one module
    chosen = operating(model, model.evaluation_settings(settings.evaluation))
    output = folder / f"model{SUFFIXES[settings.format]}"
    difference = export_checked(model, at_temperature(module, model, chosen.temperature), settings, output)
    metadata_path = output.with_name(output.name + ".json")
    write_json(metadata_path, description(model, settings, output, difference, chosen))
    print(f"wrote {output} and {metadata_path}")
    print(f"largest difference from PyTorch: {difference:.2e} (tolerance {settings.tolerance:g})")


if __name__ == "__main__":
    main()
