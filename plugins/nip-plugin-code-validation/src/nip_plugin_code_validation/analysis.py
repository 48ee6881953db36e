"""``code_validation_judge``: an LLM grades each prover's argument.

For every prover of every episode that spoke, a text backend (the section
``code_validation``: ``judge_backend``, ``judge_model``; by default the run's backend
and the verifier's model) reads the problem, the solution, the truth, the prover's
stance (the verdict the protocol asked it to argue for, as its own prompt said;
with ``protocol_common.shared_reward``, helping the verifier judge correctly) and
its messages (``templates/judge/prover_argument.j2``) and answers two
grades from 0 to 10: *relevant* (it discusses this code) and *truthful* (its claims
about the code are true). Metrics per prover: ``<prover>.mean_relevant``,
``<prover>.mean_truthful`` (scaled to [0, 1]) and ``<prover>.unparsed_rate`` (replies
without both grades). An expensive analyser: run it with ``nip analyse RUN
--analyser code_validation_judge`` rather than every iteration.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np
from nip_core.errors import BackendWarning
from nip_core.protocols.decisions import DECISION_ACCEPT
from nip_core.text.analysis import RolloutAnalyser
from nip_core.text.backend import GenerationRequest, build_backend
from nip_core.text.environment import prover_target_verdicts
from nip_core.text.rollouts import TextRollouts

from nip_plugin_code_validation.agents import STANCE_WORDS, render_template

__all__ = ["ProverArgumentJudge", "parse_grades"]

_GRADE = re.compile(
    r"^\s*[*_]*(relevant|truthful)[*_]*\s*:\s*(\d+(?:\.\d+)?)", re.I | re.M
)


def parse_grades(text: str) -> dict[str, float] | None:
    """``{"relevant": r, "truthful": t}`` in [0, 1] from a judge's reply, or
    ``None`` unless both grades are there and within 0-10."""
    grades = {}
    for name, value in _GRADE.findall(text):
        number = float(value)
        if not 0 <= number <= 10:
            return None
        grades.setdefault(name.lower(), number / 10)
    return grades if len(grades) == 2 else None


class ProverArgumentJudge(RolloutAnalyser):
    """See the module docstring."""

    def __init__(self, hyper_params: Any, settings: Any, name: str):
        super().__init__(hyper_params, settings, name)
        options = hyper_params.code_validation
        self.max_episodes = options.judge_max_episodes
        backend = options.judge_backend or hyper_params.text_backend.name
        self.model = options.judge_model or hyper_params.agents["verifier"].model_name
        self.backend = build_backend(backend, hyper_params, settings)
        self._protocol_handler: Any = None

    def close(self) -> None:
        self.backend.close()

    def analyse(self, rollouts: TextRollouts) -> dict[str, float]:
        count = rollouts.batch_size
        if self.max_episodes is not None:
            count = min(count, int(self.max_episodes))
        targets = self._prover_targets(rollouts)
        shared_reward = bool(self.hyper_params.protocol_common.shared_reward)
        jobs: list[tuple[str, str]] = []
        requests = []
        for b in range(count):
            datapoint = rollouts.datapoints[b]
            for a, agent in enumerate(rollouts.agent_names):
                if "prover" not in agent:
                    continue
                active = rollouts["agents.active"][b, :, a]
                messages = [
                    text
                    for r in np.flatnonzero(active)
                    for text in rollouts["agents.message"][b, r, a]
                    if text
                ]
                if not messages:
                    continue
                target = int(targets[agent][b]) if agent in targets else -1
                # as the prover's own prompt has it: no stance, accept
                stance = STANCE_WORDS[target if target >= 0 else DECISION_ACCEPT]
                prompt = render_template(
                    "judge/prover_argument.j2",
                    question=datapoint["question"],
                    solution=str(datapoint["solution"]).rstrip(),
                    stance=stance,
                    shared_reward=shared_reward,
                    truth="correct" if int(datapoint["y"]) == 1 else "incorrect",
                    messages=messages,
                )
                jobs.append((agent, stance))
                requests.append(
                    GenerationRequest(
                        model=self.model,
                        messages=[{"role": "user", "content": prompt}],
                        temperature=0.0,
                        max_tokens=32,
                        seed=b,
                    )
                )
        results = self.backend.generate(requests)
        grades: dict[str, list[dict[str, float] | None]] = {}
        replies: dict[str, str] = {}
        for (agent, _), result in zip(jobs, results, strict=True):
            grades.setdefault(agent, []).append(parse_grades(result.choice.text))
            replies.setdefault(agent, result.choice.text)
        out: dict[str, float] = {}
        for agent, values in grades.items():
            parsed = [v for v in values if v is not None]
            out[f"{agent}.unparsed_rate"] = 1 - len(parsed) / len(values)
            if not parsed:
                warnings.warn(
                    f"code_validation_judge: none of the {len(values)} replies of "
                    f"model {self.model!r} (backend {self.backend.name!r}, "
                    "code_validation.judge_model and judge_backend) grading "
                    f"{agent} gave the two lines 'relevant: N' and 'truthful: N'; "
                    f"the first was {replies[agent][:120]!r}",
                    BackendWarning,
                    stacklevel=2,
                )
            for key in ("relevant", "truthful"):
                out[f"{agent}.mean_{key}"] = (
                    float(np.mean([v[key] for v in parsed])) if parsed else float("nan")
                )
        return out

    def _prover_targets(self, rollouts: TextRollouts) -> dict[str, np.ndarray]:
        """The verdict each prover argued for in each episode: what the
        protocol's rewards pay and the prover's prompt asked for (a randomized
        stance from the episode's seed, or its recorded ``prover_stance``)."""
        if self._protocol_handler is None:
            from nip_core.protocols.factory import build_protocol_handler

            self._protocol_handler = build_protocol_handler(
                self.hyper_params, self.settings
            )
        return prover_target_verdicts(self._protocol_handler, rollouts)
