"""Pure parsing around the mailbox: IMAP SEARCH/FETCH responses as aioimaplib delivers them, offer mails."""

from __future__ import annotations

import pytest

from plexus.rendezvous.email.imap import fetched_messages, search_uids
from plexus.rendezvous.email.mail import (
    OFFER_HEADER,
    RECIPIENT_HEADER,
    compose,
    extract_document,
    parse_headers,
)


def testsearch_uids() -> None:
    assert search_uids([b"3 7 12", b"Search completed (0.001 + 0.000 secs)."]) == [3, 7, 12]
    assert search_uids([b"SEARCH 4", b"Search completed."]) == [4]
    assert search_uids([b"Search completed (0.001 + 0.000 secs)."]) == []
    assert search_uids([b"", b"Search completed."]) == []


def test_fetched_messages_with_literals() -> None:
    lines = [b"1 FETCH (UID 5 RFC822.SIZE 20 BODY[]<0> {20}", bytearray(b"Subject: a\r\n\r\nbody a"), b")",
             b"2 FETCH (RFC822.SIZE 300000 BODY[]<0> {8}", bytearray(b"headers!"), b" UID 9)",
             b"Fetch completed (0.001 + 0.000 secs)."]
    assert fetched_messages(lines) == [(5, 20, b"Subject: a\r\n\r\nbody a"), (9, 300000, b"headers!")]
    assert fetched_messages([b"Fetch completed."]) == []


@pytest.mark.parametrize("media_type", ["application/json",
                                        'application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"'])
def test_offer_mail_round_trip(media_type: str) -> None:
    document = bytes(range(256)) * 10
    message = compose("alice@plexus.test", "bob@plexus.test", "bob", document, media_type)
    data = message.as_bytes()
    headers = parse_headers(data[:400])
    assert headers[OFFER_HEADER] == "1" and headers[RECIPIENT_HEADER] == "bob"
    assert headers["Subject"] == "plexus offer" and headers["Message-ID"] and headers["Date"]
    assert max(len(line) for line in data.split(b"\n")) < 100  # base64: no overlong SMTP lines
    assert extract_document(data) == document


def test_mail_without_offer_part() -> None:
    with pytest.raises(ValueError, match="no offer part"):
        extract_document(b"Subject: hi\r\nContent-Type: text/plain\r\n\r\nhello\r\n")


def test_new_mail_is_recognised_in_untagged_responses() -> None:
    from plexus.rendezvous.email.imap import reports_new_mail

    assert reports_new_mail([b"3 EXISTS", b"UID STORE completed"])
    assert not reports_new_mail([b"3 EXPUNGE", b"3 FETCH (FLAGS (\\Deleted))", bytearray(b"12 EXISTS")])
    assert not reports_new_mail([b"OK [EXISTS] no", b"x 3 EXISTS"])
