/*
 * demo.h: the demo ln-run runs without arguments (src/cli/demo.c).
 */
#ifndef LN_DEMO_H
#define LN_DEMO_H

/* Runs the demo on the device (NULL = default); returns an exit code. */
int ln_demo_run(const char *device_spec);

#endif
