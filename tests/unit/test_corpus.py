import math
from pathlib import Path

import pandas as pd
import pytest

from variantlab.core.corpus import UserColumns, conform_user_frame, parse_ground_truth
from variantlab.errors import DataError

SENTIMENT = UserColumns("label", "rating", ("negative", "neutral", "positive"))


def test_parse_ground_truth_crlf_and_ids() -> None:
    content = "1\t2.5\tGreat day!\r\n2\t-1.25\tNot good &amp; sad\r\n3\t0\tcaf\u00e9 au lait".encode()
    frame = parse_ground_truth(content, file="x/movieReviewSnippets_GroundTruth.txt")
    assert list(frame["id"]) == ["movie_reviews-1", "movie_reviews-2", "movie_reviews-3"]
    assert list(frame["value"]) == [2.5, -1.25, 0.0]
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
        pd.DataFrame({"text": ["a", "b"], "label": ["Positive", "neutral"]}), file="f.csv", columns=SENTIMENT
    )
    assert list(out.columns) == ["id", "text", "value", "label", "domain"]
    assert list(out["label"]) == ["positive", "neutral"]  # spelled as declared
    assert list(out["domain"]) == ["all", "all"]  # no domain column: one slice
    assert list(out["id"]) == ["row-2", "row-3"]  # the line in the file
    assert math.isnan(out["value"].iloc[0])


def test_conform_user_frame_keeps_any_label_when_the_task_says_auto() -> None:
    topics = UserColumns("topic", None, None)
    frame = pd.DataFrame({"text": ["a", "b", "c"], "topic": ["Law ", "food", "Law"]})
    out = conform_user_frame(frame, file="f.csv", columns=topics)
    assert list(out["label"]) == ["Law", "food", "Law"]  # stripped, case kept: the user's own labels


def test_conform_user_frame_reads_a_regression_target() -> None:
    price = UserColumns(None, "price", None)
    out = conform_user_frame(pd.DataFrame({"text": ["a", "b"], "price": ["3.5", 10]}), file="f.csv", columns=price)
    assert list(out["value"]) == [3.5, 10.0] and out["label"].isna().all()
    with pytest.raises(DataError, match=r"column 'price': row 3: values are not numbers"):
        conform_user_frame(pd.DataFrame({"text": ["a", "b"], "price": [1, "cheap"]}), file="f.csv", columns=price)
    with pytest.raises(DataError, match=r"unexpected column \['label'\]"):
        conform_user_frame(pd.DataFrame({"text": ["a"], "price": [1], "label": ["x"]}), file="f.csv", columns=price)


@pytest.mark.parametrize(
    ("frame", "pattern"),
    [
        (pd.DataFrame({"txt": ["a"], "label": ["positive"]}), r"f.csv: column 'text': missing required column"),
        (pd.DataFrame({"text": ["a"]}), r"needs the task's column 'label' or 'rating'"),
        (pd.DataFrame(columns=["text", "label"]), r"header but no data rows"),
        (
            pd.DataFrame({"text": ["a", "b", "c"], "label": ["positive", "meh", "good"]}),
            r"column 'label': rows 3, 4: unknown labels \['good', 'meh'\] \(allowed: negative, neutral, positive; "
            r"list them in task.labels or set task.labels: auto\)",
        ),
        (
            pd.DataFrame({"text": ["a", "b"], "rating": ["1.5", "lots"]}),
            r"column 'rating': row 3: values are not numbers",
        ),
    ],
)
def test_conform_user_frame_errors_name_file_column_row(frame: pd.DataFrame, pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        conform_user_frame(frame, file="f.csv", columns=SENTIMENT)


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
