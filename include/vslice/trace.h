/*
 * trace.h - the start path's phase clock (VSLICE_TRACE=1).
 *
 * With VSLICE_TRACE=1 in the environment, every vs_trace() call prints one
 * line to stderr: "vslice-trace PID MS LABEL", MS being CLOCK_MONOTONIC in
 * milliseconds. The processes of one start (slicectl, the launcher, PID 1,
 * the workload before its exec) share stderr, so one run gives the whole
 * time line; tests/bench/phases.py turns many runs into a phase table.
 * Without the variable a call costs one load and a branch.
 */
#ifndef VSLICE_TRACE_H
#define VSLICE_TRACE_H

#include <stdbool.h>

extern int vs_trace_on; /* -1 unknown, 0 off, 1 on */

void vs_trace_emit(const char *label);

static inline void vs_trace(const char *label)
{
	if (vs_trace_on != 0)
		vs_trace_emit(label);
}

#endif
