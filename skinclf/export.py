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
from pathlib import Path

import numpy as np
import torch
from torch import nn

from skinclf.config.schema import EvaluationSettings, ExportConfig
from skinclf.core.atomic import atomic_path, write_json
from skinclf.core.errors import SkinclfError
from skinclf.data.metadata import feature_names
from skinclf.data.preprocessing import description as preprocessing_description
from skinclf.entry import command, trained_model
from skinclf.metrics.decisions import DecisionPolicy
from skinclf.trained import TrainedModel
from skinclf.trained.exported import TemperatureScaled
from skinclf.trained.inference import Inference, inference_trainer

log = logging.getLogger(__name__)

SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
#: Names of the outputs: the probability of malignancy, and for task=diagnosis that of each diagnosis.
OUTPUTS = ("probability", "diagnosis_probabilities")


def outputs_of(model: TrainedModel) -> list[str]:
    """The names of the exported model's outputs: its score of malignancy, and each diagnosis' where it gives them."""
    return list(OUTPUTS if model.diagnoses else OUTPUTS[:1])


#: Names of the inputs: the images, and for a model with metadata the encoded metadata.
INPUTS = ("image", "metadata")


def example_inputs(model: TrainedModel, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs of the exported model: uint8 images, and encoded metadata where the model reads it."""
    generator = torch.Generator().manual_seed(seed)
    crop = model.preprocessing.crop_size
    images = torch.randint(0, 256, (batch, 3, crop, crop), dtype=torch.uint8, generator=generator)
    encoding = model.metadata_encoding
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
    tolerance = settings.tolerance + model.score_step
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


def output_description(model: TrainedModel) -> dict:
    """The outputs of an exported model, and what they mean."""
    return {"names": outputs_of(model), "meaning": model.score_meaning, "diagnoses": model.diagnoses}


def decision_policy(model: TrainedModel, evaluation: EvaluationSettings) -> DecisionPolicy:
    """The model's decision policy for the evaluation settings, without test-time views (the exported model sees each
    image once)."""
    inference = Inference(inference_trainer("cpu"), batch_size=64, num_workers=0)
    policy, _ = model.decision_policy(dataclasses.replace(evaluation, tta="none"), inference)
    return policy


def at_temperature(module: nn.Module, model: TrainedModel, policy: DecisionPolicy) -> nn.Module:
    """The module export writes: the model's probabilities, at its policy's temperature where it has one."""
    if policy.temperature is None:
        return module
    diagnoses = model.diagnoses
    mask = torch.tensor([d in model.malignant_diagnoses for d in diagnoses]) if diagnoses else None
    return TemperatureScaled(module, policy.temperature, mask).eval()


def description(
    model: TrainedModel, settings: ExportConfig, output: Path, difference: float, policy: DecisionPolicy
) -> dict:
    """What a user of the exported file needs: its input, preprocessing, output and decision policy."""
    return {
        "model": output.name,
        "format": settings.format,
        "input": {"name": "image", "dtype": "uint8", "layout": "NCHW, RGB, pixel values 0-255"}
        | preprocessing_description(model.preprocessing),
        "output": output_description(model),
        "calibration": {"method": "temperature", "temperature": policy.temperature, "inside the model": True}
        if policy.temperature is not None
        else None,
        "thresholds": policy.thresholds,
        "thresholds_meaning": f"malignant when probability >= threshold; chosen on {policy.chosen_on} per target",
        "decision_policy": policy.record(),
        "metadata": metadata_input(model.metadata_encoding),
        "parity_check": {
            "max_abs_difference": difference,
            "tolerance": settings.tolerance,
            "images": PARITY_IMAGES,
        },
        "source": str(model.path.resolve()),
        "run": model.identity,
    }


@command("export")
def main(settings: ExportConfig, run_folder: Path) -> None:
    model, evaluation = trained_model(settings)
    module = model.probability_model()  # first: it says why a model cannot be exported as one module
    policy = decision_policy(model, evaluation)
    output = run_folder / f"model{SUFFIXES[settings.format]}"
    difference = export_checked(model, at_temperature(module, model, policy), settings, output)
    metadata_path = output.with_name(output.name + ".json")
    write_json(metadata_path, description(model, settings, output, difference, policy))
    print(f"wrote {output} and {metadata_path}")
    for key, undecided in policy.undecided.items():
        print(f"at recall {key}: {undecided.reason}: the export gives its probability, with no threshold")
    print(f"largest difference from PyTorch: {difference:.2e} (tolerance {settings.tolerance:g})")


if __name__ == "__main__":
    main()
