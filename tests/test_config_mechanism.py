"""Configuration mechanism #1: the 0xCF8 address register and the 0xCFC-0xCFF data window (R-CAM-*)."""

from __future__ import annotations

import pytest
from conftest import VM, Recorder, enable, program_bar
from vpcid.model import (
    BarKind,
    BarSpec,
    Bdf,
    DataManager,
    DeviceType,
    Profile,
    Register,
    RegisterClass,
)
from vpcid.model.catalog import A100, E1000, EDU, NVME
from vpcid.model.profile import Cf8AfterAccess, Cf8Extended, Cf8LowBits, Straddle

CF8, CFC = 0xCF8, 0xCFC
ENABLE = 0x8000_0000
CMD_IO, CMD_MEM = 0x1, 0x2

MASKED = Profile()
LATCHED = Profile(cf8_low_bits=Cf8LowBits.LATCHED)
EXTENDS = Profile(cf8_extended=Cf8Extended.EXTENDS)
LATCHED_EXTENDS = Profile(cf8_low_bits=Cf8LowBits.LATCHED, cf8_extended=Cf8Extended.EXTENDS)
LATCHED_IGNORED = LATCHED
CLEAR = Profile(cf8_after_access=Cf8AfterAccess.CLEAR)

EXPRESS = DeviceType(
    name="express-regs",
    vendor_id=0x1B36,
    device_id=0x0030,
    class_code=0xFF0000,
    registers=(
        Register(0x104, 4, RegisterClass.RW, 0xCAFE_BABE),
        Register(0xFFC, 4, RegisterClass.RO, 0x1234_5678),
    ),
    express=True,
)
"""A PCI Express function with registers beyond 0xFF: RW at 0x104, RO at 0xFFC."""


def manager(profile: Profile = MASKED) -> DataManager:
    dm = DataManager(profile)
    dm.create_vm(VM)
    return dm


def address(bdf: Bdf, register: int, enable_bit: bool = True) -> int:
    """The 0xCF8 value selecting ``register`` (bits 7:2, plus 11:8 in bits 27:24) of ``bdf``."""
    return (ENABLE if enable_bit else 0) | ((register >> 8) & 0xF) << 24 | bdf.packed << 8 | (register & 0xFC)


def cam_read(dm: DataManager, bdf: Bdf, register: int, width: int = 4) -> int:
    dm.io_write(VM, CF8, 4, address(bdf, register))
    return dm.io_read(VM, CFC + (register & 3), width)


NIC = Bdf(3, 0x1F, 7)
"""An e1000 away from 00:00.0, so that every bus/device/function bit matters."""


@pytest.fixture
def nic() -> DataManager:
    dm = manager()
    dm.plug(VM, NIC, E1000)
    return dm


# ----------------------------------------------------------------- R-CAM-001: 0xCF8 is a dword register


@pytest.mark.req("R-CAM-001", "R-CAM-003")
def test_dword_access_at_0xcf8_reaches_the_address_register(nic: DataManager) -> None:
    dm = nic
    dm.io_write(VM, CF8, 4, address(NIC, 0x08))
    assert dm.io_read(VM, CF8, 4) == address(NIC, 0x08)
    assert dm.cf8(VM) == address(NIC, 0x08)
    assert dm.io_read(VM, CFC, 4) == 0x0200_0002  # class 0x020000, revision 2


@pytest.mark.req("R-CAM-001")
@pytest.mark.parametrize(
    ("port", "width"), [(0xCF8, 1), (0xCF9, 1), (0xCFA, 1), (0xCFB, 1), (0xCF8, 2), (0xCFA, 2)]
)
def test_sub_dword_accesses_to_0xcf8_0xcfb_are_unmapped(nic: DataManager, port: int, width: int) -> None:
    dm = nic
    dm.io_write(VM, CF8, 4, address(NIC, 0x00))
    dm.io_write(VM, port, width, 0)
    dm.io_write(VM, port, width, (1 << (8 * width)) - 1)
    assert dm.cf8(VM) == address(NIC, 0x00)
    assert dm.io_read(VM, port, width) == (1 << (8 * width)) - 1
    assert dm.io_read(VM, CF8, 4) == address(NIC, 0x00)
    assert dm.io_read(VM, CFC, 4) == 0x100E_8086


@pytest.mark.req("R-CAM-001", "R-ACC-005")
def test_unaligned_dword_over_0xcf8_is_unmapped_there_and_a_data_access_in_the_window(
    nic: DataManager,
) -> None:
    dm = nic
    dm.io_write(VM, CF8, 4, address(NIC, 0x3C))
    # 0xCF9-0xCFB are unmapped; 0xCFC is byte 0 of the selected register.
    assert dm.io_read(VM, 0xCF9, 4) == 0x00FF_FFFF  # interrupt line 0
    dm.io_write(VM, 0xCF9, 4, 0x0B00_0000)
    assert dm.cf8(VM) == address(NIC, 0x3C)
    assert dm.config_read(VM, NIC, 0x3C, 1) == 0x0B
    # 0xCF6-0xCF9: nothing decodes any of it, 0xCF8 does not change.
    assert dm.io_read(VM, 0xCF6, 4) == 0xFFFF_FFFF
    dm.io_write(VM, 0xCF6, 4, 0)
    assert dm.cf8(VM) == address(NIC, 0x3C)


# ------------------------------------------------------------------------ R-CAM-002: what 0xCF8 keeps


@pytest.mark.req("R-CAM-002", "R-CAM-003")
@pytest.mark.parametrize(
    ("profile", "written", "kept"),
    [
        (MASKED, 0xFFFF_FFFF, 0x80FF_FFFC),
        (MASKED, 0x7F00_0003, 0x0000_0000),
        (MASKED, 0x8000_1237, 0x8000_1234),
        (MASKED, 0x0F00_0000, 0x0000_0000),
        (EXTENDS, 0xFFFF_FFFF, 0x8FFF_FFFC),
        (EXTENDS, 0x7F00_0003, 0x0F00_0000),
        (LATCHED, 0xFFFF_FFFF, 0xFFFF_FFFF),
        (LATCHED, 0x7F00_0003, 0x7F00_0003),
        (LATCHED_EXTENDS, 0x7F00_0003, 0x7F00_0003),
        (LATCHED_EXTENDS, 0x8000_1237, 0x8000_1237),
    ],
    ids=lambda v: (
        v.to_mapping()["cf8_low_bits"] + "/" + v.to_mapping()["cf8_extended"]
        if isinstance(v, Profile)
        else f"{v:#x}"
    ),
)
def test_0xcf8_keeps_bits_per_variant(profile: Profile, written: int, kept: int) -> None:
    dm = manager(profile)
    dm.io_write(VM, CF8, 4, written)
    assert dm.io_read(VM, CF8, 4) == kept
    assert dm.cf8(VM) == kept


@pytest.mark.req("R-CAM-002", "R-CAM-004")
@pytest.mark.parametrize("profile", [MASKED, LATCHED], ids=["masked", "latched"])
def test_latched_low_bits_do_not_move_the_data_window(profile: Profile) -> None:
    dm = manager(profile)
    dm.plug(VM, NIC, E1000)
    dm.io_write(VM, CF8, 4, address(NIC, 0x00) | 0x3)
    assert dm.io_read(VM, CFC, 4) == 0x100E_8086
    assert dm.io_read(VM, 0xCFE, 2) == 0x100E
    dm.io_write(VM, CF8, 4, address(NIC, 0x2C) | 0x2)
    assert dm.io_read(VM, CFC, 4) == 0x001E_8086


# --------------------------------------------------------------------------- R-CAM-003: reading 0xCF8


@pytest.mark.req("R-CAM-003")
@pytest.mark.parametrize("profile", [MASKED, LATCHED_EXTENDS], ids=["masked", "latched-extends"])
def test_0xcf8_is_zero_after_vm_creation_and_vm_reset(profile: Profile) -> None:
    dm = manager(profile)
    assert dm.io_read(VM, CF8, 4) == 0
    dm.plug(VM, NIC, E1000)
    dm.io_write(VM, CF8, 4, address(NIC, 0x10))
    dm.create_vm(2)
    assert dm.io_read(2, CF8, 4) == 0  # each VM has its own register
    assert dm.io_read(VM, CF8, 4) == address(NIC, 0x10)
    dm.reset_vm(VM)
    assert dm.io_read(VM, CF8, 4) == 0
    assert dm.cf8(VM) == 0


# ------------------------------------------------------------------------- R-CAM-004: the data window


@pytest.mark.req("R-CAM-004")
def test_data_window_selects_bus_device_function_and_register() -> None:
    dm = manager()
    placed = {
        Bdf(0, 0, 1): E1000,
        Bdf(0, 1, 0): NVME,
        Bdf(1, 0, 0): EDU,
        Bdf(0x80, 0x10, 4): A100,
        Bdf(0xFF, 0x1F, 7): E1000,
    }
    for bdf, dtype in placed.items():
        dm.plug(VM, bdf, dtype)
    for bdf, dtype in placed.items():
        assert cam_read(dm, bdf, 0x00) == dtype.device_id << 16 | dtype.vendor_id
        assert cam_read(dm, bdf, 0x08) == dtype.class_code << 8 | dtype.revision
        assert cam_read(dm, bdf, 0x2C) == dtype.subsystem_id << 16 | dtype.subsystem_vendor_id
    for absent in (Bdf(0, 0, 0), Bdf(0, 0, 2), Bdf(0, 2, 0), Bdf(2, 0, 0), Bdf(0x80, 0x10, 5)):
        assert cam_read(dm, absent, 0x00) == 0xFFFF_FFFF


@pytest.mark.req("R-CAM-004", "R-ACC-007")
def test_sub_dword_accesses_in_the_data_window(nic: DataManager) -> None:
    dm = nic
    dm.io_write(VM, CF8, 4, address(NIC, 0x00))
    assert dm.io_read(VM, CFC, 1) == 0x86
    assert dm.io_read(VM, 0xCFD, 1) == 0x80
    assert dm.io_read(VM, 0xCFE, 1) == 0x0E
    assert dm.io_read(VM, 0xCFF, 1) == 0x10
    assert dm.io_read(VM, CFC, 2) == 0x8086
    assert dm.io_read(VM, 0xCFD, 2) == 0x0E80
    assert dm.io_read(VM, 0xCFE, 2) == 0x100E
    assert dm.io_read(VM, 0xCFD, 1) == 0x80
    # Bytes past 0xCFF are not in the window: unmapped ports read ones.
    assert dm.io_read(VM, 0xCFE, 4) == 0xFFFF_100E
    assert dm.io_read(VM, 0xCFF, 2) == 0xFF10
    assert dm.io_read(VM, 0xCFD, 4) == 0xFF10_0E80


@pytest.mark.req("R-CAM-004")
def test_sub_dword_writes_in_the_data_window(nic: DataManager) -> None:
    dm = nic
    dm.io_write(VM, CF8, 4, address(NIC, 0x10))
    dm.io_write(VM, 0xCFE, 2, 0xFEBC)  # BAR0 bits 31:16
    assert dm.config_read(VM, NIC, 0x10, 4) == 0xFEBC_0000
    dm.io_write(VM, 0xCFD, 1, 0xFF)  # below the 128 KiB size: read-only
    assert dm.config_read(VM, NIC, 0x10, 4) == 0xFEBC_0000
    dm.io_write(VM, CF8, 4, address(NIC, 0x0C))
    dm.io_write(VM, 0xCFF, 1, 0xFF)  # BIST: reads zero
    dm.io_write(VM, CFC, 1, 0x10)  # cache line size
    assert dm.config_read(VM, NIC, 0x0C, 4) == 0x0000_0010
    dm.io_write(VM, CF8, 4, address(NIC, 0x3C))
    dm.io_write(VM, 0xCFD, 2, 0x0707)  # interrupt pin (read-only) and Min_Gnt (zero)
    dm.io_write(VM, 0xCFB, 2, 0x0900)  # 0xCFB unmapped, 0xCFC: interrupt line
    assert dm.config_read(VM, NIC, 0x3C, 4) == 0x0000_0109
    dm.io_write(VM, CF8, 4, address(NIC, 0x04))
    dm.io_write(VM, CFC, 2, CMD_MEM)
    assert dm.config_read(VM, NIC, 0x04, 2) == CMD_MEM
    assert dm.resolve(VM, "memory", 0xFEBC_0000) == (NIC, 0)


@pytest.mark.req("R-CAM-004")
@pytest.mark.parametrize(
    "profile",
    [MASKED, LATCHED_IGNORED, EXTENDS, LATCHED_EXTENDS],
    ids=["masked-ignored", "latched-ignored", "masked-extends", "latched-extends"],
)
def test_extended_register_bits_reach_offsets_above_0xff_only_when_extending(profile: Profile) -> None:
    dm = manager(profile)
    express, nvme, conventional = Bdf(0, 4, 0), Bdf(0, 5, 0), Bdf(0, 6, 0)
    dm.plug(VM, express, EXPRESS)
    dm.plug(VM, nvme, NVME)
    dm.plug(VM, conventional, E1000)
    extends = profile.cf8_extended is Cf8Extended.EXTENDS
    dm.io_write(VM, CF8, 4, address(express, 0x104))
    # Without extension the same 0xCF8 value selects register 0x04 (command 0, status 0).
    assert dm.io_read(VM, CFC, 4) == (0xCAFE_BABE if extends else 0)
    dm.io_write(VM, CFC, 4, 0x0000_0400)
    assert dm.config_read(VM, express, 0x104, 4) == (0x0000_0400 if extends else 0xCAFE_BABE)
    assert dm.config_read(VM, express, 0x04, 2) == (0 if extends else 0x0400)  # INTx disable
    dm.io_write(VM, CF8, 4, address(express, 0xFFC))
    assert dm.io_read(VM, 0xCFD, 2) == (0x3456 if extends else 0)  # register 0xFC is unclaimed
    # NVME: offset 0x100 is unclaimed (reads zero) when reachable; offset 0x00 otherwise.
    dm.io_write(VM, CF8, 4, address(nvme, 0x100))
    assert dm.io_read(VM, CFC, 4) == (0 if extends else 0xA808_144D)
    # A conventional function has no bytes beyond 0xFF: they read all ones (R-CFG-009).
    dm.io_write(VM, CF8, 4, address(conventional, 0x100))
    assert dm.io_read(VM, CFC, 4) == (0xFFFF_FFFF if extends else 0x100E_8086)


@pytest.mark.req("R-CAM-004", "R-ACC-005")
@pytest.mark.parametrize("straddle", list(Straddle), ids=lambda s: s.value)
def test_access_straddling_the_end_of_the_window(straddle: Straddle) -> None:
    """0xCFE-0xD01: two bytes in the data window (one target), two unmapped ports (nothing)."""
    dm = manager(Profile(straddle=straddle))
    dm.plug(VM, NIC, E1000)
    dm.io_write(VM, CF8, 4, address(NIC, 0x0C))
    dm.config_write(VM, NIC, 0x0C, 1, 0x20)
    got = dm.io_read(VM, 0xCFE, 4)
    dm.io_write(VM, 0xCFA, 4, 0x0000_FFFF)  # 0xCFA-0xCFB unmapped, 0xCFC-0xCFD: cache line, latency
    if straddle is Straddle.REJECT:
        assert got == 0xFFFF_FFFF
        assert dm.config_read(VM, NIC, 0x0C, 1) == 0x20
    elif straddle is Straddle.SPLIT:
        assert got == 0xFFFF_0000  # header type 0x00, BIST 0x00
        assert dm.config_read(VM, NIC, 0x0C, 1) == 0x00
    else:  # start-address: the read's first run is the window; the write's first run is unmapped
        assert got == 0xFFFF_0000
        assert dm.config_read(VM, NIC, 0x0C, 1) == 0x20


# ---------------------------------------------------------------------- R-CAM-005: enable bit clear


@pytest.mark.req("R-CAM-005")
@pytest.mark.parametrize("profile", [MASKED, LATCHED_EXTENDS], ids=["masked", "latched-extends"])
def test_enable_bit_clear_reads_ones_and_drops_writes(profile: Profile) -> None:
    dm = manager(profile)
    dm.plug(VM, NIC, E1000)
    for register in (0x00, 0x04, 0x10, 0x3C):
        dm.io_write(VM, CF8, 4, address(NIC, register, enable_bit=False) | 0x7F00_0000)
        for port, width in ((CFC, 4), (CFC, 2), (CFC, 1), (0xCFD, 1), (0xCFE, 2), (0xCFF, 1), (0xCFD, 2)):
            assert dm.io_read(VM, port, width) == (1 << (8 * width)) - 1
            dm.io_write(VM, port, width, (1 << (8 * width)) - 1)
    assert dm.config_read(VM, NIC, 0x04, 2) == 0
    assert dm.config_read(VM, NIC, 0x10, 4) == 0
    assert dm.config_read(VM, NIC, 0x3C, 1) == 0
    assert dm.tables(VM).memory == ()
    dm.io_write(VM, CF8, 4, address(NIC, 0x00))
    assert dm.io_read(VM, CFC, 4) == 0x100E_8086


# ----------------------------------------------------------------- R-CAM-006: platform ports come first


def io_recorder_type(rec: Recorder) -> DeviceType:
    return DeviceType(
        name="io-recorder",
        vendor_id=0x1B36,
        device_id=0x0031,
        class_code=0xFF0000,
        bars=(BarSpec(BarKind.IO, 64),),
        behaviour=rec,
    )


@pytest.mark.req("R-CAM-006", "R-CAM-001")
@pytest.mark.parametrize("straddle", list(Straddle), ids=lambda s: s.value)
def test_io_bar_covering_0xcf8_0xcff_never_receives_them(straddle: Straddle) -> None:
    dm = manager(Profile(straddle=straddle))
    rec = Recorder()
    bar_dev = Bdf(0, 7, 0)
    dm.plug(VM, bar_dev, io_recorder_type(rec))
    dm.plug(VM, NIC, E1000)
    program_bar(dm, VM, bar_dev, 0, 0xCC0)  # 0xCC0-0xCFF
    enable(dm, VM, bar_dev, CMD_IO)
    assert dm.resolve(VM, "io", 0xCFF) == (bar_dev, 0)
    dm.io_write(VM, 0xCC0, 4, 0x1122_3344)  # the BAR still receives its other ports
    assert dm.io_read(VM, 0xCF4, 4) == 0
    assert rec.log == [("w", 0, 0, 4), ("r", 0, 0x34, 4)]
    rec.log.clear()
    dm.io_write(VM, CF8, 4, address(NIC, 0x00))
    assert dm.io_read(VM, CF8, 4) == address(NIC, 0x00)
    assert dm.io_read(VM, CFC, 4) == 0x100E_8086
    assert dm.io_read(VM, 0xCFE, 2) == 0x100E
    assert dm.io_read(VM, 0xCF9, 1) == 0xFF
    dm.io_write(VM, 0xCFA, 2, 0xFFFF)
    dm.io_write(VM, CF8, 4, address(NIC, 0x3C))
    dm.io_write(VM, 0xCFC, 1, 0x0A)
    dm.io_write(VM, CF8, 4, 0)  # enable bit clear: the window still belongs to the host bridge
    assert dm.io_read(VM, CFC, 4) == 0xFFFF_FFFF
    dm.io_write(VM, 0xCFF, 1, 0x55)
    assert rec.log == []
    assert dm.config_read(VM, NIC, 0x3C, 1) == 0x0A
    # An access straddling the BAR's own ports and 0xCF8: only the BAR's ports may reach it.
    got = dm.io_read(VM, 0xCF6, 4)
    if straddle is Straddle.REJECT:
        assert rec.log == []
        assert got == 0xFFFF_FFFF
    else:
        assert rec.log == [("r", 0, 0x36, 2)]
        assert got == 0xFFFF_0000
    assert all(offset + length <= 0x38 for _, _, offset, length in rec.log)


# --------------------------------------------------------------------- R-CAM-007: after a data access


@pytest.mark.req("R-CAM-007")
def test_keep_leaves_0xcf8_across_data_accesses(nic: DataManager) -> None:
    dm = nic
    dm.io_write(VM, CF8, 4, address(NIC, 0x3C))
    dm.io_read(VM, CFC, 4)
    dm.io_write(VM, CFC, 1, 0x0B)
    dm.io_read(VM, 0xCFE, 2)
    dm.io_read(VM, 0xCFA, 4)
    assert dm.cf8(VM) == address(NIC, 0x3C)
    assert dm.io_read(VM, CFC, 1) == 0x0B


@pytest.mark.req("R-CAM-007")
def test_clear_zeroes_0xcf8_after_any_access_touching_the_window() -> None:
    dm = manager(CLEAR)
    dm.plug(VM, NIC, E1000)
    dm.io_write(VM, CF8, 4, address(NIC, 0x00))
    assert dm.io_read(VM, CFC, 4) == 0x100E_8086  # the access itself uses the address
    assert dm.io_read(VM, CF8, 4) == 0
    assert dm.io_read(VM, CFC, 4) == 0xFFFF_FFFF  # enable bit now clear
    dm.io_write(VM, CF8, 4, address(NIC, 0x3C))
    dm.io_write(VM, 0xCFC, 1, 0x0C)
    assert dm.cf8(VM) == 0
    assert dm.config_read(VM, NIC, 0x3C, 1) == 0x0C
    for port, width in ((0xCFF, 1), (0xCFD, 2), (0xCFA, 4), (0xCFB, 2), (0xCFE, 4)):
        dm.io_write(VM, CF8, 4, address(NIC, 0x00))
        dm.io_read(VM, port, width)
        assert dm.cf8(VM) == 0, (port, width)
        dm.io_write(VM, CF8, 4, address(NIC, 0x3C))
        dm.io_write(VM, port, width, 0)
        assert dm.cf8(VM) == 0, (port, width)
    # Without the enable bit too.
    dm.io_write(VM, CF8, 4, address(NIC, 0x00, enable_bit=False))
    assert dm.cf8(VM) != 0
    dm.io_read(VM, CFC, 1)
    assert dm.cf8(VM) == 0


@pytest.mark.req("R-CAM-007", "R-CAM-001")
def test_clear_keeps_0xcf8_for_accesses_not_touching_the_window() -> None:
    dm = manager(CLEAR)
    dm.plug(VM, NIC, E1000)
    dm.io_write(VM, CF8, 4, address(NIC, 0x00))
    dm.io_read(VM, CF8, 4)
    dm.io_read(VM, 0xCF9, 1)
    dm.io_write(VM, 0xCFA, 2, 0)
    dm.io_read(VM, 0xCF4, 4)
    dm.io_read(VM, 0xD00, 4)
    dm.mmio_read(VM, 0xB000_0000 + (NIC.packed << 12), 4)
    dm.config_read(VM, NIC, 0, 4)
    assert dm.cf8(VM) == address(NIC, 0x00)
