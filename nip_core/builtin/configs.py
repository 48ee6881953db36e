"""Built-in plugin of nip-core: configs.

Registered before installed plugins, through the same hooks.
"""
