"""app/photos.py: a user's own pictures, each face answered, every unusable picture or flag one line."""
import json
import os
import re

from PIL import Image
from conftest import damaged_files, image_tree, one_line, run_main, run_script, user_images
import numpy as np
import pytest
import synthetic_faces

import cli
import data
import weights
from app import photos


@pytest.mark.parametrize("name,words", [("bomb.png", ["image too large"]), ("broken.bmp", ["unreadable image"])])
def test_images_too_large_or_broken(tmp_path, mlp_file, name, words):
    (tmp_path / name).write_bytes(damaged_files()[name])
    one_line(run_main("app/photos.py", "--weights", mlp_file, "--images", tmp_path / name), 1, name, *words)


@pytest.mark.parametrize("flags,words", [(["--layer", "stage2"], ["--layer", "add --gradcam"]),
                                         (["--class", "happy"], ["--class", "add --gradcam"]),
                                         (["--gradcam", "g.txt"], ["--gradcam g.txt", "name an image file"]),
                                         (["--gradcam", "g.png", "--json", "g.png"], ["--json g.png", "--gradcam's"])])
def test_photos_refuse_grad_cam_flags_they_cannot_honour(tmp_path, flags, words):
    weights.save(tmp_path / "r.pth", weights.NETWORKS["resnet"](), "resnet")
    one_line(run_main("app/photos.py", "--weights", tmp_path / "r.pth", "--images", tmp_path / "me.jpg", *flags), 2,
             *words)
    one_line(run_main("app/photos.py", "--weights", tmp_path / "r.pth", tmp_path / "r.pth", "--images",
                      tmp_path / "me.jpg", "--gradcam", tmp_path / "g.png"), 2, "--gradcam", "one --weights file")


def test_two_photos_with_one_stem_get_two_outputs(tmp_path, mlp_file):
    from PIL import Image
    for name, value in (("1.jpg", 60), ("1.png", 200)):
        Image.fromarray(np.full((48, 48), value, np.uint8)).save(tmp_path / name)
    code, out, err = run_main("app/photos.py", "--weights", mlp_file, "--images", tmp_path / "1.jpg",
                              tmp_path / "1.png", "--out", tmp_path / "marked")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "marked").iterdir()) == ["1.jpg_faces.png", "1.png_faces.png"]


def test_an_unreadable_folder_and_a_pipe_are_one_line_not_a_traceback_or_a_hang(tmp_path, faces, mlp_file,
                                                                             monkeypatch):
    root = image_tree(tmp_path / "tree", ("train",), faces)
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)  # no writer: opening it would wait forever
    one_line(run_main("app/photos.py", "--weights", mlp_file, "--images", fifo), 1, "photo.jpg: not a picture file")
    listdir = os.listdir

    def refuse(path):
        if str(path).endswith("angry"):
            raise PermissionError(13, "Permission denied")
        return listdir(path)

    monkeypatch.setattr(os, "listdir", refuse)
    with pytest.raises(cli.DataError, match="angry: cannot read this folder .Permission denied"):
        data.load(str(root))


def test_an_unreadable_image_for_prediction_is_one_line(tmp_path):
    weights.save(tmp_path / "w.pth", weights.NETWORKS["resnet"](), "resnet")
    (tmp_path / "me.jpg").write_text("not an image")
    one_line(run_script("app/photos.py", "--weights", tmp_path / "w.pth", "--images", tmp_path / "me.jpg"), 1,
                   "me.jpg", "unreadable image")


def test_one_broken_picture_among_many_is_named_and_the_rest_are_answered(tmp_path):
    weights.save(tmp_path / "w.pth", weights.NETWORKS["mlp"](), "mlp")
    good = []
    for k in range(3):
        Image.fromarray(synthetic_faces.synthetic_faces(3, seed=k)[0][0]).save(tmp_path / f"{k}.png")
        good.append(tmp_path / f"{k}.png")
    (tmp_path / "broken.jpg").write_text("not an image")
    r = run_script("app/photos.py", "--weights", tmp_path / "w.pth", "--images", good[0], tmp_path / "broken.jpg",
                   *good[1:], "--json", tmp_path / "faces.json", "--out", tmp_path / "marked")
    one_line(r, 1, "1 of 4 pictures could not be read", "broken.jpg: unreadable image")
    found = json.load(open(tmp_path / "faces.json"))["images"]
    assert [os.path.basename(f["file"]) for f in found] == ["0.png", "broken.jpg", "1.png", "2.png"]
    assert "unreadable image" in found[1]["error"] and all(len(f["faces"]) == 1 for f in found if "error" not in f)
    assert sorted(os.listdir(tmp_path / "marked")) == ["0_faces.png", "1_faces.png", "2_faces.png"]


def test_evaluate_images_prints_the_top_three_emotions(trained_file, tmp_path):
    files = user_images(tmp_path)
    r = run_script("app/photos.py", "--weights", trained_file, "--images", *files)
    assert r.returncode == 0, r.stderr
    # The 160-px picture may or may not hold a face for the face finder (then it says "no face found"), or
    # no finder may be installed (then it is classified whole); the 48x48 one is a crop already. Either way
    # every scored line is a top three.
    lines = [line for line in r.stdout.splitlines() if not line.startswith("faces found by ")]  # the finder, once
    assert lines[0].startswith(str(files[0])) and f"{files[1]} (classified whole: a face crop already)" in r.stdout
    scored = [line for line in r.stdout.splitlines() if "%" in line]
    assert len(scored) >= 1 + ("no face found" not in r.stdout)
    for line in scored:
        percents = [float(p) for p in re.findall(r" (\d+\.\d)%", line)]
        assert len(percents) == 3 and percents == sorted(percents, reverse=True) and sum(percents) <= 100.1, line


def test_a_folder_of_photos_means_its_pictures_and_no_two_photos_share_a_marked_name(tmp_path, mlp_file):
    from PIL import Image
    for folder, name in (("x", "a.jpg"), ("y", "a.jpg"), ("", "a.jpg_1.png"), ("album", "p.png"), ("album", "q.jpg")):
        (tmp_path / folder).mkdir(exist_ok=True)
        Image.fromarray(np.full((48, 48), 90, np.uint8)).save(tmp_path / folder / name)
    (tmp_path / "album" / "notes.txt").write_text("not a picture")
    names = photos.unique_names([tmp_path / "x" / "a.jpg", tmp_path / "y" / "a.jpg", tmp_path / "a.jpg_1.png"], "_faces.png")
    assert len(set(names)) == 3, names
    code, out, err = run_main("app/photos.py", "--weights", mlp_file, "--images", tmp_path / "album", "--json",
                              tmp_path / "f.json")
    assert code == 0, err
    assert [i["file"] for i in json.loads((tmp_path / "f.json").read_text())["images"]] == [
        str(tmp_path / "album" / "p.png"), str(tmp_path / "album" / "q.jpg")]


def test_an_output_named_twice_is_refused_before_the_work(tmp_path, mlp_file):
    from PIL import Image
    Image.fromarray(np.full((48, 48), 90, np.uint8)).save(tmp_path / "me.png")
    one_line(run_main("app/photos.py", "--weights", mlp_file, "--images", tmp_path / "me.png", "--out", tmp_path / "x",
                      "--json", tmp_path / "x"), 2, "--out", "is also a file to write")
    assert not (tmp_path / "x").exists()
