"""nip's log handler and progress bars."""

from __future__ import annotations

import io
import logging

from tqdm import tqdm

from nip_core.logs import BarSafeStreamHandler


def _logger(stream: io.StringIO, name: str) -> logging.Logger:
    handler = BarSafeStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    return logger


def test_a_record_is_written_on_its_own_line_above_a_bar() -> None:
    stream = io.StringIO()
    logger = _logger(stream, "nip.test_logs.bar")
    bar = tqdm(total=10, file=stream, desc="x train", ascii=True, mininterval=0)
    bar.update(3)
    logger.warning("a worker died")
    bar.close()
    lines = stream.getvalue().split("\n")
    # the bar is cleared ("\r" and blanks) before the record, then drawn again
    assert lines[0].rsplit("\r", 1)[-1] == "WARNING a worker died"
    assert lines[0].split("\r")[-2].strip() == ""
    assert lines[1].startswith("\rx train:  30%")


def test_without_a_bar_a_record_is_one_plain_line() -> None:
    stream = io.StringIO()
    _logger(stream, "nip.test_logs.plain").error("nothing to draw")
    assert stream.getvalue() == "ERROR nothing to draw\n"
