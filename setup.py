"""Build hook: the formula model's card ships in the wheel beside its weights.

The card's one home is docs/MODEL_CARD.md (its figures in docs/model_card/), where the README and the
other docs link it; a built wheel carries a copy as texscribe/weights/MODEL_CARD.md, so an installed
model comes with its card, as the digit model does (texscribe/weights/DIGITS_MODEL_CARD.md).
Everything else about the package is in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
CARD = ROOT / "docs" / "MODEL_CARD.md"
FIGURES = ROOT / "docs" / "model_card"


class BuildPyWithModelCard(build_py):
    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads docs/ in place
            return
        if not CARD.is_file():
            raise FileNotFoundError(f"{CARD} is missing: a wheel must carry the shipped model's card")
        weights = Path(self.build_lib) / "texscribe" / "weights"
        shutil.copy2(CARD, weights / "MODEL_CARD.md")
        shutil.copytree(FIGURES, weights / "model_card", dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildPyWithModelCard})
