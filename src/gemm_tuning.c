/*
 * gemm_tuning.c: CLBlast's GEMM parameters as ln-tune stores them: the
 * kernels and parameter names (CLBlast 1.5's Xgemm, XgemmDirect and
 * GemmRoutine), the validity check of a set (CLBlast's own tuner
 * constraints plus the device's limits), handing a set to
 * CLBlastOverrideParameters, the process-wide record of what was handed
 * over, and applying a tuning file's sets when a context is created.
 *
 * Why validate here: CLBlastOverrideParameters checks only that every name
 * is given. A set that breaks a constraint (say MWG = 60 with MDIMC = 8,
 * VWM = 4) is compiled (about 40 s on the 2-core PoCL CI machine) and then
 * computes wrong results or fails at launch; an invalid set in a tuning
 * file must cost a warning, not a wrong GEMM.
 *
 * Also the one compiler flag CLBlast's kernels need on PoCL
 * (ln_clblast_prepare_compiler).
 */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"

#include <clblast_c.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const ln_clblast_kernel ln_clblast_kernels[LN_CB_COUNT] = {
    {"clblast-Xgemm",
     "Xgemm",
     16,
     {"GEMMK", "KREG", "KWG", "KWI", "MDIMA", "MDIMC", "MWG", "NDIMB", "NDIMC", "NWG", "SA", "SB",
      "STRM", "STRN", "VWM", "VWN"}},
    {"clblast-XgemmDirect",
     "XgemmDirect",
     10,
     {"KWID", "MDIMAD", "MDIMCD", "NDIMBD", "NDIMCD", "PADA", "PADB", "VWMD", "VWND", "WGD"}},
    {"clblast-GemmRoutine", "GemmRoutine", 1, {"XGEMM_MIN_INDIRECT_SIZE"}},
};

int ln_clblast_kernel_of(const char *entry_kernel)
{
    for (int k = 0; k < LN_CB_COUNT; k++)
        if (strcmp(entry_kernel, ln_clblast_kernels[k].entry) == 0)
            return k;
    return -1;
}

int ln_clblast_param_of(int kernel, const char *param)
{
    if (kernel < 0 || kernel >= LN_CB_COUNT)
        return -1;
    for (int i = 0; i < ln_clblast_kernels[kernel].count; i++)
        if (strcmp(param, ln_clblast_kernels[kernel].params[i]) == 0)
            return i;
    return -1;
}

/* --------------------------------------------------------------- validity */

static bool vector_width(long long v)
{
    return v == 1 || v == 2 || v == 4 || v == 8 || v == 16; /* the kernels' #if branches */
}

static bool flag(long long v)
{
    return v == 0 || v == 1;
}

/* Tile sizes and thread counts beyond these are no GEMM kernel's. */
#define CB_MAX_TILE 1024
/* XGEMM_MIN_INDIRECT_SIZE is cubed in 64 bits by CLBlast: 2^20 cubed is
 * 2^60, and 2^16 (ln-tune's "always direct") already exceeds every m n k
 * below 2^48. */
#define CB_MAX_INDIRECT ((long long)1 << 20)

/* a % b == 0 with b > 0 */
static bool divides(long long b, long long a)
{
    return b > 0 && a % b == 0;
}

#define CHECK(cond, ...)                                                                        \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            ln_why_set(why, why_cap, __VA_ARGS__);                                                 \
            return false;                                                                       \
        }                                                                                       \
    } while (0)

static bool xgemm_valid(const long long *v, const ln_device_info *info, size_t wg_cap, char *why,
                        size_t why_cap)
{
    const long long GEMMK = v[0], KREG = v[1], KWG = v[2], KWI = v[3], MDIMA = v[4],
                    MDIMC = v[5], MWG = v[6], NDIMB = v[7], NDIMC = v[8], NWG = v[9], SA = v[10],
                    SB = v[11], STRM = v[12], STRN = v[13], VWM = v[14], VWN = v[15];
    CHECK(flag(GEMMK) && flag(SA) && flag(SB) && flag(STRM) && flag(STRN),
          "GEMMK, SA, SB, STRM and STRN must be 0 or 1");
    CHECK(vector_width(VWM) && vector_width(VWN), "VWM and VWN must be 1, 2, 4, 8 or 16");
    for (int i = 1; i < 10; i++)
        CHECK(v[i] >= 1 && v[i] <= CB_MAX_TILE, "%s = %lld is outside 1..%d",
              ln_clblast_kernels[LN_CB_XGEMM].params[i], v[i], CB_MAX_TILE);
    /* CLBlast's tuner (src/tuning/kernels/xgemm.hpp) constraints: */
    CHECK(divides(KWI, KWG), "KWG %% KWI != 0");                 /* unrolled k loop */
    CHECK(divides(MDIMC * VWM, MWG), "MWG %% (MDIMC * VWM) != 0"); /* integer MWI */
    CHECK(divides(NDIMC * VWN, NWG), "NWG %% (NDIMC * VWN) != 0"); /* integer NWI */
    CHECK(divides(MDIMA * VWM, MWG), "MWG %% (MDIMA * VWM) != 0"); /* integer MWIA */
    CHECK(divides(NDIMB * VWN, NWG), "NWG %% (NDIMB * VWN) != 0"); /* integer NWIB */
    if (GEMMK == 0) {
        /* KWG a multiple of KDIMA = MDIMC NDIMC / MDIMA and of KDIMB */
        CHECK(divides(MDIMA, MDIMC * NDIMC) && divides(NDIMB, MDIMC * NDIMC),
              "MDIMC * NDIMC is not a multiple of MDIMA and NDIMB");
        CHECK(divides(MDIMC * NDIMC / MDIMA, KWG) && divides(MDIMC * NDIMC / NDIMB, KWG),
              "KWG is not a multiple of MDIMC * NDIMC / MDIMA and / NDIMB");
    } else {
        /* The 2-D register tiling kernel (GEMMK 1, CLBlast's variations
         * 11 and 12): no local memory, KREG a multiple of VWN. */
        CHECK(divides(VWN, KREG), "GEMMK 1: KREG %% VWN != 0");
        CHECK(MDIMC == MDIMA && NDIMC == NDIMB, "GEMMK 1: MDIMA must equal MDIMC, NDIMB NDIMC");
        CHECK(SA == 0 && SB == 0, "GEMMK 1 uses no local memory: SA and SB must be 0");
        /* Two limits of CLBlast 1.5 that its tuner never meets, found on
         * PoCL against float64: GEMMK 1 tiles C's columns by MWG but
         * CLBlast pads n to NWG, so MWG != NWG garbles a 100x70 or
         * 128x192 product; and its strided-batched routine pads k to KWG,
         * not KWG KREG, so KREG > 1 reads past k (inf at k = 100). */
        CHECK(MWG == NWG, "GEMMK 1: MWG must equal NWG (CLBlast pads m and n to each)");
        CHECK(KREG == 1, "GEMMK 1: KREG must be 1 (CLBlast's batched GEMM pads k to KWG only)");
    }
    CHECK((size_t)(MDIMC * NDIMC) <= wg_cap, "work-group MDIMC * NDIMC = %lld exceeds %zu",
          MDIMC * NDIMC, wg_cap);
    const unsigned long long local = 4ull * (unsigned long long)(SA * KWG * MWG + SB * KWG * NWG);
    CHECK(local <= info->local_mem_bytes, "needs %llu bytes of local memory, the device has %llu",
          local, (unsigned long long)info->local_mem_bytes);
    return true;
}

static bool xgemm_direct_valid(const long long *v, const ln_device_info *info, size_t wg_cap,
                               char *why, size_t why_cap)
{
    const long long KWID = v[0], MDIMAD = v[1], MDIMCD = v[2], NDIMBD = v[3], NDIMCD = v[4],
                    PADA = v[5], PADB = v[6], VWMD = v[7], VWND = v[8], WGD = v[9];
    CHECK(flag(PADA) && flag(PADB), "PADA and PADB must be 0 or 1");
    CHECK(vector_width(VWMD) && vector_width(VWND), "VWMD and VWND must be 1, 2, 4, 8 or 16");
    static const int sizes[] = {0, 1, 2, 3, 4, 9};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        CHECK(v[sizes[i]] >= 1 && v[sizes[i]] <= CB_MAX_TILE, "%s = %lld is outside 1..%d",
              ln_clblast_kernels[LN_CB_XGEMM_DIRECT].params[sizes[i]], v[sizes[i]], CB_MAX_TILE);
    /* CLBlast's tuner (src/tuning/kernels/xgemm_direct.hpp) constraints: */
    CHECK(divides(KWID, WGD), "WGD %% KWID != 0");
    CHECK(divides(MDIMCD * VWMD, WGD), "WGD %% (MDIMCD * VWMD) != 0");
    CHECK(divides(NDIMCD * VWND, WGD), "WGD %% (NDIMCD * VWND) != 0");
    CHECK(divides(MDIMAD * VWMD, WGD), "WGD %% (MDIMAD * VWMD) != 0");
    CHECK(divides(NDIMBD * VWND, WGD), "WGD %% (NDIMBD * VWND) != 0");
    CHECK(divides(MDIMAD, MDIMCD * NDIMCD) && divides(NDIMBD, MDIMCD * NDIMCD),
          "MDIMCD * NDIMCD is not a multiple of MDIMAD and NDIMBD");
    CHECK(divides(MDIMCD * NDIMCD / MDIMAD, WGD) && divides(MDIMCD * NDIMCD / NDIMBD, WGD),
          "WGD is not a multiple of MDIMCD * NDIMCD / MDIMAD and / NDIMBD");
    CHECK((size_t)(MDIMCD * NDIMCD) <= wg_cap, "work-group MDIMCD * NDIMCD = %lld exceeds %zu",
          MDIMCD * NDIMCD, wg_cap);
    const unsigned long long local =
        4ull * (unsigned long long)(WGD * (WGD + PADA) + WGD * (WGD + PADB));
    CHECK(local <= info->local_mem_bytes, "needs %llu bytes of local memory, the device has %llu",
          local, (unsigned long long)info->local_mem_bytes);
    return true;
}

bool ln_clblast_params_valid(int kernel, const long long *v, const ln_device_info *info,
                             size_t wg_cap, char *why, size_t why_cap)
{
    if (kernel < 0 || kernel >= LN_CB_COUNT) {
        ln_why_set(why, why_cap, "unknown CLBlast kernel %d", kernel);
        return false;
    }
    const ln_clblast_kernel *K = &ln_clblast_kernels[kernel];
    for (int i = 0; i < K->count; i++)
        CHECK(v[i] >= 0, "%s: %s is missing (CLBlast wants every parameter)", K->name,
              K->params[i]);
    if (info->max_work_group_size && wg_cap > info->max_work_group_size)
        wg_cap = info->max_work_group_size;
    bool ok;
    if (kernel == LN_CB_XGEMM)
        ok = xgemm_valid(v, info, wg_cap, why, why_cap);
    else if (kernel == LN_CB_XGEMM_DIRECT)
        ok = xgemm_direct_valid(v, info, wg_cap, why, why_cap);
    else {
        CHECK(v[0] <= CB_MAX_INDIRECT, "XGEMM_MIN_INDIRECT_SIZE = %lld exceeds %lld", v[0],
              CB_MAX_INDIRECT);
        ok = true;
    }
    if (!ok && why && why_cap) {
        char inner[256];
        snprintf(inner, sizeof(inner), "%s", why);
        ln_why_set(why, why_cap, "%s: %s", K->name, inner);
    }
    return ok;
}

#undef CHECK

/* -------------------------------------------- overriding, process-wide */

/* CLBlast's override outlives every context: one record per device. */
#define CB_MAX_DEVICES 16
typedef struct cb_record {
    cl_device_id device;
    bool set[LN_CB_COUNT];
    long long value[LN_CB_COUNT][LN_CB_MAX_PARAMS];
} cb_record;
static cb_record records[CB_MAX_DEVICES];
static int record_count;
static unsigned long override_generation;
static pthread_mutex_t record_lock = PTHREAD_MUTEX_INITIALIZER;

unsigned long ln_clblast_override_generation(void)
{
    pthread_mutex_lock(&record_lock);
    unsigned long g = override_generation;
    pthread_mutex_unlock(&record_lock);
    return g;
}

bool ln_clblast_override(cl_device_id device, const ln_device_info *info, int kernel,
                         const long long *v, char *why, size_t why_cap)
{
    if (!ln_clblast_params_valid(kernel, v, info, SIZE_MAX, why, why_cap))
        return false;
    const ln_clblast_kernel *K = &ln_clblast_kernels[kernel];
    size_t values[LN_CB_MAX_PARAMS];
    const char *names[LN_CB_MAX_PARAMS]; /* CLBlast's C API takes them non-const */
    for (int i = 0; i < K->count; i++) {
        values[i] = (size_t)v[i];
        names[i] = K->params[i];
    }
    pthread_mutex_lock(&record_lock);
    CLBlastStatusCode code = CLBlastOverrideParameters(device, K->name, CLBlastPrecisionSingle,
                                                       (size_t)K->count, names, values);
    if (code == CLBlastSuccess) {
        override_generation++;
        cb_record *r = NULL;
        for (int i = 0; i < record_count && !r; i++)
            if (records[i].device == device)
                r = &records[i];
        if (!r && record_count < CB_MAX_DEVICES) {
            r = &records[record_count++];
            memset(r, 0, sizeof(*r));
            r->device = device;
        }
        if (r) {
            r->set[kernel] = true;
            memcpy(r->value[kernel], v, sizeof(long long) * (size_t)K->count);
        }
    }
    pthread_mutex_unlock(&record_lock);
    if (code != CLBlastSuccess) {
        ln_why_set(why, why_cap, "%s: CLBlastOverrideParameters returned %d", K->name, (int)code);
        return false;
    }
    return true;
}

int ln_clblast_overrides_on(cl_device_id device, long long *min_indirect)
{
    int count = 0;
    if (min_indirect)
        *min_indirect = -1;
    pthread_mutex_lock(&record_lock);
    for (int i = 0; i < record_count; i++)
        if (records[i].device == device) {
            for (int k = 0; k < LN_CB_COUNT; k++)
                count += records[i].set[k];
            if (min_indirect && records[i].set[LN_CB_GEMM_ROUTINE])
                *min_indirect = records[i].value[LN_CB_GEMM_ROUTINE][0];
        }
    pthread_mutex_unlock(&record_lock);
    return count;
}

/* ------------------------------------------------------ context creation */

/* Why: CLBlast's Xgemm multiplies-adds its M-vectors component by component
 * unless USE_VECTOR_MAD is 1, and no CLBlast API sets that (it is not a
 * database parameter). PoCL's LLVM then rebuilds the 16 scalar FMAs of a
 * float16 as 4-wide FMAs with extracts, inserts and stack spills around
 * them; given whole-vector MADs it emits 16-wide AVX-512 FMAs. Measured on
 * the 2-core Skylake-AVX512 machine (PoCL 3.1, CLBlast 1.5.3, 2048x1536x384,
 * Xgemm with VWM 16, 128x48 tiles in local memory, one run each): 37.7
 * GFLOP/s without, 63.5 with (and 39 -> 49 with 64x16 tiles in
 * registers); CLBlast's default parameters (VWM <= 4) ran the same either
 * way. PoCL reads POCL_EXTRA_BUILD_FLAGS at each clBuildProgram, and
 * CLBlast builds its programs at its first call, so setting it when the
 * first PoCL context is created is in time. A value the user set is left
 * alone; setenv runs once (pthread_once) so ln-cl never races itself on
 * the environment. LN_POCL_VECTOR_MAD=0 leaves the variable unset: PoCL
 * 3.1 leaks its copy of the options (about 200 bytes per successful
 * clBuildProgram) whenever POCL_EXTRA_BUILD_FLAGS is set (clBuildProgram.c
 * frees it only on the error path), which LeakSanitizer and valgrind
 * report (CI's valgrind step opts out; its asan build ignores allocations
 * inside clBuildProgram, src/program.c). */
static void set_pocl_flags(void)
{
    const char *opt = getenv("LN_POCL_VECTOR_MAD");
    if (opt && strcmp(opt, "0") == 0)
        return;
    if (!getenv("POCL_EXTRA_BUILD_FLAGS"))
        setenv("POCL_EXTRA_BUILD_FLAGS", "-DUSE_VECTOR_MAD=1", 0);
}

void ln_clblast_prepare_compiler(const ln_device_info *info)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (strstr(info->platform_name, "Portable Computing Language"))
        pthread_once(&once, set_pocl_flags);
}

void ln_clblast_apply(ln_context *ctx, const ln_tune_table *t, int *applied, int *rejected)
{
    *applied = 0;
    *rejected = 0;
    for (int k = 0; k < LN_CB_COUNT; k++) {
        const ln_tune_entry *best = NULL;
        for (size_t i = 0; i < t->count; i++) {
            const ln_tune_entry *e = &t->entries[i];
            if (strcmp(e->kernel, ln_clblast_kernels[k].entry) != 0)
                continue;
            /* Like ln_tune_apply: the largest shape's run saw the most work. */
            if (!best || e->n > best->n || (e->n == best->n && e->batch > best->batch))
                best = e;
        }
        if (!best)
            continue;
        bool empty = true;
        for (int i = 0; i < ln_clblast_kernels[k].count; i++)
            empty &= best->clblast[i] < 0;
        if (empty)
            continue; /* ln-tune measured CLBlast's own choice as the best */
        char why[400];
        if (ln_clblast_override(ctx->device, &ctx->info, k, best->clblast, why, sizeof(why))) {
            (*applied)++;
        } else {
            (*rejected)++;
            fprintf(stderr,
                    "ln-cl: warning: ignoring the %s entry of tuning file %s: %s; CLBlast "
                    "keeps its own parameters for it\n",
                    ln_clblast_kernels[k].entry, ctx->cache ? ctx->cache->tuning_path : "",
                    why);
        }
    }
}
