/*
 * params.c: the per-device kernel parameter table's defaults. ln-tune
 * replaces these per device; until then a device gets values that are
 * legal everywhere and sensible for its kind.
 */
#include "internal.h"

void ln_params_defaults(const ln_device_info *info, ln_params *p)
{
    /* PoCL reports a 4096 work-item maximum, but its work-groups are loops
     * on one core: 64 keeps compile time and per-group overhead low. */
    p->wg_layernorm = info->is_gpu ? 128 : 64;
    p->wg_elementwise = info->is_gpu ? 256 : 64;
    p->attn_mode = LN_ATTENTION_AUTO;
    /* Fused attention tiles (queries x keys per step). On PoCL (2-core
     * Xeon, n = 1024, 12 heads of 32) every choice in 16..64 x 16..64 ran
     * within 10% of 16 x 32; 16 x 128 was 1.7x slower. The GPU value is
     * untested; src/attention.c shrinks the query tile until the kernel
     * fits the device's local memory (NVIDIA's 48 KiB: 8 at width 384). */
    p->attn_tile_q = info->is_gpu ? 32 : 16;
    p->attn_tile_k = 32;
    /* Precompute S (B n^2 floats) while it costs at most 1/8 of device
     * memory; beyond that recompute S tiles inside the attention kernel. */
    p->attn_s_budget_bytes = info->global_mem_bytes / 8;
}
