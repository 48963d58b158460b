/* f_unlinked_shared: an unlinked-but-open file keeps its owner, mode and
 * times, and every fd on it (two separate opens, a dup) still refers to one
 * inode after restore. */
#include <fcntl.h>
#include <sys/stat.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	char path[] = "/tmp/ckpt-uls-XXXXXX";
	int a = mkstemp(path);
	CHECK(a >= 0, "mkstemp");
	CHECK(write(a, "hello world", 11) == 11, "write");
	int b = open(path, O_RDONLY); /* a second open file on the same inode */
	int c = dup(a);
	CHECK(b >= 0 && c >= 0, "open/dup");
	/* another owner where we may (root), else our own ids */
	uid_t uid = 1234;
	gid_t gid = 2345;
	if (fchown(a, uid, gid) != 0) {
		uid = geteuid();
		gid = getegid();
		CHECK(fchown(a, uid, gid) == 0, "fchown");
	}
	CHECK(fchmod(a, 0640) == 0, "fchmod");
	struct timespec ts[2] = { { 1000000000, 500 }, { 1100000000, 250000 } };
	CHECK(futimens(a, ts) == 0, "futimens");
	CHECK(unlink(path) == 0, "unlink");
	lseek(b, 6, SEEK_SET);
	struct stat want;
	CHECK(fstat(a, &want) == 0, "fstat");
	test_daemon();
	test_waitsig();
	struct stat sa, sb, sc;
	CHECK(fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && fstat(c, &sc) == 0, "fstat");
	CHECK(sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev && sa.st_ino == sc.st_ino,
	      "fds on one unlinked file are now different files");
	CHECK(sa.st_uid == uid && sa.st_gid == gid, "owner %d:%d, want %d:%d", (int)sa.st_uid, (int)sa.st_gid, (int)uid, (int)gid);
	CHECK((sa.st_mode & 07777) == 0640, "mode %o", sa.st_mode & 07777);
	CHECK(sa.st_mtim.tv_sec == 1100000000 && sa.st_mtim.tv_nsec == 250000, "mtime %ld.%ld",
	      (long)sa.st_mtim.tv_sec, sa.st_mtim.tv_nsec);
	CHECK(sa.st_atim.tv_sec == 1000000000 && sa.st_atim.tv_nsec == 500, "atime %ld.%ld",
	      (long)sa.st_atim.tv_sec, sa.st_atim.tv_nsec);
	CHECK(sa.st_nlink == 0 && sa.st_size == 11, "nlink %d size %ld", (int)sa.st_nlink, (long)sa.st_size);
	char buf[16] = "";
	CHECK(read(b, buf, 5) == 5 && !memcmp(buf, "world", 5), "second open's offset/content");
	CHECK(lseek(a, 0, SEEK_CUR) == 11 && lseek(c, 0, SEEK_CUR) == 11, "offset");
	CHECK(write(c, "!", 1) == 1 && pread(b, buf, 12, 0) == 12 && !memcmp(buf, "hello world!", 12),
	      "write through one fd not seen through the other");
	pass();
}
