"""Text rollouts: a torch-free record of a batch of text episodes.

A :class:`TextRollouts` holds ``B`` episodes, each padded to the protocol's
``max_message_rounds`` (``R``) rounds, over ``A`` agents and ``C`` channels, as NumPy
arrays (strings and chats as object arrays):

=============================  =========  ============================================
key                            shape      meaning
=============================  =========  ============================================
``seed``                       ``(B,)``   the episode's seed (seed-dependent protocols,
                                          randomized stances)
``y``                          ``(B,)``   the label: 1 iff the claim holds
``datapoint_index``            ``(B,)``   the datapoint's index in its dataset split
``prover_stance``              ``(B,)``   optional: the verdict a single prover argues
                                          for
``verdict``                    ``(B,)``   the verdict that ended the episode (0 reject,
                                          1 accept, 3 neither), -1 for none
``sample_key``                 ``(B,)``   what request seeds are derived from
``done``, ``terminated``       ``(B, R)`` after each round
``padding``                    ``(B, R)`` the round was not played (the episode was
                                          over)
``agents.active``              ``(B,R,A)`` the agent spoke this round
``agents.decision``            ``(B,R,A)`` 0 reject, 1 accept, 2 continue, 3 neither
``agents.reward``              ``(B,R,A)`` the step's reward
``agents.done``                ``(B,R,A)`` the agent was done after the round
``agents.valid_response``      ``(B,R,A)`` the response could be parsed (after
                                          retries)
``agents.retries``             ``(B,R,A)`` invalid responses asked again
``agents.token_limit``         ``(B,R,A)`` a response hit the token limit
``agents.tokens``              ``(B,R,A)`` tokens the backend generated for the turn
                                          (every attempt; -1 when not known)
``agents.raw_output``          ``(B,R,A)`` the agent's text as generated (or ``None``)
``agents.prompt``              ``(B,R,A)`` the chat it was given (or ``None``)
``agents.message``             ``(B,R,A,C)`` what it sent on each channel (or
                                          ``None``)
=============================  =========  ============================================

plus ``datapoints``, one dict of the datapoint's fields per episode. Keys are read as
strings (``"agents.decision"``) or tuples (``("agents", "decision")``), so
:meth:`TextRollouts.step_inputs` gives the protocol step the mapping it reads.

:meth:`TextRollouts.save_jsonl` writes one JSON object per episode (the run
directory's ``rollouts/iter_000003.jsonl``) and :meth:`TextRollouts.load_jsonl` reads
it back exactly; :meth:`TextRollouts.write_transcript` writes a readable transcript.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nip_core.runs.io import atomic_write_text

__all__ = [
    "DECISION_NAMES",
    "RETURN_DECIMALS",
    "ROLLOUT_FORMAT",
    "TextRollouts",
    "exact_returns",
    "plain",
]

ROLLOUT_FORMAT = 1
"""The version of the JSON layout of one episode."""

DECISION_NAMES: dict[int, str] = {
    -1: "none",
    0: "reject",
    1: "accept",
    2: "continue",
    3: "neither",
}

# name: (level, dtype, fill)
_FIELDS: dict[str, tuple[str, Any, Any]] = {
    "seed": ("batch", np.int64, 0),
    "y": ("batch", np.int64, 0),
    "datapoint_index": ("batch", np.int64, 0),
    "verdict": ("batch", np.int64, -1),
    "sample_key": ("batch", object, ""),
    "done": ("round", np.bool_, False),
    "terminated": ("round", np.bool_, False),
    "padding": ("round", np.bool_, False),
    "agents.active": ("agent", np.bool_, False),
    "agents.decision": ("agent", np.int64, 2),
    "agents.reward": ("agent", np.float64, 0.0),
    "agents.done": ("agent", np.bool_, False),
    "agents.valid_response": ("agent", np.bool_, True),
    "agents.retries": ("agent", np.int64, 0),
    "agents.token_limit": ("agent", np.bool_, False),
    "agents.tokens": ("agent", np.int64, -1),
    "agents.raw_output": ("agent", object, None),
    "agents.prompt": ("agent", object, None),
    "agents.message": ("channel", object, None),
}
_OPTIONAL: dict[str, tuple[str, Any, Any]] = {
    "prover_stance": ("batch", np.int64, 0),
}
_AGENT_FIELDS = [
    k.split(".", 1)[1] for k, (lvl, _, _) in _FIELDS.items() if lvl == "agent"
]


def plain(value: Any) -> Any:
    """A JSON-able copy of ``value`` (NumPy scalars and arrays as Python values)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _key(key: str | tuple[str, ...]) -> str:
    return ".".join(key) if isinstance(key, tuple) else key


RETURN_DECIMALS = 9
"""Returns within float rounding of a decimal of this many places are that
decimal (:func:`exact_returns`)."""


def exact_returns(values: Any) -> np.ndarray:
    """Returns (or means of returns) that are a decimal of at most
    :data:`RETURN_DECIMALS` places up to float rounding (``1e-12``, relative
    above 1), as that decimal; any other value as it is.

    Each reward is the configured decimal (the environment reads the protocol's
    float32 rewards back as the decimals they stand for), but a float sum of
    several is not: three continues at ``-0.2`` and a right verdict gave
    ``0.3999999999999999``, so an expert iteration threshold of ``0.4`` left the
    episode out, and MALT's labels at a mid-point moved likewise. Such a return
    is the decimal it adds up to here, so thresholds and mid-points compare with
    it as configured.
    """
    values = np.asarray(values, dtype=np.float64)
    rounded = np.round(values, RETURN_DECIMALS)
    near = np.abs(values - rounded) <= 1e-12 * np.maximum(1.0, np.abs(values))
    return np.where(near, rounded, values)


class TextRollouts(Mapping[str, np.ndarray]):
    """A batch of text episodes (see the module docstring for the keys).

    Parameters
    ----------
    agent_names, channel_names : Sequence[str]
        The protocol's agents and channels, in order.
    max_rounds : int
        ``R``: every episode is padded to this many rounds.
    datapoints : Sequence[Mapping]
        One datapoint (its fields, ``"y"`` included) per episode.
    iteration : int
        The training iteration the episodes belong to.
    split : str
        ``"train"`` or ``"test"`` (or ``"validation"``).
    """

    def __init__(
        self,
        agent_names: Sequence[str],
        channel_names: Sequence[str],
        max_rounds: int,
        datapoints: Sequence[Mapping[str, Any]],
        *,
        iteration: int = 0,
        split: str = "train",
    ):
        self.agent_names = list(agent_names)
        self.channel_names = list(channel_names)
        self.max_rounds = int(max_rounds)
        self.datapoints: list[dict[str, Any]] = [dict(d) for d in datapoints]
        self.iteration = int(iteration)
        self.split = str(split)
        self._data: dict[str, np.ndarray] = {}
        for name, (level, dtype, fill) in _FIELDS.items():
            self._data[name] = self._filled(level, dtype, fill)
        if self.datapoints:
            self._data["y"][:] = [int(d["y"]) for d in self.datapoints]

    def _shape(self, level: str) -> tuple[int, ...]:
        B, R = len(self.datapoints), self.max_rounds
        A, C = len(self.agent_names), len(self.channel_names)
        return {
            "batch": (B,),
            "round": (B, R),
            "agent": (B, R, A),
            "channel": (B, R, A, C),
        }[level]

    def _filled(self, level: str, dtype: Any, fill: Any) -> np.ndarray:
        array = np.empty(self._shape(level), dtype=dtype)
        array[...] = fill
        return array

    # ----------------------------------------------------------------------------------
    # Mapping

    def __getitem__(self, key: str | tuple[str, ...]) -> np.ndarray:  # type: ignore[override]
        return self._data[_key(key)]

    def __setitem__(self, key: str | tuple[str, ...], value: Any) -> None:
        name = _key(key)
        if name in self._data:
            self._data[name][...] = value
            return
        if name not in _OPTIONAL:
            raise KeyError(
                f"TextRollouts has no field {name!r}; fields: {', '.join(self._data)}"
            )
        level, dtype, _ = _OPTIONAL[name]
        array = np.empty(self._shape(level), dtype=dtype)
        array[...] = value
        self._data[name] = array

    def __contains__(self, key: object) -> bool:
        if isinstance(key, tuple):
            key = _key(key)  # type: ignore[arg-type]
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    # ----------------------------------------------------------------------------------
    # Shape

    @property
    def batch_size(self) -> int:
        """``B``: the number of episodes."""
        return len(self.datapoints)

    @property
    def num_agents(self) -> int:
        return len(self.agent_names)

    def agent_index(self, agent_name: str) -> int:
        try:
            return self.agent_names.index(agent_name)
        except ValueError:
            raise KeyError(
                f"no agent {agent_name!r}; agents: {', '.join(self.agent_names)}"
            ) from None

    def channel_index(self, channel_name: str) -> int:
        try:
            return self.channel_names.index(channel_name)
        except ValueError:
            raise KeyError(
                f"no channel {channel_name!r}; channels: "
                f"{', '.join(self.channel_names)}"
            ) from None

    # ----------------------------------------------------------------------------------
    # Derived quantities

    @property
    def episode_length(self) -> np.ndarray:
        """``(B,)``: the rounds each episode played."""
        return (~self._data["padding"]).sum(axis=1)

    @property
    def episode_reward(self) -> np.ndarray:
        """``(B, A)``: each agent's return (sum of its rewards), as
        :func:`exact_returns` gives it."""
        return exact_returns(self._data["agents.reward"].sum(axis=1))

    def done_before(self, round_id: int) -> np.ndarray:
        """``(B,)``: whether each episode was over before ``round_id``."""
        if round_id == 0:
            return np.zeros(self.batch_size, dtype=bool)
        return self._data["done"][:, round_id - 1].copy()

    def step_inputs(self, round_id: int) -> dict[Any, np.ndarray]:
        """The mapping the protocol step reads for round ``round_id``.

        ``round``, ``seed``, ``y``, ``done`` / ``terminated`` / ``("agents",
        "done")`` as they were *before* the round, and the round's ``("agents",
        "decision")`` and ``("agents", "valid_response")`` (and ``prover_stance``
        when present); see :mod:`nip_core.protocols.base`.
        """
        B, A = self.batch_size, self.num_agents
        before = round_id - 1
        inputs: dict[Any, np.ndarray] = {
            "round": np.full(B, round_id, dtype=np.int64),
            "seed": self._data["seed"],
            "y": self._data["y"],
            "done": self.done_before(round_id),
            "terminated": (
                self._data["terminated"][:, before].copy()
                if round_id > 0
                else np.zeros(B, dtype=bool)
            ),
            ("agents", "done"): (
                self._data["agents.done"][:, before].copy()
                if round_id > 0
                else np.zeros((B, A), dtype=bool)
            ),
            ("agents", "decision"): self._data["agents.decision"][:, round_id],
            ("agents", "valid_response"): self._data["agents.valid_response"][
                :, round_id
            ],
        }
        if "prover_stance" in self._data:
            inputs["prover_stance"] = self._data["prover_stance"]
        return inputs

    def agent_chat(
        self, episode: int, agent_name: str, round_id: int | None = None
    ) -> list[dict[str, str]] | None:
        """The agent's chat at a round: the prompt it got plus its own response.

        ``round_id=None`` takes the agent's last active round. The chat ends on the
        agent's own message, ready for supervised fine-tuning. ``None`` when the
        agent never spoke (or not in that round).
        """
        a = self.agent_index(agent_name)
        active = self._data["agents.active"][episode, :, a]
        if round_id is None:
            rounds = np.flatnonzero(active)
            if len(rounds) == 0:
                return None
            round_id = int(rounds[-1])
        elif not active[round_id]:
            return None
        prompt = self._data["agents.prompt"][episode, round_id, a]
        output = self._data["agents.raw_output"][episode, round_id, a]
        if prompt is None or output is None:
            return None
        return [*(dict(m) for m in prompt), {"role": "assistant", "content": output}]

    # ----------------------------------------------------------------------------------
    # Selection

    def select(self, indices: Sequence[int] | np.ndarray) -> TextRollouts:
        """A copy holding the episodes at ``indices`` (repeats allowed)."""
        indices = np.asarray(indices, dtype=np.int64)
        out = TextRollouts(
            self.agent_names,
            self.channel_names,
            self.max_rounds,
            [self.datapoints[i] for i in indices],
            iteration=self.iteration,
            split=self.split,
        )
        for name, array in self._data.items():
            out._data[name] = _deep_copy(array[indices])
        return out

    @classmethod
    def concatenate(cls, parts: Sequence[TextRollouts]) -> TextRollouts:
        """The episodes of several batches (same agents, channels and rounds)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        first = parts[0]
        for part in parts[1:]:
            if (
                part.agent_names != first.agent_names
                or part.channel_names != first.channel_names
                or part.max_rounds != first.max_rounds
            ):
                raise ValueError(
                    "cannot concatenate rollouts of different agents, channels or "
                    "rounds"
                )
        out = cls(
            first.agent_names,
            first.channel_names,
            first.max_rounds,
            [d for part in parts for d in part.datapoints],
            iteration=first.iteration,
            split=first.split,
        )
        names = set(first._data)
        for part in parts[1:]:
            names &= set(part._data)
        out._data = {
            name: np.concatenate([part._data[name] for part in parts])
            for name in first._data
            if name in names
        }
        return out

    # ----------------------------------------------------------------------------------
    # Equality

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TextRollouts):
            return NotImplemented
        if (
            self.agent_names != other.agent_names
            or self.channel_names != other.channel_names
            or self.max_rounds != other.max_rounds
            or self.iteration != other.iteration
            or self.split != other.split
            or plain(self.datapoints) != plain(other.datapoints)
            or set(self._data) != set(other._data)
        ):
            return False
        for name, array in self._data.items():
            theirs = other._data[name]
            if array.dtype != theirs.dtype or array.shape != theirs.shape:
                return False
            if array.dtype == object:
                if plain(array) != plain(theirs):
                    return False
            elif not np.array_equal(array, theirs):
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"TextRollouts(episodes={self.batch_size}, rounds={self.max_rounds}, "
            f"agents={self.agent_names}, split={self.split!r}, "
            f"iteration={self.iteration})"
        )

    # ----------------------------------------------------------------------------------
    # JSON lines

    def episode_dict(self, episode: int) -> dict[str, Any]:
        """One episode as a JSON-able dict (a line of :meth:`save_jsonl`)."""
        d = self._data
        rounds = []
        for r in range(self.max_rounds):
            agents = {}
            for a, name in enumerate(self.agent_names):
                entry = {
                    field: plain(d[f"agents.{field}"][episode, r, a])
                    for field in _AGENT_FIELDS
                }
                entry["messages"] = {
                    channel: d["agents.message"][episode, r, a, c]
                    for c, channel in enumerate(self.channel_names)
                    if d["agents.message"][episode, r, a, c] is not None
                }
                agents[name] = entry
            rounds.append(
                {
                    "round": r,
                    "padding": bool(d["padding"][episode, r]),
                    "done": bool(d["done"][episode, r]),
                    "terminated": bool(d["terminated"][episode, r]),
                    "agents": agents,
                }
            )
        return {
            "format": ROLLOUT_FORMAT,
            "iteration": self.iteration,
            "split": self.split,
            "episode": episode,
            "agent_names": list(self.agent_names),
            "channel_names": list(self.channel_names),
            "max_rounds": self.max_rounds,
            "datapoint": plain(self.datapoints[episode]),
            "datapoint_index": int(d["datapoint_index"][episode]),
            "seed": int(d["seed"][episode]),
            "y": int(d["y"][episode]),
            "prover_stance": (
                int(d["prover_stance"][episode]) if "prover_stance" in d else None
            ),
            "verdict": int(d["verdict"][episode]),
            "sample_key": d["sample_key"][episode],
            "rounds": rounds,
        }

    @classmethod
    def from_episode_dicts(cls, episodes: Sequence[Mapping[str, Any]]) -> TextRollouts:
        """Rebuild rollouts from :meth:`episode_dict` records (one batch)."""
        if not episodes:
            raise ValueError("no episodes to build rollouts from")
        first = episodes[0]
        if first.get("format") != ROLLOUT_FORMAT:
            raise ValueError(
                f"unknown text rollout format {first.get('format')!r} (this version "
                f"reads format {ROLLOUT_FORMAT})"
            )
        out = cls(
            first["agent_names"],
            first["channel_names"],
            first["max_rounds"],
            [e["datapoint"] for e in episodes],
            iteration=first["iteration"],
            split=first["split"],
        )
        d = out._data
        if first.get("prover_stance") is not None:
            out["prover_stance"] = [e["prover_stance"] for e in episodes]
        for b, episode in enumerate(episodes):
            for name in ("datapoint_index", "seed", "y", "verdict", "sample_key"):
                d[name][b] = episode[name]
            for r, round_dict in enumerate(episode["rounds"]):
                for name in ("padding", "done", "terminated"):
                    d[name][b, r] = round_dict[name]
                for a, agent_name in enumerate(out.agent_names):
                    entry = round_dict["agents"][agent_name]
                    for field in _AGENT_FIELDS:
                        d[f"agents.{field}"][b, r, a] = entry[field]
                    for channel, text in entry["messages"].items():
                        d["agents.message"][b, r, a, out.channel_index(channel)] = text
        return out

    def save_jsonl(self, path: str | Path) -> Path:
        """Write one JSON object per episode to ``path``, atomically."""
        text = "".join(
            json.dumps(self.episode_dict(b), ensure_ascii=False) + "\n"
            for b in range(self.batch_size)
        )
        return atomic_write_text(path, text)

    @classmethod
    def load_jsonl(cls, path: str | Path) -> TextRollouts:
        """Read what :meth:`save_jsonl` wrote.

        Raises
        ------
        CheckpointError
            When a line is not an episode's JSON (a damaged file), naming the file
            and the line.
        """
        from nip_core.errors import CheckpointError

        episodes = []
        with open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                try:
                    episodes.append(json.loads(raw.decode("utf-8")))
                except ValueError as error:  # UnicodeDecodeError included
                    raise CheckpointError(
                        f"{path} is damaged at line {number} ({error}): its "
                        "rollouts cannot be read; put a good copy back"
                    ) from None
        return cls.from_episode_dicts(episodes)

    # ----------------------------------------------------------------------------------
    # Transcripts

    def transcript(self, episode: int) -> str:
        """A readable account of one episode."""
        d = self._data
        y = int(d["y"][episode])
        verdict = int(d["verdict"][episode])
        lines = [
            f"=== episode {episode} (datapoint {int(d['datapoint_index'][episode])}, "
            f"y={y}, verdict: {DECISION_NAMES.get(verdict, verdict)}"
            + (
                ", correct"
                if verdict in (0, 1) and verdict == y
                else (", wrong" if verdict in (0, 1) else "")
            )
            + ") ==="
        ]
        if "prover_stance" in d:
            lines.append(
                f"prover stance: {DECISION_NAMES[int(d['prover_stance'][episode])]}"
            )
        for r in range(self.max_rounds):
            if d["padding"][episode, r]:
                break
            for a, agent in enumerate(self.agent_names):
                if not d["agents.active"][episode, r, a]:
                    continue
                notes = []
                retries = int(d["agents.retries"][episode, r, a])
                if retries:
                    notes.append(f"{retries} {'retry' if retries == 1 else 'retries'}")
                if not d["agents.valid_response"][episode, r, a]:
                    notes.append("invalid response")
                if d["agents.token_limit"][episode, r, a]:
                    notes.append("hit the token limit")
                decision = int(d["agents.decision"][episode, r, a])
                if decision != 2:
                    notes.append(f"decision: {DECISION_NAMES.get(decision, decision)}")
                header = f"[round {r}] {agent}"
                if notes:
                    header += f" ({'; '.join(notes)})"
                lines.append(header)
                for c, channel in enumerate(self.channel_names):
                    text = d["agents.message"][episode, r, a, c]
                    if text is not None:
                        lines.append(f"  -> {channel}: {text}")
                raw = d["agents.raw_output"][episode, r, a]
                if not d["agents.valid_response"][episode, r, a] and raw is not None:
                    # what the model wrote, which the messages above (empty) hide
                    lines.append(f"  (its last attempt, not sent: {raw})")
        rewards = ", ".join(
            f"{agent} {float(value):g}"
            for agent, value in zip(
                self.agent_names, self.episode_reward[episode], strict=True
            )
        )
        lines.append(f"returns: {rewards}")
        return "\n".join(lines) + "\n"

    def write_transcript(self, path: str | Path) -> Path:
        """Write every episode's transcript to ``path``, atomically."""
        text = "\n".join(self.transcript(b) for b in range(self.batch_size))
        return atomic_write_text(path, text)


def _deep_copy(array: np.ndarray) -> np.ndarray:
    if array.dtype != object:
        return array.copy()
    out = np.empty(array.shape, dtype=object)
    for index, value in np.ndenumerate(array):
        out[index] = json.loads(json.dumps(value)) if isinstance(value, list) else value
    return out
