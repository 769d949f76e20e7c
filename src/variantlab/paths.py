"""The file contract between stages: every path a stage reads or writes, relative to the project root."""

from __future__ import annotations

from pathlib import Path

RAW = Path("data/raw/sentences.parquet")
PREPARED_DIR = Path("data/prepared")
SPLITS = ("train", "val", "test", "extra")
TASK = PREPARED_DIR / "task.json"  # the resolved task (label set frozen), written by prepare, read by every later stage
METRICS_DIR = Path("metrics")
REPORTS_DIR = Path("reports")
MODELS_DIR = Path("models")
VALIDATION_REPORT = REPORTS_DIR / "validation.json"
LEADERBOARD_MD = REPORTS_DIR / "leaderboard.md"
LEADERBOARD_CSV = REPORTS_DIR / "leaderboard.csv"
PROMOTION_REPORT = REPORTS_DIR / "promotion.json"
DOMAIN_COUNTS = REPORTS_DIR / "ingest" / "domains.csv"
CLASS_BALANCE = REPORTS_DIR / "prepare" / "class_balance.csv"


def split_path(split: str) -> Path:
    return PREPARED_DIR / f"{split}.parquet"


def stage_metrics(stage: str) -> Path:
    return METRICS_DIR / f"{stage}.json"


def train_metrics(variant: str) -> Path:
    return METRICS_DIR / "train" / f"{variant}.json"


def eval_metrics(variant: str) -> Path:
    return METRICS_DIR / "eval" / f"{variant}.json"


def model_dir(variant: str) -> Path:
    return MODELS_DIR / variant


def predictions_path(variant: str) -> Path:
    return REPORTS_DIR / "predictions" / f"{variant}.parquet"


def confusion_csv(variant: str) -> Path:
    return REPORTS_DIR / "confusion" / f"{variant}.csv"


def confusion_png(variant: str) -> Path:
    return REPORTS_DIR / "confusion" / f"{variant}.png"


def reliability_csv(variant: str) -> Path:
    return REPORTS_DIR / "calibration" / f"{variant}.csv"


def reliability_png(variant: str) -> Path:
    return REPORTS_DIR / "calibration" / f"{variant}.png"


FEEDBACK_DIR = Path("data/feedback")
FEEDBACK_FILE = FEEDBACK_DIR / "accepted.parquet"  # accepted new data, appended by the feedback flow (DVC-tracked)
FEEDBACK_EXPORTS = FEEDBACK_DIR / "exports"  # feedback rows the service logged, one CSV per export:
FEEDBACK_EXPORT_STAMP = "%Y%m%dT%H%M%SZ"  # feedback-<UTC stamp>.csv, the stamp also the rows' export_batch
FEEDBACK_ID_PREFIX = "feedback:"  # ids of accepted rows; prepare puts them in the training split only
DRIFT_REPORT = REPORTS_DIR / "drift.json"
LIVE_DRIFT_REPORT = REPORTS_DIR / "live_drift.json"  # served inputs against the training split
PARETO_PNG = REPORTS_DIR / "pareto.png"
PROMOTION_DRY_RUN = REPORTS_DIR / "promotion.dry-run.json"
ONLINE_PROMOTION = REPORTS_DIR / "online_promotion.json"  # `variantlab promote --online`: the live gate's record
