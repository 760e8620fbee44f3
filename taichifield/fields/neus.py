"""The NeuS field: a signed distance and a view-dependent colour in a scene box (Wang et al. 2021),
in the hash-grid form of instant-nsr-pl / Neuralangelo (Li et al. 2023).

::

    x (world) --(x - centre) / half--> u in [-1, 1]^3
    [u, HashGrid((u + 1) / 2)] --MLP (Softplus beta=100, geometric init)--> [s_u, feature (F)]
        sdf(x) = half * s_u                      (world units; |grad| = 1 for a true SDF)
    normal n = grad sdf by finite differences (tetrahedron, as instant-nsr-pl; or central, Neuralangelo Eq. 8)
    [u, n, SH(d), feature] --MLP (ReLU)--> 3 --sigmoid--> rgb
    sharpness inv_s = exp(10 * variance)         (NeuS Sec. 3.3; variance is learned)

``half`` is half the longest side of the box, so ``u`` is isotropic and the SDF stays a
distance in world units. At step 0 the field is (close to) the SDF of a sphere of radius
``radius * half`` about the box centre: SAL's geometric init (Atzmon & Lipman 2020) with the
last layer's SDF row refit to ``|u|`` (:func:`taichifield.fields.sdf._fit_last_layer`), and
the hash table starting near zero. The gradient is a finite difference because the Taichi
hash grid's backward is not itself differentiable (the eikonal term needs a gradient that is
differentiable w.r.t. the parameters); its step :attr:`NeuSField.fd_step` (world units) may be
shrunk during training (Neuralangelo's coarse-to-fine).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..encoding import SphericalHarmonicsEncoding
from .configs import NeuSConfig
from .sdf import _fit_last_layer, _geometric_init, fd_derivatives

__all__ = ["NeuSConfig", "NeuSField"]


class NeuSField(nn.Module):
    """SDF, normal, colour and sharpness of a NeuS model over a scene box.

    Args:
        config: the architecture.
        aabb: (2, 3) scene box ``[min, max]``.

    Example:
        >>> field = NeuSField(NeuSConfig(), torch.tensor([[-1.5] * 3, [1.5] * 3]))
        >>> out = field(torch.rand(8, 3), F.normalize(torch.randn(8, 3), dim=-1))
        >>> out["sdf"].shape, out["normal"].shape, out["rgb"].shape      # (8,), (8, 3), (8, 3)
    """

    def __init__(self, config: NeuSConfig, aabb: torch.Tensor) -> None:
        super().__init__()
        self.config = c = config
        aabb = torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3).clone()
        self.register_buffer("aabb", aabb)
        self.encoding = c.hash_grid(3, c.implementation)
        dims = [3 + int(self.encoding.output_dim)] + [c.hidden] * c.sdf_layers + [1 + c.feature_dim]
        self.sdf_linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.act = nn.Softplus(beta=100)
        self._init_sphere()
        self.dir_encoding = SphericalHarmonicsEncoding(c.sh_degree, implementation=c.implementation)
        n_in = 3 + 3 + self.dir_encoding.output_dim + c.feature_dim
        layers: list[nn.Module] = []
        dim = n_in
        for _ in range(c.color_layers):
            layers += [nn.Linear(dim, c.hidden), nn.ReLU(inplace=True)]
            dim = c.hidden
        layers.append(nn.Linear(dim, 3))
        self.color_mlp = nn.Sequential(*layers)
        self.variance = nn.Parameter(torch.tensor(float(c.init_variance)))
        # finest hash-grid cell, in world units (the default finite-difference step)
        self.fd_step = self.min_fd_step

    def _init_sphere(self) -> None:
        c = self.config
        lins = list(self.sdf_linears)
        _geometric_init(lins, c.radius, 3)
        last = lins[-1]
        with torch.no_grad():
            nn.init.normal_(lins[0].weight[:, 3:], 0.0, math.sqrt(2.0) / math.sqrt(c.hidden))
            nn.init.normal_(last.weight[1:], 0.0, math.sqrt(2.0) / math.sqrt(last.in_features))
            nn.init.zeros_(last.bias[1:])
            row = nn.Linear(last.in_features, 1)
            row.weight.copy_(last.weight[:1])
            row.bias.copy_(last.bias[:1])
            _fit_last_layer(row, lambda p: self._hidden(p))
            last.weight[:1] = row.weight

    # ------------------------------------------------------------------ geometry
    @property
    def centre(self) -> torch.Tensor:
        return (self.aabb[0] + self.aabb[1]) / 2

    @property
    def half(self) -> float:
        """Half the longest side of the box: world units per unit of ``u``."""
        return float((self.aabb[1] - self.aabb[0]).max()) / 2

    @property
    def min_fd_step(self) -> float:
        """One cell of the finest hash-grid level, in world units."""
        return 2.0 * self.half / self.config.max_resolution

    def _hidden(self, u: torch.Tensor) -> torch.Tensor:
        """(M, 3) box coordinates -> (M, hidden) last hidden features of the SDF MLP."""
        u01 = ((u + 1) / 2).clamp(0.0, 1.0).contiguous()
        h = torch.cat([u, self.encoding(u01).to(u.dtype)], dim=-1)
        for lin in self.sdf_linears[:-1]:
            h = self.act(lin(h))
        return h

    def _sdf_feature(self, x: torch.Tensor) -> torch.Tensor:
        """(M, 3) world points -> (M, 1 + F): world-unit SDF, then the feature."""
        out = self.sdf_linears[-1](self._hidden((x - self.centre) / self.half))
        return torch.cat([out[:, :1] * self.half, out[:, 1:]], dim=-1)

    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        """Signed distance (N,) in world units at world points ``x`` (N, 3); negative inside."""
        return self._sdf_feature(x)[:, 0]

    def sdf_and_gradient(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SDF (N,), its finite-difference gradient (N, 3) with step :attr:`fd_step` and the
        feature (N, F) at (N, 3) points: one MLP pass over 4N (tetrahedron) or 7N (central) points."""
        s, g, feat, _ = self.sdf_derivatives(x, laplacian=False)
        return s, g, feat

    def sdf_derivatives(self, x: torch.Tensor, laplacian: bool = True
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """SDF (N,), gradient (N, 3), feature (N, F) and, when asked, the Laplacian (N,)
        (Neuralangelo's curvature term, Eq. 10) by :func:`~taichifield.fields.sdf.fd_derivatives`
        with the config's ``fd_scheme`` and step :attr:`fd_step`."""
        value, g, lap = fd_derivatives(self._sdf_feature, x, float(self.fd_step), self.config.fd_scheme, laplacian)
        return value[:, 0], g, value[:, 1:], lap

    def inv_s(self) -> torch.Tensor:
        """() NeuS sharpness ``exp(10 * variance)``, clamped to [1e-6, 1e6]."""
        return torch.exp(self.variance * 10.0).clamp(1e-6, 1e6)

    # ------------------------------------------------------------------ colour
    def color(self, x: torch.Tensor, normal: torch.Tensor, dirs: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        """Colour (N, 3) in (0, 1) from points, unit normals, unit view directions (N, 3) and features (N, F)."""
        u = (x - self.centre) / self.half
        d = self.dir_encoding(dirs.contiguous()).to(x.dtype)
        return torch.sigmoid(self.color_mlp(torch.cat([u, normal, d, feature], dim=-1)))

    def forward(self, x: torch.Tensor, dirs: torch.Tensor, laplacian: bool = False) -> dict[str, torch.Tensor]:
        """Everything the renderer needs at (N, 3) points seen along unit directions (N, 3).

        Returns:
            dict: ``sdf`` (N,), ``gradient`` (N, 3) (for the eikonal term), ``normal`` (N, 3) (the
            unit gradient), ``rgb`` (N, 3), and with ``laplacian`` the ``laplacian`` (N,) (for the
            curvature term).
        """
        s, g, feat, lap = self.sdf_derivatives(x, laplacian)
        normal = torch.nn.functional.normalize(g, dim=-1)
        out = {"sdf": s, "gradient": g, "normal": normal, "rgb": self.color(x, normal, dirs, feat)}
        if lap is not None:
            out["laplacian"] = lap
        return out

    def encoding_parameters(self) -> list[nn.Parameter]:
        return list(self.encoding.parameters())

    def mlp_parameters(self) -> list[nn.Parameter]:
        return list(self.sdf_linears.parameters()) + list(self.color_mlp.parameters())
