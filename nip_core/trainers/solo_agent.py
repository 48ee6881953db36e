"""The ``solo_agent`` trainer: each agent alone, supervised on the labels.

Every non-random agent's body and solo head are trained with the cross-entropy of
the solo head's ``solo_logits`` against the datapoint label ``y``. Datapoints are
turned into first-round observations by the environment
(:meth:`~nip_core.scenario.environment.TensorDictEnvironment.datapoints_to_observation`)
and each agent reads its own view of them (hidden channels zeroed), as in RL. It is a
trainer of its own (``trainer="solo_agent"``) and the pre-training step of RL
trainers (``pretrain_agents=True``), which caches the bodies it trains (see
:mod:`nip_core.trainers.pretraining`).

Metrics per epoch (step = epoch): ``{agent}.train_loss``, ``{agent}.train_accuracy``;
after training: ``{agent}.test_loss``, ``{agent}.test_accuracy`` (``pretrain_``
prefixed when pre-training).

Sharded (``distributed.num_shards > 1`` or under ``torchrun``, see
:mod:`nip_core.trainers.sharding`), every batch is cut into one slice per shard; each
slice's summed loss is divided by the whole batch's size, so the gradients summed
over shards and processes are those of the batch's mean loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from typing import Any, ClassVar

from nip_core.trainers.base import (
    IterationContext,
    TensorDictTrainer,
    attach_progress_bar,
)
from nip_core.trainers.optim import build_param_groups


def _num_epochs(trainer: SoloAgentTrainer) -> int:
    return (
        1 if trainer.settings.test_run else trainer.hyper_params.solo_agent.num_epochs
    )


class SoloAgentTrainer(TensorDictTrainer):
    """Supervised training of each agent's body and solo head.

    Parameters
    ----------
    hyper_params, scenario_instance, settings, run
        As for :class:`~nip_core.trainers.Trainer`.
    as_pretraining : bool
        Train as the pre-training step of an RL trainer: the policy body is trained
        when bodies are not shared, nothing is checkpointed, and metrics are
        ``pretrain_`` prefixed.
    observation_transforms : Mapping[str, Any] | None
        The RL trainer's observation transforms (``"train"`` and ``"test"``: the
        ``transform`` of its environments, e.g. the
        :class:`~torchrl.envs.transforms.ObservationNorm` of
        ``rl.normalize_observations``), applied to the observations of the datapoints
        as the RL environments apply them to their observations, so pre-training
        feeds the bodies what RL will.
    """

    trainer_type: ClassVar[str] = "solo_agent"
    supports_sharding: ClassVar[bool] = True

    def __init__(
        self,
        *args: Any,
        as_pretraining: bool = False,
        observation_transforms: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.as_pretraining = as_pretraining
        self.observation_transforms = dict(observation_transforms or {})
        self.prefix = "pretrain_" if as_pretraining else ""
        self.test_metrics: dict[str, float] = {}
        """The metrics of the last test pass (``{agent}.{prefix}test_*``)."""
        self.trained_agent_names = [
            name
            for name in self.agent_names
            if not getattr(self.hyper_params.agents[name], "is_random", False)
        ]
        self._optimizers: dict[str, Any] = {}
        self._generator: Any = None
        self._built = False

    # ------------------------------------------------------------------------------
    # Building

    def _body_of(self, agent: Any) -> Any:
        body = getattr(agent, "body", None)
        if body is None:
            body = agent.policy_body
        return body

    def _build(self) -> None:
        import torch

        params = self.hyper_params.solo_agent
        for name in self.trained_agent_names:
            agent = self.agents[name]
            if getattr(agent, "solo_head", None) is None:
                raise ValueError(
                    f"agent {name!r} has no solo head: the factory builds one for the "
                    f"solo_agent trainer and when pretrain_agents is set"
                )
            body_part = (
                "body" if getattr(agent, "body", None) is not None else ("policy_body")
            )
            groups = build_param_groups(
                {name: agent},
                self.hyper_params.agents,
                params.learning_rate,
                shared_body=False,
                body_lr_factor_override=params.body_lr_factor_override,
                parts=(body_part, "solo_head"),
            )
            if groups:
                self._optimizers[name] = torch.optim.Adam(groups, eps=1e-5)
        # Agents with nothing to train (learning-rate factor 0) are left out
        self.trained_agent_names = list(self._optimizers)
        self._generator = torch.Generator().manual_seed(int(self.hyper_params.seed))
        self._built = True

    def _observation(self, data: Any, train: bool) -> Any:
        env = (
            self.scenario_instance.train_environment
            if train
            else self.scenario_instance.test_environment
        )
        if env is None:
            return data
        observation = env.datapoints_to_observation(data)
        transform = self.observation_transforms.get("train" if train else "test")
        if transform is not None:
            # what the environment's reset applies to a new episode's observation
            # (TransformedEnv._reset calls the transforms' _call)
            observation = transform._call(observation)
        return observation

    def solo_logits(self, name: str, observation: Any) -> Any:
        """The agent's solo-head logits ``(*batch, 2)`` on an observation."""
        from nip_core.scenario import keys as K
        from nip_core.scenario.agents import agent_view

        agent = self.agents[name]
        index = self.agent_names.index(name)
        visible = self.protocol_handler.agent_channel_visibility_mask[index]
        body = self._body_of(agent)
        body_out = body(agent_view(observation, body, index, visible))
        # The head reads the body's outputs as agent-level keys: put them under
        # "agents" (expanded along the agent dimension) and take this agent's view
        batch_dims = observation.batch_dims
        augmented = observation.clone(False)
        agents_td = augmented.get(K.AGENTS).clone(False)
        for key in body.out_keys:
            value = body_out.get(key)
            expanded = value.unsqueeze(batch_dims).expand(
                *value.shape[:batch_dims], self.num_agents, *value.shape[batch_dims:]
            )
            agents_td.set(key, expanded)
        augmented.set(K.AGENTS, agents_td)
        head = agent.solo_head
        return head(agent_view(augmented, head, index, visible)).get(K.SOLO_LOGITS)

    # ------------------------------------------------------------------------------
    # State

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["optimizers"] = {n: o.state_dict() for n, o in self._optimizers.items()}
        state["data_generator"] = self._generator.get_state()
        if self.sharding is not None:
            state["shards"] = self.sharding.gather_state(self.sharding.rng_state)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        for name, opt_state in state["optimizers"].items():
            self._optimizers[name].load_state_dict(opt_state)
        self._generator.set_state(state["data_generator"])
        if self.sharding is not None:
            for shard, rng in self.sharding.local_states(state.get("shards")):
                shard.rng.load_state_dict(rng)

    def _build_sharding(self) -> Any:
        """The shards of this process (random streams only), or ``None``."""
        from nip_core.trainers.sharding import Sharding, shard_layout

        layout = shard_layout(self.hyper_params)
        if layout is None:
            return None
        return Sharding(
            self, layout, purpose="pretraining" if self.as_pretraining else "solo"
        )

    def saves_checkpoints(self) -> bool:
        # pre-training belongs to the RL run, which checkpoints
        return not self.as_pretraining and super().saves_checkpoints()

    # ------------------------------------------------------------------------------
    # Training

    def train(self) -> None:
        from nip_core.runs.checkpoints import seed_everything

        seed_everything(int(self.hyper_params.seed))
        if not self._built:
            self._build()
        self.sharding = self._build_sharding()
        start = 0 if self.as_pretraining else self.restore_from_checkpoint()
        self._start_epoch = start
        if self.sharding is not None:
            self.sharding.synchronise_agents()

        if self.run.base_checkpoint is not None and not self.as_pretraining:
            # Re-running the tests of a base run: its final agents, no training
            self.load_agents_state_dict(self.run.base_checkpoint["trainer"]["agents"])
        else:
            with ExitStack() as stack:
                self._build_train_context(stack)
                self._run_train_loop()
        with ExitStack() as stack:
            self._build_test_context(stack)
            self._run_test_loop()
        if not self.as_pretraining:
            self.save_checkpoint(self.iteration)

    def _batches(self, dataset: Any, shuffle: bool) -> list[Any]:
        import torch

        size = len(dataset)
        batch_size = self.hyper_params.solo_agent.batch_size
        if shuffle:
            order = torch.randperm(size, generator=self._generator)
        else:
            order = torch.arange(size)
        batches = [order[i : i + batch_size] for i in range(0, size, batch_size)]
        if self.settings.test_run:
            batches = batches[:1]
        return batches

    @attach_progress_bar(_num_epochs, initial_func=lambda self: self._start_epoch)
    def _run_train_loop(self, iteration_context: IterationContext) -> None:
        import torch.nn.functional as F

        iteration_context.set_description(
            "Pre-training" if self.as_pretraining else "Training"
        )
        dataset = self.scenario_instance.train_dataset
        for epoch in range(self._start_epoch, _num_epochs(self)):
            self.set_agents_mode(True)
            totals = self._new_totals()
            shard_totals = self._new_shard_totals()
            for indices in self._batches(dataset, shuffle=True):
                if self.sharding is not None:
                    self._train_sharded_batch(dataset, indices, shard_totals)
                    continue
                data = dataset[indices].to(self.device)
                y = data["y"].reshape(-1).long()
                observation = self._observation(data, train=True)
                for name, optimizer in self._optimizers.items():
                    optimizer.zero_grad()
                    logits = self.solo_logits(name, observation)
                    loss = F.cross_entropy(logits, y)
                    loss.backward()
                    optimizer.step()
                    n = len(y)
                    totals[name][0] += loss.item() * n
                    totals[name][1] += (logits.argmax(-1) == y).float().sum().item()
                    totals[name][2] += n
            if self.sharding is not None:
                totals = self._sum_shard_totals(shard_totals)
            metrics = {}
            for name, (loss_sum, correct, count) in totals.items():
                metrics[f"{name}.{self.prefix}train_loss"] = loss_sum / max(count, 1)
                metrics[f"{name}.{self.prefix}train_accuracy"] = correct / max(count, 1)
            self.iteration = epoch + 1
            if not self.as_pretraining:
                self.log_metrics(epoch, metrics)
                self.maybe_save_checkpoint(self.iteration)
                self.run.run_callbacks(self, epoch, metrics)
            iteration_context.step()
        # the last step's gradients are spent: leave none on the agents (pre-training
        # hands them to the RL phase, whose first step must see only its own)
        for optimizer in self._optimizers.values():
            optimizer.zero_grad(set_to_none=True)

    def _train_sharded_batch(
        self, dataset: Any, indices: Any, shard_totals: dict[int, dict[str, list]]
    ) -> None:
        """One optimisation step per agent on a batch cut into shards (each
        shard's loss, correct predictions and rows added to its own totals)."""
        import torch.nn.functional as F

        batch_size = len(indices)
        slices = []
        for shard, shard_indices in self.sharding.chunks(indices):
            if len(shard_indices) == 0:
                continue
            data = dataset[shard_indices].to(self.device)
            y = data["y"].reshape(-1).long()
            slices.append((shard, y, self._observation(data, train=True)))
        for name, optimizer in self._optimizers.items():
            optimizer.zero_grad()
            for shard, y, observation in slices:
                # The backward pass inside too: buffers the forward pass changed
                # (and saved for its backward) are put back only after it
                with self.sharding.forward(shard):
                    logits = self.solo_logits(name, observation)
                    loss_sum = F.cross_entropy(logits, y, reduction="sum")
                    (loss_sum / batch_size).backward()
                totals = shard_totals[shard.index][name]
                totals[0] += loss_sum.item()
                totals[1] += (logits.argmax(-1) == y).float().sum().item()
                totals[2] += len(y)
            self.sharding.all_reduce_gradients(
                [p for group in optimizer.param_groups for p in group["params"]]
            )
            optimizer.step()

    def _new_totals(self) -> dict[str, list]:
        """Per-agent ``[loss sum, correct, count]``, all zero."""
        return {name: [0.0, 0.0, 0] for name in self.trained_agent_names}

    def _new_shard_totals(self) -> dict[int, dict[str, list]]:
        """:meth:`_new_totals` for each shard of this process (none unsharded)."""
        if self.sharding is None:
            return {}
        return {shard.index: self._new_totals() for shard in self.sharding.shards}

    def _sum_shard_totals(
        self, shard_totals: dict[int, dict[str, list]]
    ) -> dict[str, list]:
        """Per-agent totals over every shard of every process, added up in shard
        order: the same, bit for bit, on any number of processes."""
        import torch

        names = list(self.trained_agent_names)
        [table] = self.sharding.sum_over_shards(
            {
                index: [torch.tensor([totals[n] for n in names], dtype=torch.float64)]
                for index, totals in shard_totals.items()
            }
        )
        return {
            name: [row[0], row[1], int(row[2])]
            for name, row in zip(names, table.tolist(), strict=True)
        }

    def evaluate(
        self, dataset: Any, train: bool = False
    ) -> dict[str, dict[str, float]]:
        """Mean loss and accuracy of each agent on a dataset (no gradients)."""
        import torch
        import torch.nn.functional as F

        if self.sharding is not None:
            # Running statistics are shard 0's (rank 0's) on every process
            self.sharding.synchronise_agents()
        self.set_agents_mode(False)
        unsharded = self._new_totals()
        shard_totals = self._new_shard_totals()
        with torch.no_grad():
            for indices in self._batches(dataset, shuffle=False):
                parts = (
                    [(None, indices)]
                    if self.sharding is None
                    else self.sharding.chunks(indices)
                )
                for shard, part in parts:
                    if len(part) == 0:
                        continue
                    totals = unsharded if shard is None else shard_totals[shard.index]
                    data = dataset[part].to(self.device)
                    y = data["y"].reshape(-1).long()
                    observation = self._observation(data, train=train)
                    for name in self._optimizers:
                        logits = self.solo_logits(name, observation)
                        totals[name][0] += F.cross_entropy(
                            logits, y, reduction="sum"
                        ).item()
                        totals[name][1] += (logits.argmax(-1) == y).float().sum().item()
                        totals[name][2] += len(y)
        totals = (
            unsharded if self.sharding is None else self._sum_shard_totals(shard_totals)
        )
        self.set_agents_mode(True)
        return {
            name: {"loss": s / max(c, 1), "accuracy": a / max(c, 1)}
            for name, (s, a, c) in totals.items()
        }

    def _run_test_loop(self) -> None:
        results = self.evaluate(self.scenario_instance.test_dataset)
        metrics = {}
        for name, values in results.items():
            metrics[f"{name}.{self.prefix}test_loss"] = values["loss"]
            metrics[f"{name}.{self.prefix}test_accuracy"] = values["accuracy"]
        self.test_metrics = metrics
        # Pre-training metrics go at step 0, before the RL iterations log theirs
        self.log_metrics(0 if self.as_pretraining else _num_epochs(self), metrics)
