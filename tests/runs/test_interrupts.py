"""More Ctrl-C once a run is stopping: the stop's bookkeeping and the command's exit
status survive it (:mod:`nip_core.runs.interrupts`)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from nip_core.errors import RunInterrupted
from nip_core.experiment import run_experiment
from nip_core.runs import RunDirectory
from nip_core.runs.context import RunContext
from nip_core.runs.interrupts import (
    SHIELDED_INTERRUPT_MESSAGE,
    interrupts_shielded,
)
from nip_core.testing.contracts.trainer import python_ctrl_c
from nip_core.testing.synthetic import SYNTHETIC_PLUGIN
from nip_core.testing.synthetic.fixtures import SyntheticScenario

pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signal handlers are set from the main thread only",
)


def _ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def test_the_shield_notes_ctrl_c_once_and_puts_python_handling_back() -> None:
    stream = io.StringIO()
    with python_ctrl_c():
        with interrupts_shielded(stream) as shield:
            _ctrl_c()
            _ctrl_c()
        assert shield.received == 2
        assert stream.getvalue() == f"\n{SHIELDED_INTERRUPT_MESSAGE}\n"
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with pytest.raises(KeyboardInterrupt):
            _ctrl_c()


def test_the_shield_leaves_another_handler_alone() -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        with interrupts_shielded(io.StringIO()) as shield:
            _ctrl_c()
        assert seen == [signal.SIGINT]
        assert shield.received == 0
    finally:
        signal.signal(signal.SIGINT, previous)


def _ctrl_c_while_finishing(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Press Ctrl-C as a run closes its loggers (``RunContext.finish``); the list
    returned records each close that got to its end."""
    finish = RunContext.finish
    closed: list[bool] = []

    def finish_under_ctrl_c(self: RunContext) -> None:
        _ctrl_c()
        finish(self)
        closed.append(True)

    monkeypatch.setattr(RunContext, "finish", finish_under_ctrl_c)
    return closed


def _run(register_plugin, root: Path, run_id: str, callback) -> None:
    register_plugin(SYNTHETIC_PLUGIN, name="synthetic")
    scenario = SyntheticScenario(root)
    run_experiment(
        scenario.hyper_params("nip", rl=SyntheticScenario.short_rl()),
        scenario.settings(checkpoint_period=1),
        run_id=run_id,
        callbacks=[callback],
    )


def test_ctrl_c_while_a_stopped_run_is_recorded_loses_nothing(
    register_plugin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C stopped the run; the user presses it again while the run is marked
    # killed and its loggers closed: the run must still be marked, and the command
    # still say how to resume it
    closed = _ctrl_c_while_finishing(monkeypatch)

    def ctrl_c_after_first(trainer, iteration, metrics) -> None:
        if iteration == 0:
            raise KeyboardInterrupt

    with python_ctrl_c():
        # a KeyboardInterrupt of any kind, so that the test fails (rather than
        # stops pytest) when the second Ctrl-C escapes
        with pytest.raises(KeyboardInterrupt) as caught:
            _run(register_plugin, tmp_path, "twice", ctrl_c_after_first)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert isinstance(caught.value, RunInterrupted), repr(caught.value)
    assert caught.value.run_id == "twice"
    assert closed == [True]
    info = RunDirectory(tmp_path / "runs" / "twice").read_run_info()
    assert info["status"] == "killed"


def test_a_failed_run_is_not_shielded(
    register_plugin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # only an interrupt's stop holds Ctrl-C off: a failing run's cleanup stays
    # interruptible
    _ctrl_c_while_finishing(monkeypatch)

    def fail(trainer, iteration, metrics) -> None:
        raise ValueError("broken")

    with python_ctrl_c():
        with pytest.raises(KeyboardInterrupt) as caught:
            _run(register_plugin, tmp_path, "failing", fail)
    assert isinstance(caught.value.__context__, ValueError)


@pytest.mark.parametrize("ends_process", [True, False])
def test_the_command_ignores_ctrl_c_once_it_ends_on_an_interrupt(
    monkeypatch: pytest.MonkeyPatch, ends_process: bool
) -> None:
    from nip_core.cli import main as cli

    def interrupted(args) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_dispatch", interrupted)
    with python_ctrl_c():
        previous = signal.getsignal(signal.SIGINT)
        try:
            assert cli.main(["plugins"], ends_process=ends_process) == 130
            after = signal.getsignal(signal.SIGINT)
        finally:
            signal.signal(signal.SIGINT, previous)
    # code that goes on after main() keeps its Ctrl-C
    assert after is (signal.SIG_IGN if ends_process else previous)


DRIVER = """\
import os, signal, sys

from nip_core.cli import main as cli


def interrupted(args):
    raise KeyboardInterrupt


class CtrlCAtShutdown:
    # torch's and the run's objects are torn down after Python has put the
    # default action for SIGINT back: a Ctrl-C then (what it calls is bound
    # now: the module's globals may be gone by the time it runs)
    def __del__(self, kill=os.kill, pid=os.getpid(), sigint=signal.SIGINT):
        kill(pid, sigint)


at_shutdown = CtrlCAtShutdown()
cli._dispatch = interrupted
sys.argv = ["nip", "plugins"]
cli.console_main()
"""


def test_ctrl_c_while_the_command_exits_leaves_its_exit_status(
    tmp_path: Path,
) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(DRIVER))
    process = subprocess.run(
        [sys.executable, str(driver)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # without the fix: killed by the signal (-2), not the command's 130
    assert process.returncode == 130, process.stderr
    assert "nip: interrupted" in process.stderr
    assert "Traceback" not in process.stderr


def test_sigterm_replaces_a_launchers_handler_only_when_asked() -> None:
    """A sweep's job in a launcher's process: submitit's own SIGTERM handler
    swallows the signal, so the job installs its own over it (``replace``)."""
    from nip_core.runs.interrupts import Terminated, terminate_as_interrupt

    seen: list[int] = []

    def bypass(signum: int, frame: object) -> None:
        seen.append(signum)

    previous = signal.signal(signal.SIGTERM, bypass)
    try:
        with terminate_as_interrupt() as plain:
            os.kill(os.getpid(), signal.SIGTERM)
        assert not plain.active and seen == [signal.SIGTERM]
        with pytest.raises(Terminated), terminate_as_interrupt(replace=True):
            os.kill(os.getpid(), signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) is bypass  # put back
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_sigterm_delivered_twice_does_not_cut_the_stop_short(monkeypatch) -> None:
    """submitit's local controller forwards SIGTERM to its job, which the sweep
    signals too: the second copy, arriving while the run is marked killed, must
    not raise there (a run was left "running" so in CI). A later one does."""
    import time

    from nip_core.runs import interrupts
    from nip_core.runs.interrupts import Terminated, terminate_as_interrupt

    monkeypatch.setattr(interrupts, "DUPLICATE_SIGTERM_S", 0.5)
    marked = []
    with terminate_as_interrupt(replace=True):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except Terminated:
            os.kill(os.getpid(), signal.SIGTERM)  # the copy: ignored
            time.sleep(0.05)
            marked.append(True)
        time.sleep(0.5)
        with pytest.raises(Terminated):
            os.kill(os.getpid(), signal.SIGTERM)  # a new kill, later
            time.sleep(5)
    assert marked == [True]


def _script_result(script: str, timeout: float) -> dict:
    """Run ``script`` in a Python process of its own (so that no other test's
    processes are below the one it signals) and read the JSON object its last
    line of output holds."""
    import json

    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


_DESCENDANTS_SCRIPT = """
import io, json, os, signal, subprocess, sys, time
from nip_core.runs.interrupts import (
    Terminated, descendant_pids, ignores_signal, terminate_with_descendants,
    wait_for_processes,
)
sleeper = "import time; time.sleep(120)"
child = subprocess.Popen([
    sys.executable, "-c",
    "import subprocess, sys, time; "
    f"subprocess.Popen([sys.executable, '-c', {sleeper!r}]); time.sleep(120)",
])
# a job that takes a second to stop (marking its run killed)
slow = subprocess.Popen([
    sys.executable, "-c",
    "import signal, sys, time; signal.signal(signal.SIGTERM, "
    "lambda *_: (time.sleep(1.0), sys.exit(7))); "
    "time.sleep(120)",
])
# a resource tracker: ignores SIGTERM, ends when its users do
deaf = subprocess.Popen([
    sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "time.sleep(120)",
])
deadline = time.monotonic() + 60
while time.monotonic() < deadline and not (
    len(descendant_pids()) == 4 and ignores_signal(deaf.pid, signal.SIGTERM)
    and not ignores_signal(slow.pid, signal.SIGTERM)
):
    time.sleep(0.05)
time.sleep(0.5)  # the slow job's handler is in place
below = descendant_pids()
stream = io.StringIO()
stopping = terminate_with_descendants(timeout=30, stream=stream)
raised = False
try:
    with stopping:
        os.kill(os.getpid(), signal.SIGTERM)
except Terminated:
    raised = True
    running_when_raised = wait_for_processes(below, 0)
deaf.kill()
print(json.dumps({
    "child": child.pid, "slow": slow.pid, "deaf": deaf.pid, "below": below,
    "raised": raised, "running_when_raised": running_when_raised,
    "signalled": sorted(stopping.signalled), "left": stopping.left,
    "said": stream.getvalue(), "child_status": child.wait(5),
    "slow_status": slow.wait(5),
}))
"""


def test_sigterm_goes_on_to_every_process_below_and_is_waited_for() -> None:
    """A child with a grandchild (a sweep's local job and its helper) and a job
    that takes a second to stop get SIGTERM, and the handler raises only once all
    are gone (a launcher's teardown, reached by the raise, would SIGKILL them); a
    process that ignores SIGTERM (a resource tracker) is left alone. In a process
    of its own, so that no other test's processes are below the one signalled."""
    if not Path("/proc/self/stat").is_file():
        pytest.skip("no /proc to read the process tree from")
    result = _script_result(_DESCENDANTS_SCRIPT, timeout=180)
    assert len(result["below"]) == 4
    assert {result["child"], result["slow"], result["deaf"]} <= set(result["below"])
    assert result["raised"]
    assert result["signalled"] == sorted(set(result["below"]) - {result["deaf"]})
    assert result["running_when_raised"] == [result["deaf"]]
    assert result["left"] == []
    assert result["said"] == "nip: waiting for 3 job process(es) to stop\n"
    assert result["child_status"] == -signal.SIGTERM
    assert result["slow_status"] == 7


_TARGETS_SCRIPT = """
import io, json, os, signal, subprocess, sys, time
from nip_core.runs.interrupts import (
    Terminated, descendant_pids, terminate_with_descendants, wait_for_processes,
)
# a job process with a helper (a W&B service): the helper must outlive the
# job's closing of its run, and ends on its own when the job is gone
job = subprocess.Popen([
    sys.executable, "-c",
    "import signal, subprocess, sys, time; "
    "helper = subprocess.Popen([sys.executable, '-c', "
    "'import os, time; parent = os.getppid(); [time.sleep(0.05) for _ in "
    "iter(lambda: os.getppid() == parent, False)]']); "
    "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.5), "
    "print(helper.poll(), flush=True), sys.exit(7))); "
    "print(helper.pid, flush=True); "
    "time.sleep(120)",
], stdout=subprocess.PIPE, text=True)
helper = int(job.stdout.readline())  # the job's handler is in place
deadline = time.monotonic() + 60
while time.monotonic() < deadline and len(descendant_pids()) != 2:
    time.sleep(0.05)
stopping = terminate_with_descendants(
    timeout=30, stream=io.StringIO(), targets=lambda: [job.pid, 999999999]
)
try:
    with stopping:
        os.kill(os.getpid(), signal.SIGTERM)
except Terminated:
    pass
helper_when_job_closed = job.stdout.readline().strip()
print(json.dumps({
    "job": job.pid, "helper": helper, "signalled": stopping.signalled,
    "left": stopping.left, "job_status": job.wait(5),
    "helper_when_job_closed": helper_when_job_closed,
    "helper_after": wait_for_processes([helper], 10),
}))
"""


def test_sigterm_goes_only_to_the_targets_and_not_to_their_helpers() -> None:
    """A sweep passes SIGTERM to its job processes only: a job's helper (a W&B
    service it still needs to close its run) is not signalled, is still running
    while the job stops, and ends after it."""
    if not Path("/proc/self/stat").is_file():
        pytest.skip("no /proc to read the process tree from")
    result = _script_result(_TARGETS_SCRIPT, timeout=180)
    assert result["signalled"] == [result["job"]]
    assert result["left"] == []
    assert result["job_status"] == 7
    assert result["helper_when_job_closed"] == "None"  # still running then
    assert result["helper_after"] == []


_SECOND_SIGTERM_SCRIPT = """
import io, json, os, signal, subprocess, sys, threading, time
from nip_core.runs.interrupts import (
    Terminated, descendant_pids, ignores_signal, terminate_with_descendants,
)
# a job that takes long to stop
slow = subprocess.Popen([
    sys.executable, "-c",
    "import signal, sys, time; signal.signal(signal.SIGTERM, "
    "lambda *_: (time.sleep(60), sys.exit(7))); print('ready', flush=True); "
    "time.sleep(120)",
], stdout=subprocess.PIPE, text=True)
slow.stdout.readline()
stopping = terminate_with_descendants(timeout=60, stream=io.StringIO())
# the second SIGTERM (a scheduler that gives up waiting) stops the wait
threading.Timer(1.0, os.kill, args=(os.getpid(), signal.SIGTERM)).start()
start = time.monotonic()
try:
    with stopping:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
except Terminated:
    pass
took = time.monotonic() - start
slow.kill()
slow.wait()
print(json.dumps({
    "slow": slow.pid, "took": took, "signalled": stopping.signalled,
    "left": stopping.left,
}))
"""


def test_a_second_sigterm_stops_the_wait_and_names_the_processes_left() -> None:
    """SIGTERM again while the handler waits for the jobs stops the wait at once;
    the jobs still running then are :attr:`left` (the sweep names them), not an
    empty list as if all had stopped."""
    if not Path("/proc/self/stat").is_file():
        pytest.skip("no /proc to read the process tree from")
    result = _script_result(_SECOND_SIGTERM_SCRIPT, timeout=120)
    assert result["signalled"] == [result["slow"]]
    assert result["took"] < 20
    assert result["left"] == [result["slow"]]


def test_a_process_ignoring_or_blocking_a_signal_is_told_apart() -> None:
    from nip_core.runs.interrupts import ancestor_pids, ignores_signal

    if not Path("/proc/self/status").is_file():
        pytest.skip("no /proc to read signal dispositions from")
    previous = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        assert ignores_signal(os.getpid(), signal.SIGUSR2)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert not ignores_signal(os.getpid(), signal.SIGUSR2)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])
    try:
        assert ignores_signal(os.getpid(), signal.SIGUSR2)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGUSR2])
    assert not ignores_signal(2**22 + 12345, signal.SIGTERM)  # no such process
    assert ancestor_pids()[0] == os.getppid()


class _RaisesWhenDropped:
    """An object whose ``__del__`` raises what a signal's handler raised there:
    Python cannot pass it on and drops it (``sys.unraisablehook``)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __del__(self) -> None:
        raise self.error


def _drop(error: BaseException, wait_s: float = 10.0) -> None:
    import time

    _RaisesWhenDropped(error)  # no reference kept: __del__ runs here
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:  # an interrupt delivered again stops this
        time.sleep(0.001)


def test_an_interrupt_python_would_drop_is_raised_again_without_a_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Ctrl-C landing in a ``__del__`` or a compiled module's import hook was lost,
    with "Exception ignored in ... KeyboardInterrupt" printed (the sweep's Ctrl-C
    test failed so in CI)."""
    from nip_core.runs.interrupts import (
        Terminated,
        interrupts_kept,
        terminate_as_interrupt,
    )

    previous_hook = sys.unraisablehook
    with python_ctrl_c():
        with pytest.raises(KeyboardInterrupt) as raised, interrupts_kept():
            _drop(KeyboardInterrupt())
        assert type(raised.value) is KeyboardInterrupt
        with pytest.raises(Terminated), interrupts_kept(), terminate_as_interrupt():
            _drop(Terminated("SIGTERM"))
        # other dropped exceptions still reach the hook in place before
        seen: list[type[BaseException]] = []
        sys.unraisablehook = lambda unraisable: seen.append(unraisable.exc_type)
        try:
            with interrupts_kept():
                _drop(ValueError("not an interrupt"))
            assert sys.unraisablehook is not previous_hook  # the test's, put back
        finally:
            sys.unraisablehook = previous_hook
        assert seen == [ValueError]
    assert "Exception ignored" not in capfd.readouterr().err


def test_without_the_context_python_drops_the_interrupt() -> None:
    """The check above can fail: outside :class:`interrupts_kept` the interrupt
    goes to the unraisable hook (Python's prints it) and is not raised."""
    seen: list[type[BaseException]] = []
    previous_hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: seen.append(unraisable.exc_type)
    try:
        with python_ctrl_c():
            _drop(KeyboardInterrupt(), wait_s=0.3)
    finally:
        sys.unraisablehook = previous_hook
    assert seen == [KeyboardInterrupt]


_IN_PROCESS_SCRIPT = """
import json, os, signal, subprocess, sys, time
from nip_core.runs.interrupts import Terminated, terminate_with_descendants
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
stopping = terminate_with_descendants(timeout=30, pass_on=False)
raised = False
try:
    with stopping:
        os.kill(os.getpid(), signal.SIGTERM)
except Terminated:
    raised = True
time.sleep(0.5)
alive = helper.poll() is None
helper.kill()
print(json.dumps({"raised": raised, "alive": alive,
                  "signalled": stopping.signalled}))
"""


def test_sigterm_is_not_passed_on_where_the_jobs_run_in_this_process() -> None:
    """Hydra's basic launcher runs the jobs in the nip process: the processes below
    are their helpers (a W&B service the run still needs to close), so SIGTERM
    only raises."""
    result = _script_result(_IN_PROCESS_SCRIPT, timeout=120)
    assert result == {"raised": True, "alive": True, "signalled": []}
