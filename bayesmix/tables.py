"""Small table helpers shared by the REML and Bayesian results."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from .errors import ArgumentError


def correlation_from_cov(cov):
    """Correlation matrix of a covariance matrix (ndarray or DataFrame); 0 where a variance is 0."""
    values = np.asarray(cov, dtype=float)
    sd = np.sqrt(np.diag(values))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = values / np.outer(sd, sd)
    corr = np.where(np.outer(sd, sd) > 0, corr, 0.0)
    np.fill_diagonal(corr, 1.0)
    return pd.DataFrame(corr, index=cov.index, columns=cov.columns) if isinstance(cov, pd.DataFrame) else corr


def coef_table(fixef: pd.Series, ranef: pd.DataFrame) -> pd.DataFrame:
    """lme4's ``coef``: every fixed effect per level, plus the level's random effect where one exists."""
    table = pd.DataFrame(np.tile(fixef.to_numpy(), (len(ranef), 1)), index=ranef.index, columns=fixef.index)
    for column in ranef.columns:
        if column in table.columns:
            table[column] = table[column] + ranef[column]
        else:
            table[column] = ranef[column]
    return table


def ranef_by_group(frames: dict, group: str | None):
    """The entry for ``group``; the only entry when there is one; else the whole dict."""
    if group is not None:
        if not isinstance(group, str) or group not in frames:
            raise ArgumentError(f"No grouping factor {group!r}; the model has {', '.join(map(repr, frames))}.")
        return frames[group]
    return next(iter(frames.values())) if len(frames) == 1 else frames


def html_section(title: str, table: pd.DataFrame, float_format: str = "{:.4f}") -> str:
    """An HTML heading and table for notebook reprs."""
    return f"<h4>{html.escape(title)}</h4>" + table.to_html(float_format=float_format.format, na_rep="")


class TitledTable:
    """A result shown as one titled table: subclasses set ``table`` and implement ``_title()``;
    text and notebook (HTML) reprs follow."""

    table: pd.DataFrame

    def _title(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self._title() + ":\n" + self.table.to_string(float_format=lambda v: f"{v:.4f}")

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return html_section(self._title(), self.table)


def parameter_name(kind: str, effects: tuple[str, ...], group: str, several_groups: bool) -> str:
    """Readable name of a variance parameter: ``sd(Intercept)``, ``cor(Intercept, x | g)``."""
    inner = ", ".join(effects)
    return f"{kind}({inner} | {group})" if several_groups else f"{kind}({inner})"


def readable_p_values(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` whose ``p_value`` column (if any) is text with 3 significant digits,
    so that small p values print as 7.24e-25 rather than 0.0000."""
    out = table.copy()
    if "p_value" in out:
        out["p_value"] = out["p_value"].map(lambda p: f"{p:.3g}")
    return out


def indent(text: str) -> str:
    """``text`` with every line indented by one space, as lme4 indents its summary tables."""
    return "\n".join(" " + line for line in text.splitlines())


def random_effects_text(table: pd.DataFrame) -> str:
    """The random-effects table of a summary as lme4 prints it (each group named once)."""
    frame = table.copy()
    frame["group"] = frame["group"].where(frame["group"].ne(frame["group"].shift()), "")
    return frame.to_string(index=False, na_rep="", float_format="%.4f")


def fixed_correlation_text(corr: pd.DataFrame) -> str:
    """The lower triangle of the fixed effects' correlation matrix, as lme4's summary prints it."""
    lower = corr.where(np.tril(np.ones(corr.shape, dtype=bool), -1))
    return lower.iloc[1:, :-1].apply(lambda c: c.map(lambda v: "" if pd.isna(v) else f"{v:.3f}")).to_string()
