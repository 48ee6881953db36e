"""``python -m nip_plugin_transformers``: the plugin's small command line.

``convert GGUF OUT_DIR``
    Convert a GGUF file into a float32 safetensors model directory that the
    ``transformers`` backend can fine-tune (name ``OUT_DIR`` as the model).
``prepare [--cache-dir DIR]``
    Convert the default model into the cache directory now (it is done on first use
    otherwise), and print where it is.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nip_plugin_transformers")
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser("convert", help="convert a GGUF file")
    convert.add_argument("gguf", type=Path)
    convert.add_argument("out_dir", type=Path)
    prepare = commands.add_parser("prepare", help="convert the default model now")
    prepare.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)

    from nip_core.errors import BackendError
    from nip_plugin_transformers import models

    try:
        if args.command == "convert":
            if not args.gguf.exists():
                raise BackendError(f"{args.gguf}: no such file")
            if not args.gguf.is_file() or args.gguf.suffix != ".gguf":
                raise BackendError(f"{args.gguf} is not a .gguf file")
            if args.out_dir.exists():
                raise BackendError(f"{args.out_dir} exists; name a new directory")
            path = models.convert_gguf(args.gguf.resolve(), args.out_dir.absolute())
        else:
            from nip_core.settings import cache_dir_or_default
            from nip_plugin_transformers.parameters import (
                TransformersBackendParameters,
            )

            root = cache_dir_or_default(args.cache_dir) / "transformers"
            path = models.resolve_model(
                models.DEFAULT_MODEL, TransformersBackendParameters(), root
            ).path
    except BackendError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
