"""`clrk get -w`: the objects of one kind, then a line (or document) per change, until
interrupted, as kubectl prints them.

The watch starts at the resourceVersion of the list it follows, so no change between
the two is missed and none is shown twice; lightkube resumes it where the server
closed it."""

from __future__ import annotations

from typing import Any

from lightkube import Client

from clrk.cli import output
from clrk.cli.targets import Selection
from clrk.client import resource_class, to_dict


class _Printer:
    """Prints objects one at a time in the chosen format; a table's header comes once,
    before its first row, and its columns keep the widths of the first rows shown."""

    def __init__(self, sel: Selection, fmt: str | None, all_namespaces: bool,
                 show_managed_fields: bool) -> None:
        self.info = sel.cls.kind_info
        self.fmt = fmt
        self.all_namespaces = all_namespaces
        self.show_managed_fields = show_managed_fields
        self.widths: list[int] | None = None
        self.documents = 0

    def table(self, objs: list[dict[str, Any]]) -> None:
        header, body = output.rows(self.info, objs, self.fmt == "wide", self.all_namespaces)
        if self.widths is None:
            self.widths = output.widths(header, body)
            print(output.format_row(header, self.widths))
        for row in body:
            self.widths = [max(w, len(c)) for w, c in zip(self.widths, row, strict=True)]
            print(output.format_row(row, self.widths))

    def show(self, objs: list[dict[str, Any]]) -> None:
        if self.fmt in (None, "wide"):
            if objs:
                self.table(objs)
        elif self.fmt == "name":
            for o in objs:
                print(f"{self.info.singular}/{o['metadata']['name']}")
        else:
            for o in objs:
                if self.fmt == "yaml" and self.documents:
                    print("---")
                print(output.dump([o], str(self.fmt), single=True,
                                  show_managed_fields=self.show_managed_fields), end="")
                self.documents += 1
        print(end="", flush=True)


def watch(client: Client, sel: Selection, namespace: str | None,
          labels: dict[str, Any] | None, fmt: str | None, all_namespaces: bool,
          watch_only: bool, show_managed_fields: bool) -> None:
    """List, print unless ``watch_only``, then print every change until Ctrl-C."""
    res = resource_class(sel.cls)
    fields: dict[str, Any] | None = {"metadata.name": sel.names[0]} if sel.names else None
    listing = client.list(res, namespace=namespace, labels=labels, fields=fields)
    objs = [to_dict(o) for o in listing]
    printer = _Printer(sel, fmt, all_namespaces, show_managed_fields)
    if not watch_only:
        printer.show(objs)
    try:
        for _, obj in client.watch(res, namespace=namespace, labels=labels, fields=fields,
                                   resource_version=listing.resourceVersion):
            printer.show([to_dict(obj)])
    except KeyboardInterrupt:
        return  # the way a watch ends
