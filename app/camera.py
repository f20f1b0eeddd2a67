"""Emotions live, from a camera or a video file: find the faces, follow them, classify them in one batch,
draw.

    python app/camera.py --weights weights/resnet.pth                      camera 0, in a window
    python app/camera.py --weights weights/resnet.pth --source clip.mp4 --out annotated.mp4
    python app/camera.py --weights weights/resnet.pth --source clip.mp4 --csv emotions.csv --plot emotions.png

Needs OpenCV (`pip install -r requirements-faces.txt`). A window opens where there is a display; `--out`
writes the annotated video; `--csv` a row per frame and face (time, box, track, the seven probabilities) and
`--plot` each face's emotions over time, as the `fer` package's video analysis does. A video file shows its
progress (frames, frames/s, time left); at the end it prints frames/s, with face finding and classification
timed apart.

Real time on a laptop CPU (docs/faces.md has the measurements): finding faces is the expensive part, so it
runs on a half-size copy of the frame, every few frames, and the faces are followed in between (tracking.py,
which also keeps the labels from flickering). All faces of a frame are classified in one batch, under bf16
autocast where the device computes bf16 natively (cli.fast_amp).
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the clone's root
import cli  # noqa: E402
import data  # noqa: E402
import weights  # noqa: E402
from app import faces  # noqa: E402
from app.tracking import DETECT_SCALE, SMOOTH, Tracker  # noqa: E402

def open_source(cv2, source):
    cap = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not cap.isOpened():
        what = f"camera {source}" if source.isdigit() else source
        raise cli.DataError(f"{what}: cannot be opened" + (" (no such file)" if not source.isdigit() and
                                                              not os.path.exists(source) else ""))
    return cap


def can_show(cv2):
    """True where a window can open: a display, and an OpenCV built with windows (the headless wheel has
    none)."""
    desktop = sys.platform in ("win32", "darwin")
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or desktop):
        return False
    try:
        cv2.namedWindow("emotions")
        return True
    except cv2.error:
        return False


def draw(cv2, frame, boxes, texts):
    """Boxes and labels drawn with OpenCV on a copy of the BGR frame: a few hundred microseconds, where
    Pillow's round trip (faces.label_faces, used for photos) costs milliseconds per frame."""
    out = frame.copy()
    thick = max(2, min(frame.shape[:2]) // 240)
    for (x, y, w, h), text in zip(boxes, texts):
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), (0, 230, 0), thick)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1)
        top = y - th - base - 6 if y - th - base - 6 >= 0 else y + h + 1
        cv2.rectangle(out, (x, top), (x + tw + 6, top + th + base + 6), (0, 0, 0), -1)
        cv2.putText(out, text, (x + 3, top + th + 3), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return out


def check_video(cv2, path, frames):
    """None if the video at `path` holds all `frames`, else what is wrong. OpenCV's VideoWriter reports no
    error (a full disk included), so the file is read back: its frame count, and its last frame."""
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return "the video file is empty (a full disk, or no codec for this format)"
    cap = cv2.VideoCapture(path)
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        ok = count == frames and cap.set(cv2.CAP_PROP_POS_FRAMES, frames - 1) and cap.read()[0]
    finally:
        cap.release()
    return None if ok else f"the video holds {count} of {frames} frames: cut short, a full disk?"


def make_parser():
    p = cli.parser("camera.py", __doc__)
    p.add_argument("--weights", nargs="+", required=True, help="model.pth file(s); several = an ensemble")
    p.add_argument("--source", default="0", help="a camera number (0: the first) or a video file")
    p.add_argument("--out", help="write the annotated video here (.mp4 or .avi)")
    p.add_argument("--tta", action="store_true", help="average ten views of each face (evaluate.py --tta)")
    p.add_argument("--csv", help="write a row per frame and face: time, box, track and the seven "
                   "probabilities")
    p.add_argument("--plot", help="draw each face's emotions over time into this picture (.png, .pdf, .svg)")
    p.add_argument("--max-frames", type=cli.non_negative_int, default=0,
                   help="stop after this many frames (0: at the end)")
    cli.add_device_flag(p)
    return p


def main(argv=None):
    p = make_parser()
    args = p.parse_args(argv)
    device = cli.pick_device(args.device)
    amp = cli.fast_amp(device) == "bf16"
    if args.out and os.path.splitext(args.out)[1].lower() not in (".mp4", ".avi"):
        p.error(f"--out {args.out}: name a .mp4 or .avi file")
    cv2 = faces.opencv()
    if args.plot and os.path.splitext(args.plot)[1].lower() not in (".png", ".pdf", ".svg", ".jpg"):
        p.error(f"--plot {args.plot}: name a .png, .pdf, .svg or .jpg file")
    outputs = [o for o in (args.out, args.csv, args.plot) if o]
    if len({os.path.realpath(o) for o in outputs}) < len(outputs):
        p.error("--out, --csv and --plot name the same file; give each its own")
    show = can_show(cv2) and not (args.csv or args.plot)  # an analysis runs as fast as it can, unwatched
    if not show and not outputs:
        p.error("no display to show a window on here (or an OpenCV without windows, as the headless one); "
                "pass --out annotated.mp4 to write the video instead, or --csv / --plot for its emotions")
    for output in outputs:
        cli.check_writable(output, inputs=[args.source, *args.weights])
    nets = weights.load_nets(args.weights, device)
    detect = faces.best_detector(min_size=round(faces.MIN_SIZE * DETECT_SCALE))  # as small faces as in photos
    if detect is None:
        raise cli.DataError(f"no face finder is installed: {faces.INSTALL}")
    tracker = Tracker(cv2, detect)
    cap = open_source(cv2, args.source)
    fps_in = cap.get(cv2.CAP_PROP_FPS) or 30.0
    writer = None
    frames, t_find, t_classify, t0 = 0, 0.0, 0.0, time.perf_counter()
    tmp, cut_short = None, False
    rows = []  # (frame, seconds, track, box, probabilities) for --csv and --plot
    live = args.source.isdigit()
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if not live else 0
    total = min(total, args.max_frames) if args.max_frames and total > 0 else total
    from tqdm import tqdm
    progress = tqdm(total=total or None, unit="frame", desc=os.path.basename(args.source), leave=False,
                    dynamic_ncols=True, disable=None if total > 0 else True)  # frames, frames/s, time left
    try:
        while not args.max_frames or frames < args.max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            t = time.perf_counter()
            grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            boxes = tracker.boxes(grey)
            t_find += time.perf_counter() - t
            t = time.perf_counter()
            probs = faces.classify(grey, boxes, nets, device, args.tta, autocast=amp)
            shown = tracker.classified(probs)
            t_classify += time.perf_counter() - t
            when = time.perf_counter() - t0 if live else frames / fps_in  # a file's own clock
            rows += [(frames, when, track, box, pr) for track, box, pr in zip(tracker.ids, boxes, probs)]
            progress.update()
            texts = [f"{data.CLASSES[int(pr.argmax())]} {100 * pr.max():.0f}%" for pr in shown]
            marked = draw(cv2, frame, boxes, texts)
            frames += 1
            if args.out:
                if writer is None:
                    tmp = cli.temporary_name(args.out)  # renamed when checked: no half-written video
                    mp4 = args.out.lower().endswith(".mp4")
                    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if mp4 else "MJPG"))
                    writer = cv2.VideoWriter(tmp, fourcc, fps_in, (frame.shape[1], frame.shape[0]))
                writer.write(np.ascontiguousarray(marked))
            if show:
                cv2.imshow("emotions", np.ascontiguousarray(marked))
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):  # q or Esc
                    break
    except KeyboardInterrupt:  # Ctrl-C ends a camera session: what was recorded is kept; a file's is cut short
        cut_short = not live
    finally:
        progress.close()
        cap.release()
        if writer is not None:
            writer.release()
            written = check_video(cv2, tmp, frames)
            if written is None:
                os.replace(tmp, args.out)
            else:
                os.remove(tmp)
                raise cli.OutputError(f"{args.out}: cannot write it ({written}); nothing was written")
        if show:
            cv2.destroyAllWindows()
    if frames == 0:
        raise cli.DataError(f"{args.source}: no frame could be read")
    seconds = time.perf_counter() - t0
    h, w = grey.shape
    print(f"{frames} frames of {w}x{h} in {seconds:.1f} s: {frames / seconds:.1f} frames/s (finding faces "
          f"{1000 * t_find / frames:.1f} ms/frame, classifying {1000 * t_classify / frames:.1f} ms/frame)")
    if args.out:
        print(f"wrote {args.out}")
    if args.csv:
        write_csv(args.csv, rows)
        print(f"wrote {args.csv}: {len(rows)} rows, {len({r[2] for r in rows})} face track(s)")
    if args.plot:
        plot_emotions(args.plot, rows, args.source)
        print(f"wrote {args.plot}")
    if cut_short:
        sys.exit(f"camera.py: interrupted at frame {frames} of {total or 'the video'}: what was written holds those "
                 f"frames only")


def write_csv(path, rows):
    """A row per frame and face: the frame, its time in seconds, then the face's answer (faces.answer): its
    track, box, emotion and the network's seven probabilities for that frame (not smoothed)."""
    lines = [",".join(faces.VIDEO_COLUMNS)] + [
        ",".join(str(v) for v in faces.video_row(f, t, i, box, pr).values()) for f, t, i, box, pr in rows]
    cli.atomic_write(path, "\n".join(lines) + "\n")


def plot_emotions(path, rows, source, most=6):
    """Each face's seven probabilities over time, one panel per track (the `most` longest), smoothed as the
    live labels are."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tracks = {}
    for _, t, i, _, pr in rows:
        tracks.setdefault(i, []).append((t, pr))
    shown = sorted(tracks, key=lambda i: -len(tracks[i]))[:most]
    fig, axes = plt.subplots(max(1, len(shown)), 1, figsize=(9, 2.4 * max(1, len(shown))), squeeze=False,
                             sharex=True)
    for ax, i in zip(axes[:, 0], shown):
        times = [t for t, _ in tracks[i]]
        smooth, curves = None, []
        for _, pr in tracks[i]:
            smooth = pr if smooth is None else SMOOTH * smooth + (1 - SMOOTH) * pr
            curves.append(smooth)
        for c, name in enumerate(data.CLASSES):
            ax.plot(times, [100 * p[c] for p in curves], label=name, lw=1.4, color=faces.PALETTE[c])
        ax.set_ylabel(f"face {i}, %")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    if shown:
        axes[0, 0].legend(ncol=7, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    else:  # nothing to name in a legend
        axes[0, 0].text(0.5, 0.5, "no face found", ha="center", va="center", transform=axes[0, 0].transAxes)
    axes[-1, 0].set_xlabel("seconds")
    fig.suptitle(f"Emotions over time: {os.path.basename(str(source))}", y=1.0)
    fig.tight_layout()
    cli.atomic_write(path, lambda t: fig.savefig(t, dpi=110, bbox_inches="tight"))
    plt.close(fig)


if __name__ == "__main__":
    cli.run(main, "camera.py")
