"""texscribe: images of math to LaTeX.

Public API (kept small on purpose):

    from texscribe import load_model
    model = load_model("default")
    model.predict("photo.png")
    model.predict(Ink((stroke, ...)))   # pen strokes: (N, 2) arrays of x, y, y downwards
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Ink", "__version__", "load_model"]

if TYPE_CHECKING:
    from texscribe.data.render_strokes import Ink
    from texscribe.inference import Recognizer


def load_model(name_or_path: str = "default", **kwargs: Any) -> Recognizer:
    """Load a recognizer by shipped name (`default`) or checkpoint path; see `texscribe.inference`."""
    from texscribe.inference import load_model as _load

    return _load(name_or_path, **kwargs)


def __getattr__(name: str) -> Any:
    """`texscribe.Ink` without importing the drawing code (cv2) on `import texscribe`."""
    if name == "Ink":
        from texscribe.data.render_strokes import Ink

        return Ink
    raise AttributeError(f"module 'texscribe' has no attribute {name!r}")
