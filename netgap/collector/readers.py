"""The store's reader connections: a pool, each read one transaction (one snapshot) on a
connection of its own, while WAL lets the writer go on."""

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from netgap.collector.records import StoreError


class ReaderPool:
    def __init__(self, path: Path, connect: Callable[[], sqlite3.Connection]) -> None:
        self.path = path
        self._connect = connect
        self._readers: list[sqlite3.Connection] = []  # every reader connection opened
        self._idle_readers: list[sqlite3.Connection] = []  # those not in use right now
        self._lock = threading.Lock()
        self.closed = False

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Cursor]:
        """A cursor on a pooled connection, inside one read transaction (one snapshot)."""
        if self.closed:
            raise StoreError("the trace store is closed")
        # A pool rather than one per thread: worker threads come and go, connections stay.
        with self._lock:
            conn = self._idle_readers.pop() if self._idle_readers else None
        try:
            if conn is None:
                conn = self._connect()
                conn.execute("PRAGMA query_only = ON")
                with self._lock:
                    self._readers.append(conn)
            cur = conn.cursor()
            try:
                cur.execute("BEGIN")
                yield cur
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
                cur.close()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the trace store {self.path}: {exc}") from exc
        finally:
            if conn is not None:
                with self._lock:
                    self._idle_readers.append(conn)

    def close(self) -> None:
        """Closes every reader connection; reading() then raises StoreError."""
        self.closed = True
        with self._lock:
            readers, self._readers, self._idle_readers = self._readers, [], []
        for conn in readers:
            conn.close()
