"""python -m fer2013_emotions PICTURE_OR_VIDEO... : each face's box, emotion, probabilities and crop as JSON, in the
shape of the project's app/photos.py --json ({"images": [{"file", "whole", "note", "faces"}]}; a video's entry has
"frames", each {"frame", "seconds", "faces"}). A picture that cannot be read gets {"file", "error"}, the rest are
answered, and the exit status is 1."""
import argparse
import json
import os
import sys

import fer2013_emotions as fe


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m fer2013_emotions", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", metavar="PICTURE", help="pictures, folders of pictures, or video files")
    p.add_argument("--bundle", default=fe.BUNDLE, help="a bundle folder of app/export.py (default: the package's)")
    p.add_argument("--every", type=int, default=1, help="in a video, answer every N-th frame (default: 1)")
    args = p.parse_args(argv)
    if args.every < 1:
        p.error(f"--every must be >= 1, got {args.every}")
    files = [os.path.join(f, n) if os.path.isdir(f) else f for f in args.files  # a folder means its pictures
             for n in (sorted(n for n in os.listdir(f) if not n.startswith(".") and n.lower().endswith(
                 fe.IMAGE_EXTS + fe.VIDEO_EXTS)) if os.path.isdir(f) else [None])]
    try:
        recognizer = fe.Recognizer(args.bundle)
    except fe.PictureError as e:
        print(f"python -m fer2013_emotions: {e}", file=sys.stderr)
        return 1
    out, errors = [], []
    for path in files:
        try:
            if path.lower().endswith(fe.VIDEO_EXTS):
                out.append({"file": path, "frames": list(recognizer.video(path, args.every))})
            else:
                faces, how = recognizer.answer(fe.read_grey(path))
                out.append({"file": path, "whole": how == "a face crop already", "note": how, "faces": faces})
        except fe.PictureError as e:
            out.append({"file": path, "error": str(e)})
            errors.append(str(e))
    json.dump({"images": out}, sys.stdout, indent=1)
    print()
    if errors:
        print(f"python -m fer2013_emotions: {len(errors)} of {len(files)} files could not be read, the rest were "
              f"answered: {errors[0]}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
