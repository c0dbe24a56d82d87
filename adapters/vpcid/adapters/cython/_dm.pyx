# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False, infer_types=True
"""Compiled second implementation of the VPCID data manager (spec/, issue 5).

Written from the specification, not from the model: every data-manager
operation lives here in C-level code.

Data structures (all plain C, malloc'd, no Python objects on the hot path):

* ``U64Map``: open-addressing hash table, 64-bit key -> pointer, linear
  probing with backward-shift deletion. Used for the VM set (key: VM id), each
  VM's configuration table (key: packed BDF, R-DS-003), each I/O and memory
  table (R-DS-006) and each instance's sparse BAR store (key: BAR << 56 |
  page index, R-DT-004).
* ``DTable``: an I/O or memory table. A BAR of size ``2**k`` at base ``b``
  is one entry under the key ``(k, b >> k)``, packed into one word as
  ``b | 1 << (k - 1)`` (``b`` is aligned to ``2**k``, so the lowest set bit
  names ``k``). A lookup probes once per size class in use, found from a
  64-bit class mask; entries that share a key are chained in priority order
  (R-DEC-008).
* ``Inst``: an instance (R-DS-004): its configuration bytes, its seven
  windows (``Mapping``, BAR0-5 and the ROM), its page store, and, for a
  device type with a custom behaviour, the ``DeviceData`` that behaviour
  keeps its state in. Its configuration space is the type's power-on image
  until a write changes it (then a copy of its own), so plug and reset copy
  nothing. Freed VMs, instances and pages go to small pools for reuse.
* The bus tree (R-BRG-002): an instance sits on a root bus or on a bridge's
  secondary bus (``Inst.parent``; a bridge's ``kids`` by device and
  function). The configuration table holds the instances whose bus has a
  number now; ``Vm.busowner`` maps each bus number to the bridge whose
  secondary bus it names, recomputed with the table whenever a bus number,
  a bridge or an occupied root bus changes (R-BRG-003, R-BRG-004). A
  window below bridges carries the pieces of it every bridge above
  forwards (``Mapping.fwd``, R-BRG-006); a lookup still probes once per
  size class and takes, in a bucket, the first mapping forwarding the
  address.
* ``CType``: a device type's per-byte power-on image, write mask, RW1C mask
  and fixed-bit mask (computed once per type by
  ``vpcid.model.devicetype.layout``, the type's own definition) and its BARs.

Device types with a custom ``BarBehaviour`` (the catalog's ``edu``) are
served by calling that Python object with a ``vpcid.model.DeviceData``: the
behaviour *is* the device type's code (R-DT-003). Memory-like BARs
(R-DT-004) are compiled: a sparse page store.

Blobs and snapshots (spec/formats/blob.md) are written and parsed here byte
by byte, and hashed here too: SHA-256 in C (the x86 SHA extensions where the
CPU has them, else OpenSSL's block function when built with libcrypto, else
portable C), one pass per seal. An instance's blob is cached until the
instance changes; a snapshot copies the cached ones and writes the others
straight into its own buffer, hashing each one's seal alongside the
snapshot's own hash (two independent streams in one loop), and those
instances then keep their blobs as slices of the snapshot. A blob handed out
and given back (restore) is not hashed again.

The batch engine (``CythonAdapter.run_batch``) keeps its results in C
arrays: a kind and a value per operation, digests and packed table rows in
one buffer, turned into ``Observation`` objects only when asked for.
"""

cimport cython
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from libc.stdlib cimport malloc, calloc, realloc, free, qsort

cdef extern from "<stdlib.h>":
    void* aligned_alloc(size_t alignment, size_t size) nogil
from libc.string cimport memcpy, memset, memcmp
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF, Py_XDECREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.pythread cimport (
    PyThread_type_lock, PyThread_allocate_lock, PyThread_free_lock, PyThread_acquire_lock, PyThread_release_lock,
    WAIT_LOCK, NOWAIT_LOCK,
)
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE

import os as _os

from vpcid.conformance.devices import SUITE_TYPES as _SUITE_TYPES
from vpcid.conformance.trace import Observation as _Observation
from vpcid.conformance.trace import Op as _Op
from vpcid.conformance.trace import OpKind as _OpKind
from vpcid.conformance.trace import TraceError as _TraceError
from vpcid.conformance.trace import topology_rows as _topology_rows
from vpcid.model import Bdf as _Bdf
from vpcid.model import DeviceType as _DeviceType
from vpcid.model import Profile as _Profile
from vpcid.model import errors as _errors
from vpcid.model.behaviour import DeviceData as _DeviceData
from vpcid.model.configspace import profile_layout as _profile_layout
from vpcid.model.devicetype import layout as _layout
from vpcid.model.manager import TableEntry as _TableEntry
from vpcid.model.manager import TopologyNode as _TopologyNode
from vpcid.model.topology import Windows as _Windows
from vpcid.model.manager import VmTables as _VmTables

cdef extern from "Python.h":
    long long PyLong_AsLongLongAndOverflow(object, int*) except? -1
    unsigned long long PyLong_AsUnsignedLongLongMask(object) except? -1

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* Slot hash of a map key: one multiply by 2^64/phi, the high half folded into the low bits
       (the mask keeps low bits, and keys of large aligned BARs have all-zero low bits). */
    static inline uint64_t vpcid_mix64(uint64_t x) {
        x *= 0x9e3779b97f4a7c15ULL;
        return x ^ (x >> 32);
    }
    static inline int vpcid_ctz64(uint64_t x) { return __builtin_ctzll(x); }
    #include <time.h>
    static inline int64_t vpcid_now_ns(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
    }
    #if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    #include <x86intrin.h>
    static inline uint64_t vpcid_ticks(void) { return __rdtsc(); }
    #else
    static inline uint64_t vpcid_ticks(void) { return (uint64_t)vpcid_now_ns(); }
    #endif
    static inline uint16_t vpcid_ld16(const uint8_t* p) { return (uint16_t)(p[0] | ((uint16_t)p[1] << 8)); }
    static inline uint32_t vpcid_ld32(const uint8_t* p) {
        return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    }
    static inline uint64_t vpcid_ld64(const uint8_t* p) {
        return (uint64_t)vpcid_ld32(p) | ((uint64_t)vpcid_ld32(p + 4) << 32);
    }
    static inline void vpcid_st16(uint8_t* p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
    static inline void vpcid_st32(uint8_t* p, uint32_t v) {
        p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
    }
    static inline void vpcid_st64(uint8_t* p, uint64_t v) { vpcid_st32(p, (uint32_t)v); vpcid_st32(p + 4, (uint32_t)(v >> 32)); }
    static inline uint64_t vpcid_ldn(const uint8_t* p, int n) {
        switch (n) {
        case 1: return p[0];
        case 2: return vpcid_ld16(p);
        case 4: return vpcid_ld32(p);
        case 8: return vpcid_ld64(p);
        default: { uint64_t v = 0; for (int k = n - 1; k >= 0; k--) v = (v << 8) | p[k]; return v; }
        }
    }
    static inline void vpcid_stn(uint8_t* p, uint64_t v, int n) {
        switch (n) {
        case 1: p[0] = (uint8_t)v; return;
        case 2: vpcid_st16(p, (uint16_t)v); return;
        case 4: vpcid_st32(p, (uint32_t)v); return;
        case 8: vpcid_st64(p, v); return;
        default: for (int k = 0; k < n; k++) { p[k] = (uint8_t)v; v >>= 8; }
        }
    }
    /* copies and fills of an access's few bytes, without a library call for the usual sizes */
    static inline void vpcid_copy_small(uint8_t* d, const uint8_t* s, int n) {
        switch (n) {
        case 1: d[0] = s[0]; return;
        case 2: memcpy(d, s, 2); return;
        case 4: memcpy(d, s, 4); return;
        case 8: memcpy(d, s, 8); return;
        default: memcpy(d, s, (size_t)n);
        }
    }
    static inline void vpcid_fill_small(uint8_t* d, uint8_t v, int n) {
        uint64_t w = 0x0101010101010101ULL * v;
        if (n == 8) { memcpy(d, &w, 8); return; }
        for (int k = 0; k < n; k++) d[k] = v;
    }
    static inline int vpcid_all_zero(const uint8_t* p, size_t n) {
        uint64_t acc = 0, w;
        size_t k = 0;
        for (; k + 8 <= n; k += 8) { memcpy(&w, p + k, 8); acc |= w; }
        for (; k < n; k++) acc |= p[k];
        return acc == 0;
    }
    /* whether any bit set in m differs between a and b (n a multiple of 8) */
    static inline int vpcid_masked_differs(const uint8_t* a, const uint8_t* b, const uint8_t* m, size_t n) {
        uint64_t acc = 0, x, y, z;
        for (size_t k = 0; k < n; k += 8) {
            memcpy(&x, a + k, 8); memcpy(&y, b + k, 8); memcpy(&z, m + k, 8);
            acc |= (x ^ y) & z;
        }
        return acc != 0;
    }
    """
    uint64_t mix64 "vpcid_mix64"(uint64_t) noexcept nogil
    int ctz64 "vpcid_ctz64"(uint64_t) noexcept nogil
    int64_t now_ns "vpcid_now_ns"() noexcept nogil
    uint64_t ticks "vpcid_ticks"() noexcept nogil
    uint16_t ld16 "vpcid_ld16"(const uint8_t*) noexcept nogil
    uint32_t ld32 "vpcid_ld32"(const uint8_t*) noexcept nogil
    uint64_t ld64 "vpcid_ld64"(const uint8_t*) noexcept nogil
    void st16 "vpcid_st16"(uint8_t*, uint16_t) noexcept nogil
    void st32 "vpcid_st32"(uint8_t*, uint32_t) noexcept nogil
    void st64 "vpcid_st64"(uint8_t*, uint64_t) noexcept nogil
    uint64_t ldn "vpcid_ldn"(const uint8_t*, int) noexcept nogil
    void stn "vpcid_stn"(uint8_t*, uint64_t, int) noexcept nogil
    void copy_small "vpcid_copy_small"(uint8_t*, const uint8_t*, int) noexcept nogil
    void fill_small "vpcid_fill_small"(uint8_t*, uint8_t, int) noexcept nogil
    int all_zero "vpcid_all_zero"(const uint8_t*, size_t) noexcept nogil
    int masked_differs "vpcid_masked_differs"(const uint8_t*, const uint8_t*, const uint8_t*, size_t) noexcept nogil


# ---------------------------------------------------------------- SHA-256 (FIPS 180-4), in C
#
# Blobs are contiguous buffers, so a hash is only a state (eight words) and a
# position: ``vsha_blocks`` consumes whole 64-byte blocks, ``vsha_final`` pads
# the rest and leaves the state as it was. Three compression engines, the fastest
# available picked at import: the x86 SHA extensions (with a two-stream
# variant that hashes two independent messages in one loop, which nearly
# doubles throughput because one stream is bound by the latency of the SHA
# instructions), OpenSSL's block function (when the build found libcrypto:
# VPCID_LIBCRYPTO), and portable C.
#
# Why not only OpenSSL: through hashlib every digest costs about 0.6 us of
# EVP setup, more than hashing a small blob, and OpenSSL has no API that
# hashes two messages at once; the SHA-extension engine is the one that does.
# The portable engine keeps a build without libcrypto headers, on a CPU
# without SHA extensions, working. tests/test_cython_backend.py checks every
# engine available here against hashlib, one and two streams.

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    #include <stddef.h>
    #if defined(VPCID_LIBCRYPTO)
    #define OPENSSL_SUPPRESS_DEPRECATED 1
    #include <openssl/sha.h>
    #endif
    #if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    #define VSHA_X86 1
    #include <immintrin.h>
    #include <cpuid.h>
    #endif

    enum { VSHA_PORTABLE = 0, VSHA_OPENSSL = 1, VSHA_SHANI = 2 };
    static int vsha_engine = VSHA_PORTABLE;
    static void vsha_use(int e) { vsha_engine = e; }

    static const uint32_t vsha_K[64] __attribute__((aligned(16))) = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

    static void vsha_iv(uint32_t* s) {
        static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                       0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
        memcpy(s, iv, 32);
    }

    #define VSHA_ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
    static void vsha_portable(uint32_t* s, const uint8_t* p, size_t n) {
        for (; n; n--, p += 64) {
            uint32_t w[64], a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
            int i;
            for (i = 0; i < 16; i++)
                w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
            for (i = 16; i < 64; i++)
                w[i] = w[i - 16] + w[i - 7]
                     + (VSHA_ROR(w[i - 15], 7) ^ VSHA_ROR(w[i - 15], 18) ^ (w[i - 15] >> 3))
                     + (VSHA_ROR(w[i - 2], 17) ^ VSHA_ROR(w[i - 2], 19) ^ (w[i - 2] >> 10));
            for (i = 0; i < 64; i++) {
                uint32_t t1 = h + (VSHA_ROR(e, 6) ^ VSHA_ROR(e, 11) ^ VSHA_ROR(e, 25)) + ((e & f) ^ (~e & g)) + vsha_K[i] + w[i];
                uint32_t t2 = (VSHA_ROR(a, 2) ^ VSHA_ROR(a, 13) ^ VSHA_ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
                h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
            }
            s[0] += a; s[1] += b; s[2] += c; s[3] += d; s[4] += e; s[5] += f; s[6] += g; s[7] += h;
        }
    }

    #if defined(VPCID_LIBCRYPTO)
    static void vsha_openssl(uint32_t* s, const uint8_t* p, size_t n) {
        SHA256_CTX c;  /* only its chaining words h[0..7] are used by the block function */
        memcpy(c.h, s, 32);
        for (; n; n--, p += 64) SHA256_Transform(&c, p);
        memcpy(s, c.h, 32);
    }
    #endif

    #if defined(VSHA_X86)
    #define VSHA_NI __attribute__((target("sha,sse4.1,ssse3")))
    /* state words to the ABEF/CDGH register layout of sha256rnds2, and back */
    static inline VSHA_NI void vsha_ni_load(const uint32_t* s, __m128i* abef, __m128i* cdgh) {
        __m128i dcba = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i*)s), 0xB1);
        __m128i efgh = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i*)(s + 4)), 0x1B);
        *abef = _mm_alignr_epi8(dcba, efgh, 8);
        *cdgh = _mm_blend_epi16(efgh, dcba, 0xF0);
    }
    static inline VSHA_NI void vsha_ni_store(uint32_t* s, __m128i abef, __m128i cdgh) {
        __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
        __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
        _mm_storeu_si128((__m128i*)s, _mm_blend_epi16(feba, dchg, 0xF0));
        _mm_storeu_si128((__m128i*)(s + 4), _mm_alignr_epi8(dchg, feba, 8));
    }
    /* four rounds with message words M[i & 3] */
    #define VSHA_QROUND(S0, S1, M, i) do { \
        __m128i k_ = _mm_add_epi32(M[(i) & 3], _mm_load_si128((const __m128i*)(vsha_K + 4 * (i)))); \
        S1 = _mm_sha256rnds2_epu32(S1, S0, k_); \
        S0 = _mm_sha256rnds2_epu32(S0, S1, _mm_shuffle_epi32(k_, 0x0E)); } while (0)
    /* message words 4i..4i+3 from the previous sixteen */
    #define VSHA_SCHEDULE(M, i) (M[(i) & 3] = _mm_sha256msg2_epu32(_mm_add_epi32( \
        _mm_sha256msg1_epu32(M[(i) & 3], M[((i) + 1) & 3]), \
        _mm_alignr_epi8(M[((i) + 3) & 3], M[((i) + 2) & 3], 4)), M[((i) + 3) & 3]))
    #define VSHA_LOAD(M, p, i, mask) (M[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i*)((p) + 16 * (i))), mask))
    /* four rounds of two streams, their instructions alternating */
    #define VSHA_QROUND2(S0, S1, M, R0, R1, N, i) do { \
        __m128i k_ = _mm_load_si128((const __m128i*)(vsha_K + 4 * (i))); \
        __m128i m_ = _mm_add_epi32(M[(i) & 3], k_), n_ = _mm_add_epi32(N[(i) & 3], k_); \
        S1 = _mm_sha256rnds2_epu32(S1, S0, m_); R1 = _mm_sha256rnds2_epu32(R1, R0, n_); \
        m_ = _mm_shuffle_epi32(m_, 0x0E); n_ = _mm_shuffle_epi32(n_, 0x0E); \
        S0 = _mm_sha256rnds2_epu32(S0, S1, m_); R0 = _mm_sha256rnds2_epu32(R0, R1, n_); } while (0)

    static VSHA_NI void vsha_ni1(uint32_t* s, const uint8_t* p, size_t n) {
        const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
        __m128i S0, S1, M[4];
        int i;
        vsha_ni_load(s, &S0, &S1);
        for (; n; n--, p += 64) {
            __m128i A = S0, B = S1;
            #pragma GCC unroll 4
            for (i = 0; i < 4; i++) { VSHA_LOAD(M, p, i, mask); VSHA_QROUND(S0, S1, M, i); }
            #pragma GCC unroll 12
            for (i = 4; i < 16; i++) { VSHA_SCHEDULE(M, i); VSHA_QROUND(S0, S1, M, i); }
            S0 = _mm_add_epi32(S0, A);
            S1 = _mm_add_epi32(S1, B);
        }
        vsha_ni_store(s, S0, S1);
    }

    static VSHA_NI void vsha_ni2(uint32_t* s, const uint8_t* p, uint32_t* t, const uint8_t* q, size_t n) {
        const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
        __m128i S0, S1, M[4], R0, R1, N[4];
        int i;
        vsha_ni_load(s, &S0, &S1);
        vsha_ni_load(t, &R0, &R1);
        for (; n; n--, p += 64, q += 64) {
            __m128i A = S0, B = S1, C = R0, D = R1;
            #pragma GCC unroll 4
            for (i = 0; i < 4; i++) {
                VSHA_LOAD(M, p, i, mask); VSHA_LOAD(N, q, i, mask);
                VSHA_QROUND2(S0, S1, M, R0, R1, N, i);
            }
            #pragma GCC unroll 12
            for (i = 4; i < 16; i++) {
                VSHA_SCHEDULE(M, i); VSHA_SCHEDULE(N, i);
                VSHA_QROUND2(S0, S1, M, R0, R1, N, i);
            }
            S0 = _mm_add_epi32(S0, A); S1 = _mm_add_epi32(S1, B);
            R0 = _mm_add_epi32(R0, C); R1 = _mm_add_epi32(R1, D);
        }
        vsha_ni_store(s, S0, S1);
        vsha_ni_store(t, R0, R1);
    }

    static int vsha_cpu_has_shani(void) {
        unsigned a, b, c, d;
        if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 9)) || !(c & (1u << 19)))
            return 0;  /* SSSE3, SSE4.1 */
        if (__get_cpuid_max(0, 0) < 7)
            return 0;
        __cpuid_count(7, 0, a, b, c, d);
        return (b >> 29) & 1;
    }
    #endif

    /* whether engine e can run here */
    static int vsha_available(int e) {
        if (e == VSHA_PORTABLE) return 1;
    #if defined(VPCID_LIBCRYPTO)
        if (e == VSHA_OPENSSL) return 1;
    #endif
    #if defined(VSHA_X86)
        if (e == VSHA_SHANI) return vsha_cpu_has_shani();
    #endif
        return 0;
    }

    /* n whole blocks at p into state s */
    static void vsha_blocks(uint32_t* s, const uint8_t* p, size_t n) {
        if (!n) return;
    #if defined(VSHA_X86)
        if (vsha_engine == VSHA_SHANI) { vsha_ni1(s, p, n); return; }
    #endif
    #if defined(VPCID_LIBCRYPTO)
        if (vsha_engine == VSHA_OPENSSL) { vsha_openssl(s, p, n); return; }
    #endif
        vsha_portable(s, p, n);
    }

    /* n whole blocks of two independent messages */
    static void vsha_blocks2(uint32_t* s, const uint8_t* p, uint32_t* t, const uint8_t* q, size_t n) {
        if (!n) return;
    #if defined(VSHA_X86)
        if (vsha_engine == VSHA_SHANI) { vsha_ni2(s, p, t, q, n); return; }
    #endif
        vsha_blocks(s, p, n);
        vsha_blocks(t, q, n);
    }

    /* The digest of a message whose first (total - n) bytes, a multiple of 64, are in state s and
       whose last n bytes are at p. s is left unchanged. */
    static void vsha_final(const uint32_t* s, const uint8_t* p, size_t n, uint64_t total, uint8_t* out) {
        uint32_t h[8];
        uint8_t last[128];
        size_t full = n / 64, rest, pad;
        uint64_t bits = total * 8;
        int i;
        memcpy(h, s, 32);
        vsha_blocks(h, p, full);
        rest = n - 64 * full;
        pad = rest < 56 ? 64 : 128;
        if (rest) memcpy(last, p + 64 * full, rest);
        last[rest] = 0x80;
        memset(last + rest + 1, 0, pad - rest - 9);
        for (i = 0; i < 8; i++) last[pad - 1 - i] = (uint8_t)(bits >> (8 * i));
        vsha_blocks(h, last, pad / 64);
        for (i = 0; i < 8; i++) {
            out[4 * i] = (uint8_t)(h[i] >> 24); out[4 * i + 1] = (uint8_t)(h[i] >> 16);
            out[4 * i + 2] = (uint8_t)(h[i] >> 8); out[4 * i + 3] = (uint8_t)h[i];
        }
    }

    /* SHA-256 of n bytes */
    static void vsha_digest(const uint8_t* p, size_t n, uint8_t* out) {
        uint32_t s[8];
        vsha_iv(s);
        vsha_blocks(s, p, n / 64);
        vsha_final(s, p + (n & ~(size_t)63), n & 63, n, out);
    }

    /* SHA-256 of two messages, their common whole blocks hashed as two streams */
    static void vsha_digest2(const uint8_t* p, size_t n, const uint8_t* q, size_t m, uint8_t* out_p,
                             uint8_t* out_q) {
        uint32_t s[8], t[8];
        size_t both = (n < m ? n : m) / 64;
        vsha_iv(s);
        vsha_iv(t);
        vsha_blocks2(s, p, t, q, both);
        vsha_blocks(s, p + 64 * both, n / 64 - both);
        vsha_blocks(t, q + 64 * both, m / 64 - both);
        vsha_final(s, p + (n & ~(size_t)63), n & 63, n, out_p);
        vsha_final(t, q + (m & ~(size_t)63), m & 63, m, out_q);
    }
    """
    int VSHA_PORTABLE, VSHA_OPENSSL, VSHA_SHANI
    int vsha_engine
    void vsha_use(int) noexcept nogil
    int vsha_available(int) noexcept nogil
    void vsha_iv(uint32_t*) noexcept nogil
    void vsha_blocks(uint32_t*, const uint8_t*, size_t) noexcept nogil
    void vsha_blocks2(uint32_t*, const uint8_t*, uint32_t*, const uint8_t*, size_t) noexcept nogil
    void vsha_final(const uint32_t*, const uint8_t*, size_t, uint64_t, uint8_t*) noexcept nogil
    void vsha_digest(const uint8_t*, size_t, uint8_t*) noexcept nogil
    void vsha_digest2(const uint8_t*, size_t, const uint8_t*, size_t, uint8_t*, uint8_t*) noexcept nogil


SHA_ENGINES = ("portable", "openssl", "sha-ni")
"""Names of the SHA-256 engines, by number."""

# the fastest engine available, unless VPCID_SHA_ENGINE names another one that is
for _engine in (VSHA_SHANI, VSHA_OPENSSL):
    if vsha_available(_engine):
        vsha_use(_engine)
        break
_wanted = _os.environ.get("VPCID_SHA_ENGINE")
if _wanted in SHA_ENGINES and vsha_available(SHA_ENGINES.index(_wanted)):
    vsha_use(SHA_ENGINES.index(_wanted))


def sha_engine():
    """The SHA-256 engine in use: "sha-ni", "openssl" or "portable"."""
    return SHA_ENGINES[vsha_engine]


def available_sha_engines():
    """The SHA-256 engines this build can run on this machine."""
    return tuple(name for code, name in enumerate(SHA_ENGINES) if vsha_available(code))


def use_sha_engine(name):
    """Switch the SHA-256 engine (tests run every available one); return the previous one's name."""
    if name not in SHA_ENGINES or not vsha_available(SHA_ENGINES.index(name)):
        raise ValueError(f"SHA-256 engine {name!r} is not available here")
    previous = SHA_ENGINES[vsha_engine]
    vsha_use(SHA_ENGINES.index(name))
    return previous


def sha256(data):
    """SHA-256 of ``data`` (any bytes-like object) with the engine in use."""
    cdef Py_buffer a
    cdef uint8_t out[32]
    PyObject_GetBuffer(data, &a, PyBUF_SIMPLE)
    try:
        vsha_digest(<const uint8_t*>a.buf, a.len, out)
    finally:
        PyBuffer_Release(&a)
    return PyBytes_FromStringAndSize(<char*>out, 32)


def sha256_pair(first, second):
    """SHA-256 of two messages, their common whole blocks hashed as two streams.

    The snapshot writer seals the instance blobs it writes two at a time this way.
    """
    cdef Py_buffer a
    cdef Py_buffer b
    cdef uint8_t out[64]
    PyObject_GetBuffer(first, &a, PyBUF_SIMPLE)
    try:
        PyObject_GetBuffer(second, &b, PyBUF_SIMPLE)
        try:
            vsha_digest2(<const uint8_t*>a.buf, a.len, <const uint8_t*>b.buf, b.len, out, out + 32)
        finally:
            PyBuffer_Release(&b)
    finally:
        PyBuffer_Release(&a)
    return PyBytes_FromStringAndSize(<char*>out, 32), PyBytes_FromStringAndSize(<char*>out + 32, 32)


# ---------------------------------------------------------------- constants

cdef enum:
    PAGE = 4096
    PAGE_ENTRY = 4105
    ROM = 6
    NWIN = 7
    CF8 = 0xCF8
    CFC = 0xCFC
    SNAP_DEVICES = 16 + 8 + 13 + 8  # where a snapshot's devices section starts: header, VM section

cdef uint64_t ECAM_SIZE = 256 << 20
cdef uint64_t DEFAULT_ECAM_BASE = (<uint64_t>0xB0000000)
cdef uint64_t NO_PAGE = (<uint64_t>0xFFFFFFFFFFFFFFFF)

# BAR kinds
cdef enum:
    K_NONE = 0
    K_IO = 1
    K_MEM32 = 2
    K_MEM64 = 3
    K_ROM = 4

# error codes (R-ERR-003); 0 is success, -1 a propagated Python exception
cdef enum:
    E_INVALID = 1
    E_UNKNOWN_VM = 2
    E_DUP_VM = 3
    E_UNKNOWN_DEV = 4
    E_SLOT = 5
    E_WIDTH = 6
    E_MISALIGNED = 7
    E_BAD_TYPE = 8
    E_BAD_PROFILE = 9
    E_BAD_BLOB = 10
    E_MISMATCH = 11
    E_EMPTY_SLOT = 12

ERROR_KINDS = (
    "ok", "invalid-argument", "unknown-vm", "duplicate-vm", "unknown-device", "slot-occupied",
    "bad-width", "misaligned", "bad-device-type", "bad-profile", "bad-blob", "blob-mismatch",
    "empty-slot",
)
"""Error kind of each error code, index = code (R-ERR-003)."""

_ERROR_CLASSES = (
    None, _errors.InvalidArgument, _errors.UnknownVm, _errors.DuplicateVm, _errors.UnknownDevice,
    _errors.SlotOccupied, _errors.BadWidth, _errors.Misaligned, _errors.DeviceTypeError,
    _errors.ProfileError, _errors.BlobError, _errors.BlobMismatch, None,
)

# operation kinds (the trace language)
cdef enum:
    OP_INIT = 0
    OP_CREATE_VM = 1
    OP_DESTROY_VM = 2
    OP_PLUG = 3
    OP_UNPLUG = 4
    OP_CONFIG_READ = 5
    OP_CONFIG_WRITE = 6
    OP_IO_READ = 7
    OP_IO_WRITE = 8
    OP_MMIO_READ = 9
    OP_MMIO_WRITE = 10
    OP_RESET = 11
    OP_RESET_VM = 12
    OP_SAVE = 13
    OP_RESTORE = 14
    OP_SNAPSHOT = 15
    OP_RESTORE_VM = 16
    OP_TABLES = 17
    OP_DEFINE_TYPE = 18  # performed when encoded (types persist across init); the record holds its result
    OP_SET_ECAM_BASE = 19
    OP_TOPOLOGY = 20
    OP_KINDS = 21

cdef dict _KIND_CODES = {
    _OpKind.INIT: OP_INIT, _OpKind.CREATE_VM: OP_CREATE_VM, _OpKind.DESTROY_VM: OP_DESTROY_VM,
    _OpKind.PLUG: OP_PLUG, _OpKind.UNPLUG: OP_UNPLUG, _OpKind.CONFIG_READ: OP_CONFIG_READ,
    _OpKind.CONFIG_WRITE: OP_CONFIG_WRITE, _OpKind.IO_READ: OP_IO_READ, _OpKind.IO_WRITE: OP_IO_WRITE,
    _OpKind.MMIO_READ: OP_MMIO_READ, _OpKind.MMIO_WRITE: OP_MMIO_WRITE, _OpKind.RESET: OP_RESET,
    _OpKind.RESET_VM: OP_RESET_VM, _OpKind.SAVE: OP_SAVE, _OpKind.RESTORE: OP_RESTORE,
    _OpKind.SNAPSHOT: OP_SNAPSHOT, _OpKind.RESTORE_VM: OP_RESTORE_VM, _OpKind.TABLES: OP_TABLES,
    _OpKind.DEFINE_TYPE: OP_DEFINE_TYPE, _OpKind.SET_ECAM_BASE: OP_SET_ECAM_BASE,
    _OpKind.TOPOLOGY: OP_TOPOLOGY,
}
# enum members by code, for dispatch by identity (Enum.__hash__ is Python code)
cdef PyObject* _KIND_OBJ[OP_KINDS]
for _member, _code in _KIND_CODES.items():
    _KIND_OBJ[_code] = <PyObject*>_member
# the order in which identity is tried: the most frequent kinds first
cdef int _KIND_ORDER[OP_KINDS]
for _i, _code in enumerate((OP_CONFIG_READ, OP_CONFIG_WRITE, OP_MMIO_READ, OP_IO_READ, OP_MMIO_WRITE,
                            OP_IO_WRITE, OP_PLUG, OP_CREATE_VM, OP_SAVE, OP_TABLES, OP_RESET, OP_UNPLUG,
                            OP_SNAPSHOT, OP_RESTORE, OP_INIT, OP_RESET_VM, OP_RESTORE_VM, OP_DESTROY_VM,
                            OP_DEFINE_TYPE, OP_SET_ECAM_BASE, OP_TOPOLOGY)):
    _KIND_ORDER[_i] = _code

# Op fields by position when Op is a named tuple (attribute access otherwise)
cdef int F_KIND = -1, F_VM = -1, F_BDF = -1, F_ADDRESS = -1, F_WIDTH = -1, F_VALUE = -1
cdef int F_NAME = -1, F_DATA = -1, F_ECAM = -1
cdef Py_ssize_t F_COUNT = 0
if issubclass(_Op, tuple) and isinstance(getattr(_Op, "_fields", None), tuple):
    _fields = _Op._fields
    if all(f in _fields for f in ("kind", "vm", "bdf", "address", "width", "value", "name", "data", "ecam_base")):
        F_KIND, F_VM, F_BDF = _fields.index("kind"), _fields.index("vm"), _fields.index("bdf")
        F_ADDRESS, F_WIDTH, F_VALUE = _fields.index("address"), _fields.index("width"), _fields.index("value")
        F_NAME, F_DATA, F_ECAM = _fields.index("name"), _fields.index("data"), _fields.index("ecam_base")
        F_COUNT = len(_fields)


cdef inline int kind_code(object kind) noexcept:
    cdef int i, code
    cdef PyObject* k = <PyObject*>kind
    for i in range(OP_KINDS):
        code = _KIND_ORDER[i]
        if _KIND_OBJ[code] == k:
            return code
    return -1

# bits of OpRec.bad: the field is not an integer in 0..2**64-1 (or, for bdf, not a Bdf)
cdef enum:
    B_VM = 1
    B_ADDR = 2
    B_WIDTH = 4
    B_VALUE = 8
    B_ECAM = 16
    B_BDF = 32

# observation kinds of a result
cdef enum:
    R_OK = 0
    R_VALUE = 1
    R_ERROR = 2
    R_DIGEST = 3
    R_TABLES = 4
    R_TOPOLOGY = 5

# profile values (spec/variants.md)
cdef enum:
    MOVE_IMMEDIATE = 0
    MOVE_DEFERRED = 1
    MOVE_IGNORED = 2
    STRADDLE_SPLIT = 0
    STRADDLE_REJECT = 1
    STRADDLE_START = 2
    OVERLAP_LOWEST = 0
    OVERLAP_LAST = 1
    OVERLAP_FIRST = 2
    NARROW_UNMAPPED = 0
    NARROW_READ_ADDRESS = 1
    NARROW_ADDRESS_BYTES = 2
    NARROW_RESET_CONTROL = 3
    # window(): flags of the decode variants (R-DEC-004, R-DEC-006, R-BAR-003)
    WIN_ZERO_DECODES = 1
    WIN_TOP_UNMAPPED = 2
    WIN_ALIGNED_ONLY = 4


# ---------------------------------------------------------------- structures

cdef struct MapEntry:
    uint64_t key
    void* val

cdef struct U64Map:
    MapEntry* tab
    uint64_t mask
    uint64_t count

cdef struct Inst

cdef struct Mapping:
    # One BAR's window (one cache line: an access to the BAR touches only this and the data).
    Inst* inst
    Mapping* next        # the next mapping under the same table key, by priority
    uint64_t base
    uint64_t stamp       # when its decode began (last-mapped overlap, snapshot map order)
    uint64_t hot_key     # BAR store: the page used last and where it is (kept across moves)
    uint8_t* hot_page
    uint8_t bar
    uint8_t log2
    uint8_t active
    uint8_t custom       # the device type has a custom behaviour
    uint8_t paged        # the BAR store holds pages (reads of an empty store skip the page table)
    uint8_t limited      # below bridges: only the pieces in ``fwd`` reach it (R-BRG-006)
    uint8_t _pad[2]
    uint64_t* fwd        # limited: a count, then that many inclusive (first, last) address pairs

cdef struct CClass:
    # one size class of a table (meaningful while its bit is in ``classes``)
    uint64_t lo          # every mapping of the class lies within lo .. lo + ext (a bound, not exact)
    uint64_t ext
    Mapping* sole        # the class's only mapping (then the bound is exact), or NULL: probe the map
    uint64_t count

cdef struct DTable:
    U64Map map
    uint64_t classes
    CClass cls[64]       # last: not cleared when a pooled VM is reused (``classes`` says what is valid)

cdef struct CType:
    int cfg_size
    uint8_t image[4096]
    uint8_t wmask[4096]
    uint8_t w1c[4096]
    uint8_t fixed[4096]
    uint8_t sticky[4096] # bits a function-level reset keeps (R-RST-004)
    int has_sticky
    int flr_ctl          # Device Control's offset when the function can do an FLR, else -1 (R-RST-005)
    uint8_t probe_wmask[24]  # the declared write mask of 0x10-0x27: probe-only sizing probes (R-BAR-003)
    uint32_t addr_bits[6]    # the address bits of each BAR dword (0: unimplemented) (R-BAR-003)
    uint8_t kind[7]
    uint64_t size[7]
    uint8_t log2[7]
    int nimpl
    uint8_t impl[7]
    const uint8_t* rom
    uint64_t rom_len
    int custom
    PyObject* behaviour
    int cfg_hook         # the device type has a configuration behaviour (R-DT-008)
    PyObject* cfg_behaviour
    const char* name
    int name_len
    const uint8_t* fp
    uint32_t index       # position in the manager's list of type names (packed table rows)
    int rom_reg          # the expansion ROM BAR: 0x30, or 0x38 in a bridge's type 1 header
    int bridge           # a PCI-to-PCI bridge: type 1 header, a secondary bus (R-BRG-001)
    int io_win           # its I/O window: 0 none, 16 or 32 (bits)
    int pref_win         # its prefetchable window: 0 none, 32 or 64 (bits)

cdef struct Inst:
    # allocated 64-byte aligned: the seven windows (BAR0-5, ROM) are one cache line each
    Mapping maps[7]
    # then what a configuration access touches, then the colder fields
    CType* t
    uint8_t* cfg         # the configuration space: the type's power-on image until first changed,
                         # then the instance's own copy, which follows this structure
    int cfg_size
    uint16_t bdf
    uint32_t rank        # overlap priority: its BDF, or 0x10000 (after all) while it has none (R-BRG-003)
    uint8_t pending      # restore_vm: windows of the blob still to map, in map order
    uint64_t gen         # bumped by every change of state or data
    PyObject* pydata     # the behaviour's DeviceData (custom behaviours only)
    U64Map pages         # BAR store: (BAR << 56 | page index) -> 4096 bytes
    PyObject* tinfo
    # the canonical blob as last encoded, valid while cgen == gen: bytes at coff..coff+clen of cbuf
    # (a blob of its own, or a snapshot holding it); it ends in its digest
    uint64_t cgen
    PyObject* cbuf
    Py_ssize_t coff
    Py_ssize_t clen
    # the bus tree (fixed by plugging): the bridge it is plugged below, or NULL on a root bus; a
    # bridge's secondary bus, by device and function; whether it has a BDF now (in the table)
    Inst* parent
    Inst** kids
    uint8_t devfn
    uint8_t reach
    uint32_t order       # snapshot(): its index in the devices section


cdef struct Vm:
    uint32_t id
    int has_ecam
    uint64_t ecam
    uint32_t cf8
    uint8_t rcr          # the reset control register at 0xCF9: bits 1 and 3 (R-CAM-008)
    uint64_t stamp
    U64Map cfgtab
    DTable io
    DTable mem
    uint64_t gen         # bumped by every change in the VM
    uint64_t cgen
    PyObject* cblob      # cached snapshot (valid while cgen == gen), or NULL
    uint32_t nbridges    # bridge instances, reachable or not
    uint16_t rootcount[256]  # instances on each root bus (rule 1 of bus-number routing)
    Inst** busowner      # bus number -> the bridge whose secondary bus it names (bridged VMs), or NULL

cdef union OpArg:
    uint64_t value       # writes: the value
    PyObject* obj        # plug: the TypeInfo; restore, restore_vm: a literal blob (borrowed)

cdef struct OpRec:
    # one operation, 32 bytes (a batch walks through a whole trace of them)
    uint8_t kind
    uint8_t bad          # B_* bits: fields that are not integers in range (then their value is 0)
    uint8_t ecam_none
    uint8_t width
    uint16_t bdf
    uint32_t vm
    uint32_t slot
    uint64_t address     # create_vm: the ECAM base
    OpArg arg

cdef struct Res:
    int kind
    uint64_t value       # read value, or error code
    Vm* vm               # tables: the VM whose tables are observed

cdef struct Enc:
    # an instance blob about to be written: its pages (in the manager's scratch arrays) and size
    Inst* p
    Py_ssize_t first
    Py_ssize_t npages
    Py_ssize_t size      # the whole blob, seal included
    PyObject* pylist     # custom behaviours: [(bar, page, bytes)] and the extra bytes (borrowed)
    PyObject* extra

cdef struct InstRec:
    const uint8_t* name
    int name_len
    const uint8_t* fp
    const uint8_t* cfg
    Py_ssize_t cfg_len
    uint8_t on[7]
    uint64_t base[7]
    const uint8_t* mem
    uint32_t npages
    const uint8_t* extra
    Py_ssize_t extra_len

cdef Mapping _window_target
cdef Mapping* WINDOW = &_window_target
cdef Mapping _reset_control_target
cdef Mapping* RESET_CONTROL = &_reset_control_target   # 0xCF9 (R-CAM-008)
cdef Mapping _address_bytes_target
cdef Mapping* ADDRESS_BYTES = &_address_bytes_target   # bytes of CONFIG_ADDRESS (V-CF8-NARROW, R-CAM-001)
"""Routing target standing for a platform configuration window (0xCFC-0xCFF or ECAM)."""


# ---------------------------------------------------------------- hash map

cdef int map_grow(U64Map* m) except -1:
    cdef uint64_t oldcap = 0 if m.tab == NULL else m.mask + 1
    cdef uint64_t newcap = 16 if oldcap == 0 else oldcap * 2
    cdef MapEntry* old = m.tab
    cdef MapEntry* tab = <MapEntry*>calloc(newcap, sizeof(MapEntry))
    cdef uint64_t i, j, mask = newcap - 1
    if tab == NULL:
        raise MemoryError()
    for i in range(oldcap):
        if old[i].val != NULL:
            j = mix64(old[i].key) & mask
            while tab[j].val != NULL:
                j = (j + 1) & mask
            tab[j] = old[i]
    free(old)
    m.tab = tab
    m.mask = mask
    return 0


cdef inline void* map_get(U64Map* m, uint64_t key) noexcept nogil:
    cdef uint64_t i
    cdef MapEntry* e
    if m.count == 0:
        return NULL
    i = mix64(key) & m.mask
    while True:
        e = &m.tab[i]
        if e.val == NULL:
            return NULL
        if e.key == key:
            return e.val
        i = (i + 1) & m.mask


cdef inline int map_reserve(U64Map* m) except -1:
    """Room for one more key: the next ``map_put`` does not allocate."""
    if m.tab == NULL or (m.count + 1) * 2 > m.mask + 1:
        map_grow(m)
    return 0


cdef int map_put(U64Map* m, uint64_t key, void* val) except -1:
    """Insert or replace; ``val`` is never NULL."""
    cdef uint64_t i
    if m.tab == NULL or (m.count + 1) * 2 > m.mask + 1:
        map_grow(m)
    i = mix64(key) & m.mask
    while m.tab[i].val != NULL:
        if m.tab[i].key == key:
            m.tab[i].val = val
            return 0
        i = (i + 1) & m.mask
    m.tab[i].key = key
    m.tab[i].val = val
    m.count += 1
    return 0


cdef inline MapEntry* map_slot(U64Map* m, uint64_t key) noexcept nogil:
    """The entry holding ``key``, or the empty entry where it would go (``m`` must have a table)."""
    cdef uint64_t i = mix64(key) & m.mask
    while m.tab[i].val != NULL and m.tab[i].key != key:
        i = (i + 1) & m.mask
    return &m.tab[i]


cdef void* map_del(U64Map* m, uint64_t key) noexcept nogil:
    """Remove ``key``; return its value or NULL."""
    cdef MapEntry* e
    if m.count == 0:
        return NULL
    e = map_slot(m, key)
    if e.val == NULL:
        return NULL
    return map_del_at(m, <uint64_t>(e - m.tab))


cdef void* map_del_at(U64Map* m, uint64_t i) noexcept nogil:
    """Remove the entry at index ``i``; return its value (backward-shift deletion)."""
    cdef uint64_t j, h, mask = m.mask
    cdef void* val = m.tab[i].val
    j = i
    while True:
        j = (j + 1) & mask
        if m.tab[j].val == NULL:
            break
        h = mix64(m.tab[j].key) & mask
        if ((j - h) & mask) >= ((j - i) & mask):
            m.tab[i] = m.tab[j]
            i = j
    m.tab[i].val = NULL
    m.tab[i].key = 0
    m.count -= 1
    return val


cdef inline void map_free(U64Map* m) noexcept nogil:
    free(m.tab)
    m.tab = NULL
    m.mask = 0
    m.count = 0


# ---------------------------------------------------------------- decode tables (R-DS-006, R-DEC-008)

cdef inline bint before(Mapping* a, Mapping* b, int overlap) noexcept nogil:
    """Whether ``a`` wins over ``b`` where both decode (R-DEC-008); ``overlap``: an OVERLAP_ value."""
    if overlap == OVERLAP_LAST:
        return a.stamp > b.stamp
    if overlap == OVERLAP_FIRST:
        return a.stamp < b.stamp
    if a.inst.rank != b.inst.rank:
        return a.inst.rank < b.inst.rank
    return a.bar < b.bar


cdef inline uint64_t table_key(uint64_t base, int k) noexcept nogil:
    """The key ``(k, base >> k)`` packed in one word: ``base`` is aligned, bit ``k-1`` names ``k``."""
    return ((base >> k) << k) | ((<uint64_t>1) << (k - 1))


cdef int table_insert(DTable* t, Mapping* m, int lm) except -1:
    cdef uint64_t key = table_key(m.base, m.log2)
    cdef uint64_t last, hi
    cdef CClass* c
    cdef MapEntry* e
    cdef Mapping* head
    cdef Mapping* p
    map_reserve(&t.map)
    e = map_slot(&t.map, key)  # one probe finds the chain or where it starts
    head = <Mapping*>e.val
    if head == NULL or before(m, head, lm):
        m.next = head
        if head == NULL:
            e.key = key
            t.map.count += 1
        e.val = m
    else:
        p = head
        while p.next != NULL and not before(m, p.next, lm):
            p = p.next
        m.next = p.next
        p.next = m
    c = &t.cls[m.log2]
    last = m.base + (((<uint64_t>1) << m.log2) - 1)
    if not (t.classes & ((<uint64_t>1) << m.log2)):  # the class's fields are stale until now
        c.lo = m.base
        c.ext = last - m.base
        c.sole = m
        c.count = 0
    else:
        hi = c.lo + c.ext
        if m.base < c.lo:
            c.lo = m.base
        if last > hi:
            hi = last
        c.ext = hi - c.lo
        c.sole = NULL
    c.count += 1
    t.classes |= (<uint64_t>1) << m.log2
    return 0


cdef int table_remove(DTable* t, Mapping* m) except -1:
    cdef uint64_t key = table_key(m.base, m.log2)
    cdef MapEntry* e = map_slot(&t.map, key)  # the table holds ``m``, so it has a table
    cdef Mapping* head = <Mapping*>e.val
    cdef Mapping* p
    cdef CClass* c
    if head == m:
        if m.next != NULL:
            e.val = m.next
        else:
            map_del_at(&t.map, <uint64_t>(e - t.map.tab))
    else:
        p = head
        while p != NULL and p.next != m:
            p = p.next
        if p == NULL:
            raise AssertionError("decode table lost a mapping")
        p.next = m.next
    m.next = NULL
    c = &t.cls[m.log2]
    c.count -= 1
    c.sole = NULL  # the one left (if any) is not known here: lookups probe the map
    if c.count == 0:
        t.classes &= ~((<uint64_t>1) << m.log2)
    return 0


cdef inline bint forwards(Mapping* m, uint64_t a) noexcept nogil:
    """Whether every bridge above ``m``'s instance forwards address ``a`` to it (R-BRG-006)."""
    cdef uint64_t k, n
    cdef const uint64_t* f
    if not m.limited:
        return True
    f = m.fwd
    n = f[0]
    for k in range(n):
        if f[1 + 2 * k] <= a <= f[2 + 2 * k]:
            return True
    return False


cdef inline Mapping* table_lookup(DTable* t, uint64_t a, int lm) noexcept nogil:
    """One probe per size class in use; in a bucket, the first mapping in priority order that the
    bridges above it forward ``a`` to (R-DS-006, R-DS-009, R-BRG-006)."""
    cdef uint64_t cm = t.classes
    cdef Mapping* best = NULL
    cdef Mapping* h
    cdef CClass* c
    cdef int k
    while cm:
        k = ctz64(cm)
        cm &= cm - 1
        c = &t.cls[k]
        if a - c.lo > c.ext:
            continue  # no mapping of this size lies around ``a``
        h = c.sole
        if h == NULL:
            h = <Mapping*>map_get(&t.map, table_key(a, k))
        while h != NULL and h.limited and not forwards(h, a):
            h = h.next  # (a class's sole mapping has no next)
        if h != NULL and (best == NULL or before(h, best, lm)):
            best = h
    return best


# ---------------------------------------------------------------- BAR decode (R-DEC-001..R-DEC-006)

cdef inline bint decode_enabled(CType* t, const uint8_t* cfg, int i) noexcept nogil:
    cdef uint16_t cmd = ld16(cfg + 4)
    cdef uint8_t kind = t.kind[i]
    if kind == K_NONE:
        return False
    if kind == K_ROM:
        return (cmd & 2) != 0 and (cfg[t.rom_reg] & 1) != 0
    if kind == K_IO:
        return (cmd & 1) != 0
    return (cmd & 2) != 0


cdef inline uint64_t limit_of(uint8_t kind) noexcept nogil:
    """One past the highest decodable address, 0 standing for 2**64 (R-DEC-006)."""
    if kind == K_IO:
        return 0x10000
    if kind == K_MEM64:
        return 0
    return (<uint64_t>0x100000000)


cdef inline bint fits(uint64_t base, uint64_t size, uint8_t kind) noexcept nogil:
    cdef uint64_t limit = limit_of(kind)
    if limit == 0:
        return base <= (<uint64_t>0) - size
    return size <= limit and base <= limit - size


cdef inline bint window(CType* t, const uint8_t* cfg, int i, uint64_t* base, int flags) noexcept nogil:
    """Where window ``i`` decodes given the registers; False when it does not (R-DEC-001..R-DEC-006).
    ``flags``: the WIN_ variants of the profile (V-ADDR-ZERO, V-BAR-TOP, V-BAR-SIZING)."""
    cdef uint16_t cmd = ld16(cfg + 4)
    cdef uint8_t kind = t.kind[i]
    cdef uint64_t b
    cdef uint32_t low
    if kind == K_NONE:
        return False
    if kind == K_ROM:
        low = ld32(cfg + t.rom_reg)
        if not ((cmd & 2) and (low & 1)):
            return False
        b = low & (<uint64_t>0xFFFFF800)
    else:
        low = ld32(cfg + 0x10 + 4 * i)
        if kind == K_IO:
            if not (cmd & 1):
                return False
            b = low & (<uint64_t>0xFFFFFFFC)
        else:
            if not (cmd & 2):
                return False
            b = low & (<uint64_t>0xFFFFFFF0)
            if kind == K_MEM64:
                b |= (<uint64_t>ld32(cfg + 0x14 + 4 * i)) << 32
    if not may_decode_at(b, t.size[i], kind, flags):
        return False
    if (flags & WIN_ALIGNED_ONLY) and (b & (t.size[i] - 1)):
        return False
    base[0] = b
    return True


cdef inline bint may_decode_at(uint64_t b, uint64_t size, uint8_t kind, int flags) noexcept nogil:
    """Whether a range of ``size`` at ``b`` may decode: address zero and the top of the space as the
    profile says, and below the limit (R-DEC-004, R-DEC-006)."""
    cdef uint64_t limit = limit_of(kind)
    if b == 0 and not (flags & WIN_ZERO_DECODES):
        return False
    if not fits(b, size, kind):
        return False
    if (flags & WIN_TOP_UNMAPPED) and kind != K_IO and b + size == limit:  # 0 stands for 2**64
        return False
    return True


cdef inline bint in_decoding_register(CType* t, const uint8_t* was, int o) noexcept nogil:
    """Whether configuration byte ``o`` belongs to the register of a BAR that decoded (``was``)."""
    cdef int j, i
    for j in range(t.nimpl):
        i = t.impl[j]
        if was[i] and reg_start(t, i) <= o < reg_stop(t, i):
            return True
    return False


cdef inline int reg_start(CType* t, int i) noexcept nogil:
    return t.rom_reg if i == ROM else 0x10 + 4 * i


cdef inline int reg_stop(CType* t, int i) noexcept nogil:
    if i == ROM:
        return t.rom_reg + 4
    return 0x18 + 4 * i if t.kind[i] == K_MEM64 else 0x14 + 4 * i


# ---------------------------------------------------------------- device types

@cython.final
cdef int flr_control_offset(CType* c) noexcept:
    """Device Control's offset when the type's first PCI Express capability (ID 0x10, standard chain)
    says Function Level Reset capable (Device Capabilities bit 28) at power-on, else -1 (R-RST-005).
    The chain of a valid type is well formed (no cycle, pointers in 0x40-0xfc)."""
    cdef int at, steps = 0
    if not (c.image[0x06] & 0x10):
        return -1
    at = c.image[0x34]
    while at and steps < 64:
        if c.image[at] == 0x10:
            if at + 0x0A > 0x100 or not (ld32(c.image + at + 4) & (<uint32_t>1 << 28)):
                return -1
            return at + 8
        at = c.image[at + 1]
        steps += 1
    return -1


cdef bint multifunction_conflict(U64Map* cfgtab, uint16_t bdf, int header_type) noexcept:
    """Whether a function of header type ``header_type`` at ``bdf`` breaks the multi-function rules
    beside the functions in ``cfgtab`` (R-MF-001, R-MF-002); header type -1: not known, no check."""
    cdef uint16_t first = bdf & ~7
    cdef Inst* f0
    cdef int f
    if header_type < 0:
        return False
    if bdf & 7:
        f0 = <Inst*>map_get(cfgtab, first)
        return f0 != NULL and not (f0.t.image[0x0E] & 0x80)
    if header_type & 0x80:
        return False
    for f in range(1, 8):
        if map_get(cfgtab, first | f) != NULL:
            return True
    return False


cdef class TypeInfo:
    """A device type as the compiled manager sees it: layout, BARs, behaviour (R-DT-001, R-DT-002)."""

    cdef CType* c
    cdef readonly object dtype
    cdef readonly str name
    cdef readonly bytes name_bytes
    cdef readonly bytes fingerprint
    cdef object rom
    cdef readonly object behaviour
    cdef readonly object config_behaviour
    cdef readonly frozenset accepts  # fingerprints of earlier revisions whose blobs it restores (R-MIG-001)
    # The blob of an instance in power-on state (no write, no data, nothing mapped): the same for
    # every such instance of the type, as the power-on configuration image is, so it is hashed
    # once per type.
    cdef bytes power_on_blob

    def __cinit__(self):
        self.c = <CType*>calloc(1, sizeof(CType))
        if self.c == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.c)

    @staticmethod
    cdef TypeInfo build(object dtype, object profile):
        cdef TypeInfo ti = TypeInfo.__new__(TypeInfo)
        cdef CType* c = ti.c
        cdef int i, o
        cdef bytes image, wmask, w1c, declared
        lay = _profile_layout(dtype, profile)
        image, wmask, w1c = lay.image, lay.wmask, lay.w1cmask
        sticky = dtype.declared.sticky
        declared = _layout(dtype, profile.status).wmask
        for o in range(24):
            c.probe_wmask[o] = declared[0x10 + o]
        for i in range(6):
            c.addr_bits[i] = 0
        for i in range(6):
            bar = dtype.bar(i)
            if bar is not None:
                c.addr_bits[i] = 0xFFFFFFFC if bar.kind.value == "io" else 0xFFFFFFF0
                if bar.kind.value == "mem64":
                    c.addr_bits[i + 1] = 0xFFFFFFFF
        c.cfg_size = len(image)
        c.has_sticky = len(sticky) != 0
        for o in range(c.cfg_size):
            c.image[o] = image[o]
            c.wmask[o] = wmask[o]
            c.w1c[o] = w1c[o]
            c.fixed[o] = ~(c.wmask[o] | c.w1c[o])
            c.sticky[o] = sticky[o] if c.has_sticky else 0
        c.flr_ctl = flr_control_offset(c)
        c.nimpl = 0
        for i in range(6):
            bar = dtype.bar(i)
            if bar is None:
                c.kind[i] = K_NONE
                continue
            kind = bar.kind.value
            c.kind[i] = K_IO if kind == "io" else (K_MEM64 if kind == "mem64" else K_MEM32)
            c.size[i] = bar.size
            c.log2[i] = bar.size.bit_length() - 1
            c.impl[c.nimpl] = i
            c.nimpl += 1
        if dtype.rom is not None:
            ti.rom = bytes(dtype.rom.contents)
            c.kind[ROM] = K_ROM
            c.size[ROM] = dtype.rom.size
            c.log2[ROM] = dtype.rom.size.bit_length() - 1
            c.rom = <const uint8_t*>PyBytes_AS_STRING(ti.rom)
            c.rom_len = len(ti.rom)
            c.impl[c.nimpl] = ROM
            c.nimpl += 1
        else:
            c.kind[ROM] = K_NONE
        ti.dtype = dtype
        ti.name = dtype.name
        ti.name_bytes = dtype.name.encode()
        ti.fingerprint = bytes(dtype.fingerprint())
        ti.accepts = frozenset(dtype.accepts)
        c.name = PyBytes_AS_STRING(ti.name_bytes)
        c.name_len = len(ti.name_bytes)
        c.fp = <const uint8_t*>PyBytes_AS_STRING(ti.fingerprint)
        ti.behaviour = dtype.behaviour
        c.custom = dtype.behaviour is not None
        c.behaviour = <PyObject*>ti.behaviour
        ti.config_behaviour = dtype.config_behaviour
        c.cfg_hook = dtype.config_behaviour is not None
        c.cfg_behaviour = <PyObject*>ti.config_behaviour
        c.rom_reg = dtype.rom_offset
        bridge = dtype.bridge
        c.bridge = bridge is not None
        if bridge is not None:  # R-BRG-001: the windows the type declares
            c.io_win = {"none": 0, "16-bit": 16, "32-bit": 32}[bridge.io.value]
            c.pref_win = {"none": 0, "32-bit": 32, "64-bit": 64}[bridge.prefetchable.value]
        return ti


# ---------------------------------------------------------------- integer arguments (R-ERR-002)

cdef inline bint as_u64(object x, uint64_t* out) except -1:
    """Whether ``x`` is an ``int`` (not a bool) in 0..2**64-1; its value in ``out``."""
    cdef int overflow = 0
    cdef long long v
    if type(x) is not int:
        return False
    v = PyLong_AsLongLongAndOverflow(x, &overflow)
    if overflow == 0:
        if v < 0:
            return False
        out[0] = <uint64_t>v
        return True
    if overflow < 0 or x.bit_length() > 64:
        return False
    out[0] = PyLong_AsUnsignedLongLongMask(x)
    return True


cdef inline int set_vm(OpRec* r, object vm) except -1:
    """``r.vm`` from a VM id, or the B_VM bit when it is not an integer 0-0xffffffff."""
    cdef uint64_t v = 0
    if as_u64(vm, &v) and v <= 0xFFFFFFFF:
        r.vm = <uint32_t>v
    else:
        r.bad |= B_VM
    return 0


cdef inline int set_width(OpRec* r, object width) except -1:
    """``r.width``, or the B_WIDTH bit when it is not an integer 0-255 (no valid width is larger)."""
    cdef uint64_t v = 0
    if as_u64(width, &v) and v <= 0xFF:
        r.width = <uint8_t>v
    else:
        r.bad |= B_WIDTH
    return 0


cdef object _BDF_TYPE = _Bdf


cdef inline int bdf_of(object bdf) except -1:
    """Packed BDF of a ``Bdf`` (bus 15:8, device 7:3, function 2:0), or -2 when not a Bdf."""
    if type(bdf) is not _BDF_TYPE and not isinstance(bdf, _BDF_TYPE):
        return -2
    return ((<int>bdf.bus) << 8) | ((<int>bdf.device) << 3) | (<int>bdf.function)


cdef list _BDF_TEXT = [None] * 65536


cdef str bdf_text(uint16_t b):
    """``bb:dd.f``, as the trace language writes a BDF (cached)."""
    text = _BDF_TEXT[b]
    if text is None:
        text = _BDF_TEXT[b] = "%02x:%02x.%d" % (b >> 8, (b >> 3) & 0x1F, b & 7)
    return <str>text


cdef struct Row:
    # one row of a VM's tables, packed (CythonAdapter.run_batch keeps tables this way)
    uint8_t space        # 0 configuration, 1 I/O, 2 memory
    uint8_t bar
    uint16_t bdf
    uint32_t tag         # configuration: the type's index; I/O and memory: log2 of the size
    uint64_t base

cdef struct Buf:
    uint8_t* data
    Py_ssize_t len
    Py_ssize_t cap


cdef int buf_reserve(Buf* b, Py_ssize_t more) except -1:
    """Room for ``more`` bytes after ``len`` (offsets stay 8-byte aligned if ``more`` is a multiple of 8)."""
    cdef Py_ssize_t cap = b.cap
    cdef void* d
    if b.len + more <= cap:
        return 0
    while cap < b.len + more:
        cap = 4096 if cap == 0 else 2 * cap
    d = realloc(b.data, cap)
    if d == NULL:
        raise MemoryError()
    b.data = <uint8_t*>d
    b.cap = cap
    return 0


cdef int grow(void** arr, Py_ssize_t* cap, Py_ssize_t need, size_t size) except -1:
    """Make the array at ``arr[0]`` hold at least ``need`` elements of ``size`` bytes (contents kept)."""
    cdef Py_ssize_t c = cap[0]
    cdef void* a
    if need <= c:
        return 0
    while c < need:
        c = 16 if c == 0 else 2 * c
    a = realloc(arr[0], c * size)
    if a == NULL:
        raise MemoryError()
    arr[0] = a
    cap[0] = c
    return 0


cdef int cmp_row(const void* a, const void* b) noexcept nogil:
    cdef const Row* x = <const Row*>a
    cdef const Row* y = <const Row*>b
    if x.tag != y.tag:
        return -1 if x.tag < y.tag else 1
    if x.base != y.base:
        return -1 if x.base < y.base else 1
    if x.bdf != y.bdf:
        return -1 if x.bdf < y.bdf else 1
    return <int>x.bar - <int>y.bar


cdef tuple _SPACES = ("config", "io", "memory")


cdef tuple unpack_rows(const uint8_t* at, list names):
    """The rows packed at ``at`` as the adapter observes them (``Observation.tables``)."""
    cdef Py_ssize_t count = <Py_ssize_t>(<const uint64_t*>at)[0], k
    cdef const Row* rows = <const Row*>(at + 8)
    cdef const Row* r
    out = []
    for k in range(count):
        r = &rows[k]
        if r.space == 0:
            out.append(("config", bdf_text(r.bdf), names[r.tag]))
        else:
            out.append((_SPACES[r.space], r.base, (<uint64_t>1) << r.tag, bdf_text(r.bdf), r.bar))
    return tuple(out)


cdef int cmp_inst(const void* a, const void* b) noexcept nogil:
    cdef Inst* x = (<Inst**>a)[0]
    cdef Inst* y = (<Inst**>b)[0]
    return <int>x.bdf - <int>y.bdf


cdef int cmp_stamp(const void* a, const void* b) noexcept nogil:
    cdef Mapping* x = (<Mapping**>a)[0]
    cdef Mapping* y = (<Mapping**>b)[0]
    return -1 if x.stamp < y.stamp else (1 if x.stamp > y.stamp else 0)


cdef int cmp_u64(const void* a, const void* b) noexcept nogil:
    cdef uint64_t x = (<uint64_t*>a)[0]
    cdef uint64_t y = (<uint64_t*>b)[0]
    return -1 if x < y else (1 if x > y else 0)


# ---------------------------------------------------------------- the data manager

cdef object decoded_windows(Inst* x):
    """A bridge's I/O, memory and prefetchable windows, inclusive (base, limit), None where closed
    (base above limit) or absent (R-BRG-005)."""
    cdef const uint8_t* cfg = x.cfg
    cdef CType* t = x.t
    cdef uint64_t base, limit
    io = memory = prefetchable = None
    if t.io_win:
        base = (<uint64_t>(cfg[0x1C] & 0xF0)) << 8
        limit = ((<uint64_t>(cfg[0x1D] & 0xF0)) << 8) | 0xFFF
        if t.io_win == 32:
            base |= (<uint64_t>ld16(cfg + 0x30)) << 16
            limit |= (<uint64_t>ld16(cfg + 0x32)) << 16
        if base <= limit:
            io = (base, limit)
    base = (<uint64_t>(ld16(cfg + 0x20) & 0xFFF0)) << 16
    limit = ((<uint64_t>(ld16(cfg + 0x22) & 0xFFF0)) << 16) | 0xFFFFF
    if base <= limit:
        memory = (base, limit)
    if t.pref_win:
        base = (<uint64_t>(ld16(cfg + 0x24) & 0xFFF0)) << 16
        limit = ((<uint64_t>(ld16(cfg + 0x26) & 0xFFF0)) << 16) | 0xFFFFF
        if t.pref_win == 64:
            base |= (<uint64_t>ld32(cfg + 0x28)) << 32
            limit |= (<uint64_t>ld32(cfg + 0x2C)) << 32
        if base <= limit:
            prefetchable = (base, limit)
    return _Windows(io, memory, prefetchable)


cdef list merge_ranges(list ranges):
    """Inclusive ``(first, last)`` ranges sorted, overlapping and adjacent ones merged."""
    cdef Py_ssize_t last
    out = []
    for lo, hi in sorted(ranges):  # (no negative indexes: wraparound is off in this module)
        last = len(out) - 1
        if last >= 0 and lo <= out[last][1] + 1:
            if hi > out[last][1]:
                out[last] = (out[last][0], hi)
        else:
            out.append((lo, hi))
    return out


cdef list intersect_ranges(list a, list b):
    """The intersection of two sorted, disjoint lists of inclusive ranges."""
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


@cython.final
cdef class Manager:
    """The VPCID data manager (R-DS-001): VM elements with three hash tables each, compiled.

    The Python methods mirror :class:`vpcid.model.DataManager` and raise the
    same error classes; :class:`CythonAdapter` drives the ``cdef`` core
    directly, with error codes instead of exceptions.
    """

    cdef U64Map vms
    cdef readonly object profile
    cdef int status_ro, move, lm, unmapped, straddle, natural, cf8_latched, cf8_ext, cf8_clear
    cdef int windows_ignored, isa_honoured  # V-BRIDGE-WINDOWS (R-BRG-006), V-BRIDGE-ISA (R-BRG-011)
    cdef int cf8_offset, narrow, rcr, win_flags, probe_only, io_unmapped, past_space, odd_word_dropped
    cdef uint32_t cf8_keep
    cdef dict types_by_name
    cdef dict types_by_name_bytes    # the same, keyed by the UTF-8 name (as blobs hold it)
    cdef dict types_by_id
    cdef list revised                # configuration bytes of earlier revisions' blobs being restored (R-MIG-002)
    cdef object status_enum
    cdef const char* msg
    cdef list type_names             # by CType.index
    cdef uint8_t last[32]            # digest of the last blob or snapshot produced
    cdef bint has_last
    cdef PyObject* ring_blob[64]     # blobs handed out lately (a ring)
    cdef int ring_pos
    cdef uint64_t* skeys             # scratch: page keys and pages of the blobs being written
    cdef uint8_t** spages
    cdef Py_ssize_t scap, sused
    cdef Inst** sinsts               # scratch: a VM's instances in BDF order
    cdef Py_ssize_t sinsts_cap
    cdef Vm* memo_vm                 # the VM found last (a memo over the VM table), or NULL
    cdef Enc* sencs                  # scratch of snapshot(): its instances' blobs and decode order
    cdef Py_ssize_t sencs_cap
    cdef Mapping** sorder
    cdef Py_ssize_t sorder_cap
    cdef uint8_t* sview              # scratch of tree_digest(): the bytes a snapshot's digest covers
    cdef Py_ssize_t sview_cap
    cdef Inst** stree                # scratch of preorder(): a VM's instances in tree pre-order
    cdef Py_ssize_t stree_cap

    def __init__(self, profile=None):
        if profile is None:
            profile = _Profile()
        if not isinstance(profile, _Profile):
            raise _errors.InvalidArgument("profile must be a vpcid.model.Profile")
        self.profile = profile
        p = profile.to_mapping()
        self.status_ro = p["status"] == "read-only"
        self.move = {"immediate": MOVE_IMMEDIATE, "deferred": MOVE_DEFERRED, "ignored": MOVE_IGNORED}[
            p["bar_move_while_decoding"]]
        self.lm = {"lowest-bdf": OVERLAP_LOWEST, "last-mapped": OVERLAP_LAST,
                   "first-mapped": OVERLAP_FIRST}[p["overlap"]]
        self.unmapped = 0xFF if p["unmapped_mmio_read"] == "ones" else 0x00
        self.straddle = {"split": STRADDLE_SPLIT, "reject": STRADDLE_REJECT,
                         "start-address": STRADDLE_START}[p["straddle"]]
        self.natural = p["alignment"] == "natural"
        self.cf8_latched = p["cf8_low_bits"] != "masked"
        self.cf8_offset = p["cf8_low_bits"] == "offset"
        self.narrow = {"unmapped": NARROW_UNMAPPED, "reset-control": NARROW_RESET_CONTROL,
                       "read-address": NARROW_READ_ADDRESS, "address-bytes": NARROW_ADDRESS_BYTES}[p["cf8_narrow"]]
        self.rcr = self.narrow == NARROW_RESET_CONTROL or self.narrow == NARROW_READ_ADDRESS
        self.probe_only = p["bar_sizing"] == "probe-only"
        self.win_flags = ((WIN_ZERO_DECODES if p["address_zero"] == "decodes" else 0)
                          | (WIN_TOP_UNMAPPED if p["bar_at_top"] == "unmapped" else 0)
                          | (WIN_ALIGNED_ONLY if self.probe_only else 0))
        self.io_unmapped = 0x00 if p["unmapped_io_read"] == "zeros" else 0xFF
        self.past_space = 0x00 if p["config_past_space"] == "zeros" else 0xFF
        self.odd_word_dropped = p["odd_word_write"] == "dropped"
        self.cf8_ext = p["cf8_extended"] == "extends"
        self.cf8_clear = p["cf8_after_access"] == "clear"
        self.windows_ignored = p["bridge_windows"] == "ignored"
        self.isa_honoured = p["bridge_isa"] == "honoured"
        self.cf8_keep = (<uint64_t>0x8FFFFFFC) if self.cf8_ext else (<uint64_t>0x80FFFFFC)
        self.status_enum = profile.status
        self.types_by_name = {}
        self.types_by_name_bytes = {}
        self.types_by_id = {}
        self.type_names = []
        self.revised = []

    def __dealloc__(self):
        cdef int k
        self.clear()
        for k in range(64):
            Py_XDECREF(self.ring_blob[k])
        free(self.skeys)
        free(self.spages)
        free(self.sinsts)
        free(self.sencs)
        free(self.sorder)
        free(self.sview)
        free(self.stree)

    @property
    def last_digest(self):
        """Digest of the last blob or snapshot this manager produced (its last 32 bytes), or None."""
        return PyBytes_FromStringAndSize(<char*>self.last, 32) if self.has_last else None

    # ------------------------------------------------------------ memory management

    cdef void clear(self) noexcept:
        """Destroy every VM (``init``)."""
        cdef uint64_t i
        if self.vms.tab != NULL:
            for i in range(self.vms.mask + 1):
                if self.vms.tab[i].val != NULL:
                    free_vm(<Vm*>self.vms.tab[i].val)
        map_free(&self.vms)
        self.memo_vm = NULL

    cdef int fail(self, int code, const char* msg) noexcept:
        self.msg = msg
        return code

    cdef int raise_code(self, int code) except -1:
        """Raise the model's error class for ``code`` (the Python API)."""
        cls = _ERROR_CLASSES[code]
        text = (<bytes>self.msg).decode() if self.msg != NULL else ERROR_KINDS[code]
        raise cls(text)

    # ------------------------------------------------------------ device types (R-DT-002)

    cdef TypeInfo type_info(self, object dtype):
        """The compiled form of ``dtype``, registering it by name; None with a code on rejection."""
        cdef TypeInfo ti = self.types_by_id.get(id(dtype))
        if ti is not None:
            known = self.types_by_name.get(ti.name)
            if known is ti:
                return ti
        if not isinstance(dtype, _DeviceType):
            self.msg = b"expected a DeviceType"
            return None
        known = self.types_by_name.get(dtype.name)
        if known is not None and (<TypeInfo>known).fingerprint != dtype.fingerprint():
            self.msg = b"another device type is already registered under this name"
            return None
        if ti is None:
            ti = TypeInfo.build(dtype, self.profile)
            ti.c.index = len(self.type_names)
            self.type_names.append(ti.name)
            self.types_by_id[id(dtype)] = ti
        self.types_by_name[ti.name] = ti
        self.types_by_name_bytes[ti.name_bytes] = ti
        return ti

    def register_type(self, dtype):
        """Make ``dtype`` known by name, for restores (R-DT-002)."""
        if self.type_info(dtype) is None:
            raise (_errors.InvalidArgument if not isinstance(dtype, _DeviceType) else
                   _errors.DeviceTypeError)((<bytes>self.msg).decode())

    # ------------------------------------------------------------ argument checks

    cdef inline int vm_of(self, OpRec* op, Vm** out) noexcept:
        cdef Vm* vm = NULL
        if op.bad & B_VM:
            return self.fail(E_INVALID, b"vm_id must be an integer 0-0xffffffff")
        vm = self.memo_vm
        if vm == NULL or vm.id != op.vm:
            vm = <Vm*>map_get(&self.vms, op.vm)
            if vm == NULL:
                return self.fail(E_UNKNOWN_VM, b"no such VM")
            self.memo_vm = vm
        out[0] = vm
        return 0

    cdef inline int inst_of(self, OpRec* op, Vm** vmo, Inst** out) noexcept:
        cdef int code = self.vm_of(op, vmo)
        cdef Inst* p = NULL
        if code:
            return code
        if op.bad & B_BDF:
            return self.fail(E_INVALID, b"expected a Bdf")
        p = <Inst*>map_get(&vmo[0].cfgtab, op.bdf)
        if p == NULL:
            return self.fail(E_UNKNOWN_DEV, b"no device at this BDF")
        out[0] = p
        return 0

    cdef inline int check_config(self, OpRec* op, bint write) noexcept:
        """R-ACC-003, R-ACC-008: width, offset, dword, value (the model's order of checks)."""
        if op.bad & B_BDF:
            return self.fail(E_INVALID, b"expected a Bdf")
        if (op.bad & B_WIDTH) or not (op.width == 1 or op.width == 2 or op.width == 4):
            return self.fail(E_WIDTH, b"configuration accesses are 1, 2 or 4 bytes")
        if (op.bad & B_ADDR) or op.address > 0xFFF:
            return self.fail(E_INVALID, b"offset must be an integer 0-0xfff")
        if (op.address & 3) + op.width > 4:
            return self.fail(E_MISALIGNED, b"configuration access crosses a dword")
        if write and ((op.bad & B_VALUE) or (op.arg.value >> (8 * op.width)) != 0):
            return self.fail(E_INVALID, b"value does not fit the access width")
        return 0

    cdef inline int check_space(self, OpRec* op, bint io, bint write) noexcept:
        """R-ACC-001, R-ACC-002, R-ACC-008: width, range, alignment, value."""
        cdef uint64_t w = op.width
        if (op.bad & B_WIDTH) or not (w == 1 or w == 2 or w == 4 or (w == 8 and not io)):
            return self.fail(E_WIDTH, b"I/O accesses are 1/2/4 bytes, MMIO 1/2/4/8")
        if op.bad & B_ADDR:
            return self.fail(E_INVALID, b"address out of range")
        if io:
            if op.address > 0x10000 - w:
                return self.fail(E_INVALID, b"port + width must be at most 0x10000")
        elif op.address > (<uint64_t>0) - w:
            return self.fail(E_INVALID, b"address + width must be at most 2**64")
        if self.natural and (op.address & (w - 1)):
            return self.fail(E_MISALIGNED, b"access is not naturally aligned")
        if write and ((op.bad & B_VALUE) or (w < 8 and (op.arg.value >> (8 * w)) != 0)):
            return self.fail(E_INVALID, b"value does not fit the access width")
        return 0

    # ------------------------------------------------------------ VMs (R-DS-001, R-DS-002)

    cdef int op_create_vm(self, OpRec* op) except -1:
        cdef Vm* vm = NULL
        if op.bad & B_VM:
            return self.fail(E_INVALID, b"vm_id must be an integer 0-0xffffffff")
        if not op.ecam_none:
            if (op.bad & B_ECAM) or op.address > (<uint64_t>0) - ECAM_SIZE:
                return self.fail(E_INVALID, b"ecam_base out of range")
            if op.address & (ECAM_SIZE - 1):
                return self.fail(E_INVALID, b"ecam_base must be aligned to the 256 MiB window")
        if map_get(&self.vms, op.vm) != NULL:
            return self.fail(E_DUP_VM, b"VM already exists")
        vm = new_vm(op.vm, not op.ecam_none, op.address)
        map_put(&self.vms, op.vm, vm)
        return 0

    cdef int op_set_ecam_base(self, OpRec* op) except -1:
        """Move or disable the VM's ECAM window (R-ECAM-005); routing looks at it first (R-ECAM-006)."""
        cdef Vm* vm = NULL
        cdef int code = self.vm_of(op, &vm)
        if code:
            return code
        if not op.ecam_none:
            if (op.bad & B_ECAM) or op.address > (<uint64_t>0) - ECAM_SIZE:
                return self.fail(E_INVALID, b"ecam_base out of range")
            if op.address & (ECAM_SIZE - 1):
                return self.fail(E_INVALID, b"ecam_base must be aligned to the 256 MiB window")
        vm.has_ecam = not op.ecam_none
        vm.ecam = 0 if op.ecam_none else op.address
        vm.gen += 1
        return 0

    cdef int op_destroy_vm(self, OpRec* op) except -1:
        cdef Vm* vm = NULL
        cdef int code = self.vm_of(op, &vm)
        if code:
            return code
        map_del(&self.vms, op.vm)
        self.memo_vm = NULL
        free_vm(vm)
        return 0

    # ------------------------------------------------------------ hot-plug (R-HP-*)

    cdef int op_plug(self, OpRec* op, object dtype) except -1:
        """Plug onto the bus the BDF's bus number routes to: a bridge's secondary bus, else root bus
        ``b`` (R-HP-001, R-BRG-002)."""
        cdef Vm* vm = NULL
        cdef int code = self.vm_of(op, &vm)
        cdef TypeInfo ti
        cdef Inst* p = NULL
        cdef Inst* owner = NULL
        cdef uint8_t bus = op.bdf >> 8
        cdef int header_type
        if code:
            return code
        if op.bad & B_BDF:
            return self.fail(E_INVALID, b"expected a Bdf")
        if map_get(&vm.cfgtab, op.bdf) != NULL:
            return self.fail(E_SLOT, b"the BDF already holds a device")
        if type(dtype) is TypeInfo:
            header_type = (<TypeInfo>dtype).c.image[0x0E]
        elif isinstance(dtype, _DeviceType):
            header_type = dtype.declared.image[0x0E]
        else:
            header_type = -1  # type_info rejects it below
        if multifunction_conflict(&vm.cfgtab, op.bdf, header_type):
            return self.fail(E_SLOT, b"the device's function 0 is single-function, or is to be while "
                                     b"another of its functions is present (R-MF-001, R-MF-002)")
        if type(dtype) is TypeInfo:
            ti = <TypeInfo>dtype
        else:
            ti = self.type_info(dtype)
            if ti is None:
                return E_INVALID if not isinstance(dtype, _DeviceType) else E_BAD_TYPE
        map_reserve(&vm.cfgtab)  # so that inserting ``p`` below cannot fail
        if ti.c.bridge and vm.busowner == NULL:
            vm.busowner = <Inst**>calloc(256, sizeof(Inst*))
            if vm.busowner == NULL:
                raise MemoryError()
        p = new_inst(ti, op.bdf)
        if p.t.custom:
            try:
                data = _DeviceData()
                (<object>p.t.behaviour).reset(data)
                Py_INCREF(data)
                p.pydata = <PyObject*>data
            except BaseException:
                free_inst(p)
                raise
        if ti.c.bridge:
            p.kids = <Inst**>calloc(256, sizeof(Inst*))
            if p.kids == NULL:
                free_inst(p)
                raise MemoryError()
            vm.nbridges += 1
        if vm.busowner != NULL:
            owner = vm.busowner[bus]
        p.devfn = op.bdf & 0xFF
        p.reach = 1
        if owner != NULL:
            p.parent = owner
            owner.kids[p.devfn] = p
        else:
            vm.rootcount[bus] += 1
        map_put(&vm.cfgtab, op.bdf, p)
        vm.gen += 1
        if owner == NULL and vm.rootcount[bus] == 1 and vm.busowner != NULL:
            self.reroute(vm)  # root bus ``bus`` is now named by its number (rule 1)
        return 0

    cdef int op_unplug(self, OpRec* op) except -1:
        cdef Vm* vm = NULL
        cdef Inst* p = NULL
        cdef int code = self.inst_of(op, &vm, &p)
        if code:
            return code
        if p.parent != NULL:
            p.parent.kids[p.devfn] = NULL
        else:
            vm.rootcount[op.bdf >> 8] -= 1
        self.drop_tree(vm, p)  # a bridge goes with everything below it (R-HP-002)
        vm.gen += 1
        if vm.busowner != NULL:
            self.reroute(vm)
        return 0

    # ------------------------------------------------------------ routing changes

    cdef inline DTable* table_for(self, Vm* vm, Inst* p, int i) noexcept:
        return &vm.io if p.t.kind[i] == K_IO else &vm.mem

    cdef int do_map(self, Vm* vm, Inst* p, int i, uint64_t base) except -1:
        cdef Mapping* m = &p.maps[i]
        touch(vm, p)
        m.inst = p
        m.bar = i
        m.base = base
        m.log2 = p.t.log2[i]
        m.stamp = vm.stamp
        vm.stamp += 1
        if p.parent != NULL:
            self.set_forward(p, i)
        table_insert(self.table_for(vm, p, i), m, self.lm)
        m.active = 1
        return 0

    cdef int do_unmap(self, Vm* vm, Inst* p, int i) except -1:
        cdef Mapping* m = &p.maps[i]
        if m.active:
            touch(vm, p)
            table_remove(self.table_for(vm, p, i), m)
            m.active = 0
            if m.fwd != NULL:
                free(m.fwd)
                m.fwd = NULL
            m.limited = 0
        return 0

    cdef int unmap_all(self, Vm* vm, Inst* p) except -1:
        cdef int i
        for i in range(NWIN):
            if p.maps[i].active:
                self.do_unmap(vm, p, i)
        return 0

    # ------------------------------------------------------------ bridges: the bus tree (R-BRG-002..R-BRG-009)

    cdef int drop_tree(self, Vm* vm, Inst* p) except -1:
        """Remove an instance already unlinked from its bus, and everything below it: table entries,
        windows, memory."""
        cdef int d
        if p.kids != NULL:
            for d in range(256):
                if p.kids[d] != NULL:
                    self.drop_tree(vm, p.kids[d])
                    p.kids[d] = NULL
            vm.nbridges -= 1
        self.unmap_all(vm, p)
        if p.reach:
            map_del(&vm.cfgtab, p.bdf)
        free_inst(p)
        return 0

    cdef Inst** preorder(self, Vm* vm, Py_ssize_t* n) except NULL:
        """Every instance, reachable or not, in tree pre-order: root buses ascending, on each bus by
        device and function, each bridge followed by what is below it (a scratch array valid until
        the next call)."""
        cdef Py_ssize_t nr, k, used = 0
        cdef Inst** roots = self.sorted_insts(vm, &nr)
        grow(<void**>&self.stree, &self.stree_cap, 1, sizeof(Inst*))  # never NULL, even for no instance
        for k in range(nr):
            if roots[k].parent == NULL:
                self.append_tree(roots[k], &used)
        n[0] = used
        return self.stree

    cdef int append_tree(self, Inst* p, Py_ssize_t* used) except -1:
        cdef int d
        grow(<void**>&self.stree, &self.stree_cap, used[0] + 1, sizeof(Inst*))
        self.stree[used[0]] = p
        used[0] += 1
        if p.kids != NULL:
            for d in range(256):
                if p.kids[d] != NULL:
                    self.append_tree(p.kids[d], used)
        return 0

    cdef int reroute(self, Vm* vm) except -1:
        """Give every bus its number by the bridges' registers and key the configuration table by the
        BDFs that follow (R-BRG-003, R-BRG-004): bus 0 and every occupied root bus are named by their
        own number; any other number goes down through the first bridge, in (bus, device, function)
        order, that takes it (its secondary bus number, or above it up to its subordinate bus
        number), and names the secondary bus of the bridge whose secondary bus number it is. Cost: the tree once, plus 256 bus numbers handed
        down the bridges."""
        cdef Py_ssize_t n, k, nroot = 0
        cdef Inst** arr = self.preorder(vm, &n)
        cdef Inst** level
        cdef Inst* p
        cdef Inst* x
        cdef uint64_t bits[4]
        cdef int b
        cdef uint16_t bdf
        cdef bint reach
        for k in range(n):  # first, no instance below a bridge is in the table
            p = arr[k]
            if p.parent != NULL and p.reach:
                map_del(&vm.cfgtab, p.bdf)
        memset(vm.busowner, 0, 256 * sizeof(Inst*))
        memset(bits, 0, sizeof(bits))
        for b in range(1, 256):
            if not vm.rootcount[b]:
                bits[b >> 6] |= (<uint64_t>1) << (b & 63)
        level = <Inst**>malloc((n + 1) * sizeof(Inst*))
        if level == NULL:
            raise MemoryError()
        try:
            for k in range(n):
                if arr[k].parent == NULL and arr[k].kids != NULL:
                    level[nroot] = arr[k]
                    nroot += 1
            self.route_level(vm, level, nroot, bits)
        finally:
            free(level)
        for k in range(n):  # then each takes the BDF its bridge's bus number gives, in tree order
            p = arr[k]
            x = p.parent
            if x == NULL:
                continue
            b = x.cfg[0x19]
            reach = vm.busowner[b] == x
            bdf = <uint16_t>((b << 8) | p.devfn)
            if reach != p.reach or (reach and bdf != p.bdf):
                self.rekey(vm, p, bdf, reach)
            if reach:
                map_put(&vm.cfgtab, bdf, p)
        vm.gen += 1
        return 0

    cdef int route_level(self, Vm* vm, Inst** bridges, Py_ssize_t nb, uint64_t* bits) except -1:
        """Hand the bus numbers in ``bits`` to the bridges of one bus, in order (R-BRG-003)."""
        cdef Py_ssize_t j, nk
        cdef int b, sec, sub, d
        cdef uint64_t taken[4]
        cdef Inst* x
        cdef Inst** below
        cdef bint any_taken
        for j in range(nb):
            x = bridges[j]
            sec = x.cfg[0x19]
            sub = x.cfg[0x1A]
            memset(taken, 0, sizeof(taken))
            any_taken = False
            for b in range(sec, max(sec, sub) + 1):  # its secondary number whatever the subordinate says
                if bits[b >> 6] & ((<uint64_t>1) << (b & 63)):
                    bits[b >> 6] &= ~((<uint64_t>1) << (b & 63))
                    taken[b >> 6] |= (<uint64_t>1) << (b & 63)
                    any_taken = True
            if not any_taken:
                continue
            if taken[sec >> 6] & ((<uint64_t>1) << (sec & 63)):
                vm.busowner[sec] = x
                taken[sec >> 6] &= ~((<uint64_t>1) << (sec & 63))
            if not (taken[0] | taken[1] | taken[2] | taken[3]):
                continue
            below = <Inst**>malloc(256 * sizeof(Inst*))
            if below == NULL:
                raise MemoryError()
            try:
                nk = 0
                for d in range(256):
                    if x.kids[d] != NULL and x.kids[d].kids != NULL:
                        below[nk] = x.kids[d]
                        nk += 1
                self.route_level(vm, below, nk, taken)
            finally:
                free(below)
        return 0

    cdef int rekey(self, Vm* vm, Inst* p, uint16_t bdf, bint reach) except -1:
        """Give ``p`` its new BDF (kept, but unused, while it has none); its windows are filed again
        under their new overlap priority, keeping when they began decoding (R-DEC-008, R-BRG-004)."""
        cdef int i
        for i in range(NWIN):
            if p.maps[i].active:
                table_remove(self.table_for(vm, p, i), &p.maps[i])
        p.reach = reach
        if reach:
            p.bdf = bdf
        p.rank = p.bdf if reach else 0x10000
        for i in range(NWIN):
            if p.maps[i].active:
                table_insert(self.table_for(vm, p, i), &p.maps[i], self.lm)
        return 0

    cdef list forwarded(self, Inst* x, bint io):
        """The address ranges (inclusive, sorted, disjoint) bridge ``x`` forwards to its secondary
        side: I/O with command bit 0, memory with bit 1; the windows its registers decode, ISA
        enable keeping ports whose bits 9:8 are 00 (V-BRIDGE-ISA), VGA enable adding the VGA
        ranges (R-BRG-006, R-BRG-011)."""
        cdef uint16_t cmd = ld16(x.cfg + 4), ctl = ld16(x.cfg + 0x3E)
        cdef uint64_t base, limit, blk
        out = []
        if not (cmd & (1 if io else 2)):
            return out
        decoded = decoded_windows(x)
        if io:
            if decoded.io is not None:
                base, limit = decoded.io
                if (ctl & 0x04) and self.isa_honoured:  # ISA enable: bits 9:8 zero, below 64 KiB
                    blk = base & ~(<uint64_t>0x3FF)
                    while blk <= limit and blk < 0x10000:
                        out.append((max(blk, base), min(blk + 0xFF, limit)))
                        blk += 0x400
                    if limit >= 0x10000:
                        out.append((max(base, 0x10000), limit))
                else:
                    out.append((base, limit))
            if ctl & 0x08:  # VGA enable
                out += [(0x3B0, 0x3BB), (0x3C0, 0x3DF)]
        else:
            for window in (decoded.memory, decoded.prefetchable):
                if window is not None:
                    out.append(window)
            if ctl & 0x08:
                out.append((0xA0000, 0xBFFFF))
        return merge_ranges(out)

    cdef int set_forward(self, Inst* p, int i) except -1:
        """The pieces of window ``i`` every bridge above ``p`` forwards (R-BRG-006); 1 when they
        changed."""
        cdef Mapping* m = &p.maps[i]
        cdef Inst* a = p.parent
        cdef uint64_t* f = NULL
        cdef Py_ssize_t k, count = 0
        cdef bint io = p.t.kind[i] == K_IO, same
        cdef uint8_t limited = 0
        if a != NULL and not self.windows_ignored:  # V-BRIDGE-WINDOWS ignored: every byte reaches it
            whole = (m.base, m.base + ((<uint64_t>1) << m.log2) - 1)
            pieces = [whole]
            while a != NULL and pieces:
                pieces = intersect_ranges(pieces, self.forwarded(a, io))
                a = a.parent
            if pieces != [whole]:
                limited = 1
                count = len(pieces)
                f = <uint64_t*>malloc((1 + 2 * count) * sizeof(uint64_t))
                if f == NULL:
                    raise MemoryError()
                f[0] = <uint64_t>count
                for k in range(count):
                    f[1 + 2 * k] = pieces[k][0]
                    f[2 + 2 * k] = pieces[k][1]
        same = limited == m.limited and (not limited or (m.fwd[0] == <uint64_t>count and memcmp(
            f, m.fwd, (1 + 2 * count) * sizeof(uint64_t)) == 0))
        free(m.fwd)
        m.fwd = f
        m.limited = limited
        return 0 if same else 1

    cdef int refresh_forwarding(self, Vm* vm, Inst* x) except -1:
        """Re-derive the forwarded pieces of every decoding window below bridge ``x``."""
        cdef int d, i
        cdef Inst* p
        for d in range(256):
            p = x.kids[d]
            if p == NULL:
                continue
            for i in range(NWIN):
                if p.maps[i].active and self.set_forward(p, i):
                    table_remove(self.table_for(vm, p, i), &p.maps[i])  # filed again, as the model does
                    table_insert(self.table_for(vm, p, i), &p.maps[i], self.lm)
            if p.kids != NULL:
                self.refresh_forwarding(vm, p)
        return 0

    cdef int reset_below(self, Vm* vm, Inst* x) except -1:
        """Secondary bus reset: every instance below bridge ``x`` reset as ``reset`` does (R-BRG-007, R-RST-001)."""
        cdef int d
        cdef Inst* p
        for d in range(256):
            p = x.kids[d]
            if p == NULL:
                continue
            self.reset_inst(vm, p, True)  # a hot reset keeps sticky bits (R-RST-004)
            if p.kids != NULL:
                self.reset_below(vm, p)
        return 0

    cdef int bridge_written(self, Vm* vm, Inst* x, int off, int n, const uint8_t* prev, int wrote,
                            int wrote_end) except -1:
        """After a write to bytes ``wrote``..``wrote_end`` of bridge ``x`` (``prev``: its bytes from
        ``off`` before): a secondary bus reset when the write set bridge control bit 6 from 0,
        routing when a bus number changed, forwarding when the command register, a window or bridge
        control changed (R-BRG-003, R-BRG-006, R-BRG-007)."""
        cdef int k, o
        cdef bint route = False, forward = False
        for k in range(n):
            o = off + k
            if prev[k] == x.cfg[o]:
                continue
            if o == 0x19 or o == 0x1A:
                route = True
            elif o == 0x3E and (x.cfg[o] & 0x40) and not (prev[k] & 0x40) and wrote <= o < wrote_end:
                self.reset_below(vm, x)
                route = True
            if o == 4 or o == 5 or 0x1C <= o <= 0x1D or 0x20 <= o <= 0x33 or 0x3E <= o <= 0x3F:
                forward = True
        if route:
            self.reroute(vm)
        if forward:
            self.refresh_forwarding(vm, x)
        return 0

    # ------------------------------------------------------------ configuration space (R-CFG-*, R-DEC-005)

    cdef int cfg_access(self, Vm* vm, uint16_t bdf, uint64_t off, uint8_t* buf, int n, bint write) except -1:
        """One configuration access inside a dword; absent functions read ones (R-ACC-006, R-CFG-009)."""
        cdef Inst* p = <Inst*>map_get(&vm.cfgtab, bdf)
        cdef int flr
        if p == NULL or off >= <uint64_t>p.cfg_size:
            if not write:
                fill_small(buf, 0xFF if p == NULL else self.past_space, n)  # R-CFG-009: V-CFG-PAST
            return 0
        if not write:
            copy_small(buf, p.cfg + off, n)
            return 0
        if n == 2 and (off & 1) and self.odd_word_dropped:
            return 0  # R-ACC-003 odd_word_write = dropped
        self.cfg_store(vm, p, <int>off, buf, n)
        flr = p.t.flr_ctl
        if flr >= 0 and <int>off <= flr + 1 < <int>off + n and buf[flr + 1 - <int>off] & p.cfg[flr + 1] & 0x80:
            self.reset_inst(vm, p, True)  # R-RST-005: Initiate FLR written as 1 and reading 1
        return 0

    cdef int cfg_store(self, Vm* vm, Inst* p, int off, const uint8_t* data, int n) except -1:
        """Masked write (R-CFG-001), then bring the windows in line (R-DEC-005, R-DEC-007, R-DEC-010).

        A window depends only on the command register and its own BAR
        registers, so only the windows whose registers the write touches are
        re-derived.
        """
        cdef CType* t = p.t
        cdef uint8_t* cfg = p.cfg
        cdef int end = off + n, o, k, i, j
        cdef bint command = off < 6 and end > 4
        cdef uint8_t was[7]
        cdef uint32_t skip = 0
        cdef uint32_t affected = 0   # bit i: window i may change
        cdef uint8_t v, old, new, changed = 0
        cdef uint8_t bytes_new[8]
        cdef uint8_t prev[8]
        cdef bint probe = self.probe_only and n == 4 and 0x10 <= off < 0x28 and (
            ld32(data) & t.addr_bits[(off - 0x10) >> 2]) == t.addr_bits[(off - 0x10) >> 2]
        if t.cfg_hook:
            return self.cfg_store_hooked(vm, p, off, data, n)
        if command or (off < 0x28 and end > 0x10) or (off < t.rom_reg + 4 and end > t.rom_reg):
            for j in range(t.nimpl):
                i = t.impl[j]
                if not command and (end <= reg_start(t, i) or off >= reg_stop(t, i)):
                    continue
                affected |= (<uint32_t>1) << i
                was[i] = decode_enabled(t, cfg, i)
                if self.move == MOVE_IGNORED and was[i]:
                    for k in range(n):
                        o = off + k
                        if reg_start(t, i) <= o < reg_stop(t, i):
                            skip |= (<uint32_t>1) << k  # R-DEC-005 ignored: no BAR write while it decodes
        for k in range(n):
            if skip & ((<uint32_t>1) << k):
                bytes_new[k] = cfg[off + k]
                continue
            o = off + k
            v = data[k]
            if probe:
                v &= t.probe_wmask[o - 0x10]  # R-BAR-003 probe-only: the probe writes the bits above the size
            old = cfg[o]
            new = ((old & ~t.wmask[o]) | (v & t.wmask[o])) & ~(v & t.w1c[o])
            changed |= old ^ new
            bytes_new[k] = new
        if not changed:
            return 0  # the windows already match these registers (R-DEC-010), and no state changed
        cfg = own_cfg(p)
        for k in range(n):
            prev[k] = cfg[off + k]
            cfg[off + k] = bytes_new[k]
        touch(vm, p)
        if affected:
            self.rederive(vm, p, was, affected)
        if t.bridge:
            self.bridge_written(vm, p, off, n, prev, off, off + n)
        return 0

    cdef int cfg_store_hooked(self, Vm* vm, Inst* p, int off, const uint8_t* data, int n) except -1:
        """Masked write, then the type's configuration behaviour over the whole space; only its changes
        to writable and RW1C bits are kept; every window is re-derived (R-DT-008, R-DEC-010)."""
        cdef CType* t = p.t
        cdef uint8_t* cfg = p.cfg
        cdef int k, o, i, j
        cdef uint8_t was[7]
        cdef uint32_t affected = 0
        cdef const uint8_t* got
        cdef uint8_t prev[0x40]
        memcpy(prev, cfg, 0x40)
        cdef uint8_t v
        cdef bint probe = self.probe_only and n == 4 and 0x10 <= off < 0x28 and (
            ld32(data) & t.addr_bits[(off - 0x10) >> 2]) == t.addr_bits[(off - 0x10) >> 2]
        for j in range(t.nimpl):
            i = t.impl[j]
            affected |= (<uint32_t>1) << i
            was[i] = decode_enabled(t, cfg, i)
        before = PyBytes_FromStringAndSize(<const char*>cfg + off, n)
        merged = bytearray(PyBytes_FromStringAndSize(<const char*>cfg, p.cfg_size))
        for k in range(n):
            o = off + k
            if self.move == MOVE_IGNORED and in_decoding_register(t, was, o):
                continue  # R-DEC-005 ignored: no BAR write while it decodes
            v = data[k]
            if probe:
                v &= t.probe_wmask[o - 0x10]  # R-BAR-003 probe-only: the probe writes the bits above the size
            merged[o] = ((cfg[o] & ~t.wmask[o]) | (v & t.wmask[o])) & ~(v & t.w1c[o])
        scratch = bytearray(merged)
        (<object>t.cfg_behaviour).config_write(scratch, off, before)
        if len(scratch) != p.cfg_size:
            raise _errors.DeviceTypeError(
                f"configuration behaviour {(<object>t.cfg_behaviour).name!r} changed the size of the space")
        cfg = own_cfg(p)
        got = <const uint8_t*>PyByteArray_AS_STRING(scratch)
        for o in range(p.cfg_size):
            cfg[o] = (got[o] & ~t.fixed[o]) | (<uint8_t>merged[o] & t.fixed[o])
        touch(vm, p)
        if affected:
            self.rederive(vm, p, was, affected)
        if t.bridge:
            self.bridge_written(vm, p, 0, 0x40, prev, off, off + n)
        return 0

    cdef int rederive(self, Vm* vm, Inst* p, uint8_t* was, uint32_t affected) except -1:
        """Re-derive the ``affected`` windows, in ascending BAR order; ``was``: their decode before the write."""
        cdef CType* t = p.t
        cdef int j, i
        cdef uint64_t want
        cdef bint ok
        for j in range(t.nimpl):
            i = t.impl[j]
            if not (affected & ((<uint32_t>1) << i)):
                continue
            if self.move == MOVE_DEFERRED and was[i] and decode_enabled(t, p.cfg, i):
                continue  # R-DEC-005 deferred: moves when decode is next enabled
            ok = window(t, p.cfg, i, &want, self.win_flags)
            if p.maps[i].active:
                if ok and p.maps[i].base == want:
                    continue
                self.do_unmap(vm, p, i)
            if ok:
                self.do_map(vm, p, i, want)
        return 0

    # ------------------------------------------------------------ accesses (R-ACC-*, R-CAM-*, R-ECAM-*)

    cdef inline Mapping* target_of(self, Vm* vm, bint io, uint64_t a) noexcept:
        if io:
            if a >= CF8 and a < CFC:
                # R-CAM-001, R-CAM-006, R-CAM-008: ordinary I/O (0xCF9: reset control), or CONFIG_ADDRESS's bytes
                if a == CF8 + 1 and self.rcr:
                    return RESET_CONTROL
                if self.narrow == NARROW_UNMAPPED or self.narrow == NARROW_RESET_CONTROL:
                    return NULL
                return ADDRESS_BYTES
            if a >= CFC and a < CFC + 4:
                return WINDOW  # R-CAM-004, R-CAM-006
            return table_lookup(&vm.io, a, self.lm)
        if vm.has_ecam and a >= vm.ecam and a - vm.ecam < ECAM_SIZE:
            return WINDOW  # R-ECAM-004
        return table_lookup(&vm.mem, a, self.lm)

    cdef int route(self, Vm* vm, bint io, uint64_t addr, int width, uint8_t* buf, bint write) except -1:
        """Split an access into runs with one target each and perform them (R-ACC-004, R-ACC-005)."""
        cdef Mapping* t[8]
        cdef Mapping* first = self.target_of(vm, io, addr)
        cdef Mapping* last
        cdef int k, j
        cdef uint64_t granule = 4 if io else 16
        cdef bint scan = io and self.rcr and addr <= CF8 + 1 and addr + width > CF8 + 1
        # Every target is a naturally aligned block of at least one granule (I/O BARs and the
        # 0xCF8/0xCFC blocks: 4 bytes; memory BARs: 16; ROM and ECAM: more), so bytes within
        # one granule have one target, and no target lies strictly inside an access.
        # 0xCF9 is the exception (``scan``): a one-byte target inside the 0xCF8 block (R-CAM-008).
        if ((addr ^ (addr + width - 1)) & ~(granule - 1)) == 0 and not scan:
            last = first
        else:
            last = self.target_of(vm, io, addr + width - 1)
        if first == last and not scan:
            return self.perform(vm, io, first, addr, buf, width, write)
        if scan and addr == CF8 and self.narrow == NARROW_READ_ADDRESS:
            return self.perform(vm, io, ADDRESS_BYTES, addr, buf, width, write)  # decoded by its first byte
        t[0] = first
        t[width - 1] = last
        j = 1
        for k in range(1, width - 1):
            t[k] = self.target_of(vm, io, addr + k)
            j = j and t[k] == first
        if scan and j and first == last:
            return self.perform(vm, io, first, addr, buf, width, write)
        if self.straddle == STRADDLE_REJECT:
            return self.perform(vm, io, NULL, addr, buf, width, write)
        k = 0
        while k < width:
            if self.straddle == STRADDLE_START and k > 0:
                return self.perform(vm, io, NULL, addr + k, buf + k, width - k, write)
            j = k + 1
            while j < width and t[j] == t[k]:
                j += 1
            self.perform(vm, io, t[k], addr + k, buf + k, j - k, write)
            k = j
        return 0

    cdef int perform(self, Vm* vm, bint io, Mapping* target, uint64_t a, uint8_t* buf, int n,
                     bint write) except -1:
        if target == NULL:
            if not write:
                fill_small(buf, self.io_unmapped if io else self.unmapped, n)  # R-ACC-004
            return 0
        if target == WINDOW:
            if io:
                return self.cam_data(vm, a, buf, n, write)
            return self.ecam_data(vm, a, buf, n, write)
        if target == RESET_CONTROL:
            return self.reset_control(vm, buf, write)
        if target == ADDRESS_BYTES:
            return self.address_bytes(vm, a, buf, n, write)
        if write or target.custom:  # a behaviour may change its state on any access
            touch(vm, target.inst)
        return self.bar_access(target, a - target.base, buf, n, write)

    cdef int cam_data(self, Vm* vm, uint64_t port, uint8_t* buf, int n, bint write) except -1:
        """Bytes of 0xCFC-0xCFF: a configuration access selected by 0xCF8 (R-CAM-004, R-CAM-005)."""
        cdef uint32_t cf8 = vm.cf8
        cdef uint64_t reg
        if not (cf8 & (<uint64_t>0x80000000)):
            if not write:
                fill_small(buf, 0xFF, n)
            return 0
        reg = cf8 & 0xFC
        if self.cf8_ext:
            reg |= ((cf8 >> 24) & 0xF) << 8
        if self.cf8_offset:
            return self.cam_offset_pieces(vm, <uint16_t>((cf8 >> 8) & 0xFFFF), reg, port - CFC, buf, n, write)
        return self.cfg_access(vm, <uint16_t>((cf8 >> 8) & 0xFFFF), reg + (port - CFC), buf, n, write)

    cdef int cam_offset_pieces(self, Vm* vm, uint16_t bdf, uint64_t reg, uint64_t distance, uint8_t* buf, int n,
                               bint write) except -1:
        """``cf8_low_bits = "offset"``: naturally aligned pieces of the window (4 at 0xCFC), each from
        ``reg`` with 0xCF8 bits 1:0 ORed with the piece's distance from 0xCFC (R-CAM-004)."""
        cdef int done = 0, piece
        cdef uint64_t d
        while done < n:
            d = distance + done
            piece = 4 if d == 0 else <int>(d & (~d + 1))
            while piece > n - done:
                piece //= 2
            self.cam_offset_data(vm, bdf, reg | ((vm.cf8 | d) & 3), buf + done, piece, write)
            done += piece
        return 0

    cdef int cam_offset_data(self, Vm* vm, uint16_t bdf, uint64_t reg, uint8_t* buf, int n, bint write) except -1:
        """``cf8_low_bits = "offset"``: ``n`` bytes from ``reg``, dword by dword; bytes past the 256-byte
        block ``reg`` lies in read zero and take no write (R-CAM-002, R-CAM-004)."""
        cdef Inst* p = <Inst*>map_get(&vm.cfgtab, bdf)
        cdef int done = 0, chunk
        if p == NULL:
            if not write:
                fill_small(buf, 0xFF, n)  # R-ACC-006
            return 0
        while done < n:
            chunk = <int>(4 - (reg + done) % 4)
            if chunk > n - done:
                chunk = n - done
            if reg + done >= (reg & ~(<uint64_t>0xFF)) + 0x100:
                if not write:
                    memset(buf + done, 0, chunk)
            else:
                self.cfg_access(vm, bdf, reg + done, buf + done, chunk, write)
            done += chunk
        return 0

    cdef int reset_control(self, Vm* vm, uint8_t* buf, bint write) except -1:
        """0xCF9 (R-CAM-008): reads return bits 1 and 3 as last written; a write with bit 2 set resets
        the platform (R-RST-003), any other write keeps bits 1 and 3."""
        if not write:
            buf[0] = vm.rcr
            return 0
        if buf[0] & 0x04:
            return self.reset_whole_vm(vm)
        vm.rcr = buf[0] & 0x0A
        vm.gen += 1
        return 0

    cdef int address_bytes(self, Vm* vm, uint64_t port, uint8_t* buf, int n, bint write) except -1:
        """Narrow accesses reaching CONFIG_ADDRESS (V-CF8-NARROW, R-CAM-001): ``read-address`` reads its
        low bytes wherever they fall and drops writes; ``address-bytes`` reads and replaces the bytes at
        the port's offset."""
        cdef int k, shift
        cdef uint32_t v
        if self.narrow == NARROW_READ_ADDRESS:
            if not write:
                for k in range(n):
                    buf[k] = (vm.cf8 >> (8 * k)) & 0xFF
            return 0
        shift = <int>(port - CF8)
        if not write:
            for k in range(n):
                buf[k] = (vm.cf8 >> (8 * (shift + k))) & 0xFF
            return 0
        v = vm.cf8
        for k in range(n):
            v = (v & ~((<uint32_t>0xFF) << (8 * (shift + k)))) | ((<uint32_t>buf[k]) << (8 * (shift + k)))
        if not self.cf8_latched:
            v &= self.cf8_keep  # R-CAM-002
        vm.cf8 = v
        vm.gen += 1
        return 0

    cdef int ecam_data(self, Vm* vm, uint64_t a, uint8_t* buf, int n, bint write) except -1:
        """ECAM bytes, one configuration access per dword (R-ECAM-002, R-ECAM-003)."""
        cdef uint64_t end = a + n, rel
        cdef int chunk
        while a < end:
            chunk = <int>(min(end, (a & ~(<uint64_t>3)) + 4) - a)
            rel = a - vm.ecam
            self.cfg_access(vm, <uint16_t>((rel >> 12) & 0xFFFF), rel & 0xFFF, buf, chunk, write)
            buf += chunk
            a += chunk
        return 0

    cdef int bar_access(self, Mapping* m, uint64_t off, uint8_t* buf, int n, bint write) except -1:
        """A run inside one BAR, offset from its base (R-ACC-009, R-DT-003, R-DT-004, R-BAR-007)."""
        cdef CType* t
        cdef uint64_t avail
        if m.bar == ROM:
            if not write:
                t = m.inst.t
                memset(buf, 0, n)
                if off < t.rom_len:
                    avail = t.rom_len - off
                    memcpy(buf, t.rom + off, n if <uint64_t>n < avail else avail)
            return 0
        if m.custom:
            return self.behaviour_access(m.inst, m.bar, off, buf, n, write)
        if write:
            return mem_write(m, off, buf, n)
        mem_read(m, off, buf, n)
        return 0

    cdef int behaviour_access(self, Inst* p, int bar, uint64_t off, uint8_t* buf, int n,
                              bint write) except -1:
        beh = <object>p.t.behaviour
        data = <object>p.pydata
        if write:
            beh.write(data, bar, off, PyBytes_FromStringAndSize(<char*>buf, n))
            return 0
        got = bytes(beh.read(data, bar, off, n))
        if len(got) != n:
            raise ValueError(f"behaviour {beh.name!r} returned {len(got)} bytes for a {n}-byte read")
        memcpy(buf, PyBytes_AS_STRING(got), n)
        return 0

    cdef int io_access(self, Vm* vm, uint64_t port, int width, uint8_t* buf, bint write) except -1:
        """0xCF8 register, 0xCFC window, then I/O BARs (R-CAM-001..R-CAM-007)."""
        cdef uint32_t v
        cdef bint touched
        if port == CF8 and width == 4:
            if write:
                v = ld32(buf)
                if not self.cf8_latched:
                    v &= self.cf8_keep  # R-CAM-002
                vm.cf8 = v
                vm.gen += 1
            else:
                st32(buf, vm.cf8)  # R-CAM-003
            return 0
        touched = port < CFC + 4 and port + width > CFC
        self.route(vm, True, port, width, buf, write)
        if touched and self.cf8_clear:
            vm.cf8 = 0  # R-CAM-007
            vm.gen += 1
        return 0

    cdef int op_config(self, OpRec* op, uint64_t* out, bint write) except -1:
        """Configuration read or write, checked (R-ACC-003, R-ACC-006, R-ACC-008)."""
        cdef Vm* vm = NULL
        cdef int code = self.vm_of(op, &vm)
        cdef uint8_t buf[8]
        cdef int w
        if code:
            return code
        code = self.check_config(op, write)
        if code:
            return code
        w = <int>op.width
        if write:
            stn(buf, op.arg.value, w)
        self.cfg_access(vm, op.bdf, op.address, buf, w, write)
        if not write:
            out[0] = ldn(buf, w)
        return 0

    cdef int op_space(self, OpRec* op, uint64_t* out, bint io, bint write) except -1:
        """I/O or MMIO read or write, checked (R-ACC-001, R-ACC-002, R-ACC-004, R-ACC-005, R-ACC-008)."""
        cdef Vm* vm = NULL
        cdef int code = self.vm_of(op, &vm)
        cdef uint8_t buf[8]
        cdef int w
        if code:
            return code
        code = self.check_space(op, io, write)
        if code:
            return code
        w = <int>op.width
        if write:
            stn(buf, op.arg.value, w)
        if io:
            self.io_access(vm, op.address, w, buf, write)
        else:
            self.route(vm, False, op.address, w, buf, write)
        if not write:
            out[0] = ldn(buf, w)
        return 0

    cdef int op_access(self, OpRec* op, uint64_t* out) except -1:
        """Configuration, I/O or MMIO read or write, checked (R-ACC-001..R-ACC-008)."""
        cdef int k = op.kind
        if k == OP_CONFIG_READ or k == OP_CONFIG_WRITE:
            return self.op_config(op, out, k == OP_CONFIG_WRITE)
        return self.op_space(op, out, k == OP_IO_READ or k == OP_IO_WRITE,
                             k == OP_IO_WRITE or k == OP_MMIO_WRITE)

    # ------------------------------------------------------------ reset (R-RST-*)

    cdef int reset_inst(self, Vm* vm, Inst* p, bint keep_sticky) except -1:
        """Power-on configuration (its sticky bits kept when ``keep_sticky``), no windows, fresh data
        (R-RST-001, R-RST-002, R-RST-004)."""
        cdef CType* t = p.t
        cdef int o
        touch(vm, p)
        self.unmap_all(vm, p)
        if keep_sticky and t.has_sticky and p.cfg != &t.image[0]:
            for o in range(p.cfg_size):  # the instance's own copy: sticky bits kept
                p.cfg[o] = (t.image[o] & ~t.sticky[o]) | (p.cfg[o] & t.sticky[o])
        else:
            p.cfg = &t.image[0]  # the power-on image (R-RST-001)
        free_pages(p)
        if p.t.custom:
            data = _DeviceData()
            (<object>p.t.behaviour).reset(data)
            Py_INCREF(data)
            Py_XDECREF(p.pydata)
            p.pydata = <PyObject*>data
        return 0

    cdef int op_reset(self, OpRec* op) except -1:
        """Function-level reset; a bridge's own function only: its bus numbers go to zero, so what is
        below it loses its BDFs, and its windows close (R-RST-001, R-BRG-008)."""
        cdef Vm* vm = NULL
        cdef Inst* p = NULL
        cdef int code = self.inst_of(op, &vm, &p)
        if code:
            return code
        self.reset_inst(vm, p, True)
        if p.kids != NULL:
            self.reroute(vm)
            self.refresh_forwarding(vm, p)
        return 0

    cdef int op_reset_vm(self, OpRec* op) except -1:
        cdef Vm* vm = NULL
        cdef int code = self.vm_of(op, &vm)
        if code:
            return code
        return self.reset_whole_vm(vm)

    cdef int reset_whole_vm(self, Vm* vm) except -1:
        """Platform reset: every instance reset, reachable or not, sticky bits cleared, 0xCF8 and the reset
        control register cleared (R-RST-003, R-RST-004, R-CAM-008)."""
        cdef Inst** arr
        cdef Py_ssize_t n, k
        if vm.busowner != NULL:  # every instance, reachable or not (R-RST-003)
            arr = self.preorder(vm, &n)
        else:
            arr = self.sorted_insts(vm, &n)
        for k in range(n):
            self.reset_inst(vm, arr[k], False)  # power-on reset: sticky bits cleared (R-RST-004)
        if vm.busowner != NULL:
            self.reroute(vm)
        vm.cf8 = 0
        vm.rcr = 0
        vm.gen += 1
        return 0

    # ------------------------------------------------------------ blobs (R-BLOB-*, R-SR-*)

    cdef int scratch_reserve(self, Py_ssize_t more) except -1:
        """Room for ``more`` pages after the ``sused`` already collected."""
        cdef Py_ssize_t cap = self.scap
        cdef void* k
        cdef void* g
        if self.sused + more <= cap:
            return 0
        while cap < self.sused + more:
            cap = 64 if cap == 0 else 2 * cap
        k = realloc(self.skeys, cap * sizeof(uint64_t))
        if k == NULL:
            raise MemoryError()
        self.skeys = <uint64_t*>k
        g = realloc(self.spages, cap * sizeof(uint8_t*))
        if g == NULL:
            raise MemoryError()
        self.spages = <uint8_t**>g
        self.scap = cap
        return 0

    cdef Inst** sorted_insts(self, Vm* vm, Py_ssize_t* n) except NULL:
        """The VM's instances in BDF order, in a scratch array valid until the next call."""
        cdef uint64_t i
        cdef Py_ssize_t k = 0, cap = self.sinsts_cap
        cdef void* a
        if cap < <Py_ssize_t>vm.cfgtab.count + 1:
            while cap < <Py_ssize_t>vm.cfgtab.count + 1:
                cap = 16 if cap == 0 else 2 * cap
            a = realloc(self.sinsts, cap * sizeof(Inst*))
            if a == NULL:
                raise MemoryError()
            self.sinsts = <Inst**>a
            self.sinsts_cap = cap
        if vm.cfgtab.tab != NULL:
            for i in range(vm.cfgtab.mask + 1):
                if vm.cfgtab.tab[i].val != NULL:
                    self.sinsts[k] = <Inst*>vm.cfgtab.tab[i].val
                    k += 1
        qsort(self.sinsts, k, sizeof(Inst*), cmp_inst)
        n[0] = k
        return self.sinsts

    cdef int enc_prepare(self, Inst* p, Enc* e, list keep) except -1:
        """Collect what ``p``'s blob holds and its size (R-BLOB-003, R-BLOB-004).

        Pages go to the scratch arrays after ``sused``; a custom behaviour's
        Python objects are appended to ``keep``, which must outlive ``e``.
        """
        cdef CType* t = p.t
        cdef uint64_t i
        cdef Py_ssize_t n = 0, k, extra_len = 0
        e.p = p
        e.first = self.sused
        e.pylist = NULL
        e.extra = NULL
        if t.custom:
            pylist, extra = behaviour_pages(<object>p.pydata)
            keep.append(pylist)
            keep.append(extra)
            e.pylist = <PyObject*>pylist
            e.extra = <PyObject*>extra
            n = len(pylist)
            extra_len = len(extra)
        elif p.pages.count:
            self.scratch_reserve(<Py_ssize_t>p.pages.count)
            for i in range(p.pages.mask + 1):
                if p.pages.tab[i].val != NULL and not all_zero(<uint8_t*>p.pages.tab[i].val, PAGE):
                    self.skeys[e.first + n] = p.pages.tab[i].key
                    n += 1
            qsort(self.skeys + e.first, n, sizeof(uint64_t), cmp_u64)
            for k in range(n):
                self.spages[e.first + k] = <uint8_t*>map_get(&p.pages, self.skeys[e.first + k])
            self.sused += n
        e.npages = n
        e.size = (16 + 5 * 8 + (1 + t.name_len + 32) + t.cfg_size + 9 * NWIN + 4
                  + n * PAGE_ENTRY + extra_len + 32)
        return 0

    cdef Py_ssize_t enc_write(self, Enc* e, uint8_t* b) except -1:
        """Write the blob prepared in ``e`` at ``b``, all but the seal; return the length written."""
        cdef Inst* p = e.p
        cdef CType* t = p.t
        cdef Py_ssize_t k, pos, sec, extra_len = 0
        cdef int i
        cdef uint64_t key
        cdef const uint8_t* src
        cdef const uint8_t* extra = NULL
        if e.extra != NULL:
            extra = <const uint8_t*>PyBytes_AS_STRING(<object>e.extra)
            extra_len = PyBytes_GET_SIZE(<object>e.extra)
        memcpy(b, b"VPCIDBLB", 8)
        st16(b + 8, 1)
        st16(b + 10, 0)
        st16(b + 12, 5)
        st16(b + 14, 0)
        pos = 16
        # 1 type
        sec = 1 + t.name_len + 32
        st16(b + pos, 1); st16(b + pos + 2, 1); st32(b + pos + 4, <uint32_t>sec); pos += 8
        b[pos] = <uint8_t>t.name_len
        memcpy(b + pos + 1, t.name, t.name_len)
        memcpy(b + pos + 1 + t.name_len, t.fp, 32)
        pos += sec
        # 2 config
        st16(b + pos, 2); st16(b + pos + 2, 1); st32(b + pos + 4, <uint32_t>t.cfg_size); pos += 8
        memcpy(b + pos, p.cfg, t.cfg_size)
        pos += t.cfg_size
        # 3 windows
        st16(b + pos, 3); st16(b + pos + 2, 1); st32(b + pos + 4, 9 * NWIN); pos += 8
        for i in range(NWIN):
            if p.maps[i].active:
                b[pos] = 1
                st64(b + pos + 1, p.maps[i].base)
            else:
                b[pos] = 0
                st64(b + pos + 1, 0)
            pos += 9
        # 4 memory
        sec = 4 + e.npages * PAGE_ENTRY
        st16(b + pos, 4); st16(b + pos + 2, 1); st32(b + pos + 4, <uint32_t>sec); pos += 8
        st32(b + pos, <uint32_t>e.npages)
        pos += 4
        for k in range(e.npages):
            if e.pylist != NULL:
                bar, page, content = (<list>e.pylist)[k]
                b[pos] = <uint8_t>bar
                st64(b + pos + 1, <uint64_t>page)
                src = <const uint8_t*>PyBytes_AS_STRING(content)
            else:
                key = self.skeys[e.first + k]
                b[pos] = <uint8_t>(key >> 56)
                st64(b + pos + 1, key & ((<uint64_t>1 << 56) - 1))
                src = self.spages[e.first + k]
            memcpy(b + pos + 9, src, PAGE)
            pos += PAGE_ENTRY
        # 5 extra
        st16(b + pos, 5); st16(b + pos + 2, 1); st32(b + pos + 4, <uint32_t>extra_len); pos += 8
        if extra_len:
            memcpy(b + pos, extra, extra_len)
        pos += extra_len
        return pos

    cdef bint adopt_power_on_blob(self, Inst* p) noexcept:
        """Give an instance in power-on state its type's power-on blob, if the type has one yet.

        Power-on state: the configuration space is still the type's image (no
        write changed it), no BAR page was written, no window is mapped and the
        type has no behaviour of its own (R-HP-001, R-RST-001).
        """
        cdef TypeInfo ti
        if not is_power_on(p):
            return False
        ti = <TypeInfo>p.tinfo
        if ti.power_on_blob is None:
            return False
        set_blob(&p.cbuf, ti.power_on_blob)
        p.coff = 0
        p.clen = PyBytes_GET_SIZE(ti.power_on_blob)
        p.cgen = p.gen
        return True

    cdef bytes instance_blob(self, Inst* p):
        """Canonical instance blob (R-BLOB-003, R-BLOB-004), cached until the instance changes."""
        cdef Enc e
        cdef bytes blob
        cdef uint8_t* b
        cdef Py_ssize_t body
        cdef list keep
        cdef TypeInfo ti
        if p.cbuf == NULL or p.cgen != p.gen:
            self.adopt_power_on_blob(p)
        if p.cbuf != NULL and p.cgen == p.gen:
            if p.coff == 0 and p.clen == PyBytes_GET_SIZE(<object>p.cbuf):
                blob = <bytes>p.cbuf
            else:  # it lives inside a snapshot: a blob of its own from now on
                blob = PyBytes_FromStringAndSize(PyBytes_AS_STRING(<object>p.cbuf) + p.coff, p.clen)
                Py_INCREF(blob)
                Py_DECREF(<object>p.cbuf)
                p.cbuf = <PyObject*>blob
                p.coff = 0
            return blob
        keep = [] if p.t.custom else None
        self.sused = 0
        self.enc_prepare(p, &e, keep)
        blob = PyBytes_FromStringAndSize(NULL, e.size)
        b = <uint8_t*>PyBytes_AS_STRING(blob)
        body = self.enc_write(&e, b)
        vsha_digest(b, body, b + body)
        set_blob(&p.cbuf, blob)
        p.coff = 0
        p.clen = e.size
        p.cgen = p.gen
        if is_power_on(p):
            ti = <TypeInfo>p.tinfo
            ti.power_on_blob = blob
        return blob

    cdef int hand_out(self, bytes blob) except -1:
        """Remember a blob given out, so restoring that very object skips re-hashing it.

        ``bytes`` are immutable: a blob this manager sealed still matches its
        digest when it comes back. The memo is bounded and keeps the objects
        alive, so their ids stay unique. Sets ``last`` to the blob's digest.
        """
        cdef int k = self.ring_pos
        memcpy(self.last, PyBytes_AS_STRING(blob) + PyBytes_GET_SIZE(blob) - 32, 32)
        self.has_last = True
        set_blob(&self.ring_blob[k], blob)
        self.ring_pos = (k + 1) & 63
        return 0

    cdef int trusted(self, object blob) noexcept:
        """The ring slot of ``blob`` if this manager sealed that very object, else -1."""
        cdef int k
        cdef PyObject* b = <PyObject*>blob
        for k in range(64):
            if self.ring_blob[k] == b:
                return k
        return -1

    cdef object op_save(self, OpRec* op, int* code):
        cdef Vm* vm = NULL
        cdef Inst* p = NULL
        code[0] = self.inst_of(op, &vm, &p)
        if code[0]:
            return None
        blob = self.instance_blob(p)
        self.hand_out(blob)
        return blob

    cdef object op_snapshot(self, OpRec* op, int* code):
        """Canonical VM snapshot: ECAM, 0xCF8, instances by BDF, decode order (R-SR-006, R-BLOB-005).

        An instance whose blob is cached is copied; the others are written and
        sealed in place (two at a time, as two hash streams), and keep their
        blobs as parts of the snapshot. The snapshot's digest then covers only
        the instances' digests (R-BLOB-006).
        """
        cdef Vm* vm = NULL
        cdef Inst** arr
        cdef Inst* p
        cdef Enc* encs = NULL
        cdef Mapping** order = NULL
        cdef Py_ssize_t n = 0, k, nmap = 0, total, pos, dev_len, start, body, waiting = -1, waiting_body = 0
        cdef int i
        cdef bytes blob
        cdef uint8_t* b
        cdef list keep = None
        cdef bint bridged
        code[0] = self.vm_of(op, &vm)
        if code[0]:
            return None
        if vm.cblob != NULL and vm.cgen == vm.gen:
            blob = <bytes>vm.cblob
            self.hand_out(blob)
            return blob
        bridged = vm.nbridges != 0  # then in tree order, with a topology section (R-BLOB-007, R-BLOB-008)
        arr = self.preorder(vm, &n) if bridged else self.sorted_insts(vm, &n)
        for k in range(n):
            arr[k].order = <uint32_t>k
        for k in range(n):  # instances in power-on state share their type's blob, hashed once per type
            p = arr[k]
            if (p.cbuf == NULL or p.cgen != p.gen) and is_power_on(p):
                self.instance_blob(p)
        self.sused = 0
        grow(<void**>&self.sencs, &self.sencs_cap, n, sizeof(Enc))
        encs = self.sencs
        dev_len = 4
        for k in range(n):
            p = arr[k]
            if p.cbuf != NULL and p.cgen == p.gen:
                encs[k].p = NULL
                encs[k].size = p.clen
            else:
                if p.t.custom and keep is None:
                    keep = []
                self.enc_prepare(p, &encs[k], keep)
            dev_len += 6 + encs[k].size
            for i in range(NWIN):
                nmap += p.maps[i].active
        grow(<void**>&self.sorder, &self.sorder_cap, nmap, sizeof(Mapping*))
        order = self.sorder
        nmap = 0
        for k in range(n):
            for i in range(NWIN):
                if arr[k].maps[i].active:
                    order[nmap] = &arr[k].maps[i]
                    nmap += 1
        qsort(order, nmap, sizeof(Mapping*), cmp_stamp)
        total = SNAP_DEVICES + dev_len + 8 + 4 + 3 * nmap + 32
        if bridged:
            total += 8 + 4 + 4 * n
        blob = PyBytes_FromStringAndSize(NULL, total)
        b = <uint8_t*>PyBytes_AS_STRING(blob)
        memcpy(b, b"VPCIDVMS", 8)
        st16(b + 8, 1); st16(b + 10, 0); st16(b + 12, 4 if bridged else 3); st16(b + 14, 0)
        pos = 16
        st16(b + pos, 1); st16(b + pos + 2, 1); st32(b + pos + 4, 13); pos += 8
        b[pos] = 1 if vm.has_ecam else 0
        st64(b + pos + 1, vm.ecam if vm.has_ecam else 0)
        st32(b + pos + 9, vm.cf8)
        pos += 13
        st16(b + pos, 2); st16(b + pos + 2, 1); st32(b + pos + 4, <uint32_t>dev_len); pos += 8
        st32(b + pos, <uint32_t>n)
        pos += 4
        for k in range(n):
            p = arr[k]
            st16(b + pos, p.bdf if p.parent == NULL else p.devfn)  # below a bridge: bus byte 0
            st32(b + pos + 2, <uint32_t>encs[k].size)
            start = pos + 6
            if encs[k].p == NULL:
                memcpy(b + start, PyBytes_AS_STRING(<object>p.cbuf) + p.coff, p.clen)
                pos = start + p.clen
                continue
            body = self.enc_write(&encs[k], b + start)
            if waiting < 0:
                waiting, waiting_body = start, body
            else:
                vsha_digest2(b + waiting, waiting_body, b + start, body, b + waiting + waiting_body, b + start + body)
                waiting = -1
            set_blob(&p.cbuf, blob)
            p.coff = start
            p.clen = body + 32
            p.cgen = p.gen
            pos = start + body + 32
        if waiting >= 0:
            vsha_digest(b + waiting, waiting_body, b + waiting + waiting_body)
        st16(b + pos, 3); st16(b + pos + 2, 1); st32(b + pos + 4, <uint32_t>(4 + 3 * nmap)); pos += 8
        st32(b + pos, <uint32_t>nmap)
        pos += 4
        for k in range(nmap):
            st16(b + pos, <uint16_t>order[k].inst.order if bridged else order[k].inst.bdf)
            b[pos + 2] = order[k].bar
            pos += 3
        if bridged:  # 4 topology (critical): each instance's bridge, by index in the devices section
            st16(b + pos, 4); st16(b + pos + 2, 1); st32(b + pos + 4, <uint32_t>(4 + 4 * n)); pos += 8
            st32(b + pos, <uint32_t>n)
            pos += 4
            for k in range(n):
                st32(b + pos, arr[k].parent.order if arr[k].parent != NULL else 0xFFFFFFFF)
                pos += 4
        self.tree_digest(b, SNAP_DEVICES, dev_len, pos, b + pos)
        set_blob(&vm.cblob, blob)
        vm.cgen = vm.gen
        self.hand_out(blob)
        return blob

    cdef int tree_digest(self, const uint8_t* b, Py_ssize_t dev_off, Py_ssize_t dev_len, Py_ssize_t body,
                         uint8_t* out) except -1:
        """A snapshot's digest: its ``body`` bytes, each instance blob cut to its own digest (R-BLOB-006).

        ``b[dev_off:dev_off + dev_len]`` is the devices section; its entries parse.
        """
        cdef uint32_t k, count = ld32(b + dev_off)
        cdef Py_ssize_t pos = dev_off + 4, end = dev_off + dev_len, used = dev_off + 4, dlen, kept
        grow(<void**>&self.sview, &self.sview_cap, used + 38 * <Py_ssize_t>count + body - end, 1)
        memcpy(self.sview, b, used)
        for k in range(count):
            dlen = ld32(b + pos + 2)
            kept = dlen if dlen < 32 else 32
            memcpy(self.sview + used, b + pos, 6)
            memcpy(self.sview + used + 6, b + pos + 6 + dlen - kept, kept)
            used += 6 + kept
            pos += 6 + dlen
        memcpy(self.sview + used, b + end, body - end)
        vsha_digest(self.sview, used + body - end, out)
        return 0

    cdef int unframe(self, const uint8_t* b, Py_ssize_t n, const char* magic, int nknown,
                     Py_ssize_t* off, Py_ssize_t* length, bint trusted, uint32_t optional=0) except -1:
        """Framing and integrity (R-BLOB-001, R-BLOB-002); known tags are 1..nknown, each required
        unless its bit is in ``optional`` (then its length is -1 when absent)."""
        cdef Py_ssize_t body, pos
        cdef uint16_t count, tag, flags, last = 0
        cdef uint32_t slen
        cdef int k
        cdef uint32_t seen = 0
        cdef uint8_t digest[32]
        if n < 16 + 32:
            return self.fail(E_BAD_BLOB, b"blob is truncated")
        if memcmp(b, magic, 8) != 0:
            return self.fail(E_BAD_BLOB, b"wrong magic")
        if ld16(b + 8) != 1:
            return self.fail(E_BAD_BLOB, b"unsupported format major version")
        if ld16(b + 14) != 0:
            return self.fail(E_BAD_BLOB, b"header reserved field is not zero")
        body = n - 32
        if not trusted:
            vsha_digest(b, body, digest)
            if memcmp(digest, b + body, 32) != 0:
                return self.fail(E_BAD_BLOB, b"integrity check failed (SHA-256 mismatch)")
        count = ld16(b + 12)
        pos = 16
        for k in range(count):
            if pos + 8 > body:
                return self.fail(E_BAD_BLOB, b"section header runs past the end")
            tag = ld16(b + pos)
            flags = ld16(b + pos + 2)
            slen = ld32(b + pos + 4)
            pos += 8
            if tag <= last:
                return self.fail(E_BAD_BLOB, b"sections out of order")
            if flags & ~1:
                return self.fail(E_BAD_BLOB, b"section has unknown flags")
            if <Py_ssize_t>slen > body - pos:
                return self.fail(E_BAD_BLOB, b"section runs past the end")
            if tag <= nknown:
                off[tag] = pos
                length[tag] = slen
                seen |= (<uint32_t>1) << tag
            elif flags & 1:
                return self.fail(E_BAD_BLOB, b"unknown critical section")
            pos += slen
            last = tag
        if pos != body:
            return self.fail(E_BAD_BLOB, b"trailing bytes after the last section")
        for k in range(1, nknown + 1):
            if not (seen & ((<uint32_t>1) << k)):
                if optional & ((<uint32_t>1) << k):
                    length[k] = -1
                    continue
                return self.fail(E_BAD_BLOB, b"a section is missing")
        return 0

    cdef int parse_instance(self, const uint8_t* b, Py_ssize_t n, InstRec* r, bint trusted) except -1:
        """Decode an instance blob, rejecting anything non-canonical (R-BLOB-001..R-BLOB-004)."""
        cdef Py_ssize_t off[6]
        cdef Py_ssize_t ln[6]
        cdef const uint8_t* s
        cdef int code = self.unframe(b, n, b"VPCIDBLB", 5, off, ln, trusted)
        cdef int k
        cdef uint64_t count, prev_bar = 0, prev_page = 0, bar, page
        if code:
            return code
        s = b + off[1]
        if ln[1] < 1 or ln[1] != 1 + s[0] + 32:
            return self.fail(E_BAD_BLOB, b"type section has the wrong length")
        r.name = s + 1
        r.name_len = s[0]
        r.fp = s + 1 + s[0]
        try:
            if not trusted:
                (<bytes>PyBytes_FromStringAndSize(<char*>r.name, r.name_len)).decode("utf-8")
        except UnicodeDecodeError:
            return self.fail(E_BAD_BLOB, b"type name is not UTF-8")
        if ln[2] != 0x100 and ln[2] != 0x1000:
            return self.fail(E_BAD_BLOB, b"configuration section is not 256 or 4096 bytes")
        r.cfg = b + off[2]
        r.cfg_len = ln[2]
        if ln[3] != 9 * NWIN:
            return self.fail(E_BAD_BLOB, b"windows section has the wrong length")
        s = b + off[3]
        for k in range(NWIN):
            r.on[k] = s[9 * k]
            r.base[k] = ld64(s + 9 * k + 1)
            if r.on[k] > 1 or (r.on[k] == 0 and r.base[k] != 0):
                return self.fail(E_BAD_BLOB, b"window is not canonical")
        if ln[4] < 4:
            return self.fail(E_BAD_BLOB, b"memory section is truncated")
        s = b + off[4]
        count = ld32(s)
        if <uint64_t>ln[4] != 4 + count * PAGE_ENTRY:
            return self.fail(E_BAD_BLOB, b"memory section length does not match its page count")
        for k in range(0 if trusted else <Py_ssize_t>count):  # a blob it wrote itself is canonical
            bar = s[4 + k * PAGE_ENTRY]
            page = ld64(s + 4 + k * PAGE_ENTRY + 1)
            if k > 0 and (bar < prev_bar or (bar == prev_bar and page <= prev_page)):
                return self.fail(E_BAD_BLOB, b"memory pages are not in ascending order")
            if all_zero(s + 4 + k * PAGE_ENTRY + 9, PAGE):
                return self.fail(E_BAD_BLOB, b"all-zero page stored (not canonical)")
            prev_bar = bar
            prev_page = page
        r.mem = s
        r.npages = <uint32_t>count
        r.extra = b + off[5]
        r.extra_len = ln[5]
        return 0

    cdef object check_instance(self, InstRec* r, TypeInfo ti, int* code, bint trusted):
        """Whether a decoded blob fits ``ti`` (R-SR-003..R-SR-005); the behaviour's data if custom.

        A ``trusted`` blob (one this manager wrote) of ``ti``'s very type fits
        it by construction, so only its type is checked (unless a custom
        behaviour has to check its device state).
        """
        cdef CType* t = ti.c
        cdef int o, i, k
        cdef uint64_t want, size, bar, page, npg, tail
        cdef bint ok, wok
        cdef const uint8_t* e
        cdef uint8_t* revised
        cdef bint revision = False
        code[0] = 0
        if r.name_len != t.name_len or memcmp(r.name, t.name, t.name_len) != 0:
            code[0] = self.fail(E_MISMATCH, b"blob is of another device type")
            return None
        if memcmp(r.fp, t.fp, 32) != 0:
            if PyBytes_FromStringAndSize(<char*>r.fp, 32) not in ti.accepts:
                code[0] = self.fail(E_MISMATCH, b"blob is of another device type")
                return None
            revision = True  # an earlier revision the type accepts (R-MIG-002)
        if r.cfg_len != t.cfg_size:
            code[0] = self.fail(E_MISMATCH, b"configuration space size differs from the device type's")
            return None
        if revision:  # its read-only bits are this revision's, its other bits the blob's
            kept = PyBytes_FromStringAndSize(NULL, r.cfg_len)
            self.revised.append(kept)
            revised = <uint8_t*>PyBytes_AS_STRING(kept)
            for o in range(t.cfg_size):
                revised[o] = (r.cfg[o] & ~t.fixed[o]) | (t.image[o] & t.fixed[o])
            r.cfg = revised
            trusted = False
        if trusted and not t.custom:
            return None
        if masked_differs(r.cfg, t.image, t.fixed, t.cfg_size):
            code[0] = self.fail(E_MISMATCH, b"a read-only configuration bit differs from the type")
            return None
        for i in range(NWIN):
            if t.kind[i] == K_NONE:
                if r.on[i]:
                    code[0] = self.fail(E_MISMATCH, b"blob maps a BAR the type does not implement")
                    return None
                continue
            if self.move == MOVE_DEFERRED and decode_enabled(t, r.cfg, i):
                size = t.size[i]
                ok = not r.on[i] or ((r.base[i] & (size - 1)) == 0
                                     and may_decode_at(r.base[i], size, t.kind[i], self.win_flags))
            else:
                wok = window(t, r.cfg, i, &want, self.win_flags)
                ok = (wok == (r.on[i] != 0)) and (not wok or r.base[i] == want)
            if not ok:
                code[0] = self.fail(E_MISMATCH, b"blob window disagrees with its configuration")
                return None
        for k in range(<int>r.npages):
            e = r.mem + 4 + k * PAGE_ENTRY
            bar = e[0]
            page = ld64(e + 1)
            if bar >= 6 or t.kind[bar] == K_NONE:
                code[0] = self.fail(E_MISMATCH, b"blob holds data outside the device")
                return None
            size = t.size[bar]
            npg = (size + PAGE - 1) // PAGE
            if page >= npg:
                code[0] = self.fail(E_MISMATCH, b"blob holds data outside the device")
                return None
            tail = size - page * PAGE
            if tail < PAGE and not all_zero(e + 9 + tail, PAGE - tail):
                code[0] = self.fail(E_MISMATCH, b"blob holds data past the end of a BAR")
                return None
        if not t.custom:
            if r.extra_len:
                code[0] = self.fail(E_MISMATCH, b"memory behaviour keeps no extra state")
            return None
        data = _DeviceData(extra=bytearray(PyBytes_FromStringAndSize(<char*>r.extra, r.extra_len)))
        for k in range(<int>r.npages):
            e = r.mem + 4 + k * PAGE_ENTRY
            data.bar_memory(e[0]).pages[ld64(e + 1)] = bytearray(
                PyBytes_FromStringAndSize(<char*>(e + 9), PAGE))
        problem = (<object>t.behaviour).check(data)
        if problem is not None:
            code[0] = self.fail(E_MISMATCH, b"the behaviour rejects the blob's device state")
            return None
        return data

    cdef int load_instance(self, Vm* vm, Inst* p, InstRec* r, object data) except -1:
        """Replace an unmapped instance's state and data with a checked record's."""
        cdef int k
        cdef const uint8_t* e
        cdef uint8_t* pg
        touch(vm, p)
        p.cfg = (<uint8_t*>p) + sizeof(Inst)
        memcpy(p.cfg, r.cfg, r.cfg_len)
        free_pages(p)
        if p.t.custom:
            Py_INCREF(data)
            Py_XDECREF(p.pydata)
            p.pydata = <PyObject*>data
            return 0
        for k in range(<int>r.npages):
            e = r.mem + 4 + k * PAGE_ENTRY
            pg = new_page()
            memcpy(pg, e + 9, PAGE)
            map_put(&p.pages, ((<uint64_t>e[0]) << 56) | ld64(e + 1), pg)
            p.maps[e[0]].paged = 1
        return 0

    cdef int op_restore(self, OpRec* op, object blob) except -1:
        """Restore an instance, all or nothing (R-SR-002..R-SR-005, R-SR-007)."""
        cdef Vm* vm = NULL
        cdef Inst* p = NULL
        cdef InstRec r
        cdef Py_buffer view
        cdef int code = self.inst_of(op, &vm, &p)
        cdef int i, slot
        if code:
            return code
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            return self.fail(E_BAD_BLOB, b"a blob must be bytes")
        self.revised = []
        slot = self.trusted(blob)
        PyObject_GetBuffer(blob, &view, PyBUF_SIMPLE)
        try:
            code = self.parse_instance(<const uint8_t*>view.buf, view.len, &r, slot >= 0)
            if code:
                return code
            data = self.check_instance(&r, <TypeInfo>p.tinfo, &code, slot >= 0)
            if code:
                return code
            self.unmap_all(vm, p)
            self.load_instance(vm, p, &r, data)
            for i in range(NWIN):
                if r.on[i]:
                    self.do_map(vm, p, i, r.base[i])  # ascending BAR index (R-SR-002)
            if p.kids != NULL:  # a bridge's restored registers re-route and re-forward (R-BRG-009)
                self.reroute(vm)
                self.refresh_forwarding(vm, p)
            if slot >= 0:  # saving again gives the same bytes (R-SR-008)
                set_blob(&p.cbuf, blob)
                p.coff = 0
                p.clen = view.len
                p.cgen = p.gen
        finally:
            PyBuffer_Release(&view)
        return 0

    cdef int op_restore_vm(self, OpRec* op, object blob) except -1:
        """Create or replace a VM from a snapshot, all or nothing (R-SR-006, R-SR-007, R-SR-009).

        A snapshot of a VM with bridges has a topology section: the devices
        are in tree pre-order, each names its bridge by index, and the map
        order names instances by index (R-BLOB-007, R-BLOB-008).
        """
        cdef Py_buffer view
        cdef Py_ssize_t off[5]
        cdef Py_ssize_t ln[5]
        cdef const uint8_t* b
        cdef const uint8_t* s
        cdef const uint8_t* parents = NULL
        cdef int code
        cdef uint8_t has_ecam
        cdef uint64_t ecam, pos, count, k, n, dlen, bar
        cdef uint32_t cf8, parent, top
        cdef uint16_t packed, prev = 0
        cdef Vm* vm = NULL
        cdef Vm* old
        cdef Inst* p = NULL
        cdef Inst** made = NULL
        cdef uint32_t* stack = NULL
        cdef int32_t* last_kid = NULL
        cdef Py_ssize_t depth = 0
        cdef InstRec r
        cdef Py_ssize_t nexpected = 0
        cdef int slot
        cdef uint64_t i
        cdef uint8_t digest[32]
        cdef bint bridged
        if op.bad & B_VM:
            return self.fail(E_INVALID, b"vm_id must be an integer 0-0xffffffff")
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            return self.fail(E_BAD_BLOB, b"a snapshot must be bytes")
        self.revised = []
        slot = self.trusted(blob)
        PyObject_GetBuffer(blob, &view, PyBUF_SIMPLE)
        try:
            b = <const uint8_t*>view.buf
            code = self.unframe(b, view.len, b"VPCIDVMS", 4, off, ln, True, 1 << 4)  # its digest: below
            if code:
                return code
            bridged = ln[4] >= 0
            if ln[1] != 13:
                return self.fail(E_BAD_BLOB, b"VM section has the wrong length")
            s = b + off[1]
            has_ecam = s[0]
            ecam = ld64(s + 1)
            cf8 = ld32(s + 9)
            if has_ecam > 1 or (not has_ecam and ecam):
                return self.fail(E_BAD_BLOB, b"ECAM field is not canonical")
            if ln[2] < 4:
                return self.fail(E_BAD_BLOB, b"device section is truncated")
            s = b + off[2]
            count = ld32(s)
            if bridged:
                if ln[4] < 4 or ld32(b + off[4]) != count or <uint64_t>ln[4] != 4 + 4 * count:
                    return self.fail(E_BAD_BLOB, b"topology section does not list every device once")
                parents = b + off[4] + 4
                stack = <uint32_t*>malloc((count + 1) * sizeof(uint32_t))
                last_kid = <int32_t*>malloc((count + 1) * sizeof(int32_t))
                if stack == NULL or last_kid == NULL:
                    raise MemoryError()
                for k in range(count + 1):
                    last_kid[k] = -1  # entry ``count`` stands for the root buses
            pos = 4
            for k in range(count):
                if pos + 6 > <uint64_t>ln[2]:
                    return self.fail(E_BAD_BLOB, b"device entry runs past the end")
                packed = ld16(s + pos)
                dlen = ld32(s + pos + 2)
                if pos + 6 + dlen > <uint64_t>ln[2]:
                    return self.fail(E_BAD_BLOB, b"device blob runs past the end")
                if not bridged:
                    if k > 0 and packed <= prev:
                        return self.fail(E_BAD_BLOB, b"devices are not in ascending BDF order")
                    prev = packed
                else:
                    # pre-order: the parent is an earlier entry still open on the path from the root
                    parent = ld32(parents + 4 * k)
                    if parent == 0xFFFFFFFF:
                        depth = 0
                        top = <uint32_t>count
                    else:
                        while depth > 0 and stack[depth - 1] != parent:
                            depth -= 1
                        if depth == 0:
                            return self.fail(E_BAD_BLOB, b"a device's bridge is not an earlier entry on its path")
                        if depth > 255:  # R-BLOB-008: no operations build a deeper tree
                            return self.fail(E_BAD_BLOB, b"a device sits below more than 255 bridges")
                        if packed >> 8:
                            return self.fail(E_BAD_BLOB, b"a device below a bridge has a bus number")
                        top = parent
                    if last_kid[top] >= packed:
                        return self.fail(E_BAD_BLOB, b"devices on a bus are not in ascending order")
                    last_kid[top] = packed
                    stack[depth] = <uint32_t>k
                    depth += 1
                pos += 6 + dlen
            if pos != <uint64_t>ln[2]:
                return self.fail(E_BAD_BLOB, b"device section has trailing bytes")
            if slot < 0:
                self.tree_digest(b, off[2], ln[2], view.len - 32, digest)
                if memcmp(digest, b + view.len - 32, 32) != 0:
                    return self.fail(E_BAD_BLOB, b"integrity check failed (SHA-256 mismatch)")
            if ln[3] < 4:
                return self.fail(E_BAD_BLOB, b"map-order section is truncated")
            n = ld32(b + off[3])
            if <uint64_t>ln[3] != 4 + 3 * n:
                return self.fail(E_BAD_BLOB, b"map-order section length does not match its count")
            if bridged:
                for k in range(n):
                    if ld16(b + off[3] + 4 + 3 * k) >= count:
                        return self.fail(E_BAD_BLOB, b"map order names a device index past the devices section")
            if has_ecam and ((ecam & (ECAM_SIZE - 1)) or ecam > (<uint64_t>0) - ECAM_SIZE):
                return self.fail(E_BAD_BLOB, b"ECAM base is not a valid window")
            if not self.cf8_latched and (cf8 & ~self.cf8_keep):
                return self.fail(E_MISMATCH, b"0xCF8 has bits this profile never latches")
            vm = new_vm(op.vm, has_ecam, ecam)
            vm.cf8 = cf8
            if bridged:
                made = <Inst**>malloc((count + 1) * sizeof(Inst*))
                if made == NULL:
                    raise MemoryError()
            pos = 4
            for k in range(count):
                packed = ld16(s + pos)
                dlen = ld32(s + pos + 2)
                code = self.parse_instance(s + pos + 6, <Py_ssize_t>dlen, &r, slot >= 0)
                if code:
                    return code
                ti = self.types_by_name_bytes.get(PyBytes_FromStringAndSize(<char*>r.name, r.name_len))
                if ti is None:
                    return self.fail(E_MISMATCH, b"snapshot holds an unknown device type")
                if not bridged and (<TypeInfo>ti).c.bridge:
                    return self.fail(E_BAD_BLOB, b"snapshot holds a bridge but no topology section")
                data = self.check_instance(&r, <TypeInfo>ti, &code, slot >= 0)
                if code:
                    return code
                if bridged:
                    parent = ld32(parents + 4 * k)
                if bridged and parent != 0xFFFFFFFF:  # below a bridge: beside its siblings (R-MF-001)
                    if made[parent].kids != NULL and (packed & 7) and made[parent].kids[packed & 0xF8] != NULL \
                            and not (made[parent].kids[packed & 0xF8].t.image[0x0E] & 0x80):
                        return self.fail(E_MISMATCH, b"snapshot breaks the multi-function rules (R-MF-002)")
                elif multifunction_conflict(&vm.cfgtab, packed, (<TypeInfo>ti).c.image[0x0E]):
                    return self.fail(E_MISMATCH, b"snapshot breaks the multi-function rules (R-MF-002)")
                p = new_inst(<TypeInfo>ti, packed, False)
                p.devfn = packed & 0xFF
                if bridged:
                    made[k] = p
                    parent = ld32(parents + 4 * k)
                    if parent != 0xFFFFFFFF and made[parent].kids == NULL:
                        free_inst(p)
                        return self.fail(E_BAD_BLOB, b"a device's parent in the topology is not a bridge")
                    if (<TypeInfo>ti).c.bridge:
                        p.kids = <Inst**>calloc(256, sizeof(Inst*))
                        if p.kids == NULL:
                            free_inst(p)
                            raise MemoryError()
                        vm.nbridges += 1
                    if parent != 0xFFFFFFFF:
                        p.parent = made[parent]
                        p.parent.kids[p.devfn] = p
                        p.rank = 0x10000  # no BDF until routed below
                    else:
                        p.reach = 1
                        vm.rootcount[packed >> 8] += 1
                        map_put(&vm.cfgtab, packed, p)
                else:
                    p.reach = 1
                    vm.rootcount[packed >> 8] += 1
                    map_put(&vm.cfgtab, packed, p)
                self.load_instance(vm, p, &r, data)
                p.coff = (s + pos + 6) - b  # where its blob is, for the caches below
                p.clen = <Py_ssize_t>dlen
                for bar in range(<uint64_t>NWIN):
                    if r.on[bar]:
                        p.maps[bar].base = r.base[bar]  # mapped below, in map order
                        p.pending |= 1 << bar
                        nexpected += 1
                pos += 6 + dlen
            if bridged:
                if vm.nbridges == 0:
                    return self.fail(E_BAD_BLOB, b"a topology section in a snapshot without bridges")
                vm.busowner = <Inst**>calloc(256, sizeof(Inst*))
                if vm.busowner == NULL:
                    raise MemoryError()
                self.reroute(vm)
            # the map order lists exactly the decoding BARs (R-SR-006)
            if <uint64_t>nexpected != n:
                return self.fail(E_MISMATCH, b"map order does not list exactly the decoding BARs")
            s = b + off[3] + 4
            for k in range(n):
                packed = ld16(s + 3 * k)
                bar = s[3 * k + 2]
                if bridged:
                    p = made[packed] if packed < count else NULL
                else:
                    p = <Inst*>map_get(&vm.cfgtab, packed)
                if p == NULL or bar >= NWIN or not (p.pending & (1 << bar)):
                    return self.fail(E_MISMATCH, b"map order does not list exactly the decoding BARs")
                p.pending &= ~(1 << bar)
                self.do_map(vm, p, <int>bar, p.maps[bar].base)
            if slot >= 0:  # its snapshot is these very bytes, and its instances' blobs are in them (R-SR-008)
                for i in range(count if bridged else <uint64_t>0):
                    set_blob(&made[i].cbuf, blob)
                    made[i].cgen = made[i].gen
                for i in range(vm.cfgtab.mask + 1 if vm.cfgtab.tab != NULL and not bridged else <uint64_t>0):
                    if vm.cfgtab.tab[i].val != NULL:
                        p = <Inst*>vm.cfgtab.tab[i].val
                        set_blob(&p.cbuf, blob)
                        p.cgen = p.gen
                set_blob(&vm.cblob, blob)
                vm.cgen = vm.gen
            old = <Vm*>map_get(&self.vms, op.vm)
            map_put(&self.vms, op.vm, vm)
            self.memo_vm = NULL
            vm = NULL
            if old != NULL:
                free_vm(old)
        finally:
            PyBuffer_Release(&view)
            free(made)
            free(stack)
            free(last_kid)
            if vm != NULL:
                free_vm(vm)
        return 0

    # ------------------------------------------------------------ introspection (R-DS-007)

    cdef Py_ssize_t pack_rows(self, Vm* vm, Buf* out) except -1:
        """Append the VM's table rows to ``out`` (a count, then ``Row`` records); return where they start.

        Configuration rows in BDF order, then the I/O and the memory rows, each
        by size class, base, BDF and BAR (R-DS-007).
        """
        cdef Py_ssize_t n, k, count, at, nio = 0, jio = 0, jmem = 0
        cdef Inst** arr = self.sorted_insts(vm, &n)
        cdef Inst* p
        cdef Row* rows
        cdef Row* r
        cdef int i
        count = n
        for k in range(n):
            for i in range(NWIN):
                if arr[k].maps[i].active:
                    count += 1
                    nio += arr[k].t.kind[i] == K_IO
        buf_reserve(out, 8 + count * sizeof(Row))
        at = out.len
        (<uint64_t*>(out.data + at))[0] = <uint64_t>count
        rows = <Row*>(out.data + at + 8)
        for k in range(n):
            p = arr[k]
            r = &rows[k]
            r.space = 0
            r.bar = 0
            r.bdf = p.bdf
            r.tag = p.t.index
            r.base = 0
            for i in range(NWIN):
                if p.maps[i].active:
                    if p.t.kind[i] == K_IO:
                        r = &rows[n + jio]
                        r.space = 1
                        jio += 1
                    else:
                        r = &rows[n + nio + jmem]
                        r.space = 2
                        jmem += 1
                    r.bar = <uint8_t>i
                    r.bdf = p.bdf
                    r.tag = p.maps[i].log2
                    r.base = p.maps[i].base
        qsort(rows + n, nio, sizeof(Row), cmp_row)
        qsort(rows + n + nio, count - n - nio, sizeof(Row), cmp_row)
        out.len = at + 8 + count * sizeof(Row)
        return at

    cdef object rows(self, Vm* vm):
        """Adapter form of the three tables: ("config", bdf, type), (space, base, size, bdf, bar)."""
        cdef Buf buf
        memset(&buf, 0, sizeof(Buf))
        try:
            return unpack_rows(buf.data + self.pack_rows(vm, &buf), self.type_names)
        finally:
            free(buf.data)

    # ------------------------------------------------------------ the Python API

    cdef Vm* api_vm(self, object vm_id) except NULL:
        cdef OpRec op
        cdef Vm* vm = NULL
        memset(&op, 0, sizeof(OpRec))
        set_vm(&op, vm_id)
        code = self.vm_of(&op, &vm)
        if code:
            self.raise_code(code)
        return vm

    cdef int api_rec(self, OpRec* op, int kind, object vm_id, object bdf) except -1:
        cdef int packed
        memset(op, 0, sizeof(OpRec))
        op.kind = kind
        set_vm(op, vm_id)
        if kind in (OP_PLUG, OP_UNPLUG, OP_CONFIG_READ, OP_CONFIG_WRITE, OP_RESET, OP_SAVE, OP_RESTORE):
            packed = bdf_of(bdf)
            if packed < 0:
                op.bad |= B_BDF
            else:
                op.bdf = <uint16_t>packed
        return 0

    cdef int api_check(self, int code) except -1:
        if code:
            self.raise_code(code)
        return 0

    def create_vm(self, vm_id, *, ecam_base=0xB0000000):
        """Add a VM element with empty tables (R-DS-001, R-ECAM-001)."""
        cdef OpRec op
        self.api_rec(&op, OP_CREATE_VM, vm_id, None)
        op.ecam_none = ecam_base is None
        if ecam_base is not None and not as_u64(ecam_base, &op.address):
            op.bad |= B_ECAM
        self.api_check(self.op_create_vm(&op))

    def set_ecam_base(self, vm_id, base):
        """Move the VM's ECAM window to ``base``, or disable it with None (R-ECAM-005, R-ECAM-006)."""
        cdef OpRec op
        self.api_rec(&op, OP_SET_ECAM_BASE, vm_id, None)
        op.ecam_none = base is None
        if base is not None and not as_u64(base, &op.address):
            op.bad |= B_ECAM
        self.api_check(self.op_set_ecam_base(&op))

    def ecam_base(self, vm_id):
        """Where the VM's ECAM window is, or None (R-ECAM-001, R-ECAM-005)."""
        cdef OpRec op
        cdef Vm* vm = NULL
        self.api_rec(&op, OP_TABLES, vm_id, None)
        self.api_check(self.vm_of(&op, &vm))
        return vm.ecam if vm.has_ecam else None

    def destroy_vm(self, vm_id):
        """Remove a VM element and everything it holds (R-DS-002)."""
        cdef OpRec op
        self.api_rec(&op, OP_DESTROY_VM, vm_id, None)
        self.api_check(self.op_destroy_vm(&op))

    def vm_ids(self):
        """The ids of all VM elements, ascending."""
        cdef uint64_t i
        out = []
        if self.vms.tab != NULL:
            for i in range(self.vms.mask + 1):
                if self.vms.tab[i].val != NULL:
                    out.append((<Vm*>self.vms.tab[i].val).id)
        return tuple(sorted(out))

    def plug(self, vm_id, bdf, dtype):
        """Hot-plug a new instance of ``dtype`` at ``bdf`` in power-on state (R-HP-001)."""
        cdef OpRec op
        self.api_rec(&op, OP_PLUG, vm_id, bdf)
        code = self.op_plug(&op, dtype)
        self.api_check(code)

    def unplug(self, vm_id, bdf):
        """Remove an instance and every table entry that routes to it (R-HP-002)."""
        cdef OpRec op
        self.api_rec(&op, OP_UNPLUG, vm_id, bdf)
        self.api_check(self.op_unplug(&op))

    cdef object api_access(self, int kind, object vm_id, object bdf, object address, object width,
                           object value, bint write):
        cdef OpRec op
        cdef uint64_t out = 0
        self.api_rec(&op, kind, vm_id, bdf)
        if not as_u64(address, &op.address):
            op.bad |= B_ADDR
        set_width(&op, width)
        if write and not as_u64(value, &op.arg.value):
            op.bad |= B_VALUE
        self.api_check(self.op_access(&op, &out))
        return None if write else out

    def config_read(self, vm_id, bdf, offset, width):
        """Read configuration space (R-ACC-003, R-ACC-006)."""
        return self.api_access(OP_CONFIG_READ, vm_id, bdf, offset, width, None, False)

    def config_write(self, vm_id, bdf, offset, width, value):
        """Write configuration space (R-CFG-001, R-ACC-006)."""
        self.api_access(OP_CONFIG_WRITE, vm_id, bdf, offset, width, value, True)

    def io_read(self, vm_id, port, width):
        """Guest ``in`` (R-ACC-*, R-CAM-*)."""
        return self.api_access(OP_IO_READ, vm_id, None, port, width, None, False)

    def io_write(self, vm_id, port, width, value):
        """Guest ``out`` (R-ACC-*, R-CAM-*)."""
        self.api_access(OP_IO_WRITE, vm_id, None, port, width, value, True)

    def mmio_read(self, vm_id, address, width):
        """Guest load (R-ACC-*, R-ECAM-*)."""
        return self.api_access(OP_MMIO_READ, vm_id, None, address, width, None, False)

    def mmio_write(self, vm_id, address, width, value):
        """Guest store (R-ACC-*, R-ECAM-*)."""
        self.api_access(OP_MMIO_WRITE, vm_id, None, address, width, value, True)

    def reset(self, vm_id, bdf):
        """Function-level reset (R-RST-001, R-RST-002)."""
        cdef OpRec op
        self.api_rec(&op, OP_RESET, vm_id, bdf)
        self.api_check(self.op_reset(&op))

    def reset_vm(self, vm_id):
        """Platform reset: every instance reset, 0xCF8 cleared (R-RST-003)."""
        cdef OpRec op
        self.api_rec(&op, OP_RESET_VM, vm_id, None)
        self.api_check(self.op_reset_vm(&op))

    def save(self, vm_id, bdf):
        """The instance's data blob (R-SR-001, R-BLOB-003)."""
        cdef OpRec op
        cdef int code = 0
        self.api_rec(&op, OP_SAVE, vm_id, bdf)
        blob = self.op_save(&op, &code)
        self.api_check(code)
        return blob

    def restore(self, vm_id, bdf, blob):
        """Replace an instance's state and data with a blob's (R-SR-002..R-SR-005)."""
        cdef OpRec op
        self.api_rec(&op, OP_RESTORE, vm_id, bdf)
        self.api_check(self.op_restore(&op, blob))

    def snapshot(self, vm_id):
        """Canonical VM snapshot (R-SR-006, R-BLOB-005)."""
        cdef OpRec op
        cdef int code = 0
        self.api_rec(&op, OP_SNAPSHOT, vm_id, None)
        blob = self.op_snapshot(&op, &code)
        self.api_check(code)
        return blob

    def restore_vm(self, vm_id, snapshot):
        """Create or replace a VM from a snapshot (R-SR-006, R-SR-007)."""
        cdef OpRec op
        self.api_rec(&op, OP_RESTORE_VM, vm_id, None)
        self.api_check(self.op_restore_vm(&op, snapshot))

    def tables(self, vm_id):
        """The VM's three hash tables as the model's ``VmTables`` (R-DS-007)."""
        cdef Vm* vm = self.api_vm(vm_id)
        config, io, memory = [], [], []
        for row in self.rows(vm):
            if row[0] == "config":
                config.append((_Bdf.parse(row[1]), row[2]))
            else:
                entry = _TableEntry(row[2].bit_length() - 1, row[1], row[2], _Bdf.parse(row[3]), row[4])
                (io if row[0] == "io" else memory).append(entry)
        return _VmTables(tuple(config), tuple(io), tuple(memory))

    def resolve(self, vm_id, space, address):
        """Which instance and BAR decode one port or memory address (R-DEC-008)."""
        cdef Vm* vm = self.api_vm(vm_id)
        cdef uint64_t a
        cdef Mapping* m
        if space not in ("io", "memory"):
            raise _errors.InvalidArgument("space is 'io' or 'memory'")
        if not as_u64(address, &a) or (space == "io" and a > 0xFFFF):
            raise _errors.InvalidArgument("address out of range")
        m = table_lookup(&vm.io if space == "io" else &vm.mem, a, self.lm)
        if m == NULL:
            return None
        if not m.inst.reach:
            return None  # R-BRG-003: an instance the bridges give no BDF to is named by none
        return (_Bdf.unpack(m.inst.bdf), m.bar)

    def topology(self, vm_id):
        """The VM's bus tree in pre-order: each instance's BDF now (or None), its bridge's index (None
        on a root bus), its root bus, device, function and type; for a bridge, the number its
        secondary bus is reached by and its windows as its registers decode them (R-BRG-010)."""
        return self.topology_of(self.api_vm(vm_id))

    cdef tuple topology_rows(self, Vm* vm):
        """The ``topology`` operation's rows (``Observation.topology``) of the VM's bus tree."""
        return _topology_rows(self.topology_of(vm))

    cdef tuple topology_of(self, Vm* vm):
        cdef Py_ssize_t n, k
        cdef Inst** arr = self.preorder(vm, &n)
        cdef Inst* p
        nodes = []
        for k in range(n):
            arr[k].order = <uint32_t>k
        for k in range(n):
            p = arr[k]
            secondary = windows = None
            if p.kids != NULL:
                if vm.busowner[p.cfg[0x19]] == p:
                    secondary = p.cfg[0x19]
                windows = decoded_windows(p)
            nodes.append(_TopologyNode(
                _Bdf.unpack(p.bdf) if p.reach else None, None if p.parent == NULL else p.parent.order,
                (p.bdf >> 8) if p.parent == NULL else None, p.devfn >> 3, p.devfn & 7,
                (<TypeInfo>p.tinfo).name, secondary, windows))
        return tuple(nodes)

    def device_type(self, vm_id, bdf):
        """The device type of the instance at ``bdf``."""
        cdef OpRec op
        cdef Vm* vm = NULL
        cdef Inst* p = NULL
        self.api_rec(&op, OP_RESET, vm_id, bdf)
        self.api_check(self.inst_of(&op, &vm, &p))
        return (<TypeInfo>p.tinfo).dtype

    def cf8(self, vm_id):
        """The configuration address register (R-CAM-002)."""
        return self.api_vm(vm_id).cf8

    # ------------------------------------------------------------ region accesses (a VMM's view)
    #
    # A VMM that serves a device to its guest (a vfio-user server) reaches configuration space by
    # BDF and a BAR's contents by BAR index and offset, having routed the guest's address itself.
    # These two methods are what ``vpcid.adapters.vfio_user.server.ServerManager`` adds to the model,
    # with the same results; :class:`RegionPath` serves the same accesses straight from messages.

    def region_config(self, vm_id, bdf, offset, length, payload=None):
        """Configuration bytes ``[offset, offset+length)`` of the function at ``bdf``, one access per
        dword they touch, as ECAM does (R-ECAM-003); a write (``payload``, ``length`` bytes) returns
        b"". An absent function, or bytes past its space, read ones and ignore writes (R-ACC-006,
        R-CFG-009). UnknownVm for an unknown VM; InvalidArgument for a range past 0x1000."""
        cdef Vm* vm = self.api_vm(vm_id)
        cdef int packed = bdf_of(bdf)
        cdef uint64_t off = 0, n = 0
        cdef Py_buffer view
        cdef bint write = payload is not None
        if packed < 0:
            raise _errors.InvalidArgument("expected a Bdf")
        if not as_u64(offset, &off) or not as_u64(length, &n) or off > 0x1000 or n > 0x1000 - off:
            raise _errors.InvalidArgument("a configuration range lies within 0-0x1000")
        if not write:
            out = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>n)
            self.cfg_range(vm, <uint16_t>packed, off, <uint8_t*>PyBytes_AS_STRING(out), <int>n, False)
            return out
        PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
        try:
            if <uint64_t>view.len != n:
                raise _errors.InvalidArgument(f"payload holds {view.len} bytes, length says {n}")
            data = PyBytes_FromStringAndSize(<const char*>view.buf, view.len)  # a copy the access may read
        finally:
            PyBuffer_Release(&view)
        self.cfg_range(vm, <uint16_t>packed, off, <uint8_t*>PyBytes_AS_STRING(data), <int>n, True)
        return b""

    cdef int cfg_range(self, Vm* vm, uint16_t bdf, uint64_t off, uint8_t* buf, int n, bint write) except -1:
        """Configuration bytes of a range, one access per dword it touches (R-ECAM-003)."""
        cdef uint64_t end = off + <uint64_t>n
        cdef int chunk
        while off < end:
            chunk = <int>(min(end, (off & ~(<uint64_t>3)) + 4) - off)
            self.cfg_access(vm, bdf, off, buf, chunk, write)
            buf += chunk
            off += chunk
        return 0

    def region_bar(self, vm_id, bdf, index, offset, length, payload=None):
        """Contents of BAR ``index`` (0-5) or of the ROM (6) at ``offset``, whether or not the BAR
        decodes: the type's behaviour (R-DT-003) or its memory-like store (R-DT-004); the ROM reads
        its contents, zeros past them, and ignores writes. A write (``payload``) returns b"".
        UnknownVm, UnknownDevice; InvalidArgument for a BAR the type lacks or a range past it."""
        cdef OpRec op
        cdef Vm* vm = NULL
        cdef Inst* p = NULL
        cdef uint64_t i = 0, off = 0, n = 0
        cdef Py_buffer view
        cdef bint write = payload is not None
        self.api_rec(&op, OP_RESET, vm_id, bdf)
        self.api_check(self.inst_of(&op, &vm, &p))
        if not as_u64(index, &i) or i > ROM or p.t.kind[i] == K_NONE:
            raise _errors.InvalidArgument(f"the device type has no BAR {index!r}")
        if (not as_u64(offset, &off) or not as_u64(length, &n) or n > 0x7FFFFFFF or off > p.t.size[i]
                or n > p.t.size[i] - off):
            raise _errors.InvalidArgument(f"the range lies outside BAR {i} ({p.t.size[i]:#x} bytes)")
        if not write:
            out = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>n)
            self.region_bar_access(vm, p, <int>i, off, <uint8_t*>PyBytes_AS_STRING(out), <int>n, False)
            return out
        PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
        try:
            if <uint64_t>view.len != n:
                raise _errors.InvalidArgument(f"payload holds {view.len} bytes, length says {n}")
            data = PyBytes_FromStringAndSize(<const char*>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
        if i != ROM:
            self.region_bar_access(vm, p, <int>i, off, <uint8_t*>PyBytes_AS_STRING(data), <int>n, True)
        return b""

    cdef int region_bar_access(self, Vm* vm, Inst* p, int i, uint64_t off, uint8_t* buf, int n,
                               bint write) except -1:
        """One checked BAR access by index (never a ROM write): what a routed access does once it has
        found the window (R-ACC-009), without the window."""
        if write or p.t.custom:  # a behaviour may change its state on any access
            touch(vm, p)
        return self.bar_access(&p.maps[i], off, buf, n, write)

    cdef Inst* find_inst(self, uint32_t vm_id, uint16_t bdf) noexcept:
        """The instance at ``bdf`` of VM ``vm_id``, or NULL."""
        cdef Vm* vm = self.memo_vm
        if vm == NULL or vm.id != vm_id:
            vm = <Vm*>map_get(&self.vms, vm_id)
            if vm == NULL:
                return NULL
            self.memo_vm = vm
        return <Inst*>map_get(&vm.cfgtab, bdf)


# ---------------------------------------------------------------- instances and VMs (C side)

# Freed VMs, instances and pages are kept for reuse, a bounded number of each: hot-plug, ``init``
# and memory writes then rarely reach malloc. A pooled block's first word links to the next one.

cdef enum:
    VM_POOL = 16
    INST_POOL = 64
    PAGE_POOL = 256
    SMALL_MAP = 64       # a pooled VM keeps hash tables up to this many entries

cdef void* _vm_pool = NULL
cdef int _vm_pool_n = 0
cdef void* _inst_pool[2]         # by configuration space size: 256, 4096
cdef int _inst_pool_n[2]
_inst_pool[0] = _inst_pool[1] = NULL
_inst_pool_n[0] = _inst_pool_n[1] = 0
cdef void* _page_pool = NULL
cdef int _page_pool_n = 0


cdef inline void* pool_pop(void** pool, int* n) noexcept nogil:
    cdef void* block = pool[0]
    if block != NULL:
        pool[0] = (<void**>block)[0]
        n[0] -= 1
    return block


cdef inline bint pool_push(void** pool, int* n, int limit, void* block) noexcept nogil:
    """Keep ``block`` for reuse; False when the pool is full (the caller frees it)."""
    if n[0] >= limit:
        return False
    (<void**>block)[0] = pool[0]
    pool[0] = block
    n[0] += 1
    return True


cdef inline void map_reset(U64Map* m) noexcept nogil:
    """Empty ``m``, keeping a small table for reuse."""
    if m.tab != NULL and m.mask + 1 <= SMALL_MAP:
        if m.count:
            memset(m.tab, 0, (m.mask + 1) * sizeof(MapEntry))
        m.count = 0
    else:
        map_free(m)


cdef Vm* new_vm(uint32_t vm_id, bint has_ecam, uint64_t ecam) except NULL:
    cdef Vm* vm = <Vm*>pool_pop(&_vm_pool, &_vm_pool_n)
    cdef U64Map cfgtab, io, mem
    if vm != NULL:  # emptied when pooled: keep its tables
        cfgtab = vm.cfgtab
        io = vm.io.map
        mem = vm.mem.map
        # all but the size classes' fields, which ``classes`` marks stale
        memset(vm, 0, <size_t>(<char*>&vm.io.cls[0] - <char*>vm))
        memset(&vm.mem, 0, <size_t>(<char*>&vm.mem.cls[0] - <char*>&vm.mem))
        memset(&vm.gen, 0, <size_t>(<char*>(vm + 1) - <char*>&vm.gen))
        vm.cfgtab = cfgtab
        vm.io.map = io
        vm.mem.map = mem
    else:
        vm = <Vm*>calloc(1, sizeof(Vm))
        if vm == NULL:
            raise MemoryError()
    vm.id = vm_id
    vm.has_ecam = has_ecam
    vm.ecam = ecam if has_ecam else 0
    vm.stamp = 1
    return vm


cdef void free_vm(Vm* vm) noexcept:
    cdef uint64_t i
    if vm.cfgtab.tab != NULL and vm.cfgtab.count:
        if vm.busowner != NULL:  # instances below bridges are freed with the instance on a root bus
            for i in range(vm.cfgtab.mask + 1):
                if vm.cfgtab.tab[i].val != NULL and (<Inst*>vm.cfgtab.tab[i].val).parent != NULL:
                    vm.cfgtab.tab[i].val = NULL
        for i in range(vm.cfgtab.mask + 1):
            if vm.cfgtab.tab[i].val != NULL:
                free_tree(<Inst*>vm.cfgtab.tab[i].val)
    free(vm.busowner)
    vm.busowner = NULL
    Py_XDECREF(vm.cblob)
    vm.cblob = NULL
    map_reset(&vm.cfgtab)
    map_reset(&vm.io.map)
    map_reset(&vm.mem.map)
    if not pool_push(&_vm_pool, &_vm_pool_n, VM_POOL, vm):
        map_free(&vm.cfgtab)
        map_free(&vm.io.map)
        map_free(&vm.mem.map)
        free(vm)


cdef Inst* new_inst(TypeInfo ti, uint16_t bdf, bint power_on=True) except NULL:
    """A new instance of ``ti`` at ``bdf``; unless ``power_on``, the caller fills its configuration space."""
    cdef CType* t = ti.c
    cdef int cls = t.cfg_size > 256
    cdef size_t size = (sizeof(Inst) + (4096 if cls else 256) + 63) & ~(<size_t>63)
    cdef Inst* p = <Inst*>pool_pop(&_inst_pool[cls], &_inst_pool_n[cls])
    cdef int i
    if p == NULL:
        p = <Inst*>aligned_alloc(64, size)
        if p == NULL:
            raise MemoryError()
    memset(p, 0, sizeof(Inst))
    p.bdf = bdf
    p.rank = bdf
    p.t = t
    p.tinfo = <PyObject*>ti  # kept alive by the manager's registry
    p.cfg_size = t.cfg_size
    # R-HP-001: the power-on image (shared with the type until the first change)
    p.cfg = &t.image[0] if power_on else (<uint8_t*>p) + sizeof(Inst)
    for i in range(NWIN):
        p.maps[i].inst = p
        p.maps[i].bar = i
        p.maps[i].custom = t.custom != 0
        p.maps[i].hot_key = NO_PAGE
    return p


cdef inline uint8_t* own_cfg(Inst* p) noexcept:
    """The instance's configuration space, made its own copy if it still was the type's image."""
    cdef uint8_t* own = (<uint8_t*>p) + sizeof(Inst)
    if p.cfg != own:
        memcpy(own, p.cfg, p.cfg_size)
        p.cfg = own
    return own


cdef void free_pages(Inst* p) noexcept:
    cdef uint64_t i
    cdef int w
    if p.pages.count:
        for i in range(p.pages.mask + 1):
            if p.pages.tab[i].val != NULL:
                free_page(<uint8_t*>p.pages.tab[i].val)
    map_free(&p.pages)
    for w in range(NWIN):
        p.maps[w].paged = 0
        p.maps[w].hot_key = NO_PAGE
        p.maps[w].hot_page = NULL


cdef void free_tree(Inst* p) noexcept:
    """Free an instance and, for a bridge, everything plugged below it."""
    cdef int d
    if p.kids != NULL:
        for d in range(256):
            if p.kids[d] != NULL:
                free_tree(p.kids[d])
    free_inst(p)


cdef void free_inst(Inst* p) noexcept:
    cdef int cls = p.cfg_size > 256
    cdef int w
    free_pages(p)
    free(p.kids)
    p.kids = NULL
    for w in range(NWIN):
        free(p.maps[w].fwd)
        p.maps[w].fwd = NULL
    Py_XDECREF(p.pydata)
    Py_XDECREF(p.cbuf)
    if not pool_push(&_inst_pool[cls], &_inst_pool_n[cls], INST_POOL, p):
        free(p)


cdef inline bint is_power_on(Inst* p) noexcept:
    """Whether an instance is in the power-on state its type's power-on blob describes."""
    cdef int i
    if p.cfg != &p.t.image[0] or p.pages.count or p.t.custom:
        return False
    for i in range(7):
        if p.maps[i].active:
            return False
    return True


cdef inline void touch(Vm* vm, Inst* p) noexcept:
    """Record a change of the instance (and so of its VM): cached blobs are stale."""
    p.gen += 1
    vm.gen += 1


cdef void set_blob(PyObject** slot, object blob) noexcept:
    """Hold ``blob`` in ``slot``, releasing what it held."""
    Py_INCREF(blob)
    Py_XDECREF(slot[0])
    slot[0] = <PyObject*>blob


# ---------------------------------------------------------------- sparse BAR memory (R-DT-004)

cdef inline uint8_t* new_page() except NULL:
    """A 4096-byte page of BAR contents (not cleared)."""
    cdef uint8_t* pg = <uint8_t*>pool_pop(&_page_pool, &_page_pool_n)
    if pg == NULL:
        pg = <uint8_t*>malloc(PAGE)
        if pg == NULL:
            raise MemoryError()
    return pg


cdef inline void free_page(uint8_t* pg) noexcept:
    if not pool_push(&_page_pool, &_page_pool_n, PAGE_POOL, pg):
        free(pg)


cdef inline uint8_t* page_of(Mapping* m, uint64_t key) noexcept nogil:
    """The stored page under ``key`` of ``m``'s BAR, or NULL; remembered for the next access."""
    cdef uint8_t* pg
    if key == m.hot_key:
        return m.hot_page
    pg = <uint8_t*>map_get(&m.inst.pages, key)
    if pg != NULL:
        m.hot_key = key
        m.hot_page = pg
    return pg


cdef inline void mem_read(Mapping* m, uint64_t off, uint8_t* out, int n) noexcept:
    """Memory-like read of a BAR: the bytes last written, zero if never (R-DT-004)."""
    cdef uint64_t start
    cdef int chunk
    cdef uint8_t* pg
    if not m.paged:
        fill_small(out, 0, n)
        return
    while n > 0:
        start = off & (PAGE - 1)
        chunk = n if start + n <= PAGE else <int>(PAGE - start)
        pg = page_of(m, ((<uint64_t>m.bar) << 56) | (off >> 12))
        if pg == NULL:
            fill_small(out, 0, chunk)
        else:
            copy_small(out, pg + start, chunk)
        out += chunk
        off += chunk
        n -= chunk


cdef int mem_write(Mapping* m, uint64_t off, const uint8_t* src, int n) except -1:
    """Memory-like write of a BAR; a page is allocated at its first non-zero byte."""
    cdef uint64_t start, key
    cdef int chunk
    cdef uint8_t* pg
    while n > 0:
        start = off & (PAGE - 1)
        chunk = n if start + n <= PAGE else <int>(PAGE - start)
        key = ((<uint64_t>m.bar) << 56) | (off >> 12)
        pg = page_of(m, key)
        if pg == NULL and not all_zero(src, chunk):
            pg = new_page()
            memset(pg, 0, PAGE)
            map_put(&m.inst.pages, key, pg)
            m.paged = 1
            m.hot_key = key
            m.hot_page = pg
        if pg != NULL:
            copy_small(pg + start, src, chunk)
        src += chunk
        off += chunk
        n -= chunk
    return 0


cdef tuple behaviour_pages(object data):
    """(BAR, page, 4096 bytes) of a custom behaviour's DeviceData, canonical order, and its extra."""
    pages = []
    for bar in sorted(data.memory):
        for page, content in sorted(data.memory[bar].pages.items()):
            if any(content):
                pages.append((bar, page, bytes(content)))
    return pages, bytes(data.extra)


# ---------------------------------------------------------------- the adapter and the batch engine

cdef object _OK = _Observation()
cdef tuple _ERROR_OBS = tuple(_Observation(error=kind) for kind in ERROR_KINDS)
cdef dict _VALUE_OBS = {}


cdef object value_obs(uint64_t v):
    """``Observation(value=v)``, cached for repeated values (reads repeat a lot: ones, zeros, IDs)."""
    key = v
    obs = _VALUE_OBS.get(key)
    if obs is None:
        obs = _Observation(value=key)
        if len(_VALUE_OBS) < 65536:
            _VALUE_OBS[key] = obs
    return obs


@cython.final
cdef class Trace:
    """A whole trace encoded for the batch engine: one C record per operation."""

    cdef OpRec* recs
    cdef readonly Py_ssize_t length
    cdef list keep

    def __dealloc__(self):
        free(self.recs)

    def __len__(self):
        return self.length


@cython.final
cdef class BatchResult:
    """All observations of a batch run: a kind and a value per operation, digests and tables aside.

    Digests (32 raw bytes) and table rows (``Row`` records) are kept in one
    buffer; the value of such an operation is where its record starts. A
    ``topology`` operation's rows are a Python tuple in ``trees``; its value
    is their index there.
    """

    cdef bytearray _kinds
    cdef bytearray _values
    cdef Buf aux
    cdef list trees              # topology rows, by index
    cdef list names              # the manager's type names, by index
    cdef readonly Py_ssize_t length
    cdef readonly dict profile

    def __dealloc__(self):
        free(self.aux.data)

    @property
    def kinds(self):
        """Per operation: 0 ok, 1 value, 2 error (value = error code), 3 digest, 4 tables, 5 topology."""
        return bytes(self._kinds)

    def value(self, Py_ssize_t i):
        """The value slot of operation ``i`` (read value, error code, or where its digest or rows are)."""
        if not 0 <= i < self.length:
            raise IndexError(i)
        return (<uint64_t*>(<char*>self._values))[i]

    def observation(self, Py_ssize_t i):
        """Operation ``i``'s observation, as per-call execution returns it."""
        cdef uint64_t v
        cdef int kind
        if not 0 <= i < self.length:
            raise IndexError(i)
        kind = self._kinds[i]
        v = (<uint64_t*>(<char*>self._values))[i]
        if kind == R_OK:
            return _OK
        if kind == R_VALUE:
            return value_obs(v)
        if kind == R_ERROR:
            return _ERROR_OBS[v]
        if kind == R_DIGEST:
            return _Observation(digest=PyBytes_FromStringAndSize(<char*>self.aux.data + v, 32).hex())
        if kind == R_TOPOLOGY:
            return _Observation(topology=self.trees[v])
        return _Observation(tables=unpack_rows(self.aux.data + v, self.names))

    def observations(self):
        """Every observation, in order."""
        return [self.observation(i) for i in range(self.length)]

    def __len__(self):
        return self.length


@cython.final
cdef class CythonAdapter:
    """The compiled data manager behind the adapter protocol (spec/formats/adapter.md).

    ``execute`` performs one operation; ``run_batch`` a whole encoded trace
    in compiled code. Restores name a slot filled by ``save``/``snapshot``
    or carry a literal blob; a slot never filled is ``empty-slot``.
    """

    cdef readonly Manager manager
    cdef object _info
    cdef dict _types
    cdef dict _tinfo
    cdef dict _slot_ids
    cdef list _slots

    def __init__(self, profile=None, name="cython", types=None):
        from vpcid.adapters.base import AdapterInfo

        if profile is None:
            profile = _Profile()
        self.manager = Manager(profile)
        from vpcid.conformance.trace import EXTENSIONS, FULL, INTROSPECTION

        self._info = AdapterInfo(name, profile, operations=FULL | EXTENSIONS | INTROSPECTION, canonical_blobs=True,
                                 description="compiled (Cython) second implementation of the data manager")
        self._types = dict(types) if types is not None else dict(_SUITE_TYPES)
        self._tinfo = {}
        for tname, dtype in self._types.items():
            ti = self.manager.type_info(dtype)
            if ti is None:
                raise _errors.DeviceTypeError(f"device type {tname!r} conflicts with another of its name")
            self._tinfo[tname] = ti
        self._slot_ids = {}
        self._slots = []

    @property
    def info(self):
        return self._info

    def close(self):
        self._slots = [None] * len(self._slots)

    # ------------------------------------------------------------ encoding

    cdef int slot_index(self, object name) except -1:
        if not isinstance(name, str):
            raise _TraceError(f"a slot name is a string, not {name!r}")
        idx = self._slot_ids.get(name)
        if idx is None:
            idx = len(self._slots)
            self._slot_ids[name] = idx
            self._slots.append(None)
        return idx

    cdef int fill(self, object op, OpRec* r, list keep) except -1:
        """Encode one ``Op``; malformed operations are the trace's error (``TraceError``)."""
        cdef int kind, packed
        if F_COUNT and type(op) is _Op and PyTuple_GET_SIZE(op) == F_COUNT:
            return self.fill_fields(
                r, keep, <object>PyTuple_GET_ITEM(op, F_KIND), <object>PyTuple_GET_ITEM(op, F_VM),
                <object>PyTuple_GET_ITEM(op, F_BDF), <object>PyTuple_GET_ITEM(op, F_ADDRESS),
                <object>PyTuple_GET_ITEM(op, F_WIDTH), <object>PyTuple_GET_ITEM(op, F_VALUE),
                <object>PyTuple_GET_ITEM(op, F_NAME), <object>PyTuple_GET_ITEM(op, F_DATA),
                <object>PyTuple_GET_ITEM(op, F_ECAM))
        return self.fill_fields(r, keep, op.kind, op.vm, op.bdf, op.address, op.width, op.value, op.name,
                                op.data, op.ecam_base)

    cdef int fill_fields(self, OpRec* r, list keep, object op_kind, object vm, object bdf, object address,
                         object width, object value, object name, object data, object ecam) except -1:
        cdef int kind, packed
        memset(r, 0, sizeof(OpRec))
        kind = kind_code(op_kind)
        if kind < 0:
            code = _KIND_CODES.get(op_kind)  # an equal but not identical kind
            if code is None:
                raise _TraceError(f"unknown operation {op_kind!r}")
            kind = code
        r.kind = kind
        if kind == OP_INIT:
            return 0
        if kind == OP_DEFINE_TYPE:
            r.arg.value = self.define_type(data)
            return 0
        set_vm(r, vm)
        if kind in (OP_PLUG, OP_UNPLUG, OP_CONFIG_READ, OP_CONFIG_WRITE, OP_RESET, OP_SAVE, OP_RESTORE):
            if kind == OP_PLUG:
                ti = self._tinfo.get(name)
                if ti is None:
                    raise _TraceError(f"plug: unknown device type {name!r}")
                r.arg.obj = <PyObject*>ti
            if bdf is None:
                raise _TraceError(f"{op_kind.value} needs a bdf")
            packed = bdf_of(bdf)
            if packed < 0:
                r.bad |= B_BDF
            else:
                r.bdf = <uint16_t>packed
        if OP_CONFIG_READ <= kind <= OP_MMIO_WRITE:
            if not as_u64(address, &r.address):
                r.bad |= B_ADDR
            set_width(r, width)
            if kind == OP_CONFIG_WRITE or kind == OP_IO_WRITE or kind == OP_MMIO_WRITE:
                if not as_u64(value, &r.arg.value):
                    r.bad |= B_VALUE
        elif kind == OP_CREATE_VM or kind == OP_SET_ECAM_BASE:
            if ecam is None:
                r.ecam_none = 1
            elif not as_u64(ecam, &r.address):
                r.bad |= B_ECAM
        elif kind == OP_SAVE or kind == OP_SNAPSHOT:
            r.slot = self.slot_index(name)
        elif kind == OP_RESTORE or kind == OP_RESTORE_VM:
            if name:
                r.slot = self.slot_index(name) + 1
            else:
                if keep is not None:
                    keep.append(data)
                r.arg.obj = <PyObject*>data
        return 0

    cdef int define_type(self, object data) except -1:
        """Register the type a ``define_type`` definition describes (R-DT-001, R-DT-002); 0 or the
        error code its operation observes. Types persist across ``init``, as the model's do."""
        from vpcid.adapters.base import define_type

        try:
            dtype = define_type(self._types, _Op(_OpKind.DEFINE_TYPE, data=data))
        except _errors.DeviceTypeError as exc:
            self.manager.msg = NULL
            return E_BAD_TYPE
        ti = self.manager.type_info(dtype)
        if ti is None:
            return E_BAD_TYPE
        self._types[dtype.name] = dtype
        self._tinfo[dtype.name] = ti
        return 0

    def encode(self, ops):
        """Encode a sequence of ``Op`` for :meth:`run_batch`."""
        cdef Trace trace = Trace.__new__(Trace)
        cdef Py_ssize_t n = len(ops), i
        trace.recs = <OpRec*>malloc((n + 1) * sizeof(OpRec))
        if trace.recs == NULL:
            raise MemoryError()
        trace.keep = list(self._tinfo.values())
        for i in range(n):
            self.fill(ops[i], &trace.recs[i], trace.keep)
        trace.length = n
        return trace

    # ------------------------------------------------------------ execution

    cdef int run(self, OpRec* op, Res* res) except -1:
        """Perform one encoded operation; what it observes in ``res``.

        A digest is the manager's ``last``; tables are those of ``res.vm``.
        """
        cdef Manager m = self.manager
        cdef int k = op.kind, code = 0
        cdef uint64_t value = 0
        cdef Vm* vm = NULL
        res.kind = R_OK
        if OP_CONFIG_READ <= k <= OP_MMIO_WRITE:
            code = m.op_access(op, &value)
            if not code and (k == OP_CONFIG_READ or k == OP_IO_READ or k == OP_MMIO_READ):
                res.kind = R_VALUE
                res.value = value
        elif k == OP_PLUG:
            code = m.op_plug(op, <object>op.arg.obj)
        elif k == OP_SAVE or k == OP_SNAPSHOT:
            blob = m.op_save(op, &code) if k == OP_SAVE else m.op_snapshot(op, &code)
            if not code:
                self._slots[op.slot] = blob
                res.kind = R_DIGEST
        elif k == OP_RESTORE or k == OP_RESTORE_VM:
            if op.slot:
                blob = self._slots[op.slot - 1]
                if blob is None:
                    code = E_EMPTY_SLOT
            else:
                blob = <object>op.arg.obj
            if not code:
                code = m.op_restore(op, blob) if k == OP_RESTORE else m.op_restore_vm(op, blob)
        elif k == OP_UNPLUG:
            code = m.op_unplug(op)
        elif k == OP_RESET:
            code = m.op_reset(op)
        elif k == OP_RESET_VM:
            code = m.op_reset_vm(op)
        elif k == OP_CREATE_VM:
            code = m.op_create_vm(op)
        elif k == OP_SET_ECAM_BASE:
            code = m.op_set_ecam_base(op)
        elif k == OP_DESTROY_VM:
            code = m.op_destroy_vm(op)
        elif k == OP_DEFINE_TYPE:
            code = <int>op.arg.value
        elif k == OP_TABLES or k == OP_TOPOLOGY:
            code = m.vm_of(op, &vm)
            if not code:
                res.kind = R_TABLES if k == OP_TABLES else R_TOPOLOGY
                res.vm = vm
        elif k == OP_INIT:
            m.clear()
            self._slots = [None] * len(self._slots)
        if code:
            res.kind = R_ERROR
            res.value = <uint64_t>code
        return 0

    def execute(self, op):
        """Perform one operation; a rejected one is ``Observation(error=kind)`` (R-ERR-003)."""
        cdef OpRec rec
        cdef Res res
        self.fill(op, &rec, None)
        self.run(&rec, &res)
        if res.kind == R_OK:
            return _OK
        if res.kind == R_VALUE:
            return value_obs(res.value)
        if res.kind == R_ERROR:
            return _ERROR_OBS[res.value]
        if res.kind == R_DIGEST:
            return _Observation(digest=self.manager.last_digest.hex())
        if res.kind == R_TOPOLOGY:
            return _Observation(topology=self.manager.topology_rows(res.vm))
        return _Observation(tables=self.manager.rows(res.vm))

    def run_batch(self, Trace trace, bint profile=False):
        """Execute a whole encoded trace in compiled code; every observation in a :class:`BatchResult`.

        With ``profile``, ``BatchResult.profile`` maps each operation kind to
        (count, nanoseconds spent), for finding where a trace's time goes
        (read with the CPU's time-stamp counter where there is one).
        """
        cdef BatchResult out = BatchResult.__new__(BatchResult)
        cdef Manager m = self.manager
        cdef Py_ssize_t n = trace.length, i
        cdef uint8_t* kinds
        cdef uint64_t* values
        cdef Res res
        cdef OpRec* op
        cdef int k, code
        cdef uint64_t t0 = 0, t1, start_ticks = 0
        cdef int64_t start_ns = 0
        cdef uint64_t spent[OP_KINDS]
        cdef uint64_t count[OP_KINDS]
        cdef double ns_per_tick
        memset(spent, 0, sizeof(spent))
        memset(count, 0, sizeof(count))
        out._kinds = bytearray(n)
        out._values = bytearray(8 * n)
        out.trees = []
        out.length = n
        kinds = <uint8_t*>(<char*>out._kinds)
        values = <uint64_t*>(<char*>out._values)
        if profile:
            start_ns = now_ns()
            start_ticks = ticks()
        for i in range(n):
            op = &trace.recs[i]
            if profile:
                t0 = ticks()
            # the accesses directly, the rest through run()
            k = op.kind
            if k == OP_CONFIG_READ:
                code = m.op_config(op, &res.value, False)
                res.kind = R_VALUE
            elif k == OP_CONFIG_WRITE:
                code = m.op_config(op, &res.value, True)
                res.kind = R_OK
            elif k == OP_MMIO_READ or k == OP_IO_READ:
                code = m.op_space(op, &res.value, k == OP_IO_READ, False)
                res.kind = R_VALUE
            elif k == OP_MMIO_WRITE or k == OP_IO_WRITE:
                code = m.op_space(op, &res.value, k == OP_IO_WRITE, True)
                res.kind = R_OK
            else:
                code = 0
                self.run(op, &res)
            if code:
                res.kind = R_ERROR
                res.value = <uint64_t>code
            if res.kind == R_DIGEST:
                buf_reserve(&out.aux, 32)
                memcpy(out.aux.data + out.aux.len, m.last, 32)
                res.value = <uint64_t>out.aux.len
                out.aux.len += 32
            elif res.kind == R_TABLES:
                res.value = <uint64_t>m.pack_rows(res.vm, &out.aux)
            elif res.kind == R_TOPOLOGY:  # rare: kept as Python rows
                res.value = <uint64_t>len(out.trees)
                out.trees.append(m.topology_rows(res.vm))
            kinds[i] = <uint8_t>res.kind
            values[i] = res.value if res.kind != R_OK else 0
            if profile:
                t1 = ticks()
                spent[op.kind] += t1 - t0
                count[op.kind] += 1
        out.names = list(m.type_names)
        if profile:
            t1 = ticks()
            ns_per_tick = <double>(now_ns() - start_ns) / <double>(t1 - start_ticks) if t1 > start_ticks else 1.0
            out.profile = {member.value: (count[code], <uint64_t>(spent[code] * ns_per_tick))
                           for member, code in _KIND_CODES.items() if count[code]}
        return out

    def execute_all(self, ops):
        """Encode, run in one batch, and return every observation (for tests and fuzzers)."""
        return self.run_batch(self.encode(ops)).observations()


# ---------------------------------------------------------------- vfio-user: the server's hot path
#
# A vfio-user server spends most messages on REGION_READ and REGION_WRITE (spec/formats/vfio-user.md).
# ``RegionPath`` parses those messages, performs them on this manager and writes their replies, all
# in C: Python code runs once per batch of messages, or not at all while a client keeps sending
# complete, valid accesses (``RegionPath.serve``). Anything else (another command, an access the
# server would reject, a message cut short, descriptors, a custom BAR behaviour) is handed back
# untouched to the server's Python code, which answers it as it always does, so the compiled path
# changes no reply, only how fast the valid accesses are answered.

cdef extern from *:
    """
    #include <errno.h>
    #include <sys/types.h>
    #include <sys/socket.h>
    #include <sys/uio.h>
    typedef struct { Py_ssize_t n; int err; int flags; Py_ssize_t controllen; } vpcid_recv_t;
    #include <sched.h>
    /* One recvmsg into buf with room for ctrl_len bytes of control messages, retried on EINTR. For
       up to poll_ns nanoseconds it polls the socket without blocking, yielding the CPU between polls,
       before it blocks: a client that answers within that time finds the thread still running, so
       neither side pays for waking the other (a wake-up costs more than a poll, most of all on
       another CPU of a virtual machine). */
    static vpcid_recv_t vpcid_recvmsg(int fd, void* buf, size_t len, void* ctrl, size_t ctrl_len,
                                      int64_t poll_ns) {
        vpcid_recv_t r;
        struct iovec iov;
        struct msghdr m;
        ssize_t n = -1;
        int64_t until = poll_ns > 0 ? vpcid_now_ns() + poll_ns : 0;
        memset(&m, 0, sizeof m);
        iov.iov_base = buf;
        iov.iov_len = len;
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = ctrl_len ? ctrl : NULL;
        m.msg_controllen = ctrl_len;
        while (poll_ns > 0) {
            sched_yield();  /* first, so that a client on this CPU sends before the poll */
            n = recvmsg(fd, &m, MSG_DONTWAIT);
            if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) break;
            if (vpcid_now_ns() >= until) { n = -1; errno = EAGAIN; break; }
        }
        if (n < 0 && (poll_ns <= 0 || errno == EAGAIN || errno == EWOULDBLOCK))
            do { n = recvmsg(fd, &m, 0); } while (n < 0 && errno == EINTR);
        r.n = (Py_ssize_t)n;
        r.err = n < 0 ? errno : 0;
        r.flags = n < 0 ? 0 : m.msg_flags;
        r.controllen = n < 0 ? 0 : (Py_ssize_t)m.msg_controllen;
        return r;
    }
    /* The k-th control message of ctrl[0:len]: level, type, where its data starts and its length
       (clipped to the buffer, as the socket module does); 0 when there is none. */
    static int vpcid_cmsg(void* ctrl, size_t len, int k, int* level, int* type, size_t* at, size_t* dlen) {
        struct msghdr m;
        struct cmsghdr* c;
        size_t end;
        memset(&m, 0, sizeof m);
        m.msg_control = ctrl;
        m.msg_controllen = len;
        for (c = CMSG_FIRSTHDR(&m); c != NULL && k > 0; k--) c = CMSG_NXTHDR(&m, c);
        if (c == NULL) return 0;
        *level = c->cmsg_level;
        *type = c->cmsg_type;
        *at = (size_t)((unsigned char*)CMSG_DATA(c) - (unsigned char*)ctrl);
        end = (size_t)((unsigned char*)c - (unsigned char*)ctrl) + c->cmsg_len;
        if (end > len) end = len;
        *dlen = end > *at ? end - *at : 0;
        return 1;
    }
    /* A send that never blocks and never raises SIGPIPE, retried on EINTR: bytes sent, 0 when the
       socket buffer is full, -errno on an error. */
    static Py_ssize_t vpcid_send(int fd, const void* buf, size_t len) {
        ssize_t n;
        do { n = send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
        if (n >= 0) return (Py_ssize_t)n;
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -(Py_ssize_t)errno;
    }
    """
    ctypedef struct vpcid_recv_t:
        Py_ssize_t n
        int err
        int flags
        Py_ssize_t controllen
    vpcid_recv_t recv_message "vpcid_recvmsg"(int, void*, size_t, void*, size_t, int64_t) noexcept nogil
    int cmsg_at "vpcid_cmsg"(void*, size_t, int, int*, int*, size_t*, size_t*) noexcept nogil
    Py_ssize_t send_some "vpcid_send"(int, const void*, size_t) noexcept nogil


cdef enum:
    VU_HEADER = 16           # msg_id u16, command u16, message_size u32, flags u32, error u32
    VU_ACCESS = 32           # the header, then offset u64, region u32, count u32
    VU_REGION_READ = 9
    VU_REGION_WRITE = 10
    VU_TYPE_REPLY = 1
    VU_REGIONS = 9           # BAR0-5, ROM, configuration space, VGA
    VU_CONFIG = 7
    VU_READABLE = 1
    VU_WRITABLE = 2
    VU_CONTROL_ROOM = 4096   # most control-message bytes ``serve`` takes in one read

cdef int64_t VU_MAX_POLL_NS = 1000000000
"""The longest busy poll before a wait (one second)."""
cdef Py_ssize_t VU_BUFFER_KEPT = 4 << 20
"""A reply buffer larger than this is given back after the batch that needed it."""


@cython.final
cdef class ThreadLock:
    """A lock for threads, as ``threading.Lock`` is, that compiled code takes without a Python call.

    ``acquire()``, ``release()``, ``locked()`` and ``with`` work as they do on ``threading.Lock``
    (a blocking ``acquire`` lets other threads run; it cannot be interrupted by a signal). The
    server guards its manager and devices with these when the manager is compiled, so
    :class:`RegionPath` takes them at the cost of a C call.
    """

    cdef PyThread_type_lock handle
    cdef bint held

    def __cinit__(self):
        self.handle = PyThread_allocate_lock()
        if self.handle == NULL:
            raise MemoryError()

    def __dealloc__(self):
        if self.handle != NULL:
            if self.held:
                PyThread_release_lock(self.handle)
            PyThread_free_lock(self.handle)

    cdef inline void take(self) noexcept:
        if not PyThread_acquire_lock(self.handle, NOWAIT_LOCK):
            with nogil:
                PyThread_acquire_lock(self.handle, WAIT_LOCK)
        self.held = True

    cdef inline void give(self) noexcept:
        self.held = False
        PyThread_release_lock(self.handle)

    def acquire(self, bint blocking=True):
        """Take the lock (waiting for it unless ``blocking`` is false); whether it was taken."""
        if blocking:
            self.take()
            return True
        if PyThread_acquire_lock(self.handle, NOWAIT_LOCK):
            self.held = True
            return True
        return False

    def release(self):
        """Give the lock back; RuntimeError when it is not held."""
        if not self.held:
            raise RuntimeError("release unlocked lock")
        self.give()

    def locked(self):
        """Whether the lock is held."""
        return self.held

    def __enter__(self):
        self.take()
        return True

    def __exit__(self, *exc):
        self.give()
        return False


@cython.final
cdef class RegionPath:
    """REGION_READ and REGION_WRITE messages of one served device, answered in compiled code.

    ``regions``: the device's nine regions as (size, flags) pairs (flags READ 1, WRITE 2, as
    DEVICE_GET_REGION_INFO reports them); ``manager_lock`` guards the manager and ``device_lock`` the
    device; ``stop_flag``: a one-byte ``bytearray`` the server sets non-zero when it stops. A message
    is answered here only when the server's Python code would accept it as it is: a command (flags
    and error zero), its size exactly the access's, a readable or writable region, a count of 1 to
    the limit that fits the region, and a BAR without a custom behaviour. Configuration accesses go
    one dword at a time under the manager lock (R-ECAM-003); BAR accesses one page at a time under
    the device lock, then the manager lock, so no access holds either for more than a page.
    ``busy_poll_ns``: how long :meth:`serve` polls for the client's next read, yielding the CPU
    between polls, before it waits for it (0: it waits at once).
    """

    cdef Manager manager
    cdef uint32_t vm
    cdef uint16_t bdf
    cdef uint64_t size[VU_REGIONS]
    cdef uint8_t flags[VU_REGIONS]
    cdef ThreadLock manager_lock, device_lock
    cdef object stop_owner
    cdef Py_buffer stop_view
    cdef bint has_stop_view
    cdef Buf out
    cdef uint8_t control[VU_CONTROL_ROOM]
    cdef readonly int64_t busy_poll_ns

    def __init__(self, Manager manager not None, vm_id, bdf, regions, ThreadLock manager_lock not None,
                 ThreadLock device_lock not None, bytearray stop_flag not None, busy_poll_ns=0):
        cdef int packed = bdf_of(bdf)
        cdef uint64_t vm = 0, v = 0
        cdef int k
        if not as_u64(vm_id, &vm) or vm > 0xFFFFFFFF or packed < 0:
            raise _errors.InvalidArgument("RegionPath needs a VM id and a Bdf")
        regions = tuple(regions)
        if len(regions) != VU_REGIONS:
            raise _errors.InvalidArgument(f"a PCI device has {VU_REGIONS} regions, not {len(regions)}")
        if len(stop_flag) != 1:
            raise _errors.InvalidArgument("stop_flag is a one-byte bytearray")
        if not as_u64(busy_poll_ns, &v) or v > VU_MAX_POLL_NS:
            raise _errors.InvalidArgument(f"busy_poll_ns is an integer 0-{VU_MAX_POLL_NS}, not {busy_poll_ns!r}")
        for k in range(VU_REGIONS):
            size, flags = regions[k]
            if not as_u64(size, &v):
                raise _errors.InvalidArgument(f"region {k} size {size!r}")
            self.size[k] = v
            self.flags[k] = <uint8_t>(int(flags) & (VU_READABLE | VU_WRITABLE))
        self.manager = manager
        self.vm = <uint32_t>vm
        self.bdf = <uint16_t>packed
        self.manager_lock = manager_lock
        self.device_lock = device_lock
        if self.has_stop_view:
            PyBuffer_Release(&self.stop_view)
            self.has_stop_view = False
        PyObject_GetBuffer(stop_flag, &self.stop_view, PyBUF_SIMPLE)  # holding it, the flag cannot move
        self.has_stop_view = True
        self.stop_owner = stop_flag
        self.busy_poll_ns = busy_poll_ns

    def __dealloc__(self):
        if self.has_stop_view:
            PyBuffer_Release(&self.stop_view)
        free(self.out.data)

    cdef inline bint stopping(self) noexcept:
        return (<const uint8_t*>self.stop_view.buf)[0] != 0

    cdef inline void trim(self) noexcept:
        """Empty the reply buffer, giving back an unusually large one."""
        self.out.len = 0
        if self.out.cap > VU_BUFFER_KEPT:
            free(self.out.data)
            self.out.data = NULL
            self.out.cap = 0

    cdef int access(self, int region, uint64_t off, uint8_t* buf, uint32_t count, bint write) except -1:
        """One checked access; -1 with an exception when the manager raised (nothing is answered)."""
        cdef Inst* p
        cdef Vm* vm
        cdef uint64_t end = off + count
        cdef int chunk
        if region == VU_CONFIG:
            self.manager_lock.take()
            try:
                vm = <Vm*>map_get(&self.manager.vms, self.vm)
                if vm == NULL:
                    raise _errors.UnknownVm(f"no VM {self.vm}")
                self.manager.cfg_range(vm, self.bdf, off, buf, <int>count, write)
            finally:
                self.manager_lock.give()
            return 0
        while off < end:  # one page at a time (see the class)
            chunk = <int>(min(end, (off & ~(<uint64_t>(PAGE - 1))) + PAGE) - off)
            self.device_lock.take()
            self.manager_lock.take()
            try:
                vm = <Vm*>map_get(&self.manager.vms, self.vm)
                p = NULL if vm == NULL else <Inst*>map_get(&vm.cfgtab, self.bdf)
                if p == NULL:
                    raise _errors.UnknownDevice("the served device is gone")
                self.manager.region_bar_access(vm, p, region, off, buf, chunk, write)
            finally:
                self.manager_lock.give()
                self.device_lock.give()
            buf += chunk
            off += chunk
        return 0

    cdef Py_ssize_t answer_run(self, const uint8_t* msgs, Py_ssize_t n, uint64_t read_limit,
                               uint64_t write_limit, Py_ssize_t flush, Py_ssize_t* handled) except -1:
        """Answer the messages at the start of ``msgs[0:n]`` that this path takes, replies appended to
        the reply buffer, until one it does not take or the buffer holds ``flush`` bytes; the bytes
        consumed."""
        cdef Py_ssize_t pos = 0, mark
        cdef const uint8_t* h
        cdef uint32_t size, count, region
        cdef uint64_t off
        cdef uint16_t command
        cdef bint write
        cdef Inst* p
        cdef uint8_t* reply
        while n - pos >= VU_ACCESS and self.out.len < flush:
            h = msgs + pos
            command = ld16(h + 2)
            size = ld32(h + 4)
            if ld32(h + 8) != 0 or ld32(h + 12) != 0:  # flags (a command, replies wanted), error
                break
            off = ld64(h + 16)
            region = ld32(h + 24)
            count = ld32(h + 28)
            if command == VU_REGION_READ:
                write = False
                if size != VU_ACCESS or count > read_limit:
                    break
            elif command == VU_REGION_WRITE:
                write = True
                if size < VU_ACCESS or size - VU_ACCESS != count or count > write_limit:
                    break
            else:
                break
            if (region >= VU_REGIONS or count == 0 or off > self.size[region] or count > self.size[region] - off
                    or not (self.flags[region] & (VU_WRITABLE if write else VU_READABLE))):
                break
            if n - pos < size:  # cut short: the rest has not arrived
                break
            if region != VU_CONFIG:
                p = self.manager.find_inst(self.vm, self.bdf)
                if p == NULL or p.t.custom:  # a custom behaviour is Python code: the server calls it
                    break
            mark = self.out.len
            buf_reserve(&self.out, VU_ACCESS + (0 if write else count))
            reply = self.out.data + mark
            st16(reply, ld16(h))
            st16(reply + 2, command)
            st32(reply + 4, VU_ACCESS + (0 if write else count))
            st32(reply + 8, VU_TYPE_REPLY)
            st32(reply + 12, 0)
            memcpy(reply + VU_HEADER, h + VU_HEADER, VU_ACCESS - VU_HEADER)
            try:
                if write:
                    self.access(region, off, <uint8_t*>(h + VU_ACCESS), count, True)
                else:
                    self.access(region, off, reply + VU_ACCESS, count, False)
            except Exception:  # the server's own path answers it (and logs the error)
                self.out.len = mark
                break
            self.out.len = mark + VU_ACCESS + (0 if write else count)
            pos += size
            handled[0] += 1
        return pos

    def answer(self, rx, Py_ssize_t start, Py_ssize_t end, read_limit, write_limit, Py_ssize_t flush):
        """Answer the messages of ``rx[start:end]`` this path takes, from the first on:
        (bytes consumed, messages answered, their replies)."""
        cdef Py_buffer view
        cdef Py_ssize_t took, handled = 0
        cdef uint64_t rlim = 0, wlim = 0
        if not as_u64(read_limit, &rlim) or not as_u64(write_limit, &wlim):
            raise _errors.InvalidArgument("limits are non-negative integers")
        PyObject_GetBuffer(rx, &view, PyBUF_SIMPLE)
        try:
            if start < 0 or end < start or end > view.len:
                raise _errors.InvalidArgument(f"range {start}:{end} of a {view.len}-byte buffer")
            self.out.len = 0
            took = self.answer_run(<const uint8_t*>view.buf + start, end - start, rlim, wlim, flush, &handled)
            replies = PyBytes_FromStringAndSize(<const char*>self.out.data, self.out.len)
        finally:
            PyBuffer_Release(&view)
            self.trim()
        return took, handled, replies

    def serve(self, int fd, chunk, Py_ssize_t control_room, read_limit, write_limit, Py_ssize_t flush):
        """Serve the connection on ``fd`` between messages (the connection has nothing pending).

        Waits for the client's next read into ``chunk`` (with room for ``control_room`` bytes of
        control messages; polling for ``busy_poll_ns`` first, the GIL released throughout),
        answers the messages this path takes and sends their replies; repeats
        while a read is answered whole, replies sent. Returns (bytes of the last read, bytes of it
        consumed, messages answered, its control messages as ``socket.recvmsg`` gives them, its
        flags, replies not sent yet) once a read is not answered whole (0 bytes: the client closed),
        brought control messages, or left replies unsent, or the server is stopping. OSError when
        the socket fails.
        """
        cdef Py_buffer view
        cdef vpcid_recv_t got
        cdef Py_ssize_t took = 0, handled = 0, sent
        cdef uint64_t rlim = 0, wlim = 0
        cdef int k, level = 0, kind = 0
        cdef size_t at = 0, dlen = 0
        cdef void* buf
        cdef size_t room
        if not as_u64(read_limit, &rlim) or not as_u64(write_limit, &wlim):
            raise _errors.InvalidArgument("limits are non-negative integers")
        if control_room < 0 or control_room > VU_CONTROL_ROOM:
            raise _errors.InvalidArgument(f"control_room is 0-{VU_CONTROL_ROOM}")
        PyObject_GetBuffer(chunk, &view, PyBUF_WRITABLE)
        buf, room = view.buf, <size_t>view.len
        try:
            while True:
                with nogil:
                    got = recv_message(fd, buf, room, self.control, <size_t>control_room, self.busy_poll_ns)
                if got.n < 0:
                    raise OSError(got.err, _os.strerror(got.err))
                if got.n == 0 or got.controllen or got.flags or self.stopping():
                    ancdata = []
                    k = 0
                    while cmsg_at(self.control, <size_t>got.controllen, k, &level, &kind, &at, &dlen):
                        ancdata.append((level, kind, PyBytes_FromStringAndSize(<char*>self.control + at, dlen)))
                        k += 1
                    return got.n, 0, handled, ancdata, got.flags, b""
                self.out.len = 0
                took = self.answer_run(<const uint8_t*>buf, got.n, rlim, wlim, flush, &handled)
                sent = 0
                if self.out.len:
                    sent = send_some(fd, self.out.data, <size_t>self.out.len)
                    if sent < 0:
                        self.trim()
                        raise OSError(-sent, _os.strerror(-sent))
                if took < got.n or sent < self.out.len:
                    pending = PyBytes_FromStringAndSize(<char*>self.out.data + sent, self.out.len - sent)
                    self.trim()
                    return got.n, took, handled, [], 0, pending
                self.trim()
        finally:
            PyBuffer_Release(&view)
