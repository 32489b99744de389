"""Draw the plots of the gallery page (docs/plots.md) from the music data into docs/images.

Run from the project root: ``python docs/gallery.py [output directory]``. Each figure is
saved at the size a notebook shows it (100 dpi). BAYESMIX_GALLERY_QUICK=1 samples less.
"""

from __future__ import annotations

import io
import os
import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import bayesmix as bm  # noqa: E402
from bayesmix.datasets import load_music  # noqa: E402

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "images"
DRAWS, CHAINS = (150, 2) if os.environ.get("BAYESMIX_GALLERY_QUICK") == "1" else (1000, 4)  # 4 x 1000: the default


def save(figure, name: str) -> None:
    """``figure`` as ``OUT/name.png`` at 100 dpi, in 128 colours (a third of the bytes; the plots have few colours)."""
    from PIL import Image

    OUT.mkdir(parents=True, exist_ok=True)
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=100)
    Image.open(png).convert("RGB").quantize(colors=128).save(OUT / f"{name}.png", optimize=True)
    print(f"{OUT / name}.png: {figure.get_size_inches()[0]:.1f} x {figure.get_size_inches()[1]:.1f} in")


def main() -> None:
    music = load_music()
    music["high_anxiety"] = (music["na"] > 20).astype(int)
    model = bm.Model("na ~ perform_type + previous + (perform_type | id)", music)
    binary = bm.Model("high_anxiety ~ perform_type + previous + (1 | id)", music, family="binomial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.ConvergenceWarning)
        post = model.sample(draws=DRAWS, chains=CHAINS, seed=1, progressbar=False)
        binary_post = binary.sample(draws=DRAWS, chains=CHAINS, seed=1, progressbar=False)
        reml = model.fit_reml()  # singular: the random slopes' variances are near 0
    binary_ml = binary.fit_ml()
    save(bm.plot_trace(post, var_names=["beta", "sd_id", "sigma"]), "trace")
    save(bm.plot_rank(post, var_names=["beta", "sd_id", "sigma"]), "rank")
    save(bm.plot_ppc(post, seed=1), "ppc")
    save(bm.plot_prior_predictive(model.sample_prior_predictive(draws=200, seed=1), seed=1), "prior_predictive")
    save(bm.plot_ranef(reml), "ranef_reml")
    save(bm.plot_ranef(post), "ranef_posterior")
    save(bm.plot_conditional_effects(reml), "conditional_effects_reml")
    save(bm.plot_conditional_effects(binary_post), "conditional_effects_binary_posterior")
    save(bm.qq_plot(reml), "qq_reml")
    save(bm.plot_binned_residuals(binary_ml), "binned_residuals")


if __name__ == "__main__":
    main()
