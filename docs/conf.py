"""Sphinx configuration of the bcnmf documentation.

Build: ``pip install -e ".[docs]" && python -m sphinx -W --keep-going -b html docs docs/_build/html``.
The tutorials under ``docs/tutorials`` are executed by sphinx-gallery at every build.
"""

import os
import warnings

import bcnmf

os.environ.setdefault("MPLBACKEND", "Agg")
# the tutorials' fits use the numba kernels; keep them to the cores the build was given
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

project = "bcnmf"
author = "bcnmf developers"
copyright = "bcnmf developers"
release = bcnmf.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_templates", "tutorials/README.txt", "**.ipynb_checkpoints",
                    "auto_tutorials/*.ipynb", "auto_tutorials/*.py", "auto_tutorials/*.zip",
                    "auto_tutorials/*.md5", "auto_tutorials/*.json"]
templates_path = ["_templates"]

# --- MyST ---------------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# --- API reference ------------------------------------------------------------------------------
autosummary_generate = True
autodoc_typehints = "none"
autodoc_default_options = {"inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# --- tutorials ----------------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "tutorials",
    "gallery_dirs": "auto_tutorials",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "matplotlib_animations": False,
    "show_memory": False,
    "reset_modules": ("matplotlib",),
}
# a warning raised while a tutorial runs fails the build, as it fails the library's tests:
# the library's own warnings, scikit-learn's ConvergenceWarning and numerical RuntimeWarnings
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from bcnmf import exceptions as _exceptions  # noqa: E402

for _category in (ConvergenceWarning, RuntimeWarning, _exceptions.AlphaSelectionWarning,
                  _exceptions.FeatureAlignmentWarning, _exceptions.TransformedDataWarning):
    warnings.filterwarnings("error", category=_category)

# --- HTML ---------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"bcnmf {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "navbar_align": "left",
}
html_static_path = []
html_show_sourcelink = False
