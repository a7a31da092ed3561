"""CSV export of trades, streamed with constant memory.

Columns (header line first; ``\\n`` line endings, RFC 4180 quoting where a value needs it; one
row per fill, ordered by trade time, then symbol, then trade id):

=================  =========================================================================
``executionId``    the venue's execution id of the report that carried the fill; for a fill
                   learned without one (REST reconciliation) ``<symbol>-<tradeId>``
``orderId``        the runtime's own id of the order: its ``clientOrderId`` (fixed before the
                   first send; the id every Spark API uses)
``clientOrderId``  the ``clientOrderId`` sent to the venue (same value as ``orderId``)
``symbol``         e.g. ``BTCUSDT``
``side``           ``BUY`` / ``SELL``
``quantity``       the fill's quantity (base asset), exact decimal, no exponent
``price``          the fill's price (quote asset), exact decimal, no exponent
``status``         the order's status right after this fill (``PARTIALLY_FILLED`` /
                   ``FILLED``); empty when unknown
``timestamp``      trade time, ISO 8601 UTC with milliseconds (``2026-11-20T23:19:00.123Z``)
``exchangeOrderId`` the venue's ``orderId``; empty when unknown
``commission``     commission charged for the fill, exact decimal
``commissionAsset`` the asset the commission was charged in; empty when unknown
=================  =========================================================================

``since`` is inclusive, ``until`` exclusive; both accept ISO 8601 (``2026-11-20``,
``2026-11-20T10:00:00Z``, with an offset; naive means UTC) or epoch milliseconds.

Memory stays flat whatever the row count, and every chunk (about ``chunk_bytes``) is handed on
before more rows are read:

* PostgreSQL: ``COPY (SELECT …) TO STDOUT (FORMAT csv)`` — the server streams the rendered CSV
  (the fastest way out of PostgreSQL, and no per-row work in this process beyond collecting);
* SQLite: the driver's cursor, which streams natively, ``fetch_rows`` at a time, through the C
  ``csv`` writer.  Numbers are
rendered by the database (``trim_scale`` on PostgreSQL; SQLite stores the canonical text), and
so are the timestamps, so no Python code runs per row: the C ``csv`` writer takes the fetched
rows as they are.

Two entry points: :func:`iter_trades_csv` (synchronous generator of ``bytes``: the CLI) and
:func:`aiter_trades_csv` (async iterator for the HTTP route, pulling one chunk at a time from a
worker thread).
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import time
from collections.abc import AsyncIterator, Generator
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import attrs
import sqlalchemy as sa
import trio
from sqlalchemy.engine import URL, Engine

from spark.runtime.metrics import Metrics
from spark.storage import schema
from spark.storage.engine import make_engine
from spark.storage.errors import InvalidTimeBound

HEADER = (
    "executionId",
    "orderId",
    "clientOrderId",
    "symbol",
    "side",
    "quantity",
    "price",
    "status",
    "timestamp",
    "exchangeOrderId",
    "commission",
    "commissionAsset",
)
CHUNK_BYTES = 64 * 1024
FETCH_ROWS = 1000

_EPOCH_MS = re.compile(r"^-?\d+$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@attrs.define
class ExportStats:
    """Filled in while an export runs (rows and bytes produced so far)."""

    rows: int = 0
    bytes: int = 0


def parse_time_bound(value: str | int | datetime | None) -> int | None:
    """Epoch milliseconds from ISO 8601 / epoch-ms text / an int / a datetime (naive = UTC)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidTimeBound(f"not a time: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        moment = value
    else:
        text = value.strip()
        if _EPOCH_MS.match(text):
            return int(text)
        try:
            moment = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            raise InvalidTimeBound(
                f"not ISO 8601 or epoch milliseconds: {value!r} "
                "(e.g. 2026-11-20, 2026-11-20T10:00:00Z, 1763630340000)"
            ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)  # integer arithmetic: exact


def _amount_text(column: sa.ColumnElement[Any], dialect: str) -> sa.ColumnElement[str]:
    if dialect == "postgresql":
        return sa.cast(sa.func.trim_scale(sa.type_coerce(column, sa.Numeric())), sa.Text())
    return sa.type_coerce(column, sa.String())  # SQLite stores the canonical text


def _iso_ms(ms: sa.ColumnElement[int], dialect: str) -> sa.ColumnElement[str]:
    """Epoch ms as ``YYYY-MM-DDTHH:MM:SS.mmmZ``, in integer arithmetic (no float rounding)."""
    millis: sa.ColumnElement[str]
    if dialect == "postgresql":
        seconds = sa.func.to_char(
            sa.func.timezone("UTC", sa.func.to_timestamp(ms // 1000)),
            sa.literal('YYYY-MM-DD"T"HH24:MI:SS'),
        )
        # mod() rather than %: the statement goes into COPY unformatted, where "%%" would stay.
        millis = sa.func.lpad(sa.cast(sa.func.mod(ms, 1000), sa.Text()), 3, "0")
    else:
        seconds = sa.func.strftime("%Y-%m-%dT%H:%M:%S", ms // 1000, "unixepoch")
        millis = sa.func.substr(sa.literal("00") + sa.cast(ms % 1000, sa.String()), -3)
    return seconds + "." + millis + "Z"


def trades_query(dialect: str, since_ms: int | None, until_ms: int | None) -> sa.Select[Any]:
    """The export's SELECT: every column rendered as the CSV's text by the database.

    Missing values stay NULL: both the csv module and PostgreSQL's CSV output write NULL as an
    empty field (PostgreSQL would quote an empty *string* as ``""``).
    """
    t = schema.trades
    text_id = sa.cast(t.c.trade_id, sa.String())
    venue_id = sa.cast(t.c.venue_order_id, sa.String())
    query = sa.select(
        sa.func.coalesce(t.c.execution_id, t.c.symbol + "-" + text_id),
        t.c.client_order_id,
        t.c.client_order_id,
        t.c.symbol,
        t.c.side,
        _amount_text(t.c.qty, dialect),
        _amount_text(t.c.price, dialect),
        t.c.order_status,
        _iso_ms(t.c.trade_ms, dialect),
        venue_id,
        _amount_text(t.c.commission, dialect),
        t.c.commission_asset,
    ).order_by(t.c.trade_ms, t.c.symbol, t.c.trade_id)
    if since_ms is not None:
        query = query.where(t.c.trade_ms >= since_ms)
    if until_ms is not None:
        query = query.where(t.c.trade_ms < until_ms)
    return query


def iter_trades_csv(
    db: Engine | str | URL,
    since: str | int | datetime | None = None,
    until: str | int | datetime | None = None,
    *,
    metrics: Metrics | None = None,
    stats: ExportStats | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    fetch_rows: int = FETCH_ROWS,
) -> Generator[bytes, None, None]:
    """The CSV as ``bytes`` chunks of about ``chunk_bytes`` (the header is in the first one).

    Bounds are parsed before the first chunk is produced, so a bad bound raises
    ``InvalidTimeBound`` on the first ``next()``.
    """
    since_ms = parse_time_bound(since)
    until_ms = parse_time_bound(until)
    started = time.perf_counter()
    engine = db if isinstance(db, Engine) else make_engine(db)
    stats = stats if stats is not None else ExportStats()

    def counted(data: bytes, n_rows: int) -> bytes:
        stats.rows += n_rows
        stats.bytes += len(data)
        if metrics is not None:
            metrics.export_rows_total.inc(n_rows)
            metrics.export_bytes_total.inc(len(data))
        return data

    try:
        dialect = engine.dialect.name
        query = trades_query(dialect, since_ms, until_ms)
        header = (",".join(HEADER) + "\n").encode()  # plain names: nothing to quote
        with engine.connect() as conn:
            if dialect == "postgresql":
                chunks = _postgres_copy(conn, query, chunk_bytes)
            else:
                chunks = _cursor_rows(conn, query, chunk_bytes, fetch_rows)
            # Closed explicitly: if our consumer stops early, the cursor or COPY must end
            # before the connection goes back to the pool (a COPY left open blocks its reset).
            with contextlib.closing(chunks):
                for data, n_rows in chunks:
                    yield counted(header + data if header else data, n_rows)
                    header = b""
        if header:
            yield counted(header, 0)
    finally:
        if engine is not db:
            engine.dispose()
        if metrics is not None:
            metrics.export_duration_seconds.observe(time.perf_counter() - started)


def _cursor_rows(
    conn: sa.Connection, query: sa.Select[Any], chunk_bytes: int, fetch_rows: int
) -> Generator[tuple[bytes, int], None, None]:
    """SQLite: rows from the driver's cursor through the C csv writer, in chunks."""
    compiled = query.compile(dialect=conn.dialect)
    params = tuple(compiled.params[k] for k in compiled.positiontup or ())
    driver = conn.connection.driver_connection
    assert driver is not None
    # Every column is already text (or an int): no SQLAlchemy result processing is needed, and
    # skipping its per-row objects saves about a quarter of the CPU.
    cursor = driver.cursor()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    pending_rows = 0
    try:
        cursor.execute(compiled.string, params)
        while batch := cursor.fetchmany(fetch_rows):
            writer.writerows(batch)  # no per-row Python: the database did the text
            pending_rows += len(batch)
            if buffer.tell() >= chunk_bytes:
                yield buffer.getvalue().encode(), pending_rows
                buffer.seek(0)
                buffer.truncate()
                pending_rows = 0
    finally:
        cursor.close()
    if pending_rows:
        yield buffer.getvalue().encode(), pending_rows


def _postgres_copy(
    conn: sa.Connection, query: sa.Select[Any], chunk_bytes: int
) -> Generator[tuple[bytes, int], None, None]:
    """PostgreSQL: ``COPY (query) TO STDOUT (FORMAT csv)``, streamed.

    The server renders the CSV and sends one CopyData message per row; TCP flow control keeps
    it from running ahead of us, so memory stays at one chunk.  The bounds are integers,
    rendered as literals (COPY takes no parameters).
    """
    sql = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}).string
    driver = conn.connection.driver_connection
    assert driver is not None
    pending = bytearray()
    pending_rows = 0
    with driver.cursor() as cursor, cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)") as copy:
        for row in copy:  # exactly one row per CopyData message (protocol guarantee)
            pending += row
            pending_rows += 1
            if len(pending) >= chunk_bytes:
                yield bytes(pending), pending_rows
                pending.clear()
                pending_rows = 0
    if pending_rows:
        yield bytes(pending), pending_rows


async def aiter_trades_csv(
    db: Engine | str | URL,
    since: str | int | datetime | None = None,
    until: str | int | datetime | None = None,
    *,
    metrics: Metrics | None = None,
    limiter: trio.CapacityLimiter | None = None,
) -> AsyncIterator[bytes]:
    """:func:`iter_trades_csv` for trio code (e.g. a starlette ``StreamingResponse``).

    Each chunk is produced in a worker thread and handed over before the next one is fetched,
    so at most one chunk is in memory and a slow client slows the database read instead of
    filling memory.  (A thread-fed channel would need a nursery inside this generator, which
    trio forbids across ``yield``.)  Closing the iterator early (client went away) closes the
    cursor.  Bounds are validated before the first chunk: a bad one raises ``InvalidTimeBound``
    on the first ``__anext__`` (a route can call :func:`parse_time_bound` first to answer 400).
    """
    parse_time_bound(since)
    parse_time_bound(until)
    chunks = iter_trades_csv(db, since, until, metrics=metrics)
    lane = limiter if limiter is not None else trio.CapacityLimiter(1)

    def next_chunk() -> bytes | None:
        return next(chunks, None)

    try:
        while True:
            chunk = await trio.to_thread.run_sync(next_chunk, limiter=lane)
            if chunk is None:
                return
            yield chunk
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(chunks.close, limiter=lane)


def export_trades(
    url: str | URL | Engine,
    since: str | int | datetime | None,
    until: str | int | datetime | None,
    out_stream: IO[bytes],
    *,
    metrics: Metrics | None = None,
) -> ExportStats:
    """Write the CSV to a binary stream (``spark-runtime export trades``): rows and bytes."""
    stats = ExportStats()
    for chunk in iter_trades_csv(url, since, until, metrics=metrics, stats=stats):
        out_stream.write(chunk)
    out_stream.flush()
    return stats
