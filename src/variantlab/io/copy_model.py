"""MLflow models-from-code definition of the ``copy`` baseline: the answer is the input text, unchanged."""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class CopyModel(PythonModel):
    """``predict(DataFrame[text]) -> the texts``: what a generative variant must beat to have learned anything."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        return np.asarray([str(t) for t in model_input["text"]], dtype=object)


mlflow.models.set_model(CopyModel())
