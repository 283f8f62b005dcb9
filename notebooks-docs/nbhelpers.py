"""What the notebooks of notebooks-docs/ share besides the mamba2 package: where things are, and saving a figure.

    import mamba2                                  # the C library (pip install -e ./python)
    from nbhelpers import RESULTS, ROOT, save_figure
"""
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent  # the repository root
FIGURES = ROOT / "notebooks-docs" / "figures"
RESULTS = pathlib.Path(os.environ.get("MAMBA2_RESULTS", ROOT / "results"))  # benchmark JSON files


def save_figure(fig, name):
    """Save the figure as notebooks-docs/figures/NAME.png (the guides show these files)."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    print("saved", path.relative_to(ROOT))
    return path
