"""The code validation environment: the text world's, with the original's prover
stance (the parity of the solution's SHA-256)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nip_core.text.environment import TextEnvironment

from nip_plugin_code_validation.humaneval import hash_parity

__all__ = ["CodeValidationEnvironment"]


class CodeValidationEnvironment(TextEnvironment):
    """Episodes about a question and a candidate solution."""

    def datapoint_prover_stance(self, datapoint: Mapping[str, Any]) -> int | None:
        """The parity of the SHA-256 of the solution (1 argues for accept), as the
        original library; read with ``protocol_common.randomize_prover_stance``."""
        stance = datapoint.get("prover_stance")
        if stance is not None:
            return int(stance)
        return hash_parity(str(datapoint["solution"]))
