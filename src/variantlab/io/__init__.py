"""The outside world: data sources, model zoo, MLflow tracking and registry, GX validation, atomic files."""
