"""nip plugin: ``pure_text_ei``, expert iteration for text agents.

Every iteration, each shared model group is fine-tuned (supervised) on its agents'
best episodes: those whose episode reward passes ``pure_text_ei.reward_threshold``,
or a reward-weighted sample; a proportion of the verifier's examples get the true
verdict written into their final message. See :mod:`nip_plugin_ei.selection` for the
rules and :mod:`nip_plugin_ei.trainer` for the trainer.
"""

__version__ = "0.1.0"
