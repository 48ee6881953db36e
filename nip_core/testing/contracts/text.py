"""Contract suites of the text world: backends, text scenarios and text trainers.

A plugin's tests subclass these and run them on its own classes.

:class:`BackendContract`
    A text backend: batched generation (one result per request, in order; ``n``
    choices; seeded requests reproduce; the token limit is reported), and the
    fine-tuning lifecycle (create, look up by name, poll, use the new model, clean
    up, DPO jobs, cancel). Override :meth:`BackendContract.make_backend`.
:class:`TextScenarioContract`
    A text scenario: under each protocol it supports, episodes run to their end
    with the scripted server or random agents, every agent speaks in some episode,
    every turn's prompt starts with the system prompt and shows only what the agent
    can see, a decider's written
    verdicts (``write_verdict``) read back as those verdicts, and the rollouts
    round-trip through JSONL. Override :meth:`TextScenarioContract.make_hyper_params`
    and the ``text_scenario_plugins`` fixture.
:class:`TextTrainerContract`
    A staged text trainer: a two-iteration run writes its metrics, rollouts and
    state; a run killed after *every* stage (and in the middle of stages, after
    their work but before their state is saved) and resumed ends with the same
    metrics and rollouts as an uninterrupted one, without a duplicate fine-tune
    job; injected API faults do not change the result; the API key never reaches
    the run directory. By default it uses the synthetic text scenario and its
    scripted model (:mod:`nip_core.testing.synthetic_text`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from nip_core.testing.contracts.trainer import KilledForTest, comparable_metrics

__all__ = [
    "TEXT_PROTOCOLS",
    "BackendContract",
    "TextScenarioContract",
    "TextTrainerContract",
    "kill_at_stage",
    "rollout_files",
]


def kill_at_stage(iteration: int, stage: str):
    """A stage callback raising :class:`KilledForTest` once ``stage`` of
    ``iteration`` is next (its predecessor's state is saved)."""

    def callback(trainer: Any, at_iteration: int, next_stage: str) -> None:
        if at_iteration == iteration and next_stage == stage:
            raise KilledForTest(f"killed before {stage} of iteration {iteration}")

    return callback


def rollout_files(run_dir: Path) -> dict[str, list[Any]]:
    """Every rollouts JSONL file of a run, parsed, by file name."""
    out = {}
    for path in sorted((Path(run_dir) / "rollouts").glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            out[path.name] = [json.loads(line) for line in f if line.strip()]
    return out


# --------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------


class BackendContract:
    """Checks every text backend must pass (see the module docstring).

    Subclasses override :meth:`make_backend` (a fixture-free factory called inside
    each test) and set :attr:`model` to a model the backend can generate with and
    fine-tune. Backends without seeded sampling set ``checks_seed = False``.
    """

    model: ClassVar[str] = "scripted"
    checks_seed: ClassVar[bool] = True
    poll_limit: ClassVar[int] = 200
    """Polls of a fine-tune job before the test gives up."""

    def make_backend(self) -> Any:
        """A fresh backend (closed by the test)."""
        raise TypeError("a BackendContract subclass must define make_backend()")

    @pytest.fixture
    def backend(self) -> Iterator[Any]:
        backend = self.make_backend()
        try:
            yield backend
        finally:
            backend.close()

    def _request(self, text: str, **options: Any) -> Any:
        from nip_core.text.backend import GenerationRequest

        return GenerationRequest(
            model=self.model,
            messages=[
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": text},
            ],
            **options,
        )

    def test_generate_answers_every_request_in_order(self, backend: Any) -> None:
        requests = [
            self._request(f"Say something about {i}.", seed=i, max_tokens=16)
            for i in range(5)
        ]
        results = backend.generate(requests)
        assert len(results) == 5
        for result in results:
            assert len(result.choices) == 1
            assert isinstance(result.choice.text, str)

    def test_n_choices(self, backend: Any) -> None:
        [result] = backend.generate([self._request("Hello.", n=3, max_tokens=8)])
        assert len(result.choices) == 3

    def test_seeded_requests_reproduce(self, backend: Any) -> None:
        if not self.checks_seed or not backend.supports_seed:
            pytest.skip("the backend does not promise seeded sampling")
        request = self._request("Tell a story.", seed=7, temperature=1.0, max_tokens=12)
        first = backend.generate([request])[0].choice.text
        second = backend.generate([request])[0].choice.text
        assert first == second

    def test_token_limit_is_reported(self, backend: Any) -> None:
        request = self._request(
            "Write a long essay about rivers.", max_tokens=2, seed=1
        )
        [result] = backend.generate([request])
        assert result.choice.finish_reason in ("length", "stop")
        if result.choice.finish_reason == "stop":
            # a reply this short may genuinely end: then it has at most 2 tokens
            assert len(result.choice.text.split()) <= 2
        else:
            assert result.choice.hit_token_limit

    def _wait(self, backend: Any, job_id: str) -> Any:
        import time

        for _ in range(self.poll_limit):
            job = backend.get_fine_tune_job(job_id)
            if job.finished:
                return job
            time.sleep(0.05)
        raise AssertionError(f"fine-tune job {job_id} did not finish")

    def test_supervised_fine_tune_lifecycle(self, backend: Any) -> None:
        from nip_core.text.backend import FineTuneRequest

        chats = [
            [
                {"role": "user", "content": f"What is {i} plus {i}?"},
                {"role": "assistant", "content": f"It is {2 * i}."},
            ]
            for i in range(4)
        ]
        request = FineTuneRequest(
            name="contract-sft",
            base_model=self.model,
            method="supervised",
            examples=chats,
        )
        assert backend.find_fine_tune_job("contract-sft") is None
        job = backend.create_fine_tune_job(request)
        assert job.name == "contract-sft"
        found = backend.find_fine_tune_job("contract-sft")
        assert found is not None and found.id == job.id
        job = self._wait(backend, job.id)
        assert job.status == "succeeded", job.error
        assert job.fine_tuned_model
        from nip_core.text.backend import GenerationRequest

        [result] = backend.generate(
            [
                GenerationRequest(
                    model=job.fine_tuned_model,
                    messages=[{"role": "user", "content": "What is 3 plus 3?"}],
                    max_tokens=8,
                    seed=0,
                )
            ]
        )
        assert isinstance(result.choice.text, str)
        backend.cleanup_fine_tune_job(job.id)

    def test_dpo_fine_tune(self, backend: Any) -> None:
        from nip_core.text.backend import FineTuneRequest, PreferenceExample

        pairs = [
            PreferenceExample(
                prompt=[{"role": "user", "content": f"Is {i} even?"}],
                chosen="yes" if i % 2 == 0 else "no",
                rejected="no" if i % 2 == 0 else "yes",
            )
            for i in range(4)
        ]
        job = backend.create_fine_tune_job(
            FineTuneRequest(
                name="contract-dpo", base_model=self.model, method="dpo", examples=pairs
            )
        )
        job = self._wait(backend, job.id)
        assert job.status == "succeeded", job.error
        backend.cleanup_fine_tune_job(job.id)

    def test_cancel(self, backend: Any) -> None:
        from nip_core.text.backend import FineTuneRequest

        chats = [
            [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
        ]
        job = backend.create_fine_tune_job(
            FineTuneRequest(
                name="contract-cancel",
                base_model=self.model,
                method="supervised",
                examples=chats * 2,
            )
        )
        cancelled = backend.cancel_fine_tune_job(job.id)
        # a job may finish before the cancel arrives; otherwise it is cancelled
        assert cancelled.status in ("cancelled", "succeeded")
        assert backend.get_fine_tune_job(job.id).finished


# --------------------------------------------------------------------------------------
# Text scenarios
# --------------------------------------------------------------------------------------


TEXT_PROTOCOLS: tuple[str, ...] = (
    "nip",
    "adp",
    "debate",
    "merlin_arthur",
    "mnip",
    "solo_verifier",
)
"""The core's protocols that run in the text world."""


class TextScenarioContract:
    """Checks every text scenario must pass (see the module docstring).

    Subclasses set :attr:`scenario_name` and :attr:`protocols`, override the
    ``text_scenario_plugins`` fixture to register the scenario, and
    :meth:`make_hyper_params` to give small parameters pointing the ``openai``
    backend at ``server`` (a started
    :class:`~nip_core.testing.openai_server.OpenAiTestServer`).
    :meth:`make_server` gives a server whose responder answers in the scenario's
    format (the default answers with a ``Decision: accept`` for verifiers).
    """

    scenario_name: ClassVar[str] = ""
    protocols: ClassVar[tuple[str, ...]] = TEXT_PROTOCOLS
    """The protocols to run the scenario under, one test each (a plugin's own
    protocols too); those the scenario's ``ScenarioSpec.supported_protocols``
    leaves out are skipped, saying so."""

    def make_hyper_params(self, protocol: str, server: Any, **overrides: Any) -> Any:
        raise TypeError(
            "a TextScenarioContract subclass must define make_hyper_params()"
        )

    def make_server(self) -> Any:
        from nip_core.testing.synthetic_text.fixtures import scripted_server

        return scripted_server()

    def make_settings(self, root: Path) -> Any:
        from nip_core.settings import ExperimentSettings

        return ExperimentSettings(
            runs_dir=str(root / "runs"),
            data_dir=str(root / "data"),
            cache_dir=str(root / "cache"),
            show_progress=False,
        )

    @pytest.fixture
    def text_scenario_plugins(self, plugin_manager: Any) -> Any:
        """Register the scenario; the default registers nothing."""
        return plugin_manager

    @pytest.fixture
    def server(self) -> Iterator[Any]:
        server = self.make_server()
        with server:
            yield server

    def _sample(self, instance: Any, count: int = 4) -> Any:
        from nip_core.text.sampling import sample_rollouts

        env = instance.train_environment
        indices = list(range(min(count, len(env.dataset))))
        return sample_rollouts(env, instance.agents, indices, iteration=0)

    def test_scenario_is_text(self, text_scenario_plugins: Any) -> None:
        from nip_core.plugins import get_plugin_manager

        spec = get_plugin_manager().scenarios[self.scenario_name]
        assert spec.data_world == "text"
        assert spec.environment_class is not None
        assert f"{self.scenario_name}/whole" in get_plugin_manager().agent_parts

    def pytest_generate_tests(self, metafunc: Any) -> None:
        # the subclass's own protocols, however many (a parametrize decorator
        # here would fix the base class's)
        if "protocol" in metafunc.fixturenames:
            metafunc.parametrize("protocol", list(type(self).protocols))

    def _skip_unsupported(self, protocol: str) -> None:
        from nip_core.plugins import get_plugin_manager

        spec = get_plugin_manager().scenarios[self.scenario_name]
        supported = spec.supported_protocols
        if supported is not None and protocol not in supported:
            pytest.skip(
                f"scenario {self.scenario_name!r} supports only "
                f"{', '.join(supported)} (its ScenarioSpec.supported_protocols)"
            )

    def test_episodes_run_to_their_end(
        self,
        text_scenario_plugins: Any,
        server: Any,
        tmp_path: Path,
        protocol: str,
    ) -> None:
        from nip_core.factory import build_scenario_instance
        from nip_core.text.rollouts import TextRollouts

        self._skip_unsupported(protocol)
        hyper_params = self.make_hyper_params(protocol, server)
        instance = build_scenario_instance(hyper_params, self.make_settings(tmp_path))
        try:
            rollouts = self._sample(instance)
        finally:
            instance.close()
        handler = instance.protocol_handler
        lengths = rollouts.episode_length
        assert (lengths >= 1).all()
        for a, agent in enumerate(rollouts.agent_names):
            assert rollouts["agents.active"][:, :, a].any(), (
                f"{agent} never spoke in {rollouts.batch_size} episodes of "
                f"{protocol}: make_server's responder must let the episodes go on "
                "until every agent has had a turn (the verifier asks before it "
                "decides)"
            )
        for b in range(rollouts.batch_size):
            last = int(lengths[b]) - 1
            assert rollouts["done"][b, last], "an episode did not end"
            assert rollouts["padding"][b, last + 1 :].all()
            for a, agent in enumerate(rollouts.agent_names):
                visible = set(handler.get_agent_visible_channels(agent))
                for r in range(last + 1):
                    if not rollouts["agents.active"][b, r, a]:
                        continue
                    prompt = rollouts["agents.prompt"][b, r, a]
                    if prompt is None:
                        continue  # a random agent
                    assert prompt[0]["role"] == "system"
                    assert prompt[-1]["role"] == "user"
                    shown = "\n".join(m["content"] for m in prompt[1:])
                    for r2 in range(r):
                        for c, channel in enumerate(rollouts.channel_names):
                            for a2 in range(rollouts.num_agents):
                                text = rollouts["agents.message"][b, r2, a2, c]
                                if a2 == a or not text or len(text) < 12:
                                    continue
                                if channel in visible:
                                    assert text in shown, (
                                        f"{agent} was not shown {channel} of round {r2}"
                                    )
        self._assert_answers_parse(rollouts)
        path = tmp_path / "rollouts.jsonl"
        rollouts.save_jsonl(path)
        assert TextRollouts.load_jsonl(path) == rollouts

    def _assert_answers_parse(self, rollouts: Any) -> None:
        """The server's model answers in the format the prompts ask for: every
        model turn ends valid, and some episode ends with a verdict."""
        data = rollouts
        for a, agent in enumerate(rollouts.agent_names):
            for b in range(rollouts.batch_size):
                for r in range(int(rollouts.episode_length[b])):
                    if not data["agents.active"][b, r, a]:
                        continue
                    if data["agents.prompt"][b, r, a] is None:
                        continue  # a random agent
                    assert data["agents.valid_response"][b, r, a], (
                        f"{agent}'s response in round {r} of episode {b} was "
                        f"invalid after {int(data['agents.retries'][b, r, a])} "
                        "retries (last output: "
                        f"{data['agents.raw_output'][b, r, a]!r}): make_server's "
                        "responder must answer in the format the agent's "
                        "system_prompt asks for and its parse_response reads"
                    )
        verdicts = [int(v) for v in data["verdict"]]
        assert any(v in (0, 1) for v in verdicts), (
            "no episode ended with a verdict: make_server's responder must let "
            "the verifier decide in the scenario's format"
        )

    def test_written_verdicts_read_back(
        self, text_scenario_plugins: Any, server: Any, tmp_path: Path
    ) -> None:
        """What a decider's ``write_verdict`` writes, its ``parse_response`` reads
        as that verdict (expert iteration writes true verdicts with it)."""
        from nip_core.factory import build_scenario_instance
        from nip_core.protocols.decisions import DECISION_ACCEPT, DECISION_REJECT
        from nip_core.text.sampling import turn_contexts

        self._skip_unsupported(self.protocols[0])
        hyper_params = self.make_hyper_params(self.protocols[0], server)
        instance = build_scenario_instance(hyper_params, self.make_settings(tmp_path))
        try:
            rollouts = self._sample(instance)
            environment = instance.train_environment
            checked = 0
            for a, agent_name in enumerate(rollouts.agent_names):
                agent = getattr(instance.agents[agent_name], "whole", None)
                if not getattr(agent, "has_decider", False):
                    continue
                for b in range(rollouts.batch_size):
                    rounds = [
                        r
                        for r in range(int(rollouts.episode_length[b]))
                        if rollouts["agents.active"][b, r, a]
                        and rollouts["agents.raw_output"][b, r, a]
                    ]
                    if not rounds:
                        continue
                    [(_, context)] = turn_contexts(
                        environment, [agent_name], rollouts, rounds[-1], [b]
                    )
                    text = rollouts["agents.raw_output"][b, rounds[-1], a]
                    for decision in (DECISION_ACCEPT, DECISION_REJECT):
                        written = agent.write_verdict(text, decision)
                        parsed = agent.parse_response(context, written)
                        assert parsed.valid and parsed.decision == decision, (
                            f"{type(agent).__name__}.write_verdict wrote "
                            f"{written!r} for decision {decision}, which its "
                            f"parse_response reads as {parsed}: a scenario that "
                            "reads its own verdict format must override "
                            "write_verdict (and verdict_instruction) to match"
                        )
                        checked += 1
        finally:
            instance.close()
        assert checked, "no decider spoke: nothing to check"

    def test_random_agents_play(
        self, text_scenario_plugins: Any, server: Any, tmp_path: Path
    ) -> None:
        from nip_core.factory import build_scenario_instance

        self._skip_unsupported(self.protocols[0])
        hyper_params = self.make_hyper_params(
            self.protocols[0], server, agents={"_default": {"is_random": True}}
        )
        instance = build_scenario_instance(hyper_params, self.make_settings(tmp_path))
        try:
            rollouts = self._sample(instance)
        finally:
            instance.close()
        assert not instance.shared_model_groups
        assert rollouts["agents.active"].any()
        assert (rollouts.episode_length >= 1).all()


# --------------------------------------------------------------------------------------
# Text trainers
# --------------------------------------------------------------------------------------


class TextTrainerContract:
    """Checks every staged text trainer must pass (see the module docstring).

    Subclasses set :attr:`trainer_name` and register their trainer in the
    ``trainer_plugins`` fixture (the default registers the synthetic text scenario
    only). :meth:`make_hyper_params` gives small parameters for
    ``num_iterations`` iterations against ``server``; the default uses the
    synthetic text scenario.
    """

    trainer_name: ClassVar[str] = ""
    protocol: ClassVar[str] = "nip"
    stages: ClassVar[tuple[str, ...]] = (
        "log_stats",
        "test_during_training",
        "create_fine_tune_jobs",
        "await_fine_tune_jobs",
        "sample_rollouts",
        "test",
        "done",
    )
    """The stages a killed run stops before (checked in iteration 0, and ``test``
    and ``done`` at the end)."""

    def make_hyper_params(
        self, num_iterations: int, server: Any, **overrides: Any
    ) -> Any:
        from nip_core.testing.synthetic_text.fixtures import SyntheticTextScenario

        scenario = SyntheticTextScenario(Path("."), server)
        overrides.setdefault("text_rl", {})
        overrides["text_rl"] = {
            "num_iterations": num_iterations,
            "test_scheme": "all",
            **overrides["text_rl"],
        }
        return scenario.hyper_params(
            self.protocol, trainer=self.trainer_name, **overrides
        )

    def make_server(self, **options: Any) -> Any:
        from nip_core.testing.synthetic_text.fixtures import scripted_server

        return scripted_server(**options)

    def make_settings(self, root: Path, **overrides: Any) -> Any:
        from nip_core.settings import ExperimentSettings

        values: dict[str, Any] = dict(
            runs_dir=str(root / "runs"),
            data_dir=str(root / "data"),
            cache_dir=str(root / "cache"),
            show_progress=False,
        )
        values.update(overrides)
        return ExperimentSettings(**values)

    @pytest.fixture
    def trainer_plugins(self, register_plugin: Any) -> Any:
        """Register what the hyper-parameters need: by default the synthetic text
        scenario (subclasses add their trainer)."""
        from nip_core.testing.synthetic_text import SYNTHETIC_TEXT_PLUGIN

        register_plugin(SYNTHETIC_TEXT_PLUGIN, name="synthetic_text")

    def _run(self, root: Path, run_id: str, server: Any = None, **kwargs: Any) -> Any:
        from nip_core.experiment import run_experiment

        own = server is None
        server = server if server is not None else self.make_server().start()
        try:
            return run_experiment(
                self.make_hyper_params(2, server),
                self.make_settings(root),
                run_id=run_id,
                **kwargs,
            )
        finally:
            if own:
                server.stop()

    def test_trainer_is_a_text_trainer(self, trainer_plugins: Any) -> None:
        from nip_core.plugins import get_plugin_manager
        from nip_core.records import resolve_ref
        from nip_core.trainers.text import PureTextRlTrainer

        spec = get_plugin_manager().trainers[self.trainer_name]
        assert spec.data_world == "text"
        assert issubclass(resolve_ref(spec.trainer_class), PureTextRlTrainer)

    def test_two_iteration_run(self, trainer_plugins: Any, tmp_path: Path) -> None:
        from nip_core.runs.run_dir import RunDirectory
        from nip_core.trainers.text import PureTextRlTrainer

        with self.make_server() as server:
            result = self._run(tmp_path, "two", server)
            jobs = server.jobs_created
        run_dir = RunDirectory(result.run_dir)
        records = run_dir.read_metrics()
        train = [r["step"] for r in records if "mean_accuracy" in r]
        assert train == [0, 1]
        assert [r["step"] for r in records if "test_mean_accuracy" in r] == [0, 1, 2]
        files = rollout_files(run_dir.path)
        assert {"iter_000000.jsonl", "iter_000001.jsonl"} <= set(files)
        point = PureTextRlTrainer.find_resume_point(run_dir, result.trainer.settings)
        assert point.checkpoint["train_loop_stage"] == "done"
        tuned = sum(
            v for r in records for k, v in r.items() if k.endswith(".fine_tuned")
        )
        assert jobs == tuned
        assert run_dir.read_run_info()["status"] == "finished"

    def test_kill_at_every_stage_and_resume(
        self, trainer_plugins: Any, tmp_path: Path
    ) -> None:
        from nip_core.experiment import resume_run
        from nip_core.runs.run_dir import RunDirectory

        with self.make_server() as server:
            whole = self._run(tmp_path, "whole", server)
            whole_jobs = server.jobs_created
        expected = comparable_metrics(RunDirectory(whole.run_dir).read_metrics())
        expected_rollouts = rollout_files(whole.run_dir)
        for stage in self.stages:
            iteration = 2 if stage in ("test", "done") else 0
            if stage == "sample_rollouts":
                iteration = 1
            run_id = f"killed-{stage}"
            with self.make_server() as server:
                with pytest.raises(KilledForTest):
                    self._run(
                        tmp_path,
                        run_id,
                        server,
                        stage_callbacks=[kill_at_stage(iteration, stage)],
                    )
                resumed = resume_run(run_id, runs_dir=tmp_path / "runs")
                assert server.jobs_created == whole_jobs, (
                    f"killed before {stage}: {server.jobs_created} jobs instead of "
                    f"{whole_jobs}"
                )
            records = RunDirectory(resumed.run_dir).read_metrics()
            assert comparable_metrics(records) == expected, f"killed before {stage}"
            assert rollout_files(resumed.run_dir) == expected_rollouts, (
                f"killed before {stage}"
            )

    def test_kill_inside_stages_and_resume(
        self, trainer_plugins: Any, tmp_path: Path, monkeypatch: Any
    ) -> None:
        """A kill after a stage's work (metrics logged, jobs created) but before its
        state is saved: the stage runs again without logging twice or starting a
        second job."""
        from nip_core.experiment import resume_run
        from nip_core.runs.run_dir import RunDirectory
        from nip_core.trainers.text import PureTextRlTrainer

        with self.make_server() as server:
            whole = self._run(tmp_path, "whole", server)
            whole_jobs = server.jobs_created
        expected = comparable_metrics(RunDirectory(whole.run_dir).read_metrics())
        original = PureTextRlTrainer.save_state
        for kill_at in (2, 4, 5, 9):
            calls = {"n": 0}

            def save_state(
                trainer: Any, _kill_at: int = kill_at, calls: dict = calls
            ) -> None:
                calls["n"] += 1
                if calls["n"] == _kill_at:
                    raise KilledForTest(f"killed inside a stage (save {_kill_at})")
                original(trainer)

            run_id = f"inside-{kill_at}"
            with self.make_server() as server:
                monkeypatch.setattr(PureTextRlTrainer, "save_state", save_state)
                with pytest.raises(KilledForTest):
                    self._run(tmp_path, run_id, server)
                monkeypatch.setattr(PureTextRlTrainer, "save_state", original)
                resumed = resume_run(run_id, runs_dir=tmp_path / "runs")
                assert server.jobs_created == whole_jobs
            records = RunDirectory(resumed.run_dir).read_metrics()
            assert comparable_metrics(records) == expected, f"save {kill_at}"

    def test_api_faults_do_not_change_the_result(
        self, trainer_plugins: Any, tmp_path: Path
    ) -> None:
        from nip_core.runs.run_dir import RunDirectory

        with self.make_server() as server:
            calm = self._run(tmp_path, "calm", server)
        with self.make_server(
            fault_rate=0.2,
            fault_kinds=("429", "500", "timeout", "malformed"),
            timeout_delay=0.4,
        ) as server:
            from nip_core.experiment import run_experiment

            hyper_params = self.make_hyper_params(
                2,
                server,
                text_backend={"request_timeout": 0.2, "max_retries": 12},
            )
            faulty = run_experiment(
                hyper_params, self.make_settings(tmp_path), run_id="faulty"
            )
            assert sum(server.faults.values()) > 0
        assert comparable_metrics(
            RunDirectory(faulty.run_dir).read_metrics()
        ) == comparable_metrics(RunDirectory(calm.run_dir).read_metrics())

    def test_api_key_never_reaches_the_run_directory(
        self, trainer_plugins: Any, tmp_path: Path, monkeypatch: Any
    ) -> None:
        secret = "sk-nip-contract-secret-0123456789"
        monkeypatch.setenv("OPENAI_API_KEY", secret)
        with self.make_server(api_key=secret) as server:
            result = self._run(tmp_path, "secret", server)
        for path in Path(result.run_dir).rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
