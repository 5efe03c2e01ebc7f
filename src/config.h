/*
 * config.h: the model configuration (SPEC.md "Configuration") and how it is
 * found for a weights file (src/config.c): the `ln_config` metadata JSON,
 * or the tensor shapes, or both checked against each other; and the check
 * that a weights file holds exactly the tensors a configuration needs.
 *
 * A model loader does:
 *     ln_config_resolve(ctx, file, &cfg);      metadata and/or shapes
 *     ln_config_check_tensors(ctx, file, &cfg); every name, shape, dtype
 *
 * Kept apart from tensor_io.h because the configuration is about the model,
 * not about file formats.
 */
#ifndef LN_CONFIG_H
#define LN_CONFIG_H

#include "tensor_io.h"

#define LN_MAX_SCALES 16
/* Sanity caps, far above anything SPEC.md names, so that every tensor size
 * (ffn_mult * w * w, d_model * sum(scales)) fits comfortably in int64 and
 * a hostile file cannot make the tensor check loop for hours. */
#define LN_CONFIG_MAX_WIDTH 65536
#define LN_CONFIG_MAX_FFN_MULT 64
#define LN_CONFIG_MAX_LAYERS 1024

#define LN_CONFIG_METADATA_KEY "ln_config"

typedef struct ln_model_config {
    int d_model;
    int pos_hidden;
    int n_scales;
    int scales[LN_MAX_SCALES];
    int head_dim;
    int ffn_mult;
    int n_layers;
    float ln_eps;
} ln_model_config;

/* SPEC.md's defaults: d_model 384, pos_hidden 64, scales [64, 128, 256,
 * 384], head_dim 32, ffn_mult 4, n_layers 1, ln_eps 1e-5. */
void ln_config_default(ln_model_config *cfg);

/* Parses the `ln_config` metadata value. Keys that are absent keep SPEC's
 * default (as LNEncoder(config) does); unknown keys are ignored; a key with
 * the wrong type or an invalid value is LN_ERROR_BAD_CONFIG naming it. The
 * result is validated. */
ln_status ln_config_from_json(ln_context *ctx, const char *json, ln_model_config *cfg);

/* Writes cfg as JSON (all seven keys) into buf; LN_ERROR_INVALID_ARGUMENT
 * when it does not fit in cap bytes (with the NUL). */
ln_status ln_config_to_json(ln_context *ctx, const ln_model_config *cfg, char *buf,
                            size_t cap);

/* Reads everything but ln_eps (set to 1e-5) off the tensor shapes, by the
 * names of SPEC.md "Weights file". Looks only at the tensors it needs;
 * ln_config_check_tensors checks the rest. */
ln_status ln_config_infer(ln_context *ctx, const ln_tensor_file *file, ln_model_config *cfg);

/* Every value positive and within the caps above, 1..LN_MAX_SCALES scales,
 * each divisible by head_dim, ln_eps finite and positive:
 * LN_ERROR_BAD_CONFIG naming the first offending key otherwise. */
ln_status ln_config_validate(ln_context *ctx, const ln_model_config *cfg);

/* The configuration of a weights file: its `ln_config` metadata when
 * present, checked against what the shapes say (a contradiction is
 * LN_ERROR_BAD_CONFIG naming the key and both values); the inferred one
 * otherwise. Validated. */
ln_status ln_config_resolve(ln_context *ctx, const ln_tensor_file *file, ln_model_config *cfg);

/* Checks that `file` holds exactly the tensors of cfg, each F32 with its
 * exact shape. Missing or unexpected tensors, or a wrong dtype, are
 * LN_ERROR_BAD_FILE; otherwise a wrong shape is LN_ERROR_SHAPE_MISMATCH.
 * The message lists the first few offending names of each kind. */
ln_status ln_config_check_tensors(ln_context *ctx, const ln_tensor_file *file,
                                  const ln_model_config *cfg);

#endif
