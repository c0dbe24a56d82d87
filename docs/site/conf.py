"""Sphinx configuration of the rendered spec.

Not run on spec/ directly: ``vpcid spec-site`` writes the Markdown sources
(spec/ with anchors and evidence blocks, and the generated evidence pages,
vpcid.conformance.explain.SiteSources) and builds them with this folder as
Sphinx's configuration directory, warnings as errors.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

project = "vpcid specification"
author = "the vpcid project"
language = "en"
extensions = ["myst_parser", "vpcid_site"]
root_doc = "index"
source_suffix = {".md": "markdown"}
myst_heading_anchors = 3
smartquotes = False  # vector IDs ("case--e1000-00-02-0") and code names stay as typed
suppress_warnings = [
    "myst.header",  # requirement headings are H3 directly under the page's H1
    "misc.highlighting_failure",  # format examples with placeholders (TYPE, ...) in JSON blocks
]
html_theme = "alabaster"
html_title = "vpcid specification"
html_static_path = ["_static"]
html_css_files = ["vpcid.css"]
html_show_sourcelink = False
html_copy_source = False
html_theme_options = {"page_width": "1200px", "sidebar_width": "260px"}
