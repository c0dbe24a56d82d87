"""The KVM adapter's guest code, checked against an independent disassembler (capstone), and its image.

No /dev/kvm needed: these tests only encode and decode.
"""

from __future__ import annotations

import itertools
import struct

import pytest
from vpcid.adapters.kvm import guest as g

capstone = pytest.importorskip("capstone")

LAYOUTS = [
    g.Layout.for_cpu(48, gbpages=False),  # kvm_pvm here: 2 MiB pages, 2^39 reach
    g.Layout.for_cpu(46, gbpages=True),  # typical hardware: 1 GiB pages
    g.Layout.for_cpu(52, gbpages=True, cpl=3),
]


def disassemble(code: bytes, address: int) -> list[str]:
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    return [f"{i.mnemonic} {i.op_str}".strip() for i in md.disasm(code, address)]


def routine_text(layout: g.Layout, which: g.Routine, width: int, **values: int) -> list[str]:
    template = g.routine(layout, which, width)
    return disassemble(template.patched(**values), g.body_va(layout))


SIZE = {1: "byte", 2: "word", 4: "dword", 8: "qword"}
ACC = {1: "al", 2: "ax", 4: "eax", 8: "rax"}


@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
@pytest.mark.parametrize("width", [1, 2, 4, 8])
def test_memory_routines_are_one_mov_of_the_width_at_the_patched_address(
    layout: g.Layout, width: int
) -> None:
    address = 0xFFFF_FFFF_FFFF_F000 + 8 - width
    slot, result = layout.va(g.SLOT), layout.va(g.RESULT)
    read = routine_text(layout, g.Routine.MEM_READ, width, address=address)
    assert read == [
        f"movabs {ACC[width]}, {SIZE[width]} ptr [{address:#x}]",
        f"movabs {SIZE[width]} ptr [{result:#x}], {ACC[width]}",
        f"jmp {slot:#x}",
    ]
    value = (1 << (8 * width)) - 2
    write = routine_text(layout, g.Routine.MEM_WRITE, width, address=address, value=value)
    load = "movabs" if width == 8 else "mov"
    assert write == [
        f"{load} {ACC[width]}, {value:#x}",
        f"movabs {SIZE[width]} ptr [{address:#x}], {ACC[width]}",
        f"jmp {slot:#x}",
    ]


@pytest.mark.parametrize("width", [1, 2, 4])
def test_port_routines_are_one_in_or_out_of_the_width(width: int) -> None:
    layout = LAYOUTS[0]
    slot, result = layout.va(g.SLOT), layout.va(g.RESULT)
    assert routine_text(layout, g.Routine.IO_READ, width, address=0xFFFD) == [
        "mov edx, 0xfffd",
        f"in {ACC[width]}, dx",
        f"movabs {SIZE[width]} ptr [{result:#x}], {ACC[width]}",
        f"jmp {slot:#x}",
    ]
    assert routine_text(layout, g.Routine.IO_WRITE, width, address=0xC000, value=0x12) == [
        "mov edx, 0xc000",
        f"mov {ACC[width]}, 0x12",
        f"out dx, {ACC[width]}",
        f"jmp {slot:#x}",
    ]


@pytest.mark.parametrize("width", [1, 2, 4])
def test_mechanism_1_routines_save_select_access_the_lane_and_restore(width: int) -> None:
    layout = LAYOUTS[1]
    result = layout.va(g.RESULT)
    common = [
        "mov edx, 0xcf8",
        "in eax, dx",
        "mov esi, eax",
        "mov eax, 0x80021044",
        "out dx, eax",
        "mov dl, 0xfe",
    ]
    restore = ["mov dl, 0xf8", "mov eax, esi", "out dx, eax", f"jmp {layout.va(g.SLOT):#x}"]
    read = routine_text(layout, g.Routine.CF8_READ, width, cf8=0x80021044, lane=0xFE)
    assert read == [
        *common,
        f"in {ACC[width]}, dx",
        f"movabs {SIZE[width]} ptr [{result:#x}], {ACC[width]}",
        *restore,
    ]
    write = routine_text(layout, g.Routine.CF8_WRITE, width, cf8=0x80021044, lane=0xFE, value=7)
    assert write == [*common, f"mov {ACC[width]}, 7", f"out dx, {ACC[width]}", *restore]


def test_the_doorbell_is_a_byte_store_to_the_doorbell_page() -> None:
    layout = LAYOUTS[0]
    code = g.doorbell(layout)
    assert disassemble(code, layout.va(g.SLOT)) == [f"movabs byte ptr [{layout.va(g.DOORBELL):#x}], al"]
    assert g.body_va(layout) == layout.va(g.SLOT) + len(code)


def test_the_encoder_listing_matches_the_disassembly_instruction_for_instruction() -> None:
    for layout in LAYOUTS:
        for which in g.Routine:
            for width in (1, 2, 4) if which.name.startswith(("IO", "CF8")) else (1, 2, 4, 8):
                template = g.routine(layout, which, width)
                assert len(disassemble(template.code, g.body_va(layout))) == len(template.listing)
                assert len(template.code) < g.SLOT_SIZE // 8


@pytest.mark.parametrize("vector", [0, 6, 8, 13, 14, 31])
def test_fault_stubs_push_a_uniform_frame_and_halt(vector: int) -> None:
    code = g.assemble(g.fault_stub(vector), 0x1000)
    text = disassemble(code, 0x1000)
    pushes = ["push 0"] if vector not in g.VECTORS_WITH_ERROR_CODE else []
    assert text == [*pushes, f"push {vector:#x}" if vector > 9 else f"push {vector}", "hlt"]


@pytest.mark.parametrize("layout", LAYOUTS[:2], ids=str)
def test_paging_maps_each_physical_address_at_its_canonical_virtual_address(layout: g.Layout) -> None:
    image = g.build_image(layout)

    def read(table_address: int, index: int) -> int:
        offset = table_address - layout.base + 8 * index
        return int(struct.unpack_from("<Q", image, offset)[0])

    for physical in (0, 0xFEBC_0123, 0x10_0000_0000, layout.base + g.DOORBELL, layout.reach - 1):
        virtual = g.canonical(physical)
        entry = read(layout.base + g.PML4, (virtual >> 39) & 511)
        assert entry & 0x7 == 0x7  # present, writable, user
        entry = read(entry & ~0xFFF & (1 << 52) - 1, (virtual >> 30) & 511)
        if not layout.gbpages:
            entry = read(entry & ~0xFFF & (1 << 52) - 1, (virtual >> 21) & 511)
        page = (1 << 30) if layout.gbpages else (1 << 21)
        assert entry & 0x80
        assert entry & 0x60 == 0x60
        assert (entry & ~0xFFF & (1 << 52) - 1) + (physical & (page - 1)) == physical


def test_the_private_block_lies_inside_the_reach_and_holds_every_private_range() -> None:
    for layout in LAYOUTS:
        assert layout.base % g.GIB == 0
        assert layout.base + g.PRIVATE_SIZE <= layout.reach
        spans = [
            (g.IMAGE, g.IMAGE_SIZE),
            (g.DATA, g.DATA_SIZE),
            (g.DOORBELL, g.PAGE),
            (g.APERTURE, g.APERTURE_SIZE),
            (g.CONFIG_WINDOW, g.CONFIG_WINDOW_SIZE),
        ]
        ends = sorted(spans)
        for (start, size), (following, _) in itertools.pairwise(ends):
            assert start + size <= following
        assert ends[-1][0] + ends[-1][1] <= g.PRIVATE_SIZE


def test_the_tss_grants_every_port() -> None:
    image = g.build_image(LAYOUTS[0])
    (bitmap,) = struct.unpack_from("<H", image, g.TSS + 0x66)
    assert g.TSS + bitmap == g.IO_BITMAP
    assert not any(image[g.IO_BITMAP : g.IO_BITMAP + 0x2000])
    assert image[g.IO_BITMAP + 0x2000] == 0xFF
