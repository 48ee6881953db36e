"""nip-plugin-template: a minimal nip plugin to copy.

The package's entry module is :mod:`nip_plugin_template.plugin` (see the
``nip_core.plugins`` entry point in ``pyproject.toml``).
"""

__version__ = "0.1.0"
