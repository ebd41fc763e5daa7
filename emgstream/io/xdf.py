"""XDF files, LabRecorder's format: read with ``pyxdf`` after a bounded check, written here.

Reading (:func:`read_xdf`) follows the XDF rules of the threat model in
``docs/ARCHITECTURE.md``: pyxdf trusts the file (it allocates what a chunk declares, parses
headers with unbounded nesting, recurses over them), so :func:`_check_xdf` first walks every
chunk of the open file with fixed bounds, and pyxdf then reads the same open file, never a
path named again. The check:

- each chunk's length (a variable-length integer of 1, 4 or 8 bytes) is at most
  :data:`_MAX_CHUNK_BYTES` and the bytes left in the file;
- headers and footers (XML) are at most :data:`_MAX_XML_BYTES`, parsed without any document
  type declaration (so no entities, internal or external) and nested at most
  :data:`_MAX_XML_DEPTH` deep; a stream's channel count, rate and format are checked before
  its samples, and the signal stream's labels and units go through :class:`StreamInfo`;
- a samples chunk's count x (timestamp flag + channels x value size) must fit its length
  before anything is allocated, and walking its samples must end exactly at its end; string
  values are at most :data:`_MAX_STRING_BYTES` and :data:`_MAX_STRING_VALUES` in a file;
- timestamps and clock offsets are finite.

Layout of a file we write (:func:`write_xdf`): the EMG stream (float32, its rate, one
``desc/channels/channel`` with ``label``, ``unit`` and ``type`` per channel, as
``firmware_bridge.lsl_outlet`` describes an outlet, and ``desc/recording`` with the
recording's user, session, stage and side), then, when the recording has markers or labels,
a marker stream (one string channel, irregular rate, type ``Markers``): its markers and
each change of label as the class name (``unlabelled`` for -1). Every sample carries its
own timestamp. Pose is not written.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import struct
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

import numpy as np

from .. import __version__
from .._checks import MAX_CHANNELS, MAX_SAMPLE_RATE, shown
from ..sources._base import DroppedSpan, SourceError, StreamInfo
from .recording import Recording, RecordingError

__all__ = ["read_xdf", "write_xdf", "label_markers", "UNLABELLED"]

logger = logging.getLogger(__name__)

_MAGIC = b"XDF:"
_FILE_HEADER, _STREAM_HEADER, _SAMPLES, _CLOCK_OFFSET, _BOUNDARY, _STREAM_FOOTER = range(1, 7)
#: LabRecorder writes a chunk every few hundred milliseconds: even 4096 channels of doubles
#: for a second at 10 kHz stay under this.
_MAX_CHUNK_BYTES = 512 << 20
_MAX_XML_BYTES = 4 << 20  # the description of 4096 labelled channels fits
_MAX_XML_DEPTH = 64
_MAX_STREAMS = 256
_MAX_STRING_BYTES = 64 << 10
#: Each string value costs pyxdf a Python object (~60 bytes) for as little as 2 bytes of file.
_MAX_STRING_VALUES = 1 << 20
_VALUE_BYTES = {"int8": 1, "int16": 2, "int32": 4, "int64": 8, "float32": 4, "double64": 8}
_SIGNAL_FORMATS = ("int8", "int16", "int32", "float32", "double64")  # as the LSL inlet takes
_GAP_TOLERANCE_S = 0.1  # as the LSL inlet: longer gaps between samples are dropped spans
#: The text of a label-change marker for samples of no class (label -1).
UNLABELLED = "unlabelled"


@dataclass
class _Stream:
    """What the check learned of one stream from its header."""

    name: str = ""
    type: str = ""
    source_id: str = ""
    channel_count: int = 0
    nominal_srate: float = 0.0
    channel_format: str = ""
    labels: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    manufacturer: str = ""
    recording: dict[str, str] = field(default_factory=dict)
    samples: int = 0


# ------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------
def read_xdf(path: str | os.PathLike, *, stream: str | None = None) -> Recording:
    """Read an XDF file's signal stream and its marker streams as a :class:`Recording`.

    Parameters
    ----------
    path : path-like
        An XDF file (LabRecorder's ``.xdf``; compressed ``.xdfz`` is not read).
    stream : str, optional
        Name of the signal stream; needed only when the file holds more than one
        regularly sampled numeric stream.

    Every string stream's samples become ``markers`` (several channels joined by tabs),
    sorted by time. Times are the recording host's LSL clock (pyxdf applies each stream's
    clock offsets and smooths the signal's stamps); gaps of more than 0.1 s in the signal
    become ``dropped`` spans. ``meta`` holds ``device`` (the stream as a StreamInfo dict),
    ``user``, ``session``, ``stage``, ``side`` (from ``desc/recording``, empty otherwise),
    ``xdf_stream`` and ``total_samples``.

    Raises
    ------
    RecordingError
        The file is not XDF, breaks a bound, or has no (or no unique) signal stream.
    """
    import pyxdf  # only when an XDF file is read

    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise RecordingError(f"XDF file {where!r} does not exist")
    if path.suffix.lower() != ".xdf":
        raise RecordingError(f"{where}: expected an uncompressed .xdf file, got "
                             f"{path.suffix!r}")
    with open(path, "rb") as f:
        streams = _check_xdf(f, os.fstat(f.fileno()).st_size, where)
        signal_id = _signal_stream(streams, stream, where)
        markers_ids = [i for i, s in streams.items() if s.channel_format == "string"]
        header = streams[signal_id]
        info = _stream_info(header, where)
        f.seek(0)
        # pyxdf reads the file object it is given: the bytes just checked, not a path again
        loaded, _ = pyxdf.load_xdf(f, select_streams=[signal_id, *markers_ids])
    by_id = {int(s["info"]["stream_id"]): s for s in loaded}
    signal = by_id[signal_id]
    emg = np.asarray(signal["time_series"], dtype=np.float32).reshape(-1, info.n_channels)
    stamps = np.asarray(signal["time_stamps"], dtype=np.float64)
    if len(stamps) == 0:
        raise RecordingError(f"{where}: stream {shown(header.name)} holds no samples")
    if not (np.isfinite(stamps).all() and np.isfinite(emg).all()):
        raise RecordingError(f"{where}: stream {shown(header.name)} holds non-finite values "
                             f"or timestamps")
    markers = []
    for i in markers_ids:
        s = by_id[i]
        markers += [(float(t), "\t".join(values))
                    for t, values in zip(s["time_stamps"], s["time_series"])]
    markers.sort(key=lambda m: m[0])
    if not all(math.isfinite(t) for t, _ in markers):
        raise RecordingError(f"{where}: a marker stream's clock offsets give non-finite times")
    meta = {key: header.recording.get(key, "") for key in ("user", "session", "stage", "side")}
    device = dataclasses.asdict(info)
    device["channel_names"] = list(info.channel_names)  # as the JSON of our HDF5 files
    meta.update(device=device, filters=None, format_version=None,
                complete=True, total_samples=len(stamps), start_index=0,
                xdf_stream=header.name, sample_rate=info.sample_rate,
                num_channels=info.n_channels)
    logger.info("read XDF %s: stream %r, %d samples, %d ch @ %g Hz, %d markers", where,
                header.name, len(stamps), info.n_channels, info.sample_rate, len(markers))
    return Recording(emg=emg, time=stamps, sample_rate=info.sample_rate, markers=markers,
                     dropped=_gaps(stamps, info.sample_rate), meta=meta)


def _signal_stream(streams: dict[int, _Stream], name: str | None, where: str) -> int:
    signals = {i: s for i, s in streams.items()
               if s.channel_format != "string" and s.nominal_srate > 0}
    if name is not None:
        named = [i for i, s in streams.items() if s.name == name]
        if not named:
            raise RecordingError(f"{where}: no stream named {shown(name)}; it holds "
                                 f"{_names(streams)}")
        if named[0] not in signals:
            s = streams[named[0]]
            raise RecordingError(f"{where}: stream {shown(name)} is {s.channel_format} at "
                                 f"{s.nominal_srate:g} Hz; expected numbers at a regular rate")
        return named[0]
    if len(signals) != 1:
        raise RecordingError(f"{where}: expected one regularly sampled numeric stream, found "
                             f"{len(signals)} ({_names(signals)}); choose one with "
                             f"stream=NAME")
    return next(iter(signals))


def _names(streams: dict[int, _Stream]) -> str:
    return ", ".join(shown(s.name) for s in streams.values()) or "none"


def _stream_info(header: _Stream, where: str) -> StreamInfo:
    if header.channel_format not in _SIGNAL_FORMATS:
        raise RecordingError(f"{where}: stream {shown(header.name)} has channel format "
                             f"{shown(header.channel_format)}; expected one of "
                             f"{', '.join(_SIGNAL_FORMATS)}")
    n = header.channel_count
    names = tuple(header.labels) if len(header.labels) == n and all(header.labels) else ()
    units = set(header.units)
    unit = header.units[0] if len(units) == 1 and header.units[0] else "microvolts"
    try:
        return StreamInfo.described_by(
            f"{where}: stream {shown(header.name)}", name=header.name, n_channels=n,
            sample_rate=header.nominal_srate, channel_names=names, units=unit,
            device_id=header.source_id, kind="xdf", manufacturer=header.manufacturer)
    except SourceError as err:
        raise RecordingError(str(err)) from None


def _gaps(stamps: np.ndarray, rate: float) -> list[DroppedSpan]:
    missing = np.rint(np.diff(stamps) * rate).astype(np.int64) - 1
    return [DroppedSpan(float(stamps[k]) + 1.0 / rate, int(missing[k]))
            for k in np.flatnonzero(missing > _GAP_TOLERANCE_S * rate)]


# ------------------------------------------------------------------------------------------
# The bounded check
# ------------------------------------------------------------------------------------------
def _check_xdf(f, size: int, where: str) -> dict[int, _Stream]:
    """Walk every chunk of ``f`` (``size`` bytes) within the bounds; the streams found."""
    if f.read(4) != _MAGIC:
        raise RecordingError(f"{where}: not an XDF file (it does not start with 'XDF:')")
    streams: dict[int, _Stream] = {}
    strings = 0
    pos = 4
    while pos < size:
        length, used = _varlen(f, size - pos, where, pos)
        start = pos + used
        if not 2 <= length <= min(_MAX_CHUNK_BYTES, size - start):
            raise RecordingError(f"{where}: the chunk at byte {pos} declares {length} bytes; "
                                 f"expected 2 to {min(_MAX_CHUNK_BYTES, size - start)} (the "
                                 f"bound, or the bytes left)")
        body = f.read(length)
        tag = struct.unpack_from("<H", body)[0]
        pos = start + length
        if tag == _FILE_HEADER:
            _parse_xml(body[2:], where, "the file header")
            continue
        if tag not in (_STREAM_HEADER, _SAMPLES, _CLOCK_OFFSET, _STREAM_FOOTER):
            continue  # boundary chunks and tags of later versions: skipped, as pyxdf does
        if length < 6:
            raise RecordingError(f"{where}: chunk at byte {start} (tag {tag}) is {length} "
                                 f"bytes, too short for a stream id")
        stream_id = struct.unpack_from("<I", body, 2)[0]
        content = memoryview(body)[6:]
        if tag == _STREAM_HEADER:
            if stream_id in streams or len(streams) >= _MAX_STREAMS:
                raise RecordingError(f"{where}: stream header {stream_id} repeats, or more "
                                     f"than {_MAX_STREAMS} streams")
            streams[stream_id] = _stream_header(bytes(content), where)
            continue
        stream = streams.get(stream_id)
        if stream is None:
            raise RecordingError(f"{where}: chunk at byte {start} (tag {tag}) belongs to "
                                 f"stream {stream_id}, which has no header before it")
        if tag == _SAMPLES:
            strings += _check_samples(content, stream, where, start)
            if strings > _MAX_STRING_VALUES:
                raise RecordingError(f"{where}: more than {_MAX_STRING_VALUES} string values")
        elif tag == _CLOCK_OFFSET:
            if len(content) != 16 or not all(map(math.isfinite,
                                                 struct.unpack("<dd", content))):
                raise RecordingError(f"{where}: clock offset chunk at byte {start} must hold "
                                     f"two finite doubles")
        else:
            _check_footer(bytes(content), where, stream_id)
    return streams


def _varlen(f, left: int, where: str, pos: int) -> tuple[int, int]:
    """A variable-length integer: (value, bytes it took)."""
    head = f.read(1)
    width = head[0] if head else 0
    if width not in (1, 4, 8) or width + 1 > left:
        raise RecordingError(f"{where}: bad chunk length at byte {pos}: expected a "
                             f"variable-length integer of 1, 4 or 8 bytes, got {head!r}")
    return int.from_bytes(f.read(width), "little"), width + 1


def _check_samples(content: memoryview, stream: _Stream, where: str, start: int) -> int:
    """Walk a samples chunk; the number of string values in it."""
    n_bytes = len(content)
    width = content[0] if n_bytes else 0
    if width not in (1, 4, 8) or width + 1 > n_bytes:
        raise RecordingError(f"{where}: samples chunk at byte {start} has no valid sample "
                             f"count")
    count = int.from_bytes(content[1:1 + width], "little")
    i = 1 + width
    channels = stream.channel_count
    value = _VALUE_BYTES.get(stream.channel_format)
    # the least one sample can take: its timestamp flag and, per channel, the value (or a
    # string's length of at least two bytes)
    least = 1 + channels * (value or 2)
    if count * least > n_bytes - i:
        raise RecordingError(f"{where}: samples chunk at byte {start} declares {count} "
                             f"samples of {channels} channels; its {n_bytes} bytes hold at "
                             f"most {(n_bytes - i) // least}")
    for _ in range(count):
        if i >= n_bytes:
            break  # the samples claimed overrun the chunk: said below
        flag = content[i]
        i += 1
        if flag == 8:
            if i + 8 > n_bytes or not math.isfinite(struct.unpack_from("<d", content, i)[0]):
                raise RecordingError(f"{where}: samples chunk at byte {start} has a "
                                     f"non-finite or cut timestamp")
            i += 8
        elif flag != 0:
            raise RecordingError(f"{where}: samples chunk at byte {start}: timestamp flag "
                                 f"{flag}, expected 0 or 8")
        if value is not None:
            i += channels * value
        else:
            for _ in range(channels):
                w = content[i] if i < n_bytes else 0
                if w not in (1, 4, 8) or i + 1 + w > n_bytes:
                    raise RecordingError(f"{where}: samples chunk at byte {start} has a bad "
                                         f"string length")
                length = int.from_bytes(content[i + 1:i + 1 + w], "little")
                i += 1 + w + length
                if length > _MAX_STRING_BYTES:
                    raise RecordingError(f"{where}: a string value of {length} bytes in the "
                                         f"chunk at byte {start}; at most {_MAX_STRING_BYTES}")
    if i != n_bytes:
        raise RecordingError(f"{where}: samples chunk at byte {start} is {n_bytes} bytes but "
                             f"its {count} samples take {i}")
    stream.samples += count
    return count * channels if value is None else 0


class _XmlWalk:
    """Expat callbacks: refuse any document type declaration, bound the nesting, and keep the
    text of each element path (``info/name``, ``info/desc/channels/channel/label``...)."""

    def __init__(self, where: str, what: str) -> None:
        self.where, self.what = where, what
        self.path: list[str] = []
        self.texts: list[tuple[str, str]] = []
        self._text: list[str] = []

    def doctype(self, *_) -> None:
        raise RecordingError(f"{self.where}: {self.what} declares a document type; XDF "
                             f"headers have none (entities are refused)")

    def start(self, tag, _attrs) -> None:
        self.path.append(tag)
        self._text = []
        if len(self.path) > _MAX_XML_DEPTH:
            raise RecordingError(f"{self.where}: {self.what} nests deeper than "
                                 f"{_MAX_XML_DEPTH} elements")

    def data(self, text) -> None:
        self._text.append(text)

    def end(self, _tag) -> None:
        self.texts.append(("/".join(self.path), "".join(self._text).strip()))
        self._text = []
        self.path.pop()


def _parse_xml(raw: bytes, where: str, what: str) -> _XmlWalk:
    if len(raw) > _MAX_XML_BYTES:
        raise RecordingError(f"{where}: {what} is {len(raw)} bytes, at most {_MAX_XML_BYTES}")
    walk = _XmlWalk(where, what)
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = walk.doctype
    parser.EntityDeclHandler = walk.doctype
    parser.StartElementHandler = walk.start
    parser.EndElementHandler = walk.end
    parser.CharacterDataHandler = walk.data
    try:
        parser.Parse(raw, True)
    except expat.ExpatError as err:
        raise RecordingError(f"{where}: {what} is not well-formed XML ({err})") from None
    return walk


#: what pyxdf reads from every stream header without asking whether it is there
_REQUIRED = ("info/name", "info/channel_count", "info/nominal_srate", "info/channel_format")


def _check_footer(raw: bytes, where: str, stream_id: int) -> None:
    walk = _parse_xml(raw, where, f"the footer of stream {stream_id}")
    for path, text in walk.texts:
        if path == "info/sample_count" and text and not text.isdigit():
            raise RecordingError(f"{where}: the footer of stream {stream_id} gives "
                                 f"sample_count {shown(text)}; expected a whole number")


def _stream_header(raw: bytes, where: str) -> _Stream:
    walk = _parse_xml(raw, where, "a stream header")
    given = {path for path, text in walk.texts if text}
    missing = [path for path in _REQUIRED if path not in given]
    if missing:
        raise RecordingError(f"{where}: a stream header lacks {', '.join(missing)}; expected "
                             f"{', '.join(_REQUIRED)}")
    s = _Stream()
    for path, text in walk.texts:
        if path == "info/name":
            s.name = text
        elif path == "info/type":
            s.type = text
        elif path == "info/source_id":
            s.source_id = text
        elif path == "info/channel_count":
            s.channel_count = _number(int, text, path, where)
        elif path == "info/nominal_srate":
            s.nominal_srate = _number(float, text, path, where)
        elif path == "info/channel_format":
            s.channel_format = text
        elif path == "info/desc/channels/channel/label":
            s.labels.append(text)
        elif path == "info/desc/channels/channel/unit":
            s.units.append(text)
        elif path in ("info/desc/manufacturer", "info/desc/acquisition/manufacturer"):
            s.manufacturer = text
        elif path.startswith("info/desc/recording/") and path.count("/") == 3:
            s.recording[path.rsplit("/", 1)[1]] = text
    what = f"stream {shown(s.name)}"
    if not 0 < s.channel_count <= MAX_CHANNELS:
        raise RecordingError(f"{where}: {what} declares {s.channel_count} channels; expected 1 "
                             f"to {MAX_CHANNELS}")
    if not (math.isfinite(s.nominal_srate) and 0 <= s.nominal_srate <= MAX_SAMPLE_RATE):
        raise RecordingError(f"{where}: {what} declares a rate of {s.nominal_srate!r} Hz; "
                             f"expected 0 (irregular) to {MAX_SAMPLE_RATE:g}")
    if s.channel_format != "string" and s.channel_format not in _VALUE_BYTES:
        raise RecordingError(f"{where}: {what} has channel format {shown(s.channel_format)}; "
                             f"expected string or one of {', '.join(_VALUE_BYTES)}")
    return s


def _number(kind, text: str, path: str, where: str):
    try:
        return kind(text)
    except ValueError:
        raise RecordingError(f"{where}: {path} must be a number, got {shown(text)}") from None


# ------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------
_CHUNK_SAMPLES = 4096


def label_markers(labels: np.ndarray, class_names: list[str]) -> list[tuple[int, str]]:
    """``(sample index, text)`` at each change of label: the class name, or
    :data:`UNLABELLED` where the labels turn -1 (nothing at sample 0 if it is -1)."""
    if labels is None or len(labels) == 0:
        return []
    starts = np.flatnonzero(np.diff(labels) != 0) + 1
    if labels[0] != -1:
        starts = np.r_[0, starts]
    return [(int(i), class_names[labels[i]] if labels[i] >= 0 else UNLABELLED)
            for i in starts]


def write_xdf(path: str | os.PathLike, recording: Recording, *,
              overwrite: bool = False) -> Path:
    """Write ``recording`` as an XDF file (see the module docstring for the layout).

    The EMG stream is named after the recording's device (``meta["device"]["name"]``, else
    the file's stem). Refuses to replace an existing file unless ``overwrite``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    rec = recording
    if rec.n_samples == 0:
        raise RecordingError(f"{path}: the recording holds no samples; nothing to write")
    device = rec.meta.get("device") or {}
    info = StreamInfo(name=str(device.get("name") or path.stem), n_channels=rec.n_channels,
                      sample_rate=rec.sample_rate,
                      channel_names=tuple(device.get("channel_names") or ()),
                      units=str(device.get("units") or "microvolts"),
                      device_id=str(device.get("device_id") or ""),
                      manufacturer=str(device.get("manufacturer") or ""))
    markers = [(float(rec.time[i]), text) for i, text in
               label_markers(rec.labels, rec.class_names)] + list(rec.markers)
    markers.sort(key=lambda m: m[0])
    with open(path, "wb") as out:
        _write(out, rec, info, markers)
    logger.info("wrote XDF %s: %d samples, %d markers", path, rec.n_samples, len(markers))
    return path


def _write(buffer, rec: Recording, info: StreamInfo, markers: list[tuple[float, str]]) -> None:
    buffer.write(_MAGIC)
    header = ET.Element("info")
    ET.SubElement(header, "version").text = "1.0"
    ET.SubElement(header, "datetime").text = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    _chunk(buffer, _FILE_HEADER, ET.tostring(header, encoding="utf-8"))
    _chunk(buffer, _STREAM_HEADER, _emg_header(info, rec.meta), 1)
    for a in range(0, rec.n_samples, _CHUNK_SAMPLES):
        _chunk(buffer, _SAMPLES, _numeric_samples(rec.emg[a:a + _CHUNK_SAMPLES],
                                                  rec.time[a:a + _CHUNK_SAMPLES]), 1)
    _clock_offsets(buffer, rec.time[0], rec.time[-1], 1)
    _chunk(buffer, _STREAM_FOOTER, _footer(rec.time[0], rec.time[-1], rec.n_samples), 1)
    if markers:
        _chunk(buffer, _STREAM_HEADER, _marker_header(info.name), 2)
        _chunk(buffer, _SAMPLES, _string_samples(markers), 2)
        _clock_offsets(buffer, markers[0][0], markers[-1][0], 2)
        _chunk(buffer, _STREAM_FOOTER, _footer(markers[0][0], markers[-1][0], len(markers)), 2)


def _clock_offsets(out, first: float, last: float, stream_id: int) -> None:
    """Offsets of zero at the first and last stamp: every stream of the file is on one clock
    already, and readers (pyxdf) expect a stream's clock to be measured."""
    for t in (first, last):
        _chunk(out, _CLOCK_OFFSET, struct.pack("<dd", t, 0.0), stream_id)


def _varlen_bytes(n: int) -> bytes:
    if n < 1 << 8:
        return bytes((1, n))
    if n < 1 << 32:
        return b"\x04" + struct.pack("<I", n)
    return b"\x08" + struct.pack("<Q", n)


def _chunk(out, tag: int, content: bytes, stream_id: int | None = None) -> None:
    head = struct.pack("<H", tag) + (b"" if stream_id is None else struct.pack("<I", stream_id))
    out.write(_varlen_bytes(len(head) + len(content)))
    out.write(head)
    out.write(content)


def _stream_xml(name: str, kind: str, channels: int, rate: float, fmt: str,
                source_id: str) -> tuple[ET.Element, ET.Element]:
    info = ET.Element("info")
    for key, value in (("name", name), ("type", kind), ("channel_count", str(channels)),
                       ("nominal_srate", repr(float(rate))), ("channel_format", fmt),
                       ("source_id", source_id), ("version", "1.1")):
        ET.SubElement(info, key).text = value
    return info, ET.SubElement(info, "desc")


def _emg_header(info: StreamInfo, meta: dict) -> bytes:
    root, desc = _stream_xml(info.name, "EMG", info.n_channels, info.sample_rate, "float32",
                             info.device_id)
    channels = ET.SubElement(desc, "channels")
    for label in info.channel_names:
        channel = ET.SubElement(channels, "channel")
        ET.SubElement(channel, "label").text = label
        ET.SubElement(channel, "unit").text = info.units
        ET.SubElement(channel, "type").text = "EMG"
    acquisition = ET.SubElement(desc, "acquisition")
    ET.SubElement(acquisition, "manufacturer").text = info.manufacturer
    recording = ET.SubElement(desc, "recording")
    for key in ("user", "session", "stage", "side"):
        ET.SubElement(recording, key).text = str(meta.get(key, ""))
    ET.SubElement(desc, "software").text = f"emgstream {__version__}"
    return ET.tostring(root, encoding="utf-8")


def _marker_header(signal_name: str) -> bytes:
    root, desc = _stream_xml(f"{signal_name}-markers", "Markers", 1, 0.0, "string",
                             f"emgstream-{signal_name}-markers")
    ET.SubElement(desc, "software").text = f"emgstream {__version__}"
    return ET.tostring(root, encoding="utf-8")


def _footer(first: float, last: float, count: int) -> bytes:
    root = ET.Element("info")
    for key, value in (("first_timestamp", repr(float(first))),
                       ("last_timestamp", repr(float(last))), ("sample_count", str(count))):
        ET.SubElement(root, key).text = value
    return ET.tostring(root, encoding="utf-8")


def _numeric_samples(emg: np.ndarray, stamps: np.ndarray) -> bytes:
    rows = np.empty(len(stamps), np.dtype([("flag", "u1"), ("time", "<f8"),
                                            ("emg", "<f4", (emg.shape[1],))]))
    rows["flag"], rows["time"], rows["emg"] = 8, stamps, emg
    return _varlen_bytes(len(stamps)) + rows.tobytes()


def _string_samples(markers: list[tuple[float, str]]) -> bytes:
    parts = [_varlen_bytes(len(markers))]
    for t, text in markers:
        encoded = text.encode("utf-8")
        parts += [b"\x08", struct.pack("<d", t), _varlen_bytes(len(encoded)), encoded]
    return b"".join(parts)
