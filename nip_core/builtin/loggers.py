"""Built-in plugin of nip-core: the metric loggers.

Registered before installed plugins, through the same hook. The classes are given as
references so this module imports neither torch nor wandb.
"""

from __future__ import annotations

from nip_core import hookimpl
from nip_core.records import LoggerSpec


@hookimpl
def register_loggers() -> list[LoggerSpec]:
    return [
        LoggerSpec(
            name="jsonl",
            logger_class="nip_core.runs.loggers:JsonlLogger",
            description="metrics.jsonl in the run directory (always on)",
        ),
        LoggerSpec(
            name="wandb",
            logger_class="nip_core.runs.loggers:WandbLogger",
            description="Weights & Biases (offline when no credentials are found)",
            requires=("wandb",),
            install="wandb",
        ),
        LoggerSpec(
            name="csv",
            logger_class="nip_core.runs.loggers:CsvLogger",
            description="one CSV file per metric (TorchRL's CSVLogger)",
        ),
        LoggerSpec(
            name="tensorboard",
            logger_class="nip_core.runs.loggers:TensorboardLogger",
            description="TensorBoard event files (TorchRL's TensorboardLogger)",
            requires=("tensorboard",),
            install="nip-core[tensorboard]",
        ),
    ]
