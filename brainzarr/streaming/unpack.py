"""Packed chunks to float32 in one compiled step: the CF decode behind every packed pass.

A pass over a packed store (``uint16`` with ``scale_factor``/``add_offset``) spends most of its
time turning decoded chunks into float32 rows of the output block. numpy does that in two steps
(cast, then scale into the strided output, ~2 GB/s a thread here); :func:`unpack_chunks`
does cast, scale and offset while it copies each chunk's rows into place, in a numba kernel
that releases the GIL (~2x the whole pass; ``scripts/bench_store.py`` measures it). Without
numba (``pip install brainzarr[fast]``, which ``[models]`` and ``[all]`` include) the same
arithmetic runs in numpy, bit for bit the same result (tested).
"""

from __future__ import annotations

import numpy as np

from ..exceptions import MissingDependencyError

__all__ = ["unpack_chunks", "unpack_into", "compiled"]

#: block rows unpacked across all of a task's chunks before moving down: each output row
#: segment then stays a task's width long, which keeps the writes near memcpy speed
STRIP = 64

try:  # numba is optional: it comes with [fast], [models] and [all]
    import numba
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

_compiled = None


def compiled() -> bool:
    """Whether packed chunks are unpacked by the compiled kernel (numba is installed)."""
    return numba is not None


def _kernel(src, out, c0s, scale, offset, r0, r1, dest, strip):  # pragma: no cover - runs compiled
    k, _, cols = src.shape
    width = out.shape[1]
    for lo in range(r0, r1, strip):
        hi = min(lo + strip, r1)
        for s in range(k):
            c0 = c0s[s]
            n = min(cols, width - c0)
            for i in range(lo, hi):
                d = dest[i - r0]
                if d < 0:
                    continue
                target = out[d, c0 : c0 + n]
                values = src[s, i, :n]
                for q in range(n):
                    # two roundings (multiply, then add), as numpy does: no fused multiply-add
                    target[q] = np.float32(values[q]) * scale + offset


def _jit(**options):
    return numba.njit(nogil=True, boundscheck=False, **options)(_kernel)


def _compiled_kernel():
    global _compiled
    if _compiled is None:
        try:  # cached on disk beside the module or in the user's cache folder
            _compiled = _jit(cache=True)
        except RuntimeError:  # neither is writable: compile once per process
            _compiled = _jit()
    return _compiled


def unpack_into(packed: np.ndarray, out: np.ndarray, scale, offset) -> np.ndarray:
    """CF decoding of ``packed`` into the float32 ``out`` (same shape, any strides): a float32
    multiply by ``scale``, then a float32 add of ``offset`` (what xarray and the kernel give)."""
    np.multiply(packed, np.float32(scale), out=out, casting="unsafe")
    if np.float32(offset):
        out += np.float32(offset)
    return out


def _numpy(src, out, c0s, scale, offset, r0, r1, dest) -> None:
    cols = src.shape[2]
    width = out.shape[1]
    for lo in range(r0, r1, STRIP):
        hi = min(lo + STRIP, r1)
        rows = dest[lo - r0 : hi - r0]
        pick = rows >= 0
        if not pick.any():
            continue
        contiguous = bool(pick.all()) and rows[-1] - rows[0] == len(rows) - 1
        target_rows = slice(int(rows[0]), int(rows[-1]) + 1) if contiguous else rows[pick]
        for s in range(src.shape[0]):
            c0 = int(c0s[s])
            n = min(cols, width - c0)
            part = src[s, lo:hi, :n] if contiguous else src[s, lo:hi, :n][pick]
            if contiguous:
                unpack_into(part, out[target_rows, c0 : c0 + n], scale, offset)
            else:
                values = np.multiply(part, scale, dtype=np.float32)
                if offset:
                    values += offset
                out[target_rows, c0 : c0 + n] = values


def unpack_chunks(src, out, c0s, scale, offset, r0, r1, dest, *, use_numba: bool | None = None) -> None:
    """Rows ``r0:r1`` of decoded packed chunks, unpacked to float32 into their places in ``out``.

    Parameters
    ----------
    src : ndarray, shape (k, rows, cols), integer
        ``k`` decoded chunks of one row of chunks.
    out : ndarray, shape (m, width), float32, C-contiguous
        The output block.
    c0s : ndarray of int64, shape (k,)
        The first output column of each chunk (a chunk past ``width`` is clipped).
    scale, offset : float
        CF ``scale_factor`` and ``add_offset``: ``value = packed * scale + offset`` in float32.
    r0, r1 : int
        The chunk rows to unpack.
    dest : ndarray of int64, shape (r1 - r0,)
        The output row of each chunk row, or -1 to skip it (rows not kept).
    use_numba : bool, optional
        Force the compiled kernel (True) or numpy (False); default: compiled when available.
    """
    scale, offset = np.float32(scale), np.float32(offset)
    dest = np.asarray(dest, dtype=np.int64)
    if use_numba is None:
        use_numba = compiled()
    elif use_numba and not compiled():
        raise MissingDependencyError("use_numba=True needs numba: pip install 'brainzarr[fast]'")
    if use_numba and out.flags.c_contiguous and src.flags.c_contiguous:
        _compiled_kernel()(src, out, np.asarray(c0s, dtype=np.int64), scale, offset, int(r0), int(r1), dest, STRIP)
    else:
        _numpy(src, out, c0s, scale, offset, int(r0), int(r1), dest)
