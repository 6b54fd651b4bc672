"""How far to trust the maps of where a model looks: each check set beside a plain guess that needs no model.

- **Pointing game** (Zhang et al. 2018): the share of maps whose maximum falls inside the lesion's mask, against a
  random point (the mask's share of the crop) and the centre of the crop. Dermoscopy centres the lesion: the centre
  alone points into it most of the time, so a map is worth reading only where it beats the centre.
- **Faithfulness** (ROAD, Rong et al. ICML 2022, pytorch-grad-cam's ``ROADMostRelevantFirst``): how much the explained
  score falls when the REMOVED share of pixels the map ranks highest is imputed away (noisy linear imputation, so
  that the removal's shape tells the model nothing), against the same share ranked by a random map and by a map of
  the centre. A map that shows what the score rests on makes it fall further than both.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch
from pytorch_grad_cam.metrics.road import ROADMostRelevantFirst

from skinclf.trained.explain import Explainer

#: The share of the crop's pixels the faithfulness check removes.
REMOVED = 0.2


def pointing_game(maps: np.ndarray, masks: np.ndarray) -> float:
    """The share of (N, H, W) maps whose maximum falls inside the (N, H, W) masks."""
    peaks = maps.reshape(len(maps), -1).argmax(axis=1)
    return float(np.mean(masks.reshape(len(masks), -1)[np.arange(len(masks)), peaks] > 0))


def centre_maps(count: int, size: int) -> np.ndarray:
    """Maps that rank the pixels by their closeness to the crop's centre."""
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    return np.broadcast_to(1 - np.hypot(xx, yy) / np.sqrt(2), (count, size, size)).astype(np.float32)


def score_drop(explainer: Explainer, crops: torch.Tensor, maps: np.ndarray, rows: pd.DataFrame | None) -> float:
    """The mean fall of the explained score when the REMOVED share of each crop's pixels, those its map ranks
    highest, is imputed away (averaged over the explainer's classifiers)."""
    road = ROADMostRelevantFirst(percentile=round(100 * (1 - REMOVED)))
    drops = []
    for scores, target in explainer.scored(rows):
        with torch.no_grad(), warnings.catch_warnings():
            # its imputation hands torch tensors to NumPy, which NumPy 2 warns of for each image: nothing to act on
            warnings.filterwarnings("ignore", message="__array_wrap__ must accept context", category=DeprecationWarning)
            change = road(crops.float(), maps.astype(np.float32), [target] * len(crops), scores)
        drops.append(-np.asarray(change, dtype=float).mean())
    return float(np.mean(drops))


def saliency_checks(explainer: Explainer, crops: torch.Tensor, masks: np.ndarray, rows: pd.DataFrame | None) -> dict:
    """metrics.json's ``explanation_checks`` of crops (N, 3, H, W) and their lesion masks (N, H, W)."""
    maps = explainer.maps(crops, rows)
    count, size = len(crops), crops.shape[-1]
    centre, random = centre_maps(count, size), np.random.default_rng(0).random((count, size, size)).astype(np.float32)
    points = {
        "maps": pointing_game(maps, masks),
        "random point": float(np.mean(masks > 0)),
        "centre": pointing_game(centre, masks),
    }
    drops = {
        name: score_drop(explainer, crops, m, rows)
        for name, m in (("maps", maps), ("random", random), ("centre", centre))
    }
    return {
        "images": count,
        "method": explainer.settings.method,
        "layers": explainer.layer_names,
        "pointing_game": points,
        f"score_drop_removing_{REMOVED:.0%}": drops,
        "beats_centre": points["maps"] > points["centre"] and drops["maps"] > drops["centre"],
        "beats_random": points["maps"] > points["random point"] and drops["maps"] > drops["random"],
    }
