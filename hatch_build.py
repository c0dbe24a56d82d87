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

The module hashes blobs in C. Where a small probe program compiles against
``<openssl/sha.h>`` and links with ``-lcrypto``, the module is built with
``VPCID_LIBCRYPTO`` and links libcrypto, so it can use OpenSSL's SHA-256
block function on CPUs without the SHA extensions; otherwise (or with
``VPCID_NO_LIBCRYPTO=1``) it is built without, and uses its portable C code
there. Either way the build goes on.

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
NO_LIBCRYPTO_ENV = "VPCID_NO_LIBCRYPTO"
LIBCRYPTO_PROBE = """\
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <openssl/sha.h>
int main(void) {
    SHA256_CTX c;
    unsigned char block[64] = {0};
    SHA256_Init(&c);
    SHA256_Transform(&c, block);
    return (int)(c.h[0] & 1);
}
"""
"""What the module needs from libcrypto: the header, the block function, the chaining words, the library."""
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


def _libcrypto_problem(compiler: Any, work_dir: Path) -> str | None:
    """Why the module cannot use libcrypto here (the probe's first error line), or None when it can."""
    if os.environ.get(NO_LIBCRYPTO_ENV):
        return f"{NO_LIBCRYPTO_ENV} is set"
    probe_dir = work_dir / "probe"
    probe_dir.mkdir(parents=True, exist_ok=True)
    source = probe_dir / "libcrypto_probe.c"
    source.write_text(LIBCRYPTO_PROBE)
    try:
        objects = compiler.compile(
            [str(source)], output_dir=str(probe_dir), extra_postargs=["-Werror=implicit-function-declaration"]
        )
        compiler.link_executable(objects, "libcrypto_probe", output_dir=str(probe_dir), libraries=["crypto"])
    except Exception as exc:  # CompileError, LinkError: any failure means "build without"
        text = str(exc).strip()
        return text.splitlines()[0] if text else type(exc).__name__
    return None


def build_extension(output_dir: Path, work_dir: Path, notes: list[str] | None = None) -> Path:
    """Cythonize and compile the module into ``output_dir``; return the built file.

    Raises :class:`SkipBuild` when the machine cannot build it. ``notes`` gets
    one line saying whether the module links libcrypto.
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

        problem: list[str] = []  # why the module does not link libcrypto ("" when it does)

        class BuildExt(build_ext):  # type: ignore[misc]
            """Decides on libcrypto with the very compiler that builds the module."""

            def build_extensions(self) -> None:
                problem.append(_libcrypto_problem(self.compiler, work_dir) or "")
                for ext in self.extensions:
                    if not problem[0]:
                        ext.define_macros.append(("VPCID_LIBCRYPTO", "1"))
                        ext.libraries.append("crypto")
                super().build_extensions()

        command = BuildExt(Distribution({"name": "vpcid-cython-backend", "ext_modules": modules}))
        command.build_lib = str(output_dir)
        command.build_temp = str(work_dir / "obj")
        command.ensure_finalized()
        try:
            command.run()
        except (CCompilerError, CompileError, LinkError, ExecError, PlatformError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SkipBuild(f"C compilation failed: {first}") from None
        if notes is not None and problem:
            notes.append(
                f"SHA-256: without libcrypto ({problem[0]})" if problem[0] else "SHA-256: links libcrypto"
            )
        return Path(command.get_ext_fullpath(MODULE))


def build_in_place(notes: list[str] | None = None) -> Path:
    """Compile next to the ``.pyx`` (editable installs and ``python hatch_build.py``).

    The new module is copied beside the old one and renamed over it, so a process that has the old
    one loaded keeps its (unlinked) file intact: overwriting a loaded shared object in place would
    crash that process.
    """
    with tempfile.TemporaryDirectory(prefix="vpcid-cython-") as tmp:
        built = build_extension(Path(tmp, "lib"), Path(tmp), notes)
        target = PACKAGE_DIR / built.name
        staged = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            shutil.copy2(built, staged)
            os.replace(staged, target)
        finally:
            staged.unlink(missing_ok=True)
        return target


class CythonBuildHook(BuildHookInterface):  # type: ignore[misc]
    """Compiles the Cython backend during wheel and editable builds; never fails the install."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        self._tmp: str | None = None
        notes: list[str] = []
        try:
            if version == "editable":
                built = build_in_place(notes)
                self.app.display_info(
                    f"vpcid: built the Cython backend in place: {built.name} ({', '.join(notes)})"
                )
                return
            self._tmp = tempfile.mkdtemp(prefix="vpcid-cython-")
            built = build_extension(Path(self._tmp, "lib"), Path(self._tmp), notes)
        except SkipBuild as exc:
            self.app.display_warning(
                f"vpcid: Cython backend not built ({exc}); the 'cython' adapter will report it unavailable"
            )
            return
        build_data["force_include"][str(built)] = f"{WHEEL_DIR}/{built.name}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        self.app.display_info(f"vpcid: built the Cython backend: {built.name} ({', '.join(notes)})")

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        build_notes: list[str] = []
        print(f"built {build_in_place(build_notes)} ({', '.join(build_notes)})")
    except SkipBuild as exc:
        print(f"vpcid: Cython backend not built: {exc}", file=sys.stderr)
        sys.exit(1)
