"""``variantlab predict``: batch predictions from any MLflow model URI for a CSV or Parquet file.

The output holds the input's columns plus ``predicted`` (the model's own labels, numbers for a regression task,
or the written answers of a generation task; and ``p_<label>`` per label with ``--proba``); it is written to a
temporary sibling and renamed, so an interrupted run leaves no partial file.
"""

from __future__ import annotations

from pathlib import Path

from variantlab.errors import DataError

OUTPUT_FORMATS = (".csv", ".parquet")


def predict_file(
    model_uri: str,
    source: Path,
    output: Path,
    *,
    text_column: str = "text",
    batch_size: int = 256,
    proba: bool = False,
) -> int:
    import numpy as np
    import pandas as pd
    from tqdm.auto import tqdm

    from variantlab.io.files import write_csv, write_parquet
    from variantlab.io.models import load_pyfunc
    from variantlab.io.sources import read_table

    if output.suffix.lower() not in OUTPUT_FORMATS:
        raise DataError(f"output must end in {' or '.join(OUTPUT_FORMATS)}", file=str(output))
    if output.resolve() == source.resolve():
        raise DataError("output would overwrite the input; choose another path", file=str(output))
    if batch_size < 1:
        raise DataError(f"--batch-size must be at least 1, got {batch_size}")
    frame = read_table(source)
    if text_column not in frame.columns:
        raise DataError(
            f"no such column (columns: {', '.join(map(str, frame.columns))}; choose one with --text-column)",
            file=str(source),
            column=text_column,
        )
    texts = frame[text_column]
    bad = texts.isna() | (texts.astype(str).str.strip() == "")
    if bad.any():
        first_line = 2 if source.suffix.lower() in {".csv", ".tsv"} else 1  # a CSV's header is line 1
        rows = [int(i) + first_line for i in np.flatnonzero(bad.to_numpy())[:20]]  # positions, not labels
        raise DataError(f"{int(bad.sum())} empty or missing texts", file=str(source), column=text_column, rows=rows)
    model = load_pyfunc(model_uri)
    labels: list[str] = []
    probabilities: list[pd.DataFrame] = []
    params = {"output": "proba"} if proba else None
    with tqdm(total=len(frame), desc="predict", unit="sentence", disable=None) as bar:
        for start in range(0, len(frame), batch_size):
            chunk = pd.DataFrame({"text": texts.iloc[start : start + batch_size].astype(str).to_numpy()})
            out = model.predict(chunk, params=params)
            if proba and not isinstance(out, pd.DataFrame):
                raise DataError(f"--proba needs a classifier; {model_uri} answers numbers (a regression task)")
            if proba:
                probabilities.append(out)
                labels.extend(out.columns.to_numpy()[out.to_numpy().argmax(axis=1)].astype(str))
            else:
                labels.extend(str(p) for p in out)
            bar.update(len(chunk))
    result = frame.assign(predicted=labels)
    if proba:
        joined = pd.concat(probabilities, ignore_index=True)
        result = result.assign(**{f"p_{c}": joined[c].to_numpy() for c in joined.columns})
    (write_parquet if output.suffix.lower() == ".parquet" else write_csv)(output, result)
    return len(result)
