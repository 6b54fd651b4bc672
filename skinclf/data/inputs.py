"""What evaluate and predict read: one image, a folder of images, or a CSV of paths."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from skinclf.core.errors import SkinclfError, examples
from skinclf.data.folder import checked_labels, has_class_folders, list_images, scan_class_folders
from skinclf.data.images import is_image_file


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, dtype={"path": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise SkinclfError(f"cannot read the CSV {path}: {error}") from error
    if "path" not in table.columns:
        raise SkinclfError(
            f"{path} has no 'path' column (it has {examples(list(table.columns))}): expected columns "
            "path (image path, relative to root= or to the CSV's folder) and optionally label (0/1)"
        )
    return checked_labels(table, path) if "label" in table.columns else table


def read_inputs(source: str | Path, root: str | Path | None = None) -> tuple[Path, pd.DataFrame]:
    """The images named by source as (root, table of path relative to root [, label]).

    - an image file: that image, unlabelled;
    - a folder with benign/ and malignant/ subfolders: their images, labelled;
    - any other folder: every image below it, unlabelled;
    - a .csv with a ``path`` column (and optionally ``label``): paths relative to ``root``, by
      default the CSV's folder; absolute paths stay as they are.
    """
    source = Path(source).expanduser()
    if not source.exists():
        raise SkinclfError(f"input {source} does not exist: name an image, a folder of images or a CSV")
    if source.is_dir():
        if has_class_folders(source):
            table = scan_class_folders(source, relative_to=source, allow_empty=True)
            if table.empty:
                raise SkinclfError(f"the class folders of {source} hold no images")
            return source, table
        images = list_images(source)
        if not images:
            raise SkinclfError(f"{source} holds no images (.jpg .jpeg .png .bmp .tif .tiff, any case, nested too)")
        return source, pd.DataFrame({"path": [p.relative_to(source).as_posix() for p in images]})
    if source.suffix.lower() == ".csv":
        table = _read_csv(source)
        return (Path(root).expanduser() if root else source.parent), table
    if is_image_file(source):
        return source.parent, pd.DataFrame({"path": [source.name]})
    raise SkinclfError(f"input {source} is neither an image, a folder nor a .csv file")


def missing_paths(root: Path, table: pd.DataFrame) -> list[str]:
    """Paths of the table that are not files under root."""
    return [p for p in table["path"] if not (root / p).is_file()]
