"""The parameter package and the core's parameter plugin never import torch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def test_parameters_import_and_work_without_torch():
    code = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        import nip_core.parameters as parameters
        for module in pkgutil.iter_modules(parameters.__path__):
            importlib.import_module(f"nip_core.parameters.{module.name}")
        import nip_core.builtin.parameters
        import nip_core.seeding
        from nip_core.parameters import HyperParameters
        from nip_core.testing.fixtures import isolated_plugin_manager
        import toy_plugin

        with isolated_plugin_manager([toy_plugin.ToyPlugin()]):
            hp = HyperParameters(
                "toy_text", "toy_text_trainer", "d", interaction_protocol="toy_protocol"
            )
            assert HyperParameters.from_dict(hp.to_dict()) == hp
        nip_core.seeding.derive_seed(1, "x")
        heavy = [m for m in sys.modules if m.split(".")[0] in ("torch", "torchrl")]
        print(",".join(sorted(heavy)))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
