"""Patient metadata beside the image (``model.metadata_columns``): table columns encoded as numbers.

A column whose values are all numbers (age) is standardised with the training split's mean and
standard deviation; any other (sex, body site) is one-hot over the values seen in training (a value
not seen then gets zeros). Every column adds an indicator that is 1 where its value is missing (and
the value itself then reads 0). The encoding is fitted on the training split and stored in the
checkpoint, so that evaluation, prediction and export encode new tables exactly alike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from skinclf.core.errors import SkinclfError, examples
from skinclf.data.table import require_columns

#: How each column is encoded: {"column", "kind": "numeric", "mean", "std"} or
#: {"column", "kind": "categorical", "values"}; a list of them, JSON-friendly for checkpoints.
Encoding = list[dict]


def require_metadata(table: pd.DataFrame, columns: list[str], what: str) -> None:
    """Refuse a table without the metadata columns the model reads beside each image."""
    require_columns(table, columns, what, f"The model reads {columns} beside each image (model.metadata_columns)")


def _is_numeric(values: pd.Series) -> bool:
    present = values.dropna()
    return len(present) > 0 and pd.to_numeric(present, errors="coerce").notna().all()


def fit_encoding(train: pd.DataFrame, columns: list[str]) -> Encoding:
    """The encoding of the columns, with its statistics taken from the training table."""
    require_metadata(train, columns, "the training split")
    encoding = []
    for column in columns:
        values = train[column]
        if _is_numeric(values):
            numbers = pd.to_numeric(values, errors="coerce")
            std = float(numbers.std(ddof=0))
            encoding.append({"column": column, "kind": "numeric", "mean": float(numbers.mean()), "std": std or 1.0})
        else:
            seen = sorted(values.dropna().astype(str).unique())
            encoding.append({"column": column, "kind": "categorical", "values": seen})
    return encoding


def feature_names(encoding: Encoding) -> list[str]:
    """The name of each encoded feature, in order."""
    names = []
    for entry in encoding:
        column = entry["column"]
        values = [column] if entry["kind"] == "numeric" else [f"{column}={v}" for v in entry["values"]]
        names += [*values, f"{column} missing"]
    return names


def encode(table: pd.DataFrame, encoding: Encoding, what: str) -> np.ndarray:
    """The table's metadata as a (rows, features) float32 array."""
    require_metadata(table, [e["column"] for e in encoding], what)
    parts = []
    for entry in encoding:
        values = table[entry["column"]]
        missing = values.isna().to_numpy()
        if entry["kind"] == "numeric":
            numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
            unreadable = ~missing & np.isnan(numbers)
            if unreadable.any():
                raise SkinclfError(
                    f"{what}: column {entry['column']!r} holds values that are not numbers, e.g. "
                    f"{examples(values[unreadable].astype(str).tolist(), 3)}; the model was trained on numbers there"
                )
            parts.append(np.where(missing, 0.0, (numbers - entry["mean"]) / entry["std"])[:, None])
        else:
            text = values.astype(str).to_numpy()
            one_hot = [(text == v) & ~missing for v in entry["values"]]
            parts.append(np.stack(one_hot, axis=1).astype(float) if one_hot else np.zeros((len(table), 0)))
        parts.append(missing[:, None].astype(float))
    return np.concatenate(parts, axis=1).astype(np.float32)
