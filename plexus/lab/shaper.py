"""Delay for the lab's NAT links without sch_netem (missing from some kernels, e.g. this CI's).

iptables sends every packet the NAT forwards to NFQUEUE; this process holds each one for ``--delay-ms`` and
then accepts it, speaking nfnetlink_queue directly (metadata-only copies, so no packet bytes cross into
Python). ``--queue-bypass`` on the rule lets packets pass untouched if this process is gone. Loss needs no
process: an iptables ``statistic`` rule drops packets at random (see network.set_netem).

Run in a NAT namespace: ``python3 -m plexus.lab.shaper --delay-ms 40``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import struct
import sys

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NF_ACCEPT = 1
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
QUEUE_MAXLEN = 8192


def _attribute(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _message(msg_type: int, queue: int, attributes: bytes, seq: int = 0) -> bytes:
    body = struct.pack("!BBH", socket.AF_UNSPEC, 0, queue) + attributes  # nfgenmsg: family, version, res_id
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type, NLM_F_REQUEST, seq, 0) + body


def config_messages(queue: int) -> list[bytes]:
    bind = _attribute(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, socket.AF_INET))
    params = _attribute(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))
    maxlen = _attribute(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", QUEUE_MAXLEN))
    return [_message(NFQNL_MSG_CONFIG, queue, bind, 1), _message(NFQNL_MSG_CONFIG, queue, params + maxlen, 2)]


def verdict_message(queue: int, packet_id: int, verdict: int = NF_ACCEPT) -> bytes:
    return _message(NFQNL_MSG_VERDICT, queue, _attribute(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id)))


def packet_ids(data: bytes) -> list[int]:
    """The packet ids of the queued-packet messages in one netlink read."""
    ids: list[int] = []
    offset = 0
    while offset + 16 <= len(data):
        length, msg_type = struct.unpack_from("=IH", data, offset)
        if length < 16:
            break
        if msg_type == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            position = offset + 20  # nlmsghdr (16) + nfgenmsg (4)
            while position + 4 <= offset + length:
                attr_length, attr_type = struct.unpack_from("=HH", data, position)
                if attr_length < 4:
                    break
                if attr_type & 0x7FFF == NFQA_PACKET_HDR:
                    ids.append(struct.unpack_from("!I", data, position + 4)[0])
                position += (attr_length + 3) & ~3
        elif msg_type == NLMSG_ERROR:
            error = -struct.unpack_from("=i", data, offset + 16)[0]
            if error:
                raise OSError(error, f"nfnetlink_queue refused the configuration: {error}")
        offset += (length + 3) & ~3
    return ids


async def shape(delay: float, queue: int = 0) -> None:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((0, 0))
    for message in config_messages(queue):
        sock.send(message)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)

    def release(packet_id: int) -> None:
        # OSError: the kernel dropped the queue entry meanwhile (e.g. flushed); nothing to release
        with contextlib.suppress(OSError):
            sock.send(verdict_message(queue, packet_id))

    def readable() -> None:
        while True:
            try:
                data = sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError:  # ENOBUFS: the kernel dropped queue messages under load; keep going
                return
            for packet_id in packet_ids(data):
                loop.call_later(delay, release, packet_id)

    loop.add_reader(sock.fileno(), readable)
    print(f"shaper: delaying queue {queue} by {delay * 1000:g} ms", flush=True)
    await stopped.wait()
    sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m plexus.lab.shaper")
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--queue", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        asyncio.run(shape(args.delay_ms / 1000, args.queue))
    except OSError as error:
        print(f"shaper: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
