"""The genotype of the ``dnf`` space: the learned rule set, as plain data.

One rule per tower: a binary task has one tower (the rule for the second class, the first class
otherwise), a task with more classes one tower per class. Prediction: the rules are checked in
order and the first that fires gives the class; if none fires, the first class.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

from nas.blocks.rules import Clause, literal_index, rule_text
from nas.errors import CheckpointError

RuleT = Tuple[str, Tuple[Tuple[str, ...], ...]]   # (class label, clauses of literal names)


def towers_for(num_classes: int) -> int:
    return 1 if num_classes == 2 else num_classes


@dataclass(frozen=True)
class DNFGenotype:
    features: Tuple[str, ...]
    classes: Tuple[str, ...]
    rules: Tuple[RuleT, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "rules", tuple((str(c), tuple(tuple(cl) for cl in cls))
                                                for c, cls in self.rules))
        if len(self.classes) < 2:
            raise CheckpointError(f"genotype: a DNF rule set needs at least 2 classes, got {len(self.classes)}")
        want = self.classes[1:] if len(self.classes) == 2 else self.classes
        if tuple(c for c, _ in self.rules) != want:
            raise CheckpointError(f"genotype: DNF rules must be given for classes {list(want)} in that "
                                  f"order, got {[c for c, _ in self.rules]}")
        for _, cls in self.rules:
            for clause in cls:
                for lit in clause:
                    try:
                        literal_index(lit, self.features)
                    except ValueError:
                        raise CheckpointError(f"genotype: DNF literal '{lit}' names no feature; features "
                                              f"are {', '.join(self.features[:8])}…") from None

    def tower_clauses(self) -> List[List[Clause]]:
        """Clauses of every tower as literal indices (2k = feature k, 2k+1 = NOT feature k)."""
        return [[tuple(literal_index(lit, self.features) for lit in cl) for cl in cls]
                for _, cls in self.rules]

    def lines(self) -> List[str]:
        return [rule_text(cls, c) for c, cls in self.rules] + [f"OTHERWISE class {self.classes[0]}"]

    def text(self) -> str:
        """The rule set as if-then text, one rule per line."""
        return "\n".join(self.lines()) + "\n"

    def __str__(self) -> str:
        return "; ".join(self.lines())

    def to_dict(self) -> Dict[str, Any]:
        return {"space": "dnf", "features": list(self.features), "classes": list(self.classes),
                "rules": [{"class": c, "clauses": [list(cl) for cl in cls]} for c, cls in self.rules]}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "DNFGenotype":
        ok = (isinstance(data, dict) and isinstance(data.get("features"), list)
              and isinstance(data.get("classes"), list) and isinstance(data.get("rules"), list)
              and all(isinstance(r, dict) and isinstance(r.get("clauses"), list) for r in data["rules"]))
        if not ok:
            raise CheckpointError("genotype: a DNF genotype.yaml needs 'features', 'classes' and 'rules' "
                                  "(a list of {class, clauses: [[literal, ...], ...]})")
        return cls(tuple(str(f) for f in data["features"]), tuple(str(c) for c in data["classes"]),
                   tuple((str(r.get("class")), tuple(tuple(str(x) for x in cl) for cl in r["clauses"]))
                         for r in data["rules"]))
