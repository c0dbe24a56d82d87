"""Finding adapters: built-in names, ``vpcid.adapters`` entry points, or ``package.module:factory``.

``--adapter NAME[:ARGUMENT]`` names a registered adapter; ``--adapter
package.module:factory[:ARGUMENT]`` imports a factory directly, so third
parties plug in without touching this repository.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import resources
from importlib.metadata import entry_points
from pathlib import Path
from typing import cast

from vpcid.adapters.base import Adapter, AdapterFactory, AdapterUnavailable

ENTRY_POINT_GROUP = "vpcid.adapters"


@dataclass(frozen=True)
class AdapterEntry:
    """A registered adapter: name, where its factory lives, a summary, an example argument."""

    name: str
    target: str
    summary: str
    example: str | None = None
    bundled: tuple[str, ...] = ()
    """What ``vpcid certify-bundled`` certifies through this adapter; empty: the example alone."""
    waivers: str | None = None
    """A waiver file shipped in a package, ``package:relative/path``, applied by certify-bundled."""
    third_party: bool = False
    """The implementation is someone else's (QEMU's device models): certify-bundled reports its
    findings but does not fail because of them."""

    def waiver_file(self) -> Path | None:
        """The shipped waiver file as a path, if the entry has one."""
        if self.waivers is None:
            return None
        package, _, relative = self.waivers.partition(":")
        return Path(str(resources.files(package).joinpath(relative)))


BUILTIN: tuple[AdapterEntry, ...] = (
    AdapterEntry("reference", "vpcid.adapters.reference:reference", "the reference model itself"),
    AdapterEntry("cython", "vpcid.adapters.cython:adapter",
                 "compiled (Cython) second implementation of the data manager", "cython"),
    AdapterEntry("qemu", "vpcid.adapters.qemu:adapter",
                 "QEMU's PCI device models through qtest: DEVICE[,property=value...][,vpcid-machine=q35|pc]",
                 "qemu:edu",
                 bundled=("qemu:edu", "qemu:pci-testdev", "qemu:e1000"),
                 waivers="vpcid.adapters.qemu:waivers/q35.toml", third_party=True),
    AdapterEntry("mutant", "vpcid.conformance.mutants:mutant_adapter",
                 "the reference with one planted bug (mutation testing)", "mutant:rw1c-as-rw"),
    AdapterEntry("kvm", "vpcid.adapters.kvm:adapter", "real vCPUs execute every guest access", "kvm"),
    AdapterEntry("kvm+cython", "vpcid.adapters.kvm:adapter_cython",
                 "real vCPUs execute every guest access; exits served by the Cython backend", "kvm+cython"),
    AdapterEntry("vfio-user", "vpcid.adapters.vfio_user:adapter",
                 "vfio-user device servers through a thin VMM: SOCKET[+PEER][@TYPE|@FILE[#NAME]],... "
                 "(discovered without @) or spawn[=TYPE+...]",
                 "vfio-user:spawn"),
)  # fmt: skip


def registered() -> dict[str, AdapterEntry]:
    """Built-in adapters and those other packages register under the ``vpcid.adapters`` group."""
    found = {entry.name: entry for entry in BUILTIN}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, AdapterEntry(ep.name, ep.value, f"entry point from {ep.value}"))
    return found


def _import(target: str) -> AdapterFactory:
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AdapterUnavailable(f"cannot import {module_name}: {exc}") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise AdapterUnavailable(f"{target} is not a callable adapter factory")
    return cast(AdapterFactory, factory)


def load_adapter(spec: str) -> Adapter:
    """Build the adapter ``spec`` names; raises :class:`AdapterUnavailable` with the reason."""
    head, _, rest = spec.partition(":")
    if "." in head:  # package.module:factory[:argument]
        attribute, _, argument = rest.partition(":")
        if not attribute:
            raise AdapterUnavailable(f"{spec!r}: expected package.module:factory")
        factory = _import(f"{head}:{attribute}")
    else:
        entry = registered().get(head)
        if entry is None:
            known = ", ".join(sorted(registered()))
            raise AdapterUnavailable(f"no adapter named {head!r} (known: {known})")
        factory, argument = _import(entry.target), rest
    adapter = factory(argument or None)
    if not isinstance(adapter, Adapter):
        raise AdapterUnavailable(f"{spec!r}: the factory did not return an adapter")
    return adapter


def probe(entry: AdapterEntry) -> tuple[bool, str]:
    """Whether the adapter can run here, and why not; builds it once with its example argument."""
    try:
        adapter = load_adapter(entry.example or entry.name)
    except AdapterUnavailable as exc:
        return False, str(exc)
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
    adapter.close()
    return True, "ready"
