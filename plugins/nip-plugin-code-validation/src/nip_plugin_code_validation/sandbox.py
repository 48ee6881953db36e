"""A sandbox for running untrusted Python code: solutions, mutants and their tests.

:func:`run_python` runs a program in a fresh Python process and returns a
:class:`SandboxResult`. What it guarantees, layer by layer:

Always
    - **A fresh temporary working directory**, removed afterwards; ``HOME`` and
      ``TMPDIR`` point into it.
    - **An environment without secrets**: the child gets only ``PATH``, ``LANG``,
      ``HOME``, ``TMPDIR`` and ``PYTHONHASHSEED`` (Python also runs in isolated mode,
      ``-I``: no ``PYTHON*`` variables, no user site-packages, no current directory
      on the path). Nothing of the caller's environment (API keys included) is
      passed.
    - **Resource limits** set by the child on itself before the code runs (they can
      only be lowered afterwards): CPU time (``RLIMIT_CPU``), address space
      (``RLIMIT_AS``, the memory limit), processes (``RLIMIT_NPROC``), size of any
      file written (``RLIMIT_FSIZE``, which also bounds the captured output), open
      files (``RLIMIT_NOFILE``) and no core dumps.
    - **A wall-clock limit**: the child runs in its own session; at the limit the
      whole process group is killed (``SIGKILL``).
    - **A Python-level guard** (an audit hook installed before the code runs, which
      code cannot remove): sockets cannot connect, bind or send; ``os.system``,
      ``subprocess``, ``os.exec*``, ``os.spawn*``, ``os.posix_spawn``, ``os.fork``,
      ``os.kill``, signalling through a pidfd (``os.pidfd_open``,
      ``signal.pidfd_send_signal``), loading libraries with ``ctypes`` and
      calling foreign functions are refused; files
      outside the sandbox directory cannot be opened for writing, removed, renamed
      or created (SQLite databases and FIFOs included); no file named ``environ``
      or ``mem`` can be read, whatever the directory (``/proc/<pid>/environ`` holds
      a process's environment, API keys included), and the code cannot enter
      ``/proc``.

Where the operating system allows (Linux with ``unshare`` from util-linux, as root
or with unprivileged user namespaces), additionally
    - **No network**: the child runs in a new network namespace (only a loopback
      interface, which is down), so even code that escaped the Python guard
      reaches nothing.
    - **A process namespace**: the child runs in a new PID namespace, so when it
      is killed every process it started dies with it; with a ``/proc`` of its own
      where ``unshare --mount-proc`` works, so no other process of the machine is
      visible to it. The code runs as process 2 under a small process 1 that
      waits for it and reports how it ended (a namespace's process 1 would ignore
      the signals it raises on itself).
    - **An unprivileged user** when the caller is root and ``nobody`` can read the
      interpreter's standard library: the code runs as ``nobody``, so the kernel
      refuses it writes outside world-writable directories and the process limit
      applies (root ignores ``RLIMIT_NPROC``; without this layer, fork bombs are
      contained by the Python guard and the PID namespace).

:func:`sandbox_isolation` says which layers are available here. The Python guard
is a strong block against ordinary code, not a security boundary against code
written to break out of CPython; the namespaces are the boundary where present.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import attrs

__all__ = [
    "SandboxLimits",
    "SandboxResult",
    "run_python",
    "run_tests",
    "sandbox_isolation",
]

Status = Literal["ok", "error", "timeout", "memory", "killed"]

_OUTPUT_LIMIT = 64 * 1024
"""Characters of stdout and stderr kept in a result."""


@attrs.frozen(kw_only=True)
class SandboxLimits:
    """Resource limits of one sandboxed run.

    Parameters
    ----------
    wall_time : float
        Seconds before the run is killed.
    cpu_time : int
        CPU seconds (``RLIMIT_CPU``).
    memory_mb : int
        Address space in MiB (``RLIMIT_AS``).
    max_processes : int
        Processes of the sandbox's user (``RLIMIT_NPROC``).
    max_file_mb : float
        The largest file the code may write, output included, in MiB
        (``RLIMIT_FSIZE``).
    max_open_files : int
        Open file descriptors (``RLIMIT_NOFILE``).
    """

    wall_time: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    cpu_time: int = attrs.field(default=10, validator=attrs.validators.ge(1))
    memory_mb: int = attrs.field(default=1024, validator=attrs.validators.ge(64))
    max_processes: int = attrs.field(default=16, validator=attrs.validators.ge(1))
    max_file_mb: float = attrs.field(default=16.0, validator=attrs.validators.gt(0))
    max_open_files: int = attrs.field(default=64, validator=attrs.validators.ge(16))


@attrs.frozen(kw_only=True)
class SandboxResult:
    """What a sandboxed run came to.

    Parameters
    ----------
    status : {"ok", "error", "timeout", "memory", "killed"}
        ``ok``: exit status 0; ``error``: the program failed (an exception, a
        failed assertion, a non-zero exit); ``timeout``: the wall-clock or CPU
        limit; ``memory``: it ran out of its memory limit; ``killed``: a signal.
        Writing past the file-size limit fails the write (``OSError: File too
        large``; Python ignores ``SIGXFSZ``), so it is an ``error``.
    returncode : int
        The exit status (negative: killed by that signal).
    stdout, stderr : str
        The output (at most 64 KiB each: longer output keeps its first and last
        32 KiB around a line saying how much was cut).
    duration : float
        Wall-clock seconds.
    """

    status: Status
    returncode: int
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def describe(self) -> str:
        """One line: the status and the last line of the error output."""
        last = next(
            (line for line in reversed(self.stderr.splitlines()) if line.strip()), ""
        )
        return f"{self.status} (exit {self.returncode})" + (f": {last}" if last else "")


# The boot script: limits, privileges, the Python guard, then the program. It runs
# with -I, so nothing of the caller's environment configures it.
_BOOT = textwrap.dedent(
    r"""
    import os, resource, sys

    def _limits(cpu, memory, processes, file_size, open_files):
        for kind, value in (
            (resource.RLIMIT_CPU, (cpu, cpu + 1)),
            (resource.RLIMIT_AS, (memory, memory)),
            (resource.RLIMIT_FSIZE, (file_size, file_size)),
            (resource.RLIMIT_NOFILE, (open_files, open_files)),
            (resource.RLIMIT_CORE, (0, 0)),
            (resource.RLIMIT_NPROC, (processes, processes)),
        ):
            try:
                resource.setrlimit(kind, value)
            except (ValueError, OSError):
                pass

    def _drop_privileges(uid, gid):
        if os.getuid() == 0 and uid >= 0:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)

    def _guard(root):
        root = os.path.realpath(root)
        refused = {
            "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
            "os.forkpty", "os.kill", "os.killpg", "subprocess.Popen",
            "socket.__new__", "socket.connect", "socket.bind", "socket.sendto",
            "socket.sendmsg", "socket.getaddrinfo", "ctypes.call_function",
            "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.cdata", "os.setuid",
            "os.setgid", "os.chroot", "pty.spawn", "os.startfile",
            "sys.addaudithook", "os.setsid", "os.link", "os.symlink",
        }
        paths = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "shutil.rmtree",
                 "shutil.copyfile", "shutil.move", "os.utime", "os.truncate",
                 "os.chmod", "os.chown"}
        fspath, realpath, startswith = os.fspath, os.path.realpath, str.startswith

        def inside(path):
            try:
                path = fspath(path)
            except TypeError:
                return True  # a file descriptor: already open
            if isinstance(path, bytes):
                path = path.decode("utf-8", "replace")
            path = realpath(path)
            return path == root or startswith(path, root + os.sep)

        def hook(event, args):
            if event in refused or (event == "ctypes.dlopen" and args[0] is not None):
                raise PermissionError(f"sandbox: {event} is not allowed")
            if event == "open":
                path, mode, flags = args
                if isinstance(path, (str, bytes)):
                    text = path.decode("utf-8", "replace") if isinstance(path, bytes) \
                        else path
                    # by its name, whatever the directory: a path relative to a
                    # directory descriptor (dir_fd) or the current directory
                    # shows no /proc/<pid>/ here
                    if text.rstrip("/").rsplit("/", 1)[-1] in ("environ", "mem"):
                        raise PermissionError(
                            f"sandbox: reading {text!r} is refused"
                        )
                writing = (mode is not None and any(c in mode for c in "wax+")) or (
                    flags is not None and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
                )
                if writing and not inside(path):
                    raise PermissionError(
                        f"sandbox: writing outside the sandbox directory: {path!r}"
                    )
            elif event == "os.chdir":
                target = args[0]
                if isinstance(target, (str, bytes, os.PathLike)):
                    target = realpath(fspath(target))
                    if isinstance(target, bytes):
                        target = target.decode("utf-8", "replace")
                    if target == "/proc" or startswith(target, "/proc/"):
                        raise PermissionError("sandbox: entering /proc is refused")
            elif event == "sqlite3.connect":
                database = args[0]
                if database not in (":memory:", "", b":memory:", b"") and not inside(
                    database
                ):
                    raise PermissionError(
                        f"sandbox: a database outside the sandbox directory: "
                        f"{database!r}"
                    )
            elif event in paths:
                for path in args[:2]:
                    if isinstance(path, (str, bytes, os.PathLike)) and not inside(path):
                        raise PermissionError(
                            f"sandbox: {event} outside the sandbox directory: {path!r}"
                        )

        sys.addaudithook(hook)

        # Signalling another process through a pidfd raises no audit event:
        # take the functions away (os.kill and os.killpg are refused above)
        import signal, _signal, posix

        def _refused(name):
            def refused(*args, **kwargs):
                raise PermissionError(f"sandbox: {name} is not allowed")
            return refused

        # (nor does making a FIFO or a device node, which writes a file)
        for module, name in ((signal, "pidfd_send_signal"),
                             (_signal, "pidfd_send_signal"),
                             (os, "pidfd_open"), (posix, "pidfd_open"),
                             (os, "mkfifo"), (posix, "mkfifo"),
                             (os, "mknod"), (posix, "mknod")):
            if hasattr(module, name):
                setattr(module, name, _refused(f"{module.__name__}.{name}"))

    def _not_init():
        # Process 1 of a PID namespace ignores every signal it has no handler for
        # (the kernel protects a namespace's init): code that raised SIGTERM on
        # itself would carry on. Run the code in a child, and report how it ended
        # as the shell would (a signal s as status 128 + s).
        if os.getpid() != 1:
            return
        child = os.fork()
        if child == 0:
            return
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                os._exit(1)
            if pid == child:
                break
        if os.WIFSIGNALED(status):
            os._exit(128 + os.WTERMSIG(status))
        os._exit(os.waitstatus_to_exitcode(status))

    def _main():
        (root, program, cpu, memory, processes, file_size, open_files, uid, gid,
         done_path) = sys.argv[1:11]
        _not_init()
        # the token that says the program ran to its end, when asked for: read
        # from the standard input, so it is in no file and no argument
        token = sys.stdin.readline().strip() if done_path else ""
        done = open(done_path, "w", encoding="utf-8") if done_path else None
        _limits(int(cpu), int(memory), int(processes), int(file_size),
                int(open_files))
        _drop_privileges(int(uid), int(gid))
        os.chdir(root)
        sys.path[:0] = [root]
        with open(program, encoding="utf-8") as f:
            source = f.read()
        code = compile(source, program, "exec")
        _guard(root)
        sys.argv = [program]
        namespace = {"__name__": "__main__", "__file__": program}
        exec(code, namespace)
        if done is not None:
            done.write(token)
            done.close()

    _main()
    """
)


@functools.cache
def sandbox_isolation() -> dict[str, bool]:
    """Which isolation layers this machine gives (probed once per process).

    Returns
    -------
    dict[str, bool]
        ``namespaces``: a new network and PID namespace per run (``unshare``);
        ``private_proc``: with a ``/proc`` of its own (only the sandbox's
        processes are in it); ``unprivileged_user``: the code runs as
        ``nobody`` (the caller is root);
        ``resource_limits`` and ``python_guard``: always ``True`` on POSIX.
    """
    prefix = _unshare_prefix()
    return {
        "namespaces": prefix is not None,
        "private_proc": prefix is not None and "--mount-proc" in prefix,
        "unprivileged_user": _nobody() is not None,
        "resource_limits": True,
        "python_guard": True,
    }


@functools.cache
def _unshare_prefix() -> tuple[str, ...] | None:
    tool = shutil.which("unshare")
    if tool is None or not sys.platform.startswith("linux"):
        return None
    base = ["--net", "--pid", "--fork", "--kill-child"]
    ways = [[tool]] if os.geteuid() == 0 else []
    ways.append([tool, "--user", "--map-root-user"])
    # a private /proc first (only the sandbox's own processes in it: no other
    # process's environment or memory to read), then without
    candidates = [
        [*way, *base, *proc] for way in ways for proc in (["--mount-proc"], [])
    ]
    for prefix in candidates:
        try:
            done = subprocess.run(
                [*prefix, sys.executable, "-I", "-c", "pass"],
                capture_output=True,
                timeout=20,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return tuple(prefix)
    return None


@functools.cache
def _nobody() -> tuple[int, int] | None:
    """``nobody``'s uid and gid when the caller is root and ``nobody`` can run this
    interpreter (its standard library may live in a directory only root reads)."""
    if os.geteuid() != 0:
        return None
    try:
        import pwd

        entry = pwd.getpwnam("nobody")
    except (ImportError, KeyError):
        return None
    uid, gid = entry.pw_uid, entry.pw_gid
    probe = (
        f"import os; os.setgroups([]); os.setgid({gid}); os.setuid({uid}); "
        "import _socket, _datetime, _json, math, collections, heapq, itertools"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-B", "-c", probe],
            capture_output=True,
            timeout=20,
            env={"PATH": "/usr/bin:/bin"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (uid, gid) if done.returncode == 0 else None


def _read(path: Path) -> str:
    """The file's text, at most ``_OUTPUT_LIMIT`` bytes of it: its head and its
    tail (where a program's error is) around a line saying what was cut; ``""``
    when there is no such file."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size <= _OUTPUT_LIMIT:
                return f.read().decode("utf-8", "replace")
            half = (_OUTPUT_LIMIT - 64) // 2  # room for the line saying what was cut
            head = f.read(half)
            f.seek(size - half)
            tail = f.read(half)
    except FileNotFoundError:
        return ""
    cut = f"\n[... {size - 2 * half} bytes of output cut ...]\n"
    return (head + cut.encode() + tail).decode("utf-8", "replace")


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_python(
    program: str,
    *,
    limits: SandboxLimits | None = None,
    files: dict[str, str] | None = None,
    require_completion: bool = False,
) -> SandboxResult:
    """Run a Python program in the sandbox (see the module docstring).

    Parameters
    ----------
    program : str
        The source of the program (``__main__``).
    limits : SandboxLimits, optional
        The resource limits (defaults: :class:`SandboxLimits`).
    files : dict[str, str], optional
        Extra files to put in the sandbox directory (name to text).
    require_completion : bool
        ``ok`` only when the program ran to its last statement: one that stops
        early with exit status 0 (``sys.exit(0)``, ``exit()``, ``os._exit(0)``, an
        ``atexit`` handler that exits 0 after a failure) is an ``error``.

    Returns
    -------
    SandboxResult
    """
    limits = limits if limits is not None else SandboxLimits()
    workspace = Path(tempfile.mkdtemp(prefix="nip-sandbox-"))
    try:
        root = workspace / "box"
        root.mkdir()
        main = root / "main.py"
        main.write_text(program, encoding="utf-8")
        for name, text in (files or {}).items():
            if "/" in name or name.startswith("."):
                raise ValueError(f"sandbox file names must be plain, got {name!r}")
            (root / name).write_text(text, encoding="utf-8")
        boot = workspace / "boot.py"
        boot.write_text(_BOOT, encoding="utf-8")
        nobody = _nobody()
        uid, gid = nobody if nobody is not None else (-1, -1)
        if nobody is not None:
            for path in (root, *root.iterdir()):
                os.chown(path, uid, gid)
            os.chmod(workspace, 0o755)
        memory = int(limits.memory_mb) * 1024 * 1024
        file_size = int(limits.max_file_mb * 1024 * 1024)
        command = [
            *(_unshare_prefix() or ()),
            sys.executable,
            "-I",
            "-B",
            str(boot),
            str(root),
            str(main),
            str(int(limits.cpu_time)),
            str(memory),
            str(int(limits.max_processes)),
            str(file_size),
            str(int(limits.max_open_files)),
            str(uid),
            str(gid),
            str(workspace / "done") if require_completion else "",
        ]
        token = secrets.token_hex(16) if require_completion else ""
        env = {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(root),
            "TMPDIR": str(root),
            "PYTHONHASHSEED": "0",
        }
        stdout_path = workspace / "stdout"
        stderr_path = workspace / "stderr"
        start = time.monotonic()
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE if require_completion else subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=str(root),
                env=env,
                start_new_session=True,
                close_fds=True,
            )
            if process.stdin is not None:
                try:
                    process.stdin.write(f"{token}\n".encode())
                    process.stdin.close()
                except OSError:
                    pass  # the child is gone already: its status says why
            timed_out = False
            try:
                process.wait(timeout=limits.wall_time)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(process)
                process.wait()
        duration = time.monotonic() - start
        stdout, stderr = _read(stdout_path), _read(stderr_path)
        code = process.returncode
        completed = not require_completion or _read(workspace / "done") == token
        if timed_out or code in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
            status: Status = "timeout"
        elif code == 0 and completed:
            status = "ok"
        elif code == 0:
            status = "error"
            stderr += (
                "\nsandbox: the program exited with status 0 before its last "
                "statement ran\n"
            )
        elif "MemoryError" in stderr:
            status = "memory"
        elif code < 0 or code > 128:
            status = "killed"
        else:
            status = "error"
        return SandboxResult(
            status=status,
            returncode=code,
            stdout=stdout,
            stderr=stderr,
            duration=duration,
        )
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def run_tests(
    solution: str,
    test: str,
    entry_point: str,
    *,
    limits: SandboxLimits | None = None,
) -> SandboxResult:
    """Run a HumanEval-style test: ``solution``, then ``test`` (defining
    ``check(candidate)``), then ``check(entry_point)``. ``ok`` iff the tests pass:
    ``check`` returned, so a program that exits with status 0 before or during the
    tests (``sys.exit(0)``, ``os._exit(0)``) fails them."""
    program = f"{solution}\n\n{test}\n\ncheck({entry_point})\n"
    return run_python(program, limits=limits, require_completion=True)


def run_many(
    programs: Sequence[str],
    *,
    limits: SandboxLimits | None = None,
    workers: int = 2,
) -> list[SandboxResult]:
    """Run several programs, ``workers`` at a time; results in order."""
    if workers <= 1 or len(programs) <= 1:
        return [run_python(p, limits=limits) for p in programs]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda p: run_python(p, limits=limits), programs))
