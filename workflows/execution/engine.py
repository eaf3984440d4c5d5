"""A Nipype ``Workflow`` that carries its own methods text (niworkflows' LiterateWorkflow idea)."""

from __future__ import annotations

from nipype.pipeline import engine as pe

__all__ = ["Workflow"]


class Workflow(pe.Workflow):
    """Nipype workflow with a methods paragraph.

    Builders set ``workflow.__desc__`` (and optionally ``__postdesc__``) to a
    paragraph that quotes the values actually used; :meth:`visit_desc` joins
    the paragraphs of this workflow and all its sub-workflows in topological
    order, skipping repeats (one paragraph per method, however many runs).
    """

    def __init__(self, name: str, base_dir: str | None = None) -> None:
        super().__init__(name, base_dir)
        self.__desc__: str | None = None
        self.__postdesc__: str | None = None

    def visit_desc(self) -> str:
        """Return the methods text of this workflow and its sub-workflows."""
        parts: list[str] = []
        self._collect_desc(parts)
        seen: set[str] = set()
        unique = [p for p in parts if not (p in seen or seen.add(p))]
        return "\n\n".join(unique)

    def _collect_desc(self, parts: list[str]) -> None:
        if self.__desc__:
            parts.append(self.__desc__.strip())
        for node in pe.utils.topological_sort(self._graph)[0]:
            if isinstance(node, Workflow):
                node._collect_desc(parts)
        if self.__postdesc__:
            parts.append(self.__postdesc__.strip())
