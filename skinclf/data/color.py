"""Colour: Shades of Gray colour constancy, and an estimate of skin tone from the skin around a lesion.

**Colour constancy** (``model.preprocessing.color_constancy=shades_of_gray``; Finlayson & Trezzi 2004, the ISIC
2019 winners' preprocessing): the light an image was taken under is estimated, per channel, as the
Minkowski p-norm mean of its pixels (p = 6: between the grey world, p = 1, and the white patch,
p = infinity), and each channel is scaled so that this light becomes neutral grey, the image's
overall brightness kept. Cameras, dermoscopes and lighting of other clinics tint images
differently; this takes most of the tint away before the model sees them.

**Skin tone** (the column ``skin_tone_ita``): dermoscopy datasets rarely label it, so it is
estimated, as studies of the field do (Kinyanjui et al., MICCAI 2020), by the Individual Typology
Angle of the skin, ITA = arctan((L* - 50) / b*) in degrees (Chardon et al. 1991), banded into its
six categories. The skin is the image's border: the frame of pixels within BORDER of the shorter
side from an edge, where a dermoscopy image shows skin around a centred lesion; of those, pixels
darker than L* = DARKEST_SKIN_L (the black corners of a round dermoscope's field, frames, dense
hair) or not yellowish (b* <= 0: gel, rulers, shadows) are left out, and the ITA is the median of
the rest (robust to hair and ruler marks). An
image with too few such pixels gets no band. It is measured on the image as decoded, never after
colour constancy (which turns the skin towards grey). It is an estimate: the border may hold
lesion, ink, gel or shadow, and ITA depends on the light the image was taken under.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from skinclf.data.images import load_rgb

#: The Minkowski norm of Shades of Gray (Finlayson & Trezzi: 6 works best across their datasets).
SHADES_OF_GRAY_POWER = 6


#: What an exported model's user applies before resizing, when the model was trained with Shades of Gray.
SHADES_OF_GRAY_HOW = (
    f"apply to the whole decoded RGB image before resizing: per channel c, light_c = mean(pixel_c ** "
    f"{SHADES_OF_GRAY_POWER}) ** (1 / {SHADES_OF_GRAY_POWER}); pixel_c *= norm(light) / (sqrt(3) * light_c); round "
    "and clip to 0-255 (skinclf.data.color.shades_of_gray)"
)


def shades_of_gray(pixels: np.ndarray, power: int = SHADES_OF_GRAY_POWER) -> np.ndarray:
    """The (H, W, 3) uint8 image with its light made neutral: each channel divided by its p-norm mean, scaled so
    that a neutral light leaves the image as it is."""
    image = pixels.astype(np.float64)
    light = np.mean(image**power, axis=(0, 1)) ** (1 / power)
    if not np.all(light > 0):  # a black image, or a channel without light: nothing to correct
        return pixels
    gains = np.linalg.norm(light) / (np.sqrt(3) * light)  # 1 for each channel under a neutral light
    return np.clip(np.rint(image * gains), 0, 255).astype(np.uint8)


#: The share of the shorter side, from each edge, that counts as the skin around the lesion.
BORDER = 0.12
#: Pixels darker than this L* are not skin (a dermoscope's black corners, frames, dense hair).
DARKEST_SKIN_L = 15.0
#: Below this share of skin pixels in the border, an image gets no ITA.
MIN_SKIN_SHARE = 0.05
#: The images are measured at this size (the shorter side): enough pixels for a median.
THUMBNAIL = 96

#: The six ITA categories (Chardon et al. 1991; Del Bino & Bernerd 2013): name and lower bound in degrees.
ITA_BANDS = (
    ("very light", 55.0),
    ("light", 41.0),
    ("intermediate", 28.0),
    ("tan", 10.0),
    ("brown", -30.0),
    ("dark", -np.inf),
)


def skin_pixels(pixels: np.ndarray) -> tuple[np.ndarray, int]:
    """L*, a*, b* of the border pixels that may be skin, as rows of a (N, 3) array, and how many pixels the border
    has. Skin is yellowish (b* > 0): grey and bluish pixels (gel, rulers, shadows) are not."""
    height, width = pixels.shape[:2]
    scale = THUMBNAIL / min(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
        height, width = pixels.shape[:2]
    lab = cv2.cvtColor(pixels.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)  # L* 0-100, a* and b* as CIE
    band = max(1, round(BORDER * min(height, width)))
    rows, columns = np.ogrid[:height, :width]
    border = (rows < band) | (rows >= height - band) | (columns < band) | (columns >= width - band)
    candidates = lab[border]
    skin = (candidates[:, 0] >= DARKEST_SKIN_L) & (candidates[:, 2] > 0)
    return candidates[skin], int(border.sum())


def individual_typology_angle(pixels: np.ndarray) -> float | None:
    """The median ITA, in degrees, of the skin around the lesion of an (H, W, 3) uint8 RGB image; None where the
    border holds too little skin."""
    skin, border_pixels = skin_pixels(pixels)
    if len(skin) < max(1, MIN_SKIN_SHARE * border_pixels):
        return None
    lightness, yellowness = skin[:, 0], skin[:, 2]
    angles = np.degrees(np.arctan((lightness - 50) / yellowness))
    return float(np.median(angles))


def ita_band(angle: float | None) -> str:
    """The ITA category of an angle ("" for no angle)."""
    if angle is None:
        return ""
    return next(name for name, lower in ITA_BANDS if angle > lower)


#: The column an audit by skin tone reads (evaluation.subgroups=[skin_tone_ita]).
SKIN_TONE_COLUMN = "skin_tone_ita"
#: How it is made, in metrics.json and the report.
SKIN_TONE_METHOD = (
    "an unvalidated estimate, which must not stand in for a labelled skin type (where the table has one, audit by "
    "that column: evaluation.subgroups=[fitzpatrick]): the Individual Typology Angle, arctan((L* - 50) / b*) in "
    f"degrees (Chardon et al. 1991), median over the image's border ({BORDER:.0%} of its shorter side from each edge, "
    f"where the skin around a centred lesion is), leaving out pixels darker than L* {DARKEST_SKIN_L:g} or not "
    "yellowish (b* <= 0); banded very light > 55, light 41-55, intermediate 28-41, tan 10-28, brown -30-10, dark < "
    "-30; empty where the border holds too little skin. Measured on the image as decoded, before any colour "
    "constancy. On 429 clinical photographs whose Fitzpatrick types a dermatologist labelled, its bands did not "
    "track the types (Spearman 0.01; type I images fell in every band)"
)


def skin_tones(root: Path, paths: list[str]) -> list[str]:
    """The ITA category of each image ("" where it has none: unreadable, or too little skin around the lesion)."""
    tones = []
    for path in paths:
        try:
            angle = individual_typology_angle(load_rgb(root / path, THUMBNAIL))
        except Exception:  # noqa: BLE001 - an image that cannot be read has no skin tone; its prediction says why
            angle = None
        tones.append(ita_band(angle))
    return tones
