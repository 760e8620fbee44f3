"""Mip-NeRF 360's distortion loss (taichifield.render.distortion): O(S) prefix sums vs the double sum."""

from __future__ import annotations

import torch

from taichifield.render.distortion import distortion_loss, distortion_reference, normalized_distance


def _packed(counts: list[int], dtype: torch.dtype = torch.float64, seed: int = 0):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    ray = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts)).to(torch.int32)
    starts, ends = [], []
    for c in counts:
        edges = torch.sort(torch.rand(c + 1, generator=g, dtype=dtype)).values
        starts.append(edges[:-1])
        ends.append(edges[1:])
    w = torch.rand(int(sum(counts)), generator=g, dtype=dtype) / 4
    return w, torch.cat(starts), torch.cat(ends), ray


def test_hand_computed_two_samples() -> None:
    # one ray, intervals [0, 0.2] and [0.6, 1.0], weights 0.5 and 0.25:
    # bi = 2 * 0.5 * 0.25 * |0.1 - 0.8| = 0.175; uni = (0.25 * 0.2 + 0.0625 * 0.4) / 3 = 0.025
    w = torch.tensor([0.5, 0.25], dtype=torch.float64)
    s0, s1 = torch.tensor([0.0, 0.6], dtype=torch.float64), torch.tensor([0.2, 1.0], dtype=torch.float64)
    loss = distortion_loss(w, s0, s1, torch.zeros(2, dtype=torch.int32), 1)
    assert torch.allclose(loss, torch.tensor([0.2], dtype=torch.float64))


def test_matches_the_double_sum_with_empty_and_single_sample_rays() -> None:
    counts = [5, 0, 1, 9, 3, 0, 17]
    w, s0, s1, ray = _packed(counts)
    got = distortion_loss(w, s0, s1, ray, len(counts))
    want = distortion_reference(w, s0, s1, ray, len(counts))
    assert torch.allclose(got, want, atol=1e-12)
    assert got[1] == 0 and got[5] == 0 and got[2] == (w[5] ** 2 * (s1[5] - s0[5]) / 3)


def test_float32_long_batch_matches_float64() -> None:
    counts = [300] * 200
    w, s0, s1, ray = _packed(counts, seed=3)
    got = distortion_loss(w.float(), s0.float(), s1.float(), ray, len(counts))
    want = distortion_loss(w, s0, s1, ray, len(counts))
    assert torch.allclose(got.double(), want, rtol=1e-4)


def test_gradcheck_float64() -> None:
    counts = [4, 0, 3, 6]
    w, s0, s1, ray = _packed(counts, seed=1)
    # keep s0 < s1 under the finite-difference perturbation: differentiate the weights and the midpoints' shift
    w.requires_grad_(True)
    s0.requires_grad_(True)
    s1.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b, c: distortion_loss(a, b, c, ray, len(counts)), (w, s0, s1))


def test_concentrated_weights_cost_less_than_spread_ones() -> None:
    # the same total weight 0.9 on one ray: in one interval, or split between two far-apart ones (a floater)
    s0 = torch.tensor([0.10, 0.50, 0.90], dtype=torch.float64)
    s1 = s0 + 0.01
    ray = torch.zeros(3, dtype=torch.int32)
    one = distortion_loss(torch.tensor([0.0, 0.9, 0.0], dtype=torch.float64), s0, s1, ray, 1)
    split = distortion_loss(torch.tensor([0.3, 0.6, 0.0], dtype=torch.float64), s0, s1, ray, 1)
    assert one < split / 10


def test_normalized_distance() -> None:
    t = torch.tensor([0.0, 1.0, 3.0, 1e6])
    s = normalized_distance(t, 1.0)
    assert torch.allclose(s[:3], torch.tensor([0.0, 0.5, 0.75])) and 0.999 < s[3] < 1.0
