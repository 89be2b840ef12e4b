"""One calibration figure of a hardware model: the value the model produced next to the value
the hardware was measured at. `tetriserve bench hw` prints these; the tests bound the ratio."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Figure:
    name: str
    model: float
    paper: float
    unit: str

    @property
    def ratio(self) -> float:
        return self.model / self.paper

    def as_dict(self) -> dict[str, float | str]:
        return {
            "name": self.name,
            "model": self.model,
            "paper": self.paper,
            "unit": self.unit,
            "ratio": self.ratio,
        }
