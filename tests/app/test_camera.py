"""app/camera.py: video files and cameras."""

import numpy as np
import pytest


def test_the_optional_extra_opens_windows_on_a_desktop():
    """The headless OpenCV build cannot show camera.py's window; the extra installs the one that can."""
    import os

    from conftest import ROOT
    lines = [s.split("#")[0].strip() for s in open(os.path.join(ROOT, "requirements-faces.txt"))]
    assert any(s.startswith("opencv-python>") for s in lines) and not any("headless" in s for s in lines)


def test_a_video_cut_short_is_not_reported_as_written(tmp_path):
    cv2 = pytest.importorskip("cv2")
    from app import camera
    path = str(tmp_path / "v.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(5):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    assert camera.check_video(cv2, path, 5) is None
    assert "holds 5 of 8 frames" in camera.check_video(cv2, path, 8)
    (tmp_path / "empty.avi").write_bytes(b"")
    assert "empty" in camera.check_video(cv2, str(tmp_path / "empty.avi"), 8)


def test_a_video_file_stopped_midway_says_its_outputs_hold_the_frames_read(tmp_path, monkeypatch, mlp_file):
    """Ctrl-C or SIGTERM on a file: what was read is written, and a line and a non-zero exit say it is cut short
    (a live camera's Ctrl-C is its normal end)."""
    cv2 = pytest.importorskip("cv2")
    from app import camera, faces
    from conftest import run_here
    writer = cv2.VideoWriter(str(tmp_path / "v.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 96))
    for k in range(10):
        writer.write(np.full((96, 96, 3), 20 * k, np.uint8))
    writer.release()
    calls, classify = {"n": 0}, faces.classify

    def stop_at_the_fourth(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return classify(*a, **k)

    monkeypatch.setattr(faces, "classify", stop_at_the_fourth)
    r = run_here(camera, "--weights", mlp_file, "--source", tmp_path / "v.avi", "--csv", tmp_path / "e.csv")
    assert r.returncode == 1 and "interrupted at frame 3 of 10" in r.stderr, r.stderr
    assert (tmp_path / "e.csv").exists()
