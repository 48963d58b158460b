/* m_memfd: a memfd (memfd_create) comes back as one memfd with its name,
 * size, content, seals, mode and owner; its fds (a dup, a second open file
 * through /proc/self/fd, read-only) still share one inode, and each open
 * file keeps its offset and flags. */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	int a = memfd_create("ckpt-memfd name", MFD_ALLOW_SEALING);
	CHECK(a >= 0, "memfd_create");
	CHECK(write(a, "hello memfd", 11) == 11, "write");
	CHECK(ftruncate(a, 8192) == 0, "ftruncate");
	CHECK(pwrite(a, "tail", 4, 8188) == 4, "pwrite");
	char p[64];
	snprintf(p, sizeof(p), "/proc/self/fd/%d", a);
	int b = open(p, O_RDONLY); /* a second open file on the same inode */
	int c = dup(a);
	CHECK(b >= 0 && c >= 0, "open/dup");
	CHECK(fchmod(a, 0640) == 0, "fchmod");
	CHECK(fcntl(a, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0, "F_ADD_SEALS");
	lseek(b, 6, SEEK_SET);
	struct stat want;
	CHECK(fstat(a, &want) == 0, "fstat");
	/* an empty memfd without fd-level data, sealed against sealing */
	int e = memfd_create("empty", 0);
	CHECK(e >= 0, "memfd_create empty");
	/* a sparse one: 1 GiB with one byte of data in the middle */
	int sp = memfd_create("sparse", 0);
	CHECK(sp >= 0 && ftruncate(sp, 1 << 30) == 0 && pwrite(sp, "x", 1, 512 << 20) == 1, "sparse");
	test_daemon();
	test_waitsig();
	struct stat sa, sb, sc;
	CHECK(fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && fstat(c, &sc) == 0, "fstat");
	CHECK(sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev && sa.st_ino == sc.st_ino,
	      "fds on one memfd are now different files");
	char link[128] = "";
	CHECK(readlink(p, link, sizeof(link) - 1) > 0, "readlink");
	CHECK(strcmp(link, "/memfd:ckpt-memfd name (deleted)") == 0, "name: %s", link);
	CHECK(sa.st_size == 8192, "size %ld", (long)sa.st_size);
	CHECK((sa.st_mode & 07777) == 0640, "mode %o", sa.st_mode & 07777);
	CHECK(sa.st_uid == want.st_uid && sa.st_gid == want.st_gid, "owner %d:%d, want %d:%d",
	      (int)sa.st_uid, (int)sa.st_gid, (int)want.st_uid, (int)want.st_gid);
	int seals = fcntl(a, F_GET_SEALS);
	CHECK(seals == (F_SEAL_SHRINK | F_SEAL_GROW), "seals %#x", seals);
	CHECK(ftruncate(a, 100) < 0 && errno == EPERM, "F_SEAL_SHRINK not enforced");
	CHECK(fcntl(e, F_GET_SEALS) == F_SEAL_SEAL, "empty memfd: seals %#x", fcntl(e, F_GET_SEALS));
	struct stat se;
	CHECK(fstat(e, &se) == 0 && se.st_size == 0, "empty memfd: size");
	struct stat ss;
	char x = 0, z = 1;
	CHECK(fstat(sp, &ss) == 0 && ss.st_size == 1 << 30, "sparse memfd: size");
	CHECK(pread(sp, &x, 1, 512 << 20) == 1 && x == 'x' && pread(sp, &z, 1, 4096) == 1 && z == 0,
	      "sparse memfd: content");
	CHECK(ss.st_blocks < 1024, "sparse memfd: %ld blocks allocated", (long)ss.st_blocks);
	char buf[16] = "";
	CHECK(read(b, buf, 5) == 5 && !memcmp(buf, "memfd", 5), "second open's offset/content");
	CHECK(pread(a, buf, 4, 8188) == 4 && !memcmp(buf, "tail", 4), "content at the end");
	CHECK((fcntl(b, F_GETFL) & O_ACCMODE) == O_RDONLY, "second open not read-only");
	CHECK(write(b, "x", 1) < 0, "read-only open writable");
	CHECK(lseek(a, 0, SEEK_CUR) == 11 && lseek(c, 0, SEEK_CUR) == 11, "offset");
	CHECK(write(c, "!", 1) == 1 && pread(b, buf, 12, 0) == 12 && !memcmp(buf, "hello memfd!", 12),
	      "write through one fd not seen through the other");
	pass();
}
