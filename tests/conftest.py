import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
torch.set_num_threads(min(2, torch.get_num_threads()))

import data  # noqa: E402

FER_DEV = os.path.join(ROOT, "..", "shared", "fer2013", "fer2013_dev.csv.gz")


@pytest.fixture(scope="session")
def faces():
    """350 synthetic faces: 50 per class."""
    return data.synthetic_faces(350, seed=1)


def run_script(script, *args, cwd=None):
    """Runs one of the project's scripts as a user would; returns the CompletedProcess."""
    import subprocess
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=1800)
