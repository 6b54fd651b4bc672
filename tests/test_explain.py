"""Where a model looks: Grad-CAM maps for every backbone, at the image's own size, with views and members averaged,
and the sanity checks of Adebayo et al. (NeurIPS 2018) on synthetic lesions whose masks are known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import preprocessing_of, run_in_process, sizes, tiny, train_settings, write_image
from PIL import Image

from skinclf.config.schema import ExplainSettings
from skinclf.core.errors import SkinclfError
from skinclf.data.synthetic import DIAGNOSES, render_lesion_and_mask
from skinclf.evaluation.saliency import centre_maps, pointing_game
from skinclf.models import LesionClassifier
from skinclf.trained import load_model
from skinclf.trained.explain import Explainer, at_image_size, spatial_layers, target_layer
from skinclf.training.builders import build_model

GRAD_CAM = ExplainSettings(enabled=True, method="gradcam", layer=None, target=None, mask_column=None)


def untrained(*overrides: str) -> LesionClassifier:
    """A model from random init at 32 px (or the sizes the overrides give)."""
    return build_model(train_settings(["model.weights=null", *sizes(36, 32), *overrides]), False)


@pytest.mark.parametrize(
    ("model", "layer"),
    [
        (["model.arch=resnet18"], "layer4"),
        (["model.arch=efficientnet_b0"], "features"),
        (["model.arch=convnext_tiny"], "features"),
        (["model=timm", "model.arch=test_efficientnet.r160_in1k"], "bn2"),
        (["model=timm", "model.arch=test_convnext.r160_in1k"], "norm_pre"),
    ],
)
def test_the_target_layer_is_the_last_spatial_stage_of_every_backbone(model: list[str], layer: str) -> None:
    classifier = untrained(*model, *sizes(208, 192))  # the last stage: 6 x 6
    assert spatial_layers(classifier.backbone, 192)[-1] == layer
    assert target_layer(classifier, None) is classifier.backbone.get_submodule(layer)
    assert all(module.training for module in classifier.modules())  # train checks the layer, then trains as ever


def test_a_backbone_without_spatial_layers_or_a_wrong_name_is_named() -> None:
    transformer = untrained(
        "model=timm",
        "model.arch=test_vit.r160_in1k",
        "model.preprocessing.resize_size=160",
        "model.preprocessing.crop_size=160",
    )
    with pytest.raises(
        SkinclfError, match=r"no layer of test_vit.r160_in1k keeps a height and a width.*explain.layer="
    ):
        target_layer(transformer, None)
    with pytest.raises(
        SkinclfError, match=r"explain.layer=layer9 is not a module of resnet18: choose one of \['layer4'"
    ):
        target_layer(untrained(), "layer9")


def test_maps_turn_back_with_the_views_and_members_average() -> None:
    torch.manual_seed(0)  # an untrained model whose maps of these crops are not flat
    classifier = untrained()
    crops = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    all_views = Explainer([classifier], GRAD_CAM, "flips_rot")
    # averaged over the 8 symmetries of the square, a map turns as its image turns
    np.testing.assert_allclose(all_views.maps(crops.flip(-1)), all_views.maps(crops)[..., ::-1], atol=1e-5)
    single = Explainer([classifier], GRAD_CAM).maps(crops)
    assert single.shape == (3, 32, 32)
    np.testing.assert_allclose(single.min(axis=(1, 2)), 0)  # each map scaled to span [0, 1]
    np.testing.assert_allclose(single.max(axis=(1, 2)), 1)
    np.testing.assert_allclose(Explainer([classifier, classifier], GRAD_CAM).maps(crops), single, atol=1e-6)


def test_a_map_lies_on_the_image_at_its_own_size() -> None:
    preprocessing = preprocessing_of(36, 32)
    placed = at_image_size(np.ones((32, 32)), (90, 180), preprocessing)  # resized to 36 x 72, centre 32 x 32
    assert placed.shape == (90, 180)
    rows, columns = np.nonzero(placed > 0.5)
    assert (rows.min(), rows.max() + 1) == (5, 85) and (columns.min(), columns.max() + 1) == (50, 130)
    assert at_image_size(np.ones((32, 32)), (10, 7), preprocessing).shape == (10, 7)  # smaller than the crop


@pytest.mark.parametrize(
    ("crop_mode", "rows", "columns"),
    [
        ("squash", (5, 85), (10, 170)),  # resized to 36 x 36, centre 32 x 32
        ("border", (0, 90), (10, 170)),  # resized to 18 x 36, padded to 36 x 36, centre 32 x 32
    ],
)
def test_a_map_lies_on_the_image_as_the_crop_mode_brought_it_to_size(
    crop_mode: str, rows: tuple[int, int], columns: tuple[int, int]
) -> None:
    placed = at_image_size(np.ones((32, 32)), (90, 180), preprocessing_of(36, 32, crop_mode=crop_mode))
    found_rows, found_columns = np.nonzero(placed > 0.5)
    assert (found_rows.min(), found_rows.max() + 1) == rows
    assert (found_columns.min(), found_columns.max() + 1) == columns


def test_predict_writes_a_heatmap_and_an_overlay_for_every_readable_image(trained_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    write_image(folder / "wide.png", seed=1, size=8, suffix_format="PNG")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 70, 3), dtype=np.uint8)).save(folder / "wide.png")
    write_image(folder / "tiny.png", seed=2, size=12, suffix_format="PNG")  # smaller than the crop
    (folder / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "out"
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    run_in_process(
        "predict", f"ckpt={ckpt}", f"input={folder}", "explain=true", "evaluation.tta=flips", f"hydra.run.dir={out}"
    )
    table = pd.read_csv(out / "predictions.csv", keep_default_na=False).set_index("path")
    assert table.loc["broken.jpg", "explanation"] == "" and table.loc["broken.jpg", "error"]
    for name, size in (("wide.png", (70, 40)), ("tiny.png", (12, 12))):
        heatmap = Image.open(out / table.loc[name, "explanation"])
        assert heatmap.mode == "L" and heatmap.size == size
        assert Image.open((out / table.loc[name, "explanation"]).with_suffix(".jpg")).size == size


@pytest.mark.slow
def test_evaluate_explains_every_test_image_and_train_refuses_a_missing_layer_before_training(
    trained_run: Path, learnable_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "evaluated"
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    run_in_process("evaluate", f"ckpt={ckpt}", "explain=true", f"hydra.run.dir={out}")
    test = pd.read_csv(out / "predictions_test.csv")
    assert test["explanation"].str.startswith("explanations/").all()
    for path, explanation in test[["path", "explanation"]].head(3).itertuples(index=False):
        assert Image.open(out / explanation).size == Image.open(learnable_root / path).size

    run = tmp_path / "run"
    refused = run_in_process(
        "train", *tiny(learnable_root), "explain=true", "explain.layer=layer9", f"hydra.run.dir={run}", status=2
    )
    assert "explain.layer=layer9 is not a module of resnet18" in refused.stderr
    assert not (run / "checkpoints").exists()


def malignant_lesions(count: int, size: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """Synthetic melanomas and carcinomas drawn at the model's crop, and their masks: lesions that show what the
    malignancy score is made of (a benign one may show nothing of it, and Grad-CAM then maps nothing)."""
    rng = np.random.default_rng(seed)
    drawn = [render_lesion_and_mask(rng, DIAGNOSES[name].look, size) for name in ["melanoma", "carcinoma"] * count]
    return torch.from_numpy(np.stack([d[0] for d in drawn])).permute(0, 3, 1, 2), np.stack([d[1] for d in drawn])


def test_maps_point_at_the_lesion_and_depend_on_the_trained_weights(diagnosis_run: Path) -> None:
    """Adebayo et al.'s checks: the trained model's maps point into the lesion more often than a random point
    would; the same network with its weights randomised gives other maps."""
    model = load_model(diagnosis_run / "checkpoints" / "last.ckpt")
    crops, masks = malignant_lesions(50, model.preprocessing.crop_size, seed=5)
    chance = float(masks.mean())  # a random point's chance to fall into the lesion: 0.15
    trained = Explainer(model.classifiers, GRAD_CAM).maps(crops)
    for method in ("gradcam", "gradcam++"):  # measured: 0.32 and 0.54 (layer2, 6 x 6 at 48 px)
        maps = Explainer(model.classifiers, ExplainSettings(True, method, None, None, None)).maps(crops)
        assert pointing_game(maps, masks) > chance + 0.1, (method, pointing_game(maps, masks), chance)

    randomised = model.classifiers[0]
    torch.manual_seed(0)
    for module in randomised.backbone.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    random_maps = Explainer([randomised], GRAD_CAM).maps(crops)
    varying = [(a, b) for a, b in zip(trained, random_maps, strict=True) if a.std() > 0 and b.std() > 0]
    correlation = np.mean([np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in varying])
    assert correlation < 0.5, correlation  # measured: 0.09 (6 of 100 randomised maps are flat, left out)
    assert pointing_game(random_maps, masks) < pointing_game(trained, masks)  # measured: 0.10 and 0.32


def test_a_diagnosis_can_be_explained_by_name(diagnosis_run: Path) -> None:
    model = load_model(diagnosis_run / "checkpoints" / "last.ckpt")
    crops, _ = malignant_lesions(5, model.preprocessing.crop_size, seed=6)
    malignancy = Explainer(model.classifiers, GRAD_CAM).maps(crops)
    nevus = Explainer(model.classifiers, ExplainSettings(True, "gradcam++", None, "nevus", None)).maps(crops)
    assert not np.allclose(malignancy, nevus)
    with pytest.raises(SkinclfError, match=r"explain.target=lentigo is not a diagnosis of this model's head"):
        Explainer(model.classifiers, ExplainSettings(True, "gradcam", None, "lentigo", None))


def test_evaluate_checks_the_maps_against_a_random_point_and_the_centre(diagnosis_run: Path, tmp_path: Path) -> None:
    """The synthetic lesions lie near the crop's centre, as dermoscopy centres them: the centre alone points into
    them (0.99 of them, measured), more often than the maps do (0.72), and the report says so."""
    out = tmp_path / "checked"
    ckpt = diagnosis_run / "checkpoints" / "last.ckpt"
    run_in_process("evaluate", f"ckpt={ckpt}", "explain=true", "explain.mask_column=mask", f"hydra.run.dir={out}")
    checks = json.loads((out / "metrics.json").read_text())["explanation_checks"]
    test = pd.read_csv(out / "predictions_test.csv")
    assert checks["images"] == int(test["label"].sum())  # every malignant test image has its mask
    points, drops = checks["pointing_game"], checks["score_drop_removing_20%"]
    assert points["maps"] > points["random point"] + 0.2 and drops["maps"] > drops["random"] + 0.2
    assert points["centre"] > points["maps"] and not checks["beats_centre"] and checks["beats_random"]
    report = (out / "report.html").read_text()
    assert "Are the maps worth reading?" in report and "The maps do not beat the crop&#39;s centre" in report


def test_the_pointing_game_and_the_centre_guess() -> None:
    masks = np.zeros((2, 9, 9), bool)
    masks[0, 3:6, 3:6] = True  # a centred lesion
    masks[1, 0:3, 0:3] = True  # one in a corner
    maps = np.zeros((2, 9, 9))
    maps[0, 4, 4] = maps[1, 8, 8] = 1
    assert pointing_game(maps, masks) == 0.5
    assert pointing_game(centre_maps(2, 9), masks) == 0.5 and centre_maps(1, 9)[0].argmax() == 40
