"""`nerkit export` and `nerkit serve`: the fast inference path on the command line."""
from __future__ import annotations

import argparse
import json

from nerkit.cli._util import add_alias, add_backend


def export(a: argparse.Namespace) -> None:
    """Write ONNX graphs of a model directory; print what was written."""
    from nerkit.export import export as export_onnx

    info = export_onnx(a.model_dir, a.output or a.model_dir, quantize=a.quantize, fuse=a.fuse,
                       copy_weights=a.copy_weights, per_channel=a.per_channel, reduce_range=a.reduce_range,
                       calibration=a.calibration)
    print(json.dumps({"output": a.output or a.model_dir, **info}, indent=2))


def serve(a: argparse.Namespace) -> None:
    """Run the HTTP service until interrupted."""
    import logging

    from nerkit.serve import Limits, serve as run_service

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    limits = Limits(max_chars=a.max_chars, max_texts=a.max_texts, max_body_bytes=a.max_body_bytes,
                    max_batch_texts=a.max_batch_texts, max_wait_ms=a.max_wait_ms, read_timeout_s=a.read_timeout_s,
                    shutdown_timeout_s=a.shutdown_timeout_s)
    run_service(a.model_dir, host=a.host, port=a.port, limits=limits, backend=a.backend)


def _port(text: str) -> int:
    """An argparse type: a TCP port number (a usage error, not socket's OverflowError, for one out of range)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 0 to 65535, got {text}")
    return port


def register(sub) -> None:
    """Add the `export` and `serve` subcommands to the `nerkit` parser."""
    from nerkit.serve import Limits

    e = sub.add_parser("export", help="write ONNX (fp32 + int8) graphs of a model for fast inference")
    e.add_argument("model_dir")
    e.add_argument("--output", help="directory to write (a complete model directory; default: MODEL_DIR itself)")
    # Each option is named like the export() parameter it sets; the former spellings still work.
    on = argparse.BooleanOptionalAction
    e.add_argument("--quantize", action=on, default=True, help="write the int8 graph too (--no-quantize: skip it)")
    e.add_argument("--fuse", action=on, default=True, help="ONNX Runtime's BERT operator fusion")
    e.add_argument("--copy-weights", action=on, default=True,
                   help="copy model.safetensors to --output (--no-copy-weights: the copy then runs only with ONNX "
                        "Runtime)")
    add_alias(e, "--no-weights", "copy_weights", action="store_false")
    e.add_argument("--per-channel", action=on, default=True,
                   help="int8 weight scales per channel (--no-per-channel: per tensor)")
    add_alias(e, "--per-tensor", "per_channel", action="store_false")
    e.add_argument("--reduce-range", action=on, default=True,
                   help="7-bit int8 weights, which avoid saturation on CPUs without VNNI (--no-reduce-range: 8-bit)")
    add_alias(e, "--full-range", "reduce_range", action="store_false")
    e.add_argument("--calibration", metavar="FILE",
                   help="CoNLL or JSONL file like the training data, on which the int8 graph's activation scales "
                        "are fixed (default: the small corpus shipped with nerkit)")
    e.set_defaults(func=export)

    d = Limits()
    s = sub.add_parser("serve", help="HTTP service with micro-batching, OpenAPI docs and a web page")
    s.add_argument("model_dir")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=_port, default=8000, help="TCP port, 0 to 65535 (0: any free one)")
    add_backend(s)
    s.add_argument("--max-chars", type=int, default=d.max_chars, help="characters per text")
    s.add_argument("--max-texts", type=int, default=d.max_texts, help="texts per request")
    s.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes, help="request body size")
    # Named like the Limits fields they set; the former spellings still work.
    s.add_argument("--max-batch-texts", type=int, default=d.max_batch_texts, help="texts tagged together")
    add_alias(s, "--max-batch", "max_batch_texts", type=int)
    s.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms, help="wait for more requests to batch")
    s.add_argument("--read-timeout-s", type=float, default=d.read_timeout_s,
                   help="seconds a request's head (line and headers) may take to arrive, and the longest wait for the "
                        "next piece of its body; then 408 and the connection closes")
    add_alias(s, "--read-timeout", "read_timeout_s", type=float)
    s.add_argument("--shutdown-timeout-s", type=float, default=d.shutdown_timeout_s,
                   help="seconds open requests may take to finish after SIGTERM/Ctrl-C (then they get a 503)")
    add_alias(s, "--shutdown-timeout", "shutdown_timeout_s", type=float)
    s.set_defaults(func=serve)
