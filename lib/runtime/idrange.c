/*
 * idrange.c - claims of per-slice uid/gid ranges (see idrange.h).
 *
 * One file per claimed slot, created O_EXCL, under a flock of <dir>/.lock
 * (so reclaiming a stale slot cannot race a fresh claim of it).
 * Allocation lists the claim dir into a bitmap and takes the lowest free
 * slot, skipping any that another process claimed meanwhile. Only when every
 * slot is taken does it read the claims and reclaim those whose owner dir is
 * gone: reading all of them on every create would make a create O(slices).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "vslice/idrange.h"
#include "vslice/util.h"

const char *idrange_default_dir(void)
{
	const char *d = getenv("VSLICE_IDRANGE_DIR");
	return d && *d ? d : "/var/lib/vslice/idranges";
}

long idrange_lowest_free(const uint8_t *bitmap, uint32_t nslots)
{
	for (uint32_t i = 0; i < nslots; i++) {
		if (bitmap[i / 8] == 0xff) {
			i |= 7;
			continue;
		}
		if (!(bitmap[i / 8] & (1u << (i % 8))))
			return (long)i;
	}
	return -1;
}

static int parse_slot(const char *s, uint32_t *slot)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v >= IDRANGE_SLOTS)
		return -1;
	*slot = (uint32_t)v;
	return 0;
}

/* Mark claimed slots. With reclaim, also read each claim and unlink those
 * whose owner path no longer exists. */
static int scan_claims(const char *dir, uint8_t *bitmap, bool reclaim, struct vs_error *err)
{
	cleanup_closedir DIR *d = opendir(dir);
	if (!d)
		return vs_error_sys(err, errno, "id ranges %s: open", dir);
	struct dirent *de;
	while ((de = readdir(d))) {
		uint32_t slot;
		if (parse_slot(de->d_name, &slot) < 0)
			continue;
		cleanup_free char *owner = NULL;
		struct vs_error ignore;
		if (reclaim &&
		    vs_read_file_at(dirfd(d), de->d_name, 4096, &owner, NULL, &ignore) == 0) {
			owner[strcspn(owner, "\n")] = '\0';
			struct stat st;
			if (owner[0] == '/' && stat(owner, &st) < 0 && errno == ENOENT) {
				unlinkat(dirfd(d), de->d_name, 0);
				continue;
			}
		}
		bitmap[slot / 8] |= (uint8_t)(1u << (slot % 8));
	}
	return 0;
}

int idrange_claim(const char *dir, const char *owner, bool durable, uint32_t *base,
		  struct vs_error *err)
{
	int r = vs_mkdir_p(dir, 0700, err);
	if (r < 0)
		return r;
	/* Serialize claims: reclaiming a stale slot must not race a new claim of it. */
	cleanup_free char *lockp = vs_xasprintf("%s/.lock", dir);
	cleanup_close int lk = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (lk < 0 || flock(lk, LOCK_EX) < 0)
		return vs_error_sys(err, errno, "id ranges %s: lock", dir);
	uint8_t bitmap[IDRANGE_SLOTS / 8] = {0};
	if ((r = scan_claims(dir, bitmap, false, err)) < 0)
		return r;
	if (idrange_lowest_free(bitmap, IDRANGE_SLOTS) < 0) {
		/* All taken: only now pay for reading every claim to find those
		 * whose owner is gone (O(claims) file reads per create otherwise). */
		memset(bitmap, 0, sizeof(bitmap));
		if ((r = scan_claims(dir, bitmap, true, err)) < 0)
			return r;
	}
	/* Try free slots lowest first; a slot taken meanwhile is just skipped. */
	long slot;
	while ((slot = idrange_lowest_free(bitmap, IDRANGE_SLOTS)) >= 0) {
		bitmap[slot / 8] |= (uint8_t)(1u << (slot % 8));
		cleanup_free char *path = vs_xasprintf("%s/%ld", dir, slot);
		cleanup_close int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0) {
			if (errno == EEXIST)
				continue;
			return vs_error_sys(err, errno, "id range claim %s", path);
		}
		cleanup_free char *line = vs_xasprintf("%s\n", owner);
		if (vs_write_all(fd, line, strlen(line)) < 0 || (durable && fsync(fd) < 0)) {
			int e = errno;
			unlink(path);
			return vs_error_sys(err, e, "id range claim %s: write", path);
		}
		*base = IDRANGE_FIRST + (uint32_t)slot * IDRANGE_SIZE;
		return 0;
	}
	return vs_error_set(err, ENOSPC, "id ranges %s: all %u ranges are in use", dir,
			    IDRANGE_SLOTS);
}

int idrange_release(const char *dir, const char *owner, uint32_t base, struct vs_error *err)
{
	if (base < IDRANGE_FIRST || (base - IDRANGE_FIRST) % IDRANGE_SIZE)
		return vs_error_set(err, EINVAL, "id range %u: not a slice range", base);
	uint32_t slot = (base - IDRANGE_FIRST) / IDRANGE_SIZE;
	cleanup_free char *path = vs_xasprintf("%s/%u", dir, slot);
	cleanup_free char *cur = NULL;
	struct vs_error ignore;
	if (vs_read_file(path, 4096, &cur, NULL, &ignore) < 0)
		return 0;
	cur[strcspn(cur, "\n")] = '\0';
	if (strcmp(cur, owner) != 0)
		return 0; /* someone else's now: not ours to release */
	if (unlink(path) < 0 && errno != ENOENT)
		return vs_error_sys(err, errno, "id range claim %s: unlink", path);
	return 0;
}

int idrange_transfer(const char *dir, const char *old_owner, const char *new_owner, uint32_t base,
		     bool durable, struct vs_error *err)
{
	if (base < IDRANGE_FIRST || (base - IDRANGE_FIRST) % IDRANGE_SIZE ||
	    (base - IDRANGE_FIRST) / IDRANGE_SIZE >= IDRANGE_SLOTS)
		return vs_error_set(err, EINVAL, "id range %u: not a slice range", base);
	cleanup_free char *lockp = vs_xasprintf("%s/.lock", dir);
	cleanup_close int lk = open(lockp, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (lk < 0 || flock(lk, LOCK_EX) < 0)
		return vs_error_sys(err, errno, "id ranges %s: lock", dir);
	if (!idrange_owned(dir, old_owner, base))
		return vs_error_set(err, EPERM, "id range %u: not claimed by %s", base, old_owner);
	cleanup_free char *path = vs_xasprintf("%s/%u", dir, (base - IDRANGE_FIRST) / IDRANGE_SIZE);
	/* In place, under the lock: a replacement would be a new inode, which
	 * costs on a journal-less ext4. Only this slot's owner reads it. */
	cleanup_free char *line = vs_xasprintf("%s\n", new_owner);
	cleanup_close int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	size_t len = strlen(line);
	if (fd < 0 || pwrite(fd, line, len, 0) != (ssize_t)len || ftruncate(fd, (off_t)len) < 0 ||
	    (durable && fsync(fd) < 0))
		return vs_error_sys(err, errno, "id range claim %s: write", path);
	return 0;
}

bool idrange_owned(const char *dir, const char *owner, uint32_t base)
{
	if (base < IDRANGE_FIRST || (base - IDRANGE_FIRST) % IDRANGE_SIZE ||
	    (base - IDRANGE_FIRST) / IDRANGE_SIZE >= IDRANGE_SLOTS)
		return false;
	cleanup_free char *path = vs_xasprintf("%s/%u", dir, (base - IDRANGE_FIRST) / IDRANGE_SIZE);
	cleanup_free char *cur = NULL;
	struct vs_error ignore;
	if (vs_read_file(path, 4096, &cur, NULL, &ignore) < 0)
		return false;
	cur[strcspn(cur, "\n")] = '\0';
	return strcmp(cur, owner) == 0;
}

int idrange_release_owner(const char *dir, const char *owner, struct vs_error *err)
{
	cleanup_free char *lockp = vs_xasprintf("%s/.lock", dir);
	cleanup_close int lk = open(lockp, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (lk < 0)
		return errno == ENOENT ? 0 : vs_error_sys(err, errno, "id ranges %s: lock", dir);
	if (flock(lk, LOCK_EX) < 0)
		return vs_error_sys(err, errno, "id ranges %s: lock", dir);
	cleanup_closedir DIR *d = opendir(dir);
	if (!d)
		return vs_error_sys(err, errno, "id ranges %s: open", dir);
	struct dirent *de;
	while ((de = readdir(d))) {
		uint32_t slot;
		cleanup_free char *cur = NULL;
		struct vs_error ignore;
		if (parse_slot(de->d_name, &slot) < 0 ||
		    vs_read_file_at(dirfd(d), de->d_name, 4096, &cur, NULL, &ignore) < 0)
			continue;
		cur[strcspn(cur, "\n")] = '\0';
		if (strcmp(cur, owner) == 0 && unlinkat(dirfd(d), de->d_name, 0) < 0 &&
		    errno != ENOENT)
			return vs_error_sys(err, errno, "id range claim %s/%s: unlink", dir,
					    de->d_name);
	}
	return 0;
}
