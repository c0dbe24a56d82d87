#!/usr/bin/env bash
# Install the Debian packages the tests use, if any is absent:
#   qemu-system-x86  the QEMU adapter (adapters/vpcid/adapters/qemu), QEMU >= 7.2
#   ipxe-qemu        the NICs' option ROMs (e1000's efi-e1000.rom); without it e1000 needs romfile=
#   pciutils         lspci, the oracle `vpcid lspci` is compared with (tests/test_lspci_pciutils.py)
#   pci.ids          /usr/share/misc/pci.ids, the names `vpcid lspci` and lspci print
#   chromium         headless Chromium opens the rendered spec (tests/test_site.py)
#   redis-server     the Redis example database two fuzzing workers share (tests/test_fuzz_scale.py)
# Idempotent: does nothing when everything is already there. Debian/Ubuntu only (apt-get);
# elsewhere it says what to install and leaves the tests that need it to skip.
set -euo pipefail

missing=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86 ipxe-qemu)
command -v lspci >/dev/null 2>&1 || missing+=(pciutils)
[ -f /usr/share/misc/pci.ids ] || missing+=(pci.ids)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-debian: no apt-get here; install ${missing[*]} (QEMU >= 7.2) to run the tests that need them" >&2
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1 || ! sudo -n true 2>/dev/null; then
        echo "install-debian: not root and no password-less sudo; install ${missing[*]} yourself" \
             "to run the tests that need them (they skip, saying so)" >&2
        exit 0
    fi
    sudo="sudo -n"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
command -v qemu-system-x86_64 >/dev/null
command -v lspci >/dev/null
[ -f /usr/share/misc/pci.ids ]
command -v chromium >/dev/null
command -v redis-server >/dev/null
