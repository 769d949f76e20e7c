"""Parsing of the VADER ground-truth files and the raw-sentence schema every source is brought to."""

from __future__ import annotations

import math

import pandas as pd

from variantlab.errors import DataError

RAW_COLUMNS = ("id", "text", "rating", "label", "domain")

# The four files of hutto_ICWSM_2014, their domain names and encodings. The movie file is UTF-8, and so is
# tweets (4 bytes of a UTF-8 pound sign); the other two are pure ASCII. Decoding is strict either way.
VADER_FILES = {
    "tweets_GroundTruth.txt": ("tweets", "utf-8"),
    "movieReviewSnippets_GroundTruth.txt": ("movie_reviews", "utf-8"),
    "amazonReviewSnippets_GroundTruth.txt": ("amazon_reviews", "ascii"),
    "nytEditorialSnippets_GroundTruth.txt": ("nyt_editorials", "ascii"),
}


def parse_ground_truth(content: bytes, *, file: str) -> pd.DataFrame:
    """Parse one ``id<TAB>mean_rating<TAB>text`` file (CRLF line ends) into the raw schema."""
    domain, encoding = VADER_FILES[file.rsplit("/", 1)[-1]]
    try:
        text = content.decode(encoding)
    except UnicodeDecodeError as exc:
        bad_line = content[: exc.start].count(b"\n") + 1
        raise DataError(f"not valid {encoding} at byte {exc.start}", file=file, rows=[bad_line]) from None
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        if len(parts) != 3:
            raise DataError("expected id<TAB>rating<TAB>text", file=file, rows=[lineno])
        ident, rating, sentence = parts
        try:
            value = float(rating)
        except ValueError:
            raise DataError(f"rating {rating!r} is not a number", file=file, column="rating", rows=[lineno]) from None
        records.append((f"{domain}-{ident.strip()}", sentence.strip(), value, None, domain))
    return pd.DataFrame.from_records(records, columns=list(RAW_COLUMNS)).astype(
        {"id": "string", "text": "string", "rating": "float64", "label": "string", "domain": "string"}
    )


def _bad_rows(mask: pd.Series) -> list[int]:
    # Row numbers as a user sees them in a spreadsheet: the header is line 1.
    return [int(i) + 2 for i in mask[mask].index]  # all of them: the error shows five and counts the rest


USER_COLUMNS = ("id", "text", "label", "rating", "domain")


def conform_user_frame(frame: pd.DataFrame, *, file: str, labels: tuple[str, ...]) -> pd.DataFrame:
    """Bring a user file with ``text`` and ``label`` or ``rating`` (optional ``id``, ``domain``) to the raw schema."""
    if len(frame.columns) == 0:
        raise DataError("file is empty", file=file)
    if "text" not in frame.columns:
        raise DataError(
            f"missing required column (found: {', '.join(map(str, frame.columns))})", file=file, column="text"
        )
    if "label" not in frame.columns and "rating" not in frame.columns:
        raise DataError("needs a 'label' or a 'rating' column", file=file, column="label")
    extra = [str(c) for c in frame.columns if c not in USER_COLUMNS]
    if extra:
        raise DataError(
            f"unexpected column{'s' if len(extra) > 1 else ''} {extra} (allowed: {', '.join(USER_COLUMNS)}); "
            "drop or rename it",
            file=file,
            column=extra[0],
        )
    if frame.empty:
        raise DataError("has a header but no data rows", file=file)
    frame = frame.reset_index(drop=True)
    out = pd.DataFrame(index=frame.index)
    out["id"] = (
        frame["id"].astype("string")
        if "id" in frame
        else pd.Series([f"user-{i}" for i in range(len(frame))], dtype="string")
    )
    out["text"] = frame["text"].astype("string")
    out["rating"] = _numeric_column(frame, "rating", file) if "rating" in frame else math.nan
    out["label"] = _label_column(frame, labels, file) if "label" in frame else pd.NA
    out["domain"] = frame["domain"].astype("string") if "domain" in frame else "user"
    return out.astype({"rating": "float64", "label": "string", "domain": "string"})


def _numeric_column(frame: pd.DataFrame, column: str, file: str) -> pd.Series:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & frame[column].notna()
    if bad.any():
        raise DataError("values are not numbers", file=file, column=column, rows=_bad_rows(bad))
    return values


def _label_column(frame: pd.DataFrame, labels: tuple[str, ...], file: str) -> pd.Series:
    values = frame["label"].astype("string").str.strip().str.lower()
    bad = values.notna() & ~values.isin(labels)
    if bad.any():
        found = sorted(set(values[bad].dropna()))[:5]
        raise DataError(
            f"unknown labels {found} (allowed: {', '.join(labels)})", file=file, column="label", rows=_bad_rows(bad)
        )
    return values
