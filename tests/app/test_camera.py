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
