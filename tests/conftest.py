import contextlib
import io
import os
import runpy
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
torch.set_num_threads(min(2, torch.get_num_threads()))

import data  # noqa: E402
import synthetic  # noqa: E402

# FER2013 where a user puts it (the README), else the copy beside the project (Training + PublicTest rows).
FER2013 = [os.path.join(ROOT, "data", "fer2013.csv"), os.path.join(ROOT, "..", "shared", "fer2013", "fer2013_dev.csv.gz")]
# The optional extras (requirements-faces.txt): a test that needs one skips without it and says which.
def opencv_installed():
    from app import faces
    try:
        faces.opencv()  # OpenCV with its Haar cascades (5.x ships none)
    except data.DataError:
        return False
    return True


HAS_OPENCV = opencv_installed()
needs_opencv = pytest.mark.skipif(not HAS_OPENCV, reason="OpenCV (requirements-faces.txt) is not installed")
# A short, quick recipe: the report's network on 2,400 synthetic faces, in small batches so that it takes
# enough steps.
QUICK = ["--data", "synthetic", "--device", "cpu", "--bs", "32", "--lr", "3e-4"]


@pytest.fixture(scope="session", autouse=True)
def synthetic_faces_drawn_once():
    """synthetic.synthetic_faces is deterministic in (n, seed) and takes seconds for 3,000 faces; the scripts
    the tests run draw the same sets again and again, so each set is drawn once (handed out as
    copies, so no test can alter another's). The real function stays reachable as `__wrapped__`."""
    real, drawn = synthetic.synthetic_faces, {}

    def synthetic_faces(n, seed=0):
        if (n, seed) not in drawn:
            drawn[n, seed] = real(n, seed)
        return tuple(a.copy() for a in drawn[n, seed])

    synthetic_faces.__wrapped__ = real
    synthetic.synthetic_faces = synthetic_faces
    yield
    synthetic.synthetic_faces = real


@pytest.fixture(scope="session")
def fer2013():
    """The real FER2013 splits, read once (it takes a minute on a slow machine); the tests that use it skip
    where neither file is there."""
    path = next((p for p in FER2013 if os.path.exists(p)), None)
    if path is None:
        pytest.skip("FER2013 is not here (data/fer2013.csv or ../shared/fer2013/fer2013_dev.csv.gz)")
    return data.load(path)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """One 4-epoch run of the report's network, shared by the training tests and, as trained weights whose
    predictions are not all one class, by evaluate.py's and Grad-CAM's: (output folder, the finished run).
    Four epochs take a few minutes on two cores and end well above chance."""
    out = tmp_path_factory.mktemp("run")
    r = run_script("train.py", *QUICK, "--epochs", "4", "--out", out)
    assert r.returncode == 0, r.stderr
    return out, r


@pytest.fixture(scope="session")
def faces():
    """350 synthetic faces: 50 per class."""
    return synthetic.synthetic_faces(350, seed=1)


def run_script(script, *args, cwd=None):
    """`python SCRIPT ARGS` as a user runs it, through the script's own __main__ block, but in this process:
    starting an interpreter and importing torch costs more than most tests (35-60 s each on a slow CI
    machine). Returns a CompletedProcess: the exit code and what was printed. Tests that need a real
    process (pipes, torchrun) use subprocess themselves."""
    return captured(lambda: runpy.run_path(os.path.join(ROOT, script), run_name="__main__"), script, args, cwd)


def run_here(module, *args):
    """`python MODULE.py ARGS` through cli.run with the already imported module's main, so that a test's
    monkeypatches reach it (run_script executes a fresh copy of the file). Returns a CompletedProcess."""
    import cli
    script = module.__name__.split(".")[-1] + ".py"  # app.serve runs as serve.py
    return captured(lambda: cli.run(module.main, script), script, args)


def captured(call, script, args, cwd=None):
    out, err, code = io.StringIO(), io.StringIO(), 0
    argv, here = sys.argv, os.getcwd()
    sys.argv = [script, *map(str, args)]
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                call()
            except SystemExit as e:  # sys.exit("text") prints the text and exits 1, as Python does
                if isinstance(e.code, int) or e.code is None:
                    code = e.code or 0
                else:
                    code = 1
                    print(e.code, file=sys.stderr)
    finally:
        sys.argv = argv
        os.chdir(here)
    return subprocess.CompletedProcess([script, *args], code, out.getvalue(), err.getvalue())


def run_main(script, *args):
    """`python SCRIPT ARGS`, in this process: (exit code, stdout, stderr)."""
    r = run_script(script, *args)
    return r.returncode, r.stdout, r.stderr


def one_line(result, code, *words):
    """The run ended with exit `code` and exactly one line on stderr holding every one of `words`: no
    traceback. `result`: a CompletedProcess (run_script) or (code, stdout, stderr) (run_main)."""
    got_code, err = (result.returncode, result.stderr) if hasattr(result, "returncode") else (result[0], result[2])
    lines = err.strip().splitlines()
    assert got_code == code, (got_code, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], lines[0]
