"""The Cython backend: a compiled, independent second implementation of the data manager.

``vpcid.adapters.cython._dm`` (built from ``_dm.pyx`` by the hatchling hook
in ``hatch_build.py`` during ``pip install .`` and ``pip install -e .``)
holds the whole data manager in C-level structures: VMs, the configuration,
I/O and memory hash tables, instances, sparse BAR memory, blobs and
snapshots, bridges (the bus tree, routing by bus number, forwarding
windows, secondary bus reset), every operation and every variant axis. It
reads a device type's per-byte layout once per type
(``vpcid.model.devicetype.layout``, the type's own definition) and calls a
type's custom ``BarBehaviour`` (the catalog's ``edu``) as Python code;
everything else is compiled.

Three ways in:

* :class:`Manager`: the API of :class:`vpcid.model.DataManager` (same
  methods, same error classes), constructed with a ``Profile``;
* :class:`CythonAdapter`: the adapter protocol (``info``, ``execute``,
  ``close``) for ``vpcid certify``;
* the batch engine: ``CythonAdapter.encode(ops)`` then
  ``CythonAdapter.run_batch(trace)`` runs a whole trace in compiled code and
  returns every observation (``BatchResult.observations()``);
* a VMM's view, for servers: ``Manager.region_config`` and
  ``Manager.region_bar`` (configuration space by BDF, a BAR by index and
  offset, as the vfio-user server's model manager has them), and
  :class:`RegionPath`, which parses, performs and answers vfio-user
  REGION_READ/REGION_WRITE messages in compiled code, taking
  :class:`ThreadLock` locks the server shares with its Python code.

Blobs are hashed in C (``_dm.sha_engine()``: the x86 SHA extensions where
the CPU has them, else OpenSSL's block function if the build found libcrypto,
else portable C; ``VPCID_SHA_ENGINE=portable|openssl|sha-ni`` picks another
available one).

Use ``--adapter cython[:PROFILE-MANIFEST]``. After
editing ``_dm.pyx``, rebuild with ``pip install -e .`` (or ``python
hatch_build.py``).
"""

from __future__ import annotations

from pathlib import Path

from vpcid.adapters.base import AdapterUnavailable
from vpcid.model import Profile

UNAVAILABLE_REASON: str | None = None
"""Why the compiled module cannot be imported here, or None when it can."""

try:
    from vpcid.adapters.cython._dm import BatchResult, CythonAdapter, Manager, RegionPath, ThreadLock, Trace
except ImportError as exc:  # not built: no compiler at install time, or not installed yet
    UNAVAILABLE_REASON = (
        f"cython backend not built ({exc}); reinstall with a C compiler and Python headers: pip install -e ."
    )

__all__ = [
    "UNAVAILABLE_REASON",
    "BatchResult",
    "CythonAdapter",
    "Manager",
    "RegionPath",
    "ThreadLock",
    "Trace",
    "adapter",
    "available",
]


def available() -> bool:
    """Whether the compiled module is importable here."""
    return UNAVAILABLE_REASON is None


def adapter(argument: str | None) -> CythonAdapter:
    """Factory for ``--adapter cython[:PROFILE-MANIFEST]``.

    Raises :class:`AdapterUnavailable` with the reason when the extension is not built, and
    :class:`~vpcid.model.ProfileError` naming the file when the manifest cannot be read or parsed.
    """
    if UNAVAILABLE_REASON is not None:
        raise AdapterUnavailable(UNAVAILABLE_REASON)
    profile = Profile()
    if argument:
        from vpcid.conformance.inputs import read_profile

        profile = read_profile(Path(argument))
    return CythonAdapter(profile)


def __getattr__(name: str) -> object:
    """The compiled classes are missing when the module is not built: say why."""
    if name in ("BatchResult", "CythonAdapter", "Manager", "RegionPath", "ThreadLock", "Trace"):
        raise AdapterUnavailable(UNAVAILABLE_REASON or "cython backend not built")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
