"""The package installs whole: a wheel built here (offline) installs into a fresh folder with its example photos
and their licences, py.typed, the MIT licence, one version and the czsl-models command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = [*(ROOT / "examples").glob("*.jpg"), *(ROOT / "examples").glob("*.png")]
BUILD_INPUTS = ["pyproject.toml", "setup.py", "README.md", "LICENSE", "requirements.txt", "czsl_models", "examples"]

CHECK_INSTALLED = """
import json, sys
from importlib import metadata
import czsl_models
from czsl_models.inputs.examples import examples_dir, example_photo_paths
from czsl_models.ui.blocks import EXAMPLES_DIR, example_photos
dist = metadata.distribution("czsl-models")
print(json.dumps({
    "module": czsl_models.__file__, "version": czsl_models.__version__, "dist_version": dist.version,
    "license": dist.metadata["License-Expression"], "examples_dir": str(examples_dir()), "app_examples": str(EXAMPLES_DIR),
    "photos": [p.name for p in example_photo_paths()], "app_photos": len(example_photos()),
    "photo_licences": (examples_dir() / "LICENSES.md").is_file(),
    "typed": (examples_dir().parent / "py.typed").is_file(),
    "scripts": [e.name + "=" + e.value for e in dist.entry_points if e.group == "console_scripts"],
}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (so the build leaves nothing in the repository), offline."""
    work = tmp_path_factory.mktemp("package")
    source = work / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-index", "--no-deps", "--no-build-isolation",
                    "-w", str(work / "dist"), str(source)], check=True, timeout=300)
    wheels = list((work / "dist").glob("czsl_models-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_holds_the_photos_their_licences_and_the_licence(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    photos = {f"czsl_models/examples/{path.name}" for path in PHOTOS}
    assert photos and photos <= names
    assert {"czsl_models/examples/LICENSES.md", "czsl_models/py.typed"} <= names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    # Every subpackage is found, including ones added later, without listing them.
    packages = {str(path.parent.relative_to(ROOT)) for path in (ROOT / "czsl_models").rglob("__init__.py")}
    assert all(f"{package}/__init__.py" in names for package in packages)


def test_installed_into_a_fresh_folder_it_finds_its_photos(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, timeout=300)
    # Run outside the repository, with only the installed copy (and the test environment's dependencies) on the path.
    environment = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", CHECK_INSTALLED], cwd=tmp_path, env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["module"].startswith(str(target))
    assert found["examples_dir"] == found["app_examples"] == str(target / "czsl_models" / "examples")
    assert set(found["photos"]) == {path.name for path in PHOTOS}
    assert found["app_photos"] == len(found["photos"]) and found["photo_licences"] and found["typed"]
    import czsl_models

    assert found["version"] == found["dist_version"] == czsl_models.__version__
    assert found["license"] == "MIT"
    assert found["scripts"] == ["czsl-models=czsl_models.cli:main"]
    app_help = subprocess.run([sys.executable, "-m", "czsl_models", "app", "--help"], cwd=tmp_path, env=environment,
                              capture_output=True, text=True, timeout=300)
    assert app_help.returncode == 0 and "--no-mcp" in app_help.stdout, app_help.stderr


def test_the_repository_declares_one_version_and_an_spdx_licence():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert project["license"] == "MIT" and project["urls"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
