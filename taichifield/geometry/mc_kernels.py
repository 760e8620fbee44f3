"""Taichi kernels of :func:`~taichifield.geometry.marching_cubes.marching_cubes`.

Per-cell logic (:func:`cell_row`, :func:`write_centre`) is shared with the brick back end
(:mod:`.brick_mc`). The row passes, in order:

1. ``pack_signs``: bit b of ``bits[i, j, w]`` = ``vol[i, j, 32 w + b] > level`` (the only
   pass over every voxel).
2. ``scan``: per row (i, j), 32 points per step with bit operations: crossed edges its
   points own (their +x, +y, +z edges) and the k range where anything happens.
3. ``cases``: at non-empty cells only (set bits), the table row of each cell and the
   row's triangle count.
4. ``emit``: at set bits only, vertices (linear interpolation on the edge) and
   triangles; a vertex id is its row's first id plus the crossed edges its row owns
   below it (popcounts).

Note:
    Taichi's Vulkan backend uploads only arrays a kernel reads; arrays it only writes
    come back with stale device memory wherever the kernel did not write. Every array
    here is either written in full or read back only where it was written.
"""

# no `from __future__ import annotations`: Taichi reads kernel annotations at runtime

import taichi as ti

from . import mc_tables

__all__ = ["MIN_WEIGHT", "edge_weight", "cell_row", "cell_row_of_mask", "write_centre", "pack_signs", "scan", "cases",
           "emit"]

#: Smallest distance, in cells, between an edge vertex and either end of its edge.
#: A corner exactly at the level counts as below it (the sign rule is ``value > level``),
#: so every edge from it to a corner above crosses the level there; without a floor all
#: those vertices would land on the corner itself, and welding them would collapse
#: triangles and leave edges with one or four faces. 2^-12 keeps the vertex exactly
#: representable in float32 at voxel coordinates below 4096 (12 integer + 12 fraction
#: bits) and moves it by at most 2.4e-4 cells, far below marching cubes' own error.
MIN_WEIGHT = 2.0**-12

_FACES = [[int(c) for c in f] for f in mc_tables.FACE_CORNERS]
_CORNERS = [[int(c) for c in p] for p in mc_tables.CORNERS]
_EDGES = [[int(c) for c in e] for e in mc_tables.EDGES]



@ti.func
def edge_weight(a: ti.f32, b: ti.f32) -> ti.f32:
    """Where the level crosses an edge, as a fraction of the way from its first corner:
    ``a / (a - b)`` held in ``[MIN_WEIGHT, 1 - MIN_WEIGHT]`` (``a``, ``b``: the corner values
    minus the level, ``a > 0`` or ``b > 0`` but not both)."""
    return ti.min(ti.max(a / (a - b), MIN_WEIGHT), 1.0 - MIN_WEIGHT)


@ti.func
def cell_row(d, case_base: ti.template(), case_ambig: ti.template()) -> ti.i32:
    """Row of the triangle table for a cell with corner values ``d`` (8-vector, minus level); -1 if empty."""
    mask = 0
    for c in ti.static(range(8)):
        if d[c] > 0:
            mask |= 1 << c
    return cell_row_of_mask(mask, d, case_base, case_ambig)


@ti.func
def cell_row_of_mask(mask: ti.i32, d, case_base: ti.template(), case_ambig: ti.template()) -> ti.i32:
    """As :func:`cell_row` with the corner sign mask given (bit c: corner c above the level)."""
    row = -1
    if mask != 0 and mask != 255:
        row = case_base[mask]
        amb = case_ambig[mask]
        if amb != 0:
            n = 0
            bits = 0
            for f in ti.static(range(6)):
                if (amb >> f) & 1:
                    a, b, c, e = ti.static(_FACES[f][0], _FACES[f][1], _FACES[f][2], _FACES[f][3])
                    p_ac = d[a] * d[c]
                    p_be = d[b] * d[e]
                    joined = 0
                    if (mask >> a) & 1:
                        if p_ac > p_be:
                            joined = 1
                    elif p_be > p_ac:
                        joined = 1
                    bits |= joined << n
                    n += 1
            row += bits
    return row


@ti.kernel
def pack_signs(vol: ti.types.ndarray(ndim=3), level: ti.f32, bits: ti.types.ndarray(ndim=3)):
    """Pass 1a, the only pass over every voxel: bit b of ``bits[i, j, w]`` is
    ``vol[i, j, 32 w + b] > level`` (0 past the end; NaN counts as below)."""
    Z = vol.shape[2]
    for i, j, w in ti.ndrange(vol.shape[0], vol.shape[1], bits.shape[2]):
        word = ti.u32(0)
        if w * 32 + 32 <= Z:
            for b in ti.static(range(32)):
                word |= ti.select(vol[i, j, w * 32 + b] > level, ti.u32(1), ti.u32(0)) << b
        else:
            for b in range(Z - w * 32):
                word |= ti.select(vol[i, j, w * 32 + b] > level, ti.u32(1), ti.u32(0)) << ti.cast(b, ti.u32)
        bits[i, j, w] = ti.bit_cast(word, ti.i32)


@ti.func
def _word(bits: ti.template(), i: ti.i32, j: ti.i32, w: ti.i32) -> ti.u32:
    r = ti.u32(0)
    if w < bits.shape[2]:
        r = ti.bit_cast(bits[i, j, w], ti.u32)
    return r


@ti.func
def _popcnt(x: ti.u32) -> ti.i32:
    return ti.cast(ti.math.popcnt(x), ti.i32)


@ti.func
def _msb(x: ti.u32) -> ti.i32:
    """Index of the highest set bit of x != 0 (portable: Taichi's clz breaks SPIR-V)."""
    n = 0
    for sh in ti.static((16, 8, 4, 2, 1)):
        if (x >> sh) != ti.u32(0):
            n += sh
            x >>= sh
    return n


@ti.kernel
def scan(bits: ti.types.ndarray(ndim=3), Z: ti.i32, counts: ti.types.ndarray()):
    """Pass 1b on the sign bits, 32 points per step: per row (i, j) the number of crossed
    edges its points own (+x, +y, +z) and the k range [first, last) where a point owns a
    crossed edge or a cell is non-empty (counts[i, j, 0/3/4])."""
    X, Y, W = bits.shape[0], bits.shape[1], bits.shape[2]
    for i, j in ti.ndrange(X, Y):
        i1, j1 = ti.min(i + 1, X - 1), ti.min(j + 1, Y - 1)  # clamped: same bits, no crossing
        cells = i + 1 < X and j + 1 < Y
        nv = 0
        first, last = Z, 0
        for w in range(W):
            s00, s10, s01, s11 = _word(bits, i, j, w), _word(bits, i1, j, w), _word(bits, i, j1, w), _word(bits, i1, j1, w)
            # the same rows at k + 1
            t00 = (s00 >> 1) | (_word(bits, i, j, w + 1) << 31)
            t10 = (s10 >> 1) | (_word(bits, i1, j, w + 1) << 31)
            t01 = (s01 >> 1) | (_word(bits, i, j1, w + 1) << 31)
            t11 = (s11 >> 1) | (_word(bits, i1, j1, w + 1) << 31)
            n_below = ti.min(ti.max(Z - 1 - w * 32, 0), 32)  # points of this word with k + 1 < Z
            below = ti.u32(0xFFFFFFFF)
            if n_below < 32:
                below = ~(below << ti.cast(n_below, ti.u32))
            fx, fy, fz = s00 ^ s10, s00 ^ s01, (s00 ^ t00) & below
            nv += _popcnt(fx) + _popcnt(fy) + _popcnt(fz)
            any_ = fx | fy | fz
            if cells:
                hi = s00 | s10 | s01 | s11 | t00 | t10 | t01 | t11
                lo = s00 & s10 & s01 & s11 & t00 & t10 & t01 & t11
                any_ |= hi & ~lo & below
            if any_ != 0:
                if first == Z:
                    first = w * 32 + _msb(any_ & (~any_ + ti.u32(1)))  # lowest set bit
                last = w * 32 + _msb(any_) + 1
        counts[i, j, 0] = nv
        counts[i, j, 3] = first
        counts[i, j, 4] = last


@ti.func
def _below(p: ti.i32) -> ti.u32:
    """Mask of the bits below position p (0 <= p <= 32)."""
    m = ti.u32(0xFFFFFFFF)
    if p < 32:
        m = ~(m << ti.cast(ti.max(p, 0), ti.u32))
    return m


@ti.func
def _bit(word: ti.u32, b: ti.i32) -> ti.i32:
    return ti.cast((word >> ti.cast(b, ti.u32)) & ti.u32(1), ti.i32)


@ti.func
def _low_bit(m: ti.u32) -> ti.i32:
    return _msb(m & (~m + ti.u32(1)))


@ti.func
def _cell_mask(b: ti.i32, s00: ti.u32, s10: ti.u32, s11: ti.u32, s01: ti.u32,
               t00: ti.u32, t10: ti.u32, t11: ti.u32, t01: ti.u32) -> ti.i32:
    """Corner sign mask (bit c: corner c above the level) of the cell at bit b."""
    return (_bit(s00, b) | (_bit(s10, b) << 1) | (_bit(s11, b) << 2) | (_bit(s01, b) << 3)
            | (_bit(t00, b) << 4) | (_bit(t10, b) << 5) | (_bit(t11, b) << 6) | (_bit(t01, b) << 7))


@ti.kernel
def cases(
    vol: ti.types.ndarray(ndim=3), level: ti.f32, bits: ti.types.ndarray(ndim=3), case_base: ti.types.ndarray(),
    case_ambig: ti.types.ndarray(), tri_table: ti.types.ndarray(), code: ti.types.ndarray(ndim=3),
    counts: ti.types.ndarray(),
):
    """Pass 2, only at non-empty cells (found 32 at a time in the sign bits):
    ``code[i, j, k] = table row + 1`` and the row's triangle / centre-vertex counts
    (counts[i, j, 1/2]); counts[i, j, 5] = 1 when a value next to a crossing is NaN/inf.
    Codes of other cells stay unwritten (never read)."""
    X, Y, Z = vol.shape[0], vol.shape[1], vol.shape[2]
    for i, j in ti.ndrange(X, Y):
        nt, nc, bad = 0, 0, 0
        if i + 1 < X and j + 1 < Y:
            for w in range(counts[i, j, 3] // 32, (counts[i, j, 4] + 31) // 32):
                s00, s10, s01, s11 = _word(bits, i, j, w), _word(bits, i + 1, j, w), _word(bits, i, j + 1, w), _word(bits, i + 1, j + 1, w)
                t00 = (s00 >> 1) | (_word(bits, i, j, w + 1) << 31)
                t10 = (s10 >> 1) | (_word(bits, i + 1, j, w + 1) << 31)
                t01 = (s01 >> 1) | (_word(bits, i, j + 1, w + 1) << 31)
                t11 = (s11 >> 1) | (_word(bits, i + 1, j + 1, w + 1) << 31)
                hi = s00 | s10 | s01 | s11 | t00 | t10 | t01 | t11
                lo = s00 & s10 & s01 & s11 & t00 & t10 & t01 & t11
                m = hi & ~lo & _below(Z - 1 - w * 32)
                while m != ti.u32(0):
                    b = _low_bit(m)
                    m &= m - ti.u32(1)
                    k = w * 32 + b
                    d = ti.Vector([vol[i + _CORNERS[q][0], j + _CORNERS[q][1], k + _CORNERS[q][2]]
                                   for q in ti.static(range(8))]) - level
                    for q in ti.static(range(8)):
                        if not (ti.abs(d[q]) < ti.math.inf):
                            bad = 1
                    row = cell_row_of_mask(_cell_mask(b, s00, s10, s11, s01, t00, t10, t11, t01), d, case_base, case_ambig)
                    tc = tri_table[row, 0]
                    nt += tc & 15
                    nc += tc >> 4
                    code[i, j, k] = row + 1
        counts[i, j, 1] = nt
        counts[i, j, 2] = nc
        counts[i, j, 5] = bad


@ti.func
def write_centre(verts: ti.template(), n: ti.i32, d, i: ti.i32, j: ti.i32, k: ti.i32):
    """Vertex ``n`` = mean of the cell's edge crossings (``d``: corner values minus level)."""
    acc = ti.math.vec3(0.0)
    cnt = 0
    for e in ti.static(range(12)):
        a, b = ti.static(_EDGES[e][0], _EDGES[e][1])
        if (d[a] > 0) != (d[b] > 0):
            w = edge_weight(d[a], d[b])
            acc += ti.math.vec3(_CORNERS[a]) * (1 - w) + ti.math.vec3(_CORNERS[b]) * w
            cnt += 1
    acc = acc / cnt
    verts[n, 0], verts[n, 1], verts[n, 2] = i + acc[0], j + acc[1], k + acc[2]


@ti.func
def _row_flags(bits: ti.template(), p: ti.i32, q: ti.i32, w: ti.i32, zmask: ti.u32):
    """Words of crossed owned +x, +y, +z edges of row (p, q) (clamped neighbours), and the
    +x word at k + 1."""
    X, Y = bits.shape[0], bits.shape[1]
    px, qy = ti.min(p + 1, X - 1), ti.min(q + 1, Y - 1)
    s, sx, sy = _word(bits, p, q, w), _word(bits, px, q, w), _word(bits, p, qy, w)
    t = (s >> 1) | (_word(bits, p, q, w + 1) << 31)
    tx = (sx >> 1) | (_word(bits, px, q, w + 1) << 31)
    return s ^ sx, s ^ sy, (s ^ t) & zmask, t ^ tx


@ti.func
def _count_below(fx: ti.u32, fy: ti.u32, fz: ti.u32, p: ti.i32) -> ti.i32:
    m = _below(p)
    return _popcnt(fx & m) + _popcnt(fy & m) + _popcnt(fz & m)


@ti.kernel
def emit(
    vol: ti.types.ndarray(ndim=3), level: ti.f32, bits: ti.types.ndarray(ndim=3), tri_table: ti.types.ndarray(),
    code: ti.types.ndarray(ndim=3), counts: ti.types.ndarray(), offsets: ti.types.ndarray(),
    verts: ti.types.ndarray(), faces: ti.types.ndarray(),
):
    """Per row: write the vertices of its owned crossed edges and the triangles of its
    cells, visiting only set bits. A vertex id is its row's first id plus the crossed
    edges its row owns below it (popcounts of the flag words)."""
    X, Y, Z = vol.shape[0], vol.shape[1], vol.shape[2]
    for i, j in ti.ndrange(X, Y):
        i1, j1 = ti.min(i + 1, X - 1), ti.min(j + 1, Y - 1)
        cells = i + 1 < X and j + 1 < Y
        n00, n10, n01, n11 = offsets[i, j, 0], offsets[i1, j, 0], offsets[i, j1, 0], offsets[i1, j1, 0]
        t = offsets[i, j, 1]
        nc = offsets[i, j, 2]
        # neighbour rows own no crossed edge before their own first k: start the counters there
        w0 = counts[i, j, 3]
        if cells:
            w0 = ti.min(w0, ti.min(counts[i1, j, 3], ti.min(counts[i, j1, 3], counts[i1, j1, 3])))
        for w in range(w0 // 32, (counts[i, j, 4] + 31) // 32):
            zmask = _below(Z - 1 - w * 32)
            fx00, fy00, fz00, gx00 = _row_flags(bits, i, j, w, zmask)
            fx10, fy10, fz10, gx10 = _row_flags(bits, i1, j, w, zmask)
            fx01, fy01, fz01, gx01 = _row_flags(bits, i, j1, w, zmask)
            fx11, fy11, fz11, gx11 = _row_flags(bits, i1, j1, w, zmask)
            own = fx00 | fy00 | fz00
            while own != ti.u32(0):
                b = _low_bit(own)
                own &= own - ti.u32(1)
                k = w * 32 + b
                n = n00 + _count_below(fx00, fy00, fz00, b)
                a = vol[i, j, k] - level
                if _bit(fx00, b):
                    verts[n, 0], verts[n, 1], verts[n, 2] = i + edge_weight(a, vol[i1, j, k] - level), j, k
                    n += 1
                if _bit(fy00, b):
                    verts[n, 0], verts[n, 1], verts[n, 2] = i, j + edge_weight(a, vol[i, j1, k] - level), k
                    n += 1
                if _bit(fz00, b):
                    verts[n, 0], verts[n, 1], verts[n, 2] = i, j, k + edge_weight(a, vol[i, j, k + 1] - level)
            if cells:
                s00, s10, s01, s11 = _word(bits, i, j, w), _word(bits, i1, j, w), _word(bits, i, j1, w), _word(bits, i1, j1, w)
                t00 = (s00 >> 1) | (_word(bits, i, j, w + 1) << 31)
                t10 = (s10 >> 1) | (_word(bits, i1, j, w + 1) << 31)
                t01 = (s01 >> 1) | (_word(bits, i, j1, w + 1) << 31)
                t11 = (s11 >> 1) | (_word(bits, i1, j1, w + 1) << 31)
                hi = s00 | s10 | s01 | s11 | t00 | t10 | t01 | t11
                lo = s00 & s10 & s01 & s11 & t00 & t10 & t01 & t11
                m = hi & ~lo & zmask
                while m != ti.u32(0):
                    b = _low_bit(m)
                    m &= m - ti.u32(1)
                    k = w * 32 + b
                    row = ti.cast(code[i, j, k], ti.i32) - 1
                    c00 = n00 + _count_below(fx00, fy00, fz00, b)
                    c10 = n10 + _count_below(fx10, fy10, fz10, b)
                    c01 = n01 + _count_below(fx01, fy01, fz01, b)
                    c11 = n11 + _count_below(fx11, fy11, fz11, b)
                    u00 = n00 + _count_below(fx00, fy00, fz00, b + 1)
                    u10 = n10 + _count_below(fx10, fy10, fz10, b + 1)
                    u01 = n01 + _count_below(fx01, fy01, fz01, b + 1)
                    x00, x10, x01, x11 = _bit(fx00, b), _bit(fx10, b), _bit(fx01, b), _bit(fx11, b)
                    ids = ti.Vector([
                        c00, c10 + x10, c01, c00 + x00,
                        u00, u10 + _bit(gx10, b), u01, u00 + _bit(gx00, b),
                        c00 + x00 + _bit(fy00, b), c10 + x10 + _bit(fy10, b),
                        c11 + x11 + _bit(fy11, b), c01 + x01 + _bit(fy01, b), nc,
                    ])
                    tc = tri_table[row, 0]
                    if tc >> 4:
                        d = ti.Vector([vol[i + _CORNERS[q][0], j + _CORNERS[q][1], k + _CORNERS[q][2]]
                                       for q in ti.static(range(8))]) - level
                        write_centre(verts, nc, d, i, j, k)
                        nc += 1
                    for mm in range(tc & 15):
                        for q in ti.static(range(3)):
                            faces[t, q] = ids[tri_table[row, 1 + 3 * mm + q]]
                        t += 1
            n00 += _count_below(fx00, fy00, fz00, 32)
            n10 += _count_below(fx10, fy10, fz10, 32)
            n01 += _count_below(fx01, fy01, fz01, 32)
            n11 += _count_below(fx11, fy11, fz11, 32)
