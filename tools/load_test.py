"""The page's server under load, on loopback only, for a fixed time: many clients at once sending camera frames,
photos, Grad-CAM requests, a crowd (a 16-megapixel JPEG of 6,400 faces), malformed requests (garbage, bad lengths,
another site's Host or Origin), stalled uploads and uploads trickled a byte a second. Prints how each kind was
answered, the server's peak memory and threads, and whether any request was dropped without an answer or printed a
traceback (exit 1 if so).

    python tools/load_test.py --weights weights/resnet.pth --seconds 60 --clients 24
"""
import collections
import io
import os
import random
import socket
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cli  # noqa: E402
from app import serve  # noqa: E402
from synthetic_faces import synthetic_faces  # noqa: E402


def picture(seed):
    """A 640x480 PNG with a synthetic face enlarged in it."""
    from PIL import Image
    face = synthetic_faces(1, seed=seed)[0][0]
    scene = np.full((480, 640), 110, np.uint8)
    scene[120:312, 200:392] = np.asarray(Image.fromarray(face).resize((192, 192)))
    buffer = io.BytesIO()
    Image.fromarray(scene).save(buffer, "PNG")
    return buffer.getvalue()


def crowd():
    """The README portrait's face 6,400 times (41x50 px each) on a 4000x4160 JPEG: MTCNN's worst case, bounded."""
    from PIL import Image
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    face = Image.open(os.path.join(root, "weights", "faces_example.jpg")).convert("L").crop((97, 46, 257, 240))
    face = face.resize((41, 50), Image.BOX)
    canvas = Image.new("L", (80 * 50, 80 * 52), 120)
    for row in range(80):
        for col in range(80):
            canvas.paste(face, (col * 50 + 4, row * 52 + 1))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def request(port, method, path, body=b"", headers=None, stall=False, trickle=False):
    """One request on its own connection; the status, or None when the connection closed with no answer. stall:
    the body stops after 10 bytes; trickle: the request goes a byte a second."""
    host = f"127.0.0.1:{port}"
    head = {"Host": host, "Content-Length": str(len(body)), "Connection": "close", **(headers or {})}
    raw = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items() if v is not None)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        try:
            whole = raw.encode() + b"\r\n" + (body[:10] if stall else body)
            for byte in (whole if trickle else [whole]):
                s.sendall(bytes([byte]) if trickle else byte)
                time.sleep(1.0 if trickle else 0)
            answer = s.recv(64)
        except OSError:
            return None
    return int(answer.split()[1]) if answer.startswith(b"HTTP/1.") else None


def client(port, deadline, pictures, tally, rng):
    kinds = {
        "crowd": lambda: request(port, "POST", "/photo", pictures[-1]),
        "frame": lambda: request(port, "POST", f"/frame?session={rng.randrange(4)}", rng.choice(pictures[:-1])),
        "photo": lambda: request(port, "POST", "/photo", rng.choice(pictures[:-1])),
        "gradcam": lambda: request(port, "POST", "/gradcam?face=0", rng.choice(pictures[:-1])),
        "garbage": lambda: request(port, "POST", "/photo", os.urandom(2000)),
        "bad length": lambda: request(port, "POST", "/photo", b"", {"Content-Length": rng.choice(["-1", "abc"])}),
        # refused before the body is read, and closed: a body of megabytes would still be on its way, and its
        # sender would see the connection reset rather than the 403 (another site's page, not the user's)
        "other host": lambda: request(port, "POST", "/photo", rng.choice(pictures[:-1]), {"Host": "evil.example"}),
        "other origin": lambda: request(port, "POST", "/photo", rng.choice(pictures[:-1]),
                                        {"Origin": "http://evil.example"}),
        "stalled": lambda: request(port, "POST", "/photo", rng.choice(pictures), stall=True),
        "trickled": lambda: request(port, "POST", "/photo", rng.choice(pictures), trickle=True),
    }
    while time.time() < deadline:
        kind = rng.choice(list(kinds))
        status = kinds[kind]()
        with tally["lock"]:
            tally[kind][status] += 1


def main(argv=None):
    p = cli.parser("load_test.py", __doc__)
    p.add_argument("--weights", nargs="+", required=True, help="model.pth file(s) the server answers with")
    p.add_argument("--seconds", type=cli.positive, default=60, help="how long the clients send")
    p.add_argument("--clients", type=cli.positive_int, default=24, help="clients sending at once")
    args = p.parse_args(argv)
    server = serve.make_server(args.weights, port=0)
    tracebacks = []
    report = server.handle_error
    def handle_error(request, address):  # what the server would print as a traceback (not a closed page)
        if not isinstance(sys.exc_info()[1], ConnectionError):
            tracebacks.append(repr(sys.exc_info()[1]))
        report(request, address)
    server.handle_error = handle_error
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    pictures = [picture(k) for k in range(4)] + [crowd()]  # the crowd last
    tally = collections.defaultdict(collections.Counter)
    tally["lock"] = threading.Lock()
    deadline = time.time() + args.seconds
    clients = [threading.Thread(target=client, args=(port, deadline, pictures, tally, random.Random(k)), daemon=True)
               for k in range(args.clients)]
    base_threads, peak_threads, peak_mb = threading.active_count(), 0, 0.0
    for c in clients:
        c.start()
    while any(c.is_alive() for c in clients):
        peak_threads = max(peak_threads, threading.active_count() - base_threads - args.clients)
        with open("/proc/self/statm") as f:
            peak_mb = max(peak_mb, int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20)
        time.sleep(0.2)
    server.shutdown()
    server.server_close()
    dropped = 0
    print(f"{args.clients} clients for {args.seconds:.0f} s against {', '.join(args.weights)}:")
    for kind, counts in tally.items():
        if kind == "lock":
            continue
        # a stalled or trickled upload is closed by the server at its deadline, unanswered: that is its answer
        dropped += 0 if kind in ("stalled", "trickled") else counts[None]
        shown = ", ".join(f"{status or 'closed'}: {n}" for status, n in sorted(counts.items(), key=str))
        print(f"  {kind:>12}: {sum(counts.values())} requests ({shown})")
    print(f"peak: {peak_mb:.0f} MB resident, {peak_threads} server threads; dropped without an answer: {dropped}; "
          f"tracebacks: {len(tracebacks)}")
    for t in sorted(set(tracebacks)):
        print(f"  traceback: {t}")
    if dropped or tracebacks:
        raise cli.UserError(f"{dropped} request(s) dropped, {len(tracebacks)} traceback(s)")


if __name__ == "__main__":
    cli.run(main, "load_test.py")
