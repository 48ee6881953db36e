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
environment in eval mode and logs the same statistics with a ``test_`` prefix.

The optimizer is one Adam over the groups of
:func:`nip_core.trainers.optim.build_param_groups` (per agent and part, with the
learning-rate rules of nip); with ``rl.anneal_lr`` every group's LR decays linearly
to 0 over the run.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Mapping
from contextlib import ExitStack
from typing import Any, ClassVar

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
        self._carry: Any = None
        self._start_iteration = 0

    # ------------------------------------------------------------------------------
    # To implement

    @abstractmethod
    def _get_loss_module_and_gae(self) -> tuple[Any, Any | None]:
        """Build the loss module and, optionally, the value estimator (GAE).

        Called once :attr:`policy_operator` and :attr:`value_operator` exist.
        """

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
        import torch

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
        # The fused kernel updates every parameter in one pass instead of a Python
        # loop over tensors; it runs on CPU and CUDA alike
        return torch.optim.Adam(groups, eps=1e-5, fused=True)

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
        environments = []
        for env in (self.train_environment, self.test_environment):
            keys = self._normalization_keys(env)
            transformed = TransformedEnv(env)
            if keys:
                for key, (loc, std) in _running_observation_statistics(
                    env, keys, steps
                ).items():
                    scale = (
                        torch.ones_like(loc)
                        if std is None
                        else torch.where(std > 1e-6, std, torch.ones_like(std))
                    )
                    transformed.append_transform(
                        ObservationNorm(
                            loc=loc, scale=scale, in_keys=[key], standard_normal=True
                        )
                    )
            environments.append(transformed)
        self.train_environment, self.test_environment = environments

    # ------------------------------------------------------------------------------
    # State

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["optimizer"] = (
            None if self.optimizer is None else self.optimizer.state_dict()
        )
        state["loss_module"] = self.loss_module.state_dict()
        state["carry"] = None if self._carry is None else self._carry.clone()
        state["environments"] = {
            "train": capture_environment_state(self.train_environment),
            "test": capture_environment_state(self.test_environment),
            "train_transforms": _transform_state(self.train_environment),
            "test_transforms": _transform_state(self.test_environment),
        }
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        if self.optimizer is not None and state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        self.loss_module.load_state_dict(state["loss_module"])
        self._carry = state["carry"]
        envs = state["environments"]
        restore_environment_state(self.train_environment, envs["train"])
        restore_environment_state(self.test_environment, envs["test"])
        _load_transform_state(self.train_environment, envs["train_transforms"])
        _load_transform_state(self.test_environment, envs["test_transforms"])

    # ------------------------------------------------------------------------------
    # Training

    def train(self) -> None:
        from nip_core.runs.checkpoints import seed_everything

        seed_everything(int(self.hyper_params.seed))
        resuming = self.run.resume_checkpoint is not None
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
        self._start_iteration = self.restore_from_checkpoint()

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
        from nip_core.trainers.pretraining import pretrain_agent_bodies

        pretrain_agent_bodies(self)
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
        import torch

        iteration_context.set_description("Training")
        env = self.train_environment
        steps = self._steps_per_iteration(env)
        for iteration in range(self._start_iteration, _num_iterations(self)):
            iteration_start = time.perf_counter()
            self._anneal_learning_rate(iteration)
            updates = self._agent_updates(iteration)

            self.set_agents_mode(True)
            rollout, self._carry = self._collect(env, self._carry, steps)
            collection_time = time.perf_counter() - iteration_start

            training_start = time.perf_counter()
            self._prepare_rollout(rollout)
            if self.gae is not None:
                with torch.no_grad():
                    self.gae(rollout)
            mean_losses = self._train_on_rollout(rollout, updates)
            training_time = time.perf_counter() - training_start

            metrics = self._rollout_statistics(rollout, train=True)
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

    def _train_on_rollout(self, rollout: Any, updates: Mapping[str, bool]) -> dict:
        import torch
        from torch.nn.utils import clip_grad_norm_

        self.replay_buffer.empty()
        self.replay_buffer.extend(rollout.reshape(-1))
        num_minibatches = max(1, self.frames_per_batch // self.minibatch_size)
        if self.settings.test_run:
            num_minibatches = 1
        frozen_params = [
            p
            for group in getattr(self, "param_groups", [])
            if group["agent"] is not None and not updates.get(group["agent"], True)
            for p in group["params"]
        ]
        trainable = [
            p
            for group in getattr(self, "param_groups", [])
            for p in group["params"]
            if group["agent"] is None or updates.get(group["agent"], True)
        ]
        totals: dict[Any, Any] = {}
        count = 0
        epochs = 1 if self.settings.test_run else self.hyper_params.rl.num_epochs
        for _ in range(epochs):
            for _ in range(num_minibatches):
                minibatch = self.replay_buffer.sample()
                loss_vals = self.loss_module(minibatch)
                self._accumulate(totals, loss_vals)
                count += 1
                if self.optimizer is None or not any(updates.values()):
                    continue
                if hasattr(self.loss_module, "backward"):
                    self.loss_module.backward(loss_vals)
                else:
                    total = sum(
                        value.sum()
                        for key, value in loss_vals.items(True, True)
                        if _leaf(key).startswith("loss_") and value.requires_grad
                    )
                    if not torch.is_tensor(total):
                        continue
                    total.backward()
                # Agents not updated this iteration: drop their gradients, so Adam
                # skips them (no step, no moment update)
                for p in frozen_params:
                    p.grad = None
                clip_grad_norm_(trainable, self.hyper_params.rl.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
        return {key: value / max(count, 1) for key, value in totals.items()}

    @staticmethod
    def _accumulate(totals: dict, loss_vals: Any) -> None:
        for key, value in loss_vals.items(True, True):
            value = value.detach().float()
            totals[key] = totals[key] + value if key in totals else value.clone()

    def _loss_metrics(self, mean_losses: Mapping[Any, Any], prefix: str) -> dict:
        metrics: dict[str, float] = {}
        for key, value in mean_losses.items():
            name = _leaf(key)
            if value.numel() == self.num_agents and value.numel() > 1:
                flat = value.reshape(-1)
                for i, agent_name in enumerate(self.agent_names):
                    metrics[f"{agent_name}.{prefix}{name}"] = float(flat[i])
                metrics[f"{prefix}{name}"] = float(flat.sum())
            else:
                metrics[f"{prefix}{name}"] = float(value.mean())
        return metrics

    def _rollout_statistics(self, rollout: Any, train: bool) -> dict[str, float]:
        from nip_core.trainers.stats import rollout_statistics

        return rollout_statistics(
            rollout, self.agent_names, prefix="" if train else "test_"
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
        self._render_episodes(episodes, iteration)

    def _render_episodes(self, episodes: list[dict[str, Any]], iteration: int) -> None:
        """Draw the sampled episodes with the scenario's episode renderer, if any,
        to ``plots/iter_{iteration:06d}_{k}.png``."""
        from nip_core.plugins import get_plugin_manager
        from nip_core.records import resolve_ref

        renderers = get_plugin_manager().episode_renderers
        if self.hyper_params.scenario not in renderers:
            return
        renderer = resolve_ref(renderers[self.hyper_params.scenario].renderer)
        plots_dir = self.run.run_dir.plots_dir
        plots_dir.mkdir(parents=True, exist_ok=True)
        for k, episode in enumerate(episodes):
            renderer(episode, plots_dir / f"iter_{iteration:06d}_{k}.png")

    @attach_progress_bar(_num_test_iterations)
    def _run_test_loop(self, iteration_context: IterationContext) -> None:
        import torch

        iteration_context.set_description("Testing")
        env = self.test_environment
        steps = self._steps_per_iteration(env)
        self.set_agents_mode(False)
        rollouts = []
        carry = None
        for _ in range(_num_test_iterations(self)):
            rollout, carry = self._collect(env, carry, steps)
            rollouts.append(rollout.cpu())
            iteration_context.step()
        self.set_agents_mode(True)
        if not rollouts:
            return
        # Concatenate along time so episodes crossing iterations stay whole
        rollout = torch.cat(rollouts, dim=-1)
        metrics = self._rollout_statistics(rollout, train=False)
        self.log_metrics(_num_iterations(self), metrics)

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
    stats = {}
    for key in keys:
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
