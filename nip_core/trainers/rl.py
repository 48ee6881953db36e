"""``TensorDictRlTrainer``: the standard tensor-world RL loop on TorchRL.

A subclass defines only :meth:`TensorDictRlTrainer._get_loss_module_and_gae`. The base
class does the rest, per training iteration:

1. collect ``frames_per_batch`` frames from the batched training environment with
   the current policy, without autograd (episodes continue across iterations: the
   environment's latest state is carried over, and saved in checkpoints);
2. compute advantages with the value estimator (when there is one);
3. put the frames in a replay buffer (``SamplerWithoutReplacement``) and run
   ``rl.num_epochs`` epochs of ``frames_per_batch // rl.minibatch_size`` minibatches:
   loss, backward, gradient clipping to ``rl.max_grad_norm``, optimizer step. Agents
   whose update schedule skips the iteration have their gradients dropped, so their
   parameters and optimizer state do not move;
4. log the rollout statistics (:mod:`nip_core.trainers.stats`), the mean losses, the
   timers (``timing.collection_s``, ``timing.training_s``, ``timing.iteration_s``) and
   ``timing.fps``; save a rollout sample and a checkpoint when due.

After training, the test loop runs ``rl.num_test_iterations`` collections on the test
environment in eval mode and logs the same statistics with a ``test_`` prefix. With
``rl.test_period`` it also runs before every ``test_period``-th iteration (from
iteration 0), its statistics logged with that iteration's, without changing what
training or the final test do.

With ``distributed.num_shards > 1`` or several processes (``torchrun``), every step
above runs per shard (:mod:`nip_core.trainers.sharding`): each shard collects from
its own environments, keeps its own replay buffer, and each minibatch's gradient is
the mean of the shards' gradients, summed across processes before the optimizer
step; rank 0 computes the metrics from the whole batch.

The optimizer is one Adam over the groups of
:func:`nip_core.trainers.optim.build_param_groups` (per agent and part, with the
learning-rate rules of nip); with ``rl.anneal_lr`` every group's LR decays linearly
to 0 over the run.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from abc import abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from typing import Any, ClassVar

from nip_core.errors import FallbackWarning
from nip_core.trainers.base import (
    IterationContext,
    TensorDictTrainer,
    agent_part_modules,
    attach_progress_bar,
)
from nip_core.trainers.optim import build_param_groups


def _num_iterations(trainer: TensorDictRlTrainer) -> int:
    return 1 if trainer.settings.test_run else trainer.hyper_params.rl.num_iterations


def _num_test_iterations(trainer: TensorDictRlTrainer) -> int:
    return (
        1 if trainer.settings.test_run else trainer.hyper_params.rl.num_test_iterations
    )


def capture_environment_state(env: Any) -> dict[str, Any]:
    """The sampling state of an environment (its datapoint order and generators).

    Environments may define ``checkpoint_state()`` / ``load_checkpoint_state(state)``;
    otherwise any :class:`~nip_core.scenario.data.DataCycler` and
    :class:`torch.Generator` attributes are saved.
    """
    import torch

    base = getattr(env, "base_env", env)
    if hasattr(base, "checkpoint_state"):
        return {"custom": base.checkpoint_state()}
    state: dict[str, Any] = {}
    for name, value in vars(base).items():
        if isinstance(value, torch.Generator):
            state[name] = {"generator": value.get_state()}
        elif hasattr(value, "next_indices") and hasattr(value, "generator"):
            state[name] = {
                "generator": value.generator.get_state(),
                "order": value._order.clone(),
                "position": value._position,
            }
    return state


def restore_environment_state(env: Any, state: Mapping[str, Any]) -> None:
    """Restore what :func:`capture_environment_state` saved."""
    base = getattr(env, "base_env", env)
    if "custom" in state:
        base.load_checkpoint_state(state["custom"])
        return
    for name, saved in state.items():
        value = getattr(base, name)
        if "order" in saved:
            value.generator.set_state(saved["generator"])
            value._order = saved["order"].clone()
            value._position = saved["position"]
        else:
            value.set_state(saved["generator"])


class TensorDictRlTrainer(TensorDictTrainer):
    """Base class of tensor-world RL trainers.

    Subclasses implement :meth:`_get_loss_module_and_gae`. The loss module is called
    on a minibatch TensorDict and returns a TensorDict of losses; every entry whose
    key starts with ``loss_`` is summed (over agents too) and back-propagated, unless
    the module defines ``backward(loss_vals)``, which is then called instead. Every
    entry is averaged over the minibatches of the iteration and logged
    (``{agent}.{key}`` for entries with an agent dimension).
    """

    trainer_type: ClassVar[str] = "rl"

    supports_sharding: ClassVar[bool] = True
    """Whether the trainer can run sharded (``distributed.num_shards > 1`` or several
    processes). A subclass whose update is not a mean of per-shard gradients (the
    Stackelberg updates of ``spg``) sets it to ``False``."""

    update_reads_next_observations: ClassVar[bool] = True
    """Whether the update's loss reads the rollout's ``("next", ...)``
    observations. Once the advantages are computed, most losses read only the
    next step's reward, done, terminated and truncated flags: a trainer that says
    ``False`` puts only those of ``next`` in the replay buffer, so the minibatches
    (sampled on a helper thread while the main thread clips and steps, with
    ``run.agent_threads``) gather 11 of 43 tensors fewer at graph isomorphism's
    ``ppo_gi`` settings and no longer keep the main thread waiting. The built-in
    trainers say ``False``; the default keeps everything."""

    @classmethod
    def uses_critic(cls, hyper_params: Any) -> bool:
        """Whether agents get value heads (the factory asks before building)."""
        return True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.use_critic = self.uses_critic(self.hyper_params)
        self.use_single_body = bool(self.hyper_params.rl.use_shared_body) or not (
            self.use_critic
        )
        self.train_environment = self.scenario_instance.train_environment
        self.test_environment = self.scenario_instance.test_environment
        self.policy_operator: Any = None
        self.value_operator: Any = None
        self.loss_module: Any = None
        self.gae: Any = None
        self.optimizer: Any = None
        self.replay_buffer: Any = None
        # run.compile_loss: the compiled loss, made at the first minibatch; False
        # once compiling failed (the run goes on with the eager loss)
        self._compiled_loss: Any = None
        self._carry: Any = None
        # [env, agent]: the rewards the training episodes running at the end of the
        # last batch got in it (stats.open_episode_returns), on the process that
        # computes the statistics
        self._open_returns: Any = None
        self._start_iteration = 0

    # ------------------------------------------------------------------------------
    # To implement

    @abstractmethod
    def _get_loss_module_and_gae(self) -> tuple[Any, Any | None]:
        """Build the loss module and, optionally, the value estimator (GAE).

        Called once :attr:`policy_operator` and :attr:`value_operator` exist.
        """

    # ------------------------------------------------------------------------------
    # Sharding

    def sharding_problems(self) -> list[Any]:
        """Why this run cannot be sharded (an empty list when it can).

        Called before a sharded run starts. Subclasses extend it with the settings
        of theirs that sharding cannot reproduce.
        """
        from nip_core.errors import ConfigProblem

        num_shards = int(self.hyper_params.distributed.num_shards)
        problems = list(type(self).sharding_config_problems(self.hyper_params))
        if not self.supports_sharding:
            return problems
        if self.minibatch_size % num_shards != 0:
            problems.append(
                ConfigProblem(
                    "rl.minibatch_size",
                    f"must be a multiple of distributed.num_shards ({num_shards}): "
                    "each shard contributes an equal part of every minibatch",
                    self.minibatch_size,
                )
            )
        for split, env in (
            ("training", self.train_environment),
            ("test", self.test_environment),
        ):
            if int(env.num_envs) % num_shards != 0:
                problems.append(
                    ConfigProblem(
                        "distributed.num_shards",
                        f"must divide the {split} environments' batch "
                        f"({env.num_envs} environments: frames_per_batch "
                        f"{env.frames_per_batch} / {env.steps_per_env_per_iteration}"
                        " steps each)",
                        num_shards,
                    )
                )
        return problems

    def _build_sharding(self) -> Any:
        """The shards of this process with their environments, or ``None``."""
        from nip_core.errors import NipConfigError
        from nip_core.trainers.sharding import (
            Sharding,
            build_shard_environments,
            shard_layout,
        )

        layout = shard_layout(self.hyper_params)
        if layout is None:
            return None
        problems = self.sharding_problems()
        if problems:
            raise NipConfigError(problems)
        sharding = Sharding(self, layout)
        build_shard_environments(self, sharding)
        return sharding

    # ------------------------------------------------------------------------------
    # Building

    def _build_operators(self) -> None:
        """Build the policy operator (samples actions) and the value operator."""
        from nip_core.trainers.operators import build_policy_and_value_operators

        self.policy_operator, self.value_operator = build_policy_and_value_operators(
            self.scenario_instance,
            self.train_environment,
            use_single_body=self.use_single_body,
            use_critic=self.use_critic,
            include_linear_message_space=bool(
                getattr(self.hyper_params, "include_linear_message_space", False)
            ),
        )

    def _get_replay_buffer(self, transform: Any = None) -> Any:
        from torchrl.data.replay_buffers import ReplayBuffer
        from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
        from torchrl.data.replay_buffers.storages import LazyTensorStorage

        return ReplayBuffer(
            storage=LazyTensorStorage(self.frames_per_batch, device=self.device),
            sampler=SamplerWithoutReplacement(),
            batch_size=self.minibatch_size,
            transform=transform,
        )

    def _get_optimizer(self) -> Any:
        from nip_core.trainers.adam import FusedAdam

        groups = build_param_groups(
            self.agents,
            self.hyper_params.agents,
            self.hyper_params.rl.lr,
            # One LR for a body only matters when actor and critic share it
            shared_body=self.use_single_body and self.use_critic,
            body_lr_factor=self.hyper_params.rl.body_lr_factor_override,
        )
        in_groups = {id(p) for g in groups for p in g["params"]}
        extra = [
            p
            for p in self.loss_module.parameters()
            if p.requires_grad and id(p) not in in_groups
        ]
        if extra:
            # Loss-module parameters outside the agents (e.g. a learned temperature)
            groups.append(
                {
                    "params": extra,
                    "lr": self.hyper_params.rl.lr,
                    "agent": None,
                    "part": "loss",
                    "name": "loss",
                }
            )
        self.param_groups = groups
        if not groups:
            return None
        # torch's fused Adam (one kernel call per group instead of a Python loop
        # over tensors, on CPU and CUDA alike), stepped with less Python
        return FusedAdam(groups, eps=1e-5)

    @property
    def frames_per_batch(self) -> int:
        return int(self.train_environment.frames_per_batch)

    @property
    def minibatch_size(self) -> int:
        return min(int(self.hyper_params.rl.minibatch_size), self.frames_per_batch)

    def _normalization_keys(self, env: Any) -> list[str]:
        """Observation keys to normalise: the environment's ``normalization_keys``,
        else its floating-point datapoint keys, ``message`` and the linear message."""
        import torch

        keys = getattr(env, "normalization_keys", None)
        if keys is None:
            keys = [*getattr(env, "data_keys", ()), "message", "linear_message"]
        spec = env.observation_spec
        present = set(spec.keys())
        return [
            key
            for key in keys
            if key in present
            and spec[key].dtype in (torch.float16, torch.float32, torch.float64)
        ]

    def _add_normalization_transforms(self) -> None:
        """Normalise observations to zero mean and unit variance per feature.

        Statistics come from ``rl.num_normalization_steps`` steps of random actions
        in each environment (10 in a test run), accumulated step by step so memory
        does not grow with the number of steps; features that never vary are left
        as they are.
        """
        import torch
        from torchrl.envs import TransformedEnv
        from torchrl.envs.transforms import ObservationNorm

        steps = (
            10
            if self.settings.test_run
            else self.hyper_params.rl.num_normalization_steps
        )

        def normalised(env: Any, stats: Mapping[Any, tuple[Any, Any]]) -> Any:
            transformed = TransformedEnv(env)
            for key, (loc, std) in stats.items():
                scale = (
                    torch.ones_like(loc)
                    if std is None
                    else torch.where(std > 1e-6, std, torch.ones_like(std))
                )
                transformed.append_transform(
                    ObservationNorm(
                        loc=loc.clone(),
                        scale=scale,
                        in_keys=[key],
                        standard_normal=True,
                    )
                )
            return transformed

        environments = []
        for split, env in (
            ("train", self.train_environment),
            ("test", self.test_environment),
        ):
            keys = self._normalization_keys(env)
            stats: dict[Any, tuple[Any, Any]] = {}
            if keys and self.sharding is None:
                stats = _running_observation_statistics(env, keys, steps)
            elif keys:
                stats = self._sharded_observation_statistics(split, keys, steps)
            environments.append(normalised(env, stats))
            for shard in self.sharding.shards if self.sharding is not None else ():
                attribute = f"{split}_environment"
                setattr(shard, attribute, normalised(getattr(shard, attribute), stats))
        self.train_environment, self.test_environment = environments

    def _sharded_observation_statistics(
        self, split: str, keys: list[str], steps: int
    ) -> dict[Any, tuple[Any, Any]]:
        """Observation statistics over every shard's environments (each running
        ``steps`` steps of random actions from its own random stream)."""
        from nip_core.distributed import all_reduce_sum

        totals: dict[Any, Any] = {}
        squares: dict[Any, Any] = {}
        count = 0
        for shard in self.sharding.shards:
            with shard.rng.active():
                env = getattr(shard, f"{split}_environment")
                shard_totals, shard_squares, shard_count = _observation_moments(
                    env, keys, steps
                )
            for key in keys:
                totals[key] = totals.get(key, 0) + shard_totals[key]
                squares[key] = squares.get(key, 0) + shard_squares[key]
            count += shard_count
        import torch

        count_tensor = torch.tensor(float(count), dtype=torch.float64)
        all_reduce_sum([*totals.values(), *squares.values(), count_tensor])
        return _statistics_from_moments(totals, squares, int(count_tensor.item()))

    # ------------------------------------------------------------------------------
    # State

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["optimizer"] = (
            None if self.optimizer is None else self.optimizer.state_dict()
        )
        state["loss_module"] = self.loss_module.state_dict()
        state["carry"] = None if self._carry is None else self._carry.clone()
        state["open_returns"] = (
            None if self._open_returns is None else self._open_returns.clone()
        )
        state["environments"] = {
            "train": capture_environment_state(self.train_environment),
            "test": capture_environment_state(self.test_environment),
            "train_transforms": _transform_state(self.train_environment),
            "test_transforms": _transform_state(self.test_environment),
        }
        if self.sharding is not None:
            # Every shard's carried-over episodes, sampling state and random stream,
            # gathered on rank 0, so any number of processes can resume them
            state["shards"] = self.sharding.gather_state(_shard_state)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        if self.optimizer is not None and state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        self.loss_module.load_state_dict(state["loss_module"])
        self._carry = state["carry"]
        self._open_returns = state.get("open_returns")
        envs = state["environments"]
        restore_environment_state(self.train_environment, envs["train"])
        restore_environment_state(self.test_environment, envs["test"])
        _load_transform_state(self.train_environment, envs["train_transforms"])
        _load_transform_state(self.test_environment, envs["test_transforms"])
        if self.sharding is not None:
            for shard, shard_state in self.sharding.local_states(state.get("shards")):
                _load_shard_state(shard, shard_state, envs, self.device)

    # ------------------------------------------------------------------------------
    # Training

    def train(self) -> None:
        from nip_core.runs.checkpoints import seed_everything

        seed_everything(int(self.hyper_params.seed))
        resuming = self.run.resume_checkpoint is not None
        self.sharding = self._build_sharding()
        if self.hyper_params.rl.normalize_observations:
            self._add_normalization_transforms()
        if getattr(self.hyper_params, "pretrain_agents", False) and not resuming:
            self._pretrain_agents()
        self._build_operators()
        from nip_core.analysis.message_regression import MessageRegressor

        self.message_regressor = MessageRegressor(
            self.hyper_params.message_regression,
            self.agent_names,
            seed=int(self.hyper_params.seed),
        )
        self.replay_buffer = self._get_replay_buffer()
        self.loss_module, self.gae = self._get_loss_module_and_gae()
        if self.gae is not None and hasattr(self.gae, "deactivate_vmap"):
            # vmap cannot run modules that update buffers in place (batch norm's
            # running statistics in training mode); a plain loop gives the same values
            self.gae.deactivate_vmap = True
        self.optimizer = self._get_optimizer()
        if self.sharding is not None:
            from nip_core.trainers.sharding import shard_replay_buffer

            for shard in self.sharding.shards:
                shard.replay_buffer = shard_replay_buffer(self)
        self._start_iteration = self.restore_from_checkpoint()
        if self.sharding is not None:
            self.sharding.synchronise_agents()

        if self.run.base_checkpoint is not None:
            # Re-running the tests of a base run: its final agents, no training
            self.load_agents_state_dict(self.run.base_checkpoint["trainer"]["agents"])
        else:
            with ExitStack() as stack:
                self._build_train_context(stack)
                self._run_train_loop()
            self.save_checkpoint(self.iteration)
        with ExitStack() as stack:
            self._build_test_context(stack)
            self._run_test_loop()

    def _pretrain_agents(self) -> None:
        from nip_core.trainers.pretraining import (
            pretrain_agent_bodies,
            reseed_after_pretraining,
        )

        pretrain_agent_bodies(self)
        reseed_after_pretraining(self.hyper_params)
        self.set_agents_mode(True)

    def _collect(self, env: Any, carry: Any, num_steps: int) -> tuple[Any, Any]:
        """Run the policy for ``num_steps`` steps; return ``(rollout, carry)``.

        The rollout has batch shape ``[*env.batch_size, num_steps]``, like
        TorchRL's collectors; ``carry`` is the state to continue from.
        """
        import torch

        td = env.reset() if carry is None else carry
        steps = []
        with torch.no_grad():
            for _ in range(num_steps):
                td = self.policy_operator(td)
                out, td = env.step_and_maybe_reset(td)
                steps.append(out)
        rollout = torch.stack(steps, dim=len(env.batch_size))
        return rollout, td

    def _steps_per_iteration(self, env: Any) -> int:
        num_envs = 1
        for size in env.batch_size:
            num_envs *= int(size)
        return max(1, int(env.frames_per_batch) // num_envs)

    def _agent_updates(self, iteration: int) -> dict[str, bool]:
        updates = {}
        for name in self.agent_names:
            schedule = getattr(self.hyper_params.agents[name], "update_schedule", None)
            updates[name] = (
                True
                if schedule is None
                else bool(schedule.is_update_iteration(iteration))
            )
        return updates

    def _anneal_learning_rate(self, iteration: int) -> None:
        if self.optimizer is None or not self.hyper_params.rl.anneal_lr:
            return
        fraction = 1.0 - iteration / max(_num_iterations(self), 1)
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = fraction * group["initial_lr"]

    @attach_progress_bar(
        _num_iterations, initial_func=lambda self: self._start_iteration
    )
    def _run_train_loop(self, iteration_context: IterationContext) -> None:
        from nip_core.trainers.stats import open_episode_returns

        iteration_context.set_description("Training")
        env = self.train_environment
        steps = self._steps_per_iteration(env)
        for iteration in range(self._start_iteration, _num_iterations(self)):
            # Before the iteration's timers: testing is not part of training's cost
            test_metrics = self._test_during_training(iteration)
            iteration_start = time.perf_counter()
            self._anneal_learning_rate(iteration)
            updates = self._agent_updates(iteration)

            self.set_agents_mode(True)
            if self.sharding is None:
                rollout, self._carry = self._collect(env, self._carry, steps)
            else:
                shard_rollouts = self._collect_shards(steps, train=True)
            collection_time = time.perf_counter() - iteration_start

            training_start = time.perf_counter()
            if self.sharding is None:
                self._prepare_rollout(rollout)
                self._estimate_advantages(rollout)
                mean_losses = self._train_on_rollout(rollout, updates)
            else:
                for shard, shard_rollout in zip(
                    self.sharding.shards, shard_rollouts, strict=True
                ):
                    with self.sharding.forward(shard):
                        self._prepare_rollout(shard_rollout)
                        self._estimate_advantages(shard_rollout)
                mean_losses = self._train_on_shards(shard_rollouts, updates)
            training_time = time.perf_counter() - training_start

            metrics: dict[str, Any] = {}
            if self.sharding is not None:
                # The whole batch, on rank 0 only: the other processes report
                # nothing
                rollout = self._gather_shard_rollouts(shard_rollouts)
            if rollout is not None:
                metrics = self._rollout_statistics(
                    rollout, train=True, carried_returns=self._open_returns
                )
                self._open_returns = open_episode_returns(rollout, self._open_returns)
                metrics.update(test_metrics)
                metrics.update(self._loss_metrics(mean_losses, prefix=""))
                for name, update in updates.items():
                    metrics[f"{name}.updated"] = float(update)
                iteration_time = time.perf_counter() - iteration_start
                metrics["timing.collection_s"] = collection_time
                metrics["timing.training_s"] = training_time
                metrics["timing.iteration_s"] = iteration_time
                metrics["timing.fps"] = rollout.numel() / max(iteration_time, 1e-9)
                # After the timers: the analysis is not part of training's cost
                metrics.update(self.message_regressor.metrics(rollout, iteration))
                self.log_metrics(iteration, metrics)
                self._maybe_save_rollout_sample(rollout, iteration)

            self.iteration = iteration + 1
            self.maybe_save_checkpoint(self.iteration)
            self.run.run_callbacks(self, iteration, metrics)
            iteration_context.step()

    def _estimate_advantages(self, rollout: Any) -> None:
        """Run the value estimator (GAE) on ``rollout``, without autograd, when
        there is one.

        Every agent parameter keeps its ``requires_grad``: TorchRL's estimators
        hold the value network out of the graph (``hold_out_net``) by turning
        ``requires_grad`` off for all its parameters and, when the first one
        required a gradient, back on for all of them afterwards, parts frozen by
        a learning rate of 0 included. Those would then get gradients at every
        backward pass (a backward pass through a frozen body, gradients that
        pile up, since the optimizer never clears them) though nothing steps
        them.
        """
        if self.gae is None:
            return
        import torch

        params = [
            p
            for agent in self.agents.values()
            for module in agent_part_modules(agent).values()
            for p in module.parameters()
        ]
        flags = [p.requires_grad for p in params]
        try:
            with torch.no_grad():
                self.gae(rollout)
        finally:
            for p, flag in zip(params, flags, strict=True):
                if p.requires_grad != flag:
                    p.requires_grad_(flag)

    def _prepare_rollout(self, rollout: Any) -> None:
        """Give per-agent reward, done and terminated the shape ``[*batch, agent, 1]``.

        That is TorchRL's multi-agent convention, which its value estimators expect
        (they add the trailing dimension to the value heads' ``[*batch, agent]``).
        Root done / terminated are expanded to the agents when the environment gives
        no per-agent ones.
        """
        agents_shape = (*rollout.batch_size, self.num_agents, 1)
        for prefix in ((), ("next",)):
            for key in ("reward", "done", "terminated"):
                full = (*prefix, "agents", key)
                value = rollout.get(full, None)
                if value is None and key != "reward":
                    root = rollout.get((*prefix, key), None)
                    if root is None:
                        continue
                    value = root.reshape(*rollout.batch_size, 1, 1).expand(agents_shape)
                if value is None:
                    continue
                rollout.set(full, value.reshape(agents_shape).clone())

    def _loss(self, minibatch: Any) -> Any:
        """The loss module's output on ``minibatch``: compiled with
        ``run.compile_loss`` (falling back to eager, with a warning, when compiling
        fails), else the module itself."""
        if not self.settings.compile_loss or self._compiled_loss is False:
            with self._counted_rows_context():
                return self.loss_module(minibatch)
        import torch

        if self._compiled_loss is None:
            self._compiled_loss = torch.compile(self.loss_module)
        try:
            return self._compiled_loss(minibatch)
        except Exception as error:  # any compiler failure: run eager
            self._compiled_loss = False
            warnings.warn(
                "run.compile_loss: torch.compile could not compile the loss "
                f"({type(error).__name__}: {str(error).strip().splitlines()[0]}); "
                "training continues without compiling",
                FallbackWarning,
                stacklevel=2,
            )
            with self._counted_rows_context():
                return self.loss_module(minibatch)

    def _logging_only_context(self, updates: Mapping[str, bool]) -> Any:
        """Where the loss runs on an iteration no agent trains on (every update
        schedule skips it; :attr:`optimizer` ``None``): only for its logged values.
        A loss module with a ``holding_coefficients()`` context manager (the
        KL-penalty PPO loss, whose β adapts on each forward pass) runs inside it,
        so coefficients that adapt to the updates stay as they were."""
        if self.optimizer is not None and any(updates.values()):
            return contextlib.nullcontext()
        hold = getattr(self.loss_module, "holding_coefficients", None)
        return contextlib.nullcontext() if hold is None else hold()

    def _drop_gradients(self) -> None:
        """Start an update with no gradient anywhere: each minibatch's step sees
        only its own backward pass, whatever ran before the update (pre-training
        leaves its last step's gradients on the bodies and solo heads)."""
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)

    def _train_on_rollout(self, rollout: Any, updates: Mapping[str, bool]) -> dict:
        from nip_core.trainers.adam import clip_grad_norm

        self.replay_buffer.empty()
        self.replay_buffer.extend(self._update_data(rollout))
        num_minibatches = max(1, self.frames_per_batch // self.minibatch_size)
        if self.settings.test_run:
            num_minibatches = 1
        frozen_params, trainable = self._parameters_by_update(updates)
        self._drop_gradients()
        totals: dict[Any, Any] = {}
        count = 0
        epochs = 1 if self.settings.test_run else self.hyper_params.rl.num_epochs
        minibatches = _Minibatches(self.replay_buffer, epochs * num_minibatches)
        for _ in range(epochs):
            for _ in range(num_minibatches):
                minibatch = minibatches.take()
                with self._backward_context(), self._logging_only_context(updates):
                    loss_vals = self._loss(minibatch)
                self._accumulate(totals, loss_vals)
                count += 1
                if self.optimizer is None or not any(updates.values()):
                    minibatches.prefetch()
                    continue
                stepping = True
                if hasattr(self.loss_module, "backward"):
                    self.loss_module.backward(loss_vals)
                else:
                    total = _summed_losses(loss_vals)
                    stepping = total is not None
                    if stepping:
                        total.backward()
                # the next minibatch is drawn now, before clipping and the step
                # (neither draws random numbers): the same draws in the same order
                # as drawing it at the top of the loop (see _Minibatches)
                minibatches.prefetch()
                if not stepping:
                    continue
                # Agents not updated this iteration: drop their gradients, so Adam
                # skips them (no step, no moment update)
                for p in frozen_params:
                    p.grad = None
                clip_grad_norm(trainable, self.hyper_params.rl.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
        return {key: value / max(count, 1) for key, value in totals.items()}

    def _update_data(self, rollout: Any) -> Any:
        """The rollout as the update's replay buffer gets it: flattened, and
        without the ``next`` observations unless
        :attr:`update_reads_next_observations`."""
        flat = rollout.reshape(-1)
        if self.update_reads_next_observations:
            return flat
        unread = [
            key
            for key in flat.keys(True, True)
            if isinstance(key, tuple)
            and key[0] == "next"
            and key[-1] not in _NEXT_FLAGS
        ]
        return flat.exclude(*unread) if unread else flat

    def _backward_context(self) -> Any:
        """Around the loss's forward pass: on the plain ``backward()`` path the
        agents' bodies running on threads run their backward passes there too
        (:func:`~nip_core.scenario.concurrency.concurrent_backward`); a loss with its
        own ``backward`` (which may take gradients another way) keeps the graph
        whole."""
        from nip_core.scenario.concurrency import concurrent_backward

        if hasattr(self.loss_module, "backward"):
            return contextlib.nullcontext()
        return concurrent_backward()

    def _counted_rows_context(self) -> Any:
        """Around the loss's forward pass: when the loss reads the policy only
        through its action distribution (its ``reads_counted_choices_only`` is
        true) and ``run.counted_rows`` is on, the policy's parts compute only the
        rows where each agent's choices count
        (:func:`~nip_core.scenario.combined.counted_rows_only`).
        The eager loss only (:meth:`_loss`): under ``run.compile_loss`` the
        number of rows would change from minibatch to minibatch, and each would
        compile anew."""
        from nip_core.scenario.combined import counted_rows_only

        if not self.settings.counted_rows or not getattr(
            self.loss_module, "reads_counted_choices_only", False
        ):
            return contextlib.nullcontext()
        return counted_rows_only()

    def _agent_threads(self) -> tuple[int, int]:
        """``(threads, intra-op threads)`` for ``run.agent_threads``: how many
        threads run the agents' bodies side by side, and torch's intra-op threads
        meanwhile (the cores divided among them). ``threads`` 1 means off."""
        import torch

        cores = torch.get_num_threads()
        setting = self.settings.agent_threads
        if setting is None:
            device = torch.device(self.settings.device or "cpu")
            if device.type != "cpu" or self.settings.compile_loss:
                return 1, cores
            setting = min(cores, len(self.agent_names))
        if setting < 2:
            return 1, cores
        return setting, max(1, cores // setting)

    def _build_train_context(self, stack: ExitStack) -> list[Any]:
        """The base's contexts, and the agent threads (``run.agent_threads``)."""
        from nip_core.scenario.concurrency import concurrent_parts

        entered = super()._build_train_context(stack)
        entered.append(stack.enter_context(concurrent_parts(*self._agent_threads())))
        return entered

    def _build_test_context(self, stack: ExitStack) -> list[Any]:
        """The base's contexts, and the agent threads (``run.agent_threads``)."""
        from nip_core.scenario.concurrency import concurrent_parts

        entered = super()._build_test_context(stack)
        entered.append(stack.enter_context(concurrent_parts(*self._agent_threads())))
        return entered

    def _parameters_by_update(
        self, updates: Mapping[str, bool]
    ) -> tuple[list[Any], list[Any]]:
        """``(frozen, trainable)``: the parameters of agents this iteration does
        not update, and all the others."""
        groups = getattr(self, "param_groups", [])
        frozen = [
            p
            for group in groups
            if group["agent"] is not None and not updates.get(group["agent"], True)
            for p in group["params"]
        ]
        trainable = [
            p
            for group in groups
            for p in group["params"]
            if group["agent"] is None or updates.get(group["agent"], True)
        ]
        return frozen, trainable

    def _train_on_shards(
        self, rollouts: list[Any], updates: Mapping[str, bool]
    ) -> dict:
        """:meth:`_train_on_rollout` for the shards of this process.

        Every minibatch is one slice per shard (``minibatch_size / num_shards``
        frames from the shard's own replay buffer); each shard's loss is
        back-propagated scaled by ``1 / num_shards``, the gradients are summed
        across processes, then every process takes the same step. The mean losses
        are over every shard of every process.
        """

        from nip_core.trainers.adam import clip_grad_norm

        sharding = self.sharding
        for shard, rollout in zip(sharding.shards, rollouts, strict=True):
            shard.replay_buffer.empty()
            shard.replay_buffer.extend(self._update_data(rollout))
        num_minibatches = max(1, self.frames_per_batch // self.minibatch_size)
        if self.settings.test_run:
            num_minibatches = 1
        frozen_params, trainable = self._parameters_by_update(updates)
        self._drop_gradients()
        stepping = self.optimizer is not None and any(updates.values())
        scale = 1.0 / sharding.num_shards
        # per shard, added up in shard order at the end (sharding.sum_over_shards):
        # the same means, bit for bit, on any number of processes
        totals: dict[int, dict[Any, Any]] = {s.index: {} for s in sharding.shards}
        count = 0
        epochs = 1 if self.settings.test_run else self.hyper_params.rl.num_epochs
        for _ in range(epochs):
            for _ in range(num_minibatches):
                for shard in sharding.shards:
                    # The backward pass inside too: buffers a forward pass changed
                    # (and saved for its backward) are put back only after it
                    with (
                        sharding.forward(shard),
                        self._backward_context(),
                        self._logging_only_context(updates),
                    ):
                        minibatch = shard.replay_buffer.sample()
                        loss_vals = self._loss(minibatch)
                        total = _summed_losses(loss_vals) if stepping else None
                        if total is not None:
                            (total * scale).backward()
                    self._accumulate(totals[shard.index], loss_vals)
                count += 1
                if not stepping:
                    continue
                sharding.all_reduce_gradients(trainable)
                for p in frozen_params:
                    p.grad = None
                clip_grad_norm(trainable, self.hyper_params.rl.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
        if count == 0:
            return {}
        keys = list(totals[sharding.shards[0].index])
        sums = sharding.sum_over_shards(
            {
                index: [shard_totals[key] for key in keys]
                for index, shard_totals in totals.items()
            }
        )
        # every shard took the same number of minibatches
        total_count = float(count * sharding.num_shards)
        return {key: value / total_count for key, value in zip(keys, sums, strict=True)}

    def _collect_shards(self, steps: int, *, train: bool) -> list[Any]:
        """One rollout per shard of this process, each from the shard's own
        environment (and, in training, its carried-over episodes)."""
        rollouts = []
        for shard in self.sharding.shards:
            with self.sharding.forward(shard):
                if train:
                    rollout, shard.carry = self._collect(
                        shard.train_environment, shard.carry, steps
                    )
                else:
                    rollout, shard.test_carry = self._collect(
                        shard.test_environment, shard.test_carry, steps
                    )
            rollouts.append(rollout)
        return rollouts

    def _gather_shard_rollouts(self, rollouts: list[Any]) -> Any:
        """The whole batch (every shard's rollout, in shard order, along the
        environment dimension) on rank 0; ``None`` on the other processes."""
        import torch

        from nip_core.distributed import gather_objects

        gathered = gather_objects([rollout.cpu() for rollout in rollouts])
        if gathered is None:
            return None
        return torch.cat([r for part in gathered for r in part], dim=0)

    @staticmethod
    def _accumulate(totals: dict, loss_vals: Any) -> None:
        for key, value in loss_vals.items(True, True):
            value = value.detach().float()
            totals[key] = totals[key] + value if key in totals else value.clone()

    def _loss_metrics(self, mean_losses: Mapping[Any, Any], prefix: str) -> dict:
        """Per-agent values under ``{agent}.{name}`` and one across agents: the sum
        for the loss terms (``loss_*``, whose sum is what the update minimises),
        the mean for statistics (``kl``, ``explained_variance``, ...), which a sum
        would scale by the number of agents."""
        metrics: dict[str, float] = {}
        for key, value in mean_losses.items():
            name = _leaf(key)
            if value.numel() == self.num_agents and value.numel() > 1:
                flat = value.reshape(-1)
                for i, agent_name in enumerate(self.agent_names):
                    metrics[f"{agent_name}.{prefix}{name}"] = float(flat[i])
                across = flat.sum() if name.startswith("loss_") else flat.mean()
                metrics[f"{prefix}{name}"] = float(across)
            else:
                metrics[f"{prefix}{name}"] = float(value.mean())
        return metrics

    def _rollout_statistics(
        self, rollout: Any, train: bool, carried_returns: Any = None
    ) -> dict[str, float]:
        """The statistics of ``rollout``; ``carried_returns``: the rewards its
        carried-over episodes got in the batch before
        (:func:`~nip_core.trainers.stats.open_episode_returns`)."""
        from nip_core.trainers.stats import rollout_statistics

        handler = self.protocol_handler
        return rollout_statistics(
            rollout,
            self.agent_names,
            prefix="" if train else "test_",
            effective_decision=getattr(
                handler, "get_effective_verifier_decision", None
            ),
            carried_returns=carried_returns,
        )

    def _maybe_save_rollout_sample(self, rollout: Any, iteration: int) -> None:
        period = self.settings.rollout_sample_period
        if period is None or not self.run.writes_files or iteration % period != 0:
            return
        from nip_core.runs.rollouts import episodes_from_rollout, write_rollout_sample

        episodes = episodes_from_rollout(
            rollout.cpu(),
            self.settings.num_rollout_samples,
            iteration,
            agent_names=list(self.agent_names),
        )
        if not episodes:  # no episode both began and ended in this rollout
            return
        path = write_rollout_sample(self.run.run_dir.rollouts_dir, iteration, episodes)
        self.run.log_artifact(path, f"rollouts-{self.run.run_dir.run_id}", "rollouts")
        self.draw_episodes(episodes, iteration)

    @attach_progress_bar(_num_test_iterations)
    def _run_test_loop(self, iteration_context: IterationContext) -> None:
        iteration_context.set_description("Testing")
        rollout = self._collect_test_rollout(on_step=iteration_context.step)
        if rollout is None:
            return
        metrics = self._rollout_statistics(rollout, train=False)
        self.log_metrics(_num_iterations(self), metrics)

    def _collect_test_rollout(self, on_step: Any = None) -> Any:
        """``rl.num_test_iterations`` collections on the test environment (each
        shard's, when sharded) in eval mode, concatenated along time so episodes
        crossing iterations stay whole; ``None`` when there are none, and on the
        processes other than rank 0 (which gathers the shards' rollouts).

        ``on_step`` is called after each collection.
        """
        import torch

        if self.sharding is None:
            env = self.test_environment
            steps = self._steps_per_iteration(env)
            carry = None

            def collect() -> list[Any]:
                nonlocal carry
                rollout, carry = self._collect(env, carry, steps)
                return [rollout]

        else:
            # Running statistics are shard 0's (rank 0's): every process tests
            # with them
            self.sharding.synchronise_agents()
            steps = self._steps_per_iteration(self.sharding.shards[0].test_environment)
            for shard in self.sharding.shards:
                shard.test_carry = None

            def collect() -> list[Any]:
                return self._collect_shards(steps, train=False)

        self.set_agents_mode(False)
        per_shard: list[list[Any]] = []
        for _ in range(_num_test_iterations(self)):
            rollouts = collect()
            per_shard = per_shard or [[] for _ in rollouts]
            for collected, rollout in zip(per_shard, rollouts, strict=True):
                collected.append(rollout.cpu())
            if on_step is not None:
                on_step()
        self.set_agents_mode(True)
        if not per_shard:
            return None
        rollouts = [torch.cat(collected, dim=-1) for collected in per_shard]
        if self.sharding is None:
            return rollouts[0]
        return self._gather_shard_rollouts(rollouts)

    def _test_during_training(self, iteration: int) -> dict[str, float]:
        """The ``test_`` statistics of a test before iteration ``iteration``, when
        ``rl.test_period`` asks for one (an empty dict otherwise, and on the
        processes other than rank 0)."""
        period = self.hyper_params.rl.test_period
        if period is None or iteration % period != 0 or _num_test_iterations(self) == 0:
            return {}
        start = time.perf_counter()
        with self._training_state_kept():
            rollout = self._collect_test_rollout()
        if rollout is None:
            return {}
        metrics = self._rollout_statistics(rollout, train=False)
        metrics["timing.test_s"] = time.perf_counter() - start
        return metrics

    @contextlib.contextmanager
    def _training_state_kept(self) -> Iterator[None]:
        """Put back after the block everything a test during training changes
        that training or the final test reads: the global random streams, the
        shards' streams, the test environments' sampling state and observation
        transforms, their carried-over episodes, and the agents' buffers (a sharded
        test gives every process rank 0's)."""
        import copy

        import torch

        from nip_core.distributed import buffers_unchanged

        shards = [] if self.sharding is None else list(self.sharding.shards)
        environments = [self.test_environment] + [s.test_environment for s in shards]
        saved_environments = [
            (capture_environment_state(env), copy.deepcopy(_transform_state(env)))
            for env in environments
        ]
        saved_shards = [(shard.rng.state_dict(), shard.test_carry) for shard in shards]
        device = torch.device(self.device)
        cuda = []
        if device.type == "cuda":
            cuda = [
                device.index
                if device.index is not None
                else torch.cuda.current_device()
            ]
        buffers = [] if self.sharding is None else self.sharding.buffers
        with torch.random.fork_rng(devices=cuda), buffers_unchanged(buffers):
            try:
                yield
            finally:
                for env, (state, transform) in zip(
                    environments, saved_environments, strict=True
                ):
                    restore_environment_state(env, state)
                    _load_transform_state(env, transform)
                for shard, (rng, carry) in zip(shards, saved_shards, strict=True):
                    shard.rng.load_state_dict(rng)
                    shard.test_carry = carry

    def trainable_parameters(self) -> list[Any]:
        """Every trainable parameter of the agents."""
        params = []
        for agent in self.agents.values():
            for module in agent_part_modules(agent).values():
                params.extend(p for p in module.parameters() if p.requires_grad)
        return params


def _running_observation_statistics(
    env: Any, keys: list[Any], steps: int
) -> dict[Any, tuple[Any, Any]]:
    """Per-feature mean and (unbiased) standard deviation of observations.

    Runs ``steps`` steps of random actions (resetting finished episodes, as
    ``env.rollout(steps, break_when_any_done=False)`` does) and accumulates sums in
    float64 instead of keeping the rollout. ``std`` is ``None`` when there is a
    single sample.
    """
    return _statistics_from_moments(*_observation_moments(env, keys, steps))


def _observation_moments(
    env: Any, keys: list[Any], steps: int
) -> tuple[dict[Any, Any], dict[Any, Any], int]:
    """Float64 sums and sums of squares of the observations of ``steps`` steps of
    random actions, per feature, and the number of observations."""
    import torch

    totals: dict[Any, Any] = {}
    squares: dict[Any, Any] = {}
    count = 0
    with torch.no_grad():
        td = env.reset()
        batch_dims = td.batch_dims
        for _ in range(steps):
            dims = tuple(range(batch_dims))
            for key in keys:
                values = td.get(key).to(torch.float64)
                totals[key] = totals.get(key, 0) + values.sum(dim=dims)
                squares[key] = squares.get(key, 0) + (values * values).sum(dim=dims)
            count += td.numel()
            td = env.rand_action(td)
            _, td = env.step_and_maybe_reset(td)
    return totals, squares, count


def _statistics_from_moments(
    totals: Mapping[Any, Any], squares: Mapping[Any, Any], count: int
) -> dict[Any, tuple[Any, Any]]:
    """Mean and unbiased standard deviation (``None`` for one sample) from sums."""
    import torch

    stats = {}
    for key in totals:
        mean = totals[key] / count
        std = None
        if count > 1:
            variance = (squares[key] - count * mean * mean) / (count - 1)
            std = variance.clamp_min(0).sqrt().to(torch.float32)
        stats[key] = (mean.to(torch.float32), std)
    return stats


def _leaf(key: Any) -> str:
    return key if isinstance(key, str) else key[-1]


def _transform_state(env: Any) -> dict[str, Any] | None:
    transform = getattr(env, "transform", None)
    return None if transform is None else transform.state_dict()


def _load_transform_state(env: Any, state: Mapping[str, Any] | None) -> None:
    transform = getattr(env, "transform", None)
    if transform is not None and state is not None:
        transform.load_state_dict(state)


_NEXT_FLAGS = frozenset({"reward", "done", "terminated", "truncated"})
"""What of ``next`` every update reads (see
:attr:`TensorDictRlTrainer.update_reads_next_observations`)."""


class _Minibatches:
    """An update's minibatches from a replay buffer, each one sampled on a helper
    thread of the agent threads' runner (:mod:`nip_core.scenario.concurrency`)
    while the main thread clips the gradients and steps the optimizer for the one
    before. Without a runner (agent threads off, a GPU) each is sampled when it is
    taken.

    :meth:`prefetch` is called after a minibatch's backward pass; the main thread
    then draws no random numbers (clipping and the optimizer step draw none) until
    :meth:`take` hands over the next minibatch, so the sampler's draws from the
    global generator come in the same order as when sampling in the loop: the same
    minibatches, bit for bit. Only the ``count`` minibatches of the update are
    ever sampled (none ahead of the last), so the sampler's state after the update
    is the same too.
    """

    def __init__(self, buffer: Any, count: int):
        from nip_core.scenario.concurrency import active_runner

        self.buffer = buffer
        self.remaining = count
        self._runner = active_runner()
        self._next: Any = None

    def take(self) -> Any:
        """The next minibatch (waiting for it when it is being sampled)."""
        self.remaining -= 1
        if self._next is not None:
            future, self._next = self._next, None
            return future.result()
        return self.buffer.sample()

    def prefetch(self) -> None:
        """Start sampling the next minibatch on a helper thread, when one follows
        and there are helper threads."""
        if self._runner is None or self.remaining <= 0 or self._next is not None:
            return
        self._next = self._runner.submit(self.buffer.sample)


def _summed_losses(loss_vals: Any) -> Any:
    """The sum of every ``loss_*`` entry that has a gradient (``None`` if none)."""
    import torch

    total = sum(
        value.sum()
        for key, value in loss_vals.items(True, True)
        if _leaf(key).startswith("loss_") and value.requires_grad
    )
    return total if torch.is_tensor(total) else None


def _shard_state(shard: Any) -> dict[str, Any]:
    """What a checkpoint keeps of one shard (on the CPU, to travel to rank 0)."""
    return {
        "carry": None if shard.carry is None else shard.carry.clone().cpu(),
        "train": capture_environment_state(shard.train_environment),
        "test": capture_environment_state(shard.test_environment),
        "rng": shard.rng.state_dict(),
    }


def _load_shard_state(
    shard: Any, state: Mapping[str, Any], envs: Mapping[str, Any], device: Any
) -> None:
    shard.carry = None if state["carry"] is None else state["carry"].to(device)
    restore_environment_state(shard.train_environment, state["train"])
    restore_environment_state(shard.test_environment, state["test"])
    _load_transform_state(shard.train_environment, envs["train_transforms"])
    _load_transform_state(shard.test_environment, envs["test_transforms"])
    shard.rng.load_state_dict(state["rng"])
