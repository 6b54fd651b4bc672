"""Backbones, the one-logit head, normalisation, and loading ImageNet weights offline."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import sizes, train_settings
from torchvision.models import get_model

import skinclf
from skinclf.config.presets import preprocessing_preset
from skinclf.core.errors import SkinclfError
from skinclf.models import LesionClassifier
from skinclf.models.adaptation import adapt_batchnorm, class_mix_weights
from skinclf.models.backbones import build_backbone
from skinclf.models.checkpoints import VERSION_KEY, load_classifier
from skinclf.trained.inference import VIEWS, Predictor, view
from skinclf.training.builders import build_model

RESNET18_FILE = "resnet18-f37072fd.pth"  # the file name torchvision's IMAGENET1K_V1 weights download to


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty TORCH_HOME; any download attempt fails as it would offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "torch"


def classifier(*overrides: str) -> LesionClassifier:
    """The model a run starts with, its ImageNet weights loaded: build_model of the composed settings."""
    return build_model(train_settings(list(overrides)), load_pretrained_weights=True)


def fake_imagenet_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return get_model("resnet18", num_classes=1000).state_dict()


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small", "efficientnet_b0"])
def test_head_is_one_logit_with_xavier_normal_weight_and_zero_bias(arch: str) -> None:
    torch.manual_seed(0)
    model = build_backbone(arch)
    heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    head = heads[-1]
    assert head.out_features == 1
    assert torch.count_nonzero(head.bias) == 0
    expected_std = (2.0 / (head.in_features + 1)) ** 0.5
    assert head.weight.std().item() == pytest.approx(expected_std, rel=0.15)
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 1)


def test_unknown_architecture_and_weights_names_are_refused() -> None:
    with pytest.raises(SkinclfError, match=r"model.arch='resnet19' is not a torchvision classification model"):
        build_backbone("resnet19")
    with pytest.raises(SkinclfError, match=r"model.weights='IMAGENET1K_V9' is not a weights name of resnet18"):
        preprocessing_preset("resnet18", "IMAGENET1K_V9")


def test_preprocessing_comes_from_the_weights_transforms() -> None:
    assert preprocessing_preset("resnet18", "IMAGENET1K_V1")["resize_size"] == 256
    assert preprocessing_preset("resnext50_32x4d", "IMAGENET1K_V2")["resize_size"] == 232
    assert preprocessing_preset("resnext50_32x4d", "IMAGENET1K_V1")["resize_size"] == 256
    assert preprocessing_preset("resnext50_32x4d", None)["crop_size"] == 224  # the default weights'
    assert preprocessing_preset("resnet18", None)["mean"] == pytest.approx([0.485, 0.456, 0.406])


def test_forward_normalises_0_255_pixels_with_the_mean_and_std() -> None:
    model = classifier(
        "model.weights=null", "model.preprocessing.mean=[0.5,0.4,0.3]", "model.preprocessing.std=[0.2,0.25,0.3]"
    ).eval()
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    mean = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    expected = model.backbone((images.float() / 255 - mean) / std).squeeze(1)
    torch.testing.assert_close(model(images), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model(images.float()), expected, rtol=1e-4, atol=1e-5)


def test_imagenet_weights_load_from_the_torch_hub_cache(torch_home: Path) -> None:
    imagenet = fake_imagenet_state_dict()
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(imagenet, torch_home / "hub" / "checkpoints" / RESNET18_FILE)

    model = classifier("model.weights=IMAGENET1K_V1")

    backbone = model.backbone.state_dict()
    for key in ("conv1.weight", "layer4.1.bn2.running_var", "layer2.0.downsample.0.weight"):
        torch.testing.assert_close(backbone[key], imagenet[key])
    assert backbone["fc.weight"].shape == (1, 512)  # the new head, not ImageNet's 1000 classes
    assert torch.count_nonzero(backbone["fc.bias"]) == 0


def test_imagenet_weights_load_from_a_local_file(tmp_path: Path) -> None:
    imagenet = fake_imagenet_state_dict(seed=1)
    torch.save(imagenet, tmp_path / "my_weights.pth")
    model = classifier(f"model.weights={tmp_path / 'my_weights.pth'}")
    torch.testing.assert_close(model.backbone.state_dict()["conv1.weight"], imagenet["conv1.weight"])


def test_offline_without_cached_weights_says_where_to_put_them(torch_home: Path) -> None:
    with pytest.raises(SkinclfError) as refused:
        classifier("model.weights=IMAGENET1K_V1")
    message = str(refused.value)
    assert "cannot download the resnet18 IMAGENET1K_V1 weights" in message
    assert str(torch_home / "hub" / "checkpoints" / RESNET18_FILE) in message
    assert "model.weights=null" in message
    assert "model=efficientnet_lite0" in message  # the pretrained model that needs no network


def test_a_corrupt_cached_weights_file_is_named(torch_home: Path) -> None:
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    (torch_home / "hub" / "checkpoints" / RESNET18_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(SkinclfError, match="cached resnet18 IMAGENET1K_V1 weights cannot be loaded"):
        classifier("model.weights=IMAGENET1K_V1")


def test_head_dropout_sits_before_the_new_head_and_the_weights_still_load(torch_home: Path) -> None:
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    imagenet = fake_imagenet_state_dict()
    torch.save(imagenet, torch_home / "hub" / "checkpoints" / RESNET18_FILE)
    model = classifier("model.weights=IMAGENET1K_V1", "model.head_dropout=0.5")
    dropout, head = model.backbone.fc
    assert isinstance(dropout, torch.nn.Dropout) and dropout.p == 0.5 and head.out_features == 1
    torch.testing.assert_close(model.backbone.state_dict()["conv1.weight"], imagenet["conv1.weight"])
    features = torch.ones(4, 512)
    assert not torch.equal(model.backbone.fc.train()(features), model.backbone.fc.train()(features))  # drops out
    assert torch.equal(model.backbone.fc.eval()(features), model.backbone.fc.eval()(features))


def test_load_from_checkpoint_never_fetches_imagenet_weights(tmp_path: Path, torch_home: Path) -> None:
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(fake_imagenet_state_dict(), torch_home / "hub" / "checkpoints" / RESNET18_FILE)
    model = classifier("model.weights=IMAGENET1K_V1", *sizes(40, 32))
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": "2.6.0",
    }
    torch.save(checkpoint, tmp_path / "model.ckpt")
    (torch_home / "hub" / "checkpoints" / RESNET18_FILE).unlink()  # now offline with nothing cached

    restored = LesionClassifier.load_from_checkpoint(tmp_path / "model.ckpt")

    assert restored.settings.model.weights == "IMAGENET1K_V1" and restored.settings.model.preprocessing.crop_size == 32
    torch.testing.assert_close(
        restored.backbone.state_dict()["conv1.weight"], model.backbone.state_dict()["conv1.weight"]
    )


def test_a_checkpoint_of_another_release_is_refused_naming_both_versions(tmp_path: Path) -> None:
    model = classifier("model.weights=null", *sizes(40, 32))
    contents = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    torch.save({VERSION_KEY: skinclf.__version__, **contents}, tmp_path / "this.ckpt")
    restored, _ = load_classifier(tmp_path / "this.ckpt")
    torch.testing.assert_close(restored.state_dict(), model.state_dict())

    torch.save({VERSION_KEY: "0.0.9", **contents}, tmp_path / "older.ckpt")
    with pytest.raises(SkinclfError, match=rf"written by skinclf 0.0.9, and this is skinclf {skinclf.__version__}"):
        load_classifier(tmp_path / "older.ckpt")


def test_test_time_views_are_the_flips_and_the_symmetries_of_the_square() -> None:
    image = torch.arange(16.0).view(1, 1, 4, 4)  # no symmetry of its own: every view differs
    seen = {name: {tuple(view(image, *v).flatten().tolist()) for v in views} for name, views in VIEWS.items()}
    assert len(seen["none"]) == 1 and len(seen["flips"]) == 4 and len(seen["flips_rot"]) == 8
    assert seen["none"] < seen["flips"] < seen["flips_rot"]
    assert tuple(image.flip(-2).flatten().tolist()) in seen["flips"]  # upside down is one of the flips


def test_predictions_with_tta_are_the_mean_over_the_views() -> None:
    model = classifier("model.weights=null").eval()
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    batch = {"image": images, "label": torch.zeros(3)}
    with torch.inference_mode():
        averaged = Predictor(model, "flips_rot").predict_step(batch, 0)["probability"]
        each = torch.stack([model(view(images, *v)).sigmoid() for v in VIEWS["flips_rot"]])
    torch.testing.assert_close(averaged, each.mean(0))
    assert not torch.allclose(averaged, each[0])  # the views do change the prediction


@pytest.mark.parametrize("optimizer", ["torch.optim.Adam", "torch.optim.AdamW", "torch.optim.SGD"])
def test_the_optimizer_is_fused_and_makes_the_update_of_the_per_tensor_loop(optimizer: str) -> None:
    fused, loop = (
        classifier("model.weights=null", f"optim.optimizer={optimizer}", *more)
        for more in ([], ["+optim.kwargs.fused=false"])
    )
    loop.load_state_dict(fused.state_dict())
    steps = {}
    for name, model in (("fused", fused), ("loop", loop)):
        chosen = model.optimizer_and_schedule(total_steps=10, max_epochs=2)["optimizer"]
        steps[name] = chosen.param_groups[0]["fused"]
        torch.manual_seed(0)
        for _ in range(3):
            images, labels = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8), torch.tensor([0.0, 1, 0, 1])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(images), labels)
            chosen.zero_grad()
            loss.backward()
            chosen.step()
    assert steps == {"fused": True, "loop": False}  # the user's choice is kept
    # the same weights but for rounding: Adam divides by the root of tiny second moments, where the kernels' last
    # bits show (one weight in 294,912 differed by 1.1e-5 with SSE4.1); a wrong update would move weights by a step
    step = fused.settings.optim.lr
    looped = loop.state_dict()
    differing = total = 0
    for name, weights in fused.state_dict().items():
        difference = (weights - looped[name]).abs().double()
        assert difference.max() < step / 2, name
        differing += int((difference > 1e-6 + 1e-4 * looped[name].abs()).sum())
        total += difference.numel()
    assert differing / total < 1e-4, (differing, total)


def test_an_optimizer_without_a_fused_kernel_gets_the_users_arguments_only() -> None:
    model = classifier("model.weights=null", "optim.optimizer=torch.optim.RMSprop", "+optim.kwargs.alpha=0.9")
    chosen = model.optimizer_and_schedule(total_steps=10, max_epochs=2)["optimizer"]
    assert chosen.defaults["alpha"] == 0.9 and "fused" not in chosen.defaults


def test_adapting_batch_norm_changes_its_running_statistics_and_nothing_else() -> None:
    model = classifier("model.weights=null", *sizes(36, 32)).eval()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    images = [{"image": torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=generator)} for _ in range(40)]
    layers = adapt_batchnorm(model, images, np.ones(40), 16, torch.device("cpu"))
    changed = {key for key, value in model.state_dict().items() if not torch.equal(value, before[key])}
    statistics = {key for key in before if key.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert layers == 20 and changed == statistics and not model.training


def test_the_class_mix_guard_draws_the_training_share_of_malignant_images() -> None:
    """Label-shift importance weights (Saerens et al. 2002), each image's expected one: exact for a sure model."""
    sure = (np.random.default_rng(0).random(1000) < 0.05).astype(float)  # a screening clinic: 5 % malignant
    weights = class_mix_weights(sure, 0.3)
    assert np.sum(weights * sure) / np.sum(weights) == pytest.approx(0.3)
    unsure = np.random.default_rng(1).beta(0.5, 5, 1000)
    unsure_weights = class_mix_weights(unsure, 0.3)  # an unsure model: the share moves towards the training share
    assert unsure_weights.mean() == pytest.approx(1.0)
    assert unsure.mean() < np.sum(unsure_weights * unsure) / np.sum(unsure_weights) < 0.3
    assert class_mix_weights(np.full(10, 0.3), 0.3) == pytest.approx(np.ones(10))  # the same mix: drawn evenly
