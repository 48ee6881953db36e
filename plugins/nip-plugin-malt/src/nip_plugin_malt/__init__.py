"""nip plugin: ``pure_text_malt``, multi-agent LLM training (MALT) for text agents.

Every iteration samples a response tree per datapoint (several responses at every
turn), values each response by the mean reward of the episodes below it, labels it
positive or negative against the agent's reward mid-point, and fine-tunes each
shared model group with DPO on one preference pair per node that has both. See
:mod:`nip_plugin_malt.tree` for the rules, :mod:`nip_plugin_malt.sampling` for the
trees and :mod:`nip_plugin_malt.trainer` for the trainer.
"""

__version__ = "0.1.0"
