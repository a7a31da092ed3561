"""Evidence packages (CONTRACT §7): build one, and verify one.

A package is a folder ``<out_dir>/<NONCE>/`` (NONCE = ``YYYYMMDDHHMMSS-<6 digits>``, UTC, the
digits from :mod:`secrets` so two packages built in the same second do not collide and a name
cannot be guessed ahead of time) holding ``trades.csv``, ``metrics.txt``, ``audit.json``,
``health.json``, ``config.redacted.toml``, ``slo.json``, ``INDEX.md`` and ``MANIFEST.sha256``
(``sha256sum`` format, so ``sha256sum -c MANIFEST.sha256`` checks it without Spark), plus a
``<NONCE>.zip`` of the folder beside it for sending.

Building is all-or-nothing: the files are written into a hidden staging folder that is renamed
into place only when complete, and the zip is renamed into place after that, so a crash never
leaves something that looks like a package but is not one.  Every text passes through a
:class:`~spark.runtime.evidence.scrub.Scrubber` before it is written.

:func:`verify_package` recomputes every hash and fails on a changed, missing or extra file, a
malformed manifest line, or a manifest entry that points outside the folder.  When the zip is
beside the folder it is checked the same way, and its headers, attributes and layout must be
exactly what the builder writes (a damaged member is a finding, never a crash).  The manifest
proves integrity (nothing changed by accident or by a careless hand since it was built), not
authorship: whoever can rewrite the files can rewrite the manifest.

The functions here do blocking file I/O; call them from Trio code via
``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import re
import secrets
import shutil
import socket
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any

import attrs

from spark.config.schema import SparkConfig
from spark.core.secret import Secret
from spark.runtime.evidence.errors import InvalidPackageInput
from spark.runtime.evidence.redact import redact_config
from spark.runtime.evidence.scrub import Scrubber
from spark.runtime.evidence.slo import SloResult

__all__ = [
    "FILE_DESCRIPTIONS",
    "MANIFEST",
    "NONCE_RE",
    "STANDARD_FILES",
    "Finding",
    "VerifyReport",
    "build_package",
    "make_nonce",
    "verify_package",
    "verify_zip",
]

MANIFEST = "MANIFEST.sha256"
STANDARD_FILES = (
    "trades.csv",
    "metrics.txt",
    "audit.json",
    "health.json",
    "config.redacted.toml",
    "slo.json",
    "INDEX.md",
)
FILE_DESCRIPTIONS: Mapping[str, str] = MappingProxyType({
    "trades.csv": "every trade in the database, as `spark-runtime export trades` writes it",
    "metrics.txt": "one Prometheus text-format scrape of the runtime's metrics",
    "audit.json": "the audit trail: who did what through the control port or a signal",
    "health.json": "`GET /api/public/health` at build time",
    "config.redacted.toml": "the configuration, re-rendered with secret-looking values removed",
    "slo.json": "each runbook SLO measured from metrics.txt against its target",
    "INDEX.md": "this file",
})
NONCE_RE = re.compile(r"^\d{14}-\d{6}$")
# Extra files: plain names only, so nothing can be written (or listed) outside the folder.
_EXTRA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_MANIFEST_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")
_CHUNK = 1 << 16


def make_nonce(now: dt.datetime) -> str:
    """``YYYYMMDDHHMMSS-<6 random digits>`` for ``now`` in UTC."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S")
    return f"{stamp}-{secrets.randbelow(1_000_000):06d}"


def build_package(
    out_dir: str | os.PathLike[str],
    *,
    health: Mapping[str, Any],
    metrics_text: str,
    audit: Sequence[Mapping[str, Any]],
    trades_csv_chunks: Iterable[bytes],
    config_redacted_toml: str | SparkConfig,
    slo: Sequence[SloResult],
    extra_files: Mapping[str, bytes] = MappingProxyType({}),
    now: dt.datetime | None = None,
    known_secrets: Iterable[str | Secret] = (),
    source: Mapping[str, str] = MappingProxyType({}),
) -> Path:
    """Write ``<out_dir>/<NONCE>/`` and ``<out_dir>/<NONCE>.zip``; return the folder.

    ``trades_csv_chunks`` is consumed once, streamed to disk (constant memory, like the export
    it usually comes from).  ``config_redacted_toml`` (TOML text or the loaded config) is
    redacted again here (see :func:`~spark.runtime.evidence.redact.redact_config`).
    ``known_secrets`` are the values the caller knows to be secret (control tokens, API
    secret, database password); they and anything credential-shaped are scrubbed from every
    file.  ``source`` says in INDEX.md
    where the inputs came from (control URL, database URL — scrubbed too).  ``extra_files``
    are added under their plain names (no paths) and covered by the manifest like the rest.
    """
    moment = now if now is not None else dt.datetime.now(dt.UTC)
    scrub = Scrubber(known_secrets)
    _check_extra_names(extra_files)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    nonce, final = _fresh_nonce(out, moment)
    staging = out / f".{nonce}.partial"
    staging.mkdir()
    try:
        rows = _write_trades(staging / "trades.csv", trades_csv_chunks, scrub)
        _write_text(staging / "metrics.txt", scrub(metrics_text))
        _write_text(staging / "audit.json", _json(scrub.scrub_json(list(audit))))
        _write_text(staging / "health.json", _json(scrub.scrub_json(dict(health))))
        # Secret-looking config keys (venue.api_key) are always there and always replaced:
        # that is expected, so it does not count as a leak in INDEX.md.
        _write_text(staging / "config.redacted.toml",
                    scrub(redact_config(config_redacted_toml, scrub.fork())))
        slo_doc = {
            "generated_at": _iso(moment),
            "computed_from": "metrics.txt",
            "results": [result.as_json() for result in slo],
        }
        _write_text(staging / "slo.json", _json(scrub.scrub_json(slo_doc)))
        for name, data in sorted(extra_files.items()):
            _write_bytes(staging / name, _scrub_bytes(name, data, scrub))
        index = _index(nonce, moment, rows, len(audit), slo, sorted(extra_files),
                       {k: scrub(v) for k, v in source.items()}, scrub)
        _write_text(staging / "INDEX.md", scrub(index))
        _write_text(staging / MANIFEST, _manifest(staging))
        _fsync_dir(staging)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        _write_zip(final, out / f"{nonce}.zip", moment)
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)  # a package is the folder and its zip
        raise
    _fsync_dir(out)
    return final


# -- building ---------------------------------------------------------------------------


def _check_extra_names(extra_files: Mapping[str, bytes]) -> None:
    reserved = {*STANDARD_FILES, MANIFEST}
    for name in extra_files:
        if not _EXTRA_NAME.match(name) or name in reserved:
            raise InvalidPackageInput(
                f"extra file name {name!r}: must be a plain file name (letters, digits, . _ -) "
                f"and not one of {sorted(reserved)}")


def _fresh_nonce(out: Path, moment: dt.datetime) -> tuple[str, Path]:
    for _ in range(100):
        nonce = make_nonce(moment)
        final = out / nonce
        if not final.exists() and not (out / f"{nonce}.zip").exists():
            return nonce, final
    raise InvalidPackageInput(f"no free package name in {out}")  # pragma: no cover


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _write_text(path: Path, text: str) -> None:
    _write_bytes(path, text.encode("utf-8"))


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _write_trades(path: Path, chunks: Iterable[bytes], scrub: Scrubber) -> int:
    """Stream the CSV to disk line by line, scrubbing each complete line (a secret cannot hide
    across a chunk boundary); returns the number of data rows (lines after the header)."""
    lines = 0
    pending = b""
    with open(path, "xb") as f:
        for chunk in chunks:
            pending += chunk
            cut = pending.rfind(b"\n") + 1
            if cut:
                block, pending = pending[:cut], pending[cut:]
                lines += block.count(b"\n")
                f.write(scrub(block.decode("utf-8", errors="replace")).encode("utf-8"))
        if pending:
            lines += 1
            f.write(scrub(pending.decode("utf-8", errors="replace")).encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())
    return max(0, lines - 1)


def _scrub_bytes(name: str, data: bytes, scrub: Scrubber) -> bytes:
    """Text is scrubbed; a binary file cannot be rewritten safely, so one that contains a known
    secret value is refused instead."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        probe = scrub(data.decode("latin-1"))
        if probe.encode("latin-1", errors="replace") != data:
            raise InvalidPackageInput(
                f"extra file {name!r} is binary and contains secret-looking content") from None
        return data
    return scrub(text).encode("utf-8")


def _sha256(f: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: f.read(_CHUNK), b""):
        digest.update(block)
    return digest.hexdigest()


def _manifest(folder: Path) -> str:
    lines = []
    for name in sorted(p.name for p in folder.iterdir() if p.name != MANIFEST):
        with open(folder / name, "rb") as f:
            lines.append(f"{_sha256(f)}  {name}\n")
    return "".join(lines)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_zip(folder: Path, target: Path, moment: dt.datetime) -> None:
    """``<NONCE>.zip`` holding ``<NONCE>/<file>`` for every file, in manifest order, with the
    build time as every entry's time (the same inputs give the same bytes)."""
    partial = target.with_name(f".{target.name}.partial")
    stamp = moment.astimezone(dt.UTC)
    date_time = (max(stamp.year, 1980), stamp.month, stamp.day, stamp.hour, stamp.minute,
                 stamp.second)
    try:
        with zipfile.ZipFile(partial, "x", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.iterdir(), key=lambda p: p.name):
                info = zipfile.ZipInfo(f"{folder.name}/{path.name}", date_time=date_time)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                with open(path, "rb") as src, archive.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _version() -> str:
    try:
        return importlib.metadata.version("spark-runtime")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _index(nonce: str, moment: dt.datetime, rows: int, audit_entries: int,
           slo: Sequence[SloResult], extras: Sequence[str], source: Mapping[str, str],
           scrub: Scrubber) -> str:
    lines = [
        f"# Evidence package {nonce}",
        "",
        f"Built {_iso(moment)} by spark-runtime {_version()} on host `{socket.gethostname()}`.",
        "",
    ]
    if source:
        lines += ["Built from:", ""]
        lines += [f"- {key}: `{value}`" for key, value in source.items()]
        lines.append("")
    lines += ["## Files", "", "| file | what it is |", "|---|---|"]
    details = {
        "trades.csv": f" ({rows} {'row' if rows == 1 else 'rows'})",
        "audit.json": f" ({audit_entries} {'entry' if audit_entries == 1 else 'entries'})",
    }
    for name in STANDARD_FILES:
        lines.append(f"| `{name}` | {FILE_DESCRIPTIONS[name]}{details.get(name, '')} |")
    for name in extras:
        lines.append(f"| `{name}` | supplied by the builder |")
    lines.append(f"| `{MANIFEST}` | SHA-256 of every other file (`sha256sum` format) |")
    lines += [
        "",
        "## SLOs",
        "",
        "Measured from `metrics.txt`: counters and histograms are cumulative since the runtime "
        "started. \"no data\" means nothing was observed, which is not a pass.",
        "",
        "| SLO | target | measured | result | note |",
        "|---|---|---|---|---|",
    ]
    for r in slo:
        unit = "" if r.unit == "state" else f" {r.unit}"
        measured = "—" if r.measured is None else f"{r.measured:g}{unit}"
        lines.append(f"| {r.name} | {r.op} {r.target:g}{unit} | {measured} | {r.verdict} "
                     f"| {_cell(r.note)} |")
    if not slo:
        lines.append("| (none computed) | | | | |")
    lines += [
        "",
        "## Checking this package",
        "",
        f"`spark-runtime evidence verify {nonce}` (or `sha256sum -c {MANIFEST}` inside this "
        "folder) recomputes every hash; any changed, missing or extra file fails.",
        "",
        "## Redaction",
        "",
        "Every file was scrubbed of known secret values and credential-shaped text "
        "(Authorization headers, signatures, passwords in URLs, values of secret-looking keys) "
        "before it was written. Outside the configuration (whose secret-looking keys are always "
        f"replaced), {scrub.redactions} value(s) were replaced by `***`"
        + ("; the inputs contained secrets, which is worth a bug report." if scrub.redactions
           else "."),
        "",
    ]
    return "\n".join(lines)


# -- verifying --------------------------------------------------------------------------


@attrs.frozen
class Finding:
    """One thing wrong with a package.

    ``problem`` is a stable code: ``changed`` (hash differs), ``missing`` (listed or required
    but absent), ``extra`` (present but not listed), ``unlisted`` (a required file the manifest
    does not cover), ``malformed`` (a manifest line that is not ``<sha256>  <name>``),
    ``outside`` (a manifest name that is a path), ``not_a_file`` (a listed name that is a
    folder or a symlink), ``unreadable`` (a file, or a zip member whose compressed bytes or
    checksum are damaged), ``layout`` (the zip's bytes around its members — headers, attributes,
    comment, anything appended — are not what the builder writes).
    """

    name: str
    problem: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.name}: {self.problem}" + (f" ({self.detail})" if self.detail else "")


@attrs.frozen
class VerifyReport:
    """The outcome of :func:`verify_package`: ``ok`` only when nothing at all was found."""

    path: Path
    checked: tuple[str, ...]
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not self.findings and bool(self.checked)

    def failed_names(self) -> set[str]:
        return {f.name for f in self.findings}

    def render(self) -> str:
        """A report for people: one line per file, then the verdict."""
        lines = [f"evidence package {self.path}"]
        bad = {f.name for f in self.findings}
        lines += [f"  ok       {name}" for name in self.checked if name not in bad]
        lines += [f"  FAILED   {finding}" for finding in self.findings]
        verdict = "OK" if self.ok else f"FAILED ({len(self.findings)} problem(s))"
        lines.append(f"{verdict}: {len(self.checked)} file(s) checked")
        return "\n".join(lines)


# What reading a file or a damaged zip member can raise: a bad CRC or header (BadZipFile), a
# corrupt deflate stream (zlib.error), a truncated one (EOFError), a flipped method or
# encryption bit (NotImplementedError, RuntimeError).  Each is a finding, never a crash.
_READ_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError,
                RuntimeError)


class _Listing:
    """What a package holds, from a folder or a zip: names → regular file or not, and a way to
    open each."""

    def __init__(self, kinds: Mapping[str, bool], opener: Callable[[str], IO[bytes]]) -> None:
        self.kinds = kinds  # name -> is a regular file
        self.open = opener


def verify_package(directory: str | os.PathLike[str]) -> VerifyReport:
    """Recompute every hash of the package folder ``directory`` (and of ``<folder>.zip`` when
    it lies beside the folder)."""
    folder = Path(directory)
    if not folder.is_dir():
        return VerifyReport(folder, (), (Finding(str(folder), "missing", "no such folder"),))
    kinds = {p.name: p.is_file() and not p.is_symlink() for p in folder.iterdir()}
    report = _verify(folder, _Listing(kinds, lambda name: (folder / name).open("rb")))
    archive = folder.with_name(f"{folder.name}.zip")
    if not archive.exists():
        return report
    zipped = verify_zip(archive)
    findings = list(report.findings)
    findings += [attrs.evolve(f, name=f"{archive.name}:{f.name}") for f in zipped.findings]
    # Compare the manifests whenever the zip's hashes held, even with a layout finding: that
    # the contents differ is the more useful thing to say.
    if report.ok and zipped.checked and all(f.problem == "layout" for f in zipped.findings):
        inside = _zip_manifest(archive)
        here = (folder / MANIFEST).read_bytes()
        if inside is None or _manifest_entries(inside)[0] != _manifest_entries(here)[0]:
            findings.append(Finding(archive.name, "changed",
                                    "its manifest differs from the folder's"))
    return VerifyReport(folder, report.checked, tuple(findings))


def verify_zip(path: str | os.PathLike[str]) -> VerifyReport:
    """Check a package's zip on its own: one top folder, the manifest inside it holds, and the
    bytes around the members are exactly what the builder writes (:func:`_zip_layout`)."""
    archive_path = Path(path)
    try:
        archive = zipfile.ZipFile(archive_path)
    except _READ_ERRORS as exc:
        return VerifyReport(archive_path, (), (Finding(archive_path.name, "unreadable",
                                                       str(exc)),))
    with archive:
        top = archive_path.name.removesuffix(".zip")
        kinds: dict[str, bool] = {}
        findings: list[Finding] = []
        for info in archive.infolist():
            if info.filename == f"{top}/" and info.is_dir():
                continue
            prefix, _, name = info.filename.partition("/")
            if prefix != top or not name or "/" in name:
                findings.append(Finding(info.filename, "outside", f"not a file in {top}/"))
                continue
            kinds[name] = not info.is_dir()
        report = _verify(archive_path, _Listing(
            kinds, lambda name: archive.open(f"{top}/{name}")))
    findings += _zip_layout(archive_path)
    return VerifyReport(archive_path, report.checked, (*findings, *report.findings))


# Zip records (no zip64: the builder's zip never needs it), little-endian.
_LOCAL = struct.Struct("<IHHHHHIIIHH")  # 30 bytes
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # 46 bytes
_END = struct.Struct("<IHHHHIIH")  # 22 bytes
_LOCAL_SIG, _CENTRAL_SIG, _END_SIG = 0x04034B50, 0x02014B50, 0x06054B50
_ZIP_VERSION = 20  # what zipfile writes for deflate: "version made by" / "needed"
_FILE_ATTR = 0o644 << 16  # what _write_zip sets


def _zip_layout(path: Path) -> list[Finding]:
    """Findings for every byte of the zip that the member hashes do not cover.

    The manifest covers the members' contents (and zipfile checks each member's CRC), but a
    zip also holds headers twice (local and central), attributes, a comment, and could carry
    bytes nobody reads.  The builder writes all of that in one fixed way, so anything else —
    one flipped bit in a timestamp, a changed permission, a comment, an appended blob — is a
    ``layout`` finding: a package is evidence, and evidence that was edited is not the same
    evidence even when the edit looks harmless.
    """
    name = path.name
    findings: list[Finding] = []

    def layout(detail: str, where: str = name) -> None:
        findings.append(Finding(where, "layout", detail))

    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size < _END.size:
                layout("shorter than an end-of-archive record")
                return findings
            f.seek(size - _END.size)
            sig, disk, cd_disk, entries_here, entries, cd_size, cd_offset, comment = (
                _END.unpack(f.read(_END.size)))
            if sig != _END_SIG or comment or disk or cd_disk or entries_here != entries:
                layout("the last 22 bytes are not a plain end-of-archive record "
                       "(a comment, appended bytes, or a changed record)")
                return findings
            if cd_offset + cd_size + _END.size != size:
                layout("the central directory does not end where the end record begins")
                return findings
            f.seek(cd_offset)
            directory = f.read(cd_size)
            pos = expected = 0
            made_by: int | None = None
            for index in range(entries):
                if pos + _CENTRAL.size > len(directory):
                    layout(f"central directory ends inside entry {index}")
                    return findings
                (sig, made, needed, flags, method, mtime, mdate, crc, csize, usize, nlen, elen,
                 clen, disk_start, internal, external, offset) = _CENTRAL.unpack_from(
                    directory, pos)
                member = directory[pos + _CENTRAL.size:pos + _CENTRAL.size + nlen]
                pos += _CENTRAL.size + nlen + elen + clen
                where = member.decode("utf-8", errors="replace")
                if sig != _CENTRAL_SIG:
                    layout(f"entry {index} is not a central directory record")
                    return findings
                made_by = made if made_by is None else made_by
                problems = []
                if made != made_by or made >> 8 not in (0, 3) or made & 0xFF != _ZIP_VERSION:
                    problems.append("version made by")
                if needed != _ZIP_VERSION or flags or method != zipfile.ZIP_DEFLATED:
                    problems.append("version needed, flags or method")
                if elen or clen or disk_start or internal or external != _FILE_ATTR:
                    problems.append("extra field, comment or attributes")
                if offset != expected:
                    problems.append("not right after the previous member")
                f.seek(offset)
                local = f.read(_LOCAL.size + nlen)
                if len(local) < _LOCAL.size + nlen:
                    problems.append("local header cut short")
                elif (_LOCAL.unpack_from(local) != (_LOCAL_SIG, needed, flags, method, mtime,
                                                    mdate, crc, csize, usize, nlen, 0)
                      or local[_LOCAL.size:] != member):
                    problems.append("local header differs from the central directory")
                if problems:
                    layout("; ".join(problems), where)
                expected = offset + _LOCAL.size + nlen + csize
            if pos != len(directory):
                layout("the central directory holds more than its entries")
            if expected != cd_offset:
                layout("bytes between the last member and the central directory")
    except OSError as exc:
        findings.append(Finding(name, "unreadable", str(exc)))
    return findings


def _zip_manifest(path: Path) -> bytes | None:
    with zipfile.ZipFile(path) as archive:
        try:
            return archive.read(f"{path.name.removesuffix('.zip')}/{MANIFEST}")
        except KeyError:
            return None


def _verify(path: Path, listing: _Listing) -> VerifyReport:
    findings: list[Finding] = []
    if MANIFEST not in listing.kinds:
        findings.append(Finding(MANIFEST, "missing", "nothing can be verified"))
        findings += [Finding(name, "extra", "not covered by a manifest")
                     for name in sorted(listing.kinds)]
        return VerifyReport(path, (), tuple(findings))
    entries, findings = _parse_manifest(listing)
    checked: list[str] = []
    for name, expected in entries.items():
        if name not in listing.kinds:
            findings.append(Finding(name, "missing", "listed in the manifest"))
            continue
        if not listing.kinds[name]:
            findings.append(Finding(name, "not_a_file", "a folder or a symlink"))
            continue
        try:
            with listing.open(name) as f:
                actual = _sha256(f)
        except _READ_ERRORS as exc:
            findings.append(Finding(name, "unreadable", str(exc)))
            continue
        checked.append(name)
        if actual != expected:
            findings.append(Finding(name, "changed",
                                    f"sha256 {actual[:16]}… expected {expected[:16]}…"))
    for name in STANDARD_FILES:
        if name not in entries:
            findings.append(Finding(name, "unlisted" if name in listing.kinds else "missing",
                                    "a package file the manifest does not cover"))
    for name in sorted(listing.kinds):
        if name != MANIFEST and name not in entries and name not in STANDARD_FILES:
            findings.append(Finding(name, "extra", "not in the manifest"))
    return VerifyReport(path, tuple(checked), tuple(findings))


def _parse_manifest(listing: _Listing) -> tuple[dict[str, str], list[Finding]]:
    if not listing.kinds[MANIFEST]:
        return {}, [Finding(MANIFEST, "not_a_file", "a folder or a symlink")]
    try:
        with listing.open(MANIFEST) as f:
            raw = f.read()
    except _READ_ERRORS as exc:
        return {}, [Finding(MANIFEST, "unreadable", str(exc))]
    return _manifest_entries(raw)


def _manifest_entries(raw: bytes) -> tuple[dict[str, str], list[Finding]]:
    """name → lower-case hex digest, and what is wrong with the manifest's lines."""
    findings: list[Finding] = []
    entries: dict[str, str] = {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return entries, [Finding(MANIFEST, "unreadable", str(exc))]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    if not lines:
        findings.append(Finding(MANIFEST, "malformed", "empty"))
    for number, line in enumerate(lines, 1):
        match = _MANIFEST_LINE.match(line)
        if not match:
            findings.append(Finding(MANIFEST, "malformed",
                                    f"line {number} is not '<sha256>  <name>'"))
            continue
        digest, name = match.group(1).lower(), match.group(2)
        if name == MANIFEST:
            findings.append(Finding(MANIFEST, "malformed", f"line {number} lists the manifest"))
            continue
        if "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
            findings.append(Finding(name, "outside",
                                    f"manifest line {number} names a path, not a file here"))
            continue
        if name in entries:
            findings.append(Finding(MANIFEST, "malformed", f"line {number} repeats {name}"))
            continue
        entries[name] = digest
    return entries, findings
