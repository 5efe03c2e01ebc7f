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
    p->attn_mode = 0; /* LN_ATTN_MODE_AUTO */
    p->attn_tile_q = info->is_gpu ? 32 : 16;
    p->attn_tile_k = 32;
    /* Precompute S (B n^2 floats) while it costs at most 1/8 of device
     * memory; beyond that recompute S tiles inside the attention kernel. */
    p->attn_s_budget_bytes = info->global_mem_bytes / 8;
}
