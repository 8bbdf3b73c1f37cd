"""TensorBoard event files of scalars, written without TensorFlow (or any other dependency).

An event file is a sequence of TFRecords, each an `Event` protocol buffer. Only what scalars need
is encoded here, by hand:

  record = uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)
  Event  = 1: wall_time (double), 2: step (int64), 3: file_version (string), 5: summary (Summary)
  Summary = 1: value (repeated Value);  Value = 1: tag (string), 2: simple_value (float)

`tensorboard --logdir WORKDIR/tensorboard` shows the curves.
"""
import os
import socket
import struct
import time
from typing import Dict


def _crc32c_table():
  table = []
  for i in range(256):
    c = i
    for _ in range(8):
      c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # Castagnoli polynomial, reflected
    table.append(c)
  return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  c = 0xFFFFFFFF
  for b in data:
    c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
  return c ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
  c = crc32c(data)
  return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
  n &= (1 << 64) - 1  # int64 as protobuf encodes it (two's complement for negatives)
  out = bytearray()
  while True:
    b = n & 0x7F
    n >>= 7
    if n:
      out.append(b | 0x80)
    else:
      out.append(b)
      return bytes(out)


def _field_bytes(number: int, payload: bytes) -> bytes:
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _event(step: int, wall_time: float, scalars: Dict[str, float] = None, file_version: str = None) -> bytes:
  out = b"\x09" + struct.pack("<d", wall_time) + b"\x10" + _varint(int(step))
  if file_version is not None:
    out += _field_bytes(3, file_version.encode())
  if scalars:
    values = b"".join(_field_bytes(1, _field_bytes(1, tag.encode()) + b"\x15" + struct.pack("<f", float(v)))
                      for tag, v in scalars.items())
    out += _field_bytes(5, values)
  return out


class EventWriter:
  """Appends scalar events to one new `events.out.tfevents.*` file in `logdir`."""

  def __init__(self, logdir):
    os.makedirs(logdir, exist_ok=True)
    name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.{id(self)}"
    self.path = os.path.join(logdir, name)
    self._write(_event(0, time.time(), file_version="brain.Event:2"))

  def scalars(self, step: int, values: Dict[str, float]) -> None:
    """One event at `step` holding a scalar per tag."""
    self._write(_event(step, time.time(), scalars=values))

  def _write(self, data: bytes) -> None:
    header = struct.pack("<Q", len(data))
    with open(self.path, "ab") as f:
      f.write(header + struct.pack("<I", _masked_crc(header)) + data + struct.pack("<I", _masked_crc(data)))
