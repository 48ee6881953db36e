"""Runs: the run directory, checkpoints, metric loggers and rollout samples.

Importing this package does not import torch; the heavy work happens in the functions.
"""

from nip_core.runs.checkpoints import (
    capture_rng_state,
    latest_checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    load_latest_checkpoint,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
)
from nip_core.runs.context import IterationCallback, RunContext
from nip_core.runs.loggers import (
    CsvLogger,
    JsonlLogger,
    LoggerGroup,
    MetricLogger,
    TensorboardLogger,
    WandbLogger,
    build_loggers,
)
from nip_core.runs.run_dir import RunDirectory, new_run_id

__all__ = [
    "RunDirectory",
    "RunContext",
    "IterationCallback",
    "new_run_id",
    "MetricLogger",
    "JsonlLogger",
    "CsvLogger",
    "TensorboardLogger",
    "WandbLogger",
    "LoggerGroup",
    "build_loggers",
    "save_checkpoint",
    "load_checkpoint",
    "load_latest_checkpoint",
    "latest_checkpoint_path",
    "list_checkpoints",
    "capture_rng_state",
    "restore_rng_state",
    "seed_everything",
]
