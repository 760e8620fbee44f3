"""The taichifield command-line app (installed as ``taichifield.cli``)."""
