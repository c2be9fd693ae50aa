"""Finding files outside MIME in big text parts by searching, not line by
line (issue 15): the same blocks as reading every line, wherever the
windows of the search fall. Speed is measured in bench/textscan.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from miltrd.plugins import _nonmime
from miltrd.plugins._decode import Decoded
from miltrd.plugins._nonmime import Block, find_blocks

from .test_defang import PE, defang, new_body
from .test_defang_readings import binhexed, removed_or_any, text_message, uuencoded, yencoded


def every_line(text: Decoded, limit: int) -> list[Block]:
    """The reading the search must equal: each line in turn may start a
    block; after a block, the line after its last."""
    found: list[Block] = []
    pos = 0
    while pos < text.size:
        it = _nonmime.lines(text, pos)
        offset, line = next(it)
        block = _nonmime._block_at(it, offset, line, limit)
        pos = offset + len(line)
        if block is not None:
            found.append(block)
            pos = max(pos, block.end)
    return found


def summary(blocks: list[Block]) -> list[tuple[str, int, int, str, bytes]]:
    out = []
    for b in blocks:
        out.append((b.kind, b.start, b.end, b.name, b.content.read(0, b.content.size)))
        b.content.close()
    return out


PIECES = [
    b"Hello,\n",
    b"Let us begin the meeting.\n",
    b"begin the day\n",
    b"> quoted words\n",
    b"=ybegin without a name\n",
    b"(This file must be converted with BinHex) said nobody\n",
    b"x" * 300 + b"\n",
    b"no line end",
    uuencoded(b"tool.exe", b"anything at all"),
    uuencoded(b"a.txt", PE),
    b"> " + uuencoded(b"quoted.exe", b"x").replace(b"\n", b"\n> "),
    b"  \t>> begin 600 deep.scr\n> `\n> end\n",
    b"begin-base64 644 run.scr\nQUJD\n====\n",
    yencoded(b"tool.exe", b"anything"),
    binhexed(b"tool.exe", b"anything"),
    b"(this file must be converted with binhex 4.0)\n\n:nothing",
    b"text begin 644 midline.exe\n",
]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    pieces=st.lists(st.sampled_from(PIECES), max_size=12),
    chunk=st.sampled_from([7, 64, 1000, 1 << 20]),
)
def test_the_search_finds_what_reading_every_line_finds(
    monkeypatch: pytest.MonkeyPatch, pieces: list[bytes], chunk: int
) -> None:
    # Small windows put block starts on every kind of window boundary.
    monkeypatch.setattr(_nonmime, "CHUNK", chunk)
    text = Decoded()
    text.write(b"".join(pieces))
    try:
        assert summary(find_blocks(text, 1 << 20)) == summary(every_line(text, 1 << 20))
    finally:
        text.close()


def test_a_file_right_after_an_unfinished_quoted_one_is_found(tmp_path: Path) -> None:
    # The quoted block has no "end": it stops at the first unquoted line,
    # which starts a file of its own (the line-by-line walk skipped it).
    quoted = b"> begin 644 notes.txt\n> " + uuencoded(b"x", b"hello").split(b"\n")[1] + b"\n"
    raw = text_message(b"Hi,\n" + quoted + uuencoded(b"setup.exe", b"anything") + b"Bye.\n")
    out = defang(tmp_path, raw)
    assert 'removed "setup.exe"' in removed_or_any(out)
    assert b"begin 644 setup.exe" not in (new_body(out) or b"")


@pytest.mark.parametrize(
    "line",
    [
        b"begin 644 a\rb\n",  # a header the uuencode reading then refuses
        b"begin 644 a\n`\nend\n",  # a whole, empty file
        b"(This file must be converted with BinHex 4.0)\nwords\n",
    ],
)
def test_many_small_blocks_are_read_once(line: bytes) -> None:
    # Each start used to cost a fresh 1 MiB read: a few MiB of such lines
    # took minutes. Counted in reads, not timed.
    text = Decoded()
    text.write(line * (1_000_000 // len(line)))
    reads = 0
    real_read = text.read

    def counting(start: int, end: int) -> bytes:
        nonlocal reads
        reads += 1
        return real_read(start, end)

    text.read = counting  # type: ignore[method-assign]
    try:
        blocks = find_blocks(text, 1 << 20)
        assert reads < 10
    finally:
        for b in blocks:
            b.content.close()
        text.close()


def test_a_text_part_with_more_files_than_max_parts_goes_through_on_limit(tmp_path: Path) -> None:
    raw = text_message(b"Hi,\n" + uuencoded(b"a.txt", b"hello") * 30 + b"Bye.\n")
    assert defang(tmp_path, raw, "max_parts = 50\n").changes == []  # 30 files are judged
    out = defang(tmp_path, raw, "max_parts = 20\n")
    assert "more than 20 files" in removed_or_any(out)
    out = defang(tmp_path, raw, 'max_parts = 20\non_limit = "tempfail"\n')
    assert out.final is not None and out.final.kind.name == "TEMPFAIL"
