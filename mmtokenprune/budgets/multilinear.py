"""Multilinear interpolation on a grid, for Python numbers and tensors alike.

The latency table reads every entry through :func:`interp`, so the solver
(floats) and the differentiable budget loss (tensors) read the same numbers.
"""
import bisect
import itertools
from typing import Sequence

__all__ = ['interp']


def interp(grids: Sequence[Sequence[float]],
           values,
           point: Sequence,
           names: Sequence[str] = (),
           extrapolate: bool = False,
           where: str = 'latency table'):
    """Multilinear interpolation of ``values`` (nested lists) on ``grids``.

    Works on Python numbers and on tensors alike: the cell is chosen from
    ``float(x)``, the weights are computed from ``x`` itself, so a tensor
    coordinate gives a differentiable tensor result.

    Args:
        grids (Sequence[Sequence[float]]): ascending grid of each axis.
        values: nested lists, ``values[i][j]...`` at ``grids[0][i]``,
            ``grids[1][j]``...
        point (Sequence): one coordinate per axis (float or tensor).
        names (Sequence[str]): axis names for errors.
        extrapolate (bool): continue the edge cells linearly beyond the
            grid instead of raising. Defaults to False.
        where (str): what is read, for errors.

    Raises:
        ValueError: a coordinate outside its grid (without
            ``extrapolate``), naming the axis and the grid's range.
    """
    names = list(names) or [f'axis {i}' for i in range(len(grids))]
    cells = []
    for g, x, name in zip(grids, point, names):
        xf = float(x.detach() if hasattr(x, 'detach') else x)
        if len(g) == 1:
            cells.append((0, None))
            continue
        tol = 1e-6 * max(1., abs(g[-1]))
        if not extrapolate and not g[0] - tol <= xf <= g[-1] + tol:
            raise ValueError(f'{where}: {name}={xf:g} is outside the '
                             f'measured grid [{g[0]:g}, {g[-1]:g}].')
        i = min(max(bisect.bisect_right(g, xf) - 1, 0), len(g) - 2)
        cells.append((i, (x - g[i]) / (g[i + 1] - g[i])))
    total = 0.
    for corner in itertools.product((0, 1), repeat=len(cells)):
        weight, v = 1., values
        for (i, t), c in zip(cells, corner):
            if t is None:
                if c:
                    break
                v = v[i]
                continue
            weight = weight * (t if c else 1 - t)
            v = v[i + c]
        else:
            total = total + weight * v
    return total
