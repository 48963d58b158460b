/*
 * registry_int.h - what the registry's files share: the registry object, the
 * store (store.h: all SQL) and the request handlers' entry points.
 *
 * Locking: one mutex (reg->lock) guards the SQLite connection, the revision,
 * the in-memory last_seen table and the long-poll waiters. Handlers take it
 * for the duration of one short transaction and never block while holding it.
 */
#ifndef VSLICE_REGISTRY_INT_H
#define VSLICE_REGISTRY_INT_H

#include <jansson.h>
#include <sys/socket.h>
#include <nettle/sha2.h>
#include <pthread.h>
#include <stdbool.h>

#include "store.h"
#include "tickets.h"
#include "vslice/httpd.h"
#include "vslice/registry.h"

#define REG_BODY_MAX (32u << 20) /* JSON request bodies */
#define REG_LOG_MAX  (16u << 20) /* per sliver */
#define REG_WAIT_MAX 300
/* api_images.c: image uploads at once, in all and per user */
#define REG_IMAGE_UPLOADS	   4
#define REG_IMAGE_UPLOADS_PER_USER 2
#define REG_WAIT_DEFAULT	   30
/* limits.c: a connection silent this long before its request's headers are
 * in is closed (server.c raises it once a known token came); memory a token /
 * the registry may hold in request bodies and answers built in memory. */
#define REG_HEADER_TIMEOUT 10
#define REG_ADDR_DEFAULT   64
#define REG_TOKEN_MEM	   (96u << 20)
#define REG_TOTAL_MEM	   (384u << 20)
#define REG_ADDR_BUCKETS   1024
/* Long-polls a commit resumes whose answers are being built at once; the
 * rest wait their turn (httpd.h, resume_batch), so answers go out while
 * later ones are built. */
#ifndef REG_RESUME_BATCH
#define REG_RESUME_BATCH 16
#endif

struct lim_addr;
struct lim_token;
struct reg_limits {
	pthread_mutex_t lock;
	unsigned conn_cap, headroom, per_addr; /* per_addr 0: no per-address cap */
	unsigned conns, ntrusted;
	unsigned long long refused;
	struct lim_addr *addrs[REG_ADDR_BUCKETS];
	struct lim_token *tokens;
	size_t mem, mem_peak, token_cap, total_cap;
};

void lim_init(struct reg_limits *l, unsigned per_addr);
void lim_set_conn_cap(struct reg_limits *l, unsigned conn_cap);
void lim_free(struct reg_limits *l);
/* May a connection from sa be accepted now? */
bool lim_accept(struct reg_limits *l, const struct sockaddr *sa);
/* Count a connection from sa open; returns its address entry (for
 * lim_conn_close and lim_trust; NULL for an unknown family). */
void *lim_conn_open(struct reg_limits *l, const struct sockaddr *sa);
void lim_conn_close(struct reg_limits *l, void *entry);
/* The address of entry presented a node or admin token: trusted from now. */
void lim_trust(struct reg_limits *l, void *entry);
/* Charge n bytes held in memory to token (NULL: anonymous). 0: charged;
 * -1: the token would exceed its share; -2: the registry its total. force:
 * always charged. */
int lim_mem_charge(struct reg_limits *l, const char *token, size_t n, bool force);
void lim_mem_release(struct reg_limits *l, const char *token, size_t n);

struct node_seen {
	char *name;
	long long last_seen; /* unix seconds */
	bool unknown;	     /* state the timer last saw, to bump the revision on change */
};

struct reg_request;
struct waiter {
	struct reg_request *req; /* parked (httpd_suspend) */
	long long index;
	long long deadline; /* reg_now_ms() */
	struct waiter *next;
};

struct registry {
	struct store store; /* store*.c */
	pthread_mutex_t lock;
	pthread_cond_t cond; /* wakes the timer thread on stop */
	long long revision;
	long long started;
	unsigned heartbeat, lost_after, threads;
	unsigned migration_timeout;	/* seconds without a report before an abort */
	unsigned char transfer_key[32]; /* api_migrations.c: tokens are HMACs of ids */
	struct ticket_table tickets;	/* api_tickets.c: remote verbs' tickets (in memory) */

	struct node_seen *seen;
	size_t nseen, seen_cap;

	struct waiter *waiters;
	struct httpd *http; /* lib/net's server (server.c) */
	pthread_t timer;
	bool timer_running, stopping;

	unsigned long long requests[6]; /* by status class 1xx..5xx, [0] other */
	struct reg_limits lim;

	/* api_images.c: image uploads in flight, who makes each ("" for a
	 * free place) and the bytes they declared (their disk is reserved
	 * until they end) */
	unsigned image_uploads;
	char image_uploaders[REG_IMAGE_UPLOADS][64];
	unsigned long long image_reserved;
};

#include "vslice/json.h" /* cleanup_json */

long long reg_now(void);
/* Monotonic milliseconds, for long-poll deadlines. */
long long reg_now_ms(void);
/* Unix milliseconds (the migrations' times). */
long long reg_wall_ms(void);

/* registry.c: nodes' liveness (in memory). The store's calls are in
 * store.h; every one expects reg->lock held. */
long long reg_last_seen(struct registry *reg, const char *node);
void reg_touch(struct registry *reg, const char *node, long long now);
bool reg_node_ready(struct registry *reg, const char *node, long long now);
/* Is a node last seen then ready now (seen within lost_after heartbeats)? */
bool reg_seen_ready(struct registry *reg, long long last_seen, long long now);

/* server.c */
void reg_wake(struct registry *reg);
void reg_count_status(struct registry *reg, unsigned status);
/* The request's query argument / header (case-insensitive name); NULL when
 * absent. Valid while the request lives. */
const char *reg_query(struct reg_request *req, const char *key);
const char *reg_header(struct reg_request *req, const char *name);

/* api.c: one request, run with the whole body (JSON) or after an upload. */
struct reg_request;
struct reg_answer {
	unsigned status;
	char *body; /* owned */
	size_t len;
	const char *content_type;
	int fd;		     /* >= 0: send this file instead of body (owned) */
	long long fd_offset; /* ... from this offset */
	uint64_t fd_len;     /* ... this many bytes (when fd_len_set; else to its end) */
	bool fd_len_set;
	char *headers[4][2]; /* owned name/value pairs */
};

enum reg_upload { REG_UPLOAD_NONE = 0, REG_UPLOAD_LOG, REG_UPLOAD_RESULT, REG_UPLOAD_IMAGE };

/* One HTTP request, from its headers (server.c's on_begin) to on_done. */
struct reg_request {
	struct registry *reg;
	struct httpd_request *http;
	char *method, *url;

	enum registry_role role;
	char *user, *node, *token; /* token's user / bound node */

	/* JSON bodies: httpd's (collected up to REG_BODY_MAX), for api.c */
	const char *body;
	size_t len;
	bool too_big;	/* an upload's write failed */
	size_t charged; /* bytes charged to token (limits.c) */

	/* streamed uploads */
	enum reg_upload upload;
	int fd;
	char *tmp_path;
	struct sha256_ctx sha;
	unsigned long long received, limit;
	char *slice, *unode, *upath, *want_sha;
	long long offset;
	unsigned mode;

	/* long-poll: set by the handler when the answer may wait */
	long long wait_index;	/* -1: no long-poll */
	long long answered_rev; /* the revision the last dispatch answered at */
	long long deadline;
	bool suspended;
	bool polled;		/* parked at least once */
	struct waiter *waiting; /* while parked: its entry in reg->waiters */
};

/* api.c */
void api_dispatch(struct reg_request *req, struct reg_answer *a);
/* 0: the upload is accepted (req->fd open); < 0: a holds the answer. */
int api_upload_begin(struct reg_request *req, struct reg_answer *a);
void api_upload_finish(struct reg_request *req, struct reg_answer *a);
/* Fill a with {"error": msg}. */
void api_error(struct reg_answer *a, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* api.c: what the handlers' files (api.c, api_migrations.c) share. Each
 * expects reg->lock held. */
/* Answer j (consumed) as JSON with status. */
void api_answer_json(struct reg_answer *a, unsigned status, json_t *j);
/* Add header name: value (value malloc'd, taken; dropped when the answer has
 * no room left). */
void api_answer_header(struct reg_answer *a, const char *name, char *value);
/* The X-Vslice-Index header: the revision this answer was built at. */
void api_answer_index(struct reg_request *req, struct reg_answer *a);
/* A store error: 503 when SQLite was busy, 500 otherwise. */
void api_db_fail(struct reg_answer *a, struct vs_error *err);
/* The JSON body, which must be an object (empty_ok: none is {}); NULL with
 * a holding 400 otherwise. */
json_t *api_body_object(struct reg_request *req, struct reg_answer *a, bool empty_ok);
/* ?index=N&wait=D: makes the answer a long-poll. false: a holds 400. */
bool api_long_poll_args(struct reg_request *req, struct reg_answer *a);
/* Is req's role one of those allowed? false: a holds 403. */
bool api_need_role(struct reg_request *req, struct reg_answer *a, bool admin, bool user, bool node);
/* false: a holds 400 naming the bad name. */
bool api_check_slice_name(struct reg_answer *a, const char *s);
bool api_check_node_name(struct reg_answer *a, const char *s);
/* Stored JSON text as a value (null if it does not parse). */
json_t *api_text_json(const char *text);
/* Every node as the scheduler sees it (the store's node cache with each
 * node's liveness); names, labels and images borrowed from the cache,
 * caller frees the array only. */
struct sched_node;
int api_sched_nodes(struct registry *reg, struct sched_node **out, size_t *nout,
		    struct vs_error *err);

/* api_tickets.c (docs/cluster-api.md, "Tickets") */
void api_ticket_create(struct reg_request *req, struct reg_answer *a, const char *slice);
void api_ticket_redeem(struct reg_request *req, struct reg_answer *a);
/* Is slice visible to req as its own (owner or admin)? false: a holds 404
 * (another user's slice looks absent: no oracle). */
bool api_slice_own(struct reg_request *req, struct reg_answer *a, const char *slice);

/* api_migrations.c (docs/cluster-api.md, "Migrations") */
void api_migration_create(struct reg_request *req, struct reg_answer *a, const char *slice);
void api_migrations_list(struct reg_request *req, struct reg_answer *a);
void api_migration_get(struct reg_request *req, struct reg_answer *a, const char *id);
void api_migration_report(struct reg_request *req, struct reg_answer *a, const char *id);
/* Add to a node's assignments (the array of {"slice", ...} entries): the
 * source's entry gains "migrate_out", the target gets an entry with
 * "migrate_in", for each running migration node takes part in. */
int api_migration_assignments(struct registry *reg, const char *node, json_t *slivers,
			      struct vs_error *err);
/* Is node the target of slice's running migration? (May it read the slice.) */
bool api_migration_target_of(struct registry *reg, const char *slice, const char *node);
/* n bytes from getrandom (aborts when the kernel has no entropy to give:
 * nothing safe could be handed out); b as 2n lowercase hex digits + NUL.
 * Shared with tickets.c. */
void reg_random_bytes(void *buf, size_t len);
void reg_hex(const unsigned char *b, size_t n, char *out);
/* api_images.c (docs/cluster-api.md, "Images"): GET/DELETE /v1/images... */
void api_images_dispatch(struct reg_request *req, struct reg_answer *a, const char *method,
			 char *const *seg, size_t nseg);
/* PUT /v1/images/NAME, streamed: as api_upload_begin / api_upload_finish;
 * api_image_upload_done when the request ends however it ends. */
bool api_image_is_upload(const char *method, const char *url);
int api_image_upload_begin(struct reg_request *req, struct reg_answer *a);
void api_image_upload_finish(struct reg_request *req, struct reg_answer *a);
void api_image_upload_done(struct reg_request *req);
/* The scheduler's view of image: when the registry holds it, every node
 * can fetch it (sched_node.image_fetchable). */
int api_images_sched(struct registry *reg, const char *image, struct sched_node *nodes, size_t n,
		     struct vs_error *err);
/* Load (or create) the key transfer tokens are derived from: <db>.d/transfer.key. */
int mig_key_load(struct registry *reg, struct vs_error *err);
/* The timer, once a second: abort running migrations whose nodes went
 * silent (no report for reg->migration_timeout s) or lost. */
void mig_tick(struct registry *reg);
#endif
