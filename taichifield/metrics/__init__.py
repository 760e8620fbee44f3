"""Metrics: image quality (:mod:`taichifield.metrics.image`), camera-pose agreement
(:mod:`taichifield.metrics.poses`). Mesh metrics are in
:mod:`taichifield.geometry.metrics`."""

from .image import psnr, psnr_images, ssim

__all__ = ["psnr", "psnr_images", "ssim"]
