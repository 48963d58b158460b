/*
 * units.h - parsing of the user-facing units: sizes, durations, cpus, names.
 * All parsers are strict: the whole string must match, no overflow, no sign.
 */
#ifndef VSLICE_UNITS_H
#define VSLICE_UNITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vslice/error.h"

/* "512K", "256M", "1G", "2T", "4096" (bytes), binary units; "256MiB"/"256mb" also taken. */
int vs_parse_size(const char *s, uint64_t *out, struct vs_error *err);
/* "30s", "10m", "2h", "14d", "1w"; a bare number is seconds. Result in seconds. */
int vs_parse_duration(const char *s, uint64_t *out_secs, struct vs_error *err);
/* "0.5", "2", "1.25" -> milli-cpus (500, 2000, 1250); at most 3 decimals; > 0. */
int vs_parse_cpus(const char *s, uint64_t *out_millis, struct vs_error *err);
/* Slice / image names: [a-z][a-z0-9_-]{0,62}. */
bool vs_name_valid(const char *s);
/* Node names: [A-Za-z0-9][A-Za-z0-9._-]{0,62} (host names fit). */
bool vs_node_name_valid(const char *s);
int vs_check_name(const char *what, const char *s, struct vs_error *err);

/* Copy s into buf with control characters (newlines...) shown as '?', so
 * an error that echoes user input stays one line. */
const char *vs_printable(const char *s, char *buf, size_t len);
/* Format bytes as "256M" style (exact binary unit when possible) into buf. */
const char *vs_format_size(uint64_t bytes, char *buf, size_t len);
/* Format seconds as "14d", "2h", "1m30s" style into buf. */
const char *vs_format_duration(uint64_t secs, char *buf, size_t len);

#endif
