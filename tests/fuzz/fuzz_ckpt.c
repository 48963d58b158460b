/*
 * fuzz_ckpt.c - libFuzzer target for the checkpoint stream parser: a
 * checkpoint may arrive from another node, so ckpt_image_parse must reject
 * anything malformed without crashing, reading out of bounds or leaking.
 *
 * Two modes, picked by the first byte: raw (the bytes as they come), and
 * framed (the rest is cut into sections "u16 type, u16 len, payload" that
 * are re-encoded with valid CRCs and a valid END record), so the fuzzer
 * reaches the record and cross-reference checks behind the checksums.
 * A parsed image also goes through the session/process group planner
 * (pstree.c), which the restore runs on the same records. The same bytes
 * are then read as a stream from an fd (ckpt_image_read_fd + the page
 * rounds run by run, as a streaming restore consumes them).
 * Seed: tests/fuzz/seeds/ckpt/ (small valid streams written by
 * tests/unit/test_ckpt_format.c with CKPT_WRITE_SEED=... and, for the
 * fd-level records incl. a lock and a memfd, CKPT_WRITE_SEED_FD=...).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../lib/checkpoint/ckpt_int.h"
#include "vslice/ckpt.h"

static void parse(const uint8_t *data, size_t size)
{
	struct ckpt_image *img = NULL;
	struct vs_error err;
	if (ckpt_image_parse(data, size, &img, &err) == 0) {
		(void)ckpt_image_root_pid(img);
		size_t len;
		(void)ckpt_image_extra(img, &len);
		/* the restore plans sessions/groups from these records */
		struct ck_pnode *n = calloc(img->procs.n, sizeof(*n));
		for (size_t i = 0; i < img->procs.n; i++)
			n[i] = (struct ck_pnode){img->procs.v[i].pid, img->procs.v[i].ppid,
						 img->procs.v[i].sid, img->procs.v[i].pgid,
						 img->procs.v[i].state == CK_ZOMBIE};
		struct ck_pstep *plan = NULL;
		size_t np = 0;
		if (ck_pstree_plan(n, img->procs.n, ckpt_image_root_pid(img), 0, 0, &plan, &np,
				   NULL, &err) == 0)
			free(plan);
		free(n);
		ckpt_image_free(img);
	}
}

/* As a streaming restore reads it: records from the fd, then every page
 * run in pieces up to the verified END record. */
static void stream(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz-ckpt", MFD_CLOEXEC);
	if (fd < 0)
		return;
	if (write(fd, data, size) != (ssize_t)size || lseek(fd, 0, SEEK_SET) != 0) {
		close(fd);
		return;
	}
	struct ckpt_image *img = NULL;
	struct vs_error err;
	if (ckpt_image_read_fd(fd, &img, &err) == 0) {
		uint8_t piece[4096];
		for (;;) {
			struct ck_pages pg;
			uint32_t round;
			if (ck_stream_next_pages(img, &pg, &round, &err) <= 0)
				break;
			int r = 0;
			for (uint64_t done = 0; r == 0 && done < pg.len; done += sizeof(piece)) {
				size_t k = pg.len - done < sizeof(piece) ? pg.len - done : sizeof(piece);
				r = ck_stream_payload(img, piece, k, &err);
			}
			if (r < 0 || ck_stream_section_end(img, &err) < 0)
				break;
		}
		ckpt_image_free(img);
	}
	close(fd);
}

static void put(uint8_t **out, size_t *n, const void *p, size_t len)
{
	*out = realloc(*out, *n + len);
	memcpy(*out + *n, p, len);
	*n += len;
}

static void section(uint8_t **out, size_t *n, uint32_t type, const uint8_t *p, uint64_t len,
		    uint32_t *nsec, uint32_t *chain)
{
	uint8_t h[16] = {0};
	memcpy(h, &type, 4);
	memcpy(h + 8, &len, 8);
	uint32_t crc = ck_crc32c(ck_crc32c(0, h, 16), p, len);
	put(out, n, h, 16);
	put(out, n, p, len);
	put(out, n, &crc, 4);
	(*nsec)++;
	*chain = ck_crc32c(*chain, &crc, 4);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0 || !(data[0] & 1)) {
		parse(data, size);
		stream(data, size);
		return 0;
	}
	uint8_t *out = NULL;
	size_t n = 0;
	uint32_t v = CK_VERSION, fl = 0, nsec = 0, chain = 0;
	put(&out, &n, CK_MAGIC, 8);
	put(&out, &n, &v, 4);
	put(&out, &n, &fl, 4);
	size_t off = 1;
	while (off + 4 <= size) {
		uint16_t type, len;
		memcpy(&type, data + off, 2);
		memcpy(&len, data + off + 2, 2);
		off += 4;
		if (len > size - off)
			len = (uint16_t)(size - off);
		/* 0..16 are the sections up to CK_SEC_ROUND (version 3), 17..20
		 * stand for CK_SEC_LOCK, CK_SEC_INOTIFY, CK_SEC_INET and CK_SEC_SYSV */
		static const uint32_t extra[] = { CK_SEC_LOCK, CK_SEC_INOTIFY, CK_SEC_INET, CK_SEC_SYSV };
		uint32_t t = type % 21u;
		t = t >= 17 ? extra[t - 17] : t;
		section(&out, &n, t, data + off, len, &nsec, &chain);
		off += len;
	}
	struct ck_end e = {.nr_sections = nsec, .chain_crc = chain, .total_len = n};
	section(&out, &n, CK_SEC_END, (const uint8_t *)&e, sizeof(e), &nsec, &chain);
	parse(out, n);
	stream(out, n);
	free(out);
	return 0;
}
