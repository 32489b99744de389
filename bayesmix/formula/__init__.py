"""lme4 formula syntax: text -> :class:`MixedFormula` (response, fixed part, bar terms)."""

from .parser import BarTerm, MixedFormula, parse_formula

__all__ = ["BarTerm", "MixedFormula", "parse_formula"]
