"""Marching-cubes case tables, generated (not typed in) from the cube's faces.

Instead of the classic 256-entry Lorensen & Cline table, whose ambiguous faces are split
differently by neighbouring cells and leave holes, the table here is derived from one
rule applied face by face, so two cells sharing a face always cut it the same way:

1. On each cube face, walked counter-clockwise as seen from outside the cube, the
   crossed edges alternate between "leaving" (+ to -) and "entering" (- to +) the
   positive region. Each leaving crossing is joined by a segment to an entering one.
   With two crossings there is one choice. With four (an ambiguous face: diagonal
   corners of equal sign) the face's bilinear saddle decides, as in the asymptotic
   decider of Nielson & Hamann (1991), also used by Lewiner et al. (2003) and so by
   ``skimage.measure.marching_cubes``: the positive corners are joined when the product
   of the positive pair exceeds the product of the negative pair (values minus level).
   Both cells sharing the face compute the same bit from the same four values.
2. Every crossed edge lies on two faces and is the end of one segment and the start of
   another, so the segments close into loops: the surface's boundary on the cube.
3. Each loop is triangulated, oriented so that normals point toward increasing values
   (outward for an SDF, whose inside is negative). A loop that visits a face twice must
   not get a diagonal between two points of that face on both sides of it, or that
   edge would be shared by four triangles: diagonals are allowed in the cell's
   +x/+y/+z faces only. The triangulation is a fan where possible, else the first
   valid one found by recursion.

A corner is "positive" when its value is strictly greater than the level.

Cube numbering (offsets from the cell's minimum corner)::

    corners: 0 (0,0,0) 1 (1,0,0) 2 (1,1,0) 3 (0,1,0) 4 (0,0,1) 5 (1,0,1) 6 (1,1,1) 7 (0,1,1)
    edges:   0 c0-c1  1 c1-c2  2 c3-c2  3 c0-c3  4 c4-c5  5 c5-c6  6 c7-c6  7 c4-c7
             8 c0-c4  9 c1-c5 10 c2-c6 11 c3-c7

Tables (all numpy int32):
    CASE_BASE[mask]    first row of ``TRI_TABLE`` for the corner mask (bit c = corner c positive).
    CASE_AMBIG[mask]   bit f set when face f is ambiguous for that mask; the row is
                       ``CASE_BASE[mask] + sum_n bit_n << n`` over the ambiguous faces in
                       order, bit_n = 1 when that face joins its positive corners.
    TRI_TABLE[row]     ``[n_tri + 16 * centre, e, e, e, ...]`` edge triples, -1 padded, width
                       1 + 3 * MAX_TRI. Edge id 12 is a vertex at the cell's centre (the mean
                       of its edge crossings), needed by the few loops (12 rows) that cannot
                       be triangulated without an interior vertex; ``centre`` flags them.
    FACE_CORNERS[f]    the 4 corners of face f, counter-clockwise seen from outside.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CORNERS", "EDGES", "FACE_CORNERS", "EDGE_OWNER", "CASE_BASE", "CASE_AMBIG", "TRI_TABLE", "MAX_TRI"]

CORNERS = np.array(
    [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)], dtype=np.int32
)
EDGES = np.array(
    [(0, 1), (1, 2), (3, 2), (0, 3), (4, 5), (5, 6), (7, 6), (4, 7), (0, 4), (1, 5), (2, 6), (3, 7)], dtype=np.int32
)
# edge -> (dx, dy, dz, axis): the grid vertex (offset from corner 0) that owns the edge
# (its lower end) and the edge's axis. Shared edges get one vertex through their owner.
EDGE_OWNER = np.array(
    [(*CORNERS[a], int(np.argmax(CORNERS[b] - CORNERS[a]))) for a, b in EDGES], dtype=np.int32
)
MAX_TRI = 10


def _faces() -> np.ndarray:
    """The six faces as corner cycles, counter-clockwise seen from outside (checked)."""
    faces = []
    for axis in range(3):
        for side in (0, 1):
            corners = [c for c in range(8) if CORNERS[c][axis] == side]
            centre = CORNERS[corners].mean(axis=0)
            normal = np.zeros(3)
            normal[axis] = 1.0 if side else -1.0
            # order by angle around the face normal
            u = np.eye(3)[(axis + 1) % 3]
            w = np.cross(normal, u)
            ang = [np.arctan2((CORNERS[c] - centre) @ w, (CORNERS[c] - centre) @ u) for c in corners]
            cyc = [corners[i] for i in np.argsort(ang)]
            p = CORNERS[cyc].astype(float)
            assert np.cross(p[1] - p[0], p[2] - p[1]) @ normal > 0
            faces.append(cyc)
    return np.array(faces, dtype=np.int32)


FACE_CORNERS = _faces()
_EDGE_OF = {(int(a), int(b)): e for e, (a, b) in enumerate(EDGES)}
_EDGE_OF.update({(b, a): e for (a, b), e in list(_EDGE_OF.items())})


def _segments(mask: int, joined: dict[int, bool]) -> dict[int, int]:
    """start edge -> end edge of the oriented segments on every face for one case."""
    pos = [(mask >> c) & 1 for c in range(8)]
    seg: dict[int, int] = {}
    for f, cyc in enumerate(FACE_CORNERS):
        crossings = []  # (position k on the cycle, kind) kind +1 leaving, -1 entering
        for k in range(4):
            a, b = int(cyc[k]), int(cyc[(k + 1) % 4])
            if pos[a] != pos[b]:
                crossings.append((k, 1 if pos[a] else -1, _EDGE_OF[(a, b)]))
        if not crossings:
            continue
        if len(crossings) == 2:
            (_, ka, ea), (_, kb, eb) = crossings
            start, end = (ea, eb) if ka == 1 else (eb, ea)
            seg[start] = end
            continue
        # ambiguous: leaving crossings pair with the previous entering one (positives
        # separated) or with the next one (positives joined)
        step = 1 if joined[f] else -1
        for n, (_, kind, e) in enumerate(crossings):
            if kind == 1:
                seg[e] = crossings[(n + step) % 4][2]
    return seg


def _loops(seg: dict[int, int]) -> list[list[int]]:
    loops, seen = [], set()
    for start in sorted(seg):
        if start in seen:
            continue
        loop, e = [], start
        while e not in seen:
            seen.add(e)
            loop.append(e)
            e = seg[e]
        assert e == start, "segments must close into loops"
        loops.append(loop)
    return loops


def _edge_faces() -> list[set[int]]:
    return [{f for f, cyc in enumerate(FACE_CORNERS) if a in cyc and b in cyc} for a, b in EDGES]


_FACES_OF_EDGE = _edge_faces()


def _triangulate(loop: list[int]) -> list[int]:
    """Triangles (flat edge triples) of a loop, with no diagonal inside a cube face."""

    def ok(a: int, b: int) -> bool:
        # a diagonal may lie in the cell's +x/+y/+z faces (odd ids) only: the neighbour
        # across such a face sees it as its -x/-y/-z face and never puts one there
        return all(f % 2 == 1 for f in _FACES_OF_EDGE[a] & _FACES_OF_EDGE[b])

    def rec(poly: list[int]) -> list[int] | None:
        if len(poly) < 3:
            return []
        first, last = poly[0], poly[-1]
        for k in range(1, len(poly) - 1):
            if (k > 1 and not ok(first, poly[k])) or (k < len(poly) - 2 and not ok(poly[k], last)):
                continue
            left, right = rec(poly[: k + 1]), rec(poly[k:])
            if left is not None and right is not None:
                return left + [first, poly[k], last] + right
        return None

    for r in range(len(loop)):  # prefer a rotation that needs no search
        tris = rec(loop[r:] + loop[:r])
        if tris is not None:
            return tris
    centre = []  # fan around a new vertex at the cell's centre (edge id 12)
    for m in range(len(loop)):
        centre += [12, loop[m], loop[(m + 1) % len(loop)]]
    return centre


def _ambiguous_faces(mask: int) -> list[int]:
    pos = [(mask >> c) & 1 for c in range(8)]
    out = []
    for f, cyc in enumerate(FACE_CORNERS):
        s = [pos[int(c)] for c in cyc]
        if s[0] == s[2] and s[1] == s[3] and s[0] != s[1]:
            out.append(f)
    return out


def _orientation_flip() -> bool:
    """True when loops as built need reversing so normals point toward positive corners."""
    mid = {e: CORNERS[EDGES[e]].mean(axis=0) for e in range(12)}
    (loop,) = _loops(_segments(1, {}))  # only corner 0 positive
    p = np.array([mid[e] for e in loop])
    normal = np.cross(p[1] - p[0], p[2] - p[0])
    return bool(normal @ (CORNERS[0] - p.mean(axis=0)) < 0)


def _build() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    flip = _orientation_flip()
    base = np.zeros(256, dtype=np.int32)
    ambig = np.zeros(256, dtype=np.int32)
    rows: list[list[int]] = []
    for mask in range(256):
        faces = _ambiguous_faces(mask)
        base[mask] = len(rows)
        ambig[mask] = sum(1 << f for f in faces)
        for bits in range(1 << len(faces)):
            joined = {f: bool((bits >> n) & 1) for n, f in enumerate(faces)}
            tris: list[int] = []
            for loop in _loops(_segments(mask, joined)):
                if flip:
                    loop = loop[::-1]
                tris += _triangulate(loop)
            assert len(tris) // 3 <= MAX_TRI
            centre = 16 if 12 in tris else 0
            rows.append([len(tris) // 3 + centre] + tris + [-1] * (3 * MAX_TRI - len(tris)))
    return base, ambig, np.array(rows, dtype=np.int32)


CASE_BASE, CASE_AMBIG, TRI_TABLE = _build()
