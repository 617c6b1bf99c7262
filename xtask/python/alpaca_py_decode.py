"""Times the official Python SDK (alpaca-py) decoding market-data quote frames into its Quote objects.

Run by `cargo xtask bench` (xtask/src/alpaca_py.rs) in a virtualenv holding a pinned alpaca-py, on
the frames the criterion codec bench of tranche-pricing wrote and decoded in the same run
(target/bench-results/quote-frames.json). No network: the frames are fed to the SDK's own code.

msgpack, the SDK's live stream path (alpaca/data/live/websocket.py, DataStream._consume): per frame
`msgpack.unpackb(frame)`, then per message `DataStream._cast(msg)`, which converts the msgpack
timestamp with `to_datetime()` and builds `Quote(msg["S"], msg)`. `_cast` is called on a real
StockDataStream, not copied. Routing to subscriber callbacks and the asyncio receive loop are not
timed (the Rust figure does not include delivery either).

JSON: alpaca-py's live stream only speaks msgpack (it sends `Content-Type: application/msgpack` and
always calls `msgpack.unpackb`). Its JSON path to the same Quote objects is the REST client's:
`json.loads` (what `requests.Response.json()` does) then `Quote(symbol, raw)` per quote, with
pydantic parsing the RFC 3339 timestamp. That is what is timed for JSON.

Pinned to one CPU. Each repetition decodes every frame `passes` times; the best repetition counts.
Prints one JSON object on stdout; on any failure prints the reason on stderr and exits non-zero.
"""

import argparse
import importlib.metadata
import json
import os
import platform
import sys
import time

import msgpack
from alpaca.data.live.stock import StockDataStream
from alpaca.data.models import Quote


def decode_msgpack(stream, frames):
    """The SDK's live path for every frame; returns how many Quote objects it built."""
    built = 0
    for frame in frames:
        for msg in msgpack.unpackb(frame):
            quote = stream._cast(msg)  # noqa: SLF001 - the SDK's own per-message decode
            built += type(quote) is Quote
    return built


def decode_json(frames):
    """json.loads, then the SDK's Quote construction, for every frame; returns the count built."""
    built = 0
    for frame in frames:
        for msg in json.loads(frame):
            quote = Quote(msg["S"], msg)
            built += type(quote) is Quote
    return built


def check_same_quotes(stream, json_frames, msgpack_frames, expected):
    """Both encodings must decode to the same `expected` quotes, or the comparison means nothing."""
    from_json = [Quote(m["S"], m).model_dump() for f in json_frames for m in json.loads(f) if m.get("T") == "q"]
    from_msgpack = [
        stream._cast(m).model_dump()  # noqa: SLF001
        for f in msgpack_frames
        for m in msgpack.unpackb(f)
        if m.get("T") == "q"
    ]
    if len(from_json) != expected or len(from_msgpack) != expected:
        sys.exit(f"expected {expected} quotes, decoded {len(from_json)} (JSON) and {len(from_msgpack)} (msgpack)")
    for i, (a, b) in enumerate(zip(from_json, from_msgpack)):
        if a != b:
            sys.exit(f"quote {i} differs between the JSON and msgpack frames: {a} != {b}")


def best_rate(decode, quotes_per_pass, passes, repetitions):
    """Quotes per second of the fastest repetition, and that repetition's seconds."""
    decode()  # warm-up: imports, pydantic's validators, caches
    best = float("inf")
    for _ in range(repetitions):
        start = time.perf_counter()
        built = 0
        for _ in range(passes):
            built += decode()
        secs = time.perf_counter() - start
        if built != quotes_per_pass * passes:
            sys.exit(f"built {built} Quote objects, expected {quotes_per_pass * passes}")
        best = min(best, secs)
    return quotes_per_pass * passes / best, best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", required=True, help="quote-frames.json written by the codec bench")
    parser.add_argument("--quick", action="store_true", help="fewer passes and repetitions")
    args = parser.parse_args()

    cpu = None
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})

    with open(args.frames, encoding="utf-8") as f:
        doc = json.load(f)
    json_frames = doc["json"]
    msgpack_frames = [bytes.fromhex(h) for h in doc["msgpack_hex"]]
    quotes = doc["quotes"]
    if len(json_frames) != len(msgpack_frames):
        sys.exit(f"{len(json_frames)} JSON frames but {len(msgpack_frames)} msgpack frames")

    # A stream object is needed for its `_cast`; it connects only when run, which never happens here.
    stream = StockDataStream("not-a-key", "not-a-secret")
    check_same_quotes(stream, json_frames, msgpack_frames, quotes)

    passes, repetitions = (5, 3) if args.quick else (30, 7)
    json_rate, json_secs = best_rate(lambda: decode_json(json_frames), quotes, passes, repetitions)
    msgpack_rate, msgpack_secs = best_rate(lambda: decode_msgpack(stream, msgpack_frames), quotes, passes, repetitions)

    print(
        json.dumps(
            {
                "alpaca_py": importlib.metadata.version("alpaca-py"),
                "versions": {
                    "python": platform.python_version(),
                    "pydantic": importlib.metadata.version("pydantic"),
                    "msgpack": importlib.metadata.version("msgpack"),
                },
                "cpu": cpu,
                "frames": len(json_frames),
                "quotes_per_pass": quotes,
                "passes": passes,
                "repetitions": repetitions,
                "json": {"quotes_per_sec": json_rate, "best_secs": json_secs},
                "msgpack": {"quotes_per_sec": msgpack_rate, "best_secs": msgpack_secs},
            }
        )
    )


if __name__ == "__main__":
    main()
