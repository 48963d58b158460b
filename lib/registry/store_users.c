/*
 * store_users.c - the users and tokens tables.
 *
 * A token is stored by its SHA-256 only, with its role, its user (user
 * tokens) and the node name it holds (node tokens, once bound). A node name
 * held by a token stays with it until an admin releases it
 * (store_node_release), so a fresh node token cannot take over a node.
 */
#include <errno.h>
#include <string.h>

#include "store_int.h"
#include "vslice/util.h"

static enum registry_role role_from_name(const char *s)
{
	if (strcmp(s, "admin") == 0)
		return REGISTRY_ROLE_ADMIN;
	if (strcmp(s, "user") == 0)
		return REGISTRY_ROLE_USER;
	if (strcmp(s, "node") == 0)
		return REGISTRY_ROLE_NODE;
	return REGISTRY_ROLE_NONE;
}

int store_user_exists(struct registry *reg, const char *name, struct vs_error *err)
{
	return store_row_exists(reg, "SELECT 1 FROM users WHERE name = ?", name, err);
}

int store_user_add(struct registry *reg, const char *name, struct vs_error *err)
{
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg, "INSERT INTO users(name, created) VALUES(?, ?)", err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 2, reg_now());
	if (sqlite3_step(s) != SQLITE_DONE)
		return store_db_error(reg, "insert user", err);
	return 0;
}

int store_token_add(struct registry *reg, const char *token, enum registry_role role,
		    const char *user, const char *node, struct vs_error *err)
{
	char hash[65];
	registry_token_hash(token, hash);
	cleanup_stmt sqlite3_stmt *s = store_prep(
	    reg, "INSERT INTO tokens(hash, role, user, node, created) VALUES(?, ?, ?, ?, ?)", err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, hash, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, registry_role_name(role), -1, SQLITE_STATIC);
	if (user)
		sqlite3_bind_text(s, 3, user, -1, SQLITE_TRANSIENT);
	if (node)
		sqlite3_bind_text(s, 4, node, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 5, reg_now());
	if (sqlite3_step(s) != SQLITE_DONE)
		return store_db_error(reg, "insert token", err);
	return 0;
}

int store_token_lookup(struct registry *reg, const char *token, enum registry_role *role,
		       char **user, char **node, struct vs_error *err)
{
	*role = REGISTRY_ROLE_NONE;
	*user = *node = NULL;
	enum registry_role prefix = registry_token_role(token);
	if (prefix == REGISTRY_ROLE_NONE)
		return vs_error_set(err, ENOENT, "token: not a vslice token");
	/* Looked up by its SHA-256: the lookup's timing depends on the hash,
	 * never on how much of the secret matched. */
	char hash[65];
	registry_token_hash(token, hash);
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg, "SELECT role, user, node FROM tokens WHERE hash = ?", err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, hash, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		return vs_error_set(err, ENOENT, "token: unknown token");
	if (rc != SQLITE_ROW)
		return store_db_error(reg, "token lookup", err);
	enum registry_role r = role_from_name(store_col_text(s, 0));
	if (r != prefix)
		return vs_error_set(err, ENOENT, "token: unknown token");
	*role = r;
	if (sqlite3_column_type(s, 1) != SQLITE_NULL)
		*user = store_col_dup(s, 1);
	if (sqlite3_column_type(s, 2) != SQLITE_NULL)
		*node = store_col_dup(s, 2);
	return 0;
}

int store_token_bind(struct registry *reg, const char *token, const char *node,
		     struct vs_error *err)
{
	char hash[65];
	registry_token_hash(token, hash);
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg, "UPDATE tokens SET node = ? WHERE hash = ? AND node IS NULL", err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, node, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, hash, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) != SQLITE_DONE)
		return store_db_error(reg, "bind token", err);
	return 0;
}

int store_node_held(struct registry *reg, const char *node, struct vs_error *err)
{
	return store_row_exists(reg, "SELECT 1 FROM tokens WHERE node = ? LIMIT 1", node, err);
}

int store_node_release(struct registry *reg, const char *node, struct vs_error *err)
{
	cleanup_stmt sqlite3_stmt *s = store_prep(reg, "DELETE FROM tokens WHERE node = ?", err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, node, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) != SQLITE_DONE)
		return store_db_error(reg, "release node", err);
	return sqlite3_changes(reg->store.db);
}
