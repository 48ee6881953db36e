"""Built-in plugin of nip-core: trainers.

Registered before installed plugins, through the same hooks.
"""
