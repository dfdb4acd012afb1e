"""The genotype of the ``program`` space: the derived program, one (instruction, goto) per line."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Tuple

from nas.blocks.program import program_text
from nas.errors import CheckpointError


@dataclass(frozen=True)
class ProgramGenotype:
    instrs: Tuple[str, ...]
    gotos: Tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "instrs", tuple(str(x) for x in self.instrs))
        object.__setattr__(self, "gotos", tuple(int(g) for g in self.gotos))
        if not self.instrs or len(self.instrs) != len(self.gotos):
            raise CheckpointError(f"genotype: a program needs one goto per line, got {len(self.instrs)} "
                                  f"instructions and {len(self.gotos)} gotos")
        if any(not 0 <= g < len(self.gotos) for g in self.gotos):
            raise CheckpointError(f"genotype: every goto must name a line 0..{len(self.gotos) - 1}, got {list(self.gotos)}")

    def text(self) -> str:
        """The program as code, one line per program line."""
        return program_text(self.instrs, self.gotos, sep="\n") + "\n"

    def __str__(self) -> str:
        return program_text(self.instrs, self.gotos)

    def to_dict(self) -> Dict[str, Any]:
        return {"space": "program", "lines": [{"instr": x, "goto": g} for x, g in zip(self.instrs, self.gotos)]}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ProgramGenotype":
        lines = data.get("lines") if isinstance(data, dict) else None
        if not isinstance(lines, list) or not all(isinstance(l, dict) and "instr" in l and "goto" in l for l in lines):
            raise CheckpointError("genotype: a program genotype.yaml needs 'lines', a list of {instr, goto}")
        try:
            return cls(tuple(str(l["instr"]) for l in lines), tuple(int(l["goto"]) for l in lines))
        except (TypeError, ValueError):
            raise CheckpointError("genotype: every goto of a program must be a line number") from None
