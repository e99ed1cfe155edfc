"""hpstudy: hyperparameter studies for small neural networks, tracked in MLflow.

From Python: `hpstudy.optimize("studies/digits_mlp.toml", trials=10)` (see `hpstudy.run.api`).
"""

from importlib.metadata import version
from typing import Any

__version__ = version("hpstudy")  # pyproject.toml holds the one version
__all__ = ["__version__", "optimize"]


def __getattr__(name: str) -> Any:
    """`optimize` is imported when first used: `import hpstudy` (and the CLI) stay fast."""
    if name in ("optimize", "StudyResult"):
        from hpstudy.run import api

        return getattr(api, name)
    raise AttributeError(f"module 'hpstudy' has no attribute {name!r}")
