"""Detokenizer: UTF-8 completeness and stop-sequence hold-back, push by push."""

from __future__ import annotations

import codecs
import random

import pytest

from chatd.engine.detokenizer import Detokenizer

EMOJI = "😀"  # 4 bytes in UTF-8: f0 9f 98 80
REPLACEMENT = "\ufffd"


def run(chunks: list[bytes], stop: tuple[str, ...] = ()) -> tuple[list[str], str, Detokenizer]:
    d = Detokenizer(stop=stop)
    pieces = [d.push(c) for c in chunks]
    return pieces, d.flush(), d


def split_at(data: bytes, cuts: tuple[int, ...]) -> list[bytes]:
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


# --- UTF-8 completeness -------------------------------------------------------------------


@pytest.mark.parametrize(
    "cuts",
    [(1,), (2,), (3,), (1, 2), (1, 3), (2, 3), (1, 2, 3)],
    ids=lambda c: "cuts" + "-".join(map(str, c)),
)
def test_emoji_split_never_releases_partial_character(cuts: tuple[int, ...]) -> None:
    data = EMOJI.encode()
    assert len(data) == 4
    pieces, tail, d = run(split_at(data, cuts))
    # Every push before the last byte holds everything back; the last one releases it whole.
    assert pieces[:-1] == [""] * (len(pieces) - 1)
    assert pieces[-1] == EMOJI
    assert tail == ""
    assert d.released_chars == d.decoded_chars == 1


@pytest.mark.parametrize("cut", [1, 2, 3, 4, 5])
def test_emoji_split_inside_text(cut: int) -> None:
    data = f"a{EMOJI}b".encode()
    pieces, tail, _ = run(split_at(data, (cut,)))
    assert REPLACEMENT not in "".join(pieces)
    for p in pieces:
        p.encode("utf-8")  # a lone surrogate or partial char would not round-trip
    assert "".join(pieces) + tail == f"a{EMOJI}b"
    if 1 <= cut <= 4:
        assert pieces[0] == "a"


@pytest.mark.parametrize(
    ("chunks", "expected_pieces", "expected_tail"),
    [
        ([b"\xff"], ["\ufffd"], ""),
        ([b"a\x80b"], ["a\ufffdb"], ""),
        ([b"\xf0\x9f", b"A"], ["", "\ufffdA"], ""),  # truncated sequence, then ASCII
        ([b"\xc3\xa9\xfe"], ["é\ufffd"], ""),
        ([b"x\xf0\x9f\x98"], ["x"], "\ufffd"),  # incomplete at the very end: flush replaces
    ],
)
def test_invalid_bytes_become_replacement_char(
    chunks: list[bytes], expected_pieces: list[str], expected_tail: str
) -> None:
    pieces, tail, _ = run(chunks)
    assert pieces == expected_pieces
    assert tail == expected_tail


def test_no_stop_releases_immediately() -> None:
    pieces, tail, d = run([b"Hello", b", ", b"world"])
    assert pieces == ["Hello", ", ", "world"]
    assert tail == ""
    assert not d.stopped
    assert d.released_chars == d.decoded_chars == len("Hello, world")


def test_empty_stop_string_is_ignored() -> None:
    pieces, tail, d = run([b"ab", b"c"], stop=("",))
    assert pieces == ["ab", "c"]
    assert tail == ""
    assert not d.stopped


# --- stop sequences -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "stop", "expected_pieces", "expected_tail", "stopped"),
    [
        # held back while it may be a stop prefix, released once it cannot be
        ([b"hello E", b"x"], ("END",), ["hello ", "Ex"], "", False),
        ([b"hello E", b"N", b"d"], ("END",), ["hello ", "", "ENd"], "", False),
        # stop spanning several pushes: removed, with everything after it
        ([b"hello E", b"N", b"D and more"], ("END",), ["hello ", "", ""], "", True),
        ([b"ab", b"<|e", b"nd|>", b"zz"], ("<|end|>",), ["ab", "", "", ""], "", True),
        # stop inside one push: text before it released, the rest dropped
        ([b"one STOP two"], ("STOP",), ["one "], "", True),
        # stop at the very start
        ([b"STOP"], ("STOP",), [""], "", True),
        ([b"ST", b"OP", b"later"], ("STOP",), ["", "", ""], "", True),
        # overlapping prefixes
        ([b"a", b"a", b"b"], ("ab",), ["", "a", ""], "", True),
        ([b"aab"], ("ab",), ["a"], "", True),
        ([b"a", b"a", b"a", b"b"], ("aab",), ["", "", "a", ""], "", True),
        ([b"aba", b"bab"], ("abab",), ["", ""], "", True),
        ([b"abac"], ("abab",), ["abac"], "", False),
        # flush releases held text when generation ends without a stop
        ([b"the en"], ("end",), ["the "], "en", False),
        ([b"x<", b"|"], ("<|im_end|>",), ["x", ""], "<|", False),
    ],
)
def test_stop_sequences(
    chunks: list[bytes],
    stop: tuple[str, ...],
    expected_pieces: list[str],
    expected_tail: str,
    stopped: bool,
) -> None:
    pieces, tail, d = run(chunks, stop)
    assert pieces == expected_pieces
    assert tail == expected_tail
    assert d.stopped is stopped
    assert d.released_chars == len("".join(pieces) + tail)


@pytest.mark.parametrize(
    ("text", "stop", "expected"),
    [
        ("xx B yy A zz", ("A", "B"), "xx "),
        ("xx A yy B zz", ("B", "A"), "xx "),
        ("abcdef", ("ef", "cde", "bcd"), "a"),  # earliest start wins within one push
        ("12 stop 34 halt", ("halt", "stop"), "12 "),
    ],
)
def test_earliest_of_several_stops_wins(text: str, stop: tuple[str, ...], expected: str) -> None:
    pieces, tail, d = run([text.encode()], stop)
    assert "".join(pieces) + tail == expected
    assert d.stopped
    # Same answer when the text arrives byte by byte.
    pieces, tail, d = run([bytes([b]) for b in text.encode()], stop)
    assert "".join(pieces) + tail == expected
    assert d.stopped


@pytest.mark.parametrize(
    ("text", "stop", "expected"),
    [
        (f"a{EMOJI}!b", (f"{EMOJI}!",), "a"),
        ("café au lait", ("é a",), "caf"),
        ("x中文y", ("中文",), "x"),
        ("x中y", ("中文",), "x中y"),  # held "中", released once "y" rules the stop out
        ("naïve", ("ï",), "na"),
    ],
)
@pytest.mark.parametrize("chunking", ["whole", "bytes"])
def test_multibyte_characters_inside_stop_strings(
    text: str, stop: tuple[str, ...], expected: str, chunking: str
) -> None:
    data = text.encode()
    chunks = [data] if chunking == "whole" else [bytes([b]) for b in data]
    pieces, tail, _ = run(chunks, stop)
    assert REPLACEMENT not in "".join(pieces) + tail
    assert "".join(pieces) + tail == expected


def test_multibyte_stop_prefix_is_held() -> None:
    d = Detokenizer(stop=("中文",))
    assert d.push("x中".encode()) == "x"
    assert d.released_chars == 1
    assert d.decoded_chars == 2
    assert d.push(b"y") == "中y"
    assert d.released_chars == d.decoded_chars == 3


def test_after_stop_push_and_flush_return_empty() -> None:
    d = Detokenizer(stop=("END",))
    assert d.push(b"okEND tail") == "ok"
    assert d.stopped
    released = d.released_chars
    for piece in [b"more", b"END", b"\xf0\x9f", b"\x98\x80", b""]:
        assert d.push(piece) == ""
    assert d.flush() == ""
    assert d.stopped
    assert d.released_chars == released == 2


def test_counters_track_held_text() -> None:
    d = Detokenizer(stop=("<|im_end|>",))
    assert d.push(b"Hi <|im") == "Hi "
    assert (d.released_chars, d.decoded_chars) == (3, 7)
    assert d.flush() == "<|im"
    assert (d.released_chars, d.decoded_chars) == (7, 7)
    assert d.flush() == ""  # nothing is released twice
    assert (d.released_chars, d.decoded_chars) == (7, 7)


# --- property test ------------------------------------------------------------------------

# Small alphabet so stops occur often; mixes 1-, 2-, 3- and 4-byte characters.
ALPHABET = ["a", "a", "b", "b", "c", " ", "é", "中", EMOJI]


def _random_stops(rng: random.Random) -> tuple[str, ...]:
    stops: list[str] = []
    for _ in range(rng.randint(0, 3)):
        s = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 4)))
        # A stop nested inside another (not at its start) would make "first stop" depend on
        # how the text is chunked; keep the stop set free of containment.
        if all(s not in t and t not in s for t in stops):
            stops.append(s)
    return tuple(stops)


def _random_chunks(rng: random.Random, data: bytes) -> list[bytes]:
    chunks = []
    i = 0
    while i < len(data):
        n = rng.choice([0, 1, 1, 2, 3, 4, 5, 8])
        chunks.append(data[i : i + n])
        i += n
    return chunks


def _truncate_at_first_stop(text: str, stops: tuple[str, ...]) -> str:
    hits = [i for i in (text.find(s) for s in stops) if i != -1]
    return text[: min(hits)] if hits else text


@pytest.mark.parametrize("seed", range(20))
def test_property_random_texts_and_chunkings(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(150):
        stops = _random_stops(rng)
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 30)))
        data = text.encode()
        expected = _truncate_at_first_stop(text, stops)
        ctx = f"text={text!r} stops={stops!r}"

        d = Detokenizer(stop=stops)
        ref = codecs.getincrementaldecoder("utf-8")(errors="strict")
        decoded = ""
        released = ""
        for chunk in _random_chunks(rng, data):
            was_stopped = d.stopped
            piece = d.push(chunk)
            decoded += ref.decode(chunk)
            if was_stopped:
                assert piece == "", ctx
            assert REPLACEMENT not in piece, ctx
            assert not any(s in piece for s in stops), ctx
            released += piece
            # Never ends inside a UTF-8 char: released text is exactly a prefix of the bytes.
            assert data.startswith(released.encode()), ctx
            assert expected.startswith(released), ctx
            assert d.released_chars == len(released), ctx
            assert d.decoded_chars >= d.released_chars, ctx
            if not d.stopped:
                assert d.decoded_chars == len(decoded), ctx
                # Held text is only ever a possible beginning of a stop (minimal hold-back).
                held = decoded[len(released) :]
                assert decoded.startswith(released), ctx
                assert held == "" or any(s.startswith(held) and s != held for s in stops), ctx
        assert d.stopped is (expected != text), ctx
        tail = d.flush()
        assert not any(s in tail for s in stops), ctx
        assert released + tail == expected, ctx
        assert d.released_chars == len(expected), ctx
