"""The store's file: its tables (the layout netgap.collector.store describes), the version
and mark that say the file is ours, the migration from older versions, and how a connection
to it is opened.
"""

import json
import sqlite3
from pathlib import Path

from netgap.collector.records import StoreError

SCHEMA_VERSION = 3  # 2: spans.facts; 3: chains
APPLICATION_ID = 0x6E676170  # "ngap": marks the file as ours

_SCHEMA = """
CREATE TABLE IF NOT EXISTS traces (
    seq INTEGER PRIMARY KEY,  -- arrival order
    trace_id TEXT NOT NULL UNIQUE,
    received_ns INTEGER NOT NULL,  -- first received; grows with seq
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,  -- never before the start of any of its spans
    span_count INTEGER NOT NULL,
    -- the root: the earliest span without a parent, else the earliest span
    root_service TEXT NOT NULL,
    root_name TEXT NOT NULL,
    root_has_parent INTEGER NOT NULL,
    root_start_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_by_start ON traces (start_ns);
CREATE TABLE IF NOT EXISTS spans (
    trace_seq INTEGER NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT NOT NULL,
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    kind INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    scope_id INTEGER NOT NULL,
    body BLOB NOT NULL,  -- opentelemetry.proto.trace.v1.Span
    facts TEXT,  -- CLIENT and SERVER spans: chains.call_facts, read instead of body
    PRIMARY KEY (trace_seq, span_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS spans_by_service ON spans (service, start_ns);
-- Each trace's chains.Chain (JSON, without its trace id), or NULL for a trace of another
-- shape, worked out in the transaction that writes any of its spans: find_breakdowns reads
-- one row per trace. Traces last written before version 3 have no row (read span by span).
CREATE TABLE IF NOT EXISTS chains (
    trace_seq INTEGER PRIMARY KEY,
    chain TEXT
);
CREATE TABLE IF NOT EXISTS operations (
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    kind INTEGER NOT NULL,
    received_ns INTEGER NOT NULL,  -- last received
    PRIMARY KEY (service, name, kind)
) WITHOUT ROWID;
-- AUTOINCREMENT: an id is never reused, so a reader's id -> scope cache is never stale
CREATE TABLE IF NOT EXISTS scopes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    resource TEXT NOT NULL,  -- the resource's attributes as a JSON object
    scope_name TEXT NOT NULL,
    scope_version TEXT NOT NULL,
    received_ns INTEGER NOT NULL,  -- last received
    UNIQUE (resource, scope_name, scope_version)
);
"""

# The store's JSON: resources in `scopes`, kept chains and facts, and lists of seqs for json_each.
dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def connect(path: Path) -> sqlite3.Connection:
    # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE / BEGIN ... COMMIT).
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA cache_size = -65536")  # KiB: up to 64 MiB per connection
    return conn


def init_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Makes the file at `path` (open on `conn`) a store of this version: creates it, or
    migrates an older one; StoreError for a file that is not ours or is newer."""
    (app_id,) = conn.execute("PRAGMA application_id").fetchone()
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    (tables,) = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    if (app_id, tables) != (0, 0) and app_id != APPLICATION_ID:
        raise StoreError(f"{path} is an SQLite file but not a netgap trace store")
    if version > SCHEMA_VERSION:
        raise StoreError(f"{path} was written by a newer netgap (store version {version})")
    if version == 1:  # spans.facts came in 2; rows from before have none (body is read)
        conn.execute("ALTER TABLE spans ADD COLUMN facts TEXT")
    # WAL: readers never wait for the writer. NORMAL: a commit survives a crash of the
    # process (not a power cut), at a fraction of FULL's cost.
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.executescript(
        f"BEGIN; {_SCHEMA} PRAGMA application_id = {APPLICATION_ID};"
        f" PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    )
