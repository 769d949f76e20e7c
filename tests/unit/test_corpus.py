import math
from pathlib import Path

import pandas as pd
import pytest

from variantlab.config import LABELS
from variantlab.core.corpus import conform_user_frame, parse_ground_truth
from variantlab.errors import DataError


def test_parse_ground_truth_crlf_and_ids() -> None:
    content = "1\t2.5\tGreat day!\r\n2\t-1.25\tNot good &amp; sad\r\n3\t0\tcaf\u00e9 au lait".encode()
    frame = parse_ground_truth(content, file="x/movieReviewSnippets_GroundTruth.txt")
    assert list(frame["id"]) == ["movie_reviews-1", "movie_reviews-2", "movie_reviews-3"]
    assert list(frame["rating"]) == [2.5, -1.25, 0.0]
    assert frame["text"].iloc[2] == "caf\u00e9 au lait"
    assert set(frame["domain"]) == {"movie_reviews"}
    assert frame["label"].isna().all()


def test_parse_ground_truth_names_the_bad_line() -> None:
    with pytest.raises(DataError, match=r"row 2: rating 'high' is not a number"):
        parse_ground_truth(b"1\t1.0\tok\r\n2\thigh\tbad\r\n", file="tweets_GroundTruth.txt")


def test_parse_ground_truth_rejects_bad_encoding() -> None:
    with pytest.raises(DataError, match="row 2: not valid ascii"):
        parse_ground_truth(b"1\t1.0\tok\r\n2\t1.0\tcaf\xe9\r\n", file="nytEditorialSnippets_GroundTruth.txt")


def test_conform_user_frame_defaults() -> None:
    out = conform_user_frame(
        pd.DataFrame({"text": ["a", "b"], "label": ["Positive", "neutral"]}), file="f.csv", labels=LABELS
    )
    assert list(out.columns) == ["id", "text", "rating", "label", "domain"]
    assert list(out["label"]) == ["positive", "neutral"]
    assert list(out["domain"]) == ["user", "user"]
    assert math.isnan(out["rating"].iloc[0])


@pytest.mark.parametrize(
    ("frame", "pattern"),
    [
        (pd.DataFrame({"txt": ["a"], "label": ["positive"]}), r"f.csv: column 'text': missing required column"),
        (pd.DataFrame({"text": ["a"]}), r"needs a 'label' or a 'rating' column"),
        (pd.DataFrame(columns=["text", "label"]), r"header but no data rows"),
        (
            pd.DataFrame({"text": ["a", "b", "c"], "label": ["positive", "meh", "good"]}),
            r"column 'label': rows 3, 4: unknown labels \['good', 'meh'\]",
        ),
        (
            pd.DataFrame({"text": ["a", "b"], "rating": ["1.5", "lots"]}),
            r"column 'rating': row 3: values are not numbers",
        ),
    ],
)
def test_conform_user_frame_errors_name_file_column_row(frame: pd.DataFrame, pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        conform_user_frame(frame, file="f.csv", labels=LABELS)


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        # an unquoted comma: pandas would silently turn the first field into the index and shift every column
        ("in.csv", 'text,label\ngood day,positive\nwhat a film, really,positive\n',
         r"in\.csv: line 3 has 3 fields but the header has 2: quote texts that contain a comma"),
        ("in.tsv", "text\tlabel\na\tb\tc\nok\tpositive\n", r"line 2 has 3 fields but the header has 2: .* a tab"),
    ],
)  # fmt: skip
def test_read_table_refuses_rows_with_more_fields_than_the_header(
    tmp_path: Path, name: str, content: str, pattern: str
) -> None:
    from variantlab.errors import DataError
    from variantlab.io.sources import read_table

    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=pattern):
        read_table(path)
    quoted = tmp_path / "quoted.csv"
    quoted.write_text('text,label\n"what a film, really",positive\n', encoding="utf-8")
    assert read_table(quoted)["text"].tolist() == ["what a film, really"]
