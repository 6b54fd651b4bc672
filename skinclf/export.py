"""Export: ``python -m skinclf.export ckpt=<checkpoint | ensemble folder> format=onnx|torchscript [output=<file>]``.

The exported model takes a batch of uint8 images (N, 3, crop, crop), pixel values 0-255, resized
and centre-cropped as the metadata says, and returns the probability of malignancy of each (and,
for task=diagnosis, a second output: the probability of each diagnosis); the normalisation is
inside. A JSON file beside it holds the preprocessing and the thresholds chosen on validation.
The export is checked against PyTorch on random images before it is kept. An ensemble (a folder
written by skinclf.ensemble) is exported as one model that combines its members as evaluated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from skinclf.atomic import atomic_path, write_json
from skinclf.cli import command
from skinclf.data.metadata import feature_names
from skinclf.errors import SkinclfError, examples
from skinclf.evaluation.ensemble import KIND, is_ensemble, read_ensemble
from skinclf.evaluation.thresholds import thresholds_for_recalls
from skinclf.models import LesionClassifier
from skinclf.models.ensemble import EnsembleProbabilities
from skinclf.schema import ExportConfig
from skinclf.training.checkpoints import load_classifier, stored_run_info, stored_validation

log = logging.getLogger(__name__)

SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
#: Names of the outputs: the probability of malignancy, and for task=diagnosis that of each diagnosis.
OUTPUTS = ("probability", "diagnosis_probabilities")


def outputs_of(classifier: LesionClassifier) -> list[str]:
    return list(OUTPUTS if classifier.hparams.get("diagnoses") else OUTPUTS[:1])


#: Names of the inputs: the images, and for a model with metadata the encoded metadata.
INPUTS = ("image", "metadata")


def example_inputs(classifier: LesionClassifier, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs of the exported model: uint8 images, and encoded metadata where the model reads it."""
    generator = torch.Generator().manual_seed(seed)
    crop = classifier.hparams.crop_size
    images = torch.randint(0, 256, (batch, 3, crop, crop), dtype=torch.uint8, generator=generator)
    encoding = classifier.hparams.get("metadata_encoding")
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


def export_checked(
    model: nn.Module, classifier: LesionClassifier, outputs: list[str], settings: ExportConfig, output: Path
) -> float:
    """Write the export of model to output only if it matches PyTorch within the tolerance; returns the largest
    difference. Its inputs are those of classifier (its image size, and its metadata)."""
    export, run_export = EXPORTERS[settings.format]
    with atomic_path(output) as partial:  # kept only if it passes the parity check
        try:
            export(model, example_inputs(classifier, 2), partial, outputs)
        except ImportError as error:
            raise SkinclfError(
                f"{settings.format} export needs the optional packages: pip install 'skinclf[export]' ({error})"
            ) from error
        difference = largest_difference(model, partial, run_export, example_inputs(classifier, PARITY_IMAGES, seed=1))
        if not difference <= settings.tolerance:
            raise SkinclfError(
                f"the {settings.format} export differs from PyTorch by {difference:.2e}, more than "
                f"tolerance={settings.tolerance:g}: nothing written"
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


def input_description(hparams: dict) -> dict:
    """The image input of an exported classifier, and how to prepare it."""
    return {
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
    }


def export_metadata(
    settings: ExportConfig,
    output: Path,
    classifier: LesionClassifier,
    validation: pd.DataFrame | None,
    difference: float,
) -> dict:
    """What a user of the exported file needs: its input, preprocessing, output and thresholds."""
    hparams = classifier.hparams
    thresholds = (
        thresholds_for_recalls(validation, settings.evaluation.target_recalls) if validation is not None else {}
    )
    return {
        "model": str(output.name),
        "format": settings.format,
        "input": input_description(hparams),
        "output": {
            "names": outputs_of(classifier),
            "meaning": "probability of malignancy, one per image; diagnosis_probabilities: one per image and diagnosis",
            "diagnoses": hparams.get("diagnoses"),
        },
        "thresholds": thresholds,
        "thresholds_meaning": "malignant when probability >= threshold; chosen on validation per target recall",
        "metadata": metadata_input(hparams.get("metadata_encoding")),
        "parity_check": {"max_abs_difference": difference, "tolerance": settings.tolerance, "images": PARITY_IMAGES},
    }


def export_checkpoint(settings: ExportConfig, output: Path) -> dict:
    """Export a checkpoint's classifier; what the JSON beside it says."""
    classifier, checkpoint = load_classifier(settings.ckpt)
    model = classifier.probability_model()
    difference = export_checked(model, classifier, outputs_of(classifier), settings, output)
    return {
        **export_metadata(settings, output, classifier, stored_validation(checkpoint), difference),
        "checkpoint": str(Path(settings.ckpt).resolve()),
        "run": stored_run_info(checkpoint),
    }


def export_ensemble(settings: ExportConfig, output: Path) -> dict:
    """Export an ensemble as one model combining its members; what the JSON beside it says."""
    ensemble = read_ensemble(Path(settings.ckpt).expanduser())
    viewed = sorted({m.tta for m in ensemble.members} - {"none"})
    if viewed:
        raise SkinclfError(
            f"the members of {settings.ckpt} were evaluated with tta={viewed[0]}, so its thresholds (and ranks) hold "
            "for scores averaged over views, which one exported model does not make: use python -m skinclf.predict "
            f"ckpt=<the ensemble folder> tta={viewed[0]}, or an ensemble of runs evaluated with evaluation.tta=none"
        )
    classifiers = [load_classifier(m.checkpoint)[0] for m in ensemble.members]
    sizes = {(c.hparams.resize_size, c.hparams.crop_size) for c in classifiers}
    if len(sizes) > 1:
        raise SkinclfError(
            f"the members of {settings.ckpt} take images of different sizes (resize, crop: {examples(sorted(sizes))}): "
            "one exported model takes one size; use python -m skinclf.predict ckpt=<the ensemble folder> instead"
        )
    if any(c.hparams.get("metadata_encoding") for c in classifiers):
        raise SkinclfError(
            f"the members of {settings.ckpt} read metadata, each encoded with its own training split's statistics, "
            "which one exported input cannot carry: use python -m skinclf.predict ckpt=<the ensemble folder>, "
            "or export each member's checkpoint"
        )
    references = [torch.tensor(m.val["probability"].to_numpy()) for m in ensemble.members]
    model = EnsembleProbabilities(
        [c.probability_model() for c in classifiers], references if ensemble.rule == "rank" else None
    ).eval()
    first = classifiers[0]
    if ensemble.rule == "rank":
        # a percentile is a step function: a probability within float precision of a member's validation
        # value may land one step (1 / (2 x its validation images)) away in the export; allow that much
        step = max(1 / (2 * len(r)) for r in references) / len(references)
        settings = dataclasses.replace(settings, tolerance=settings.tolerance + step)
    difference = export_checked(model, first, list(OUTPUTS[:1]), settings, output)
    description = export_metadata(settings, output, first, ensemble.validation, difference)
    description["output"] = {
        "names": list(OUTPUTS[:1]),
        "meaning": f"the ensemble's score of malignancy, one per image: the {ensemble.rule} of its members' "
        + ("probabilities" if ensemble.rule == "mean" else "percentiles among their own validation probabilities"),
    }
    description["thresholds_meaning"] += f" (the ensemble's {ensemble.chosen_on})"
    return {
        **description,
        "ensemble": str(ensemble.directory.resolve()),
        "run": {
            "kind": KIND,
            "combine": ensemble.rule,
            "members": [str(m.checkpoint.resolve()) for m in ensemble.members],
        },
    }


@command("export")
def main(settings: ExportConfig) -> None:
    source = Path(settings.ckpt).expanduser()
    an_ensemble = is_ensemble(source)
    suffix = SUFFIXES[settings.format]
    default = source / f"ensemble{suffix}" if an_ensemble else source.with_suffix(suffix)
    output = Path(settings.output).expanduser() if settings.output else default
    output.parent.mkdir(parents=True, exist_ok=True)
    description = (export_ensemble if an_ensemble else export_checkpoint)(settings, output)
    metadata_path = output.with_name(output.name + ".json")
    write_json(metadata_path, description)
    difference = description["parity_check"]["max_abs_difference"]
    print(f"wrote {output} and {metadata_path}")
    print(f"largest difference from PyTorch: {difference:.2e} (tolerance {settings.tolerance:g})")


if __name__ == "__main__":
    main()
