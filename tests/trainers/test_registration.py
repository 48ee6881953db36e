"""The built-in trainers and loggers are registered without importing torch."""

from __future__ import annotations

import subprocess
import sys


def test_builtin_trainer_and_logger_hooks_do_not_import_torch():
    code = (
        "import sys\n"
        "import nip_core.builtin.trainers as t, nip_core.builtin.loggers as l\n"
        "import nip_core.trainers, nip_core.runs, nip_core.settings\n"
        "specs = t.register_trainers() + l.register_loggers()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(sorted(s.name for s in specs))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == (
        "['csv', 'jsonl', 'reinforce', 'solo_agent', 'tensorboard', 'wandb']"
    )


def test_registered_trainer_specs(plugin_manager):
    from nip_core.records import resolve_ref
    from nip_core.trainers import ReinforceTrainer, SoloAgentTrainer

    trainers = plugin_manager.trainers
    assert resolve_ref(trainers["reinforce"].trainer_class) is ReinforceTrainer
    assert trainers["reinforce"].trainer_type == "rl"
    assert resolve_ref(trainers["solo_agent"].trainer_class) is SoloAgentTrainer
    assert trainers["solo_agent"].trainer_type == SoloAgentTrainer.trainer_type
    assert sorted(plugin_manager.loggers) == ["csv", "jsonl", "tensorboard", "wandb"]
