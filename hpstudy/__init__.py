"""hpstudy: hyperparameter studies for small neural networks, tracked in MLflow."""

__version__ = "0.1.0"
