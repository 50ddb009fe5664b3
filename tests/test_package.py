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
BUILD_INPUTS = ["pyproject.toml", "setup.py", "README.md", "LICENSE", "docs/pypi.md", "czsl_models", "examples"]

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
            (source / name).parent.mkdir(parents=True, exist_ok=True)
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


# ------------------------------------------------------------------ the core without the extras
EXTRA_PACKAGES = ("gradio", "gradio_client", "mcp", "accelerate", "matplotlib", "tensorboard", "spaces")
# Loaded first by Python (a sitecustomize on PYTHONPATH): every package of an extra imports as if not installed.
BLOCK_EXTRAS = "import sys\nfor name in {names!r}:\n    sys.modules[name] = None\n"


def core_environment(tmp_path: Path) -> dict[str, str]:
    """Environment variables for a subprocess that sees the repository and none of the extras' packages."""
    blocker = tmp_path / "block-extras"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(BLOCK_EXTRAS.format(names=EXTRA_PACKAGES))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(ROOT)]), "HF_HUB_OFFLINE": "1"}


def run_core(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """python ARGS, run outside the repository without the extras."""
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=core_environment(tmp_path),
                          capture_output=True, text=True, timeout=300)


def test_the_core_imports_and_predicts_without_the_extras(tmp_path):
    imported = run_core(tmp_path, "-c", "import sys, czsl_models, czsl_models.cli, czsl_models.data, "
                        "czsl_models.evaluation, czsl_models.inference.batch, czsl_models.hub.publish\n"
                        f"print(sorted(n for n in {EXTRA_PACKAGES!r} if sys.modules.get(n)))")
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "[]"
    predicted = run_core(tmp_path, "-m", "czsl_models", "predict", str(ROOT / "examples" / "chelsea.jpg"),
                         "--backbone", "tiny", "--states", "sleeping, striped", "--objects", "cat, dog", "--json")
    assert predicted.returncode == 0, predicted.stderr
    answer = json.loads(predicted.stdout)
    assert answer["backbone"] == "tiny" and len(answer["ranking"]) == 4
    listed = run_core(tmp_path, "-m", "czsl_models", "--help")
    assert listed.returncode == 0 and "train" in listed.stdout and "app" in listed.stdout


@pytest.mark.parametrize("command, extra", [
    (["app"], "app"),
    (["train", "--model", "msci", "--dataset", "synthetic:shapes", "--backbone", "tiny", "--out", "out"], "train"),
    (["reproduce", "msci", "ut-zappos", "--root", "data"], "train"),
])
def test_a_command_that_needs_a_missing_extra_names_it(tmp_path, command, extra):
    result = run_core(tmp_path, "-m", "czsl_models", *command)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith(f"pip install 'czsl-models[{extra}]'"), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # reproduce stops before downloading anything


def _requirement_names(lines: list[str]) -> list[str]:
    from packaging.requirements import Requirement

    return sorted(str(Requirement(line)) for line in lines)


def test_the_metadata_has_a_lean_core_the_extras_and_a_package_page(wheel):
    from email.parser import Parser

    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(name).decode())
    requirements = [Requirement(line) for line in metadata.get_all("Requires-Dist")]
    core = {r.name for r in requirements if r.marker is None}
    assert core == {"torch", "torchvision", "open_clip_torch", "huggingface_hub", "safetensors", "numpy", "pillow",
                    "tqdm"}

    def extra(name: str) -> set[str]:
        return {r.name for r in requirements if r.marker is not None and r.marker.evaluate({"extra": name})}

    assert extra("app") == {"gradio", "matplotlib"}
    assert next(r for r in requirements if r.name == "gradio").extras == {"mcp", "oauth"}
    assert extra("train") == {"accelerate"} and extra("tensorboard") == {"tensorboard"}
    assert extra("all") == {"czsl-models"} and set(metadata.get_all("Provides-Extra")) == {
        "app", "train", "tensorboard", "all"}
    # PyPI shows a package description, not the Space's YAML block that opens README.md.
    description = metadata.get_payload().lstrip()
    assert description.startswith("# czsl-models") and "sdk: gradio" not in description
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert len(metadata.get_all("Project-URL")) >= 3
    classifiers = metadata.get_all("Classifier")
    assert "Programming Language :: Python :: 3.12" in classifiers and "Framework :: Gradio" in classifiers


def test_requirements_txt_is_the_core_and_every_extra():
    """The Space installs requirements.txt: the same pins as pyproject's dependencies and [app] + [train]."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = [*project["dependencies"], *extras["app"], *extras["train"]]
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    listed = [line for line in lines if line and not line.startswith("-")]
    assert _requirement_names(listed) == _requirement_names(declared)


def test_the_space_card_asks_least_privilege_and_names_what_it_runs():
    from huggingface_hub import SpaceCard

    from czsl_models.backbones import DEFAULT_BACKBONE
    from czsl_models.backbones.specs import backbone_hub_repo

    data = SpaceCard((ROOT / "README.md").read_text()).data
    # Publishing needs a new repo in the visitor's account: contribute-repos creates one and writes only to repos
    # the app created; write-repos cannot create and manage-repos could delete any of the visitor's repos.
    assert data.hf_oauth is True and data.hf_oauth_scopes == ["read-repos", "contribute-repos"]
    assert data.python_version == "3.11" and data.suggested_hardware == "t4-small"
    backbone_repo = backbone_hub_repo(DEFAULT_BACKBONE)
    assert data.models == [backbone_repo]
    assert [line.split()[0] for line in data.preload_from_hub] == [backbone_repo]
