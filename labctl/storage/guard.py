"""Run files are untrusted input: checks made before anything is read.

A run file may come from anywhere (a collaborator, a download, a fuzzer).
HDF5 can make a file read other files (external links, external raw storage,
virtual datasets onto other files) and can declare far more data than it
stores (huge shapes of unallocated or compressed chunks), so a reader that
simply follows the file would read local files or exhaust memory. Everything
here looks only at HDF5 *metadata* (link types, creation property lists,
shapes, chunk sizes, attribute sizes) before any data is read, and refuses
with a ``RunFileError`` naming the field and what is allowed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from typing import Any

import h5py
import numpy as np

from labctl.steps import SAMPLE_DTYPE, SPECTRUM_DTYPE
from labctl.storage import layout as L

#: Bounds on what a run file may declare (far above any real run, far below
#: what would exhaust a lab PC's memory).
MAX_SAMPLE_ROWS = 1 << 24  # 640 MiB of samples: 194 days at one sample a second
MAX_SPECTRUM_ROWS = 1 << 22
MAX_STEP_ROWS = 50_000
MAX_EVENT_ROWS = 100_000
MAX_CHUNK_BYTES = 16 << 20  # reading one row decompresses its whole chunk
MAX_EXPANSION = 64  # declared bytes per stored byte beyond which data is refused
EXPANSION_FREE_BYTES = 1 << 20  # small tables are not held to the ratio
MAX_JSON_BYTES = 32 << 20
MAX_JSON_DEPTH = 64
MAX_JSON_ITEMS = 2_000_000
MAX_STRING_CHARS = 1 << 20
MAX_TEXT_ATTR_CHARS = 64 << 10
MAX_ATTRS = 256
MAX_ATTR_ELEMENTS = 4096
MAX_OBJECTS = 4 * MAX_STEP_ROWS + 10_000  # groups and datasets walked (by_step: 3 per step)
MAX_TREE_DEPTH = 16
MAX_VIRTUAL_MAPPINGS = 16

#: Root datasets the reader reads: dtype and row bound.
TABLES: dict[str, tuple[np.dtype, int]] = {
    L.SAMPLES: (SAMPLE_DTYPE, MAX_SAMPLE_ROWS),
    L.SPECTRA: (SPECTRUM_DTYPE, MAX_SPECTRUM_ROWS),
    L.STEPS: (L.STEP_ROW_DTYPE, MAX_STEP_ROWS),
    L.HEARTBEAT: (L.HEARTBEAT_DTYPE, 1),
    L.EVENTS: (L.EVENT_DTYPE, MAX_EVENT_ROWS),
    L.END: (np.dtype(np.uint8), MAX_JSON_BYTES),
}
#: Tables the writer stores uncompressed, held to MAX_EXPANSION.
_BULK_TABLES = (L.SAMPLES, L.SPECTRA)

#: Sources a /by_step virtual dataset may select from (within the same file).
_VIRTUAL_SOURCES = {f"/{L.SAMPLES}", f"/{L.SPECTRA}"}

_TEXT_ATTRS = ("format", "run_id", "protocol", "protocol_version", "operator", "started_at", "ended_at", "error")
_STATUSES = ("running", *L.FINAL_STATUSES)


class RunFileError(ValueError):
    """A run file refused as input: ``field`` names what is wrong, ``why``
    says what is allowed. ``str()`` is the one line the CLI prints."""

    def __init__(self, field: str, why: str, path: str = "") -> None:
        super().__init__(field, why, path)
        self.field = field
        self.why = why
        self.path = path

    def at(self, path: object) -> RunFileError:
        """The same refusal, naming the file."""
        return RunFileError(self.field, self.why, str(path))

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{where}{self.field}: {self.why}"


@contextlib.contextmanager
def untrusted(path: str | os.PathLike[str]) -> Iterator[None]:
    """Reading a run file: a refusal names the file; what h5py or numpy raise
    on a malformed structure (wrong types where the layout has others,
    undecodable fields) becomes a refusal too. OSError (the file cannot be
    read at all, or is being finalized) passes through unchanged."""
    try:
        yield
    except RunFileError as exc:
        raise (exc if exc.path else exc.at(path)) from None
    except (KeyError, RuntimeError, TypeError, ValueError, IndexError, OverflowError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise RunFileError("file", f"malformed run file ({first})", str(path)) from exc


# -- structure ---------------------------------------------------------------------


def check_tree(f: h5py.File) -> None:
    """Walk every link of the file without following any link or reading data:
    only hard links; no dataset with external raw storage; virtual datasets
    only onto /samples or /spectra of this same file ("." source)."""
    seen: set[int] = set()
    budget = [MAX_OBJECTS]
    _walk(f.id, "", 0, seen, budget)


def _walk(group: h5py.h5g.GroupID, path: str, depth: int, seen: set[int], budget: list[int]) -> None:
    if depth > MAX_TREE_DEPTH:
        raise RunFileError(path or "/", f"groups nested deeper than {MAX_TREE_DEPTH} levels")
    for raw in _link_names(group, path):
        name = raw.decode("utf-8", errors="replace")
        where = f"{path}/{name}"
        budget[0] -= 1
        if budget[0] < 0:
            raise RunFileError(where, f"more than {MAX_OBJECTS} objects in the file")
        kind = group.links.get_info(raw).type
        if kind == h5py.h5l.TYPE_EXTERNAL:
            raise RunFileError(where, "external link to another file (a run file holds only its own data)")
        if kind != h5py.h5l.TYPE_HARD:
            raise RunFileError(where, "soft or user-defined link (a run file has only hard links)")
        obj = h5py.h5o.open(group, raw)
        address = h5py.h5o.get_info(obj).addr
        if address in seen:
            continue  # a second hard link to an object already checked
        seen.add(address)
        if isinstance(obj, h5py.h5g.GroupID):
            _walk(obj, where, depth + 1, seen, budget)
        elif isinstance(obj, h5py.h5d.DatasetID):
            check_storage(obj, where)


def _link_names(group: h5py.h5g.GroupID, path: str) -> list[bytes]:
    names: list[bytes] = []

    def collect(name: bytes) -> int | None:
        names.append(name)
        return 1 if len(names) > MAX_OBJECTS else None  # a non-None return stops the iteration

    group.links.iterate(collect)
    if len(names) > MAX_OBJECTS:
        raise RunFileError(path or "/", f"more than {MAX_OBJECTS} members")
    return names


def check_storage(dataset: h5py.h5d.DatasetID, where: str) -> None:
    """Refuse a dataset whose data would be read from outside the file."""
    dcpl = dataset.get_create_plist()
    if dcpl.get_external_count() > 0:
        raise RunFileError(where, "external raw storage (data kept in another file) is not allowed")
    if dcpl.get_layout() != h5py.h5d.VIRTUAL:
        return
    count = dcpl.get_virtual_count()
    if count > MAX_VIRTUAL_MAPPINGS:
        raise RunFileError(where, f"virtual dataset with {count} sources (at most {MAX_VIRTUAL_MAPPINGS})")
    for i in range(count):
        source_file = dcpl.get_virtual_filename(i)
        if source_file != ".":
            raise RunFileError(where, f"virtual dataset reads another file ({source_file[:80]!r}); only '.' is allowed")
        source = dcpl.get_virtual_dsetname(i)
        if source not in _VIRTUAL_SOURCES:
            raise RunFileError(where, f"virtual dataset source {source[:80]!r} is not /samples or /spectra")


def check_tables(f: h5py.File) -> None:
    """The root datasets the reader reads: present as plain datasets with the
    layout's dtypes, within their row bounds, chunks small enough to
    decompress, and not declaring far more than they store."""
    present = _root_names(f)
    for name, (dtype, max_rows) in TABLES.items():
        if name not in present:
            if name == L.END:
                continue  # files from before the end record
            raise RunFileError(f"/{name}", "missing (every run file has it)")
        ds = f.get(name)
        if not isinstance(ds, h5py.Dataset):
            raise RunFileError(f"/{name}", "is not a dataset")
        check_storage(ds.id, f"/{name}")
        if ds.id.get_create_plist().get_layout() == h5py.h5d.VIRTUAL:
            raise RunFileError(f"/{name}", "is a virtual dataset (the writer stores it directly)")
        if ds.dtype != dtype:
            raise RunFileError(f"/{name}", f"has type {_short(ds.dtype)}; expected {_short(dtype)}")
        if len(ds.shape) != 1:
            raise RunFileError(f"/{name}", f"has shape {ds.shape}; expected one dimension")
        rows = int(ds.shape[0])
        if rows > max_rows:
            raise RunFileError(f"/{name}", f"declares {rows} rows; at most {max_rows} are read")
        itemsize = ds.dtype.itemsize
        if ds.chunks is not None and ds.chunks[0] * itemsize > MAX_CHUNK_BYTES:
            raise RunFileError(f"/{name}", f"chunks of {ds.chunks[0] * itemsize} bytes; at most {MAX_CHUNK_BYTES}")
        declared = rows * itemsize
        if name in _BULK_TABLES and declared > EXPANSION_FREE_BYTES:
            stored = ds.id.get_storage_size()
            if declared > MAX_EXPANSION * stored:
                raise RunFileError(
                    f"/{name}",
                    f"declares {declared} bytes but stores {stored} (more than {MAX_EXPANSION}x expansion refused)",
                )


def _root_names(f: h5py.File) -> set[str]:
    return {raw.decode("utf-8", errors="replace") for raw in _link_names(f.id, "/")}


def _short(dtype: np.dtype) -> str:
    text = str(dtype)
    return text if len(text) <= 60 else text[:57] + "..."


# -- attributes --------------------------------------------------------------------


def read_root_attrs(f: h5py.File) -> dict[str, Any]:
    """The root attributes as Python values, checked: sizes bounded before
    reading, JSON attributes parsed with bounded depth, known fields of the
    right types. Unknown attributes that are not small scalars are skipped."""
    n = h5py.h5a.get_num_attrs(f.id)
    if n > MAX_ATTRS:
        raise RunFileError("attributes", f"{n} root attributes; at most {MAX_ATTRS}")
    meta: dict[str, Any] = {}
    for index in range(n):
        attr = h5py.h5a.open(f.id, index=index)
        key = attr.name.decode("utf-8", errors="replace")
        elements = int(np.prod(attr.shape)) if attr.shape else 1
        if elements > MAX_ATTR_ELEMENTS or attr.get_storage_size() > MAX_JSON_BYTES:
            raise RunFileError(key, f"attribute of {elements} elements; at most {MAX_ATTR_ELEMENTS}")
        kind = attr.dtype.kind
        if kind not in "biufSOU" or attr.dtype.names is not None or attr.shape != ():
            if key in (*L.JSON_ATTRS, *_TEXT_ATTRS, "status", "writer_pid", "writer_host", "flush_interval"):
                raise RunFileError(key, f"attribute of type {_short(attr.dtype)}; expected a scalar")
            continue
        value = f.attrs[key]
        if isinstance(value, bytes | np.bytes_):
            value = L.text(value)
        elif isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, str):
            value = _valid_text(value)
        if isinstance(value, str) and len(value) > MAX_JSON_BYTES:
            raise RunFileError(key, f"attribute of {len(value)} characters; at most {MAX_JSON_BYTES}")
        meta[key] = value
    return check_meta(meta)


def check_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """Types of the known root attributes; JSON ones decoded."""
    out = dict(meta)
    if out.get("format") != L.FORMAT_NAME:
        raise RunFileError("format", f"is {_shown(out.get('format'))}; a labctl run file has {L.FORMAT_NAME!r}")
    version = out.get("format_version")
    if version is not None and not (_is_int(version) and 1 <= version <= L.FORMAT_VERSION):
        raise RunFileError("format_version", f"is {_shown(version)}; this labctl reads 1..{L.FORMAT_VERSION}")
    status = out.get("status", "")
    if status not in (*_STATUSES, ""):
        raise RunFileError("status", f"is {_shown(status)}; allowed: {', '.join(_STATUSES)}")
    for key in _TEXT_ATTRS:
        value = out.get(key, "")
        if not isinstance(value, str):
            raise RunFileError(key, f"is {_shown(value)}; expected text")
        if len(value) > MAX_TEXT_ATTR_CHARS:
            raise RunFileError(key, f"is {len(value)} characters long; at most {MAX_TEXT_ATTR_CHARS}")
    pid = out.get("writer_pid")
    if pid is not None and not (_is_int(pid) and 0 < pid < 1 << 31):
        raise RunFileError("writer_pid", f"is {_shown(pid)}; expected a process id (1..2^31-1)")
    host = out.get("writer_host")
    if host is not None and not (isinstance(host, str) and len(host) <= 255):
        raise RunFileError("writer_host", f"is {_shown(host)}; expected a host name")
    interval = out.get("flush_interval")
    if interval is not None and not (_is_number(interval) and math.isfinite(interval) and 0 < interval <= 3600):
        raise RunFileError("flush_interval", f"is {_shown(interval)}; expected seconds in (0, 3600]")
    for key in L.JSON_ATTRS:
        if key in out:
            raw = out[key]
            if not isinstance(raw, str):
                raise RunFileError(key, f"is {_shown(raw)}; expected JSON text")
            out[key] = check_json_attr(key, raw)
    return out


def check_json_attr(key: str, raw: str) -> Any:
    """A JSON attribute: an object (or null); cell and parameters hold only
    finite numbers; the cell's geometry is positive."""
    value = parse_json(key, raw)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise RunFileError(key, f"is a JSON {type(value).__name__}; expected an object")
    if key in ("cell", "parameters"):
        _require_finite(key, value)
    if key == "cell":
        for name in ("area_cm2", "thickness_um"):
            number = value.get(name)
            if number is not None and not (_is_number(number) and number > 0):
                raise RunFileError(f"cell.{name}", f"is {_shown(number)}; expected a positive number")
        for name in ("id", "type", "notes"):
            if value.get(name) is not None and not isinstance(value.get(name), str):
                raise RunFileError(f"cell.{name}", f"is {_shown(value.get(name))}; expected text")
        ocv = value.get("ocv_V")
        if ocv is not None and not _is_number(ocv):
            raise RunFileError("cell.ocv_V", f"is {_shown(ocv)}; expected a number or null")
    return value


def parse_json(key: str, raw: str | bytes, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """JSON within the size, depth, item and string-length bounds."""
    if len(raw) > max_bytes:
        raise RunFileError(key, f"JSON of {len(raw)} bytes; at most {max_bytes}")
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except RecursionError:
        raise RunFileError(key, f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise RunFileError(key, f"is not valid JSON ({str(exc)[:80]})") from None
    _check_shape(key, value)
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise RunFileError(key, "JSON text with unpaired surrogate escapes (not valid Unicode)") from None
    return value


def _check_shape(key: str, value: Any) -> None:
    """Depth, item count and string lengths, without recursion."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    items = 0
    while stack:
        node, depth = stack.pop()
        items += 1
        if items > MAX_JSON_ITEMS:
            raise RunFileError(key, f"JSON with more than {MAX_JSON_ITEMS} items")
        if isinstance(node, str):
            if len(node) > MAX_STRING_CHARS:
                raise RunFileError(key, f"JSON string of {len(node)} characters; at most {MAX_STRING_CHARS}")
        elif isinstance(node, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise RunFileError(key, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)


def _require_finite(key: str, value: Any) -> None:
    stack: list[tuple[str, Any]] = [(key, value)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            raise RunFileError(where, f"is {node}; expected a finite number")
        if isinstance(node, dict):
            stack.extend((f"{where}.{k}", v) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(node))


def parse_end_record(raw: bytes) -> dict[str, Any] | None:
    """The /end record from its bytes. A record whose bytes are not JSON is
    taken as absent (only possible if its write was cut short); one that is
    JSON but too deep or of the wrong shape is refused."""
    if len(raw) > MAX_JSON_BYTES:
        raise RunFileError("/end", f"{len(raw)} bytes; at most {MAX_JSON_BYTES}")
    try:
        end = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise RunFileError("/end", f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:  # includes UnicodeDecodeError
        return None
    _check_shape("/end", end)
    return check_end_record(end)


def check_end_record(end: Any) -> dict[str, Any] | None:
    """The /end record's fields: status one of the final statuses, text
    fields text, results an object, full_steps a map of row -> step JSON."""
    if end is None:
        return None
    if not isinstance(end, Mapping):
        raise RunFileError("/end", f"is a JSON {type(end).__name__}; expected an object")
    status = end.get("status", "interrupted")
    if status not in L.FINAL_STATUSES:
        raise RunFileError("/end.status", f"is {_shown(status)}; allowed: {', '.join(L.FINAL_STATUSES)}")
    for key in ("error", "ended_at"):
        if not isinstance(end.get(key, ""), str | None):
            raise RunFileError(f"/end.{key}", f"is {_shown(end.get(key))}; expected text")
    if not isinstance(end.get("results") or {}, Mapping):
        raise RunFileError("/end.results", f"is {_shown(end.get('results'))}; expected an object")
    full = end.get("full_steps") or {}
    if not isinstance(full, Mapping):
        raise RunFileError("/end.full_steps", f"is {_shown(full)}; expected an object")
    for k, v in full.items():
        if not (str(k).isdigit() and len(str(k)) < 10 and isinstance(v, str)):
            raise RunFileError("/end.full_steps", f"entry {_shown(k)}: expected a step row number and step JSON")
    return dict(end)


def _valid_text(value: str) -> str:
    """Text as valid Unicode: h5py hands undecodable bytes back as lone
    surrogates, which no terminal or JSON encoder accepts."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", errors="replace").decode("utf-8")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
