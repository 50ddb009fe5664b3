"""The numerically sensitive tests (marked cpu_kernels) again under torch's other CPU kernels: what a developer on
an older or a different x86 CPU would run. ATEN_CPU_CAPABILITY is read once, when torch starts, hence a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RERUN_ENV = "CZSL_CPU_KERNELS_RERUN"  # set in the subprocess, so it does not start another one
SENSITIVE_FILES = ["tests/test_svip.py", "tests/test_msci.py"]


@pytest.mark.skipif(bool(os.environ.get(RERUN_ENV)), reason="already the re-run")
@pytest.mark.parametrize("capability", ["default", "avx2"])
def test_numerically_sensitive_tests_pass_with_other_cpu_kernels(capability):
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability, HF_HUB_OFFLINE="1", **{RERUN_ENV: "1"})
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cpu_kernels", *SENSITIVE_FILES]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                           env=env, capture_output=True, text=True, timeout=120)
    # torch falls back to what the CPU has when asked for more; asked for less, it obeys.
    assert probe.stdout.strip().lower() in {capability, "default", "avx2"}, probe.stdout
