"""The studies hpstudy ships, one TOML file per dataset/architecture pair.

This folder is installed as the package `hpstudy.studies` (see pyproject.toml), so a wheel
holds the studies; `hpstudy list` shows them.
"""
