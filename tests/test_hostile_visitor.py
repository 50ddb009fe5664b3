"""The hostile-visitor suite's short form (benchmarks/hostile_visitor.py --quick): a Space-configured app, two
sessions, a local Hub stand-in on 127.0.0.1; every bound must hold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_hostile_visitor_cannot_crash_exhaust_or_borrow_the_host_token():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "hostile_visitor.py"), "--quick", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    rows = "\n".join(f"{label}: {outcome}" for label, outcome, _ in result["rows"])
    assert result["inputs"] >= 10 and result["crashes"] == 0 and result["generic_errors"] == 0, rows
    assert result["owner_token_requests"] == 0 and result["hub_requests"] > 0
    assert result["hub_file_downloads"] == 3, "only the one checkpoint that passed the checks was downloaded"
    assert result["end_rss"] <= 1.5 * result["start_rss"], result
    assert abs(result["disk_delta"]) <= 50e6, result
    assert "number 1 in the queue" in rows and "at most 1,000 MB" in rows and "not a .npy array" in rows
    assert "the page's Recognise with the RGBA bomb: refused on the page" in rows, rows
    # On a Space, Gradio names each MCP tool after the Space (owner/czsl-demo: czsl_demo_...), as the README says.
    assert result["mcp_tools"] == ["czsl_demo_compare_models", "czsl_demo_list_checkpoints", "czsl_demo_list_models",
                                   "czsl_demo_recognise_compositions"]
    assert done.returncode == 0
