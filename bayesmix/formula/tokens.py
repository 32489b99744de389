"""Tokenizer for lme4-style formula text.

Only what the bar-term layer needs to see is distinguished: names, numbers, quoted
strings, brackets and operators, each with its character offset so that errors can
point at the offending place. Everything else is passed through as text to formulaic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import FormulaError

OPERATORS = ("||", "**", "~", "+", "-", "*", "/", ":", "|", "^", "%", ",", "=", ".", "!", "<", ">", "&", "@")
OPENING = {"(": ")", "[": "]", "{": "}"}
CLOSING = {v: k for k, v in OPENING.items()}

_NAME = re.compile(r"[^\W\d]\w*")  # Python's identifiers, unicode letters included
_DOTTED = re.compile(r"[^\W\d]\w*(?:\.\w*)+")  # R's names with dots: Sepal.Length, x.1
#: Names whose dotted members a formula reads as attributes (np.log, contr.sum), not as column names.
NAMESPACES = ("np", "contr")
_NUMBER = re.compile(r"(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


@dataclass(frozen=True)
class Token:
    """One lexical unit of a formula: ``kind`` is name, number, string, backtick, op or bracket.

    ``width`` is the length of the source it stands for, where that differs from ``text``
    (R's ``^`` read as ``**``).
    """

    kind: str
    text: str
    start: int
    width: int | None = None

    @property
    def end(self) -> int:
        """Offset just past the token in the source."""
        return self.start + (len(self.text) if self.width is None else self.width)


def tokenize(text: str) -> list[Token]:
    """Split formula ``text`` into tokens, checking that brackets and quotes balance."""
    tokens: list[Token] = []
    stack: list[Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "'\"`":
            close = text.find(ch, i + 1)
            if close < 0:
                raise FormulaError(f"Unterminated quote {ch}: add the closing {ch}.", text, i)
            kind = "backtick" if ch == "`" else "string"
            tokens.append(Token(kind, text[i : close + 1], i))
            i = close + 1
            continue
        if (m := _DOTTED.match(text, i)) and _is_column_name(m.group(), text[m.end() :]):
            # a dotted name is a column, as in R: quoted for formulaic, which would read the dot as an operator
            tokens.append(Token("backtick", f"`{m.group()}`", i, width=len(m.group())))
            i = m.end()
            continue
        if m := _NAME.match(text, i):
            tokens.append(Token("name", m.group(), i))
            i = m.end()
            continue
        if m := _NUMBER.match(text, i):
            tokens.append(Token("number", m.group(), i))
            i = m.end()
            continue
        if ch in OPENING:
            tok = Token("bracket", ch, i)
            stack.append(tok)
            tokens.append(tok)
            i += 1
            continue
        if ch in CLOSING:
            if not stack or stack[-1].text != CLOSING[ch]:
                raise FormulaError(f"Unmatched closing bracket {ch!r}: remove it or add its opening bracket.", text, i)
            stack.pop()
            tokens.append(Token("bracket", ch, i))
            i += 1
            continue
        op = next((o for o in OPERATORS if text.startswith(o, i)), None)
        if op is None:
            raise FormulaError(f"Unexpected character {ch!r} in the formula.", text, i)
        tokens.append(Token("op", op, i))
        i += len(op)
    if stack:
        tok = stack[-1]
        raise FormulaError(
            f"Unclosed bracket {tok.text!r}: add the matching {OPENING[tok.text]!r}.", text, tok.start
        )
    return tokens


def _is_column_name(dotted: str, rest: str) -> bool:
    """Whether ``dotted`` (``a.b``) names a column: not a namespace's member, not a called method."""
    return dotted.split(".", 1)[0] not in NAMESPACES and not rest.lstrip().startswith("(")


def depths(tokens: list[Token]) -> list[int]:
    """Bracket depth of each token (an opening bracket has the depth outside it)."""
    out = []
    depth = 0
    for tok in tokens:
        if tok.kind == "bracket" and tok.text in CLOSING:
            depth -= 1
        out.append(depth)
        if tok.kind == "bracket" and tok.text in OPENING:
            depth += 1
    return out


def matching_close(tokens: list[Token], open_index: int) -> int:
    """Index of the bracket that closes the one at ``open_index``."""
    depth = 0
    for j in range(open_index, len(tokens)):
        tok = tokens[j]
        if tok.kind == "bracket":
            depth += 1 if tok.text in OPENING else -1
            if depth == 0:
                return j
    raise AssertionError("tokenize() guarantees balanced brackets")
