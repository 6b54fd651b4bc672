"""The aug groups' pipelines: uint8 CHW tensors of the crop size, random only when training."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import compose_train_config, preprocessing_of, sizes
from hydra.utils import instantiate

from skinclf.config.schema import validate
from skinclf.data.preprocessing import eval_transform, train_transform
from skinclf.data.reading import CachedPixels


@pytest.mark.parametrize("aug", ["none", "albu"])
def test_pipelines_give_uint8_crops_of_the_configured_size(aug: str) -> None:
    cfg = compose_train_config([f"aug={aug}", *sizes(40, 32)])
    steps = instantiate(cfg.aug.train) if cfg.aug.train else None
    preprocessing = validate(cfg).model.preprocessing
    train, evaluate = train_transform(preprocessing, steps), eval_transform(preprocessing)
    image = np.random.default_rng(0).integers(0, 256, size=(60, 90, 3), dtype=np.uint8)

    for pipeline in (train, evaluate):
        out = pipeline(image=image)["image"]
        assert isinstance(out, torch.Tensor)
        assert out.dtype == torch.uint8 and out.shape == (3, 32, 32)

    assert torch.equal(evaluate(image=image)["image"], evaluate(image=image)["image"])
    outputs = [train(image=image)["image"] for _ in range(8)]
    assert any(not torch.equal(outputs[0], o) for o in outputs[1:]) == (aug == "albu")


def test_eval_pipeline_resizes_the_shorter_side_then_centre_crops() -> None:
    image = np.zeros((40, 80, 3), dtype=np.uint8)
    image[:, 30:50] = 255  # a white band in the middle
    out = eval_transform(preprocessing_of(20, 10))(image=image)["image"]
    assert out.shape == (3, 10, 10)
    # 40x80 -> 20x40, centre 10x10 is columns 15..25 of the resized image, the band is 15..25
    assert out.float().mean() > 200


def test_albu_yaml_is_the_reference_pipeline() -> None:
    cfg = compose_train_config(["aug=albu", "model=resnext50"])
    pipeline = train_transform(validate(cfg).model.preprocessing, instantiate(cfg.aug.train))
    assert [type(s).__name__ for s in pipeline.transforms] == [
        "SmallestMaxSize",  # the model's resize, before the aug group's steps
        "Affine",
        "RandomCrop",
        "RGBShift",
        "RandomBrightnessContrast",
        "ToTensorV2",
    ]
    assert pipeline.transforms[0].max_size == 232 and cfg.aug.train[1].height == 224
    affine = cfg.aug.train[0]
    assert (list(affine.scale), list(affine.rotate), list(affine.shear), affine.p) == (
        [0.9, 1.1],
        [-180, 180],
        [-15, 15],
        0.33,
    )


def test_the_model_s_interpolation_resizes_every_image_it_sees() -> None:
    """The eval transform, the training transform and the cache all start with the model's resize."""
    image = np.random.default_rng(1).integers(0, 256, size=(41, 67, 3), dtype=np.uint8)
    for interpolation, flag in (("bilinear", cv2.INTER_LINEAR), ("bicubic", cv2.INTER_CUBIC)):
        preprocessing = preprocessing_of(20, 20, interpolation=interpolation)
        expected = cv2.resize(image, (33, 20), interpolation=flag)[:, 6:26]  # the shorter side to 20, centre 20
        assert np.array_equal(eval_transform(preprocessing)(image=image)["image"].permute(1, 2, 0).numpy(), expected)
        assert np.array_equal(
            CachedPixels(preprocessing).of_decoded(image), cv2.resize(image, (33, 20), interpolation=flag)
        )


@pytest.mark.parametrize("crop_mode", ["squash", "border"])
def test_the_crop_mode_of_the_weights_brings_the_image_to_size(crop_mode: str) -> None:
    """A wide image (90 x 180): squashed to 36 x 36 whole, or its longer side to 36 and padded with the mean colour;
    not its centre square alone, as crop_mode=center takes it."""
    image = np.zeros((90, 180, 3), np.uint8)
    image[:, :30] = 255  # a white band at the left edge, which a centre crop of the shorter side leaves out
    crop = eval_transform(preprocessing_of(36, 36, crop_mode=crop_mode))(image=image)["image"]
    assert tuple(crop.shape) == (3, 36, 36)
    assert crop[:, 18, :3].float().mean() > 200  # the left band is in the crop
    if crop_mode == "border":  # the rows above and below the image are the mean colour (ImageNet's)
        torch.testing.assert_close(crop[:, 0, 18].tolist(), [round(255 * m) for m in (0.485, 0.456, 0.406)])
    centred = eval_transform(preprocessing_of(36, 36))(image=image)["image"]
    assert centred[:, 18, :3].float().mean() < 50
