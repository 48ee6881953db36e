"""The core's own plugins, registered first through the same hooks as installed ones."""

BUILTIN_PLUGINS: tuple[str, ...] = (
    "nip_core.builtin.parameters",
    "nip_core.builtin.protocols",
    "nip_core.builtin.trainers",
    "nip_core.builtin.loggers",
    "nip_core.builtin.text",
    "nip_core.builtin.configs",
    "nip_core.builtin.report",
)
"""Module names of the built-in plugins, in registration order."""
