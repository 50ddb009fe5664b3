"""The command line, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "czsl_models", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_predict_json_ranks_all_pairs():
    result = run_cli("predict", "examples/chelsea.jpg", "--model", "clip", "--backbone", "tiny",
                     "--states", "sleeping, sitting, striped", "--objects", "cat, dog", "--top-k", "100", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["model"] == "clip" and document["backbone"] == "tiny"
    ranking = document["ranking"]
    assert len(ranking) == 6
    assert {(r["state"], r["object"]) for r in ranking} == {(s, o) for s in ("sleeping", "sitting", "striped") for o in ("cat", "dog")}
    scores = [r["score"] for r in ranking]
    assert scores == sorted(scores, reverse=True)
    assert [s["state"] for s in document["states"]] and [o["object"] for o in document["objects"]]
    assert "explanations" in document and document["image"] == "examples/chelsea.jpg"


def test_predict_table_and_closed_world(tmp_path):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("sleeping cat\nstriped dog\n")
    result = run_cli("predict", "examples/chelsea.jpg", "examples/coffee.jpg", "--backbone", "tiny",
                     "--states", "sleeping, striped", "--objects", "cat, dog", "--pairs", str(pairs))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("examples/") == 2
    assert "zero-shot baseline" in result.stdout and "untrained" not in result.stdout
    assert "sleeping cat" in result.stdout and "sleeping dog" not in result.stdout


def test_user_errors_are_one_line():
    for args, message in [
        (("predict", "pyproject.toml", "--backbone", "tiny"), "not an image"),
        (("predict", "missing.jpg", "--backbone", "tiny"), "No such file"),
        (("predict", "examples/chelsea.jpg", "--backbone", "tiny", "--states", ""), "states is empty"),
        (("predict", "examples/chelsea.jpg", "--backbone", "tiny", "--checkpoint", "no/such-repo"), "not in the local cache"),
        (("predict", "examples/chelsea.jpg"), "HF_HUB_OFFLINE is set"),
    ]:
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
        assert result.stderr.strip().count("\n") == 0


def test_models_lists_models():
    result = run_cli("models")
    assert result.returncode == 0 and "clip" in result.stdout
