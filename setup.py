"""Packaging beyond what pyproject.toml can declare: the repository's examples/ folder (photos and their
licences) ships inside the package as czsl_models/examples; every other package is found automatically."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["czsl_models", "czsl_models.*"]), "czsl_models.examples"],
    package_dir={"czsl_models.examples": "examples"},
    package_data={"czsl_models": ["py.typed"], "czsl_models.examples": ["*.jpg", "*.png", "LICENSES.md"]},
)
