"""The yardstick of the checkpoint study: a plain PyTorch loop that keeps its last model.

ResNet18 with one logit from random init, BCE, Adam at a constant learning rate, random flips as
the only augmentation, on the training split skinclf made (train.csv of a split folder), scored on
its test split. Same image size, batch, epochs and learning rate as the skinclf runs it is set beside.

    python studies/plain_loop.py --split-dir <split folder> --root <data root> --epochs 6 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from torchvision.models import resnet18

from skinclf.metrics.curves import auroc, rank


class Images(Dataset):
    def __init__(self, root: Path, table: pd.DataFrame, transform: transforms.Compose) -> None:
        self.root, self.table, self.transform = root, table, transform

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = self.table.iloc[i]
        image = Image.open(self.root / row["path"]).convert("RGB")
        return self.transform(image), torch.tensor(float(row["label"]))


def train_and_score(args: argparse.Namespace, seed: int) -> float:
    torch.manual_seed(seed)
    normalize = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    resize = [transforms.Resize(args.resize), transforms.CenterCrop(args.crop)]
    flips = [transforms.RandomHorizontalFlip(), transforms.RandomVerticalFlip()]
    train_tf = transforms.Compose([*resize, *flips, transforms.ToTensor(), normalize])
    test_tf = transforms.Compose([*resize, transforms.ToTensor(), normalize])
    train = Images(args.root, pd.read_csv(args.split_dir / "train.csv"), train_tf)
    test = Images(args.root, pd.read_csv(args.split_dir / "test.csv"), test_tf)
    loader = DataLoader(train, batch_size=args.batch, shuffle=True, drop_last=True, num_workers=2)
    model = resnet18(num_classes=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.BCEWithLogitsLoss()
    for _ in range(args.epochs):
        model.train()
        for images, labels in loader:
            optimizer.zero_grad()
            loss_fn(model(images).squeeze(1), labels).backward()
            optimizer.step()
    model.eval()
    scores, labels = [], []
    with torch.no_grad():
        for images, batch_labels in DataLoader(test, batch_size=256, num_workers=2):
            scores.append(model(images).squeeze(1).sigmoid())
            labels.append(batch_labels)
    return float(auroc(rank(torch.cat(scores).numpy(), torch.cat(labels).numpy()))[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--split-dir", type=Path, required=True)
    parser.add_argument("--resize", type=int, default=72)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    for seed in args.seeds:
        result = {
            "seed": seed,
            "epochs": args.epochs,
            "root": str(args.root),
            "test_auroc": train_and_score(args, seed),
        }
        print(json.dumps(result), flush=True)
        if args.out:
            with args.out.open("a") as out:
                out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
