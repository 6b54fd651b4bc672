"""What each acquisition shift of aug=domain costs a model, and whether training with them buys it back.

For the models studies/hold_elsewhere.py trained on HAM10000 (plain, colour constancy, aug=domain; one per seed), each
step of conf/aug/domain.yaml is applied alone, always (p=1), to the model's own test images as the camera would: to
the decoded image, before the model's colour constancy and resize. The AUROC lost against the unshifted test images
is that shift's measured effect on the model; a model trained with aug=domain should lose less.

    python studies/acquisition_shifts.py --study <the --out folder of hold_elsewhere.py> --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import albumentations as A
import numpy as np
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

from skinclf.config.resolvers import register_configs
from skinclf.data.dataset import LesionDataset
from skinclf.data.images import load_rgb
from skinclf.data.preprocessing import decoding, eval_transform
from skinclf.trained import CheckpointModel
from skinclf.trained.inference import inference_trainer, predict_loader

#: The models of hold_elsewhere.py compared, by their run folders' names (seed appended).
MODELS = {
    "plain": "HAM10000-plain",
    "colour constancy": "HAM10000-colourconstancy",
    "aug=domain": "HAM10000-aug-domain",
}
#: Steps of aug=domain that change no acquisition (the reference's flip and crop).
NOT_ACQUISITION = ("HorizontalFlip", "RandomCrop")


def shifts() -> dict[str, A.BasicTransform]:
    """Each acquisition step of aug=domain as configured, made to act on every image."""
    register_configs()
    with initialize_config_module(config_module="skinclf.conf", version_base="1.3"):
        config = compose(config_name="train", overrides=["aug=domain", "model.weights=null", "data.root=unused"])
    steps = {}
    for step in OmegaConf.to_container(config.aug.train, resolve=True):
        name = step["_target_"].rsplit(".", 1)[1]
        if name not in NOT_ACQUISITION:
            steps[name] = instantiate({**step, "p": 1.0})
    return steps


def shifted_auroc(model: CheckpointModel, shift: A.BasicTransform | None) -> float:
    """The model's test AUROC with the shift applied to every decoded test image (None: as they are)."""
    preprocessing = model.preprocessing
    decode = decoding(preprocessing)
    shifted = A.Compose([shift], seed=0) if shift is not None else None

    def camera(path: Path) -> np.ndarray:
        pixels = load_rgb(path, decode.side)
        return decode.constant(shifted(image=pixels)["image"] if shifted is not None else pixels)

    test = model.split("test")
    dataset = LesionDataset(test.root, test.table, eval_transform(preprocessing), camera)
    predictions = predict_loader(
        inference_trainer("cpu", progress_bar=False), model.classifier, DataLoader(dataset, batch_size=128)
    )
    return float(roc_auc_score(predictions["label"], predictions["probability"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    arguments = parser.parse_args()
    steps = shifts()
    lost: dict[str, dict[str, list[float]]] = {model: {step: [] for step in steps} for model in MODELS}
    for seed in arguments.seeds:
        for model_name, folder in MODELS.items():
            model = CheckpointModel(arguments.study / f"{folder}-{seed}" / "checkpoints" / "last.ckpt")
            clean = shifted_auroc(model, None)
            for step, shift in steps.items():
                lost[model_name][step].append(clean - shifted_auroc(model, shift))
                print(f"seed {seed} | {model_name} | {step}: AUROC lost {lost[model_name][step][-1]:+.3f}", flush=True)
    (arguments.study / "acquisition_shifts.json").write_text(json.dumps(lost, indent=2))
    print("\n| shift | " + " | ".join(MODELS) + " |\n|---|" + "---|" * len(MODELS))
    for step in steps:
        cells = [f"{np.mean(lost[m][step]):.3f} ± {np.std(lost[m][step], ddof=1):.3f}" for m in MODELS]
        print(f"| {step} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
