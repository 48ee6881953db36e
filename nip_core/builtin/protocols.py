"""Built-in plugin of nip-core: protocols.

Registered before installed plugins, through the same hooks.
"""
