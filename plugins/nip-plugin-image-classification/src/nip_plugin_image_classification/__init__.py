"""nip plugin: the image classification scenario (datasets, environment, CNN agents)."""

__version__ = "0.1.1"
