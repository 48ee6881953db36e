"""Built-in plugin of nip-core: loggers.

Registered before installed plugins, through the same hooks.
"""
