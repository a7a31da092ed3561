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
  (the fastest way out of PostgreSQL); rows are taken from libpq with one C call each;
* SQLite: the driver's cursor, which streams natively, ``fetch_rows`` at a time; a batch whose
  fields need no quoting is joined into CSV in C, any other goes through the C ``csv`` writer
  (same bytes either way).

Numbers are rendered by the database (``trim_scale`` on PostgreSQL; SQLite stores the canonical
text), and so are the timestamps (:func:`_iso_ms`), so no Python code runs per row.  Quoting
follows each side's CSV writer: the csv module on SQLite, PostgreSQL's on PostgreSQL (which
also quotes a value with a carriage return, and an empty string, where the csv module does
not; such values do not occur in practice).

Two entry points: :func:`iter_trades_csv` (synchronous generator of ``bytes``: the CLI) and
:func:`aiter_trades_csv` (async iterator for the HTTP route, pulling one chunk at a time from
the export's own thread, below the event loop's priority: ``supervision/threads.py``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import select
import time
from collections.abc import AsyncIterator, Callable, Generator
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
from spark.supervision.threads import BACKGROUND_NICE, BackgroundThread

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


def _amount_text(column: sa.ColumnElement[Any], dialect: str) -> sa.ColumnElement[Any]:
    if dialect == "postgresql":
        # COPY renders the numeric as text itself: no cast needed.
        return sa.func.trim_scale(sa.type_coerce(column, sa.Numeric()))
    return sa.type_coerce(column, sa.String())  # SQLite stores the canonical text


def _iso_ms(ms: sa.ColumnElement[int], dialect: str) -> sa.ColumnElement[str]:
    """Epoch ms as ``YYYY-MM-DDTHH:MM:SS.mmmZ``, exact (no float rounding reaches the digits).

    Formatting dates is most of the database's work per exported row, so each dialect uses
    its cheapest exact form:

    * PostgreSQL: the whole seconds as a ``timestamp``'s text (``YYYY-MM-DD HH:MM:SS`` under
      ``DateStyle=ISO``, which the export sets for its transaction), ``T`` for the space, then
      the milliseconds — floor division and modulo, so times before 1970 come out right too.
      (Cheaper than ``to_char``.)
    * SQLite: one ``strftime`` with ``%f`` (seconds with milliseconds).  SQLite turns the
      ``ms / 1000.0`` seconds back into integer milliseconds with rounding before formatting,
      so the digits are exact over its whole date range.
    """
    if dialect == "postgresql":
        # mod() rather than %: the statement goes into COPY unformatted, where "%%" would stay.
        millis = sa.func.mod(sa.func.mod(ms, 1000) + 1000, 1000)  # floor modulo
        whole = sa.func.replace(
            sa.cast(
                sa.literal_column("timestamp '1970-01-01'")
                + ((ms - millis) // 1000) * sa.literal_column("interval '1 second'"),
                sa.Text(),
            ),
            " ",
            "T",
        )
        return whole + "." + sa.func.lpad(sa.cast(millis, sa.Text()), 3, "0") + "Z"
    seconds = ms.op("/", return_type=sa.Float())(sa.literal_column("1000.0"))
    return sa.func.strftime("%Y-%m-%dT%H:%M:%fZ", seconds, "unixepoch")


def trades_query(dialect: str, since_ms: int | None, until_ms: int | None) -> sa.Select[Any]:
    """The export's SELECT: every column rendered as the CSV's text by the database.

    PostgreSQL: missing values stay NULL — its CSV output writes NULL as an empty field (and
    would quote an empty *string* as ``""``).  SQLite: every column is text, missing values
    ``''`` (what the csv module writes for ``None``), so that a batch of rows can be joined
    without per-row Python (see :func:`_cursor_rows`).
    """
    t = schema.trades
    text_id = sa.cast(t.c.trade_id, sa.String())
    optional: Callable[[sa.ColumnElement[Any]], sa.ColumnElement[Any]]
    if dialect == "postgresql":
        venue_id: sa.ColumnElement[Any] = t.c.venue_order_id  # COPY writes an integer's text

        def optional(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
            return column
    else:
        venue_id = sa.func.coalesce(sa.cast(t.c.venue_order_id, sa.String()), "")

        def optional(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
            return sa.func.coalesce(column, "")

    query = sa.select(
        sa.func.coalesce(t.c.execution_id, t.c.symbol + "-" + text_id),
        t.c.client_order_id,
        t.c.client_order_id,
        t.c.symbol,
        t.c.side,
        _amount_text(t.c.qty, dialect),
        _amount_text(t.c.price, dialect),
        optional(t.c.order_status),
        _iso_ms(t.c.trade_ms, dialect),
        venue_id,
        _amount_text(t.c.commission, dialect),
        optional(t.c.commission_asset),
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
    """SQLite: rows from the driver's cursor, a fetched batch at a time, in chunks.

    Every column comes out of the query as text, so a batch becomes CSV with two C-level joins
    (fields with commas, rows with newlines) — the same bytes the csv module would write as
    long as no field needs quoting, which one scan of the joined text tells: exactly
    ``len(HEADER) - 1`` commas per row, a newline only between rows, no quote, no carriage
    return.  A batch that fails the check (or holds a non-text value) goes through
    ``csv.writer`` instead.  No SQLAlchemy result processing either: its per-row objects
    would cost more than the rest.
    """
    compiled = query.compile(dialect=conn.dialect)
    params = tuple(compiled.params[k] for k in compiled.positiontup or ())
    driver = conn.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    commas_per_row = len(HEADER) - 1
    join_fields = ",".join
    pending_rows = 0
    try:
        cursor.execute(compiled.string, params)
        while batch := cursor.fetchmany(fetch_rows):
            rows = len(batch)
            try:
                text = "\n".join(map(join_fields, batch))
            except TypeError:  # a value that is not text
                text = ""
            if (
                text
                and text.count(",") == commas_per_row * rows
                and text.count("\n") == rows - 1
                and '"' not in text
                and "\r" not in text
            ):
                buffer.write(text)
                buffer.write("\n")
            else:
                writer.writerows(batch)
            pending_rows += rows
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
    rendered as literals (COPY takes no parameters).  It runs in its own transaction, with
    ``DateStyle=ISO`` for the timestamps' text (see :func:`_iso_ms`).

    Rows are taken straight from libpq while it holds some (one C call each); only when it has
    none does the loop wait on the socket.  (The driver's ``Copy.read()`` costs about as much
    per row as the server spends rendering it.)
    """
    sql = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}).string
    driver = conn.connection.driver_connection
    assert driver is not None
    pgconn = driver.pgconn
    pending = bytearray()
    pending_rows = 0
    with driver.transaction(), driver.cursor() as cursor:
        cursor.execute("SET LOCAL DateStyle = 'ISO'")
        with cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)"):
            get_copy_data = pgconn.get_copy_data
            readable = select.poll()
            readable.register(pgconn.socket, select.POLLIN)
            while True:
                nbytes, row = get_copy_data(1)  # 1: never block, 0 means "nothing buffered"
                if nbytes > 0:  # exactly one row per CopyData message (protocol guarantee)
                    pending += row
                    pending_rows += 1
                    if len(pending) >= chunk_bytes:
                        yield bytes(pending), pending_rows
                        pending.clear()
                        pending_rows = 0
                elif nbytes == 0:
                    readable.poll()  # releases the GIL while waiting
                    pgconn.consume_input()
                else:  # -1: the data has ended
                    break
            _finish_copy_out(driver)
    if pending_rows:
        yield bytes(pending), pending_rows


def _finish_copy_out(driver: Any) -> None:
    """After the end of COPY OUT data: collect the COPY's own result, as the driver would.

    A query that fails after the first rows ends the data early; the error comes here.
    Nothing is yielded between the end of the data and this, so a consumer closing the export
    early always does so mid-COPY, where the driver's own cancel-and-drain applies.
    """
    import psycopg

    pgconn = driver.pgconn
    readable = select.poll()
    readable.register(pgconn.socket, select.POLLIN)
    error: Exception | None = None
    while True:  # every result, up to the end: the connection is idle again after
        while pgconn.is_busy():
            readable.poll()
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            break
        if result.status != psycopg.pq.ExecStatus.COMMAND_OK and error is None:
            error = psycopg.errors.error_from_result(result, encoding=driver.info.encoding)
    if error is not None:
        raise error


async def aiter_trades_csv(
    db: Engine | str | URL,
    since: str | int | datetime | None = None,
    until: str | int | datetime | None = None,
    *,
    metrics: Metrics | None = None,
    limiter: trio.CapacityLimiter | None = None,
    nice: int = BACKGROUND_NICE,
) -> AsyncIterator[bytes]:
    """:func:`iter_trades_csv` for trio code (e.g. a starlette ``StreamingResponse``).

    Each chunk is produced in the export's own low-priority thread and handed over before the
    next one is fetched, so at most one chunk is in memory and a slow client slows the database
    read instead of filling memory.  (A thread-fed channel would need a nursery inside this
    generator, which trio forbids across ``yield``.)  Closing the iterator early (client went
    away) closes the cursor.  Bounds are validated before the first chunk: a bad one raises
    ``InvalidTimeBound`` on the first ``__anext__`` (a route can call :func:`parse_time_bound`
    first to answer 400).
    """
    parse_time_bound(since)
    parse_time_bound(until)
    chunks = iter_trades_csv(db, since, until, metrics=metrics)
    lane = limiter if limiter is not None else trio.CapacityLimiter(1)
    # Below the event loop's priority, as the writer: an export of a million rows is CPU work
    # the order path must not time-slice with (supervision/threads.py says why and how).
    worker = BackgroundThread("spark-export", nice)

    def next_chunk() -> bytes | None:
        return next(chunks, None)

    try:
        while True:
            async with lane:
                chunk = await worker.run_sync(next_chunk)
            if chunk is None:
                return
            yield chunk
    finally:
        try:
            with trio.CancelScope(shield=True):
                async with lane:  # closing may still talk to the database
                    await worker.run_sync(chunks.close)
        finally:
            worker.close()


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
