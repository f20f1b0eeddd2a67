"""Emotions live, from a camera or a video file: find the faces in each frame, classify them in one batch, draw.

    python camera.py --weights weights/resnet.pth                          camera 0, in a window
    python camera.py --weights weights/resnet.pth --source clip.mp4 --out annotated.mp4

Needs OpenCV (`pip install -r requirements-faces.txt`). A window opens where there is a display; `--out` writes
the annotated video; at the end it prints frames/s, with face finding and classification timed apart.

Labels do not flicker: each face is followed from frame to frame (the box of the last frame it overlaps most,
intersection over union >= 0.3), and what is shown is an exponential moving average of its probabilities,
p <- SMOOTH * p + (1 - SMOOTH) * p_frame; at 30 frames/s, SMOOTH = 0.7 forgets a frame's answer within ~0.3 s.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

import data
import faces
import model as models
from evaluate import load_nets, predict_proba

SMOOTH = 0.7


def iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def smooth(tracks, boxes, probs, keep=SMOOTH):
    """tracks: [(box, probs)] of the last frame -> this frame's, each face's probabilities averaged over frames."""
    new = []
    for box, p in zip(boxes, probs):
        best = max(tracks, key=lambda t: iou(t[0], box), default=None)
        if best is not None and iou(best[0], box) >= 0.3:
            p = keep * best[1] + (1 - keep) * p
        new.append((box, p))
    return new


def open_source(cv2, source):
    cap = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not cap.isOpened():
        what = f"camera {source}" if source.isdigit() else source
        raise data.DataError(f"{what}: cannot be opened" + (" (no such file)" if not source.isdigit() and
                                                              not os.path.exists(source) else ""))
    return cap


def can_show(cv2):
    """True where a window can open: a display, and an OpenCV built with windows (the headless wheel has none)."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform in ("win32", "darwin")):
        return False
    try:
        cv2.namedWindow("emotions")
        return True
    except cv2.error:
        return False


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.error = lambda msg: p.exit(2, f"camera.py: error: {msg}\n")
    p.add_argument("--weights", nargs="+", required=True, help="model.pth file(s); several = an ensemble")
    p.add_argument("--source", default="0", help="a camera number (0: the first) or a video file")
    p.add_argument("--out", help="write the annotated video here (.mp4 or .avi)")
    p.add_argument("--tta", action="store_true", help="average ten views of each face (evaluate.py --tta)")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: at the end)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but PyTorch sees no CUDA GPU")
    if args.max_frames < 0:
        p.error("--max-frames must be >= 0")
    if args.out and os.path.splitext(args.out)[1].lower() not in (".mp4", ".avi"):
        p.error(f"--out {args.out}: name a .mp4 or .avi file")
    cv2 = faces.opencv()
    show = can_show(cv2)
    if not show and not args.out:
        p.error("no display to show a window on here (or an OpenCV without windows, as the headless one); "
                "pass --out annotated.mp4 to write the video instead")
    if args.out:
        data.check_writable(args.out)
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    nets = load_nets(args.weights, device)
    detect = faces.HaarDetector()
    cap = open_source(cv2, args.source)
    fps_in = cap.get(cv2.CAP_PROP_FPS) or 30.0
    writer, tracks = None, []
    frames, t_find, t_classify, t0 = 0, 0.0, 0.0, time.perf_counter()
    tmp = None
    try:
        while not args.max_frames or frames < args.max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            t = time.perf_counter()
            grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            boxes = detect(grey)
            crops = np.stack([faces.crop(grey, b) for b in boxes]) if len(boxes) else None
            t_find += time.perf_counter() - t
            t = time.perf_counter()
            probs = predict_proba(nets, torch.from_numpy(crops), device, args.tta).numpy() if crops is not None else []
            t_classify += time.perf_counter() - t
            tracks = smooth(tracks, boxes, probs)
            texts = [f"{data.CLASSES[int(pr.argmax())]} {100 * pr.max():.0f}%" for _, pr in tracks]
            marked = faces.label_faces(frame[:, :, ::-1].copy(), [b for b, _ in tracks], texts)[:, :, ::-1]
            frames += 1
            if args.out:
                if writer is None:
                    root, ext = os.path.splitext(args.out)
                    tmp = f"{root}.tmp{os.getpid()}{ext}"  # renamed at the end: no half-written video left behind
                    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if ext.lower() == ".mp4" else "MJPG"))
                    writer = cv2.VideoWriter(tmp, fourcc, fps_in, (frame.shape[1], frame.shape[0]))
                writer.write(np.ascontiguousarray(marked))
            if show:
                cv2.imshow("emotions", np.ascontiguousarray(marked))
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):  # q or Esc
                    break
    except KeyboardInterrupt:
        pass  # Ctrl-C ends a camera session: what was recorded is kept
    finally:
        cap.release()
        if writer is not None:
            writer.release()
            os.replace(tmp, args.out)
        if show:
            cv2.destroyAllWindows()
    if frames == 0:
        raise data.DataError(f"{args.source}: no frame could be read")
    seconds = time.perf_counter() - t0
    h, w = grey.shape
    print(f"{frames} frames of {w}x{h} in {seconds:.1f} s: {frames / seconds:.1f} frames/s (finding faces "
          f"{1000 * t_find / frames:.1f} ms/frame, classifying {1000 * t_classify / frames:.1f} ms/frame)")
    if args.out:
        print(f"wrote {args.out}")


if __name__ == "__main__":
    try:
        main()
    except (data.DataError, models.WeightsError) as e:
        sys.exit(f"camera.py: {e}")
    except KeyboardInterrupt:  # while the weights load or the camera opens
        sys.exit("\ncamera.py: interrupted")
