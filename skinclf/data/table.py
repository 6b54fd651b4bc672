"""Reading the tables public dermoscopy datasets ship: image ids, labels or diagnoses, groups, splits, metadata.

HAM10000, ISIC 2017-2020 and ISIC Archive exports are a flat image folder plus a CSV (and ISIC 2019
a second CSV of metadata). :func:`read_table_sources` turns one or several of them into one table
of records: ``path`` (relative to the common root of the image folders), ``label`` (1 = malignant),
``diagnosis``, ``group`` and ``split`` (empty where the table has none), ``source``, and every other
column of the tables (age, sex, site...) under its own name.

Rows that cannot be used (no image file, a missing or unknown label, UNK or an all-zero one-hot
row) are counted by reason: the run stops naming the first ones, or leaves them out with
``data.skip_unlabelled=true``. Malformed tables (a missing column, several ones in a one-hot row,
the same image with two labels, an empty group cell, an unknown split value) stop it with a message
that names the line and what to do.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import io
import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from skinclf.config.schema import SplitSettings
from skinclf.core.errors import SkinclfError, examples
from skinclf.data.folder import list_images, scan_image_folder
from skinclf.data.images import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

#: Columns of a record that skinclf fills in; a table's own columns of these names are not kept.
RECORD_COLUMNS = ("path", "label", "diagnosis", "group", "split", "source", "sha1")

#: Values of a split column, and the split each names (any letter case).
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}

#: Why a row cannot be used, in the order they are checked.
NO_IMAGE, MISSING_LABEL, UNKNOWN_LABEL, NO_DIAGNOSIS = (
    "no image file",
    "a missing label",
    "a label that is neither in data.malignant nor in data.benign",
    "UNK or an all-zero one-hot row",
)

#: Settings a data.sources entry may give for its own table (or, with folder, its class folders; with preset, the
#: settings of conf/data/<preset>.yaml under its own).
SOURCE_KEYS = (
    "table",
    "images",
    "folder",
    "preset",
    "name",
    "image_column",
    "label_column",
    "diagnosis_columns",
    "malignant",
    "benign",
    "metadata_table",
    "metadata_table_image_column",
    "group_column",
    "split_column",
)


@dataclasses.dataclass(frozen=True)
class Source:
    """One table and the folders its images lie in, with how to read it; or (table None) a folder of class folders."""

    name: str
    table: Path | None
    images: list[Path]
    settings: SplitSettings


def preset_settings(name: str) -> dict[str, Any]:
    """The source settings a dataset preset (conf/data/<name>.yaml) gives."""
    path = importlib.resources.files("skinclf.conf") / "data" / f"{name}.yaml"
    if not path.is_file():
        presets = sorted(p.name.removesuffix(".yaml") for p in path.parent.iterdir() if p.name.endswith(".yaml"))
        raise SkinclfError(f"data.sources: no preset named {name}: choose one of {examples(presets)}")
    given = OmegaConf.to_container(OmegaConf.load(path))
    return {key: value for key, value in given.items() if key in SOURCE_KEYS and key not in ("table", "images", "name")}


def image_folders(images: Any) -> list[Path]:
    """data.images: one folder or a list of them."""
    folders = [images] if isinstance(images, str) else list(images or [])
    return [Path(folder).expanduser() for folder in folders]


def table_sources(settings: SplitSettings) -> list[Source]:
    """The tables to read: data.table with data.images, or every entry of data.sources."""
    if settings.sources and settings.table:
        raise SkinclfError("pass either data.table (with data.images) or data.sources, not both")
    entries = settings.sources or [{"table": settings.table, "images": settings.images}]
    sources = []
    for number, entry in enumerate(entries):
        unknown = sorted(set(entry) - set(SOURCE_KEYS))
        if unknown:
            raise SkinclfError(
                f"data.sources[{number}] has unknown key(s) {examples(unknown)}: "
                f"a source takes {', '.join(SOURCE_KEYS)}"
            )
        if entry.get("folder"):
            folder = Path(entry["folder"]).expanduser()
            sources.append(Source(str(entry.get("name") or folder.name), None, [folder], settings))
            continue
        if not entry.get("table") or not entry.get("images"):
            raise SkinclfError(
                f"data.sources[{number}] needs a table and images (a folder or a list of folders), or a folder of "
                "class folders (folder: <root holding train/ and test/>)"
            )
        given = {k: v for k, v in entry.items() if k not in ("table", "images", "name", "preset")}
        overrides = {**(preset_settings(entry["preset"]) if entry.get("preset") else {}), **given}
        table = Path(entry["table"]).expanduser()
        sources.append(
            Source(
                name=str(entry.get("name") or entry.get("preset") or table.name),
                table=table,
                images=image_folders(entry["images"]),
                settings=dataclasses.replace(settings, **overrides),
            )
        )
    return sources


def table_root(settings: SplitSettings) -> Path:
    """The folder the records' paths are relative to: the common parent of every image folder."""
    folders = [folder.absolute() for source in table_sources(settings) for folder in source.images]
    for folder in folders:
        if not folder.is_dir():
            raise SkinclfError(f"image folder {folder} does not exist: set data.images to the folder of the images")
    return Path(os.path.commonpath(folders)) if len(folders) > 1 else folders[0]


#: The encoding a table that is not UTF-8 is read in: what Excel writes in Western European locales.
FALLBACK_ENCODING = "cp1252"


def csv_separator(header: str) -> str:
    """The separator of a CSV from its header line: ',' unless the line holds more ';' (Excel in locales whose
    decimal mark is a comma) or tabs."""
    counts = {separator: header.count(separator) for separator in (",", ";", "\t")}
    return max(counts, key=lambda separator: (counts[separator], separator == ","))


def read_csv(path: Path, what: str) -> pd.DataFrame:
    """A CSV as text, every cell a string ("" when empty): a BOM, CRLF line ends, ';' or tab separators, and
    cp1252 text (with a warning) are read as they are."""
    if not path.is_file():
        raise SkinclfError(f"{what} {path} does not exist: name the CSV file")
    try:
        content = path.read_bytes()
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            text = content.decode(FALLBACK_ENCODING)
            log.warning(
                "%s is not UTF-8 (%s): read it as %s (Windows' Western European text); save it as UTF-8 if "
                "names come out wrong",
                path,
                error.reason,
                FALLBACK_ENCODING,
            )
        separator = csv_separator(text.split("\n", 1)[0])
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, sep=separator)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise SkinclfError(f"cannot read the {what} {path} as a CSV file: {error}") from error


def require_columns(table: pd.DataFrame, columns: list[str], what: object, remedy: str) -> None:
    """Refuse a table that lacks any of the columns, naming them, the columns it has and what to do."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise SkinclfError(
            f"{what} has no column {examples(missing)}; its columns are {examples(list(table.columns), 30)}. {remedy}"
        )


def set_columns(keys: str) -> str:
    """What to do about a table's missing column: name it in the settings."""
    return f"Set {keys} to its column names (or choose the preset of this dataset, e.g. data=ham10000)"


def canonical(value: object) -> str:
    """A cell or setting as text to compare: trimmed, and whole numbers written alike ("1.0" is "1")."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def line_numbers(rows: pd.Index) -> str:
    """Row labels of a table read from CSV as the line numbers a user sees in an editor (the header is line 1)."""
    return examples([f"line {i + 2}" for i in rows], 5)


def join_metadata(table: pd.DataFrame, source: Source) -> pd.DataFrame:
    """The table with the columns of data.metadata_table joined on the image id (ISIC 2019 ships them apart)."""
    settings = source.settings
    path = Path(settings.metadata_table).expanduser()
    metadata = read_csv(path, "metadata table")
    key = settings.metadata_table_image_column or settings.image_column
    require_columns(metadata, [key], path, set_columns("data.metadata_table_image_column"))
    repeated = metadata[key][metadata[key].duplicated()]
    if not repeated.empty:
        raise SkinclfError(f"{path} lists the image {repeated.iloc[0]} more than once: keep one row per image")
    found = table[settings.image_column].isin(metadata[key])
    if not found.any():
        raise SkinclfError(
            f"no image of {source.table} is in the metadata table {path}: its column '{key}' must hold the ids of "
            f"the column '{settings.image_column}' (set data.metadata_table_image_column)"
        )
    if not found.all():
        log.warning("%d image(s) of %s have no row in %s", int((~found).sum()), source.table, path)
    extra = metadata.drop(columns=[c for c in metadata.columns if c in table.columns and c != key])
    joined = table.merge(extra, how="left", left_on=settings.image_column, right_on=key, suffixes=("", "_meta"))
    return joined.drop(columns=[key] if key != settings.image_column else []).fillna("")


def image_index(folders: list[Path]) -> dict[str, list[Path]]:
    """Every image below the folders, by file name without extension."""
    index: dict[str, list[Path]] = {}
    for folder in folders:
        if not folder.is_dir():
            raise SkinclfError(f"image folder {folder} does not exist: set data.images to the folder of the images")
        for path in list_images(folder):
            index.setdefault(path.stem, []).append(path)
    return index


def image_paths(ids: pd.Series, folders: list[Path]) -> list[Path | None]:
    """The file of each image id: a file name with or without its extension, or a path within the folders.

    None where there is none.
    """
    index = image_index(folders)
    paths: list[Path | None] = []
    for line, image_id in zip(ids.index + 2, ids, strict=True):
        if "/" in image_id or "\\" in image_id:  # a path relative to an image folder, which must stay inside it
            inside = [(f / image_id).resolve() for f in folders if (f / image_id).resolve().is_relative_to(f.resolve())]
            if not inside:
                raise SkinclfError(
                    f"line {line}: the image {image_id} lies outside the image folders ({examples(folders)}): a "
                    "table names images within data.images; correct or remove the row"
                )
            paths.append(next((path for path in inside if path.is_file()), None))
            continue
        stem = Path(image_id).stem if Path(image_id).suffix.lower() in IMAGE_EXTENSIONS else image_id
        found = index.get(stem, [])
        if len(found) > 1:
            raise SkinclfError(
                f"the image id {image_id} matches several files ({examples(found)}): keep one of them, or set "
                "data.images to the one folder that holds the images of this table"
            )
        paths.append(found[0] if found else None)
    return paths


def diagnoses_from_onehot(table: pd.DataFrame, source: Source) -> tuple[pd.Series, pd.Series]:
    """(diagnosis, why unusable) from one-hot diagnosis columns, as ISIC 2018 and 2019 ship them."""
    columns = list(source.settings.diagnosis_columns)
    require_columns(table, columns, source.table, set_columns("data.diagnosis_columns"))
    values = table[columns].apply(pd.to_numeric, errors="coerce")
    bad = values.isna().any(axis=1)
    if bad.any():
        raise SkinclfError(
            f"{source.table}: the one-hot columns must hold numbers, but {line_numbers(table.index[bad])} do not"
        )
    ones = (values > 0.5).sum(axis=1)
    if (ones > 1).any():
        raise SkinclfError(
            f"{source.table}: {line_numbers(table.index[ones > 1])} mark several diagnoses at once in "
            f"{', '.join(columns)}: each image needs exactly one (fix the rows, or remove them)"
        )
    diagnosis = values.idxmax(axis=1).where(ones == 1, "")
    known = set(source.settings.malignant) | set(source.settings.benign)
    reason = pd.Series("", index=table.index)
    reason[(ones == 0) | (~diagnosis.isin(known))] = NO_DIAGNOSIS
    return diagnosis, reason


def labels_of(table: pd.DataFrame, source: Source) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(label, diagnosis, why unusable) of each row."""
    settings = source.settings
    if settings.diagnosis_columns:
        diagnosis, reason = diagnoses_from_onehot(table, source)
    else:
        require_columns(table, [settings.label_column], source.table, set_columns("data.label_column"))
        diagnosis = table[settings.label_column].map(canonical)
        known = {canonical(v) for v in [*settings.malignant, *settings.benign]}
        reason = pd.Series("", index=table.index)
        reason[~diagnosis.isin(known)] = UNKNOWN_LABEL
        reason[diagnosis == ""] = MISSING_LABEL
    malignant = {canonical(v) for v in settings.malignant}
    return diagnosis.map(canonical).isin(malignant).astype(int), diagnosis, reason


def groups_of(table: pd.DataFrame, source: Source) -> pd.Series:
    """The group (patient or lesion) of each row, "" where the table has no group column."""
    settings = source.settings
    if not settings.group_column:
        return pd.Series("", index=table.index)
    require_columns(table, [settings.group_column], source.table, set_columns("data.group_column"))
    groups = table[settings.group_column].str.strip()
    empty = groups == ""
    if empty.any() and settings.missing_groups != "own":
        raise SkinclfError(
            f"{source.table}: {line_numbers(table.index[empty])} have no {settings.group_column}. Fill them, or pass "
            "data.missing_groups=own to keep each such image in a group of its own"
        )
    return (f"{source.name}:" + groups).where(~empty, "")


def splits_of(table: pd.DataFrame, source: Source) -> pd.Series:
    """The official split of each row (train, val or test), "" where the table has no split column."""
    column = source.settings.split_column
    if not column:
        return pd.Series("", index=table.index)
    require_columns(table, [column], source.table, set_columns("data.split_column"))
    named = table[column].str.lower().str.extract(r"^\s*([a-z]+)", expand=False).map(SPLIT_NAMES)  # Test_v2: test
    unknown = named.isna()
    if unknown.any():
        values = examples(sorted(set(table.loc[unknown, column])))
        raise SkinclfError(
            f"{source.table}: the split column '{column}' holds {values} ({line_numbers(table.index[unknown])}): "
            "each row needs train, val or test (or a word that begins so: training, validation, Test_v2...)"
        )
    return named


def read_source(source: Source, root: Path) -> pd.DataFrame:
    """The records of one table, with a column 'unusable' saying why a row cannot be used ("" if it can)."""
    settings = source.settings
    table = read_csv(source.table, "table")
    require_columns(table, [settings.image_column], source.table, set_columns("data.image_column"))
    if table.empty:
        raise SkinclfError(f"the table {source.table} has a header but no rows: name a table that lists images")
    if settings.metadata_table:
        table = join_metadata(table, source)
    label, diagnosis, unusable = labels_of(table, source)
    paths = image_paths(table[settings.image_column].str.strip(), source.images)
    found = pd.Series([p is not None for p in paths], index=table.index)
    unusable = unusable.where(found, NO_IMAGE)
    records = table.drop(columns=[c for c in RECORD_COLUMNS if c in table.columns])
    return records.assign(
        path=[p.absolute().relative_to(root).as_posix() if p is not None else "" for p in paths],
        label=label,
        diagnosis=diagnosis,
        group=groups_of(table, source),
        split=splits_of(table, source),
        source=source.name,
        unusable=unusable,
        line=table.index + 2,
    )


def leave_out_unusable(records: pd.DataFrame, skip: bool) -> pd.DataFrame:
    """Refuse rows that cannot be used, naming the first of each reason, or leave them out (data.skip_unlabelled)."""
    unusable = records[records["unusable"] != ""]
    if unusable.empty:
        return records
    counts = []
    for reason, rows in unusable.groupby("unusable", sort=False):
        named = examples([f"{s} line {n}" for s, n in zip(rows["source"], rows["line"], strict=True)], 3)
        counts.append(f"{len(rows)} with {reason} ({named})")
    summary = "; ".join(counts)
    if not skip:
        raise SkinclfError(
            f"{len(unusable)} row(s) of the table(s) cannot be used: {summary}. Fix them, or pass "
            "data.skip_unlabelled=true to leave them out"
        )
    log.warning("left out %d row(s) that cannot be used: %s", len(unusable), summary)
    usable = records[records["unusable"] == ""]
    if usable.empty:
        raise SkinclfError(f"no row of the table(s) can be used: {summary}")
    return usable


def refuse_conflicting_duplicates(records: pd.DataFrame) -> pd.DataFrame:
    """The same image listed twice: refused when the rows disagree on the label, else listed once."""
    repeated = records[records["path"].duplicated(keep=False)]
    conflicting = repeated.groupby("path")["diagnosis"].nunique()
    conflicting = conflicting[conflicting > 1]
    if not conflicting.empty:
        path = conflicting.index[0]
        rows = repeated[repeated["path"] == path]
        listed = examples([f"{s} line {n}: {d}" for s, n, d in rows[["source", "line", "diagnosis"]].to_numpy()])
        raise SkinclfError(f"the image {path} is listed with different labels ({listed}): keep the right one")
    if not repeated.empty:
        log.warning(
            "%d image(s) are listed more than once with the same label: each is used once", repeated["path"].nunique()
        )
    return records.drop_duplicates("path")


def read_folder_source(source: Source, root: Path) -> pd.DataFrame:
    """The records of a folder of class folders (train/, and val/ and test/ where present), as a table's are."""
    folder = source.images[0]
    scanned = pd.concat([table.assign(split=name) for name, table in scan_image_folder(folder).items()])
    return scanned.assign(
        path=[(folder / p).absolute().relative_to(root).as_posix() for p in scanned["path"]],
        diagnosis="",
        group="",
        source=source.name,
        unusable="",
        line=0,
    ).reset_index(drop=True)


def read_table_sources(settings: SplitSettings) -> tuple[Path, pd.DataFrame]:
    """(root, records) of every table (and folder) of data.table or data.sources; see the module's docstring."""
    root = table_root(settings)
    read = [
        read_source(s, root) if s.table is not None else read_folder_source(s, root) for s in table_sources(settings)
    ]
    records = pd.concat(read, ignore_index=True)
    records = leave_out_unusable(records, settings.skip_unlabelled)
    records = refuse_conflicting_duplicates(records)
    return root, records.drop(columns=["unusable", "line"]).reset_index(drop=True)
