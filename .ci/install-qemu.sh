#!/usr/bin/env bash
# Install QEMU for the QEMU adapter (adapters/vpcid/adapters/qemu) if it is absent.
# Idempotent: does nothing when qemu-system-x86_64 is already on PATH. Debian/Ubuntu only
# (apt-get); elsewhere it says what to install and leaves the QEMU tests to skip.
set -euo pipefail

if command -v qemu-system-x86_64 >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-qemu: no apt-get here; install qemu-system-x86_64 (QEMU >= 7.2) to run the QEMU certifications" >&2
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1 || ! sudo -n true 2>/dev/null; then
        echo "install-qemu: not root and no password-less sudo; install qemu-system-x86 ipxe-qemu yourself" \
             "to run the QEMU certifications (their tests skip, saying so)" >&2
        exit 0
    fi
    sudo="sudo -n"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# ipxe-qemu provides the NICs' option ROMs (e1000's efi-e1000.rom); without it e1000 needs romfile=.
$sudo apt-get install -y -qq --no-install-recommends qemu-system-x86 ipxe-qemu >/dev/null
command -v qemu-system-x86_64 >/dev/null
