/*
 * migration.c - a migration's state machine at the registry, as a pure
 * function from (state, who reports what) to a verdict and the new state
 * (registry.h; the picture is in docs/migration.md). api_migrations.c runs
 * it on every POST /v1/migrations/ID/report and writes what it decided; the
 * timer's aborts are the one move it does not make.
 *
 * The rules keep exactly one copy of a slice running:
 *   - only the source says "transferring" first: it has stopped its sliver
 *     (stopped_ms) before any byte leaves, so the target may not report
 *     "restored" before that (409), whatever it received;
 *   - "restored" from the target commits in the same step (the caller moves
 *     the sliver row in the same transaction): after it no abort is
 *     accepted (409 "committed": the source rolls forward, destroys its copy);
 *   - after an abort no commit is accepted (409 "aborted": the target drops
 *     its copy, the source restarts its own);
 *   - every report is idempotent: the same one again answers 200 and
 *     changes nothing (a node that crashed after sending may send it again).
 */
#include <string.h>

#include "vslice/registry.h"

static const char *const phase_names[] = {"prepared", "transferring", "restored", "committed",
					  "aborted"};
static const char *const report_names[] = {"transferring", "restored", "aborted", "started"};

int migration_phase_parse(const char *s)
{
	for (int i = 0; s && i < (int)(sizeof(phase_names) / sizeof(*phase_names)); i++)
		if (strcmp(s, phase_names[i]) == 0)
			return i;
	return -1;
}

const char *migration_phase_name(enum migration_phase p)
{
	return (unsigned)p < sizeof(phase_names) / sizeof(*phase_names) ? phase_names[p] : "?";
}

int migration_report_parse(const char *s)
{
	for (int i = 0; s && i < (int)(sizeof(report_names) / sizeof(*report_names)); i++)
		if (strcmp(s, report_names[i]) == 0)
			return i;
	return -1;
}

static bool running(const struct migration_state *m)
{
	return m->phase == MIGRATION_PREPARED || m->phase == MIGRATION_TRANSFERRING;
}

static long long at_or_now(long long at_ms, long long now_ms)
{
	return at_ms >= 0 ? at_ms : now_ms;
}

static long long nonneg(long long v)
{
	return v < 0 ? 0 : v;
}

static enum migration_verdict abort_step(struct migration_state *m, long long now_ms)
{
	if (m->phase == MIGRATION_ABORTED)
		return MIGRATION_SAME;
	if (!running(m))
		return MIGRATION_CONFLICT; /* committed: roll forward */
	m->phase = MIGRATION_ABORTED;
	m->updated = now_ms;
	return MIGRATION_MOVED;
}

static enum migration_verdict source_step(struct migration_state *m, enum migration_report rep,
					  long long bytes, long long at_ms, long long now_ms)
{
	switch (rep) {
	case MIGRATION_REPORT_TRANSFERRING:
		if (!running(m))
			return MIGRATION_CONFLICT;
		m->updated = now_ms;
		if (bytes >= 0)
			m->bytes = bytes;
		if (m->phase == MIGRATION_TRANSFERRING)
			return MIGRATION_PROGRESS;
		m->phase = MIGRATION_TRANSFERRING;
		m->stopped_ms = at_or_now(at_ms, now_ms);
		return MIGRATION_MOVED;
	case MIGRATION_REPORT_ABORTED:
		return abort_step(m, now_ms);
	default:
		return MIGRATION_FORBIDDEN;
	}
}

static enum migration_verdict target_step(struct migration_state *m, enum migration_report rep,
					  long long bytes, long long at_ms, long long now_ms)
{
	switch (rep) {
	case MIGRATION_REPORT_TRANSFERRING: /* receiving: a keepalive */
		if (!running(m))
			return MIGRATION_CONFLICT;
		m->updated = now_ms;
		if (bytes >= 0 && m->phase == MIGRATION_TRANSFERRING)
			m->bytes = bytes;
		return MIGRATION_PROGRESS;
	case MIGRATION_REPORT_RESTORED:
		if (m->phase == MIGRATION_COMMITTED)
			return MIGRATION_SAME;
		if (m->phase != MIGRATION_TRANSFERRING)
			return MIGRATION_CONFLICT; /* aborted, or the source never stopped */
		m->phase = MIGRATION_COMMITTED;
		m->restored_ms = at_or_now(at_ms, now_ms);
		m->committed_ms = now_ms;
		m->updated = now_ms;
		if (bytes >= 0)
			m->bytes = bytes;
		return MIGRATION_COMMIT;
	case MIGRATION_REPORT_STARTED:
		if (m->phase != MIGRATION_COMMITTED)
			return MIGRATION_CONFLICT;
		if (m->started_ms)
			return MIGRATION_SAME;
		m->started_ms = at_or_now(at_ms, now_ms);
		m->updated = now_ms;
		/* Across two clocks (source's stop, target's start): never below 0. */
		m->downtime_ms = m->stopped_ms ? nonneg(m->started_ms - m->stopped_ms) : -1;
		m->total_ms = nonneg(m->started_ms - m->created);
		return MIGRATION_MOVED;
	case MIGRATION_REPORT_ABORTED:
		return abort_step(m, now_ms);
	}
	return MIGRATION_FORBIDDEN;
}

enum migration_verdict migration_step(struct migration_state *m, enum migration_party who,
				      enum migration_report rep, long long bytes, long long at_ms,
				      long long now_ms)
{
	struct migration_state next = *m;
	enum migration_verdict v = who == MIGRATION_SOURCE
				       ? source_step(&next, rep, bytes, at_ms, now_ms)
				       : target_step(&next, rep, bytes, at_ms, now_ms);
	if (v == MIGRATION_PROGRESS || v == MIGRATION_MOVED || v == MIGRATION_COMMIT)
		*m = next;
	return v;
}
