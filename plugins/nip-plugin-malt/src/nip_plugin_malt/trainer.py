"""``pure_text_malt``: multi-agent LLM training on the staged text trainer.

Each iteration draws ``text_rl.rollouts_per_iteration`` datapoints and samples one
response tree per datapoint (:mod:`nip_plugin_malt.sampling`), level by level: after
every level its nodes are saved
(``rollouts/tree_iter_000003.level_2.partial.jsonl``) and the state records it, so a
run killed in the middle of the trees resumes at the last level it finished (the
files go at the next stage, once the state saved after the trees no longer names
them). The leaves are the iteration's rollouts. The fine-tune stage builds the
trees' values and labels (:mod:`nip_plugin_malt.tree`) and starts one DPO job per
shared model group on its agents' preference pairs; frozen groups and groups with
fewer than ``text_rl.min_fine_tune_examples`` pairs keep their model. The test loop
samples ordinary episodes.

Before anything is sampled, the trainer counts the most turns each iteration's trees
can need and refuses to start above ``pure_text_malt.max_generations_per_iteration``.

Metrics, besides the staged trainer's (training statistics are over the trees'
leaves): the original's per-round statistics (:meth:`~nip_plugin_malt.tree.
ResponseForest.statistics`), ``num_trees``, ``mean_tree_leaves``,
``num_tree_turns`` and ``tree_generation_bound``; after the jobs, ``fine_tune.``
prefixed, per agent ``<agent>.num_preference_pairs``,
``<agent>.num_decision_points``, ``<agent>.num_nodes_with_both_labels`` and
``<agent>.num_unpaired_nodes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nip_core.errors import NipConfigError
from nip_core.text.data import draw_indices
from nip_core.text.rollouts import TextRollouts
from nip_core.trainers.text import PureTextRlTrainer
from nip_plugin_malt.limits import generation_limit_problem
from nip_plugin_malt.sampling import sample_response_trees, tree_generation_bound
from nip_plugin_malt.tree import ResponseForest

__all__ = ["PureTextMaltTrainer"]

_LEVEL = "tree_level"
_ITERATION = "tree_iteration"


class PureTextMaltTrainer(PureTextRlTrainer):
    """MALT: DPO on preference pairs from response trees."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._generation_bounds: dict[int, int] = {}
        self.check_generation_limit()

    @property
    def num_responses(self) -> int:
        return int(self.hyper_params.pure_text_malt.num_responses_per_timestep)

    # ----------------------------------------------------------------------------------
    # How big the trees get

    def generation_bound(self, iteration: int) -> int:
        """The most turns the trees of ``iteration`` can need."""
        if iteration not in self._generation_bounds:
            count = self.rollouts_per_iteration
            indices = draw_indices(
                int(self.hyper_params.seed),
                "text_data/train",
                len(self.train_environment.dataset),
                iteration * count,
                count,
            )
            self._generation_bounds[iteration] = tree_generation_bound(
                self.train_environment,
                self.agents,
                indices,
                iteration=iteration,
                num_responses=self.num_responses,
            )
        return self._generation_bounds[iteration]

    def check_generation_limit(self) -> None:
        """Refuse, with the count and how to lower it, when some iteration's trees
        could need more turns than ``pure_text_malt.max_generations_per_iteration``.

        Raises
        ------
        NipConfigError
            Naming the bound, the limit and the parameters that set the count.
        """
        limit = self.hyper_params.pure_text_malt.max_generations_per_iteration
        if limit is None:
            return
        bounds = {i: self.generation_bound(i) for i in range(self.num_iterations)}
        worst = max(bounds, key=bounds.__getitem__)
        if bounds[worst] <= limit:
            return
        raise NipConfigError(
            generation_limit_problem(
                bounds[worst],
                limit,
                rollouts=self.rollouts_per_iteration,
                num_responses=self.num_responses,
                rounds=self.protocol_handler.max_message_rounds,
                iteration=worst,
            )
        )

    # ----------------------------------------------------------------------------------
    # Sampling the trees

    def _partial_tree_path(self, iteration: int, level: int) -> Path | None:
        """Where the nodes of a level of an iteration's trees are kept until the
        trees are done (``None`` for runs that write no files)."""
        if not self.writes_files:
            return None
        name = f"tree_iter_{iteration:06d}.level_{level}.partial.jsonl"
        return self.run.run_dir.rollouts_dir / name

    def _remove_partial_trees(self, iteration: int, below: int | None = None) -> None:
        if not self.writes_files:
            return
        pattern = f"tree_iter_{iteration:06d}.level_*.partial.jsonl"
        for path in self.run.run_dir.rollouts_dir.glob(pattern):
            level = int(path.name.split(".level_")[1].split(".")[0])
            if below is None or level < below:
                path.unlink(missing_ok=True)

    def _sample_training_rollouts(
        self, datapoint_indices: Sequence[int], iteration: int
    ) -> TextRollouts:
        extra = self.state.extra
        start = None
        if extra.get(_ITERATION) == iteration and _LEVEL in extra:
            level = int(extra[_LEVEL])
            path = self._partial_tree_path(iteration, level)
            if path is not None and path.is_file():
                start = (level, TextRollouts.load_jsonl(path))

        def on_level(level: int, frontier: TextRollouts) -> None:
            # the level's file first, then the state naming it, then the older
            # files: a kill anywhere leaves the state's level on disk
            path = self._partial_tree_path(iteration, level)
            if path is not None:
                frontier.save_jsonl(path)
            extra[_ITERATION] = iteration
            extra[_LEVEL] = level
            self.save_state()
            self._remove_partial_trees(iteration, below=level)

        bar, update = self._progress(f"Sampling response trees (iteration {iteration})")
        try:
            leaves = sample_response_trees(
                self.train_environment,
                self.agents,
                datapoint_indices,
                iteration=iteration,
                num_responses=self.num_responses,
                start=start,
                on_level=on_level,
                progress=update,
            )
        finally:
            bar.close()
        self.save_rollouts(leaves, "train", iteration)
        # the level files stay until the state that forgets them is saved (the
        # next stage removes them): a kill before that save resumes from the last
        # level, instead of sampling every tree again
        extra.pop(_ITERATION, None)
        extra.pop(_LEVEL, None)
        return leaves

    def _stage_log_stats(self) -> str:
        self._remove_partial_trees(self.state.iteration)
        return super()._stage_log_stats()

    # ----------------------------------------------------------------------------------
    # Values, labels, pairs

    def forest(self, rollouts: TextRollouts) -> ResponseForest:
        """The response trees of ``rollouts`` with values and labels."""
        handler = self.protocol_handler
        return ResponseForest(
            rollouts,
            [handler.reward_mid_point_estimate(name) for name in rollouts.agent_names],
            node_value=self.hyper_params.pure_text_malt.node_value,
        )

    def _get_log_stats(
        self, rollouts: TextRollouts, *, train: bool = True
    ) -> dict[str, Any]:
        stats = super()._get_log_stats(rollouts, train=train)
        if train:
            stats.update(self.forest(rollouts).statistics())
            stats["tree_generation_bound"] = self.generation_bound(rollouts.iteration)
        return stats

    def _stage_create_fine_tune_jobs(self, rollouts: TextRollouts) -> dict[str, Any]:
        rollouts = self.rollouts_for_fine_tuning()
        forest = self.forest(rollouts)
        seed = int(self.hyper_params.seed)
        summary: dict[str, Any] = {}
        for group in self.shared_model_groups.values():
            examples = []
            for agent_name in group.agent_names:
                found = forest.preference_pairs(agent_name, seed)
                examples.extend(pair.example for pair in found.pairs)
                summary[f"{agent_name}.num_preference_pairs"] = len(found.pairs)
                summary[f"{agent_name}.num_decision_points"] = found.decision_points
                summary[f"{agent_name}.num_nodes_with_both_labels"] = (
                    found.with_both_labels
                )
                summary[f"{agent_name}.num_unpaired_nodes"] = found.unpaired
            self.create_fine_tune_job(group, "dpo", examples, summary)
        return summary
