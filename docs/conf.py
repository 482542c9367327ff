import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "pypoolparty"
author = "The pypoolparty developers"
copyright = "2026, " + author
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
napoleon_numpy_docstring = True
autodoc_member_order = "bysource"
exclude_patterns = ["_build"]
html_theme = "alabaster"
