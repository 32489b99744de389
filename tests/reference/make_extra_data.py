"""Writes the simulated data sets in ./data used by make_lme4_extra.R.

Deterministic: every data set has its own fixed seed (np.random.default_rng), and every number
is written with 6 significant digits, so the CSV files are exactly what R reads.

    /work/venv/bin/python make_extra_data.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"


def write(df: pd.DataFrame, name: str) -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    df.to_csv(DATA / name, index=False, float_format="%.6g", lineterminator="\n")


def round6(v: np.ndarray) -> np.ndarray:
    """Values as they will read back from a '%.6g' CSV."""
    return np.array([float(f"{x:.6g}") for x in v])


def labels(prefix: str, idx: np.ndarray, width: int) -> list[str]:
    return [f"{prefix}{i + 1:0{width}d}" for i in idx]


def every_level(rng: np.random.Generator, n_levels: int, n: int) -> np.ndarray:
    """Random, unbalanced assignment of n rows to n_levels levels, each level used at least once."""
    idx = np.concatenate([np.arange(n_levels), rng.integers(0, n_levels, n - n_levels)])
    return rng.permutation(idx)


def crossed() -> pd.DataFrame:
    """y = 2 + 0.5 x + u_a + w_a x + v_b + e; a: 30 levels, b: 20 levels, crossed, 600 rows."""
    rng = np.random.default_rng(20261101)
    n, na, nb = 600, 30, 20
    a = every_level(rng, na, n)
    b = every_level(rng, nb, n)
    x = round6(rng.normal(0.0, 1.0, n))
    sd_int, sd_slope, rho = 1.0, 0.3, 0.4
    cov = np.array([[sd_int**2, rho * sd_int * sd_slope], [rho * sd_int * sd_slope, sd_slope**2]])
    ua = rng.multivariate_normal([0.0, 0.0], cov, na)
    vb = rng.normal(0.0, 0.7, nb)
    e = rng.normal(0.0, 0.8, n)
    y = 2.0 + 0.5 * x + ua[a, 0] + ua[a, 1] * x + vb[b] + e
    return pd.DataFrame({"y": round6(y), "x": x, "a": labels("a", a, 2), "b": labels("b", b, 2)})


def nested() -> pd.DataFrame:
    """y = 10 + 1.5 x + u_school + u_class + e; 12 schools of 3-5 classes (labels c1.. reused), 5-12 pupils."""
    rng = np.random.default_rng(20261102)
    sd_school, sd_class, sd_e = 1.5, 0.8, 2.0
    rows = []
    for s in range(12):
        u_s = rng.normal(0.0, sd_school)
        for c in range(int(rng.integers(3, 6))):
            u_c = rng.normal(0.0, sd_class)
            m = int(rng.integers(5, 13))
            x = round6(rng.normal(0.0, 1.0, m))
            y = 10.0 + 1.5 * x + u_s + u_c + rng.normal(0.0, sd_e, m)
            rows.append(pd.DataFrame({"y": round6(y), "x": x, "school": f"s{s + 1:02d}",
                                      "class": f"c{c + 1}"}))
    return pd.concat(rows, ignore_index=True)


def onefactor() -> pd.DataFrame:
    """y = 1 + 0.8 x - 0.5 z + b0_g + b1_g x + b2_g z + e; 25 groups of 6-20 rows, correlated effects."""
    rng = np.random.default_rng(20261103)
    sds = np.array([1.0, 0.5, 0.4])
    corr = np.array([[1.0, 0.3, -0.2], [0.3, 1.0, 0.25], [-0.2, 0.25, 1.0]])
    b = rng.multivariate_normal(np.zeros(3), corr * np.outer(sds, sds), 25)
    rows = []
    for g in range(25):
        m = int(rng.integers(6, 21))
        x = round6(rng.normal(0.0, 1.0, m))
        z = round6(rng.uniform(-2.0, 2.0, m))
        y = 1.0 + 0.8 * x - 0.5 * z + b[g, 0] + b[g, 1] * x + b[g, 2] * z + rng.normal(0.0, 0.6, m)
        rows.append(pd.DataFrame({"y": round6(y), "x": x, "z": z, "g": f"g{g + 1:02d}"}))
    return pd.concat(rows, ignore_index=True)


def main() -> None:
    for name, make in [("crossed.csv", crossed), ("nested.csv", nested), ("onefactor.csv", onefactor)]:
        df = make()
        write(df, name)
        print(f"{name}: {len(df)} rows, {(DATA / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
