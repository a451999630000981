"""The telemetry journal: rows handed to the telemetry store are on disk before the
API answers, and a restart replays what the store had not yet written.

The owner process batches inserts (chDB costs ~10 ms per insert whatever its size), so
rows wait up to 0.2 s in its memory, and a kill -9 of ``clrk dev`` lost the outcome and
output lines of executions whose callers already had their answers (4 of 67 in one
run). Now the API server appends every batch of rows to a segment file (one ``write``,
which a killed process cannot take back) before it hands the rows on; the owner notes
per table, the last sequence number it has written to the store (``marks``) and
drops segments it no longer needs; when it starts it first writes every journaled row
past its table's mark. A batch is noted as being written (``flushing``) before its
insert and as written after it: a crash between the two leaves one batch per table in
doubt, and since an insert is atomic, whether its first row is in the store says
whether all of it is, so nothing is written twice either.

Records: a 12-byte header (payload length, sequence number) and a pickle of (table,
rows), written by this process for itself (the rows hold datetimes and maps), in files
named by their first sequence number, under the data dir (0700). A torn last record
(a write the kill cut short, never acknowledged) ends the replay of its segment.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import pickle
import struct
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("clrk.telemetry")
HEADER = struct.Struct(">IQ")
SEGMENT_BYTES = 16 * 1024 * 1024
SUFFIX = ".journal"


def _segments(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for path in directory.glob(f"*{SUFFIX}"):
        with contextlib.suppress(ValueError):
            found.append((int(path.name.removesuffix(SUFFIX)), path))
    return sorted(found)


def _records(path: Path) -> Iterator[tuple[int, str, list[Sequence[Any]]]]:
    data = path.read_bytes()
    at = 0
    while at + HEADER.size <= len(data):
        size, seq = HEADER.unpack_from(data, at)
        end = at + HEADER.size + size
        if end > len(data):
            log.warning("journal %s ends with a torn record (seq %d): not replayed", path, seq)
            return
        try:
            table, rows = pickle.loads(data[at + HEADER.size:end])
        except Exception as err:  # a torn write that happened to fit its length
            log.warning("journal %s: record %d unreadable (%s): not replayed", path, seq, err)
            return
        yield seq, table, rows
        at = end


class JournalWriter:
    """The API server's side: append before handing rows to the owner."""

    def __init__(self, directory: Path, next_seq: int,
                 segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.seq = next_seq - 1
        self._fd = -1
        self._size = 0

    def _open_segment(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        path = self.directory / f"{self.seq + 1:020d}{SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._size = 0

    def append(self, table: str, rows: Sequence[Sequence[Any]]) -> int:
        """Write one batch; returns its sequence number once it is in the file."""
        if self._fd < 0 or self._size >= self.segment_bytes:
            self._open_segment()
        self.seq += 1
        payload = pickle.dumps((table, [list(r) for r in rows]), protocol=pickle.HIGHEST_PROTOCOL)
        record = HEADER.pack(len(payload), self.seq) + payload
        written = os.write(self._fd, record)
        if written != len(record):  # a full disk: say so instead of journaling half
            raise OSError(f"journal write of {len(record)} bytes wrote {written}")
        self._size += len(record)
        return self.seq

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


Record = tuple[int, str, list[Sequence[Any]]]


class JournalReader:
    """The owner's side: what to replay at start, and what may go once written."""

    def __init__(self, directory: Path, tables: Sequence[str]) -> None:
        self.directory = directory
        self.tables = tuple(tables)  # every table the store writes
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._marks_file = directory / "marks.json"
        self.flushed: dict[str, int] = {}
        self.flushing: dict[str, int] = {}
        with contextlib.suppress(FileNotFoundError, ValueError, TypeError, AttributeError):
            doc = json.loads(self._marks_file.read_text())
            self.flushed = {str(k): int(v) for k, v in doc["flushed"].items()}
            self.flushing = {str(k): int(v) for k, v in doc["flushing"].items()}

    def unflushed(self) -> tuple[list[Record], dict[str, list[Record]], int]:
        """The records past their table's mark, those of them in doubt (a batch whose
        insert began but was not noted done, by table), and the next sequence number."""
        last = max([0, *self.flushed.values(), *self.flushing.values()])
        pending: list[Record] = []
        doubt: dict[str, list[Record]] = {}
        for _, path in _segments(self.directory):
            for record in _records(path):
                seq, table, _ = record
                last = max(last, seq)
                done = self.flushed.get(table, 0)
                if seq <= done:
                    continue
                if seq <= self.flushing.get(table, 0):
                    doubt.setdefault(table, []).append(record)
                else:
                    pending.append(record)
        return pending, doubt, last + 1

    def _save(self) -> None:
        with self._lock:  # the owner's flusher thread and its start both note marks
            tmp = self._marks_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"flushed": self.flushed, "flushing": self.flushing}))
            tmp.replace(self._marks_file)

    def begin(self, table: str, seq: int) -> None:
        """``table``'s rows up to ``seq`` are about to be inserted."""
        self.flushing[table] = seq
        self._save()

    def done(self, table: str, seq: int) -> None:
        """``table``'s rows up to ``seq`` are in the store; segments wholly before every
        table's mark go."""
        self.flushed[table] = seq
        self._save()
        low = min(self.flushed.get(t, 0) for t in self.tables)
        segments = _segments(self.directory)
        for (_, path), (following, _) in itertools.pairwise(segments):
            if following - 1 <= low:
                path.unlink(missing_ok=True)

    def drop_all(self, seq: int) -> None:
        """At start, once every record is in the store: the writer begins a new segment."""
        for table in self.tables:
            self.flushed[table] = self.flushing[table] = seq
        self._save()
        for _, path in _segments(self.directory):
            path.unlink(missing_ok=True)
