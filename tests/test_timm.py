"""model=timm: timm backbones by name, their preprocessing, and their weights from a local file or the
Hugging Face cache, offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from conftest import cache_in_hub, run_in_process, tiny, train_settings, trained_metrics
from safetensors.torch import save_file

from skinclf.core.errors import SkinclfError
from skinclf.models.checkpoints import load_classifier
from skinclf.training.builders import build_model

#: One of timm's own test models: a small EfficientNet with a pretrained config, quick on a CPU.
SMALL = "test_efficientnet.r160_in1k"
HEAD = "classifier"


def imagenet_like(seed: int) -> dict[str, torch.Tensor]:
    """A state dict as timm's ImageNet weights of SMALL have it (1000 classes), generated."""
    torch.manual_seed(seed)
    return {k: v.contiguous() for k, v in timm.create_model(SMALL).state_dict().items()}


def timm_classifier(weights: str) -> torch.nn.Module:
    settings = train_settings(["model=timm", f"model.arch={SMALL}", f"model.weights={weights}"])
    return build_model(settings, load_pretrained_weights=True)


def test_presets_take_sizes_and_normalisation_from_the_pretrained_config() -> None:
    b4 = train_settings(["model=efficientnet_b4"])
    assert (b4.model.library, b4.model.arch) == ("timm", "tf_efficientnet_b4.ns_jft_in1k")
    assert b4.model.weights == "pretrained"
    assert (b4.model.preprocessing.resize_size, b4.model.preprocessing.crop_size) == (
        412,
        380,
    )  # 380 px at timm's crop_pct 0.922
    convnext = train_settings(["model=convnext_small_384"])
    assert (convnext.model.preprocessing.resize_size, convnext.model.preprocessing.crop_size) == (384, 384)
    small = train_settings(["model=timm", f"model.arch={SMALL}"]).model.preprocessing
    assert (small.crop_size, small.interpolation) == (160, "bicubic")  # timm's weights resize bicubic
    assert train_settings(["model=resnet18"]).model.preprocessing.interpolation == "bilinear"  # torchvision's
    assert convnext.model.preprocessing.crop_mode == "squash"  # timm's crop_mode of its 384 px weights
    assert b4.model.preprocessing.crop_mode == "center"


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_load_from_a_local_file_but_the_head(tmp_path: Path, suffix: str) -> None:
    imagenet, path = imagenet_like(seed=1), tmp_path / f"weights{suffix}"
    save_file(imagenet, path) if suffix == ".safetensors" else torch.save(imagenet, path)
    backbone = timm_classifier(str(path)).backbone.state_dict()
    for key in ("conv_stem.weight", "bn1.running_var", "conv_head.weight"):
        torch.testing.assert_close(backbone[key], imagenet[key])
    assert backbone[f"{HEAD}.weight"].shape[0] == 1  # the new one-logit head, not ImageNet's 1000 classes
    assert torch.count_nonzero(backbone[f"{HEAD}.bias"]) == 0


def test_pretrained_weights_load_from_the_hugging_face_cache(hub_cache: Path) -> None:
    imagenet = imagenet_like(seed=2)
    cache_in_hub(hub_cache, f"timm/{SMALL}", imagenet)
    backbone = timm_classifier("pretrained").backbone.state_dict()
    torch.testing.assert_close(backbone["conv_stem.weight"], imagenet["conv_stem.weight"])


def test_offline_without_the_weights_says_where_to_get_them(hub_cache: Path) -> None:
    with pytest.raises(SkinclfError) as refused:
        timm_classifier("pretrained")
    message = str(refused.value)
    assert f"https://huggingface.co/timm/{SMALL}" in message
    assert "model.weights=<its path>" in message and "model.weights=null" in message


def test_unknown_names_are_refused_with_similar_ones() -> None:
    with pytest.raises(SkinclfError, match=r"'efficientnet_b9' is not a timm model \(similar: efficientnet_b0"):
        train_settings(["model=timm", "model.arch=efficientnet_b9"])
    with pytest.raises(SkinclfError, match=r"timm has no pretrained tag 'bogus' for resnet50; its tags: resnet50\."):
        train_settings(["model=timm", "model.arch=resnet50.bogus"])
    with pytest.raises(SkinclfError, match=r"a timm model takes model.weights=pretrained"):
        timm_classifier("IMAGENET1K_V1")


@pytest.mark.slow
def test_a_small_timm_model_trains_end_to_end_and_learns(learnable_root: Path, tmp_path: Path) -> None:
    run_folder = tmp_path / "run"
    overrides = tiny(learnable_root, "model=timm", f"model.arch={SMALL}", "model.weights=null", "trainer.max_epochs=15")
    run_in_process("train", *overrides, f"hydra.run.dir={run_folder}")
    metrics = trained_metrics(run_folder)
    assert metrics["run"]["library"] == "timm" and metrics["run"]["arch"] == SMALL
    # chance is 0.50 ± 0.05 on these 160 images; 0.693-0.709 across instruction sets, one thread and seeds 0-2
    assert metrics["test/auroc"] > 0.62
    classifier, _ = load_classifier(run_folder / metrics["run"]["checkpoint"])
    assert classifier.settings.model.library == "timm" and classifier.settings.model.preprocessing.crop_size == 32
