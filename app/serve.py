"""A page in your browser: your camera live, each face with its box, emotion and a bar of the seven
probabilities; a photo's faces with their emotions, and on a click a face's Grad-CAM.

    python app/serve.py --weights weights/resnet.pth           then open http://127.0.0.1:8000
    python app/serve.py --weights weights/resnet.pth weights/vgg.pth --port 8080      an ensemble

The page (serve.html: one file, plain JavaScript, no build step) sends camera frames as JPEG to this server,
which answers with the same face finder, tracker (tracking.py) and networks as camera.py, and draws the
answers over the video. A frame or a photo stays in this process's memory while it is answered and is never
written to disk. The server listens on 127.0.0.1 (this machine only) unless --host says otherwise. It uses only
the standard library's HTTP server; finding faces needs OpenCV or MTCNN (requirements-faces.txt).
"""
import errno
import io
import ipaddress
import json
import os
import re
import socket
import sys
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the clone's root
import cli  # noqa: E402
import data  # noqa: E402
import gradcam  # noqa: E402
import weights  # noqa: E402
import readers  # noqa: E402
from app import faces, tracking  # noqa: E402

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "serve.html")
MAX_UPLOAD = 16 * 2 ** 20  # bytes: a phone photo is 2-8 MB
MAX_PIXELS = 40_000_000  # a larger picture is refused before it is decoded
WORKERS = 2  # requests answered at once; more wait up to BUSY_WAIT, then get 503 (the page stays live)
BUSY_WAIT = 5.0  # seconds
SESSIONS = 16  # cameras followed at once (a tracker each); the oldest is forgotten
MAX_CONNECTIONS = 32  # connections held at once; one more is answered 503 and closed
MAX_SCANS = 100  # a progressive JPEG has about 10 (libjpeg-turbo's djpeg offers such a limit, -maxscans)
REQUEST_TIMEOUT = 20.0  # seconds a whole request (its line, headers and body) may take to arrive
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Refused(Exception):
    """A request the server cannot answer: its HTTP status and one line for the page."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Emotions:
    """The networks, the face finder, and one tracker per camera session; answers are computed under a
    semaphore, so a flood of requests waits or is turned away instead of piling up work."""

    def __init__(self, paths, device):
        self.device = device
        self.nets = weights.load_nets(paths, device)
        self.amp = cli.fast_amp(device) == "bf16"
        self.detector = faces.best_detector(min_size=round(faces.MIN_SIZE * tracking.DETECT_SCALE))
        self.photo_detector = faces.best_detector()
        self.work = threading.BoundedSemaphore(WORKERS)
        # one network call at a time: Grad-CAM's hooks would otherwise catch another request's activations
        self.nets_lock = threading.Lock()
        self.trackers, self.lock = {}, threading.Lock()

    def answer(self, route, body, query):
        if not self.work.acquire(timeout=BUSY_WAIT):
            raise Refused(503, "the server is busy; try again in a moment")
        try:
            grey = decode(body)
            if route == "/frame":
                return "application/json", json.dumps(self.frame(grey, query.get("session", ["0"])[0]))
            if route == "/photo":
                return "application/json", json.dumps(self.photo(grey))
            return "image/png", self.explain(grey, query)
        finally:
            self.work.release()

    def frame(self, grey, session):
        """A camera frame: the faces followed in this session, with smoothed probabilities (camera.py's)."""
        if self.detector is None:
            raise Refused(501, f"no face finder is installed on the server: {faces.INSTALL}")
        tracker, lock = self.tracker(session)
        with lock:  # a session's frames are followed one at a time, in the order they come
            boxes = tracker.boxes(grey)
            with self.nets_lock:
                probs = faces.classify(grey, boxes, self.nets, self.device, autocast=self.amp)
            shown = tracker.classified(probs)
            ids = tracker.ids
        return {"width": grey.shape[1], "height": grey.shape[0],
                "faces": [faces.answer(box, p, track) for box, p, track in zip(boxes, shown, ids)]}

    def tracker(self, session):
        try:
            cv2 = faces.opencv()  # the tracker follows faces with OpenCV, whichever finder finds them
        except cli.DataError as e:
            raise Refused(501, f"following faces in camera frames needs OpenCV, an optional extra: {e}") from None
        with self.lock:
            if session not in self.trackers:
                if len(self.trackers) >= SESSIONS:
                    self.trackers.pop(next(iter(self.trackers)))
                self.trackers[session] = tracking.Tracker(cv2, self.detector), threading.Lock()
            return self.trackers[session]

    def photo(self, grey):
        boxes, how, angles = faces.find(grey, self.photo_detector)
        with self.nets_lock:
            probs = faces.classify(grey, boxes, self.nets, self.device, angles=angles)
        note = {"faces": "", "no face found": "no face found in this picture"}.get(how, f"taken whole: {how}")
        return {"width": grey.shape[1], "height": grey.shape[0], "note": note,
                "faces": [faces.answer(box, p, angle=a) for box, p, a in zip(boxes, probs, angles)]}

    def explain(self, grey, query):
        """The Grad-CAM figure of face ?face=N (0-based) of the photo, as gradcam.py draws it."""
        boxes, _, angles = faces.find(grey, self.photo_detector)
        try:
            k = int(query.get("face", ["0"])[0])
            if k < 0:
                raise IndexError
            box, angle = boxes[k], angles[k]
        except (ValueError, IndexError):
            raise Refused(400, f"no face {query.get('face', ['0'])[0]} in this picture "
                               f"({len(boxes)} found)") from None
        import matplotlib.pyplot as plt
        net = self.nets[0]  # an ensemble's first network: Grad-CAM explains one network
        layer = gradcam.TARGET_LAYERS.get(type(net))
        if layer is None:
            raise Refused(400, f"the {type(net).__name__} network has no convolutional layer to explain")
        crop = faces.cut(grey, [box], [angle])
        with self.nets_lock:
            maps, logits = gradcam.gradcam(net, next(data.batches(torch.from_numpy(crop), 1, self.device)),
                                           layer)
        fig = gradcam.figure(crop, maps.cpu().numpy(), (logits.float() / net.temperature).softmax(1).cpu().numpy(),
                             [f"face {k + 1}"], layer)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=130, bbox_inches="tight")
        plt.close(fig)
        return buffer.getvalue()


def page():
    """serve.html with the class list and palette written in, so the page names and colours the classes as
    every other picture of this project does."""
    with open(PAGE, encoding="utf-8") as f:
        html = f.read()
    return html.replace("__CLASSES__", json.dumps(list(data.CLASSES))).replace(
        "__PALETTE__", json.dumps(list(faces.PALETTE))).encode()


def decode(body):
    """Uploaded bytes -> uint8 grey [H, W], in memory; anything but a picture is a 400/413 with one line."""
    from PIL import Image, ImageOps
    if not body:
        raise Refused(400, "no picture in the request")
    too_large = f"the picture is too large; at most {MAX_PIXELS // 10 ** 6} megapixels"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, by its size
            im = Image.open(io.BytesIO(body))
        if im.width * im.height > MAX_PIXELS:
            raise Refused(413, f"the picture is {im.width}x{im.height}; at most {MAX_PIXELS // 10 ** 6} "
                               f"megapixels")
        scans = body.count(b"\xff\xda") if im.format == "JPEG" else 0  # start-of-scan markers: never inside data
        if scans > MAX_SCANS:  # each scan is decoded over the whole picture: thousands would take minutes
            raise Refused(413, f"the JPEG has {scans} scans; at most {MAX_SCANS}")
        return readers.grey_of(ImageOps.exif_transpose(im))
    except Refused:
        raise
    except Image.DecompressionBombError:
        raise Refused(413, too_large) from None
    except Exception:  # noqa: BLE001  Pillow's many kinds of "not a picture I can read"
        raise Refused(400, "not a picture (a JPEG, PNG, GIF, BMP, TIFF or WebP file)") from None


class Deadline(socket.SocketIO):
    """A connection's reads with one deadline for each whole request, not only a limit on each read: a client that
    trickles a byte every few seconds cannot hold a thread past it."""
    deadline = float("inf")

    def readinto(self, b):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive whole within its time limit")
        self._sock.settimeout(left)
        return super().readinto(b)


def make_handler(emotions):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = REQUEST_TIMEOUT  # a stalled request holds its thread this long at most

        def setup(self):
            super().setup()
            self.rfile.close()  # the socket's own reader, replaced by one that keeps the request's deadline
            self.reads = Deadline(self.connection, "rb")
            self.rfile = io.BufferedReader(self.reads)

        def handle_one_request(self):
            self.reads.deadline = time.monotonic() + REQUEST_TIMEOUT
            super().handle_one_request()

        def do_GET(self):
            try:
                self.check_host()
                if urlparse(self.path).path == "/favicon.ico":  # the page names none; others ask anyway
                    return self.send(204, "image/x-icon", b"")
                if urlparse(self.path).path not in ("/", "/index.html"):
                    raise Refused(404, f"no such address: {urlparse(self.path).path}")
            except Refused as e:
                return self.refuse(e)
            self.send(200, "text/html; charset=utf-8", page())

        def do_POST(self):
            url = urlparse(self.path)
            try:
                self.check_host()
                self.check_origin()
                if url.path not in ("/frame", "/photo", "/gradcam"):
                    raise Refused(404, f"no such address: {url.path}")
                kind, answer = emotions.answer(url.path, self.body(), parse_qs(url.query))
                self.send(200, kind, answer.encode() if isinstance(answer, str) else answer)
            except Refused as e:
                self.refuse(e)

        def other_method(self):
            self.refuse(Refused(405, f"{self.command} is not answered here: GET the page, POST a picture"))
        do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = other_method

        def check_host(self):
            """DNS rebinding: a page of another site that renamed its address to this machine still sends its
            own name as Host. Only the names this server is reached by are answered."""
            host = self.headers.get("Host", "")
            if not self.server.serves(host):
                raise Refused(403, f"this server answers requests addressed to {self.server.url()}, not to "
                                   f"{host or 'no Host'}")

        def check_origin(self):
            """A page of another site can make a browser POST here; the browser then says which page asks
            (Origin, or Referer). Programs that send neither (curl, apps) are not browsers' pages."""
            origin = self.headers.get("Origin")
            if origin is None and self.headers.get("Referer"):
                parts = urlparse(self.headers["Referer"])
                origin = f"{parts.scheme}://{parts.netloc}"
            if origin is not None and origin != f"http://{self.headers.get('Host', '')}":
                raise Refused(403, f"requests from another page ({origin}) are refused: open "
                                   f"{self.server.url()} itself")

        def body(self):
            """The request's bytes, read only within a valid Content-Length of at most MAX_UPLOAD."""
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                self.close_connection = True
                raise Refused(411, "send the picture with a Content-Length, not in chunks")
            length = self.content_length()
            body = self.rfile.read(length)
            if len(body) < length:
                self.close_connection = True
                raise Refused(400, f"the upload ended after {len(body)} of its {length} bytes")
            return body

        def content_length(self):
            text = self.headers.get("Content-Length")
            if text is None:
                self.close_connection = True
                raise Refused(411, "a Content-Length is required")
            if not re.fullmatch(r"[0-9]{1,12}", text.strip()):  # ASCII digits: "²" and 5,000 digits are no size
                self.close_connection = True  # the body is not read: the connection cannot be reused
                raise Refused(400, f"Content-Length {text[:20]!r} is not a size in bytes")
            length = int(text)
            if length > MAX_UPLOAD:
                self.close_connection = True
                raise Refused(413, f"the upload is {length / 2 ** 20:.0f} MB; at most {MAX_UPLOAD // 2 ** 20} MB")
            return length

        def handle_expect_100(self):
            """Expect: 100-continue asks before sending the body: a body too large is refused before it comes."""
            try:
                self.check_host()
                self.check_origin()
                self.content_length()
            except Refused as e:
                self.refuse(e)
                return False
            return super().handle_expect_100()

        def send_error(self, code, message=None, explain=None):
            """The standard library's own refusals (a request line or header too long, a bad request) as one
            line of JSON too."""
            self.close_connection = True
            self.refuse(Refused(code, message or self.responses.get(code, ("refused",))[0]))

        def refuse(self, e):
            self.send(e.status, "application/json", json.dumps({"error": str(e)}).encode())

        def send(self, status, kind, body):
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, *args):  # one line per request would drown the terminal at 10 frames/s
            pass

    return Handler


class Server(ThreadingHTTPServer):
    """The HTTP server, over IPv4 or IPv6 as --host is, holding at most MAX_CONNECTIONS connections, and
    knowing the names it is reached by."""
    daemon_threads = True

    def __init__(self, address, handler):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)
        self.held, self.held_lock = 0, threading.Lock()

    def url(self):
        host, port = self.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    def serves(self, host):
        """Whether a request's Host names this server: a loopback name on a loopback server; on every
        network (0.0.0.0), also an address literal or this machine's own name."""
        if host.startswith("["):  # an IPv6 literal: [::1] or [::1]:8000
            name, _, rest = host[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        else:
            name, _, port = host.partition(":")
        name = name.lower()
        if (port or "80") != str(self.server_address[1]):  # no port: the scheme's default, 80
            return False
        if name in LOOPBACK:
            return True
        bound = self.server_address[0]
        if bound in LOOPBACK or bound.startswith("127."):
            return name == bound
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return name in (socket.gethostname().lower(), socket.getfqdn().lower())

    def process_request(self, request, client_address):
        with self.held_lock:
            full = self.held >= MAX_CONNECTIONS
            self.held += not full
        if full:
            try:
                body = json.dumps({"error": "too many connections at once; try again in a moment"}).encode()
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.held_lock:
                self.held -= 1

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the page was closed or reloaded mid-answer: nothing to report
        super().handle_error(request, client_address)  # a bug: its traceback


def make_server(paths, host="127.0.0.1", port=8000, device="cpu"):
    emotions = Emotions(paths, device)
    server = Server((host, port), make_handler(emotions))
    server.emotions = emotions
    return server


def port_number(v):
    return 0 <= v < 65536


def make_parser():
    p = cli.parser("serve.py", __doc__)
    p.add_argument("--weights", nargs="+", required=True, help="model.pth file(s); several = an ensemble")
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (0.0.0.0: every network "
                   "this machine is on, so that other machines can open the page)")
    p.add_argument("--port", type=cli.ranged(int, port_number, "in 0-65535"), default=8000,
                   help="the port (0: any free one)")
    cli.add_device_flag(p)
    return p


def main(argv=None):
    p = make_parser()
    args = p.parse_args(argv)
    device = cli.pick_device(args.device)
    if not args.host.strip():
        p.error("--host '': name the address to listen on (127.0.0.1, or 0.0.0.0 for every network)")
    try:
        server = make_server(args.weights, args.host, args.port, device)
    except OSError as e:
        taken = e.errno in (errno.EADDRINUSE, errno.EACCES)
        raise cli.UserError(f"cannot listen on {args.host}:{args.port} ({e.strerror or e}); "
                            + ("try another --port" if taken else f"--host {args.host} is not an address of "
                               "this machine (127.0.0.1, ::1, 0.0.0.0, or one of its networks')")) from None
    finder = server.emotions.photo_detector
    print(f"faces found by {faces.finder_name(finder)}" if finder else f"no face finder: {faces.INSTALL}", flush=True)
    print(f"open {server.url()} in your browser (Ctrl-C stops)", flush=True)
    if server.server_address[0] in ("0.0.0.0", "::"):
        print(f"from another machine: http://{socket.gethostname()}:{server.server_address[1]} (photos only: a "
              f"browser gives its camera to https pages and to localhost)", flush=True)
    t0 = time.time()
    try:
        server.serve_forever()
    finally:
        server.server_close()
        print(f"stopped after {time.time() - t0:.0f} s")


if __name__ == "__main__":
    cli.run(main, "serve.py")
