"""Cover a box with runs of Z2 cell keys, so a range query is a few B-tree range scans.

The storage key is a level-20 Morton code (cells.py). Dropping its low 2s bits gives the key of
the enclosing cell `s` levels coarser, so a coarse cell is one contiguous run of level-20 keys,
and neighbouring coarse cells along the Z curve merge into longer runs. We pick the finest
coarse level at which the box spans at most `max_cells` cells: few runs, little over-coverage.
"""

import numpy as np
import numpy.typing as npt

from cityos_spatiotemporal.cells import LEVEL, _spread, grid_xy

_SCALE = 1 << LEVEL


def _compact(v: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Inverse of `_spread`: keep every other bit."""
    v = v & np.uint64(0x5555555555555555)
    v = (v | (v >> np.uint64(1))) & np.uint64(0x3333333333333333)
    v = (v | (v >> np.uint64(2))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    v = (v | (v >> np.uint64(4))) & np.uint64(0x00FF00FF00FF00FF)
    v = (v | (v >> np.uint64(8))) & np.uint64(0x0000FFFF0000FFFF)
    v = (v | (v >> np.uint64(16))) & np.uint64(0x00000000FFFFFFFF)
    return v


def cell_centres(keys: npt.ArrayLike) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """lon, lat of the centres of level-20 cells."""
    k = np.asarray(keys, dtype=np.int64).astype(np.uint64)
    x = _compact(k).astype(np.float64)
    y = _compact(k >> np.uint64(1)).astype(np.float64)
    return (x + 0.5) / _SCALE * 360.0 - 180.0, (y + 0.5) / _SCALE * 180.0 - 90.0


def cover(west: float, south: float, east: float, north: float,
          max_cells: int = 64) -> list[tuple[int, int]]:
    """Inclusive (low, high) level-20 key ranges whose cells cover the box."""
    (x0, x1), (y0, y1) = (v.tolist() for v in grid_xy([west, east], [south, north]))
    shift = 0
    while ((x1 >> shift) - (x0 >> shift) + 1) * ((y1 >> shift) - (y0 >> shift) + 1) > max_cells:
        shift += 1
    xs = np.arange(x0 >> shift, (x1 >> shift) + 1, dtype=np.uint64)
    ys = np.arange(y0 >> shift, (y1 >> shift) + 1, dtype=np.uint64)
    gx, gy = np.meshgrid(xs, ys)
    keys = np.sort((_spread(gx.ravel()) | (_spread(gy.ravel()) << np.uint64(1))).astype(np.int64))
    breaks = np.flatnonzero(np.diff(keys) != 1) + 1
    firsts = keys[np.concatenate(([0], breaks))]
    lasts = keys[np.concatenate((breaks - 1, [len(keys) - 1]))]
    bits = 2 * shift
    return [(int(a) << bits, ((int(b) + 1) << bits) - 1) for a, b in zip(firsts, lasts, strict=True)]
