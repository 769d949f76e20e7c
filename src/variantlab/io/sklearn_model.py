"""MLflow models-from-code definition of a scikit-learn variant stored in the skops format.

MLflow 3.17's own sklearn flavor refuses skops files when MLFLOW_ALLOW_PICKLE_DESERIALIZATION is false,
because it reads the trusted-types list from the model itself. Here that list lives in code: a model file
that needs any other type is refused instead of loaded.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

# Types skops does not trust by default but a variant's pipeline holds: the ``nearest`` baseline keeps its
# training texts' TF-IDF rows as a sparse matrix (data only: skops rebuilds it from its arrays).
TRUSTED_TYPES: list[str] = ["scipy.sparse._csr.csr_matrix"]


class SkopsClassifier(PythonModel):
    """``predict(DataFrame[text]) -> labels``; ``params={"output": "proba"}`` returns class probabilities.
    A regression pipeline (ridge) returns numbers."""

    def load_context(self, context: PythonModelContext) -> None:
        import skops.io

        path = context.artifacts["skops"]
        untrusted = [t for t in skops.io.get_untrusted_types(file=path) if t not in TRUSTED_TYPES]
        if untrusted:
            raise mlflow.exceptions.MlflowException(f"{path} holds types outside the allow-list: {untrusted}")
        self.pipeline = skops.io.load(path, trusted=TRUSTED_TYPES)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        frame = pd.DataFrame({"text": [str(t) for t in model_input["text"]]})
        if not hasattr(self.pipeline, "predict_proba"):
            return np.asarray(self.pipeline.predict(frame), dtype=np.float64)
        if (params or {}).get("output") == "proba":
            return pd.DataFrame(self.pipeline.predict_proba(frame), columns=[str(c) for c in self.pipeline.classes_])
        return np.asarray(self.pipeline.predict(frame), dtype=object)


mlflow.models.set_model(SkopsClassifier())
