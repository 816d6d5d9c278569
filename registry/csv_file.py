"""CSV files as technicians export them from spreadsheets: encoding, columns, rows as a stream.

- Encoding: UTF-8 with or without BOM, or GBK/GB18030 (Chinese Excel's default), detected
  by trying a strict UTF-8 decode of the whole file first: GBK text of any length is
  essentially never valid UTF-8.
- Columns: see `COLUMNS` (English names or the Chinese headers in the template). Unknown
  columns stop the import before anything is written, so a typo never drops a field silently.
- Size: the file is read as a stream, `READ_BYTES` at a time, never whole; `scan` checks the
  encoding, the header and the CSV structure and counts the rows against a cap, so that a
  file-level problem is found before anything is written.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable, Iterator
from typing import IO

from config.errors import InvalidInput, LookoutError

COLUMNS: dict[str, tuple[str, ...]] = {
    "name": ("名称", "点位名称"),
    "network": ("网络", "所属网络"),
    "unit_code": ("单位编码", "区划代码"),
    "owner": ("权属单位", "所属部门"),
    "longitude": ("经度",),
    "latitude": ("纬度",),
    "address": ("地址", "安装地址"),
    "main_stream_url": ("主码流",),
    "sub_stream_url": ("子码流",),
    "onvif_host": ("ONVIF地址",),
    "onvif_port": ("ONVIF端口",),
    "device_id": ("国标编码", "设备编码"),
    "username": ("用户名",),
    "password": ("密码",),
    "tags": ("标签",),
    "enabled": ("启用",),
}
REQUIRED = ("name", "network", "unit_code")
READ_BYTES = 1 << 20
MAX_LINE_CHARS = 1 << 20  # no camera row is near this; a file without line breaks stops here
_EOL = re.compile(r"\r\n|\r|\n")


class ImportTooLarge(LookoutError):
    """The file holds more rows (or bytes) than one import may (413), found before anything is written."""

    status = 413


def template() -> str:
    """The downloadable template: English header, Chinese header names accepted as well."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(list(COLUMNS))
    writer.writerow([
        "东门广场1号", "xueliang", "330199001001", "城关镇综治办", "120.1551", "30.2741",
        "东门广场北侧", "rtsp://10.0.0.7:554/Streaming/Channels/101",
        "rtsp://10.0.0.7:554/Streaming/Channels/102", "10.0.0.7", "80",
        "33010200001320000001", "admin", "change-me", "广场;人员密集", "true",
    ])
    return out.getvalue()


class _Undecodable(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


def _text_chunks(source: IO[bytes], encoding: str) -> Iterator[str]:
    """The file decoded incrementally, `READ_BYTES` at a time; `_Undecodable(line)` on bad bytes."""
    source.seek(0)
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    newlines = 0
    while True:
        chunk = source.read(READ_BYTES)
        final = not chunk
        try:
            piece = decoder.decode(chunk, final=final)
        except UnicodeDecodeError as exc:
            raise _Undecodable(newlines + chunk[: max(0, exc.start)].count(b"\n") + 1) from None
        newlines += chunk.count(b"\n")
        if piece:
            yield piece
        if final:
            return


def _lines(chunks: Iterable[str]) -> Iterator[str]:
    """Lines with their endings (\\r\\n, \\r or \\n, as `newline=""` gives them to csv)."""
    pending, number = "", 1
    for piece in chunks:
        pending += piece
        end = len(pending) - 1 if pending.endswith("\r") else len(pending)  # maybe half of \r\n
        start = 0
        for match in _EOL.finditer(pending, 0, end):
            yield pending[start:match.end()]
            start = match.end()
            number += 1
        pending = pending[start:]
        if len(pending) > MAX_LINE_CHARS:
            raise InvalidInput(f"line {number}: longer than {MAX_LINE_CHARS} characters; nothing was imported",
                               field="file")
    if pending:
        yield pending


def records(source: IO[bytes], encoding: str) -> Iterator[tuple[int, list[str]]]:
    """(line number where the row starts, cells), skipping blank lines."""
    reader = csv.reader(_lines(_text_chunks(source, encoding)))
    start = 1
    try:
        for cells in reader:
            if any(cell.strip() for cell in cells):
                yield start, cells
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InvalidInput(f"line {reader.line_num}: unreadable CSV ({exc}); nothing was imported",
                           field="file") from None


def header(names: list[str]) -> dict[str, int]:
    lookup = {alias: key for key, aliases in COLUMNS.items() for alias in (key, *aliases)}
    positions: dict[str, int] = {}
    unknown = []
    for index, raw in enumerate(names):
        name = raw.strip().lstrip("\ufeff")
        key = lookup.get(name) or lookup.get(name.lower())
        if key is None:
            if name:
                unknown.append(name)
            continue
        positions[key] = index
    if unknown:
        raise InvalidInput(
            f"line 1: unknown column(s) {', '.join(unknown)}; known: {', '.join(COLUMNS)}", field="file"
        )
    missing = [c for c in REQUIRED if c not in positions]
    if missing:
        raise InvalidInput(f"line 1: missing required column(s) {', '.join(missing)}", field="file")
    return positions


def _scan(source: IO[bytes], encoding: str, max_rows: int | None) -> tuple[dict[str, int], int]:
    """First pass: the header's columns and the number of data rows; raises on anything that
    must stop the import before a row is written."""
    rows_of = records(source, encoding)
    first = next(rows_of, None)
    if first is None:
        raise InvalidInput("the file is empty", field="file")
    positions = header(first[1])
    rows = 0
    for _ in rows_of:
        rows += 1
        if max_rows is not None and rows > max_rows:
            raise ImportTooLarge(f"the file has more than {max_rows} rows, the most one import may hold "
                              "(security.import_max_rows); split it, nothing was imported", field="file",
                              limit=max_rows)
    return positions, rows


def scan(source: IO[bytes], max_rows: int | None = None) -> tuple[str, dict[str, int], int]:
    """(encoding name, header columns, data rows) of a CSV file, read as a stream."""
    source.seek(0)
    if source.read(3) == b"\xef\xbb\xbf":
        tries = [("utf-8-sig", "utf-8-sig")]
    else:
        tries = [("utf-8", "utf-8"), ("gb18030", "gbk")]
    for codec, name in tries:
        try:
            positions, rows = _scan(source, codec, max_rows)
            return name, positions, rows
        except _Undecodable as exc:
            line = exc.line
    raise InvalidInput(f"file is neither UTF-8 nor GBK (undecodable bytes on line {line})", field="file")
