"""The sandbox escape suite: each attempt is contained and the caller unharmed.

Tight limits keep it fast and safe on a shared two-core machine."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from nip_plugin_code_validation.sandbox import (
    SandboxLimits,
    run_python,
    run_tests,
    sandbox_isolation,
)

TIGHT = SandboxLimits(wall_time=3.0, cpu_time=2, memory_mb=256, max_processes=8)


def _environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


@pytest.fixture(autouse=True)
def caller_unharmed(tmp_path_factory, monkeypatch):
    """After every attempt: the test process lives, its environment is intact, and
    no sandbox directory is left behind."""
    import tempfile

    sandboxes = tmp_path_factory.mktemp("sandboxes")
    monkeypatch.setattr(tempfile, "tempdir", str(sandboxes))
    environ = _environ()
    yield
    assert _environ() == environ
    assert list(sandboxes.iterdir()) == []
    assert run_python("print(6 * 7)", limits=TIGHT).stdout == "42\n"


def test_a_plain_program_runs() -> None:
    result = run_python("import math\nprint(math.factorial(5))", limits=TIGHT)
    assert result.ok and result.stdout == "120\n"


def test_fork_bomb() -> None:
    result = run_python("import os\nwhile True:\n    os.fork()\n", limits=TIGHT)
    assert not result.ok
    assert result.duration < TIGHT.wall_time + 2


def test_fork_bomb_through_multiprocessing() -> None:
    program = (
        "import multiprocessing as mp\n"
        "def spin():\n    while True: pass\n"
        "for _ in range(50):\n    mp.Process(target=spin).start()\n"
    )
    result = run_python(program, limits=TIGHT)
    assert not result.ok


def test_infinite_loop() -> None:
    result = run_python("while True:\n    pass\n", limits=TIGHT)
    assert result.status == "timeout"
    assert result.duration < TIGHT.wall_time + 2


def test_sleeping_forever_hits_the_wall_clock() -> None:
    limits = SandboxLimits(wall_time=1.0, cpu_time=2, memory_mb=256)
    result = run_python("import time\ntime.sleep(60)\n", limits=limits)
    assert result.status == "timeout"
    assert result.duration < 3


def test_memory_bomb() -> None:
    result = run_python("x = bytearray(4 * 1024 ** 3)\n", limits=TIGHT)
    assert result.status == "memory"
    growing = "x = []\nwhile True:\n    x.append(bytearray(10 ** 7))\n"
    assert run_python(growing, limits=TIGHT).status == "memory"


def test_write_outside_the_temporary_directory(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    for program in (
        f"open({str(target)!r}, 'w').write('x')",
        f"import os\nfd = os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT)",
        f"import pathlib\npathlib.Path({str(target)!r}).write_text('x')",
        f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
    ):
        result = run_python(program, limits=TIGHT)
        assert not result.ok, program
        assert "sandbox" in result.stderr
    assert not target.exists()
    assert tmp_path.is_dir()


def test_writing_inside_the_sandbox_is_fine_and_removed() -> None:
    result = run_python(
        "import os\nopen('out.txt', 'w').write('hi')\nprint(os.getcwd())",
        limits=TIGHT,
    )
    assert result.ok
    assert not Path(result.stdout.strip()).exists()


def test_file_size_limit() -> None:
    limits = SandboxLimits(wall_time=3.0, cpu_time=2, memory_mb=256, max_file_mb=1)
    result = run_python("open('big', 'w').write('x' * 5 * 1024 ** 2)", limits=limits)
    assert not result.ok
    flood = "while True:\n    print('x' * 10000)\n"
    result = run_python(flood, limits=limits)
    assert not result.ok
    assert len(result.stdout) <= 64 * 1024


def test_api_keys_are_not_visible() -> None:
    secret = "sk-sandbox-secret-0123456789"
    saved = {k: os.environ.get(k) for k in ("OPENAI_API_KEY", "HF_TOKEN")}
    os.environ.update(OPENAI_API_KEY=secret, HF_TOKEN=secret)
    try:
        result = run_python(
            "import os\nprint(sorted(os.environ))\n"
            "print(os.environ.get('OPENAI_API_KEY'), os.environ.get('HF_TOKEN'))",
            limits=TIGHT,
        )
        parent = os.getppid()
        leaks = [
            run_python(f"print(open({path!r}, 'rb').read())", limits=TIGHT)
            for path in (f"/proc/{os.getpid()}/environ", f"/proc/{parent}/environ")
        ]
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert result.ok
    assert secret not in result.stdout
    assert "None None" in result.stdout
    for leak in leaks:
        assert secret not in leak.stdout
        assert not leak.ok


def test_opening_a_socket() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    accepted = []

    def accept() -> None:
        listener.settimeout(4)
        try:
            accepted.append(listener.accept())
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        result = run_python(
            f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), 2)\n"
            "s.sendall(b'leak')",
            limits=TIGHT,
        )
        raw = run_python(
            f"import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', {port}))",
            limits=TIGHT,
        )
    finally:
        thread.join()
        listener.close()
    assert not result.ok and not raw.ok
    assert accepted == []


def test_os_system_and_subprocess(tmp_path: Path) -> None:
    sandbox_marker = "marker"
    for program in (
        f"import os\nos.system('touch {tmp_path}/a {sandbox_marker}')",
        f"import subprocess\nsubprocess.run(['touch', '{tmp_path}/b'])",
        "import os\nos.execv('/bin/sh', ['sh', '-c', 'echo escaped'])",
        "import os\nos.posix_spawn('/bin/true', ['true'], {})",
        "import ctypes\nctypes.CDLL(None).system(b'echo escaped')",
        "import os, signal\nos.kill(1, signal.SIGKILL)",
    ):
        result = run_python(program, limits=TIGHT)
        assert not result.ok, program
        assert "escaped" not in result.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("namespaces", [True, False])
def test_reading_another_process_environment_by_a_relative_path(
    monkeypatch, namespaces
) -> None:
    # /proc/<pid>/environ opened relative to a directory descriptor or after a
    # chdir shows no "/proc/" to the guard; with the namespaces, the sandbox's
    # own /proc does not list the caller at all
    import nip_plugin_code_validation.sandbox as sandbox

    if not namespaces:
        monkeypatch.setattr(sandbox, "_unshare_prefix", lambda: None)
    secret = "sk-sandbox-relative-0123456789"
    saved = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = secret
    pid = os.getpid()
    try:
        attempts = [
            run_python(program, limits=TIGHT)
            for program in (
                "import os\n"
                f"d = os.open('/proc/{pid}', os.O_RDONLY)\n"
                "f = os.open('environ', os.O_RDONLY, dir_fd=d)\n"
                "print(os.read(f, 1 << 20))",
                f"import os\nos.chdir('/proc/{pid}')\nprint(open('environ').read())",
                f"print(open('/proc/{pid}/./environ', 'rb').read())",
                f"print(open('/proc/{pid}/mem', 'rb').read(16))",
            )
        ]
    finally:
        if saved is None:
            os.environ.pop("OPENAI_API_KEY", None)
        else:
            os.environ["OPENAI_API_KEY"] = saved
    for attempt in attempts:
        assert not attempt.ok
        assert secret not in attempt.stdout + attempt.stderr


def test_writing_outside_through_sqlite_and_fifos(tmp_path: Path) -> None:
    for program in (
        f"import sqlite3\nc = sqlite3.connect('{tmp_path}/escape.db')\n"
        "c.execute('create table t(x)')\nc.commit()",
        f"import os\nos.mkfifo('{tmp_path}/escape_fifo')",
        f"import os, stat\nos.mknod('{tmp_path}/escape_node', stat.S_IFIFO | 0o600)",
    ):
        result = run_python(program, limits=TIGHT)
        assert result.status == "error", program
        assert "PermissionError: sandbox:" in result.stderr
    assert list(tmp_path.iterdir()) == []
    # a database inside the sandbox, or in memory, is fine
    inside = run_python(
        "import sqlite3\nfor name in ('here.db', ':memory:'):\n"
        "    sqlite3.connect(name).execute('create table t(x)')\nprint('ok')",
        limits=TIGHT,
    )
    assert inside.ok and inside.stdout == "ok\n"


def test_signalling_another_process_through_a_pidfd(monkeypatch) -> None:
    # without the namespaces (most containers) the sandboxed code sees the
    # caller's processes: signalling one through a pidfd must be refused too
    import signal
    import subprocess
    import sys

    import nip_plugin_code_validation.sandbox as sandbox

    monkeypatch.setattr(sandbox, "_unshare_prefix", lambda: None)
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        for program in (
            "import os, signal\n"
            f"signal.pidfd_send_signal(os.pidfd_open({target.pid}), signal.SIGKILL)",
            f"import os, _signal\nos.pidfd_open({target.pid})",
            "import posix, _signal\n"
            f"_signal.pidfd_send_signal(posix.pidfd_open({target.pid}), 9)",
        ):
            result = run_python(program, limits=TIGHT)
            assert result.status == "error", program
            assert "PermissionError: sandbox:" in result.stderr
        assert target.poll() is None  # still alive
    finally:
        target.send_signal(signal.SIGKILL)
        target.wait()


def test_tests_pass_and_fail() -> None:
    test = "def check(f):\n    assert f(2) == 4\n"
    assert run_tests("def sq(x):\n    return x * x\n", test, "sq", limits=TIGHT).ok
    failed = run_tests("def sq(x):\n    return x + x + 1\n", test, "sq", limits=TIGHT)
    assert failed.status == "error" and "AssertionError" in failed.stderr


@pytest.mark.parametrize(
    "solution",
    [
        "import sys\ndef sq(x):\n    return x + 1\nsys.exit(0)\n",
        "def sq(x):\n    return x + 1\nexit()\n",
        "import os\ndef sq(x):\n    return x + 1\nos._exit(0)\n",
        # the tests fail, then an exit handler ends the process with status 0
        "import atexit, os\ndef sq(x):\n    return x + 1\n"
        "atexit.register(lambda: os._exit(0))\n",
        # exits inside the tests
        "import sys\ndef sq(x):\n    sys.exit(0)\n",
    ],
)
def test_a_solution_that_exits_with_status_0_does_not_pass_the_tests(solution) -> None:
    test = "def check(f):\n    assert f(2) == 4\n"
    result = run_tests(solution, test, "sq", limits=TIGHT)
    assert result.status == "error"
    assert result.returncode == 0
    assert "exited with status 0 before its last statement ran" in result.describe()
    # a plain program may exit early: that is its business
    assert run_python(solution, limits=TIGHT).returncode == 0


def test_long_error_output_keeps_its_tail() -> None:
    program = (
        "import sys\nfor i in range(20000):\n    sys.stderr.write('noise line\\n')\n"
        "raise ValueError('the real error')\n"
    )
    result = run_python(program, limits=TIGHT)
    assert result.status == "error"
    assert result.describe().endswith("ValueError: the real error")
    assert "bytes of output cut" in result.stderr
    assert len(result.stderr.encode()) <= 64 * 1024


def test_isolation_report() -> None:
    layers = sandbox_isolation()
    assert layers["resource_limits"] and layers["python_guard"]
    assert set(layers) == {
        "namespaces",
        "private_proc",
        "unprivileged_user",
        "resource_limits",
        "python_guard",
    }


@pytest.mark.parametrize("name", ["SIGTERM", "SIGUSR1", "SIGHUP"])
def test_a_signal_the_code_raises_on_itself_kills_it(name) -> None:
    """In a PID namespace process 1 ignores signals it has no handler for: the code
    runs as process 2 under a process 1 that reports how it ended."""
    import signal

    program = (
        f"import signal\nsignal.raise_signal(signal.{name})\n"
        "open('after', 'w').write('x')\nprint('after', flush=True)\n"
    )
    result = run_python(program, limits=TIGHT)
    assert result.status == "killed"
    assert result.stdout == ""
    number = getattr(signal, name)
    assert result.returncode in (-number, 128 + number)
    # and as a test: the tests do not pass
    solution = f"import signal\ndef f(x):\n    signal.raise_signal(signal.{name})\n"
    test = "def check(c):\n    c(1)\n"
    assert run_tests(solution, test, "f", limits=TIGHT).status == "killed"


def test_the_code_is_not_process_1() -> None:
    result = run_python("import os\nprint(os.getpid() != 1)", limits=TIGHT)
    assert result.ok and result.stdout == "True\n"
