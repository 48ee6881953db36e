"""nip plugin: the code validation scenario (is this code a correct solution?).

Importing this package is light; the entry module :mod:`.plugin` holds hook
implementations only.
"""

__version__ = "0.1.1"
