"""The ``nip`` command with the synthetic scenario, for tests that kill it.

Run as ``python kill_driver.py ARGS...``: registers the synthetic scenario (which is
not an installed plugin) into the process-wide plugin manager, then runs
``nip ARGS...``. ``NIP_TEST_ITERATION_SLEEP=SECONDS`` makes every training iteration
that much longer, so a test can send a signal in the middle of one.
"""

from __future__ import annotations

import os
import sys
import time


def main() -> int:
    from nip_core.cli.main import main as nip_main
    from nip_core.plugins import get_plugin_manager
    from nip_core.testing.synthetic import SYNTHETIC_PLUGIN
    from nip_core.trainers.rl import TensorDictRlTrainer

    get_plugin_manager().register(SYNTHETIC_PLUGIN, name="synthetic")
    pause = float(os.environ.get("NIP_TEST_ITERATION_SLEEP", "0"))
    if pause:
        train_on_rollout = TensorDictRlTrainer._train_on_rollout

        def slow(self, *args, **kwargs):
            time.sleep(pause)
            return train_on_rollout(self, *args, **kwargs)

        TensorDictRlTrainer._train_on_rollout = slow
    return nip_main(sys.argv[1:], ends_process=True)


if __name__ == "__main__":
    sys.exit(main())
