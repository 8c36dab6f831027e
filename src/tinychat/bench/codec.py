"""Encode and decode rate of a typical SEND_MESSAGE frame on one core.

    python -m tinychat.bench.codec [--seconds 2]

Prints frames/s for the header alone (struct), and for whole frames through
the generated struct codec the node uses (tinychat.protocol.fastcodec),
construct's compiled codec and construct's interpreted one.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from tinychat.protocol import HEADER, FrameDecoder, SendMessage, encode
from tinychat.protocol.codec import decode_body

SAMPLE = SendMessage(request_id=12345, thread_id=0, to_uid=10042, client_msg_id=0x1234_5678_9ABC,
                     text="Hi! Are we still on for lunch at noon tomorrow?")


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of `fn`, in batches of 1,000 until `seconds` pass."""
    calls = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(1000):
            fn()
        calls += 1000
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - start)


def measure(seconds: float) -> dict[str, float]:
    frame = encode(SAMPLE)
    body = frame[HEADER.size:]
    msg_id = SAMPLE.MSG_ID
    stream = frame * 100
    decoder = FrameDecoder()

    def decode_stream() -> None:
        decoder.feed(stream)

    results = {
        "header (struct.unpack_from)": rate(lambda: HEADER.unpack_from(frame), seconds),
        "encode generated (frame)": rate(lambda: encode(SAMPLE), seconds),
        "encode construct compiled (body)": rate(lambda: SAMPLE.encode_body_compiled(), seconds),
        "encode construct interpreted (body)": rate(lambda: SAMPLE.encode_body_plain(), seconds),
        "decode generated (one frame)": rate(lambda: decode_body(msg_id, body), seconds),
        "decode generated (FrameDecoder, 100 frames per chunk)": rate(decode_stream, seconds) * 100,
        "decode construct compiled": rate(lambda: SendMessage.decode_body_compiled(body), seconds),
        "decode construct interpreted": rate(lambda: SendMessage.decode_body_plain(body), seconds),
    }
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args(argv)
    print(f"frame: SEND_MESSAGE, {len(encode(SAMPLE))} bytes")
    for name, value in measure(args.seconds).items():
        print(f"{name:55s} {value:>12,.0f} /s")


if __name__ == "__main__":
    main()
