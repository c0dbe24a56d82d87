"""Hatchling build hook: compile the Cython backend ``vpcid.adapters.cython._dm``.

Runs on every wheel build, which is also what ``pip install .`` and
``pip install -e .`` do:

* editable installs put ``model/``, ``conformance/`` and ``adapters/`` on
  ``sys.path``, so the module is compiled in place, next to ``_dm.pyx``;
* regular wheels get the compiled module force-included and a platform tag.

The C file Cython generates and the object files live in a temporary
directory, so nothing generated lands in the source tree except the ``.so``
of an editable install (ignored by ``*.so`` in .gitignore).

Without a working C compiler (or Python headers, or Cython) the install does
not fail: the hook logs one line and skips the extension; ``vpcid adapters``
then reports the backend unavailable with the reason. ``VPCID_NO_CYTHON=1``
skips the build on purpose.

Run directly (``python hatch_build.py``) to rebuild the in-place module after
editing the ``.pyx`` without reinstalling; this needs Cython and setuptools.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # run as a script, outside a build
    BuildHookInterface = object

ROOT = Path(__file__).resolve().parent
MODULE = "vpcid.adapters.cython._dm"
SOURCE = Path("adapters", "vpcid", "adapters", "cython", "_dm.pyx")
PACKAGE_DIR = ROOT / SOURCE.parent
WHEEL_DIR = "vpcid/adapters/cython"
SKIP_ENV = "VPCID_NO_CYTHON"
COMPILE_ARGS = ["-O3", "-Wno-unused-function", "-Wno-unreachable-code"]
DIRECTIVES = {"language_level": "3", "boundscheck": False, "wraparound": False, "cdivision": True}


class SkipBuild(Exception):
    """The extension cannot be built here; the message is the one-line reason."""


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _check_compiler() -> None:
    """Fail fast, with a clear reason, when there is no C compiler or no Python headers."""
    compiler = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    program = shlex.split(compiler)[0] if compiler.strip() else "cc"
    if shutil.which(program) is None:
        raise SkipBuild(f"no C compiler found (looked for {program!r}; set CC or install gcc)")
    include = sysconfig.get_paths().get("include")
    if not include or not Path(include, "Python.h").is_file():
        raise SkipBuild(f"Python headers not found (no Python.h in {include}; install python3-dev)")


def build_extension(output_dir: Path, work_dir: Path) -> Path:
    """Cythonize and compile the module into ``output_dir``; return the built file.

    Raises :class:`SkipBuild` when the machine cannot build it.
    """
    if os.environ.get(SKIP_ENV):
        raise SkipBuild(f"{SKIP_ENV} is set")
    _check_compiler()
    try:
        from Cython.Build import cythonize
        from setuptools import Distribution, Extension
        from setuptools.command.build_ext import build_ext
        from setuptools.errors import CCompilerError, CompileError, ExecError, LinkError, PlatformError
    except ImportError as exc:
        raise SkipBuild(f"build requirement missing: {exc}") from None
    with _cwd(ROOT):
        extension = Extension(MODULE, [str(SOURCE)], extra_compile_args=COMPILE_ARGS)
        try:
            modules = cythonize(
                [extension], build_dir=str(work_dir / "c"), compiler_directives=DIRECTIVES, quiet=True
            )
        except Exception as exc:  # Cython reports compile errors as exceptions
            raise SkipBuild(f"Cython failed: {exc}") from None
        command = build_ext(Distribution({"name": "vpcid-cython-backend", "ext_modules": modules}))
        command.build_lib = str(output_dir)
        command.build_temp = str(work_dir / "obj")
        command.ensure_finalized()
        try:
            command.run()
        except (CCompilerError, CompileError, LinkError, ExecError, PlatformError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SkipBuild(f"C compilation failed: {first}") from None
        return Path(command.get_ext_fullpath(MODULE))


def build_in_place() -> Path:
    """Compile next to the ``.pyx`` (editable installs and ``python hatch_build.py``)."""
    with tempfile.TemporaryDirectory(prefix="vpcid-cython-") as tmp:
        built = build_extension(Path(tmp, "lib"), Path(tmp))
        target = PACKAGE_DIR / built.name
        shutil.copy2(built, target)
        return target


class CythonBuildHook(BuildHookInterface):  # type: ignore[misc]
    """Compiles the Cython backend during wheel and editable builds; never fails the install."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        self._tmp: str | None = None
        try:
            if version == "editable":
                built = build_in_place()
                self.app.display_info(f"vpcid: built the Cython backend in place: {built.name}")
                return
            self._tmp = tempfile.mkdtemp(prefix="vpcid-cython-")
            built = build_extension(Path(self._tmp, "lib"), Path(self._tmp))
        except SkipBuild as exc:
            self.app.display_warning(
                f"vpcid: Cython backend not built ({exc}); the 'cython' adapter will report it unavailable"
            )
            return
        build_data["force_include"][str(built)] = f"{WHEEL_DIR}/{built.name}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        self.app.display_info(f"vpcid: built the Cython backend: {built.name}")

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        print(f"built {build_in_place()}")
    except SkipBuild as exc:
        print(f"vpcid: Cython backend not built: {exc}", file=sys.stderr)
        sys.exit(1)
