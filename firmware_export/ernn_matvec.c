/* The int8 matrix-vector products of the recurrent layers: the weight layout and the vectors are
 * described in ernn_internal.h. Three kernels, one per target, compute ernn_dot4, the same integers
 * (tests/test_bench_mcu.py and tools/bench/mcu.py run the first two on emulated cores against the
 * simulation, bit for bit):
 *   __ARM_FEATURE_DSP (Cortex-M4, M7, M33 with DSP...): SMLAD, two multiply-accumulates an instruction;
 *   ARMv6-M (Cortex-M0, M0+, M1) with gcc or clang: 4 rows in registers, 3 instructions a weight;
 *   any other target (the host): the same 4-row loop in plain C. */
#include "ernn_internal.h"

#if defined(__ARM_FEATURE_DSP) && !defined(__ARM_BIG_ENDIAN)
#define ERNN_DOT_DSP 1
#include <arm_acle.h>
#include <string.h>

/* The halfword lanes of bytes 1 and 3: UXTB16 with its rotation (gcc 12 does not fuse a rotate into it). */
static inline int32_t ernn_uxtb16_ror8(uint32_t w)
{
#if defined(__GNUC__) && !defined(__clang__)
    int32_t r;
    __asm("uxtb16 %0, %1, ror #8" : "=r"(r) : "r"(w));
    return r;
#else
    return __uxtb16(__ror(w, 8));
#endif
}

/* acc[i] += row i of the 4-row block at p times v, over `blocks` column blocks. */
static inline void ernn_dot4(const uint8_t *p, const int32_t *v, int32_t blocks, uint32_t *acc)
{
    int32_t a0 = ernn_s32(acc[0]), a1 = ernn_s32(acc[1]), a2 = ernn_s32(acc[2]), a3 = ernn_s32(acc[3]);
    for (; blocks > 0; --blocks, p += 16, v += 2) {
        const int32_t x02 = v[0], x13 = v[1];
        uint32_t w0, w1, w2, w3;
        memcpy(&w0, p, 4); /* one LDR (the Cortex-M4 loads unaligned words) */
        memcpy(&w1, p + 4, 4);
        memcpy(&w2, p + 8, 4);
        memcpy(&w3, p + 12, 4);
        a0 = __smlad(__uxtb16(w0), x02, a0);
        a0 = __smlad(ernn_uxtb16_ror8(w0), x13, a0);
        a1 = __smlad(__uxtb16(w1), x02, a1);
        a1 = __smlad(ernn_uxtb16_ror8(w1), x13, a1);
        a2 = __smlad(__uxtb16(w2), x02, a2);
        a2 = __smlad(ernn_uxtb16_ror8(w2), x13, a2);
        a3 = __smlad(__uxtb16(w3), x02, a3);
        a3 = __smlad(ernn_uxtb16_ror8(w3), x13, a3);
    }
    acc[0] = (uint32_t)a0;
    acc[1] = (uint32_t)a1;
    acc[2] = (uint32_t)a2;
    acc[3] = (uint32_t)a3;
}
#elif defined(__ARM_ARCH_6M__) && defined(__GNUC__) && !defined(__ARM_BIG_ENDIAN)
/* Thumb-1 has 8 low registers and gcc spends an extra MOV per product on them (measured), so this
 * loop is written out: per column, LDR of v[k], then per row LDRB, MULS, ADD (ADD takes any
 * register: the accumulators may live in high registers). Not inlined: in a function of its own
 * the registers the loop needs are free at every optimization level. gcc -Os leaves the high
 * registers unused on Thumb-1, and clang's "r" means a low one there: too few for 4 rows, so
 * these take two passes of 2 rows. */
#define ERNN_ROW(i, j) "ldrb %[t], [%[p], #4*" #i "+" #j "]\n\tmuls %[t], %[x]\n\tadd %[a" #i "], %[t]\n\t"
#define ERNN_LOOP(column)                                                                            \
    __asm(".syntax unified\n"                                                                        \
          "1:\n\t" column(0, 0) column(1, 4) column(2, 8) column(3, 12)                             \
          "adds %[p], #16\n\t"                                                                       \
          "adds %[v], #16\n\t"                                                                       \
          "cmp %[v], %[end]\n\t"                                                                     \
          "bne 1b"                                                                                   \
          : ERNN_OUTPUTS, [x] "=&l"(x), [t] "=&l"(t), [p] "+l"(p), [v] "+l"(v)                       \
          : [end] "r"(end)                                                                           \
          : "cc", "memory")
__attribute__((noinline)) static void ernn_dot4(const uint8_t *p, const int32_t *v, int32_t blocks, uint32_t *acc)
{
    uint32_t a0 = acc[0], a1 = acc[1], x, t;
    const int32_t *const end = v + 4 * blocks;
    if (blocks <= 0) return;
#if !defined(__OPTIMIZE_SIZE__) && !defined(__clang__)
    {
        uint32_t a2 = acc[2], a3 = acc[3];
#define ERNN_COLUMN(j, vo) "ldr %[x], [%[v], #" #vo "]\n\t" ERNN_ROW(0, j) ERNN_ROW(1, j) ERNN_ROW(2, j) ERNN_ROW(3, j)
#define ERNN_OUTPUTS [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3)
        ERNN_LOOP(ERNN_COLUMN);
#undef ERNN_OUTPUTS
#undef ERNN_COLUMN
        acc[2] = a2;
        acc[3] = a3;
    }
#else
    {
        const uint8_t *const p0 = p;
        const int32_t *const v0 = v;
        uint32_t a2 = acc[2], a3 = acc[3];
#define ERNN_COLUMN(j, vo) "ldr %[x], [%[v], #" #vo "]\n\t" ERNN_ROW(0, j) ERNN_ROW(1, j)
#define ERNN_OUTPUTS [a0] "+r"(a0), [a1] "+r"(a1)
        ERNN_LOOP(ERNN_COLUMN); /* rows 0, 1 */
        acc[0] = a0;
        acc[1] = a1;
        a0 = a2;
        a1 = a3;
        p = p0 + 8;
        v = v0;
        ERNN_LOOP(ERNN_COLUMN); /* rows 2, 3 */
#undef ERNN_OUTPUTS
#undef ERNN_COLUMN
        acc[2] = a0;
        acc[3] = a1;
        return;
    }
#endif
    acc[0] = a0;
    acc[1] = a1;
}
#undef ERNN_LOOP
#undef ERNN_ROW
#else
static inline void ernn_dot4(const uint8_t *p, const int32_t *v, int32_t blocks, uint32_t *acc)
{
    uint32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    int32_t j;
    for (; blocks > 0; --blocks, p += 16, v += 4) {
        for (j = 0; j < 4; ++j) {
            const uint32_t x = (uint32_t)v[j];
            a0 += p[j] * x;
            a1 += p[4 + j] * x;
            a2 += p[8 + j] * x;
            a3 += p[12 + j] * x;
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}
#endif

/* Column block (c0, c1, c2, c3) into the kernels' vector at v: with the DSP extension two words,
 * lanes (c0, c2) and (c1, c3), the earlier column in the low halfword (see ernn_internal.h); else
 * four int32. Each c in [-32768, 32767]. */
#ifdef ERNN_DOT_DSP
#define ERNN_BLOCK_WORDS 2
static inline void ernn_put_block(int32_t *v, int32_t c0, int32_t c1, int32_t c2, int32_t c3)
{
    uint32_t *word = (uint32_t *)(void *)v;
    word[0] = ((uint32_t)c0 & 0xFFFFu) | ((uint32_t)c2 << 16);
    word[1] = ((uint32_t)c1 & 0xFFFFu) | ((uint32_t)c3 << 16);
}
#else
#define ERNN_BLOCK_WORDS 4
static inline void ernn_put_block(int32_t *v, int32_t c0, int32_t c1, int32_t c2, int32_t c3)
{
    v[0] = c0;
    v[1] = c1;
    v[2] = c2;
    v[3] = c3;
}
#endif

/* A whole column block a pass (the conv step expands taps x in_size columns a step, so this loop is
 * hot); the source type is picked once, outside the loop, and the last n % 4 columns, padded with
 * zeros to a block, are written once after it. */
int32_t ernn_expand(const int8_t *x, const int32_t *x32, int32_t n, int32_t *v)
{
    const int32_t whole = n & ~3; /* the columns in full blocks */
    int32_t tail[4] = {0, 0, 0, 0};
    int32_t k, sum = 0;
    if (x) {
        for (k = 0; k < whole; k += 4, v += ERNN_BLOCK_WORDS) {
            const int32_t c0 = x[k], c1 = x[k + 1], c2 = x[k + 2], c3 = x[k + 3];
            sum += c0 + c1 + c2 + c3;
            ernn_put_block(v, c0, c1, c2, c3);
        }
        for (; k < n; ++k) tail[k & 3] = x[k];
    } else {
        for (k = 0; k < whole; k += 4, v += ERNN_BLOCK_WORDS) {
            const int32_t c0 = x32[k], c1 = x32[k + 1], c2 = x32[k + 2], c3 = x32[k + 3];
            sum += c0 + c1 + c2 + c3;
            ernn_put_block(v, c0, c1, c2, c3);
        }
        for (; k < n; ++k) tail[k & 3] = x32[k];
    }
    if (whole < n) {
        sum += tail[0] + tail[1] + tail[2] + tail[3];
        ernn_put_block(v, tail[0], tail[1], tail[2], tail[3]);
    }
    return sum;
}

void ernn_rows4(const uint8_t *t, const int32_t *v, int32_t sum, int32_t blocks, const int32_t *b, int32_t r,
                int32_t *acc)
{
    uint32_t a[4];
    int32_t i;
    for (i = 0; i < 4; ++i) a[i] = (b ? (uint32_t)b[r + i] : 0u) - 128u * (uint32_t)sum;
    ernn_dot4(t + (size_t)4 * (size_t)r * (size_t)blocks, v, blocks, a);
    for (i = 0; i < 4; ++i) acc[i] = ernn_s32(a[i]);
}

void ernn_preact_q(const ernn_layer *L, const int32_t *vx, int32_t sx, const int32_t *vh, int32_t sh, int32_t *pre,
                   int32_t rows)
{
    const int32_t cx = ERNN_PAD4(L->in_size) / 4, ch = ERNN_PAD4(L->units) / 4;
    int32_t r, i;
    for (r = 0; r < rows; r += 4) {
        int32_t ax[4], ah[4];
        ernn_rows4(L->wt, vx, sx, cx, L->bx, r, ax);
        ernn_rows4(L->ut, vh, sh, ch, L->bh, r, ah);
        for (i = 0; i < 4; ++i)
            pre[r + i] = ernn_sat32((int64_t)ernn_requant(ax[i], L->mx[r + i], L->nx[r + i])
                                    + ernn_requant(ah[i], L->mh[r + i], L->nh[r + i]));
    }
}

#if defined(__ARM_ARCH_6M__) /* out of line here too: see ernn_internal.h */
#ifdef __GNUC__
__attribute__((noinline))
#endif
int32_t ernn_requant(int32_t x, int32_t m, int32_t n)
{
    return ernn_requant_inline(x, m, n);
}
#endif
