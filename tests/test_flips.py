"""Flipped runs of a sweep (taichifield.capture.flips), on synthetic rotations: a ring of 20 cameras
whose model flips images 8..13 by 180 degrees about the up axis, as repeated floor tiles make the
mapper do, with two-view rotations that are the truth plus noise, and wrong far pairs that agree
with the flip. No pycolmap needed."""

from __future__ import annotations

import numpy as np

from taichifield.capture.flips import angle_deg, contradicting_pairs, sequence_breaks

N = 20


def _rot(axis: np.ndarray, deg: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = np.radians(deg)
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def _truth() -> dict[str, np.ndarray]:
    """cam_from_world of a ring of cameras 9 degrees apart, tilted differently per view."""
    return {f"{i:04d}.jpg": _rot([1, 0, 0], 10 + 3 * (i % 3)) @ _rot([0, 0, 1], 9.0 * i) for i in range(N)}


def _two_view(truth: dict[str, np.ndarray], rng: np.random.Generator, window: int = 3) -> dict[tuple[str, str], np.ndarray]:
    """cam_b_from_cam_a for pairs up to ``window`` apart, with ~2 degrees of noise (COLMAP's two-view poses)."""
    names = sorted(truth)
    rel = {}
    for i, a in enumerate(names):
        for b in names[i + 1:i + 1 + window]:
            rel[(a, b)] = _rot(rng.normal(size=3), 2.0) @ truth[b] @ truth[a].T
    return rel


FLIP = _rot([0, 0, 1], 180.0)
FLIPPED = {f"{i:04d}.jpg" for i in range(8, 14)}


def _flipped_model(truth: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {n: r @ FLIP if n in FLIPPED else r for n, r in truth.items()}


def test_a_flipped_run_is_found_at_both_ends_and_the_corrections_undo_it() -> None:
    truth = _truth()
    model = _flipped_model(truth)
    rel = _two_view(truth, np.random.default_rng(0))
    breaks, corr = sequence_breaks(model, rel)
    assert [(a, b) for a, b, _ in breaks] == [("0007.jpg", "0008.jpg"), ("0013.jpg", "0014.jpg")]
    assert all(d > 170 for _, _, d in breaks)
    # the corrected model has the true relative rotation between every pair, within the noise
    names = sorted(truth)
    fixed = {n: model[n] @ corr[n] for n in names}
    worst = max(angle_deg((fixed[b] @ fixed[a].T) @ (truth[b] @ truth[a].T).T) for a in names for b in names)
    assert worst < 10.0, worst
    assert max(angle_deg(corr[n]) for n in names if n < "0008.jpg") == 0.0  # nothing before the first break moves


def test_the_pairs_that_voted_for_the_flip_are_the_ones_removed() -> None:
    truth = _truth()
    model = _flipped_model(truth)
    rng = np.random.default_rng(1)
    rel = _two_view(truth, rng)
    # wrong matches across the run (repeated texture): they agree with the flipped model, not the truth
    wrong = [("0002.jpg", "0010.jpg"), ("0004.jpg", "0012.jpg"), ("0011.jpg", "0018.jpg")]
    for a, b in wrong:
        rel[(a, b)] = model[b] @ model[a].T
    breaks, corr = sequence_breaks(model, rel)
    assert len(breaks) == 2
    assert sorted(contradicting_pairs(model, corr, rel)) == sorted(wrong)


def test_a_right_model_has_no_breaks_and_loses_no_pairs() -> None:
    truth = _truth()
    rel = _two_view(truth, np.random.default_rng(2))
    breaks, corr = sequence_breaks(truth, rel)
    assert breaks == [] and all(angle_deg(g) == 0.0 for g in corr.values())
    assert contradicting_pairs(truth, corr, rel) == []


def test_no_two_view_rotation_between_neighbours_is_no_evidence() -> None:
    truth = _truth()
    model = _flipped_model(truth)
    rel = {k: v for k, v in _two_view(truth, np.random.default_rng(3), window=1).items() if k != ("0007.jpg", "0008.jpg")}
    breaks, _ = sequence_breaks(model, rel)
    assert [(a, b) for a, b, _ in breaks] == [("0013.jpg", "0014.jpg")]  # the gap at 7 -> 8 is not a break
    # keys may come in either order: (b, a) holds cam_a_from_cam_b
    swapped = {(b, a): r.T for (a, b), r in _two_view(truth, np.random.default_rng(4), window=1).items()}
    assert [(a, b) for a, b, _ in sequence_breaks(model, swapped)[0]] == [("0007.jpg", "0008.jpg"), ("0013.jpg", "0014.jpg")]
