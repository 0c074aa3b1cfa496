"""IMAP responses as aioimaplib hands them over, parsed: text for messages, numbers (UIDVALIDITY, UID, size),
the UIDs of a SEARCH and the messages of a UID FETCH. Pure functions, tested without a server."""

from __future__ import annotations

import re


def response_text(lines: list[bytes | bytearray]) -> str:
    return " ".join(bytes(line).decode(errors="replace") for line in lines if isinstance(line, bytes))[:200]


def number_in(pattern: bytes, lines: list[bytes | bytearray]) -> int | None:
    for line in lines:
        match = re.search(pattern, bytes(line))
        if match:
            return int(match.group(1))
    return None


_EXISTS = re.compile(rb"^\d+ EXISTS")


def reports_new_mail(lines: list[bytes | bytearray]) -> bool:
    """Does a command's response carry an untagged ``* N EXISTS`` (aioimaplib strips the ``* ``)?"""
    return any(isinstance(line, bytes) and _EXISTS.match(line) is not None for line in lines)


def search_uids(lines: list[bytes | bytearray]) -> list[int]:
    """UIDs of a SEARCH response (aioimaplib strips "* SEARCH"; the last line is the tagged status text)."""
    uids: list[int] = []
    for line in lines[:-1]:
        tokens = bytes(line).split()
        if tokens and tokens[0] == b"SEARCH":
            tokens = tokens[1:]
        if tokens and all(token.isdigit() for token in tokens):
            uids.extend(int(token) for token in tokens)
    return uids


_FETCH_START = re.compile(rb"^\d+ FETCH \(")


def fetched_messages(lines: list[bytes | bytearray]) -> list[tuple[int, int, bytes]]:
    """(uid, size, body bytes) per message of a UID FETCH response (literals arrive as bytearray lines)."""
    messages: list[tuple[int, int, bytes]] = []
    text, body = b"", b""

    def finish() -> None:
        uid, size = number_in(rb"UID (\d+)", [text]), number_in(rb"RFC822\.SIZE (\d+)", [text])
        if uid is not None and size is not None:
            messages.append((uid, size, body))

    for line in lines:
        if isinstance(line, bytearray):
            body = bytes(line)
        elif _FETCH_START.match(line):
            if text:
                finish()
            text, body = line, b""
        elif text:
            text += b" " + line
    if text:
        finish()
    return messages
