"""Sphinx extension of the rendered spec: every requirement ID mentioned in the text is a link.

A mention is ``R-<GROUP>-<NNN>`` in running text (paragraphs, lists, tables,
evidence blocks); code, literals, titles and existing links are left alone.
Each becomes a cross-reference to the requirement's label (``r-dec-005``,
which ``vpcid spec-site`` puts before every requirement heading), so an ID
the spec does not define is an unresolved reference: a warning, and with
``-W`` a failed build.
"""

from __future__ import annotations

import re
from typing import Any

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.transforms import SphinxTransform

REQUIREMENT_ID = re.compile(r"\bR-[A-Z]+-\d{3}\b")
LEFT_ALONE = (
    nodes.FixedTextElement,  # literal blocks, doctest blocks
    nodes.literal,
    nodes.reference,
    nodes.title,
    nodes.target,
    nodes.raw,
    nodes.comment,
    pending_xref,
)


class LinkRequirementIds(SphinxTransform):
    """Replace each requirement ID in running text with a reference to its section."""

    default_priority = 400

    def apply(self, **kwargs: Any) -> None:
        for text in list(self.document.findall(nodes.Text)):
            if not REQUIREMENT_ID.search(text.astext()) or self._left_alone(text):
                continue
            text.parent.replace(text, self._linked(text.astext()))

    @staticmethod
    def _left_alone(node: nodes.Node) -> bool:
        parent = node.parent
        while parent is not None:
            if isinstance(parent, LEFT_ALONE):
                return True
            parent = parent.parent
        return False

    def _linked(self, value: str) -> list[nodes.Node]:
        pieces: list[nodes.Node] = []
        position = 0
        for match in REQUIREMENT_ID.finditer(value):
            if match.start() > position:
                pieces.append(nodes.Text(value[position : match.start()]))
            rid = match[0]
            reference = pending_xref(
                "", nodes.inline(rid, rid, classes=["requirement-id"]),
                refdomain="std", reftype="ref", reftarget=rid.lower(), refexplicit=True, refwarn=True,
                refdoc=self.env.docname,
            )  # fmt: skip
            pieces.append(reference)
            position = match.end()
        if position < len(value):
            pieces.append(nodes.Text(value[position:]))
        return pieces


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_transform(LinkRequirementIds)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
