"""Temperature scaling against an independent fit, colour constancy, and the skin tone of known skin colours."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from skinclf.data.color import individual_typology_angle, ita_band, shades_of_gray
from skinclf.metrics.calibration import (
    expected_calibration_error,
    fit_temperature,
    logits_of,
    scaled,
)
from skinclf.trained.exported import TemperatureScaled


def over_confident(n: int, seed: int, sharpening: float = 3.0) -> pd.DataFrame:
    """Labels drawn from true probabilities, and a model whose logits are the true ones times sharpening."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0, 1.5, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-true_logits))).astype(int)
    return pd.DataFrame({"probability": 1 / (1 + np.exp(-sharpening * true_logits)), "label": labels})


def test_the_temperature_is_the_one_an_independent_fit_finds_and_lowers_the_ece() -> None:
    validation, test = over_confident(4000, 0), over_confident(3000, 1)
    temperature = fit_temperature(validation)
    # temperature scaling of one logit is a logistic regression on it without intercept: coefficient = 1 / T
    regression = LogisticRegression(fit_intercept=False, C=np.inf).fit(
        logits_of(validation["probability"])[:, None], validation["label"]
    )
    assert temperature == pytest.approx(1 / regression.coef_[0, 0], rel=1e-4)
    assert temperature == pytest.approx(3.0, rel=0.1)  # the sharpening it undoes
    before = expected_calibration_error(test["probability"], test["label"])
    after = expected_calibration_error(scaled(test, temperature, [])["probability"], test["label"])
    assert after < 0.5 * before and after < 0.03, (before, after)
    ranks = scaled(test, temperature, [])["probability"].rank()
    assert (ranks == test["probability"].rank()).all()  # the ranking, and so the AUROC, stay


def test_a_diagnosis_head_is_scaled_on_its_logits_and_exports_so() -> None:
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 2, size=(500, 3)) * 2.5
    probabilities = torch.tensor(logits).softmax(1).numpy()
    classes = ["melanoma", "nevus", "keratosis"]
    truth = [
        classes[i]
        for i in (torch.tensor(logits / 2.5).softmax(1).multinomial(1, generator=torch.Generator().manual_seed(0)))[
            :, 0
        ]
    ]
    table = pd.DataFrame({f"probability_{c}": probabilities[:, i] for i, c in enumerate(classes)}).assign(
        diagnosis=truth, probability=probabilities[:, 0], label=[int(t == "melanoma") for t in truth]
    )
    temperature = fit_temperature(table)
    assert temperature > 1.5  # over-confident by 2.5
    calibrated = scaled(table, temperature, ["melanoma"])
    np.testing.assert_allclose(calibrated["probability"], calibrated["probability_melanoma"])
    expected = torch.tensor(logits / temperature).softmax(1).numpy()
    np.testing.assert_allclose(calibrated[[f"probability_{c}" for c in classes]], expected, atol=1e-6)

    class Probabilities(torch.nn.Module):  # an exported diagnosis model's outputs
        def forward(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            diagnoses = logits.softmax(1)
            return diagnoses[:, 0], diagnoses

    exported = TemperatureScaled(Probabilities(), temperature, torch.tensor([True, False, False]))
    malignancy, diagnoses = exported(torch.tensor(logits, dtype=torch.float32))
    np.testing.assert_allclose(diagnoses.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(malignancy.numpy(), expected[:, 0], atol=1e-5)


def skin(lightness: float, yellowness: float, size: tuple[int, int] = (120, 160)) -> np.ndarray:
    """An image of skin of the given L* and b*, with a dark lesion in the middle."""
    lab = np.full((*size, 3), (lightness, 12, yellowness), np.float32)
    pixels = np.clip(np.rint(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB) * 255), 0, 255).astype(np.uint8)
    pixels[size[0] // 3 : 2 * size[0] // 3, size[1] // 3 : 2 * size[1] // 3] = (70, 40, 30)
    return pixels


@pytest.mark.parametrize(
    ("lightness", "yellowness", "band"),
    [
        (78, 12, "very light"),
        (64, 14, "light"),
        (59, 14, "intermediate"),
        (55, 16, "tan"),
        (44, 20, "brown"),
        (28, 16, "dark"),
    ],
)
def test_the_ita_of_skin_of_known_colour_falls_in_its_band(lightness: float, yellowness: float, band: str) -> None:
    angle = individual_typology_angle(skin(lightness, yellowness))
    assert angle == pytest.approx(np.degrees(np.arctan((lightness - 50) / yellowness)), abs=1.5)
    assert ita_band(angle) == band


def test_a_border_that_is_too_dark_or_too_small_gets_no_band() -> None:
    dark_field = skin(70, 15)
    dark_field[:, :] = 5  # the black field of a dermoscope all round
    assert individual_typology_angle(dark_field) is None and ita_band(None) == ""
    assert ita_band(individual_typology_angle(skin(70, 15, size=(3, 3)))) == "light"  # tiny, but skin: 53 degrees


def test_shades_of_gray_takes_a_colour_cast_away() -> None:
    lesion = skin(65, 15)
    cast = np.clip(lesion * np.array([1.25, 1.0, 0.75]), 0, 255).astype(np.uint8)  # a warm light

    def balance(image: np.ndarray) -> np.ndarray:  # the image's mean colour, its brightness left out
        mean = image.reshape(-1, 3).astype(float).mean(0)
        return mean / mean.sum()

    corrected, original = balance(shades_of_gray(cast)), balance(shades_of_gray(lesion))
    assert np.abs(corrected - original).max() < 0.1 * np.abs(balance(cast) - balance(lesion)).max()
    grey = np.full((8, 8, 3), 128, np.uint8)
    assert (shades_of_gray(grey) == grey).all()  # a neutral light is left as it is
