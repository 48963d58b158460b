/*
 * busybox.c - the default image: the host's static busybox plus one relative
 * symlink per applet, and the handful of files a shell expects (/etc/passwd,
 * /etc/group, /etc/hosts, /tmp 1777 ...).
 *
 * busybox must be statically linked: the image holds nothing else, so a
 * dynamic busybox would find no loader inside the slice. We check the ELF
 * program headers for PT_INTERP instead of trusting file names.
 *
 * Symlinks are relative (usr/bin/env -> ../../bin/busybox) so they resolve
 * to the image's busybox wherever the rootfs is looked at from - inside the
 * slice and from the host alike.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "image_internal.h"
#include "vslice/util.h"

extern char **environ;

/* 1: static, 0: dynamic (has PT_INTERP), <0: not an ELF we understand. */
static int elf_is_static(int fd, const char *path, struct vs_error *err)
{
	unsigned char ident[EI_NIDENT];
	if (pread(fd, ident, sizeof(ident), 0) != (ssize_t)sizeof(ident) ||
	    memcmp(ident, ELFMAG, SELFMAG) != 0)
		return vs_error_set(err, ENOEXEC, "%s: not an ELF executable", path);
	if (ident[EI_DATA] != ELFDATA2LSB && ident[EI_DATA] != ELFDATA2MSB)
		return vs_error_set(err, ENOEXEC, "%s: unknown ELF byte order", path);
	bool swap = (ident[EI_DATA] == ELFDATA2LSB) != (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__);
	if (swap)
		return vs_error_set(err, ENOEXEC, "%s: ELF for another byte order", path);

	uint64_t phoff;
	unsigned phnum, phentsize;
	if (ident[EI_CLASS] == ELFCLASS64) {
		Elf64_Ehdr eh;
		if (pread(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh))
			return vs_error_set(err, ENOEXEC, "%s: short ELF header", path);
		phoff = eh.e_phoff;
		phnum = eh.e_phnum;
		phentsize = eh.e_phentsize;
		if (phentsize != sizeof(Elf64_Phdr))
			return vs_error_set(err, ENOEXEC, "%s: odd ELF program headers", path);
	} else if (ident[EI_CLASS] == ELFCLASS32) {
		Elf32_Ehdr eh;
		if (pread(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh))
			return vs_error_set(err, ENOEXEC, "%s: short ELF header", path);
		phoff = eh.e_phoff;
		phnum = eh.e_phnum;
		phentsize = eh.e_phentsize;
		if (phentsize != sizeof(Elf32_Phdr))
			return vs_error_set(err, ENOEXEC, "%s: odd ELF program headers", path);
	} else {
		return vs_error_set(err, ENOEXEC, "%s: unknown ELF class", path);
	}
	if (phnum == 0 || phnum > 4096)
		return vs_error_set(err, ENOEXEC, "%s: no usable ELF program headers", path);
	for (unsigned i = 0; i < phnum; i++) {
		uint32_t type;
		/* p_type is the first 32-bit word in both classes. */
		if (pread(fd, &type, sizeof(type), (off_t)(phoff + (uint64_t)i * phentsize)) !=
		    (ssize_t)sizeof(type))
			return vs_error_set(err, ENOEXEC, "%s: truncated ELF program headers",
					    path);
		if (type == PT_INTERP)
			return 0;
	}
	return 1;
}

/* Run "busybox --list-full" and return its stdout (NUL-terminated). */
static int list_applets(const char *busybox, char **out, struct vs_error *err)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return vs_error_sys(err, errno, "pipe");
	cleanup_close int rd = p[0];
	cleanup_close int wr = p[1];
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, wr, 1);
	char *argv[] = {(char *)busybox, (char *)"--list-full", NULL};
	char *envp[] = {(char *)"PATH=/usr/sbin:/usr/bin:/sbin:/bin", (char *)"LC_ALL=C", NULL};
	pid_t pid;
	int r = posix_spawn(&pid, busybox, &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	if (r != 0)
		return vs_error_sys(err, r, "%s --list-full: spawn", busybox);
	close(steal_fd(&wr));

	size_t cap = 16384, len = 0;
	cleanup_free char *buf = vs_xmalloc(cap + 1);
	int rerr = 0;
	for (;;) {
		if (len == cap) {
			if (cap >= (1u << 20)) {
				rerr = EFBIG;
				break;
			}
			cap *= 2;
			char *nb = realloc(buf, cap + 1);
			if (!nb)
				abort();
			buf = nb;
		}
		ssize_t n = read(rd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rerr = errno;
			break;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(steal_fd(&rd));
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return vs_error_sys(err, errno, "%s --list-full: wait", busybox);
	if (rerr)
		return vs_error_sys(err, rerr, "%s --list-full: read", busybox);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return vs_error_set(err, EIO, "%s --list-full: failed (status %d)", busybox,
				    status);
	buf[len] = '\0';
	*out = steal_pointer(&buf);
	return 0;
}

/* Relative path from the directory holding rel to "bin/busybox". */
static char *relative_to_busybox(const char *rel)
{
	const char *target = "bin/busybox";
	/* Skip the directory components rel and target share. */
	const char *a = rel, *b = target;
	for (;;) {
		const char *sa = strchr(a, '/'), *sb = strchr(b, '/');
		if (!sa || !sb || sa - a != sb - b || memcmp(a, b, (size_t)(sa - a)) != 0)
			break;
		a = sa + 1;
		b = sb + 1;
	}
	size_t ups = 0;
	for (const char *c = a; *c; c++)
		if (*c == '/')
			ups++;
	char *out = vs_xmalloc(ups * 3 + strlen(b) + 1);
	char *o = out;
	for (size_t i = 0; i < ups; i++, o += 3)
		memcpy(o, "../", 3);
	strcpy(o, b);
	return out;
}

static int put_file(int rootfd, const char *rel, const char *content, mode_t mode,
		    struct vs_error *err)
{
	const char *leaf;
	cleanup_close int dfd = image_open_parent(rootfd, rel, true, &leaf, err);
	if (dfd < 0)
		return vs_error_wrap(err, "%s", rel);
	cleanup_close int fd =
	    openat(dfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return vs_error_sys(err, errno, "%s: create", rel);
	int r = vs_write_all(fd, content, strlen(content));
	if (r < 0)
		return vs_error_sys(err, -r, "%s: write", rel);
	if ((image_can_chown() && fchown(fd, 0, 0) < 0) || fchmod(fd, mode) < 0)
		return vs_error_sys(err, errno, "%s: chmod", rel);
	return 0;
}

static int put_dir(int rootfd, const char *rel, mode_t mode, struct vs_error *err)
{
	const char *leaf;
	cleanup_close int dfd = image_open_parent(rootfd, rel, true, &leaf, err);
	if (dfd < 0)
		return vs_error_wrap(err, "%s", rel);
	if (mkdirat(dfd, leaf, 0700) < 0 && errno != EEXIST)
		return vs_error_sys(err, errno, "%s: mkdir", rel);
	cleanup_close int fd = openat(dfd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return vs_error_sys(err, errno, "%s: open", rel);
	if ((image_can_chown() && fchown(fd, 0, 0) < 0) || fchmod(fd, mode) < 0)
		return vs_error_sys(err, errno, "%s: chmod", rel);
	return 0;
}

static int copy_busybox(int src, int rootfd, struct vs_error *err)
{
	int r = put_dir(rootfd, "bin", 0755, err);
	if (r < 0)
		return r;
	cleanup_close int bindir =
	    openat(rootfd, "bin", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (bindir < 0)
		return vs_error_sys(err, errno, "bin: open");
	cleanup_close int dst =
	    openat(bindir, "busybox", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0700);
	if (dst < 0)
		return vs_error_sys(err, errno, "bin/busybox: create");
	char buf[65536];
	off_t off = 0;
	for (;;) {
		ssize_t n = pread(src, buf, sizeof(buf), off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return vs_error_sys(err, errno, "bin/busybox: read source");
		if (n == 0)
			break;
		r = vs_write_all(dst, buf, (size_t)n);
		if (r < 0)
			return vs_error_sys(err, -r, "bin/busybox: write");
		off += n;
	}
	if ((image_can_chown() && fchown(dst, 0, 0) < 0) || fchmod(dst, 0755) < 0)
		return vs_error_sys(err, errno, "bin/busybox: chmod");
	return 0;
}

/* An applet path as busybox lists it: relative, plain components only. */
static bool applet_path_ok(const char *rel)
{
	struct vs_error ignored;
	cleanup_free char *clean = image_clean_path(rel, &ignored);
	return clean && *clean && !strcmp(clean, rel);
}

static int link_applets(int rootfd, char *list, struct vs_error *err)
{
	size_t count = 0;
	char *save = NULL;
	for (char *line = strtok_r(list, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		size_t len = strlen(line);
		while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
			line[--len] = '\0';
		if (!len || !strcmp(line, "bin/busybox"))
			continue;
		if (!applet_path_ok(line))
			return vs_error_set(err, EINVAL, "unexpected applet path \"%.200s\"", line);
		const char *leaf;
		cleanup_close int dfd = image_open_parent(rootfd, line, true, &leaf, err);
		if (dfd < 0)
			return vs_error_wrap(err, "%s", line);
		cleanup_free char *target = relative_to_busybox(line);
		if (symlinkat(target, dfd, leaf) < 0) {
			if (errno == EEXIST) /* listed twice */
				continue;
			return vs_error_sys(err, errno, "%s: symlink", line);
		}
		if (image_can_chown() && fchownat(dfd, leaf, 0, 0, AT_SYMLINK_NOFOLLOW) < 0)
			return vs_error_sys(err, errno, "%s: chown", line);
		count++;
	}
	if (count == 0)
		return vs_error_set(err, EINVAL, "busybox lists no applets");
	return 0;
}

static const struct {
	const char *path;
	mode_t mode;
} skeleton_dirs[] = {
    {"dev", 0755}, {"proc", 0555}, {"sys", 0555},     {"tmp", 01777},	  {"root", 0700},
    {"etc", 0755}, {"run", 0755},  {"var", 0755},     {"var/tmp", 01777}, {"home", 0755},
    {"mnt", 0755}, {"usr", 0755},  {"usr/bin", 0755}, {"usr/sbin", 0755}, {"sbin", 0755},
};

static const struct {
	const char *path;
	const char *content;
	mode_t mode;
} skeleton_files[] = {
    {"etc/passwd",
     "root:x:0:0:root:/root:/bin/sh\n"
     "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
     0644},
    {"etc/group", "root:x:0:\nnogroup:x:65534:\n", 0644},
    {"etc/shadow", "root:*:0:0:99999:7:::\nnobody:*:0:0:99999:7:::\n", 0600},
    {"etc/hostname", "vslice\n", 0644},
    {"etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n", 0644},
    {"etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n", 0644},
    {"etc/resolv.conf", "", 0644},
};

int image_build_busybox(const char *root, const char *name, const char *busybox,
			struct vs_error *err)
{
	if (!name)
		name = "busybox";
	int r = vs_check_name("image", name, err);
	if (r < 0)
		return r;

	if (!busybox) {
		static const char *const candidates[] = {"/bin/busybox", "/usr/bin/busybox",
							 "/sbin/busybox", "/usr/sbin/busybox"};
		for (size_t i = 0; i < VS_ARRAY_SIZE(candidates) && !busybox; i++)
			if (access(candidates[i], X_OK) == 0)
				busybox = candidates[i];
		if (!busybox)
			return vs_error_set(err, ENOENT,
					    "image %s: no busybox found in /bin or /usr/bin "
					    "(install it with: apt-get install busybox-static)",
					    name);
	}
	cleanup_close int src = open(busybox, O_RDONLY | O_CLOEXEC);
	if (src < 0)
		return vs_error_sys(err, errno, "image %s: open %s", name, busybox);
	struct stat sb;
	if (fstat(src, &sb) < 0)
		return vs_error_sys(err, errno, "image %s: stat %s", name, busybox);
	if (!S_ISREG(sb.st_mode))
		return vs_error_set(err, EINVAL, "image %s: %s is not a regular file", name,
				    busybox);
	r = elf_is_static(src, busybox, err);
	if (r < 0)
		return vs_error_wrap(err, "image %s", name);
	if (r == 0)
		return vs_error_set(err, ENOEXEC,
				    "image %s: %s is dynamically linked; the image needs a static "
				    "busybox (install it with: apt-get install busybox-static)",
				    name, busybox);

	cleanup_free char *list = NULL;
	r = list_applets(busybox, &list, err);
	if (r < 0)
		return vs_error_wrap(err, "image %s", name);

	cleanup_stage struct image_stage st;
	r = image_stage_begin(&st, root, name, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < VS_ARRAY_SIZE(skeleton_dirs); i++) {
		r = put_dir(st.rootfd, skeleton_dirs[i].path, skeleton_dirs[i].mode, err);
		if (r < 0)
			return vs_error_wrap(err, "image %s", name);
	}
	r = copy_busybox(src, st.rootfd, err);
	if (r < 0)
		return vs_error_wrap(err, "image %s", name);
	r = link_applets(st.rootfd, list, err);
	if (r < 0)
		return vs_error_wrap(err, "image %s: %s", name, busybox);
	for (size_t i = 0; i < VS_ARRAY_SIZE(skeleton_files); i++) {
		r = put_file(st.rootfd, skeleton_files[i].path, skeleton_files[i].content,
			     skeleton_files[i].mode, err);
		if (r < 0)
			return vs_error_wrap(err, "image %s", name);
	}
	char source[PATH_MAX + 16];
	snprintf(source, sizeof(source), "busybox:%s", busybox);
	return image_stage_commit(&st, source, err);
}
