"""Built-in plugin of nip-core: parameters.

Registered before installed plugins, through the same hooks.
"""
