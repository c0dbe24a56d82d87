"""Finding adapters: built-in names, ``vpcid.adapters`` entry points, or ``module:factory``.

``--adapter NAME[:ARGUMENT]`` names a registered adapter; ``--adapter
module:factory[:ARGUMENT]`` imports a factory directly (``module`` a
module name, found on the Python path or in the current folder, or a path
ending in ``.py``), so third parties plug in without touching this
repository. A spec that names nothing loadable is bad input
(:class:`AdapterSpecError`, exit status 2) with the reason; an adapter that
cannot run on this machine raises :class:`AdapterUnavailable` (exit status 3).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass
from importlib import resources
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import cast

from vpcid.adapters.base import Adapter, AdapterFactory, AdapterUnavailable
from vpcid.model.errors import VpcidError

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
                 "QEMU's PCI device models through qtest: DEVICE[,property=value...][,vpcid-machine=q35|pc]"
                 "[,vpcid-behind=pcie-root-port|pci-bridge|x3130]",
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


class AdapterSpecError(VpcidError, AdapterUnavailable, ValueError):
    """``--adapter`` names no adapter, or its module or factory cannot be loaded (bad input, exit 2).

    Also an :class:`AdapterUnavailable`, so that code written against that class alone still
    catches it; vpcid's own commands report it as bad input, not as an adapter unavailable here.
    """

    kind = "bad-adapter"


def _where(exc: BaseException, prefer: str | None = None) -> str:
    """`` (file:line)`` an exception came from, for one-line reports: the innermost frame in the file
    ``prefer`` names (the user's module) if any, else the innermost frame of a real file."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" ({Path(exc.filename).name}:{exc.lineno})"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    mine = [f for f in frames if prefer is not None and f.filename == prefer]
    chosen = (mine or frames)[-1:]
    return "".join(f" ({Path(f.filename).name}:{f.lineno})" for f in chosen)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."


def _import_module(module_name: str) -> ModuleType:
    """Import ``module_name`` (a module name, or a path ending in ``.py``), also from the current folder.

    The current folder is appended to ``sys.path`` (after installed packages, so a local file never
    hides one), as ``python -m`` would make it importable.
    """
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise AdapterSpecError(f"{module_name}: no such file; give MODULE:FACTORY or PATH.py:FACTORY")
        name = path.stem if path.stem not in sys.modules else f"vpcid_adapter_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise AdapterSpecError(f"{module_name}: not a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # as an import would: dataclasses and pickling look modules up there
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise AdapterSpecError(
                f"importing {module_name} failed: {type(exc).__name__}: {_one_line(exc)}{_where(exc)}"
            ) from None
        return module
    if not all(part.isidentifier() for part in module_name.split(".")):
        raise AdapterSpecError(
            f"{module_name!r} is not a module name; give MODULE:FACTORY, e.g. mymodule:factory"
        )
    here = os.getcwd()
    if here not in sys.path:
        sys.path.append(here)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AdapterSpecError(
                f"cannot import {module_name}: no module {exc.name!r} in {here} or on the Python path; "
                f"run vpcid in the folder holding {module_name.split('.')[0]}.py, or install your package"
            ) from None
        raise AdapterSpecError(
            f"importing {module_name} failed: {type(exc).__name__}: {_one_line(exc)}{_where(exc)}"
        ) from None
    except Exception as exc:
        raise AdapterSpecError(
            f"importing {module_name} failed: {type(exc).__name__}: {_one_line(exc)}{_where(exc)}"
        ) from None


def _import(target: str) -> AdapterFactory:
    """The factory ``module:attribute`` names; :class:`AdapterSpecError` says why it cannot be had."""
    module_name, _, attribute = target.partition(":")
    module = _import_module(module_name)
    factory = getattr(module, attribute, None)
    if factory is None:
        raise AdapterSpecError(
            f"{module_name} has no {attribute!r}; "
            f"define def {attribute}(argument: str | None) -> Adapter there"
        )
    if not callable(factory):
        raise AdapterSpecError(
            f"{target} is not a callable adapter factory (it is a {type(factory).__name__})"
        )
    return cast(AdapterFactory, factory)


def load_adapter(spec: str) -> Adapter:
    """Build the adapter ``spec`` names: ``NAME[:ARGUMENT]`` (registered), or ``MODULE:FACTORY[:ARGUMENT]``
    with MODULE a module name (found also in the current folder) or a path ending in ``.py``.

    Raises :class:`AdapterSpecError` when ``spec`` names nothing that can be loaded, and passes on
    :class:`AdapterUnavailable` from a factory that cannot run here; any other failure of the factory
    becomes an :class:`AdapterSpecError` naming the file and line it came from.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise AdapterSpecError("--adapter needs NAME[:ARGUMENT] or MODULE:FACTORY[:ARGUMENT]")
    head, _, rest = spec.partition(":")
    known = registered()
    entry = known.get(head)
    if entry is not None:
        factory, argument = _import(entry.target), rest
    else:
        attribute, _, argument = rest.partition(":")
        if not attribute:
            names = ", ".join(sorted(known))
            example = f"{head}:factory" if head.isidentifier() else "mymodule:factory"
            raise AdapterSpecError(
                f"no adapter named {head!r} (known: {names}); for your own code give MODULE:FACTORY, "
                f"e.g. {example}"
            )
        factory = _import(f"{head}:{attribute}")
    try:
        adapter = factory(argument or None)
    except (AdapterUnavailable, VpcidError):
        raise
    except Exception as exc:
        module = sys.modules.get(getattr(factory, "__module__", "") or "")
        where = _where(exc, getattr(module, "__file__", None))
        raise AdapterSpecError(
            f"{spec}: the factory raised {type(exc).__name__}: {_one_line(exc)}{where}"
        ) from None
    if not isinstance(adapter, Adapter):
        missing = [n for n in ("info", "execute", "close") if not hasattr(adapter, n)]
        raise AdapterSpecError(
            f"{spec}: the factory returned a {type(adapter).__name__}, not an adapter "
            f"(it lacks {', '.join(missing)}); return an object with info, execute and close"
        )
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
