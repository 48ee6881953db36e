"""nip plugin: the graph isomorphism scenario, its datasets and its GNN agents.

Importing this package is light; the heavy modules (``generation``, ``data``,
``environment``, ``agents``) import torch and are loaded only when needed.
"""

__version__ = "0.1.0"
