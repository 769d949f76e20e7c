"""Pure logic: no MLflow, Prefect, DVC or filesystem access. Functions of data frames and arrays."""
