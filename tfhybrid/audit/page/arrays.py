"""The page's numbers: every array it draws, capped, encoded and packed into one blob.

The page draws on canvases from the numbers themselves (hovering shows them), so they
travel inside the HTML file: one zlib stream of little-endian arrays, base64-encoded,
which the page inflates with the browser's own ``DecompressionStream("deflate")``.

Two encodings, by what a number is for:

- ``f4`` (float32): the manual gradients and local derivatives, the numbers under audit,
  shown to their last float32 digit;
- ``h2`` (float16 of the array divided by its largest magnitude, which is stored beside
  it): a difference manual - tape, a forward activation, a weight. Three significant
  digits each, whatever its size, at half the bytes: enough to read, and a difference
  of 1e-9 next to values of 1e-3 keeps its own digits (it is scaled by its own largest
  magnitude, not the values').

Equal arrays are stored once (a layer's dL/d input is the next layer's dL/d output; a
flatten's output is its input reshaped), and zlib shrinks what is mostly zeros or one
value (a ReLU's mask, max pooling's routing, an average pool's 1/4 everywhere).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import zlib

import numpy as np

F4, H2 = "f4", "h2"
ZLIB_LEVEL = 6  # zlib's default: level 9 saves about 1 % more here, at twice the time


@dataclasses.dataclass(frozen=True)
class Caps:
    """How much of each tensor the page keeps: the first ``samples`` images of the batch,
    the first ``channels`` channels of a feature map (and filters of a convolution), and
    the first rows of a matrix up to ``matrix`` elements."""

    samples: int = 8
    channels: int = 32
    matrix: int = 65_536

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{field.name} must be an integer >= 1, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Cut:
    """What a cap left out of one array: its full shape and the kept one; ``axes`` names
    the axes cut ("samples", "channels", "filters", "rows")."""

    full: tuple[int, ...]
    kept: tuple[int, ...]
    axes: tuple[str, ...]

    @property
    def axes_cut(self) -> list[tuple[str, int, int]]:
        """(axis, kept, full) for each axis the caps cut."""
        return [
            (axis, k, f)
            for axis, f, k in zip(self.axes, self.full, self.kept, strict=True)
            if axis and k < f
        ]

    @property
    def text(self) -> str:
        """ "channels 1-32 of 64 shown" (empty when nothing was cut)."""
        parts = [
            f"{axis} 1-{k} of {f}"
            for axis, f, k in zip(self.axes, self.full, self.kept, strict=True)
            if axis and k < f
        ]
        return (", ".join(parts) + " shown") if parts else ""


def cap(values: np.ndarray, layout: str, caps: Caps) -> tuple[np.ndarray, Cut]:
    """``values`` cut to ``caps`` by its ``layout``: "maps" [N,H,W,C], "vector" [N,D],
    "filters" [kh,kw,Cin,Cout], "matrix" [R,K], "bars" (kept whole)."""
    values = np.asarray(values)
    names = {
        "maps": ("samples", "", "", "channels"),
        "vector": ("samples", ""),
        "filters": ("", "", "input channels", "filters"),
        "matrix": ("rows", ""),
    }.get(layout, ("",) * values.ndim)
    if len(names) != values.ndim:
        names = ("samples",) + ("",) * (values.ndim - 1)
    limits = {
        "samples": caps.samples,
        "channels": caps.channels,
        "filters": caps.channels,
        "input channels": caps.channels,
    }
    keep = [limits.get(name, size) for name, size in zip(names, values.shape, strict=True)]
    if layout == "matrix" and values.ndim == 2 and values.size > caps.matrix:
        keep[0] = max(1, caps.matrix // max(values.shape[1], 1))
    index = tuple(slice(0, k) for k in keep)
    kept = values[index]
    return kept, Cut(tuple(values.shape), tuple(kept.shape), names)


class ArrayStore:
    """Arrays in, ids out; :meth:`pack` gives the manifest and the blob for the page."""

    def __init__(self):
        self._chunks: list[bytes] = []
        self._offset = 0
        self._seen: dict[tuple, str] = {}
        self.manifest: dict[str, dict] = {}

    def add(self, values: np.ndarray, encoding: str = F4) -> str:
        """Store ``values`` (any real dtype) and return its id; an array of the same
        numbers stored before in the same encoding returns that one's id."""
        values = np.asarray(values, dtype=np.float64)
        scale = 1.0
        if encoding == H2:
            finite = np.abs(values[np.isfinite(values)])
            scale = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
            data = (values / scale).astype("<f2")
        elif encoding == F4:
            data = values.astype("<f4")
        else:
            raise ValueError(f"encoding must be {F4!r} or {H2!r}, got {encoding!r}")
        raw = data.tobytes()
        # Content alone: a flatten's output and its input, reshaped, are one array here
        # (each picture keeps its own shape).
        key = (encoding, scale, hashlib.blake2b(raw, digest_size=16).digest())
        if key in self._seen:
            return self._seen[key]
        pad = (-self._offset) % 4  # each array starts aligned for its typed-array view
        if pad:
            self._chunks.append(b"\0" * pad)
            self._offset += pad
        ident = f"a{len(self.manifest)}"
        self.manifest[ident] = {
            "o": self._offset,
            "n": int(values.size),
            "enc": encoding,
            "s": scale,
        }
        self._chunks.append(raw)
        self._offset += len(raw)
        self._seen[key] = ident
        return ident

    @property
    def raw_bytes(self) -> int:
        """The arrays' bytes before compression."""
        return self._offset

    def pack(self) -> str:
        """Every array, in order, zlib-compressed and base64-encoded (ASCII)."""
        packed = zlib.compress(b"".join(self._chunks), ZLIB_LEVEL)
        return base64.b64encode(packed).decode("ascii")
