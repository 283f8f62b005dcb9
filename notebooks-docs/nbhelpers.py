"""What the notebooks of notebooks-docs/ share besides the mamba2 package: where things are, and
showing and saving a figure.

    import mamba2                                  # the C library (pip install -e ./python)
    from nbhelpers import RESULTS, ROOT, save_figure
"""
import io
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent  # the repository root
FIGURES = ROOT / "notebooks-docs" / "figures"
RESULTS = pathlib.Path(os.environ.get("MAMBA2_RESULTS", ROOT / "results"))  # benchmark JSON files
DPI = 100  # figures of 8-13 inches: 800-1300 pixels wide, readable at 800


def shown(path):
    """@p path as a notebook prints it: relative to the repository root when it lies inside it, so
    that the stored outputs do not depend on where the checkout is."""
    path = pathlib.Path(path).resolve()
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def _png(fig):
    """The figure as PNG bytes; the figure is closed (so that the inline backend does not show it again)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def show_figure(fig, png=None):
    """Show the figure as the cell's output (a PNG), whatever matplotlib backend is in use."""
    from IPython.display import Image, display

    display(Image(data=png or _png(fig)))


def save_figure(fig, name):
    """Show the figure in the notebook and save the same PNG as notebooks-docs/figures/NAME.png (the
    guides show these files)."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / f"{name}.png"
    png = _png(fig)
    path.write_bytes(png)
    show_figure(fig, png)
    print("saved", path.relative_to(ROOT))
    return path
