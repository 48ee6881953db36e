"""Fetching runs and checkpoints from Weights & Biases, with retries.

Base runs (``base_run.source: wandb``) and agents loaded from another run
(``checkpoint_source: wandb``) read two things from W&B: the run's config (its
hyper-parameters) and a version of its ``checkpoint-<run_id>`` artifact (type
``"checkpoint"``, holding the ``latest.pt`` the trainer saved; see
:class:`nip_core.runs.loggers.WandbLogger`).

Every call goes through :func:`call_with_retries`: network failures (connection
errors, timeouts, HTTP 408, 429 and 5xx) are retried with exponential backoff, then
reported as a :class:`~nip_core.errors.RemoteError` naming what was fetched, the
attempts and the last error. A run or artifact that does not exist raises
:class:`~nip_core.errors.RemoteNotFoundError` at once; other refusals (bad
credentials, a malformed path) raise :class:`~nip_core.errors.RemoteError` at once.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from nip_core.errors import CheckpointError, RemoteError, RemoteNotFoundError

__all__ = [
    "DEFAULT_WANDB_PROJECT",
    "backoff_delays",
    "call_with_retries",
    "checkpoint_alias",
    "checkpoint_artifact_name",
    "download_checkpoint",
    "fetch_run_config",
    "get_wandb_api",
    "wandb_path",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_WANDB_PROJECT = "nip"
"""The W&B project runs log to when ``run.wandb_project`` is not set."""

DEFAULT_ATTEMPTS = 4
DEFAULT_BASE_DELAY = 1.0
DEFAULT_MAX_DELAY = 30.0

_CHECK = (
    "check the network connection, that WANDB_API_KEY (or `wandb login`) gives "
    "access to it, and the entity, project and run id"
)
_NOT_FOUND = re.compile(r"not found|could not find|does not exist", re.I)
_TRANSIENT_STATUS = frozenset({408, 429})

_sleep: Callable[[float], None] = time.sleep
"""How :func:`call_with_retries` waits when no ``sleep`` is given (tests replace it)."""

Failure = Literal["transient", "not_found", "refused"]


# --------------------------------------------------------------------------------------
# Retries


def _http_status(error: BaseException) -> int | None:
    # wandb-core's WandbApiFailedError carries `response.http_status`; requests'
    # HTTPError carries `response.status_code`
    response = getattr(error, "response", None)
    for name in ("http_status", "status_code"):
        status = getattr(response, name, None)
        if isinstance(status, int) and status > 0:
            return status
    return None


def _is_transport_failure(error: BaseException) -> bool:
    """wandb-core's API error with no HTTP response: the request never got one."""
    return (
        type(error).__name__ == "WandbApiFailedError"
        and hasattr(error, "response")
        and _http_status(error) is None
    )


def _classify(error: BaseException) -> Failure | None:
    """What kind of failure ``error`` is; None for errors that are not W&B's (bugs),
    which are raised unchanged."""
    try:
        import wandb.errors as wandb_errors
    except ImportError:  # pragma: no cover - wandb is a dependency of nip-core
        wandb_errors = None
    try:
        import requests
    except ImportError:  # pragma: no cover - requests comes with wandb
        requests = None

    status = _http_status(error)
    if status == 404:
        return "not_found"
    if status in (401, 403):
        return "refused"
    if status is not None and (status in _TRANSIENT_STATUS or status >= 500):
        return "transient"
    if _is_transport_failure(error):
        # No HTTP response: its message (a DNS "no such host", say) proves nothing
        return "transient"
    is_wandb_error = (
        wandb_errors is not None and isinstance(error, wandb_errors.Error)
    ) or type(error).__name__ == "WandbApiFailedError"
    if (isinstance(error, ValueError) or is_wandb_error) and _NOT_FOUND.search(
        str(error)
    ):
        # wandb reports a missing run, project or artifact as a ValueError (its
        # RunNotFoundError), or a CommError or GraphQL error whose message says so
        return "not_found"
    if wandb_errors is not None and isinstance(error, wandb_errors.AuthenticationError):
        return "refused"
    if status is not None:
        return "refused"
    transient: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    if wandb_errors is not None:
        transient += (wandb_errors.CommError,)
    if requests is not None:
        transient += (requests.exceptions.RequestException,)
    if isinstance(error, transient):
        return "transient"
    if is_wandb_error or isinstance(error, ValueError):
        return "refused"
    return None


def _describe(error: BaseException) -> str:
    """``Type: message``, without the API key should the message hold it."""
    text = f"{type(error).__name__}: {error}"
    key = os.environ.get("WANDB_API_KEY", "")
    if len(key) >= 8:
        text = text.replace(key, "<WANDB_API_KEY>")
    return text


def backoff_delays(attempts: int, base_delay: float, max_delay: float) -> list[float]:
    """The waits between ``attempts`` tries: ``base_delay * 2**k``, capped at
    ``max_delay`` (``[1, 2, 4]`` for 4 attempts from 1 s)."""
    return [min(base_delay * 2**k, max_delay) for k in range(max(attempts - 1, 0))]


def call_with_retries(
    fn: Callable[[], T],
    *,
    what: str,
    attempts: int = DEFAULT_ATTEMPTS,
    base_delay: float = DEFAULT_BASE_DELAY,
    max_delay: float = DEFAULT_MAX_DELAY,
    sleep: Callable[[float], None] | None = None,
) -> T:
    """Call ``fn()``, retrying network failures with exponential backoff.

    Parameters
    ----------
    fn : Callable[[], T]
        The call to make.
    what : str
        What is fetched, for messages (``"W&B run 'me/nip/abc'"``).
    attempts : int
        How many times to try in all (at least 1).
    base_delay, max_delay : float
        The wait before retry ``k`` (from 0) is ``min(base_delay * 2**k,
        max_delay)`` seconds; no jitter, so runs behave the same every time.
    sleep : Callable[[float], None], optional
        How to wait (``time.sleep`` by default).

    Returns
    -------
    T
        What ``fn`` returned.

    Raises
    ------
    RemoteNotFoundError
        At once, when the run or artifact does not exist.
    RemoteError
        At once when the request is refused (credentials, malformed path), or after
        ``attempts`` network failures.
    """
    wait = sleep if sleep is not None else _sleep
    delays = backoff_delays(max(int(attempts), 1), base_delay, max_delay)
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as error:
            failure = _classify(error)
            if failure is None:
                raise
            described = _describe(error)
            if failure == "not_found":
                raise RemoteNotFoundError(
                    f"{what} does not exist, or these W&B credentials cannot see "
                    f"it ({described}); check the entity, project and run id"
                ) from error
            if failure == "refused":
                raise RemoteError(
                    f"could not get {what}: W&B refused the request ({described}); "
                    f"{_CHECK}"
                ) from error
            if attempt > len(delays):
                raise RemoteError(
                    f"could not get {what} after {attempt} attempt"
                    f"{'s' if attempt != 1 else ''}; last error: {described}; "
                    f"{_CHECK}"
                ) from error
            delay = delays[attempt - 1]
            logger.warning(
                "getting %s failed (%s); retry %d of %d in %.1f s",
                what,
                described,
                attempt,
                len(delays),
                delay,
            )
            wait(delay)


# --------------------------------------------------------------------------------------
# The API and paths


def get_wandb_api(*, sleep: Callable[[float], None] | None = None) -> Any:
    """A ``wandb.Api()``, connecting with retries.

    Raises
    ------
    RemoteError
        When the ``wandb`` package is not installed, or W&B cannot be reached or
        refuses the credentials.
    """
    try:
        import wandb
    except ImportError:
        raise RemoteError(
            "fetching runs from W&B needs the `wandb` package, which is not "
            "installed: pip install wandb"
        ) from None
    return call_with_retries(wandb.Api, what="a W&B API connection", sleep=sleep)


def wandb_path(entity: str | None, project: str | None, name: str) -> str:
    """``entity/project/name``, or ``project/name`` for W&B's default entity.

    An empty project is :data:`DEFAULT_WANDB_PROJECT`, where runs log when
    ``run.wandb_project`` is not set. (Leaving the project out would make W&B read a
    lone entity as the project.)
    """
    project = project or DEFAULT_WANDB_PROJECT
    return f"{entity}/{project}/{name}" if entity else f"{project}/{name}"


def checkpoint_alias(iteration: int) -> str:
    """The W&B alias of the checkpoint saved after ``iteration`` iterations:
    ``iter_<iteration>`` (the trainers add it to each checkpoint they upload)."""
    return f"iter_{int(iteration)}"


def checkpoint_artifact_name(
    entity: str | None, project: str | None, run_id: str, version: str = "latest"
) -> str:
    """The full name of version ``version`` of a run's checkpoint artifact.

    A number names the checkpoint of that iteration, as it does for local runs
    (``"5"`` becomes the alias ``iter_5``); anything else (``"latest"``, ``"v3"``,
    an alias) is W&B's own version name.
    """
    version = str(version)
    if version.isdigit():
        version = checkpoint_alias(int(version))
    return wandb_path(entity, project, f"checkpoint-{run_id}:{version}")


# --------------------------------------------------------------------------------------
# Fetching


def fetch_run_config(
    entity: str | None,
    project: str | None,
    run_id: str,
    *,
    api: Any = None,
    sleep: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """The config (hyper-parameters dict) of a W&B run.

    ``api`` is a ``wandb.Api`` to use (a new one by default).

    Raises
    ------
    RemoteNotFoundError
        When the run does not exist.
    RemoteError
        When W&B cannot be reached after the retries, or refuses the request.
    """
    path = wandb_path(entity, project, run_id)
    api = api if api is not None else get_wandb_api(sleep=sleep)
    return call_with_retries(
        lambda: dict(api.run(path).config), what=f"W&B run {path!r}", sleep=sleep
    )


def download_checkpoint(
    entity: str | None,
    project: str | None,
    run_id: str,
    version: str = "latest",
    *,
    map_location: Any = "cpu",
    api: Any = None,
    sleep: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Download and load a checkpoint of a W&B run.

    Parameters
    ----------
    entity, project : str | None
        Where the run is (W&B's default entity, :data:`DEFAULT_WANDB_PROJECT`, when
        empty).
    run_id : str
        The run.
    version : str
        The checkpoint: ``"latest"``, an iteration number (``"5"``: the alias
        ``iter_5`` the trainer gave it), or a W&B version or alias (``"v3"``).
    map_location : Any
        Where to load the tensors (``torch.load``'s ``map_location``).
    api : wandb.Api, optional
        The API object to use (a new one by default).

    Raises
    ------
    RemoteNotFoundError
        When the run has no such checkpoint artifact.
    RemoteError
        When W&B cannot be reached after the retries, or refuses the request.
    CheckpointError
        When the artifact holds no checkpoint file, or an unreadable one.
    """
    from nip_core.runs.checkpoints import latest_checkpoint_path, load_checkpoint

    name = checkpoint_artifact_name(entity, project, run_id, version)
    what = f"W&B artifact {name!r}"
    api = api if api is not None else get_wandb_api(sleep=sleep)
    artifact = call_with_retries(
        lambda: api.artifact(name, type="checkpoint"), what=what, sleep=sleep
    )
    with tempfile.TemporaryDirectory(prefix="nip-checkpoint-") as tmp:
        call_with_retries(
            lambda: artifact.download(root=tmp),
            what=f"the files of {what}",
            sleep=sleep,
        )
        path = latest_checkpoint_path(tmp)
        if path is None:
            found = sorted(Path(tmp).rglob("*.pt"))
            path = found[-1] if found else None
        if path is None:
            files = sorted(p.name for p in Path(tmp).rglob("*") if p.is_file())
            raise CheckpointError(
                f"{what} holds no checkpoint file (*.pt); it has: "
                f"{', '.join(files) or 'no files'}"
            )
        return load_checkpoint(path, map_location=map_location)
