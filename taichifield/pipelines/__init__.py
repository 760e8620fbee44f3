"""Trained models and their inference: a field plus what renders it (kaolin-wisp's pipelines).

:class:`~taichifield.pipelines.nerf.NerfModel` (radiance field + occupancy grid). Training
lives in :mod:`taichifield.train`; the models here are what it writes and what the
``eval``/``render``/``mesh``/``view`` commands load.
"""
