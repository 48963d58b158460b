/*
 * store_int.h - what the store's files (lib/registry/store*.c) share and
 * nobody else sees: the SQLite statement helpers. Everything above the
 * store goes through store.h.
 */
#ifndef VSLICE_REGISTRY_STORE_INT_H
#define VSLICE_REGISTRY_STORE_INT_H

#include <sqlite3.h>

#include "registry_int.h"
#include "store.h"

static inline void store_stmt_finalize(sqlite3_stmt **s)
{
	if (*s)
		sqlite3_finalize(*s);
}
#define cleanup_stmt __attribute__((cleanup(store_stmt_finalize)))

/* A prepared statement, or NULL with err set. */
sqlite3_stmt *store_prep(struct registry *reg, const char *sql, struct vs_error *err);
/* err from the connection's last error, naming what failed; returns < 0. */
int store_db_error(struct registry *reg, const char *what, struct vs_error *err);
/* Run a statement that returns no rows; < 0 on error. */
int store_exec(struct registry *reg, const char *sql, struct vs_error *err);
/* Run the one-text-parameter query sql: 1 if it returns a row, 0 if not. */
int store_row_exists(struct registry *reg, const char *sql, const char *arg, struct vs_error *err);

/* Column i as text ("" for NULL) / a copy of it. */
static inline const char *store_col_text(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	return t ? (const char *)t : "";
}
char *store_col_dup(sqlite3_stmt *s, int i);
/* Append a copy of str to the array *v of *n strings. */
void store_names_add(char ***v, size_t *n, const char *str);
/* Append one zeroed element (elem bytes) to the array *v of *n (room for
 * *cap); returns it. */
void *store_push(void **v, size_t *cap, size_t *n, size_t elem);
#endif
