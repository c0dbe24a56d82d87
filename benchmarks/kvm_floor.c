/*
 * The floor for benchmarks/kvm_rates.py: the same guest, in the same state,
 * run by bare KVM_RUN calls that answer every MMIO read with a constant.
 *
 * Input (argv[1]): a state file written by kvm_rates.py, little-endian:
 *   "VPCIDKVM"  magic
 *   u64 doorbell guest-physical address (the exit that ends the run)
 *   u64 reply   the constant every MMIO read gets
 *   u32 n, n bytes   struct kvm_cpuid2 (with its entries)
 *   u32 n, n bytes   struct kvm_sregs
 *   u32 n, n bytes   struct kvm_regs
 *   u32 slots, then per slot: u32 slot, u32 flags, u64 gpa, u64 size, size bytes
 * The vCPU starts at the doorbell store; the first doorbell exit is the start
 * mark, the second ends the run. Prints: "<exits> <nanoseconds>".
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static FILE *in;

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void get(void *p, size_t n) {
    if (fread(p, 1, n, in) != n) die("state file truncated");
}

static void *blob(uint32_t *n) {
    get(n, 4);
    void *p = malloc(*n);
    if (!p) die("malloc");
    get(p, *n);
    return p;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

int main(int argc, char **argv) {
    char magic[8];
    uint64_t doorbell, reply;
    uint32_t n, slots;
    if (argc != 2 || !(in = fopen(argv[1], "rb"))) die("usage: kvm_floor STATE-FILE");
    get(magic, 8);
    if (memcmp(magic, "VPCIDKVM", 8)) die("bad magic");
    get(&doorbell, 8);
    get(&reply, 8);
    void *cpuid = blob(&n);
    void *sregs = blob(&n);
    if (n != sizeof(struct kvm_sregs)) die("kvm_sregs size");
    void *regs = blob(&n);
    if (n != sizeof(struct kvm_regs)) die("kvm_regs size");

    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) die("/dev/kvm");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) die("KVM_CREATE_VM");
    get(&slots, 4);
    for (uint32_t i = 0; i < slots; i++) {
        struct kvm_userspace_memory_region region;
        uint32_t slot, flags;
        uint64_t gpa, size;
        get(&slot, 4);
        get(&flags, 4);
        get(&gpa, 8);
        get(&size, 8);
        void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) die("mmap");
        get(mem, size);
        region = (struct kvm_userspace_memory_region){slot, flags, gpa, size, (uint64_t)(uintptr_t)mem};
        if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
    }
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) die("KVM_CREATE_VCPU");
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) die("mmap kvm_run");
    if (ioctl(vcpu, KVM_SET_CPUID2, cpuid) < 0) die("KVM_SET_CPUID2");
    if (ioctl(vcpu, KVM_SET_SREGS, sregs) < 0) die("KVM_SET_SREGS");
    if (ioctl(vcpu, KVM_SET_REGS, regs) < 0) die("KVM_SET_REGS");

    uint64_t exits = 0, start = 0;
    int doorbells = 0;
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
        if (run->exit_reason == KVM_EXIT_MMIO) {
            if (run->mmio.phys_addr == doorbell) {
                if (++doorbells == 2) break;
                start = now_ns();
                continue;
            }
            if (!run->mmio.is_write) memcpy(run->mmio.data, &reply, run->mmio.len);
            exits++;
        } else if (run->exit_reason == KVM_EXIT_IO) {
            if (run->io.direction == KVM_EXIT_IO_IN)
                memcpy((char *)run + run->io.data_offset, &reply, run->io.size);
            exits++;
        } else {
            fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
            return 3;
        }
    }
    printf("%llu %llu\n", (unsigned long long)exits, (unsigned long long)(now_ns() - start));
    return 0;
}
