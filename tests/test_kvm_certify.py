"""Certification of the KVM adapter: every guest access on a real vCPU, compared with the model."""

from __future__ import annotations

import time

import pytest
from vpcid.adapters.base import AdapterUnavailable
from vpcid.adapters.kvm import adapter, adapter_cython, kvmapi
from vpcid.conformance.certify import DEFAULT_BUDGET, certify
from vpcid.model import Profile

REASON = kvmapi.unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"KVM unavailable: {REASON}")


def test_kvm_certifies_at_the_default_budget() -> None:
    impl = adapter(None)
    try:
        started = time.perf_counter()
        report = certify(impl)
        failing = [r.rid for r in report.requirements if r.verdict.value == "fail"]
        assert report.conformant, f"failing: {failing}; errors: {report.errors}"
        assert report.budget == DEFAULT_BUDGET
        assert report.engines["random"]["operations"] >= DEFAULT_BUDGET
        assert impl.stats["aperture"]
        assert impl.stats["configuration window"]
        assert impl.stats["split accesses"]
        assert time.perf_counter() - started < 600
    finally:
        impl.close()


def test_kvm_plus_cython_certifies() -> None:
    try:
        impl = adapter_cython(None)
    except AdapterUnavailable as exc:
        pytest.skip(f"kvm+cython unavailable: {exc}")
    try:
        report = certify(impl, budget=10_000)
        assert report.conformant, [r.rid for r in report.requirements if r.verdict.value == "fail"]
    finally:
        impl.close()


@pytest.mark.parametrize(
    ("argument", "manifest"),
    [
        ("cpl=3", {}),
        (
            None,
            {
                "alignment": "natural",
                "cf8_extended": "extends",
                "cf8_after_access": "clear",
                "straddle": "reject",
            },
        ),
        (
            None,
            {
                "alignment": "natural",
                "cf8_low_bits": "latched",
                "straddle": "start-address",
                "unmapped_mmio_read": "zeros",
                "bar_move_while_decoding": "deferred",
                "overlap": "last-mapped",
                "status": "read-only",
            },
        ),
    ],
    ids=["user-mode-guest", "profile-a", "profile-b"],
)
def test_kvm_certifies_in_other_profiles_and_at_cpl3(argument: str | None, manifest: dict[str, str]) -> None:
    impl = adapter(argument)
    if manifest:
        impl.close()
        from vpcid.adapters.kvm import KvmAdapter

        impl = KvmAdapter("kvm", Profile.from_mapping(manifest))
    try:
        report = certify(impl, budget=3_000)
        assert report.conformant, [r.rid for r in report.requirements if r.verdict.value == "fail"]
    finally:
        impl.close()
