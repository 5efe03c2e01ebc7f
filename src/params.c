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
    /* One float16 per work-item lets PoCL vectorise the epilogues' GELU
     * (cl/linear.cl says by how much). GPUs keep one float per work-item,
     * the coalesced pattern, not measured against vectors there. */
    p->vec_elementwise = info->is_gpu ? 1 : 16;
    p->attn_mode = LN_ATTENTION_AUTO;
    /* Fused attention tiles (queries x keys per step). On PoCL (2-core
     * Xeon, n = 1024, 12 heads of 32) every choice in 16..64 x 16..64 ran
     * within 10% of 16 x 32; 16 x 128 was 1.7x slower. On a GPU the tiles
     * are attention_rows': 64 queries (work-items) x 32 keys, 16 KiB of
     * local memory. */
    p->attn_tile_q = info->is_gpu ? 64 : 16;
    p->attn_tile_k = 32;
    p->attn_kernel = LN_ATTENTION_KERNEL_AUTO;
    /* Precompute S while B n^2 floats take at most 128 MiB (and 1/8 of
     * device memory); the model encodes a batch in chunks of sequences
     * whose S fits that, so its memory stays bounded at any B. One
     * sequence may take up to 1/8 of device memory for its S
     * (ln_attention_resolve_mode); beyond that S tiles are recomputed
     * inside the attention kernel. */
    const uint64_t s_cap = (uint64_t)128 << 20;
    p->attn_s_budget_bytes = info->global_mem_bytes / 8 < s_cap ? info->global_mem_bytes / 8 : s_cap;
    /* The model's other buffers hold 4.7k (branch by branch) to 8.3k (every
     * branch at once) floats per row at the default widths, more than S
     * below n = 8192: chunks of at most 2^16 rows keep them to 1.2-2.2 GB
     * where S alone allowed 2^19 rows at n = 64 (17 GB). GEMMs of 2^16
     * rows already run at full speed, and every kernel's and CLBlast's
     * grid then stays far inside NVIDIA's 65535 work-groups along its
     * second and third dimensions. */
    p->chunk_rows = (size_t)1 << 16;
}
