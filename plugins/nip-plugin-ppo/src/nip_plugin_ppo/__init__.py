"""nip plugin: PPO trainers (vanilla_ppo) and the SPG family (spg)."""

__version__ = "0.1.0"
