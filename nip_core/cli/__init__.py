"""The ``nip`` command line; the entry point is :func:`nip_core.cli.main.main`."""
