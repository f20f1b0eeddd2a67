import contextlib
import io
import os
import runpy
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tools")]
torch.set_num_threads(min(2, torch.get_num_threads()))

import synthetic_faces  # noqa: E402

import cli  # noqa: E402
import data  # noqa: E402

# 3,000 synthetic faces as a Kaggle-style CSV (tools/synthetic_faces.py), written once for the whole session:
# what the tests train and score on where FER2013 itself is not needed.
SYNTHETIC = os.path.join(tempfile.mkdtemp(prefix="fer-tests-"), "synthetic.csv")
synthetic_faces.write_csv(SYNTHETIC, *synthetic_faces.synthetic_faces(3000, 0), synthetic_faces.synthetic_usage(3000))

# FER2013 where a user puts it (the README), else the copy beside the project (Training + PublicTest rows).
FER2013 = [os.path.join(ROOT, "data", "fer2013.csv"), os.path.join(ROOT, "..", "shared", "fer2013", "fer2013_dev.csv.gz")]
# The optional extras (requirements-faces.txt): a test that needs one skips without it and says which.
def opencv_installed():
    from app import faces
    try:
        faces.opencv()  # OpenCV with its Haar cascades (5.x ships none)
    except cli.DataError:
        return False
    return True


HAS_OPENCV = opencv_installed()
needs_opencv = pytest.mark.skipif(not HAS_OPENCV, reason="OpenCV (requirements-faces.txt) is not installed")
# A short, quick recipe: the report's network on 2,400 synthetic faces, in small batches so that it takes
# enough steps.
QUICK = ["--data", SYNTHETIC, "--device", "cpu", "--bs", "32", "--lr", "3e-4"]


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
    return synthetic_faces.synthetic_faces(350, seed=1)


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


# ------------------------------------------------------------------------------------------------------------
# What many test files make: small data in each layout, damaged files, a user's pictures, weights

FAST = ["--data", SYNTHETIC, "--device", "cpu", "--model", "mlp", "--bs", "64", "--amp", "off"]
PIXELS = " ".join(["128"] * 2304)


def kaggle_csv(path, usages, labels=None, header="emotion,pixels,Usage"):
    labels = labels if labels is not None else [k % 7 for k in range(len(usages))]
    rows = [f"{y},{PIXELS},{u}" for y, u in zip(labels, usages)]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def image_tree(root, split_names, faces, per_class=2):
    from PIL import Image
    images, labels = faces
    for s, split in enumerate(split_names):
        for c in range(7):
            (root / split / data.CLASSES[c]).mkdir(parents=True)
            for k in np.flatnonzero(labels == c)[s * per_class:(s + 1) * per_class]:
                Image.fromarray(images[k]).save(root / split / data.CLASSES[c] / f"{k}.png")
    return root


def damaged_files():
    """Compressed files broken or misnamed, a decompression bomb's header, a broken bitmap."""
    import gzip
    import io
    import lzma
    import struct
    import zipfile
    import zlib
    noise = np.random.default_rng(0).integers(0, 256, (40, 2304))  # random pixels: no file compresses to nothing
    raw = ("emotion,pixels\n" + "".join(f"3,{' '.join(map(str, row))}\n" for row in noise)).encode()
    flipped = bytearray(gzip.compress(raw))
    flipped[len(flipped) // 2] ^= 0xFF
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("fer2013.csv", raw)
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)  # a 900-megapixel grey PNG header, no pixels

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    return {"flipped.csv.gz": bytes(flipped), "text.zip": raw, "text.xz": raw, "cut.zip": zipped.getvalue()[:900],
            "cut.csv.xz": lzma.compress(raw)[:500], "bomb.png": bomb, "broken.bmp": b"BM" + b"\x00\xff" * 40}


def user_images(tmp_path):
    """A colour JPEG of another size and a grey PNG, as a user would bring."""
    from PIL import Image
    faces = synthetic_faces.synthetic_faces(2, seed=9)[0]
    Image.fromarray(faces[0]).resize((160, 160)).convert("RGB").save(tmp_path / "me.jpg")
    Image.fromarray(faces[1]).save(tmp_path / "you.png")
    return [tmp_path / "me.jpg", tmp_path / "you.png"]


@pytest.fixture(scope="session")
def mlp_file(tmp_path_factory):
    """An untrained MLP's weights file: loads in milliseconds."""
    import weights
    path = tmp_path_factory.mktemp("w") / "w.pth"
    weights.save(path, weights.NETWORKS["mlp"](), "mlp")
    return path


@pytest.fixture(scope="session")
def trained_file(trained, tmp_path_factory):
    """The shared short run's network (its predictions are not all one class), in a folder of its own:
    evaluate.py writes its figures beside the weights."""
    import shutil
    path = tmp_path_factory.mktemp("w") / "model.pth"
    shutil.copy(trained[0] / "model.pth", path)
    return path


# The runtime package and the static page answer as the PyTorch path: these say what "as" means.
TOLERANCE = 1e-5  # probabilities; boxes and crops are equal


def group_photo():
    """Three faces: the README's portrait, a smaller copy, and a copy turned 18 degrees (levelled before it is cut)."""
    from PIL import Image
    face = Image.open(os.path.join(ROOT, "weights", "faces_example.jpg")).convert("RGB")
    canvas = Image.new("RGB", (900, 420), (90, 110, 130))
    canvas.paste(face, (0, 0))
    canvas.paste(face.resize((face.width * 6 // 10, face.height * 6 // 10), Image.BILINEAR), (face.width + 10, 60))
    canvas.paste(face.rotate(18, resample=Image.BILINEAR, fillcolor=(90, 110, 130)), (face.width * 16 // 10 + 20, 20))
    return np.asarray(canvas)


def assert_same(ours, theirs):
    assert [a["box"] for a in ours] == [a["box"] for a in theirs]
    assert [a["crop"] for a in ours] == [a["crop"] for a in theirs]
    for a, b in zip(ours, theirs):
        assert max(abs(a["probabilities"][c] - b["probabilities"][c]) for c in a["probabilities"]) <= TOLERANCE
        assert a["emotion"] == b["emotion"] or abs(max(a["probabilities"].values()) - sorted(
            a["probabilities"].values())[-2]) <= 2 * TOLERANCE  # a tie within the tolerance may break either way


def crowd_photo():
    """The README's portrait's face 80 times, 66x80 px, on a 960x720 grey picture: many faces, thousands of windows."""
    from PIL import Image
    face = Image.open(os.path.join(ROOT, "weights", "faces_example.jpg")).convert("RGB").crop((97, 46, 257, 240))
    face = face.resize((66, 80), Image.BOX)
    canvas = Image.new("RGB", (960, 720), (120, 120, 120))
    for row in range(8):
        for col in range(10):
            canvas.paste(face, (14 + 94 * col, 5 + 89 * row))
    return np.asarray(canvas)
