"""The ``nip`` command, with graph generation workers that stop at a chosen moment,
for tests that kill a worker (or the command) there.

Run as ``python generation_driver.py ARGS...`` (the arguments of ``nip``) with
``NIP_TEST_PAUSE`` naming the moment and ``NIP_TEST_PAUSED`` a file. The first
worker process to reach the moment writes its pid to that file and sleeps until it
is killed; the other workers go on. The moments:

- ``first_unit``: before the worker runs its first unit;
- ``mid_stream``: before it runs unit 1 of a stream of WL score class ``gt_2``
  (that stream's unit 0 has run);
- ``sending``: halfway through sending that unit's result (the pipe holds a part
  of the message, as when a worker dies while writing it);
- ``sent``: just after sending that unit's whole result.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import time
from pathlib import Path


def main() -> int:
    from nip_core.cli.main import main as nip_main

    from nip_plugin_graph_isomorphism import generation

    moment = os.environ["NIP_TEST_PAUSE"]
    marker = Path(os.environ["NIP_TEST_PAUSED"])
    main_pid = os.getpid()
    run_unit, send_to_main = generation._run_unit, generation._send_to_main
    # the unit the worker (this process, once forked) runs or last ran
    current: dict[str, object] = {"units": 0, "unit": None}

    def claim() -> int | None:
        """The marker's handle, if this is the first worker to reach the moment."""
        try:
            return os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            return None

    def stop(handle: int) -> None:
        """Say where this worker is (its pid in the marker), then wait to be
        killed."""
        os.write(handle, str(os.getpid()).encode())
        os.close(handle)
        time.sleep(600)

    def watched_unit(stream, index):
        current["unit"] = (stream.score_class, index)
        current["units"] = int(current["units"]) + 1
        if os.getpid() != main_pid and (
            (moment == "first_unit" and current["units"] == 1)
            or (moment == "mid_stream" and current["unit"] == ("gt_2", 1))
        ):
            handle = claim()
            if handle is not None:
                stop(handle)
        return run_unit(stream, index)

    def watched_send(connection, message) -> None:
        handle = None
        if moment in ("sending", "sent") and current["unit"] == ("gt_2", 1):
            handle = claim()
        if handle is None:
            send_to_main(connection, message)
        elif moment == "sending":
            # multiprocessing's framing: the message's length, then the message
            data = pickle.dumps(message)
            part = struct.pack("!i", len(data)) + data[: len(data) // 2]
            os.write(connection.fileno(), part)
            stop(handle)
        else:
            send_to_main(connection, message)
            stop(handle)

    generation._run_unit = watched_unit
    generation._send_to_main = watched_send
    return nip_main(sys.argv[1:], ends_process=True)


if __name__ == "__main__":
    sys.exit(main())
