"""The ``nip`` command."""


def main() -> None:
    raise SystemExit("nip: the command line is being built")
