"""Systematic mutants: cosmic-ray's operators over the model and the Cython backend's Python logic,
each mutant judged by certifying the mutated code against the pristine model (``vpcid mutate``).

The hand-planted bugs (:mod:`vpcid.conformance.mutants`) measure the suite against bugs someone
thought of; this module measures it against every small syntactic change a mutation tool makes.

Why cosmic-ray rather than mutmut: the suite compares an implementation with the model, so a mutated
model must not also be the reference. mutmut 3 rewrites the project in place of itself (a copy where
every function dispatches on an environment variable, imported under the same package name) and runs
only pytest, so the mutated ``vpcid.model`` would also be the model it is compared with. cosmic-ray
keeps its parts apart: its operators enumerate the mutations of a module into a session database
(``init``), ``mutate_code`` applies one of them to source text, and its tools read the session
(``cr-report``, ``cr-html``, ``cr-rate``). That lets each mutant be loaded under another package name,
:data:`MIRROR` (``vpcid_mutant.model``, the model's sources with their imports rewritten), and judged
by a certification rather than a test run, while ``vpcid.model`` stays pristine.

How a session runs (:func:`run_session`):

1. cosmic-ray's ``init`` writes every mutation of the target's files to the session (SQLite).
2. Mutations inside annotations are marked skipped: every model module starts with ``from __future__
   import annotations``, so annotations are never evaluated and such mutants are equivalent.
3. One certification of the unmutated mirror, traced line by line, must be conformant (else the
   harness is broken and the run stops). A mutation on lines it never executes is a survivor without
   running: certification is deterministic for a seed, so the mutant behaves exactly as the original.
4. Every other mutant runs in a forked child (the parent has imported the suite once): the mutated
   module is served from memory, the target builds its adapter from the mirror, and
   ``certify(..., stop_at_first_failure=True)`` at the default budget judges it, declaring each
   profile in turn. Rejected, failing to load, crashing or one profile's certification running past
   the timeout is killed (cosmic-ray's convention for timeouts).

``--changed-since REV`` keeps a session to the mutants on lines changed since a git revision (judged
and reported alike), so a grown model is measured without judging again what an earlier session did.

Targets (:data:`TARGETS`): ``model`` certifies the mutated model behind the adapter protocol (its own
device types, profile and BDFs, built by the mirror); ``cython`` certifies the compiled backend with
the Python parts it calls (``vpcid.adapters.cython``'s factory, the per-byte ``layout``, device types,
``DeviceData`` and the catalog's behaviours) taken from the mirror.
"""

from __future__ import annotations

import ast
import dataclasses
import faulthandler
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import re
import resource
import select
import signal
import sys
import time
import types
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from vpcid.adapters.base import Adapter, AdapterInfo, define_type
from vpcid.adapters.reference import ModelAdapter
from vpcid.conformance.certify import DEFAULT_BUDGET, DEFAULT_SEED, CertificationReport, Verdict, certify
from vpcid.conformance.trace import EXTENSIONS, FULL, INTROSPECTION, Observation, Op
from vpcid.model import Profile
from vpcid.model.errors import VpcidError
from vpcid.model.profile import AXES

MIRROR = "vpcid_mutant"
"""Top-level name of the mirror package: ``vpcid_mutant.model`` is the model's copy."""
MIRROR_FILE_PREFIX = "mutant:"
"""Prefix of the file names the mirror's code objects carry (tells them apart from the pristine files)."""
DEFAULT_TIMEOUT = 60.0
"""Seconds one certification of a mutant (one profile) may take before the mutant counts as killed (a
hang is a rejection). Per profile, not per mutant: a conformant mutant certifies once per declared
profile (25 of them with 18 axes), a few seconds each."""
BACKSTOP = 60.0
"""Seconds the parent waits past a mutant's total allowance (timeout times profiles) before killing its
child: the child's own alarm ends a Python-level hang; this ends one in compiled code."""
MEMORY_LIMIT = 4 << 30
"""Address space a mutant's child process may use; a mutant that allocates without bound is killed."""
INSTALL_HINT = "install the dev extra: pip install -e '.[dev]' (cosmic-ray)"


class MutationError(VpcidError, ValueError):
    """A mutation session cannot run: bad arguments, a broken harness, or cosmic-ray missing."""

    kind = "bad-mutation-run"


# ----------------------------------------------------------------- the mirror package


def project_root() -> Path:
    """The checkout the model is installed from (``model/vpcid/model`` is three folders down)."""
    import vpcid.model

    return Path(vpcid.model.__file__).resolve().parents[3]


@dataclass(frozen=True)
class MirrorModule:
    """One module of the mirror: its name, the file it copies and whether it is a package."""

    name: str
    path: Path
    package: bool = False

    @property
    def filename(self) -> str:
        """The name its code objects carry: the copied file's path, prefixed."""
        return MIRROR_FILE_PREFIX + relative(self.path)


def relative(path: Path) -> str:
    """``path`` relative to the checkout when it is inside it."""
    try:
        return str(path.resolve().relative_to(project_root()))
    except ValueError:
        return str(path)


def mirror_modules() -> dict[str, MirrorModule]:
    """Every module of the mirror by repository path: the model's modules, the suite's device types
    (``vpcid.conformance.devices``, unmutated glue that builds the types with the mirror's classes),
    the type-file reader (unmutated, so that ``define_type`` definitions are built and checked by the
    mirror's classes) and the Cython backend's Python package."""
    import vpcid.adapters.cython
    import vpcid.conformance.devices
    import vpcid.conformance.typefile
    import vpcid.model

    model_dir = Path(vpcid.model.__file__).resolve().parent
    modules = [MirrorModule(f"{MIRROR}.model", model_dir / "__init__.py", package=True)]
    modules += [
        MirrorModule(f"{MIRROR}.model.{p.stem}", p)
        for p in sorted(model_dir.glob("*.py"))
        if p.stem != "__init__"
    ]
    modules.append(MirrorModule(f"{MIRROR}.devices", Path(vpcid.conformance.devices.__file__).resolve()))
    modules.append(MirrorModule(f"{MIRROR}.typefile", Path(vpcid.conformance.typefile.__file__).resolve()))
    modules.append(MirrorModule(f"{MIRROR}.cython", Path(vpcid.adapters.cython.__file__).resolve()))
    return {relative(m.path): m for m in modules}


_MODEL_IMPORT = re.compile(r"\bvpcid\.model\b")


def rewrite_imports(source: str) -> str:
    """``source`` with every reference to ``vpcid.model`` pointing at the mirror's model instead."""
    return _MODEL_IMPORT.sub(f"{MIRROR}.model", source)


class MirrorImporter(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves the mirror's modules from source text held in memory (nothing is written to disk, so
    no bytecode cache can serve a stale mutant)."""

    def __init__(self, modules: Mapping[str, MirrorModule], sources: Mapping[str, str]) -> None:
        self._by_name = {m.name: m for m in modules.values()}
        self._sources = {modules[path].name: text for path, text in sources.items()}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == MIRROR:
            return importlib.util.spec_from_loader(fullname, self, is_package=True)
        module = self._by_name.get(fullname)
        if module is None:
            return None
        return importlib.util.spec_from_loader(
            fullname, self, origin=module.filename, is_package=module.package
        )

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        entry = self._by_name.get(module.__name__)
        if entry is None:  # the empty top-level package
            return
        module.__file__ = entry.filename
        code = compile(self._sources[entry.name], entry.filename, "exec", dont_inherit=True)
        exec(code, module.__dict__)


@dataclass(frozen=True)
class Mirror:
    """The loaded mirror: its model package, the suite's types built from it, the Cython package."""

    model: types.ModuleType
    devices: types.ModuleType

    def module(self, name: str) -> types.ModuleType:
        """A mirror module by its name under :data:`MIRROR` (``model.devicetype``, ``cython``)."""
        return importlib.import_module(f"{MIRROR}.{name}")

    def profile(self, profile: Profile) -> Any:
        """The mirror's profile with the same axis values."""
        return self.model.Profile.from_mapping(profile.to_mapping())

    def suite_types(self) -> dict[str, Any]:
        """The suite's device types (catalog, kitchen-sink, express-sink) as the mirror builds them."""
        return dict(self.devices.SUITE_TYPES)


def load_mirror(sources: Mapping[str, str]) -> Mirror:
    """Install the mirror, with ``sources`` (repository path -> source text) replacing the files they
    name, and import it. Call in a process of its own: the mirror stays installed."""
    modules = mirror_modules()
    texts = {path: rewrite_imports(m.path.read_text(encoding="utf-8")) for path, m in modules.items()}
    texts.update({path: rewrite_imports(text) for path, text in sources.items()})
    for name in [n for n in sys.modules if n == MIRROR or n.startswith(MIRROR + ".")]:
        del sys.modules[name]
    sys.meta_path.insert(0, MirrorImporter(modules, texts))
    return Mirror(importlib.import_module(f"{MIRROR}.model"), importlib.import_module(f"{MIRROR}.devices"))


# ----------------------------------------------------------------- adapters over the mirror


class MirrorModelAdapter(ModelAdapter):
    """The mirror's (mutated) data manager behind the adapter protocol, declaring ``profile``.

    Everything that crosses into it is the mirror's own: the profile, the device types (those a
    ``define_type`` defines too, read by the mirror's type-file reader) and each operation's BDF;
    the mirror's errors become error observations (R-ERR-003). The pristine model that
    certification compares it with never sees these objects.
    """

    def __init__(self, mirror: Mirror, profile: Profile | None = None, name: str = "mutant") -> None:
        self._mirror = mirror
        self._errors: type[Exception] = mirror.model.VpcidError
        profile = profile or Profile()
        mirrored = mirror.profile(profile)
        super().__init__(
            name,
            profile,
            manager_factory=lambda _: mirror.model.DataManager(mirrored),
            types=mirror.suite_types(),
            operations=FULL | EXTENSIONS | INTROSPECTION,
        )
        self._parse_definition = mirror.module("typefile").parse_type_definition

    def execute(self, op: Op) -> Observation:
        if op.bdf is not None:
            op = op._replace(bdf=self._mirror.model.Bdf(*op.bdf))
        try:
            return super().execute(op)
        except self._errors as exc:
            return Observation(error=str(getattr(exc, "kind", "error")))


class PristineInfo:
    """An adapter whose ``info`` declares the pristine profile equal to the one it was built with
    (the model side of certification is configured from ``info``)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        declared = inner.info
        pristine = Profile.from_mapping(declared.profile.to_mapping())
        self._info: AdapterInfo = dataclasses.replace(declared, profile=pristine)

    @property
    def info(self) -> AdapterInfo:
        return self._info

    def execute(self, op: Op) -> Observation:
        result: Observation = self._inner.execute(op)
        return result

    def close(self) -> None:
        self._inner.close()


CYTHON_BINDINGS = {
    "_Bdf": ("model", "Bdf"),
    "_DeviceType": ("model", "DeviceType"),
    "_Profile": ("model", "Profile"),
    "_errors": ("model", "errors"),
    "_DeviceData": ("model.behaviour", "DeviceData"),
    "_layout": ("model.devicetype", "layout"),
    "_profile_layout": ("model.configspace", "profile_layout"),
    "_TableEntry": ("model.manager", "TableEntry"),
    "_VmTables": ("model.manager", "VmTables"),
    "_TopologyNode": ("model.manager", "TopologyNode"),
    "_Windows": ("model.topology", "Windows"),
    "_SUITE_TYPES": ("devices", "SUITE_TYPES"),
}
"""The compiled module's globals that name Python objects of the model, and where the mirror has them."""


def cython_adapter(mirror: Mirror, profile: Profile | None = None) -> Adapter:
    """The compiled backend built by the mirror's ``vpcid.adapters.cython`` factory (directly, for a
    profile other than the default), calling the mirror's Python parts: the names the compiled module
    imported from the model are rebound to the mirror's (this process is the mutant's own)."""
    from vpcid.adapters.cython import _dm

    for global_name, (module, attribute) in CYTHON_BINDINGS.items():
        setattr(_dm, global_name, getattr(mirror.module(module), attribute))
    # definitions are read by the mirror's type-file reader, so their errors are the mirror's too (the
    # compiled module imports base.define_type when it runs one)
    import vpcid.adapters.base as base

    parse = mirror.module("typefile").parse_type_definition
    mirror_error = mirror.model.DeviceTypeError

    def mirrored(known: Mapping[str, Any], op: Op, _: Callable[[object], Any] | None = None) -> Any:
        try:
            return define_type(known, op, parse)
        except VpcidError as exc:  # the suite's own check of a known name: as the mirror's error
            raise mirror_error(str(exc)) from None

    setattr(base, "define_type", mirrored)  # noqa: B010 - replaced in the mutant's own process
    if profile is None or profile == Profile():
        return PristineInfo(mirror.module("cython").adapter(None))
    return PristineInfo(_dm.CythonAdapter(mirror.profile(profile)))


@dataclass(frozen=True)
class Target:
    """What a session mutates and how the mutated code becomes an implementation to certify."""

    name: str
    description: str
    files: tuple[str, ...]
    """Repository paths whose mutants this target judges."""
    build: Callable[[Mirror, Profile], Adapter]
    """The implementation to certify, made from the mirror and declaring the profile."""
    available: Callable[[], str | None] = lambda: None
    """Why this target cannot run here, or None."""


def _model_files(names: Sequence[str] = ()) -> tuple[str, ...]:
    """The model's files (those called ``names``, when given) as repository paths."""
    found = [p for p in mirror_modules() if p.startswith("model/")]
    return tuple(p for p in found if not names or p.rsplit("/", 1)[-1] in names)


def _cython_unavailable() -> str | None:
    from vpcid.adapters.cython import UNAVAILABLE_REASON

    return UNAVAILABLE_REASON


CYTHON_MODEL_FILES = ("behaviour.py", "catalog.py", "devicetype.py", "header.py")
"""The model modules whose code the compiled backend calls: ``layout`` and what builds a device type's
bytes (devicetype, header), ``DeviceData`` (behaviour) and the catalog's behaviours."""

TARGETS: dict[str, Callable[[], Target]] = {
    "model": lambda: Target(
        "model", "the mutated model behind the adapter protocol", _model_files(), MirrorModelAdapter
    ),
    "cython": lambda: Target(
        "cython",
        "the compiled backend calling the mutated Python parts it relies on",
        ("adapters/vpcid/adapters/cython/__init__.py", *_model_files(CYTHON_MODEL_FILES)),
        cython_adapter,
        _cython_unavailable,
    ),
}
"""Targets by name, built on demand (their file lists come from the installed package)."""


def target_named(name: str) -> Target:
    """The target called ``name``; :class:`MutationError` naming the known ones otherwise."""
    make = TARGETS.get(name)
    if make is None:
        raise MutationError(f"unknown mutation target {name!r}; known: {', '.join(TARGETS)}")
    return make()


# ----------------------------------------------------------------- cosmic-ray


def cosmic_ray(module: str) -> Any:
    """A cosmic-ray module (it ships no type information, so it is used as ``Any``)."""
    try:
        return importlib.import_module(f"cosmic_ray.{module}")
    except ImportError as exc:
        raise MutationError(f"cosmic-ray is not installed ({exc}); {INSTALL_HINT}") from exc


def cosmic_ray_version() -> str:
    """The installed cosmic-ray's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cosmic-ray")
    except PackageNotFoundError as exc:
        raise MutationError(f"cosmic-ray is not installed; {INSTALL_HINT}") from exc


@dataclass(frozen=True)
class Mutation:
    """One mutation of a session: where, which operator, and its occurrence in the module."""

    job_id: str
    path: str
    """Repository path of the mutated module."""
    operator: str
    occurrence: int
    start: tuple[int, int]
    end: tuple[int, int]
    definition: str | None

    @property
    def short_operator(self) -> str:
        """The operator without cosmic-ray's ``core/`` prefix."""
        return self.operator.split("/", 1)[-1]

    def mutated_source(self) -> str:
        """The module's source with this mutation applied (cosmic-ray's ``mutate_code``)."""
        plugins, mutating = cosmic_ray("plugins"), cosmic_ray("mutating")
        source = (project_root() / self.path).read_text(encoding="utf-8")
        operator = plugins.get_operator(self.operator)()
        mutated: str | None = mutating.mutate_code(source, operator, self.occurrence)
        if mutated is None:
            raise MutationError(f"{self.path}: {self.operator} has no occurrence {self.occurrence}")
        return mutated

    def diff(self, mutated: str | None = None) -> str:
        """The changed lines, as ``-old`` / ``+new`` (``mutated``: the mutated source, if at hand)."""
        import difflib

        before = (project_root() / self.path).read_text(encoding="utf-8").splitlines()
        after = (mutated if mutated is not None else self.mutated_source()).splitlines()
        lines = difflib.unified_diff(before, after, lineterm="", n=0)
        return "\n".join(line for line in lines if line[:1] in "+-" and line[:3] not in ("+++", "---"))


FIRST_PASS = {
    "ReplaceBinaryOperator": {
        "Add": "Sub", "Sub": "Add", "Mul": "Add", "Div": "Mul", "FloorDiv": "Mul", "Mod": "FloorDiv",
        "Pow": "Mul", "LShift": "RShift", "RShift": "LShift", "BitOr": "BitAnd", "BitAnd": "BitOr",
        "BitXor": "BitOr",
    },
    "ReplaceComparisonOperator": {
        "Eq": "NotEq", "NotEq": "Eq", "Lt": "LtE", "LtE": "Lt", "Gt": "GtE", "GtE": "Gt", "Is": "IsNot",
        "IsNot": "Is", "In": "NotIn", "NotIn": "In",
    },
}  # fmt: skip
"""The one replacement per binary or comparison operator site judged in the first pass (the opposite
operation, or the boundary for orderings): cosmic-ray generates every other operator too, and those
come in the second pass. Every other cosmic-ray operator is judged in the first pass."""


def first_pass(mutation: Mutation) -> bool:
    """Whether ``mutation`` belongs to the first pass (:data:`FIRST_PASS`)."""
    family, _, change = mutation.short_operator.partition("_")
    replacements = FIRST_PASS.get(family)
    if replacements is None:
        return True
    before, _, after = change.partition("_")
    return replacements.get(before) == after


def _mutation(item: Any) -> Mutation:
    spec = item.mutations[0]
    return Mutation(
        item.job_id,
        relative(Path(spec.module_path)),
        spec.operator_name,
        spec.occurrence,
        (int(spec.start_pos[0]), int(spec.start_pos[1])),
        (int(spec.end_pos[0]), int(spec.end_pos[1])),
        spec.definition_name,
    )


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(start, end) positions of every annotation in ``source`` (parameters, returns, variables)."""
    parso = importlib.import_module("parso")
    spans: list[tuple[tuple[int, int], tuple[int, int]]] = []

    def visit(node: Any) -> None:
        annotation = None
        if node.type in ("param", "funcdef"):
            annotation = node.annotation
        elif node.type == "annassign":
            annotation = node.children[1]
        if annotation is not None:
            spans.append((annotation.start_pos, annotation.end_pos))
        for child in getattr(node, "children", ()):
            visit(child)

    visit(parso.parse(source))
    return spans


FUTURE_ANNOTATIONS = "from __future__ import annotations"


def in_annotation(mutation: Mutation, spans: Sequence[tuple[tuple[int, int], tuple[int, int]]]) -> bool:
    """Whether the mutated span lies inside one of ``spans``."""
    return any(start <= mutation.start and mutation.end <= end for start, end in spans)


# ----------------------------------------------------------------- judging one mutant


@dataclass(frozen=True)
class Judgement:
    """How a mutant fared: killed or not, and why in one line."""

    killed: bool
    reason: str
    how: str = "certified"
    """``certified`` (certification's verdict), ``load`` (the mutated code does not load or build
    its adapter), ``timeout``, ``crash`` (the child died), ``skipped`` or ``not-executed``."""

    def to_json(self) -> dict[str, Any]:
        return {"killed": self.killed, "reason": self.reason, "how": self.how}


def verdict_reason(report: CertificationReport) -> str:
    """The first failing requirement and its check, or what made the run non-conformant."""
    for result in report.requirements:
        if result.verdict is Verdict.FAIL and result.failures:
            return f"{result.rid}: {result.failures[0].check}"
    return "; ".join(report.errors) or "conformant"


PAIRED_VALUES: tuple[dict[str, str], ...] = (
    {"bar_move_while_decoding": "deferred", "bar_at_top": "unmapped"},
    {"bar_move_while_decoding": "deferred", "address_zero": "decodes"},
    {"straddle": "reject", "cf8_narrow": "reset-control"},
)
"""Pairs of non-default values whose rules meet in one code path: a restore under the deferred move
checks a latched window against the top-of-space and address-zero rules; a one-byte run at the reset
control register reaches the straddle rules only while the access is scanned."""


def declared_profiles() -> tuple[Profile, ...]:
    """The default profile, then one profile per non-default value of each variant axis, every other
    axis at its default (R-VAR-001): a value is never judged only beside another that hides it (an
    unaligned access ``alignment = natural`` rejects reaches no ``straddle`` rule; under
    ``cf8_low_bits = latched`` no ``cf8_extended`` mask applies); then the pairs of
    :data:`PAIRED_VALUES`, whose rules only meet together."""
    default = Profile().to_mapping()
    alternates = [
        Profile.from_mapping({**default, axis: value.value})
        for axis, enum in AXES.items()
        for value in enum
        if value.value != default[axis]
    ]
    pairs = [Profile.from_mapping({**default, **pair}) for pair in PAIRED_VALUES]
    return (Profile(), *alternates, *pairs)


def profile_label(profile: Profile) -> str:
    """``default``, or the axes on which ``profile`` differs from it."""
    default = Profile().to_mapping()
    changed = [f"{a}={v}" for a, v in profile.to_mapping().items() if v != default[a]]
    return ",".join(changed) or "default"


@dataclass(frozen=True)
class Settings:
    """How each mutant is certified: budget, seed, the profiles it declares in turn, the timeout."""

    budget: int = DEFAULT_BUDGET
    seed: int = DEFAULT_SEED
    profiles: tuple[Profile, ...] = (Profile(),)
    """A mutant is certified declaring each in turn; the first that rejects it kills it."""
    timeout: float = DEFAULT_TIMEOUT
    """Seconds for one of a mutant's certifications (one profile) before it counts as killed."""

    @property
    def allowance(self) -> float:
        """Seconds the parent gives a child judging one mutant: every profile's timeout, and a backstop."""
        return self.timeout * len(self.profiles) + BACKSTOP


class CertificationOverran(BaseException):
    """Raised by the alarm in a child whose certification of one profile ran past the timeout.

    A BaseException, so that no ``except Exception`` in the suite or an adapter takes it for the
    implementation's error."""


def _overran(signum: int, frame: types.FrameType | None) -> None:
    raise CertificationOverran


def judge(target: Target, sources: Mapping[str, str], settings: Settings, alarm: bool = False) -> Judgement:
    """Certify ``target`` built from the mirror with ``sources`` replacing the files they name,
    declaring each of the settings' profiles in turn, in this process (which keeps the mirror
    installed: call it in a child). With ``alarm`` (a child's main thread), each profile's
    certification is cut off after the settings' timeout by SIGALRM and the mutant is killed."""
    try:
        mirror = load_mirror(sources)
    except Exception as exc:  # any failure to load is the mutant's
        return Judgement(True, f"{type(exc).__name__}: {_one_line(exc)}", "load")
    if alarm:
        signal.signal(signal.SIGALRM, _overran)
    for profile in settings.profiles:
        where = "" if len(settings.profiles) == 1 else f"[{profile_label(profile)}] "
        try:
            adapter = target.build(mirror, profile)
        except Exception as exc:  # any failure to build the implementation is the mutant's
            return Judgement(True, f"{type(exc).__name__}: {_one_line(exc)}", "load")
        try:
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, settings.timeout)
            report = certify(adapter, settings.budget, settings.seed, stop_at_first_failure=True)
        except CertificationOverran:
            return Judgement(True, f"{where}certification ran past {settings.timeout:g} s", "timeout")
        finally:
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
            adapter.close()
        if not report.conformant:
            return Judgement(True, where + verdict_reason(report))
    return Judgement(False, "conformant")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


@dataclass
class Child:
    """A forked child judging one mutant: its pid, the pipe its verdict comes through, its deadline."""

    pid: int
    fd: int
    deadline: float
    mutation: Mutation | None
    received: bytearray = field(default_factory=bytearray)


def fork_judge(work: Callable[[], dict[str, Any]], timeout: float, mutation: Mutation | None = None) -> Child:
    """Run ``work`` in a forked child that writes its JSON answer to a pipe (stdout and stderr
    silenced, address space limited to :data:`MEMORY_LIMIT`)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        status = 0
        try:
            os.close(read_fd)
            faulthandler.disable()  # a crashing mutant is reported by its exit status, not a dump
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
            answer = json.dumps(work()).encode()
            view = memoryview(answer)
            while view:
                view = view[os.write(write_fd, view) :]
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(write_fd)
    return Child(pid, read_fd, time.monotonic() + timeout, mutation)


def collect(children: Sequence[Child], wait: float) -> Iterator[tuple[Child, dict[str, Any] | None, str]]:
    """Wait up to ``wait`` seconds; yield each child that finished or overran: (child, its answer or
    None, what ended it: ``done``, ``crash`` or ``timeout``). Overrunning children are killed."""
    now = time.monotonic()
    timeout = max(0.0, min([wait, *(c.deadline - now for c in children)]))
    readable, _, _ = select.select([c.fd for c in children], [], [], timeout)
    for child in children:
        if child.fd in readable:
            chunk = os.read(child.fd, 1 << 16)
            if chunk:
                child.received += chunk
                continue
            os.close(child.fd)
            _, status = os.waitpid(child.pid, 0)
            if status == 0 and child.received:
                yield child, json.loads(child.received), "done"
            else:
                yield child, None, _exit_text(status)
        elif time.monotonic() >= child.deadline:
            os.kill(child.pid, signal.SIGKILL)
            os.waitpid(child.pid, 0)
            os.close(child.fd)
            yield child, None, "timeout"


def _exit_text(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"crash: killed by signal {os.WTERMSIG(status)}"
    return f"crash: exit status {os.waitstatus_to_exitcode(status)} (an exception escaped certification)"


def judge_in_child(target: Target, mutation: Mutation, settings: Settings) -> Child:
    """Fork a child that judges ``mutation``."""

    def work() -> dict[str, Any]:
        mutated = mutation.mutated_source()  # in the child: the jobs apply their mutations in parallel
        judgement = judge(target, {mutation.path: mutated}, settings, alarm=True)
        return {**judgement.to_json(), "diff": mutation.diff(mutated)}

    return fork_judge(work, settings.allowance, mutation)


def judgement_of(answer: dict[str, Any] | None, ended: str, timeout: float) -> Judgement:
    """The judgement a child's answer (or its end) gives."""
    if answer is not None:
        return Judgement(bool(answer["killed"]), str(answer["reason"]), str(answer["how"]))
    if ended == "timeout":
        return Judgement(True, f"certification ran past {timeout:g} s in all", "timeout")
    return Judgement(True, ended.removeprefix("crash: "), "crash")


def judge_one(target: Target, mutation: Mutation, settings: Settings) -> Judgement:
    """Judge one mutant in a child and wait for it."""
    _, answer, ended = wait_for(judge_in_child(target, mutation, settings))
    return judgement_of(answer, ended, settings.allowance)


def wait_for(child: Child) -> tuple[Child, dict[str, Any] | None, str]:
    """Wait until ``child`` finishes or overruns (see :func:`collect`)."""
    while True:
        for finished in collect([child], 5.0):
            return finished


# ----------------------------------------------------------------- coverage of the unmutated mirror


T = TypeVar("T")


def lines_run(work: Callable[[], T]) -> tuple[T, dict[str, set[int]]]:
    """``work()`` and the lines of the mirror's code it ran, by repository path.

    Every frame whose code comes from the mirror is traced line by line: module bodies, functions,
    methods, and functions nested in them (closures, comprehensions) alike, since each call of a
    nested function is a frame of its own with the mirror's file name.
    """
    executed: dict[str, set[int]] = {}

    def local(frame: types.FrameType, event: str, arg: object) -> Any:
        if event == "line":
            executed.setdefault(frame.f_code.co_filename, set()).add(frame.f_lineno)
        return local

    def calls(frame: types.FrameType, event: str, arg: object) -> Any:
        if frame.f_code.co_filename.startswith(MIRROR_FILE_PREFIX):
            executed.setdefault(frame.f_code.co_filename, set()).add(frame.f_lineno)
            return local
        return None

    previous = sys.gettrace()
    sys.settrace(calls)
    try:
        result = work()
    finally:
        sys.settrace(previous)
    return result, {name[len(MIRROR_FILE_PREFIX) :]: found for name, found in executed.items()}


def traced_certification(target: Target, settings: Settings) -> dict[str, Any]:
    """Certify the unmutated mirror while recording the mirror lines that run: ``{"conformant",
    "reason", "lines": {path: [line, ...]}}`` (run in a child)."""
    judgement, executed = lines_run(lambda: judge(target, {}, settings))
    lines = {path: sorted(found) for path, found in executed.items()}
    return {"conformant": not judgement.killed, "reason": judgement.reason, "lines": lines}


def statement_lines(source: str) -> dict[int, range]:
    """For each line of ``source`` inside a statement, every line of that statement (of a compound
    statement, its header: up to the line before its body).

    A statement that runs reports a line event only for the lines its bytecode is placed on, so the
    continuation lines of a constant folded at compile time (``(("vendor_id", 16), ...)`` over three
    lines), or the ``*`` of a signature, never show in a line trace: a mutation there ran when any
    line of its statement did.
    """
    spans: dict[int, range] = {}

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                starts = [_first_line(s) for field in ("body", "handlers", "orelse", "finalbody", "cases")
                          for s in getattr(child, field, ())]  # fmt: skip
                last = min(starts, default=(child.end_lineno or child.lineno) + 1) - 1
                span = range(child.lineno, max(child.lineno, last) + 1)
                for line in span:
                    spans[line] = span
            visit(child)

    visit(ast.parse(source))
    return spans


def _first_line(node: ast.AST) -> int:
    """The first line of a statement, an except clause or a match case (whose pattern starts it)."""
    if isinstance(node, ast.match_case):
        return node.pattern.lineno
    if isinstance(node, ast.stmt | ast.excepthandler):
        return node.lineno
    raise MutationError(f"not a statement: {type(node).__name__}")


def qualified_names(source: str) -> dict[int, str]:
    """For each line inside a function or class of ``source``, the dotted name of the innermost one
    (``DataManager.resolve``, ``DataManager._io_access.resolve``): cosmic-ray names a mutation's
    definition by its last part only, which cannot tell a method from a closure of the same name."""
    names: dict[int, str] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                for line in range(first, (child.end_lineno or child.lineno) + 1):
                    names[line] = name
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return names


# ----------------------------------------------------------------- sessions


@dataclass
class Summary:
    """Outcome counts of a session, overall and per file."""

    outcomes: Counter[str] = field(default_factory=Counter)
    by_file: dict[str, Counter[str]] = field(default_factory=dict)
    survivors: list[tuple[Mutation, str, str | None]] = field(default_factory=list)
    """(mutation, how it was judged, its diff when it ran)."""

    OUTCOMES = ("killed", "survived", "not-executed", "equivalent", "pending")

    first_pass: Counter[str] = field(default_factory=Counter)
    """Outcome counts of the first pass's mutants (:func:`first_pass`)."""

    def add(self, mutation: Mutation, outcome: str) -> None:
        self.outcomes[outcome] += 1
        if first_pass(mutation):
            self.first_pass[outcome] += 1
        self.by_file.setdefault(mutation.path, Counter())[outcome] += 1

    @property
    def generated(self) -> int:
        return sum(self.outcomes.values())

    def score(self) -> float:
        """Killed over the mutants that ran or could not have run differently (skipped ones excluded)."""
        judged = self.outcomes["killed"] + self.outcomes["survived"] + self.outcomes["not-executed"]
        return self.outcomes["killed"] / judged if judged else 0.0


SKIPPED_ANNOTATION = (
    "equivalent: inside an annotation, which is never evaluated (from __future__ import annotations)"
)
NOT_EXECUTED = "not executed: certification of the unmutated code never runs this line"


def outcome_of(result: Any) -> str:
    """The summary outcome of a cosmic-ray result."""
    if result is None:
        return "pending"
    if result.worker_outcome.value == "skipped":
        return "equivalent"
    if result.test_outcome is not None and result.test_outcome.value == "killed":
        return "killed"
    if (result.output or "").startswith("not executed"):
        return "not-executed"
    return "survived"


ChangedLines = Mapping[str, frozenset[int]]
"""Lines by repository path: those a ``--changed-since`` filter keeps."""


_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")


def changed_lines(revision: str, files: Sequence[str]) -> dict[str, frozenset[int]]:
    """The lines of ``files`` (repository paths) added or changed since git ``revision``, as they
    are now in the working tree (``git diff --unified=0 REVISION``); a file new since then is all
    changed. Raises :class:`MutationError` when git cannot answer."""
    import subprocess

    root = project_root()
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "diff", "--unified=0", "--no-color", "--no-ext-diff", revision, "--",
             *files],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    except OSError as exc:
        raise MutationError(f"--changed-since needs git: {exc}") from exc
    if done.returncode != 0:
        why = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
        raise MutationError(f"--changed-since {revision}: git diff failed: {why}")
    found: dict[str, set[int]] = {path: set() for path in files}
    current: str | None = None
    for line in done.stdout.splitlines():
        if line.startswith("+++ "):
            name = line[4:]
            current = name[2:] if name.startswith("b/") else None
        elif current is not None and (hunk := _HUNK.match(line)):
            start, count = int(hunk.group(1)), int(hunk.group(2) or "1")
            found.setdefault(current, set()).update(range(start, start + count))
    return {path: frozenset(lines) for path, lines in found.items()}


def on_lines(mutation: Mutation, lines: ChangedLines | None) -> bool:
    """Whether ``mutation`` touches one of ``lines`` (every mutation when there is no filter)."""
    if lines is None:
        return True
    kept = lines.get(mutation.path, frozenset())
    return any(at in kept for at in range(mutation.start[0], mutation.end[0] + 1))


@dataclass
class Session:
    """A cosmic-ray session database for one target; with ``lines``, only the mutations on those lines
    are judged and counted (``--changed-since``)."""

    path: Path
    target: Target
    db: Any
    lines: ChangedLines | None = None

    @classmethod
    def open(
        cls,
        path: Path,
        target: Target,
        fresh: bool,
        files: Sequence[str] = (),
        lines: ChangedLines | None = None,
    ) -> Session:
        """Open ``path`` (created, and filled by cosmic-ray's ``init`` over ``files`` or else all the
        target's files, when new or ``fresh``), judging and counting only mutations on ``lines`` when
        given."""
        work_db = cosmic_ray("work_db")
        new = fresh or not path.exists()
        if new and path.exists():
            path.unlink()
        try:
            db = work_db.WorkDB(str(path), work_db.WorkDB.Mode.create)
        except Exception as exc:
            raise MutationError(f"cannot open mutation session {path}: {exc}") from exc
        session = cls(path, target, db, lines)
        if new or db.num_work_items == 0:
            session.initialise(files or target.files)
        return session

    def close(self) -> None:
        self.db.close()

    def initialise(self, files: Sequence[str]) -> None:
        """cosmic-ray's ``init`` over ``files``, then the mutations in annotations marked skipped."""
        commands = cosmic_ray("commands")
        root = project_root()
        commands.init([root / p for p in files], self.db, {})
        spans = {}
        for path in files:
            source = (root / path).read_text(encoding="utf-8")
            spans[path] = annotation_spans(source) if FUTURE_ANNOTATIONS in source else []
        every = [_mutation(item) for item in self.db.work_items]  # the line filter aside
        skipped = [m.job_id for m in every if in_annotation(m, spans[m.path])]
        self._set_many(skipped, "skipped", None, SKIPPED_ANNOTATION)

    def mutations(self) -> list[Mutation]:
        return [m for item in self.db.work_items if on_lines(m := _mutation(item), self.lines)]

    def pending(self) -> list[Mutation]:
        return [m for item in self.db.pending_work_items if on_lines(m := _mutation(item), self.lines)]

    def _result(self, worker: str, test: str | None, output: str, diff: str | None = None) -> Any:
        item = cosmic_ray("work_item")
        return item.WorkResult(
            worker_outcome=item.WorkerOutcome(worker),
            output=output,
            test_outcome=item.TestOutcome(test) if test is not None else None,
            diff=diff,
        )

    def _set_many(self, job_ids: Sequence[str], worker: str, test: str | None, output: str) -> None:
        if job_ids:
            self.db.set_multiple_results(list(job_ids), self._result(worker, test, output))

    def record(self, mutation: Mutation, judgement: Judgement, diff: str | None = None) -> None:
        """Store a judgement the way cosmic-ray's own workers would (worker outcome, test outcome)."""
        worker = "normal" if judgement.how in ("certified", "load", "timeout") else "abnormal"
        test = "killed" if judgement.killed else "survived"
        output = f"{judgement.how}: {judgement.reason}"
        self.db.set_result(mutation.job_id, self._result(worker, test, output, diff or mutation.diff()))

    def mark_not_executed(
        self, candidates: Sequence[Mutation], executed: Mapping[str, Sequence[int]]
    ) -> set[str]:
        """Survivors without a run: those of ``candidates`` in statements the unmutated certification
        never ran (:func:`statement_lines`), recorded so; returns their job IDs."""
        lines = {path: set(found) for path, found in executed.items()}
        spans: dict[str, dict[int, range]] = {}
        for path in {m.path for m in candidates}:
            spans[path] = statement_lines((project_root() / path).read_text(encoding="utf-8"))

        def reached(m: Mutation) -> set[int]:
            mutated = range(m.start[0], m.end[0] + 1)
            return {line for at in mutated for line in spans[m.path].get(at, (at,))}

        idle = [m.job_id for m in candidates if not lines.get(m.path, set()) & reached(m)]
        self._set_many(idle, "normal", "survived", NOT_EXECUTED)
        return set(idle)

    def survivors(self) -> list[Mutation]:
        """Mutations recorded as survivors, whether they ran or were not executed."""
        results = dict(self.db.results)
        return [
            m for m in self.mutations() if outcome_of(results.get(m.job_id)) in ("survived", "not-executed")
        ]

    def summary(self) -> Summary:
        out = Summary()
        results = dict(self.db.results)
        for mutation in self.mutations():
            result = results.get(mutation.job_id)
            outcome = outcome_of(result)
            out.add(mutation, outcome)
            if result is not None and outcome in ("survived", "not-executed"):
                out.survivors.append((mutation, result.output or "", result.diff))
        return out


def run_session(
    session: Session,
    settings: Settings = Settings(),
    jobs: int = 1,
    limit: int | None = None,
    only: Sequence[str] = (),
    progress: Callable[[Mutation, Judgement], None] | None = None,
    first_pass_only: bool = False,
    recheck: bool = False,
    gaps_only: bool = False,
) -> Summary:
    """Judge the session's pending mutants (with ``recheck``, its survivors instead), ``jobs`` at a
    time, after the unmutated mirror certified conformant in every profile; return the summary. The
    first pass (:func:`first_pass`) goes first; ``first_pass_only`` stops there, ``limit`` stops after
    that many, ``only`` keeps the mutants of those files, ``gaps_only`` (with ``recheck``) the survivors
    no survivor rule classifies (:func:`classify`)."""
    target = session.target
    reason = target.available()
    if reason is not None:
        raise MutationError(f"target {target.name!r} cannot run here: {reason}")
    _, answer, ended = wait_for(
        fork_judge(lambda: traced_certification(target, settings), settings.allowance * 10)
    )
    if answer is None:
        raise MutationError(f"the unmutated mirror's certification did not finish ({ended})")
    if not answer["conformant"]:
        why = answer["reason"]
        raise MutationError(f"the unmutated mirror is not conformant ({why}): the harness is broken")
    candidates = session.survivors() if recheck else session.pending()
    candidates = [m for m in candidates if not only or m.path in only]
    if recheck and gaps_only:  # survivors that never ran have no diff: traced again, and judged if run now
        diffs = {m.job_id: diff for m, _, diff in session.summary().survivors}
        candidates = [m for m in candidates if (d := diffs.get(m.job_id)) is None or classify(m, d) is None]
    idle = session.mark_not_executed(candidates, answer["lines"])
    pending = [m for m in candidates if m.job_id not in idle]
    pending.sort(key=lambda m: (not first_pass(m), m.path, m.start, m.operator))
    if first_pass_only:
        pending = [m for m in pending if first_pass(m)]
    if limit is not None:
        pending = pending[:limit]
    running: list[Child] = []
    while pending or running:
        while pending and len(running) < jobs:
            running.append(judge_in_child(target, pending.pop(0), settings))
        for child, found, how in list(collect(running, 5.0)):
            running.remove(child)
            assert child.mutation is not None
            judgement = judgement_of(found, how, settings.allowance)
            session.record(child.mutation, judgement, None if found is None else str(found.get("diff", "")))
            if progress is not None:
                progress(child.mutation, judgement)
    return session.summary()


def summary_lines(summary: Summary, target: Target) -> list[str]:
    """The summary as text: the tool, the counts, the score and a line per file."""
    o = summary.outcomes
    lines = [
        f"cosmic-ray {cosmic_ray_version()}, target {target.name}: {target.description}",
        f"mutants generated: {summary.generated}",
        f"  equivalent (annotations, skipped): {o['equivalent']}",
        f"  not executed by certification: {o['not-executed']}",
        f"  killed: {o['killed']}   survived: {o['survived']}   pending: {o['pending']}",
        f"score (killed / not skipped): {summary.score():.1%}",
        "first pass (one replacement per operator site): "
        + ", ".join(f"{name} {summary.first_pass[name]}" for name in Summary.OUTCOMES),
        "",
        f"{'file':48} {'killed':>7} {'survived':>8} {'not-run':>7} {'equiv':>6} {'pending':>7}",
    ]
    for path, counts in sorted(summary.by_file.items()):
        lines.append(
            f"{path:48} {counts['killed']:7} {counts['survived']:8} {counts['not-executed']:7} "
            f"{counts['equivalent']:6} {counts['pending']:7}"
        )
    return lines


# ----------------------------------------------------------------- classifying survivors


@dataclass(frozen=True)
class SurvivorRule:
    """Why some survivors survive: the mutants it covers (file, functions, operator and text of the
    changed line, each a regular expression searched for; empty matches anything) and a verdict."""

    kind: str
    """``equivalent`` (no input of the data manager tells it apart), ``unreachable`` (code that the
    adapter protocol cannot reach with the suite's inputs), or ``gap`` (a hole the suite still has)."""
    reason: str
    path: str
    function: str = ""
    operator: str = ""
    text: str = ""
    after: str = ""
    """Searched for in the lines the mutant has instead (``text``: in the lines it replaced)."""

    def covers(self, mutation: Mutation, diff: str) -> bool:
        lines = diff.splitlines()
        before = "\n".join(line[1:] for line in lines if line.startswith("-") and not line.startswith("---"))
        after = "\n".join(line[1:] for line in lines if line.startswith("+") and not line.startswith("+++"))
        return (
            mutation.path.endswith(self.path)
            and re.search(self.function, mutation.definition or "") is not None
            and re.search(self.operator, mutation.short_operator) is not None
            and re.search(self.text, before) is not None
            and re.search(self.after, after) is not None
        )


_MESSAGE = (
    "only the text of an error changes; the trace language observes error kinds, not messages (R-ERR-003)"
)
_REDUNDANT = ("another check rejects the same input with the same error kind ({}), so the weakened one "
              "changes no observation")  # fmt: skip
_GUARD = "a check of the Python API's arguments: {}; tests/ call it directly"
_BUILDER = (
    "the device-type builder (fields laid out into bytes), which only the catalogue's types go through: "
    "its mutants either lay out the same bytes for them (a wider write overwritten by the next field, a "
    "placement the catalogue does not use) or accept builder input the catalogue never gives; definitions "
    "in the trace are bytes, checked by R-DT-005..R-DT-007 (type-rule-* cases); tests/ check the builder"
)

SURVIVOR_RULES: tuple[SurvivorRule, ...] = (
    # ---- equivalent everywhere
    SurvivorRule(
        "equivalent",
        "dataclass options: the model never assigns to these objects, hashes the "
        "unfrozen ones or relies on slots; eq/compare flags on fields derived from the compared ones",
        ".py",
        operator="True|False",
        text=r"@dataclass\(|field\(default",
    ),
    SurvivorRule(
        "equivalent", "a cache (or its size) around a pure function", "devicetype.py", text=r"@lru_cache"
    ),
    SurvivorRule(
        "equivalent",
        "imports needed for annotations only; importing them at run time changes nothing",
        "devicetype.py",
        text=r"if TYPE_CHECKING",
    ),
    SurvivorRule(
        "equivalent",
        "a @property of a Protocol class (an interface no code calls on the protocol itself)",
        "behaviour.py",
        operator="RemoveDecorator",
    ),
    SurvivorRule(
        "equivalent",
        "a @property of a Protocol class (an interface no code calls on the protocol itself)",
        "topology.py",
        function="^Bus$",
        operator="RemoveDecorator",
    ),
    SurvivorRule(
        "equivalent",
        "Mapping.size is for introspection; the data manager's operations use size_log2",
        "tables.py",
        function="Mapping",
        operator="RemoveDecorator",
    ),
    SurvivorRule(
        "equivalent",
        "the single-page fast path of page storage: when the test is wrong the "
        "byte-by-byte fallback computes the same bytes",
        "behaviour.py",
        function="read|write",
        text=r"if start \+ (length|len\(data\)) <= PAGE_SIZE",
    ),
    SurvivorRule(
        "equivalent",
        "the BDF fields occupy disjoint bits, so + and ^ compute the same as |",
        "bdf.py",
        function="packed",
        operator="BitOr_(Add|BitXor)",
    ),
    SurvivorRule("equivalent", _MESSAGE, ".py", text=r'^\s*(raise\b|f")'),
    SurvivorRule(
        "equivalent",
        "'at' names the byte at fault in the error message only: " + _MESSAGE,
        "header.py",
        text=r"^\s*at, (pointer|offset) = ",
    ),
    SurvivorRule(
        "equivalent",
        "_map_order_difference only lists what a rejected snapshot's map order lacks or repeats, for the "
        "error's message: " + _MESSAGE,
        "manager.py",
        function="^_map_order_difference$",
    ),
    SurvivorRule(
        "equivalent",
        "the revisions a type accepts and where a blob's registers decode a BAR are named in a rejected "
        "restore's message only: " + _MESSAGE,
        "manager.py",
        function="^_instance_from$",
        text=r"^\s*(accepted|why|nonzero) = ",
    ),
    SurvivorRule(
        "equivalent",
        "plugging on a root bus takes only a number that named no bus (a number that names a bridge's "
        "secondary bus puts the instance below that bridge, R-BRG-002), so routing of every other number "
        "is unchanged: a re-route there, or none, rebuilds the same table",
        "manager.py",
        function="^plug$",
        text=r"claims_number",
    ),
    SurvivorRule(
        "equivalent",
        "an unplug that removes no bridge and frees no root bus changes no routing: re-routing there too "
        "rebuilds the same table",
        "manager.py",
        function="^unplug$",
        text=r"if bridges or \(vm\.bridge_count and freed\):",
        after=r"if not bridges or \(vm\.bridge_count and freed\):|"
        r"if bridges or \(vm\.bridge_count or freed\):",
    ),
    SurvivorRule(
        "equivalent",
        "an instance below a bridge never loses its parent, and its root_bus is read only when it has none "
        "(its bus, tree order, the snapshot's BDF, topology rows)",
        "manager.py",
        function="^_restore_tree$",
        text=r"inst\.parent, inst\.root_bus = parent, 0",
    ),
    SurvivorRule(
        "equivalent",
        "bus numbers are register bytes 0-255: no bridge's range holds 256",
        "topology.py",
        function="^route_numbers$",
        text=r"range\(256\)",
        after=r"range\( 257\)",
    ),
    SurvivorRule(
        "equivalent",
        "a window's limit ends in ones below its granularity and its base in zeros, so base == limit never "
        "happens and <= is <",
        "topology.py",
        function="^_open$",
        operator="LtE_Lt",
    ),
    SurvivorRule(
        "equivalent",
        "empty ranges, and adjacent ranges left unmerged, forward exactly the same addresses: every use of "
        "the ranges asks whether an address lies in one",
        "topology.py",
        function="^(normalise|intersect)$",
        text=r"if r\[0\] < r\[1\]|if start < stop:|start <= merged\[-1\]\[1\]",
        after=r"r\[0\] <= r\[1\]|if start <= stop:|start < merged\[-1\]\[1\]",
    ),
    SurvivorRule(
        "equivalent",
        "when both ranges end at one address, advancing either one first gives the same pieces: the next "
        "range of the one advanced starts at or after that end, where the other has nothing left",
        "topology.py",
        function="^intersect$",
        text=r"if a\[i\]\[1\] < b\[j\]\[1\]:",
        after=r"if a\[i\]\[1\] <= b\[j\]\[1\]:",
    ),
    SurvivorRule(
        "equivalent",
        "an I/O window's base is 4 KiB aligned, so the first 1 KiB block is its base whatever low bits "
        "the mutant keeps or sets first (blocks below the base are clipped empty), and the window's last "
        "ports lie in the part of their block ISA enable filters out; ports from 0x10000 are outside the "
        "I/O space no access reaches (R-ACC-002), so the part above 64 KiB changes nothing",
        "topology.py",
        function="^_isa_filtered$",
        text=r"block = start & ~0x3FF|start, stop = window\[0\], window\[1\] \+ 1|"
        r"while block < min\(stop, IO_SPACE_END\)|if stop > IO_SPACE_END:|"
        r"kept\.append\(\(max\(start, IO_SPACE_END\)",
        after=r"block = start (\| ~0x3FF|& \+0x3FF|& -0x3FF|& 0x3FF|& ~ 1024|& ~ 1022)|"
        r"window\[1\] (- 1|\+ 2|\+ 0)$|"
        r"while block <= min|if stop >= IO_SPACE_END|if not stop > IO_SPACE_END|IO_SPACE_END\), stop\)",
    ),
    SurvivorRule(
        "equivalent",
        "one bound of one slice changed makes the two slices compared differ in length, so the test is "
        "always true: a bridge write then always re-routes or re-forwards, which recomputes the same "
        "routes and refiles only BARs whose forwarded pieces changed (none)",
        "manager.py",
        function="^_bridge_config_store$",
        operator="^NumberReplacer$",
        text=r"before\[0x[0-9A-F]+:0x[0-9A-F]+\] != after\[0x[0-9A-F]+:0x[0-9A-F]+\]",
    ),
    SurvivorRule(
        "equivalent",
        "which function beside it a refused single-function function 0 names is in the refusal's message "
        "only: " + _MESSAGE,
        "manager.py",
        function="^multifunction_conflict$",
        text=r'return f"a single-function type at function 0',
    ),
    SurvivorRule(
        "equivalent",
        "no catalogue type has a maskable MSI capability (the suite's irq-sink is built by the conformance "
        "package from the unmutated catalogue), so the per-vector-mask bit is never laid out by the mirror",
        "catalog.py",
        function="^msi64_capability$",
        text=r"0x100 if maskable",
    ),
    SurvivorRule(
        "equivalent",
        "a window register read one byte wider brings in bits above the 0xFFF0 mask, which drops them",
        "topology.py",
        function="^windows$",
        after=r"_le\(config, (MEMORY_BASE|MEMORY_LIMIT|PREF_BASE|PREF_LIMIT), 3\) & 0xFFF0",
    ),
    SurvivorRule(
        "equivalent",
        "a limit's bit 0 kept by the mask lands inside the ones below the window's granularity "
        "(0xFFF, 0xFFFFF) the limit is ORed with; the memory base's bits 3:0 are read-only zero",
        "topology.py",
        function="^windows$",
        after=r"\(config\[IO_LIMIT\] & 241\) << 8 \| 0xFFF|"
        r"\(_le\(config, (MEMORY_LIMIT|PREF_LIMIT), 2\) & 65521\) << 16 \| 0xFFFFF|"
        r"\(_le\(config, MEMORY_BASE, 2\) & 65521\) << 16",
    ),
    SurvivorRule(
        "equivalent",
        "an I/O window base or limit whose upper half is not zero lies above the 64 KiB I/O space "
        "however far the mutant shifts it, so no access tells it apart (ports end at 0xFFFF, R-ACC-002)",
        "topology.py",
        function="^windows$",
        after=r"base \|= _le\(config, IO_BASE_UPPER, 2\) << 17|"
        r"limit \|= _le\(config, IO_LIMIT_UPPER, 2\) << 17",
    ),
    SurvivorRule(
        "equivalent",
        "2 * 0xCFC is 0 modulo 8, so port + 0xCFC has the low three bits of port - 0xCFC: the piece "
        "(its lowest set bit, at most 4) and the offset bits (& 3) come out the same",
        "manager.py",
        function="^_cam_offset_pieces$",
        text=r"distance = port - CFC \+ done",
        after=r"distance = port \+ CFC \+ done",
    ),
    SurvivorRule(
        "equivalent",
        "a run in the 4-byte window starting at distance d holds at most 4 - d bytes, so a piece of d "
        "halved until it fits is the lowest set bit of d (1, 2, or 1 for d = 3)",
        "manager.py",
        function="^_cam_offset_pieces$",
        text=r"distance & -distance",
        after=r"distance & \+?distance$",
    ),
    SurvivorRule(
        "equivalent",
        "the topology section's count is checked against the devices section before the tree is built "
        "(R-BLOB-008), so both sequences zipped have one length",
        "manager.py",
        function="^_restore_tree$",
        text=r"strict=True",
        after=r"strict=False",
    ),
    SurvivorRule(
        "equivalent",
        "resolving every byte of an access is always right (no BAR lies strictly inside an access, and "
        "where the one-byte reset control register may, the access is scanned anyway): scanning more "
        "accesses than needed only costs time",
        "manager.py",
        function="^(split_runs|_route|_io_access)$",
        text=r"scan: bool = False|scan = narrow\.has_reset_control and port <= RESET_CONTROL < port \+ width",
        after=r"scan: bool = True|narrow\.has_reset_control or port|RESET_CONTROL <= port \+ width|"
        r"port < RESET_CONTROL < port \+ width",
    ),
    SurvivorRule(
        "equivalent",
        "resetting a bridge re-routes already (R-BRG-008), so the platform reset's own re-route after "
        "resetting every instance, or one in a VM without bridges, rebuilds the same table",
        "manager.py",
        function="^reset_vm$",
        text=r"if vm\.bridge_count:",
    ),
    SurvivorRule(
        "equivalent",
        "the reset control register is one byte: every run of an access it receives is one byte long, "
        "so its last byte is its first",
        "manager.py",
        function="^_reset_control$",
        text=r"payload\[0\]",
        after=r"payload\[ -1\]",
    ),
    SurvivorRule(
        "equivalent",
        "the command bits tested (I/O, memory) and the bridge control bits tested (ISA, VGA) are in the "
        "register's first byte, whichever width it is read at",
        "topology.py",
        function="^forwarded_ranges$",
        text=r"_le\(config, COMMAND, 2\), _le\(config, BRIDGE_CONTROL, 2\)",
        after=r"_le\(config, COMMAND, [13]\)|_le\(config, BRIDGE_CONTROL, [13]\)",
    ),
    SurvivorRule(
        "equivalent",
        "any value above 0xffff sorts a mapping without a BDF after every BDF, as 0x10000 does",
        "tables.py",
        function="^lowest_bdf_first$",
        after=r"else 65537",
    ),
    SurvivorRule(
        "equivalent",
        "the MSI-X table offset is a multiple of 8 (its low 3 bits name the BAR), so adding or "
        "subtracting it gives the same residue modulo the 16-byte entry",
        "behaviour.py",
        function="^write$",
        text=r"\(offset \+ k - self\.place\.table_offset\) % MSIX_ENTRY_SIZE",
        after=r"\(offset \+ k \+ self\.place\.table_offset\) % MSIX_ENTRY_SIZE",
    ),
    SurvivorRule(
        "equivalent",
        "which pending bit names no vector is in a rejected restore's message only: " + _MESSAGE,
        "behaviour.py",
        function="^check$",
        text=r'return f"MSI-X pending bit',
    ),
    SurvivorRule(
        "equivalent",
        "a PBA with no memory reads zero: taking it as 1 sets only the bit of vector 0, which every "
        "MSI-X capability has, so no bit past the vectors is set either way",
        "behaviour.py",
        function="^check$",
        text=r"if pba else 0",
        after=r"if pba else 1$",
    ),
    SurvivorRule(
        "equivalent",
        "a table with no memory reads zero: taking its Vector Control as 1 instead sets only the mask bit, "
        "which the test for reserved bits leaves out",
        "behaviour.py",
        function="^check$",
        text=r"if table is not None else 0",
        after=r"if table is not None else 1$",
    ),
    SurvivorRule(
        "equivalent",
        "Vector Control's upper three bytes are always stored as zero, so a slice one byte wider writes the "
        "zero the entry already holds there",
        "behaviour.py",
        function="^write$",
        after=r"stored\[k : k \+ 5\]",
    ),
    SurvivorRule(
        "equivalent",
        "the enclosing test already requires offset < span.stop, so offset <= span.stop holds alike",
        "behaviour.py",
        function="^_area$",
        text=r"span\.start <= offset < span\.stop",
        after=r"span\.start <= offset <= span\.stop",
    ),
    SurvivorRule(
        "equivalent",
        "bit 0 of every configuration space is the vendor ID's, read-only: keeping it through a reset keeps "
        "the power-on value it already has",
        "manager.py",
        function="^_reset_instance$",
        text=r"sticky = inst\.dtype\.sticky_bits if keep_sticky else 0",
        after=r"else 1$",
    ),
    SurvivorRule(
        "equivalent",
        "an Instance is given its place right after it is built (root bus and slot at plug, by _take_place "
        "on a restore, by the snapshot restore's tree walk): these defaults are never read",
        "manager.py",
        function="^Instance$",
        text=r"root_bus: int = 0|slot: tuple\[int, int\] = \(0, 0\)",
    ),
    SurvivorRule(
        "equivalent",
        "_digest_text only shows the stored and computed digests in an integrity error's message: "
        + _MESSAGE,
        "blob.py",
        function="^_digest_text$",
    ),
    SurvivorRule(
        "equivalent",
        "struct.unpack_from of one field returns a 1-tuple, whose [-1] is its [0]",
        ".py",
        text=r'unpack_from\("<[A-Z]", [a-z_]+\)\[0\]',
        after=r'unpack_from\("<[A-Z]", [a-z_]+\)\[ -1\]',
    ),
    SurvivorRule(
        "equivalent",
        _REDUNDANT.format(
            "bad-blob: a topology section of just its count field lists no instance, and every snapshot with "
            "a topology section has devices (a bridge at least), so the count check rejects it"
        ),
        "blob.py",
        function="^_topology$",
        text=r"len\(raw\) < 4 or",
        after=r"len\(raw\) (< 5|<= 4) or",
    ),
    SurvivorRule(
        "equivalent",
        "first_fixed_difference only names the byte in a restore's error message: " + _MESSAGE,
        "devicetype.py",
        function="first_fixed_difference",
    ),
    # ---- checks repeated elsewhere
    SurvivorRule(
        "equivalent",
        _REDUNDANT.format("check_space reads the same rule off the declared bytes, which a type always has"),
        "devicetype.py",
        function="^_validate$",
        text=r"vendor_id == 0xFFFF|interrupt_pin > 4|command_mask & ~COMMAND_BITS",
    ),
    SurvivorRule(
        "equivalent",
        _REDUNDANT.format("DeviceType._validate repeats these rules on the fields read off the same bytes"),
        "header.py",
        function="check_space",
        text=r"VENDOR_ID, 2\) == 0xFFFF|INTERRUPT_PIN\] > 4|space\.word\(COMMAND|space\.word\(STATUS",
    ),
    SurvivorRule(
        "equivalent",
        "a type's identity fields are read off its bytes only to be compared with "
        "themselves (from_space) and for the Python API; every observation reads the bytes",
        "devicetype.py",
        function="_space_fields|^_validate$",
        text=r"_space_fields|getattr\(t, name\)",
    ),
    SurvivorRule(
        "equivalent",
        "a size bound moved to a number that is not a power of two (3, 15, 17, 257, 2047): the power-of-two "
        "test still rejects exactly the same sizes",
        "devicetype.py",
        function="_validate_bars",
        after=r"\b(3|15|17|257|2047) <=|<= (257)\b",
    ),
    SurvivorRule(
        "equivalent",
        "BAR register masks are compared with the declared bytes only when a type "
        "is built, where every catalogue and definition byte agrees under both versions; the "
        "manager decodes with the declared bytes",
        "devicetype.py",
        function="bar_wmask|rom_wmask|_header_registers|_check_header_registers|type_bits",
    ),
    SurvivorRule(
        "equivalent",
        "decode_dwords names which dwords can move a BAR; a superset only re-derives "
        "windows that do not change",
        "devicetype.py",
        function="decode_dwords",
    ),
    SurvivorRule(
        "equivalent",
        "fingerprint code for a BAR slot without a BAR: the byte still differs from every BAR kind's",
        "devicetype.py",
        text=r"_BAR_CODES",
    ),
    SurvivorRule(
        "equivalent",
        "the identity and mask fields from_space reads off the bytes are compared only with themselves "
        "(computed by the same function) and serve the Python API; every operation reads the bytes",
        "devicetype.py",
        function="_space_fields",
    ),
    SurvivorRule(
        "equivalent",
        "the latency timer offset is used only by lspci and the importer, which the mutant is not",
        "header.py",
        text="LATENCY_TIMER",
    ),
    SurvivorRule(
        "equivalent",
        "these command bits only make up the builder's default command mask, where bit 0 (and 0x7 for bus "
        "master) is already set, so the union is unchanged",
        "header.py",
        text="CMD_IO, CMD_MEM",
    ),
    SurvivorRule(
        "equivalent",
        "capability pointers are dword aligned (checked first), so below 63 and below 64 are the same test",
        "header.py",
        text="CAPABILITY_AREA = 0x40",
    ),
    SurvivorRule("equivalent", "0 | 4 == 0 + 4", "header.py", text=r"range\(VENDOR_ID, VENDOR_ID \+ 4\)"),
    SurvivorRule(
        "equivalent",
        "capability IDs and versions are found for reporting; no operation reads an extended capability's "
        "ID or version or a standard one's version",
        "header.py",
        function="ChainEntry|extended_chain",
        text=r"version: int = 0|ChainEntry\(offset, header",
        after=r"0xF|0xFFFF|65534|65536|14\)|16\)|>> 1[57]",
    ),
    SurvivorRule(
        "equivalent",
        "a first extended header read as zero only when byte 0x104 is also zero would be walked as an entry "
        "with ID 0 and no next, which no operation reads",
        "header.py",
        function="extended_chain",
        after=r"offset \+ 5\]",
    ),
    SurvivorRule(
        "equivalent",
        "no bit is in both masks (checked first), so XOR gives the same bits as OR",
        "header.py",
        function="check_space",
        operator="BitOr_BitXor",
    ),
    SurvivorRule(
        "equivalent",
        "the range checks reject 0 and 1 already, and n & (n - 2) == 0 holds for exactly the powers of two "
        "from 2",
        "devicetype.py",
        function="_is_pow2",
        after=r"n > -1|n >= 0|n > 1|n - 2\)",
    ),
    SurvivorRule(
        "equivalent",
        "a BAR following a 64-bit one is already rejected by the 64-bit BAR's own check of its next slot",
        "devicetype.py",
        function="_validate_bars",
        text=r"prev := t\.bars",
    ),
    SurvivorRule(
        "equivalent",
        "LAYOUT_FIELDS serves the hand-planted mutants (vpcid.conformance.mutants), not the data manager",
        "devicetype.py",
        text="LAYOUT_FIELDS",
    ),
    SurvivorRule(
        "equivalent",
        _REDUNDANT.format(
            "bad-blob: the walk's later checks (an instance running past the section, bytes after the last "
            "one, an empty instance blob, a section count one short) catch what the moved bound lets by"
        ),
        "blob.py",
        function="_device_entries|_unframe",
        text=r"pos \+ 6|pos != len\(dev\)|len\(blob\) < _HEADER|pos \+ length > size",
    ),
    SurvivorRule(
        "equivalent",
        "flags other than the critical bit are rejected first, so flags // 1 is flags & 1",
        "blob.py",
        function="_unframe",
        operator="BitAnd_FloorDiv",
    ),
    SurvivorRule(
        "equivalent",
        "b'VPCIDBLB' < b'VPCIDVMS': an instance blob's magic is never >= the snapshot magic",
        "blob.py",
        function="frame",
        text=r"magic == SNAPSHOT_MAGIC",
    ),
    SurvivorRule(
        "equivalent",
        "comparing (bar, page) with (bar, page, content) orders exactly as with (bar, page): a tuple's "
        "prefix sorts first",
        "blob.py",
        function="decode_instance",
        after=r"\[: 3\]",
    ),
    SurvivorRule(
        "equivalent",
        "identity and equality agree on enum members, types and the small integers compared here",
        ".py",
        operator=r"^ReplaceComparisonOperator_(Is_Eq|Eq_Is|IsNot_NotEq|NotEq_IsNot)$",
    ),
    SurvivorRule(
        "equivalent",
        "BAR indexes run 0-6, so index >= ROM_INDEX holds only for the ROM",
        "configspace.py",
        after=r"index >= ROM_INDEX",
    ),
    SurvivorRule(
        "equivalent", "a constant nothing used (removed from the model since)", "header.py", text="MAX_CHAIN"
    ),
    SurvivorRule(
        "equivalent",
        "no operation reads a standard capability's version",
        "header.py",
        function="ChainEntry",
        text=r"version: int = 0",
    ),
    SurvivorRule(
        "equivalent", "~stamp is -stamp - 1: the same order", "tables.py", function="last_mapped_first"
    ),
    SurvivorRule(
        "equivalent",
        "the data manager's registry compares fingerprints itself (register_type), so a wrong equality "
        "in the adapter's check of a definition under a known name changes no observation",
        "devicetype.py",
        function="__eq__",
    ),
    # ---- edges and variant paths that no input reaches differently (read against each mutant)
    SurvivorRule(
        "equivalent",
        "edu's value registers are 4-byte runs at offsets 0x00, 0x04 and 0x20 of a 1 MiB BAR, so such a "
        "run is always the last of an access and a fifth byte is a zero above the value's top byte",
        "catalog.py",
        function="^read$",
        text=r"return value\.to_bytes\(4",
        after=r"to_bytes\( 5",
    ),
    SurvivorRule(
        "equivalent",
        "a slice past the end of edu's 8-byte state stops at its end",
        "catalog.py",
        function="^write$",
        text=r"data\.extra\[4:8\]",
        after=r"\[4: 9\]",
    ),
    SurvivorRule(
        "equivalent",
        "edu's status is read unsigned, so <= 0 is == 0",
        "catalog.py",
        function="^check$",
        operator="Eq_LtE",
    ),
    SurvivorRule(
        "equivalent",
        "capability pointers are dword aligned (the chain walk rejects others), so offset | 2 is offset + 2",
        "catalog.py",
        function="config_write",
        operator="Add_BitOr",
        text=r"entry\.offset \+ 2",
    ),
    SurvivorRule(
        "equivalent",
        "clamping a Multiple Message Enable equal to Multiple Message Capable writes the value it holds",
        "catalog.py",
        function="config_write",
        operator="Gt_GtE",
        text="enabled > capable",
    ),
    SurvivorRule(
        "equivalent",
        "I/O BARs are naturally aligned and at least 4 ports, so a window ends at a multiple of 4: "
        "ending at most at 0x10001 is ending at most at 0x10000",
        "configspace.py",
        text=r"IO_SPACE_END = 0x1_0000",
        after="65537",
    ),
    SurvivorRule(
        "equivalent",
        "-0xF and ~14 clear bits 1-3 and keep bit 0, which reads 0 in every memory BAR (its type bits "
        "are those the declared BAR implies, R-DT-005)",
        "configspace.py",
        function="bar_address",
        text=r"low & ~0xF",
        after=r"low & (-0xF|~ 14)",
    ),
    SurvivorRule(
        "equivalent",
        "a naturally aligned window that starts below 2^64 ends at most at 2^64, and a ROM window "
        "(below 0xfffff800, aligned to its size) ends at most at 2^32: a higher limit rejects nothing less",
        "configspace.py",
        text=r"_ADDRESS_LIMITS = |limit = rom & ",
        after=r"2 << (32|64)\b|1 << (33|65)\b",
    ),
    SurvivorRule(
        "equivalent",
        "the I/O and memory enable bits are bits 0 and 1 of the command register: one byte or three "
        "hold the same bits",
        "configspace.py",
        function="decode_window|decode_enabled",
        text=r"read_le\(config, COMMAND, 2\)",
        after=r"COMMAND, [13]\)",
    ),
    SurvivorRule(
        "equivalent",
        "the ROM BAR's value is masked to its low 32 bits; a fifth byte (the capabilities pointer) lies "
        "above them",
        "configspace.py",
        function="decode_window",
        text=r"read_le\(config, ROM_BAR, 4\)",
        after=r"ROM_BAR, 5\)",
    ),
    SurvivorRule(
        "equivalent",
        "the ROM BAR's low byte holds the enable bit only (bits 1-10 read zero and are read-only: the "
        "declared ROM register is the one its size implies, R-DT-005), so two bytes & 1, or the byte "
        "times, divided by, to the power of or shifted by 1, is true exactly when the enable bit is set",
        "configspace.py",
        function="decode_enabled",
        after=r"ROM_BAR, 2\) & 1|ROM_BAR, 1\) (\*|/|//|\*\*|<<) 1\)",
    ),
    SurvivorRule(
        "equivalent",
        "'io' < 'mem32' < 'mem64': <= IO holds for I/O BARs only and >= MEM64 for 64-bit ones only",
        "configspace.py",
        operator=r"Is_(LtE|GtE)",
        after=r"kind <= BarKind\.IO\b|kind >= BarKind\.MEM64\b",
    ),
    SurvivorRule(
        "equivalent",
        "0x30 | 4 and 0x30 ^ 4 are 0x34; one byte more adds 0x34, the capabilities pointer, which is "
        "read-only (R-DT-005), so a write the ignored variant skips there changes nothing anyway",
        "configspace.py",
        function="bar_register_span",
        text=r"range\(ROM_BAR, ROM_BAR \+ 4\)",
        after=r"ROM_BAR (\| 4|\^ 4|\+ 5)\)",
    ),
    SurvivorRule(
        "equivalent",
        "bar_size is asked about implemented BARs only (mapping one, checking a restored window)",
        "configspace.py",
        function="bar_size",
        operator="NumberReplacer",
        text=r"else 0$",
    ),
    SurvivorRule(
        "equivalent",
        "create_vm's default ECAM base: every create_vm operation passes its own (a base, or none)",
        "manager.py",
        text=r"^DEFAULT_ECAM_BASE = ",
    ),
    SurvivorRule(
        "equivalent",
        "mapping stamps are only compared with one another (the last-mapped order, a snapshot's map "
        "order): starting at 0 or 2, or stepping by 2, keeps every order",
        "manager.py",
        text=r"next_stamp(: int = 1| \+= 1)",
        after=r"next_stamp(: int = [02]$| \+= 2$)",
    ),
    SurvivorRule(
        "equivalent",
        "split_runs reuses the first and last bytes' targets instead of resolving them again; "
        "resolving a byte again gives the same target, so a shortcut test that misses changes nothing",
        "manager.py",
        function="split_runs",
        text=r"last = first if width == 1|t = first if a == address else last",
        after=r"width == 0 else|address - width - 1|address \+ width (\+ 1|% 1|- 0)",
    ),
    SurvivorRule(
        "equivalent",
        "under start-address the rest of an access reads as unmapped bytes: a target-less run uses only "
        "its length, and it starts at a boundary aligned to 4 (I/O) or 16 bytes (memory), more than an "
        "access's width, so end ^ start is end - start",
        "manager.py",
        function="split_runs",
        text=r"return \[runs\[0\], \(None, runs\[1\]\[1\]",
        after=r"runs\[ 0\]\[1\]|runs\[1\]\[ 2\]|address \+ width \^ runs",
    ),
    SurvivorRule(
        "equivalent",
        "the one configuration behaviour the suite names (msi-mme-clamp) changes MSI control bits only, "
        "never a BAR register or the command register, so the BARs a write can move are those of the "
        "dword written whether it runs or not; re-deriving more BARs re-derives windows that stay",
        "manager.py",
        function="_config_store",
        text=r"affected = inst\.dtype\.decode_dwords",
        after=r"if not hook is None|if hook is not None",
    ),
    SurvivorRule(
        "equivalent",
        "the enable states before a write are read only under deferred and ignored, and there are none "
        "when no BAR is affected",
        "manager.py",
        function="_config_store",
        text=r"if affected and rule is not BarMoveWhileDecoding\.IMMEDIATE",
        after=r"if affected or rule",
    ),
    SurvivorRule(
        "equivalent",
        "'immediate' > 'ignored' > 'deferred': the mutant also enters the ignored loop under "
        "immediate, where no enable state was read, so the loop skips nothing",
        "manager.py",
        function="_config_store",
        text=r"if rule is BarMoveWhileDecoding\.IGNORED",
        after=r"rule >= BarMoveWhileDecoding\.IGNORED",
    ),
    SurvivorRule(
        "equivalent",
        "the ignored variant skips a decoding BAR's register bytes: a test that also holds when the "
        "write does not overlap them adds offsets the write never reaches",
        "manager.py",
        function="_config_store",
        text=r"if enabled and reg\.start < end and offset < reg\.stop",
        after=r"reg\.start (!=|<=|is not) end|offset (!=|<=|is not) reg\.stop",
    ),
    SurvivorRule(
        "equivalent",
        "the one configuration behaviour the suite names (msi-mme-clamp) never resizes the space",
        "manager.py",
        function="_run_config_behaviour",
        text=r"if len\(scratch\) != len\(merged\)",
        after=r"len\(scratch\) > len\(merged\)",
    ),
    SurvivorRule(
        "equivalent",
        "bit 0 of every layout is fixed (the vendor ID is read-only), so -fixed is ~fixed with bit 0 "
        "set, and there the behaviour's space equals the merged one (msi-mme-clamp changes MSI bits only)",
        "manager.py",
        function="_run_config_behaviour",
        text=r"& ~fixed",
        after=r"& -fixed",
    ),
    SurvivorRule(
        "equivalent",
        "a type has at most 6 BAR slots, so dtype.bar(6) (and above) is None, as for the ROM",
        "manager.py",
        function="^_table$|_instance_from",
        text=r"if index != ROM_INDEX else None|if bar_index < 6 else None",
        after=r"index <= ROM_INDEX|bar_index <= 6|bar_index < 7",
    ),
    SurvivorRule(
        "equivalent",
        "0xCF8 is cleared after a data access only under clear: 'keep' > 'clear', so <= CLEAR holds "
        "for clear only",
        "manager.py",
        function="_io_access",
        operator="Is_LtE",
    ),
    SurvivorRule(
        "equivalent",
        "0xCF8 holds 32 bits: a fifth byte is a zero above its top byte",
        "manager.py",
        function="_cf8_access",
        text=r"vm\.cf8\.to_bytes\(4",
        after=r"to_bytes\( 5",
    ),
    SurvivorRule(
        "equivalent",
        "windows are unsigned 64-bit numbers (> 0 is != 0, % size <= 0 is == 0) and multiples of their "
        "size: base | size is at most the limit exactly when base + size is (both powers of two, the "
        "size below the limit)",
        "manager.py",
        function="_instance_from",
        text=r"ok = base is None or \(base != 0",
        after=r"base > 0|% size <= 0|base \| size",
    ),
    SurvivorRule(
        "equivalent",
        "the bytes past a BAR's end matter only on page 0 of a BAR smaller than a page (the offset is "
        "then its size, at least 16); a page at the BAR's end is rejected anyway: past_end is then the "
        "whole page, and a blob holds no all-zero page (bad-blob)",
        "manager.py",
        function="_instance_from",
        text=r"past_end = content\[max\(0|page \* PAGE_SIZE >= bar_spec\.size",
        after=r"max\( -?1,|size \+ page \* PAGE_SIZE|page \* PAGE_SIZE > bar_spec",
    ),
    SurvivorRule(
        "equivalent",
        "a snapshot holds the ECAM base in 64 bits and an unaligned base is rejected first: the largest "
        "aligned 64-bit base is 2^64 - 256 MiB, so no base lies above the bound, however it is moved",
        "manager.py",
        function="restore_vm",
        text=r"rec\.ecam_base > \(1 << 64\) - ECAM_SIZE",
        after=r"is \(1 << 64\)|\( 2 << 64\)|1 << 65\)|\(1 << 64\) \+ ECAM_SIZE",
    ),
    SurvivorRule(
        "equivalent",
        "priority keys are unique per mapping (BDF and BAR, or the mapping's stamp), so < and <= agree",
        "tables.py",
        function="lookup",
        operator="Lt_LtE",
    ),
    SurvivorRule(
        "equivalent",
        "frame's * marker turned into /: its first parameters become positional-only and the others may "
        "also be passed by position; every caller still passes them as it did",
        "blob.py",
        function="^frame$",
        text=r"^\s*\*,$",
        after=r"^\s*/,$",
    ),
    # ---- Python API guards the trace language cannot reach
    SurvivorRule(
        "api-guard",
        _GUARD.format("the trace language carries BDF fields in range and blobs carry 16-bit packed BDFs"),
        "bdf.py",
        function="__new__|unpack|^Bdf$",
    ),
    SurvivorRule(
        "api-guard", _GUARD.format("profiles reach the data manager from a validated manifest"), "profile.py"
    ),
    SurvivorRule(
        "api-guard",
        _GUARD.format("VM ids in the trace language are integers"),
        "manager.py",
        function="^_vm$",
    ),
    SurvivorRule(
        "api-guard",
        _GUARD.format(
            "the device-type file schema gives names of 1-255 characters, "
            "integers for every field and tuples; a definition cannot carry another Python type"
        ),
        "devicetype.py",
        function="^_validate$|_check_field|^$",
        text=r"type\(|isinstance|_FIELD_BITS|for name|hook",
    ),
    SurvivorRule(
        "api-guard",
        _GUARD.format(
            "a wider field width lets the builder take a larger identity or mask value, while a definition's "
            "fields are read off its bytes and always fit their registers"
        ),
        "devicetype.py",
        function="^$",
        text=r'\("(vendor_id|device_id|class_code|revision|subsystem_vendor_id|subsystem_id|interrupt_pin|'
        r'command_mask|status_rw1c)", \d+\)',
    ),
    SurvivorRule(
        "api-guard",
        _GUARD.format("the three arrays of a definition always have one length (the schema's config size)"),
        "header.py",
        function="__post_init__",
    ),
    # ---- the builder
    SurvivorRule(
        "builder",
        _BUILDER,
        "devicetype.py",
        function="_build|^put|put_body|_place|_check_capability|^Register$|__post_init__",
    ),
    SurvivorRule(
        "builder", _BUILDER, "devicetype.py", function="^_validate$", text=r"t\.capabilities or t\.registers"
    ),
)
"""Why the survivors of ``vpcid mutate`` on the model survive; the first rule that covers a survivor
classifies it (:func:`classify`). A survivor no rule covers is a gap."""


def classify(mutation: Mutation, diff: str, rules: Sequence[SurvivorRule] = ()) -> SurvivorRule | None:
    """The first of ``rules`` (default :data:`SURVIVOR_RULES`) that covers a survivor, or None."""
    for rule in rules or SURVIVOR_RULES:
        if rule.covers(mutation, diff):
            return rule
    return None


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " / ")


def survivor_table(summary: Summary, rules: Sequence[SurvivorRule] = ()) -> list[str]:
    """Markdown: per verdict the count, then every survivor that ran with its verdict and reason, and
    the not-executed ones grouped by file and function."""
    ran = [(m, d or m.diff()) for m, out, d in summary.survivors if not out.startswith("not executed")]
    verdicts = [(m, d, classify(m, d, rules)) for m, d in sorted(ran, key=lambda s: (s[0].path, s[0].start))]
    counts = Counter(r.kind if r is not None else "gap" for _, _, r in verdicts)
    lines = ["| verdict | survivors |", "| --- | ---: |"]
    lines += [f"| {kind} | {count} |" for kind, count in sorted(counts.items())]
    lines += ["", "| mutant | change | verdict | why |", "| --- | --- | --- | --- |"]
    for mutation, diff, rule in verdicts:
        where = f"`{mutation.path.rsplit('/', 1)[-1]}:{mutation.start[0]}` {mutation.definition or ''}"
        change = " → ".join(f"`{_cell(line[1:].strip())}`" for line in diff.splitlines() if line[:1] in "+-")
        kind, why = (rule.kind, rule.reason) if rule is not None else ("gap", "not killed yet")
        lines.append(f"| {where} {mutation.short_operator} | {change} | {kind} | {_cell(why)} |")
    names: dict[str, dict[int, str]] = {}

    def where_defined(m: Mutation) -> str:
        if m.path not in names:
            names[m.path] = qualified_names((project_root() / m.path).read_text(encoding="utf-8"))
        return names[m.path].get(m.start[0], "(module)")

    idle = Counter(
        (m.path, where_defined(m)) for m, out, _ in summary.survivors if out.startswith("not executed")
    )
    lines += ["", "| not executed: file | function | mutants |", "| --- | --- | ---: |"]
    lines += [f"| `{path}` | {function} | {count} |" for (path, function), count in sorted(idle.items())]
    return lines


TABLE_START = "<!-- survivors: vpcid mutate --markdown -->"
TABLE_END = "<!-- /survivors -->"


def write_table(path: Path, summary: Summary) -> None:
    """Replace what lies between :data:`TABLE_START` and :data:`TABLE_END` in ``path`` with the
    survivor table; :class:`MutationError` when the file or its markers are missing."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MutationError(f"cannot read {path}: {exc.strerror or exc}") from exc
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < start:
        raise MutationError(
            f"{path} has no lines {TABLE_START} and {TABLE_END} (in that order) to write between"
        )
    table = "\n".join(survivor_table(summary))
    path.write_text(f"{text[: start + len(TABLE_START)]}\n{table}\n{text[end:]}", encoding="utf-8")


def survivor_lines(summary: Summary, include_not_executed: bool = True) -> list[str]:
    """One block per survivor: place, operator, the changed lines and how it was judged."""
    lines: list[str] = []
    for mutation, output, diff in sorted(summary.survivors, key=lambda s: (s[0].path, s[0].start)):
        if not include_not_executed and output.startswith("not executed"):
            continue
        where = f"{mutation.path}:{mutation.start[0]}"
        lines.append(f"{where} {mutation.short_operator} #{mutation.occurrence} in {mutation.definition}")
        lines += [f"    {line}" for line in (diff or mutation.diff()).splitlines()]
    return lines


# ----------------------------------------------------------------- the command


def _mutate_command() -> Any:
    import click

    @click.command(
        "mutate",
        short_help="Mutation-test the model (or the Cython backend's Python parts) with cosmic-ray.",
        epilog=(
            "\b\nExamples:\n"
            "  vpcid mutate --jobs 2                        # every mutant of model/ (long: opt-in)\n"
            "  vpcid mutate --only model/vpcid/model/tables.py --limit 50\n"
            "  vpcid mutate --changed-since v1.0 --first-pass   # only mutants of what changed since\n"
            "  vpcid mutate --target cython --session cy.sqlite\n"
            "  vpcid mutate --report --survivors            # what the last run left alive\n"
            "  cr-report mutation-model.sqlite              # cosmic-ray's own report of the session\n"
            "\b\nExit status:\n  0  the session ran (or was reported)\n"
            "  2  bad input: an option, a file outside the target, cosmic-ray missing\n"
            "  3  the target cannot run on this machine (the reason is printed)"
        ),
    )
    @click.option("--target", "target_name", type=click.Choice(sorted(TARGETS)), default="model",
                  show_default=True, help="model: the mutated model; cython: the compiled backend "
                  "calling the mutated Python parts it relies on.")  # fmt: skip
    @click.option("--session", "session_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="cosmic-ray session database (default: mutation-TARGET.sqlite here); a run resumes "
                  "its pending mutants.")  # fmt: skip
    @click.option("--fresh", is_flag=True, help="Start the session over (cosmic-ray init again).")
    @click.option("--only", "only", multiple=True, metavar="FILE",
                  help="Judge only mutants of this repository file (repeatable); a new session then "
                  "holds only these files' mutants.")  # fmt: skip
    @click.option("--changed-since", "changed_since", metavar="REV", default=None,
                  help="Judge and report only mutants on lines added or changed since this git revision "
                  "(the checkout's working tree against it): a grown model measured without judging "
                  "again what an earlier session judged.")  # fmt: skip
    @click.option("--limit", type=click.IntRange(min=1), default=None, help="Judge at most N mutants.")
    @click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
                  help="Mutants certified at once (one process each).")  # fmt: skip
    @click.option("--budget", default=DEFAULT_BUDGET, show_default=True, type=click.IntRange(min=100),
                  help="Certification budget per mutant (random-engine operations).")  # fmt: skip
    @click.option("--seed", default=DEFAULT_SEED, show_default=True, type=int)
    @click.option("--timeout", default=DEFAULT_TIMEOUT, show_default=True, type=click.FloatRange(min=1),
                  help="Seconds per mutant before it counts as killed (a hang).")  # fmt: skip
    @click.option("--first-pass", "first_pass_only", is_flag=True,
                  help="Judge only the first pass: one replacement per binary or comparison operator site "
                  "(the opposite, or the boundary) and every other operator's mutants.")  # fmt: skip
    @click.option("--profiles", "profile_set", type=click.Choice(["default", "all"]), default="all",
                  show_default=True, help="Certify each mutant declaring the default profile only, or also "
                  "one profile per other value of each variant axis, the rest default.")  # fmt: skip
    @click.option("--recheck", is_flag=True,
                  help="Judge the survivors again (after adding cases), not pending mutants.")  # fmt: skip
    @click.option("--gaps", "gaps_only", is_flag=True,
                  help="With --recheck: judge again only the survivors no survivor rule classifies (the "
                  "gaps), not those classified equivalent, API guards or builder.")  # fmt: skip
    @click.option("--report", "report_only", is_flag=True, help="Only report the session; run nothing.")
    @click.option("--survivors", is_flag=True, help="List every survivor that ran, with its diff.")
    @click.option("--markdown", "markdown_file", default=None,
                  type=click.Path(dir_okay=False, path_type=Path),
                  help="Write the survivors' classification table into this Markdown file, between the "
                  f"lines {TABLE_START} and {TABLE_END}.")  # fmt: skip
    @click.option("--not-executed", "list_idle", is_flag=True,
                  help="With --survivors: also list mutants on lines certification never runs.")  # fmt: skip
    def mutate_command(
        target_name: str,
        session_path: Path | None,
        fresh: bool,
        only: tuple[str, ...],
        changed_since: str | None,
        limit: int | None,
        jobs: int,
        budget: int,
        seed: int,
        timeout: float,
        first_pass_only: bool,
        profile_set: str,
        recheck: bool,
        gaps_only: bool,
        report_only: bool,
        survivors: bool,
        markdown_file: Path | None,
        list_idle: bool,
    ) -> None:
        """Mutation-test the model with cosmic-ray: each mutant certified against the pristine model.

        cosmic-ray enumerates the mutants of the target's files into a session
        database; each one is loaded as a separate package (vpcid_mutant.model)
        and certified at the default budget against the unmutated model. A
        mutant certification rejects is killed. Mutations inside annotations
        are equivalent and skipped; those on lines the unmutated certification
        never runs survive without a run. Opt-in: a whole run of model/ takes
        a long time; it resumes where it stopped.
        """
        target = target_named(target_name)
        if gaps_only and not recheck:
            raise MutationError("--gaps goes with --recheck (it selects survivors to judge again)")
        unknown = sorted(set(only) - set(target.files))
        if unknown:
            known = ", ".join(target.files)
            raise MutationError(
                f"--only {', '.join(unknown)}: not a file of target {target.name!r} ({known})"
            )
        if not report_only:
            reason = target.available()
            if reason is not None:
                click.echo(f"vpcid: target {target.name!r} cannot run here: {reason}", err=True)
                raise SystemExit(3)
        path = session_path or Path(f"mutation-{target.name}.sqlite")
        if report_only and not path.exists():
            raise MutationError(f"no mutation session at {path}; run vpcid mutate first")
        lines = None if changed_since is None else changed_lines(changed_since, only or target.files)
        session = Session.open(path, target, fresh and not report_only, only, lines)
        try:
            if report_only:
                summary = session.summary()
            else:

                def show(mutation: Mutation, judgement: Judgement) -> None:
                    state = "killed" if judgement.killed else "SURVIVED"
                    click.echo(f"{state:8} {mutation.path}:{mutation.start[0]} {mutation.short_operator} "
                               f"#{mutation.occurrence}: {judgement.how}: {judgement.reason}")  # fmt: skip

                profiles = declared_profiles() if profile_set == "all" else (Profile(),)
                settings = Settings(budget, seed, profiles, timeout)
                summary = run_session(
                    session, settings, jobs, limit, only, show, first_pass_only, recheck, gaps_only
                )
            if lines is not None:
                count = sum(len(found) for found in lines.values())
                click.echo(f"only mutants on the {count} lines changed since {changed_since}")
            click.echo("\n".join(summary_lines(summary, target)))
            if survivors:
                click.echo("\nsurvivors:")
                click.echo("\n".join(survivor_lines(summary, list_idle)))
            if markdown_file is not None:
                write_table(markdown_file, summary)
                click.echo(f"survivors' classification written to {markdown_file}")
        finally:
            session.close()

    return mutate_command


MUTATE_COMMAND = _mutate_command()
"""``vpcid mutate``, attached to the command group by :mod:`vpcid.conformance.cli`."""
