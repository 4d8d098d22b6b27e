"""`seqreg-hf serve`: a model behind HTTP, on Starlette and uvicorn.

`POST /predict` takes `{"inputs": "a text" | ["text", ...], "parameters": {"return_std": bool, "interval": 0.9}}`
and answers what `seqreg_hf.predict` returns for the same texts: one {label: score} dict for a string, a list of them
for a list. A pair model takes pairs the same way: `{"text": .., "text_pair": ..}` (one dict back) or a list of them
(or of `[text, text_pair]` lists); the limits count a pair as one input and apply to each of its texts. `GET /health`
says the server is up, `GET /info` what it serves (labels, backend, whether it reads pairs, the card's metadata, the
limits), and `GET /` is a page to type sentences into (`static/index.html`, plain HTML and JS).

Requests never run the model concurrently: one worker thread owns the `Predictor`. Requests wait in a queue; the
worker takes what is waiting (up to `--max_batch_size` texts, waiting at most `--batch_wait_ms` for requests that
are still being read), runs the texts of all requests that asked for the same outputs as one `Predictor` call (which
batches them by exact token length), and hands each request its own rows. Under load the model thus runs joined
batches, and a lone request never waits.

Every bad request gets a 4xx with `{"error": "one line naming the problem"}`: malformed JSON, an empty body, wrong
types, unknown fields, a request over a limit (413), and what the model refuses (std of a single network: 422).
SIGTERM (or Ctrl-C) stops accepting connections, lets the requests in flight and the queued batches finish, and
exits with status 0.
"""

import asyncio
import json
import logging
import math
import os
import queue
import signal
import socket
import sys
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources

logger = logging.getLogger(__name__)

PARAMETERS = ("return_std", "interval")
FIELDS = ("inputs", "parameters")
EXAMPLE = '{"inputs": "a text"}'


class RequestError(Exception):
    """A request the server refuses: its HTTP status and one line naming the problem."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------------------------------------------
# Reading a request


@dataclass(frozen=True)
class Limits:
    texts: int
    chars: int
    body_bytes: int
    requests: int = 128

    def as_dict(self):
        return {"max_texts_per_request": self.texts, "max_chars_per_text": self.chars,
                "max_body_bytes": self.body_bytes, "max_concurrent_requests": self.requests}


def type_name(value):
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def read_input(value, where, pairs):
    """A text, or a pair as a (text, text_pair) tuple, from one input of a request: a string, or a pair given as
    {"text": .., "text_pair": ..} or [text, text_pair]. `pairs`: whether the model reads pairs (None: either)."""
    if pairs is False and not isinstance(value, str):
        raise RequestError(422, f"{where} is {type_name(value)}; every text must be a string (this model reads one "
                                "text per input, not pairs).")
    if isinstance(value, dict):
        if sorted(value) != ["text", "text_pair"]:
            raise RequestError(422, f'{where} has keys {sorted(value)}; a pair is {{"text": ..., "text_pair": ...}}.')
        value = (value["text"], value["text_pair"])
    elif isinstance(value, list):
        if len(value) != 2:
            raise RequestError(422, f'{where} is an array of {len(value)} items; a pair is two texts, [text, '
                                    'text_pair] or {"text": ..., "text_pair": ...}.')
        value = tuple(value)
    elif not isinstance(value, str):
        raise RequestError(422, f"{where} is {type_name(value)}; every text must be a string.")
    if isinstance(value, str) and pairs:
        raise RequestError(422, f'{where} is a single text, and this model scores pairs of texts: send '
                                '{"text": ..., "text_pair": ...} (or a list of them).')
    return value


def parse_request(body, limits, pairs=None):
    """(texts or pairs, whether one input (not a list) was sent, {option: value}) from a /predict body, or
    RequestError naming what is wrong with it. `pairs`: whether the model reads pairs (None: either is taken)."""
    if not body.strip():
        raise RequestError(400, f"empty body: send a JSON object such as {EXAMPLE}.")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RequestError(400, f"malformed JSON ({error}); send a JSON object such as {EXAMPLE}.") from None
    if not isinstance(data, dict):
        raise RequestError(422, f"the body is {type_name(data)}; send a JSON object such as {EXAMPLE}.")
    if unknown := sorted(set(data) - set(FIELDS)):
        raise RequestError(422, f"unknown field(s) {unknown}; the fields are {', '.join(FIELDS)}.")
    if "inputs" not in data:
        raise RequestError(422, f'no "inputs": send a text or a list of texts, as in {EXAMPLE}.')
    inputs = data["inputs"]
    single = isinstance(inputs, (str, dict))
    if not single and not isinstance(inputs, list):
        raise RequestError(422, f'"inputs" is {type_name(inputs)}; it must be a string or a list of strings (or, '
                                'for a pair model, {"text": ..., "text_pair": ...} or a list of them).')
    texts = [inputs] if single else inputs
    if len(texts) > limits.texts:
        raise RequestError(413, f'"inputs" holds {len(texts)} texts, over the limit of {limits.texts} per request '
                                "(--max_texts_per_request): send them in several requests.")
    read = []
    for index, value in enumerate(texts):
        where = '"inputs"' if single else f'"inputs"[{index}]'
        value = read_input(value, where, pairs)
        sides = zip((where,) if isinstance(value, str) else (f'{where}["text"]', f'{where}["text_pair"]'),
                    (value,) if isinstance(value, str) else value)
        for side, text in sides:
            if not isinstance(text, str):
                raise RequestError(422, f"{side} is {type_name(text)}; every text must be a string.")
            if len(text) > limits.chars:
                raise RequestError(413, f"{side} has {len(text)} characters, over the limit of {limits.chars} "
                                        "(--max_chars_per_text).")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise RequestError(422, f"{side} holds a lone surrogate (an unpaired \\ud800-\\udfff escape); "
                                        "send valid Unicode text.") from None
        read.append(value)
    return read, single, parse_parameters(data.get("parameters"))


def parse_parameters(parameters):
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise RequestError(422, f'"parameters" is {type_name(parameters)}; it must be an object such as '
                                '{"return_std": true}.')
    if unknown := sorted(set(parameters) - set(PARAMETERS)):
        raise RequestError(422, f"unknown parameter(s) {unknown}; the parameters are {', '.join(PARAMETERS)}.")
    options = {}
    return_std = parameters.get("return_std")
    if return_std is not None:
        if not isinstance(return_std, bool):
            raise RequestError(422, f'"return_std" is {type_name(return_std)}; it must be true or false.')
        if return_std:
            options["return_std"] = True
    interval = parameters.get("interval")
    if interval is not None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval < 1 or \
                not math.isfinite(interval):
            raise RequestError(422, f'"interval" is {json.dumps(interval)}; it must be a coverage between 0 and 1, '
                                    "such as 0.9.")
        options["interval"] = float(interval)
    return options


# --------------------------------------------------------------------------------------------------------------
# Batching: one thread runs the model


@dataclass
class Job:
    texts: list
    options: dict
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future = field(repr=False)


def settle(job, result=None, error=None):
    """Hand a result (or an error) to the event loop that waits for it; a request whose client left is skipped."""
    def done():
        if not job.future.done():
            job.future.set_exception(error) if error is not None else job.future.set_result(result)

    try:
        job.loop.call_soon_threadsafe(done)
    except RuntimeError:  # the loop is closed: nobody waits any more
        pass


class Batcher:
    """Requests in, one worker thread running `predictor.predict_dicts` on joined batches, each request's rows out.

    `submit` (from the event loop) queues a request and returns a future of its list of dicts. The worker takes the
    first waiting request and those queued behind it (waiting up to `wait_s` for requests still being read) until
    `max_batch` texts are held, and runs the texts of the requests that asked for the same options as one call (the
    Predictor groups them by exact length).
    `close` lets every queued request finish, then stops the thread."""

    def __init__(self, predictor, max_batch=256, wait_s=0.002):
        self.predictor, self.max_batch, self.wait_s = predictor, max_batch, wait_s
        self.queue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self.work, name="seqreg-hf-model", daemon=True)
        self.runs = self.rows = 0  # model calls made and texts scored, for /health
        self.waiting = 0  # requests submitted and not yet answered
        self.arriving = 0  # requests being read and checked by the event loop (only it writes this)
        self.lock = threading.Lock()

    def start(self):
        self.thread.start()

    def submit(self, texts, options):
        loop = asyncio.get_running_loop()
        job = Job(list(texts), dict(options), loop, loop.create_future())
        with self.lock:
            self.waiting += 1
        self.queue.put(job)
        return job.future

    def close(self):
        """Stop after the requests already queued (the stop mark queues behind them)."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()

    def collect(self, first):
        """`first` and the jobs queued behind it, up to max_batch texts; and whether the stop mark was met. While
        other requests are still being read (`arriving`), it waits for them up to the batching window: a lone
        request never waits, and requests that come together run together."""
        jobs, held = [first], len(first.texts)
        deadline = time.monotonic() + self.wait_s
        while held < self.max_batch:
            try:
                job = self.queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0 or not self.arriving:
                    break
                try:
                    job = self.queue.get(timeout=min(left, 0.0005))  # then look at `arriving` again
                except queue.Empty:
                    continue
            if job is None:
                return jobs, True
            jobs.append(job)
            held += len(job.texts)
        return jobs, False

    def work(self):
        stop = False
        while not stop:
            first = self.queue.get()
            if first is None:
                break
            jobs, stop = self.collect(first)
            groups = {}
            for job in jobs:
                groups.setdefault(tuple(sorted(job.options.items())), []).append(job)
            for group in groups.values():
                self.run(group)

    def answer(self, job, result=None, error=None):
        with self.lock:
            self.waiting -= 1
        settle(job, result, error)

    def run(self, jobs):
        """One Predictor call for jobs of the same options; where it fails, each job runs alone to get its own
        answer (a refusal names the request's own problem)."""
        texts = [text for job in jobs for text in job.texts]
        try:
            rows = self.predict(texts, jobs[0].options)
        except Exception as error:
            if len(jobs) > 1:
                for job in jobs:
                    self.run([job])
                return
            self.answer(jobs[0], error=error)
            return
        start = 0
        for job in jobs:
            self.answer(job, result=rows[start:start + len(job.texts)])
            start += len(job.texts)

    def predict(self, texts, options):
        self.runs += 1
        self.rows += len(texts)
        return self.predictor.predict_dicts(texts, batch_size=self.max_batch, **options)


# --------------------------------------------------------------------------------------------------------------
# The application


def json_response(data, status=200):
    """A JSON response written by json.dumps: floats as Python writes them, so they read back exact."""
    from starlette.responses import Response

    return Response(json.dumps(data, ensure_ascii=False, allow_nan=False), status_code=status,
                    media_type="application/json")


def error_response(status, message):
    return json_response({"error": message}, status)


async def read_body(request, limit):
    """The body, refused (413) as soon as it is known to be over `limit` bytes: by its Content-Length, or while it
    streams in."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise RequestError(400, f"Content-Length {length!r} is not a number of bytes.")
        if int(length) > limit:
            raise RequestError(413, f"the body has {int(length)} bytes, over the limit of {limit} (--max_body_bytes).")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the body has over {limit} bytes, the limit (--max_body_bytes).")
        chunks.append(chunk)
    return b"".join(chunks)


def card_metadata(folder):
    """The YAML header of the model directory's README.md (license, tags, datasets, metrics), or {}."""
    path = os.path.join(folder, "README.md")
    if not os.path.isfile(path):
        return {}
    from huggingface_hub.repocard import metadata_load

    try:
        data = metadata_load(path) or {}
    except Exception as error:  # a hand-edited header that YAML cannot read: the server still runs
        logger.warning("%s: the card's metadata cannot be read (%s).", path, error)
        return {}
    return json.loads(json.dumps(data, default=str))  # dates and the like as text


def model_info(predictor, folder, name, limits, max_batch, wait_s):
    config = predictor.config
    from . import __version__

    return {
        "model": name,
        "labels": list(predictor.label_names),
        "backend": predictor.backend,
        "ensemble_size": config.ensemble_size,
        "return_std": predictor.has_std,
        "interval": has_intervals(predictor),
        "pairs": reads_pairs(predictor),
        "pair_encoding": getattr(config, "pair_encoding", None),
        "max_length": predictor.max_length,
        "label_means": config.label_means,
        "label_stds": config.label_stds,
        "card": card_metadata(folder),
        "limits": limits.as_dict(),
        "batching": {"max_batch_size": max_batch, "batch_wait_ms": wait_s * 1000},
        "seqreg_hf": __version__,
    }


def reads_pairs(predictor):
    """Whether the model scores pairs of texts, so that each input is {"text": .., "text_pair": ..}."""
    return getattr(predictor.config, "pair_encoding", None) is not None


def has_intervals(predictor):
    """Whether the model carries a calibration, so that requests may ask for an `interval`."""
    return getattr(predictor, "calibration", None) is not None


def page_html():
    return resources.files("seqreg_hf").joinpath("static", "index.html").read_text(encoding="utf-8")


def create_app(predictor, folder=None, name=None, limits=None, max_batch=256, wait_s=0.002):
    """The Starlette application serving `predictor`; its Batcher starts and stops with the application's lifespan
    (uvicorn runs the shutdown half after the requests in flight have been answered)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    limits = limits or Limits(256, 10_000, 4_194_304)
    batcher = Batcher(predictor, max_batch, wait_s)
    info = model_info(predictor, folder or "", name or getattr(predictor.model, "name_or_path", ""), limits,
                      max_batch, wait_s)
    page = page_html()

    open_requests = [0]  # /predict requests being read, queued or run: past the limit, 503 before the body is read

    async def predict(request):
        if open_requests[0] >= limits.requests:
            return error_response(503, f"{open_requests[0]} requests are already being served, the limit "
                                       "(--max_concurrent_requests): retry shortly.")
        open_requests[0] += 1
        try:
            return await answer(request)
        finally:
            open_requests[0] -= 1

    async def answer(request):
        try:
            batcher.arriving += 1
            try:
                body = await read_body(request, limits.body_bytes)
                texts, single, options = parse_request(body, limits, reads_pairs(predictor))
            finally:
                batcher.arriving -= 1
            if options.get("return_std") and not predictor.has_std:
                from .prediction import no_std_error

                raise RequestError(422, str(no_std_error(predictor.config)))
            if not texts:
                return json_response([])
            try:
                rows = await batcher.submit(texts, options)
            except ValueError as error:  # what the model refuses for these options or texts (a bug stays a 500)
                raise RequestError(422, str(error)) from None
        except RequestError as error:
            return error_response(error.status, str(error))
        except ClientDisconnect:  # the client left while sending its body: nobody reads an answer
            return error_response(400, "the client closed the connection before the body was complete.")
        return json_response(rows[0] if single else rows)

    async def health(request):
        return json_response({"status": "ok", "reading": batcher.arriving, "waiting": batcher.waiting,
                              "model_runs": batcher.runs, "texts_scored": batcher.rows})

    async def describe(request):
        return json_response(info)

    async def index(request):
        return HTMLResponse(page)

    async def http_error(request, error):
        message = {404: f"no such endpoint {request.url.path}; the endpoints are GET /, GET /health, GET /info and "
                        "POST /predict.",
                   405: f"{request.method} is not allowed on {request.url.path}."}.get(error.status_code, error.detail)
        return error_response(error.status_code, message)

    async def server_error(request, error):  # a fault of the server, never of the input: logged with its traceback
        logger.exception("while answering %s %s", request.method, request.url.path)
        return error_response(500, f"internal error ({type(error).__name__}); the server's log has the details.")

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        try:
            yield
        finally:
            await asyncio.to_thread(batcher.close)

    routes = [Route("/", index, methods=["GET"]), Route("/health", health, methods=["GET"]),
              Route("/info", describe, methods=["GET"]), Route("/predict", predict, methods=["POST"])]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: http_error, Exception: server_error})
    app.state.batcher = batcher
    return app


# --------------------------------------------------------------------------------------------------------------
# The command


def listen_socket(host, port):
    """A socket bound to host:port, before the model loads: a port in use fails at once, in one line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # so that asyncio sets TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port} ({error.strerror or error}); choose another --port or "
                      "--host.") from None
    return sock


def main(argv=None):
    from .arguments import parse_command
    from .logs import configure

    args, run = parse_command("serve", sys.argv[1:] if argv is None else argv)
    configure(run.log_level, disable_tqdm=True)  # no progress bars in a server's log
    if not args.model_name_or_path:
        raise ValueError("--model_name_or_path is required: the model directory or Hub id to serve.")
    try:
        import uvicorn
    except ImportError:
        raise ImportError("seqreg-hf serve needs starlette and uvicorn: pip install 'seqreg-hf[serve]'.") from None
    from .model_dir import resolve_model_dir
    from .prediction import Predictor

    sock = listen_socket(args.host, args.port)
    try:
        folder = resolve_model_dir(args.model_name_or_path)
        predictor = Predictor.from_dir(folder, backend=args.backend, onnx_file=args.onnx_file, device=args.device,
                                       max_length=args.max_length, trust_remote_code=args.trust_remote_code)
        limits = Limits(args.max_texts_per_request, args.max_chars_per_text, args.max_body_bytes,
                        args.max_concurrent_requests)
        app = create_app(predictor, folder, args.model_name_or_path, limits, args.max_batch_size,
                         args.batch_wait_ms / 1000)
        level = "warning" if run.log_level == "passive" else run.log_level
        config = uvicorn.Config(app, log_level=level, access_log=args.access_log, lifespan="on",
                                timeout_graceful_shutdown=None,
                                limit_concurrency=2 * args.max_concurrent_requests + 16)  # idle connections too
        server = uvicorn.Server(config)
        sock.listen(2048)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"seqreg-hf serve: {args.model_name_or_path} ({predictor.backend}) on http://{shown}:{port} "
              "(POST /predict, GET /info, GET /health, the page at /); SIGTERM or Ctrl-C stops it.", flush=True)
        serve_until_stopped(server, sock)
    finally:
        sock.close()
    print("seqreg-hf serve: stopped; every request was answered.", flush=True)


def serve_until_stopped(server, sock):
    """Run uvicorn until SIGTERM or Ctrl-C, then return (exit status 0): uvicorn finishes the requests in flight and
    then raises the signal again for the handler it found, which here only notes it."""
    noted = []
    in_main = threading.current_thread() is threading.main_thread()
    previous = {}
    if in_main:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda number, frame: noted.append(number))
    try:
        server.run(sockets=[sock])
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


__all__ = ["create_app", "Batcher", "Limits", "parse_request", "RequestError", "main"]
