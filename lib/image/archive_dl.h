/*
 * archive_dl.h - libarchive, loaded on first use.
 *
 * Only `image import` and the migration stream (lib/node/slice_xfer.c) use
 * archives, but linking libarchive into slicectl
 * pulls in eleven more libraries (xml2, icu, stdc++, the compressors...) that
 * every other verb, and so every slice start, would pay to map and relocate
 * (~1.2 ms per slicectl run here). Both include this header instead of
 * calling libarchive directly: each function it uses becomes a call through
 * a pointer filled by archive_dl_load().
 */
#ifndef VSLICE_ARCHIVE_DL_H
#define VSLICE_ARCHIVE_DL_H

#include <archive.h>
#include <archive_entry.h>

#include "vslice/error.h"

#define ARCHIVE_DL_FUNCS(X)                                                                        \
	X(archive_entry_clear)                                                                     \
	X(archive_entry_filetype)                                                                  \
	X(archive_entry_free)                                                                      \
	X(archive_entry_gid)                                                                       \
	X(archive_entry_hardlink)                                                                  \
	X(archive_entry_linkify)                                                                   \
	X(archive_entry_linkresolver_free)                                                         \
	X(archive_entry_linkresolver_new)                                                          \
	X(archive_entry_linkresolver_set_strategy)                                                 \
	X(archive_entry_mtime)                                                                     \
	X(archive_entry_mtime_is_set)                                                              \
	X(archive_entry_mtime_nsec)                                                                \
	X(archive_entry_new)                                                                       \
	X(archive_entry_pathname)                                                                  \
	X(archive_entry_perm)                                                                      \
	X(archive_entry_rdevmajor)                                                                 \
	X(archive_entry_rdevminor)                                                                 \
	X(archive_entry_set_dev)                                                                   \
	X(archive_entry_set_filetype)                                                              \
	X(archive_entry_set_gid)                                                                   \
	X(archive_entry_set_ino64)                                                                 \
	X(archive_entry_set_mtime)                                                                 \
	X(archive_entry_set_nlink)                                                                 \
	X(archive_entry_set_pathname)                                                              \
	X(archive_entry_set_perm)                                                                  \
	X(archive_entry_set_size)                                                                  \
	X(archive_entry_set_symlink)                                                               \
	X(archive_entry_set_uid)                                                                   \
	X(archive_entry_size)                                                                      \
	X(archive_entry_size_is_set)                                                               \
	X(archive_entry_sparse_add_entry)                                                          \
	X(archive_entry_symlink)                                                                   \
	X(archive_entry_uid)                                                                       \
	X(archive_entry_xattr_add_entry)                                                           \
	X(archive_entry_xattr_count)                                                               \
	X(archive_entry_xattr_next)                                                                \
	X(archive_entry_xattr_reset)                                                               \
	X(archive_errno)                                                                           \
	X(archive_error_string)                                                                    \
	X(archive_read_data_block)                                                                 \
	X(archive_read_free)                                                                       \
	X(archive_read_new)                                                                        \
	X(archive_read_next_header)                                                                \
	X(archive_read_open)                                                                       \
	X(archive_read_open_fd)                                                                    \
	X(archive_read_open_filename)                                                              \
	X(archive_read_support_filter_bzip2)                                                       \
	X(archive_read_support_filter_gzip)                                                        \
	X(archive_read_support_filter_lz4)                                                         \
	X(archive_read_support_filter_lzma)                                                        \
	X(archive_read_support_filter_xz)                                                          \
	X(archive_read_support_filter_zstd)                                                        \
	X(archive_read_support_format_tar)                                                         \
	X(archive_write_close)                                                                     \
	X(archive_write_data)                                                                      \
	X(archive_write_free)                                                                      \
	X(archive_write_header)                                                                    \
	X(archive_write_new)                                                                       \
	X(archive_write_open)                                                                      \
	X(archive_write_set_bytes_per_block)                                                       \
	X(archive_write_set_format_option)                                                         \
	X(archive_write_set_format_pax)

#define ARCHIVE_DL_DECLARE(f) extern __typeof__(f) *archive_dl_##f;
ARCHIVE_DL_FUNCS(ARCHIVE_DL_DECLARE)
#undef ARCHIVE_DL_DECLARE

/* dlopen libarchive once and resolve every function above. */
int archive_dl_load(struct vs_error *err);

#ifndef ARCHIVE_DL_IMPL
#define archive_entry_clear		(*archive_dl_archive_entry_clear)
#define archive_entry_filetype		(*archive_dl_archive_entry_filetype)
#define archive_entry_free		(*archive_dl_archive_entry_free)
#define archive_entry_gid		(*archive_dl_archive_entry_gid)
#define archive_entry_hardlink		(*archive_dl_archive_entry_hardlink)
#define archive_entry_linkify		(*archive_dl_archive_entry_linkify)
#define archive_entry_linkresolver_free (*archive_dl_archive_entry_linkresolver_free)
#define archive_entry_linkresolver_new	(*archive_dl_archive_entry_linkresolver_new)
#define archive_entry_linkresolver_set_strategy                                                    \
	(*archive_dl_archive_entry_linkresolver_set_strategy)
#define archive_entry_mtime		  (*archive_dl_archive_entry_mtime)
#define archive_entry_mtime_is_set	  (*archive_dl_archive_entry_mtime_is_set)
#define archive_entry_mtime_nsec	  (*archive_dl_archive_entry_mtime_nsec)
#define archive_entry_new		  (*archive_dl_archive_entry_new)
#define archive_entry_pathname		  (*archive_dl_archive_entry_pathname)
#define archive_entry_perm		  (*archive_dl_archive_entry_perm)
#define archive_entry_rdevmajor		  (*archive_dl_archive_entry_rdevmajor)
#define archive_entry_rdevminor		  (*archive_dl_archive_entry_rdevminor)
#define archive_entry_set_dev		  (*archive_dl_archive_entry_set_dev)
#define archive_entry_set_filetype	  (*archive_dl_archive_entry_set_filetype)
#define archive_entry_set_gid		  (*archive_dl_archive_entry_set_gid)
#define archive_entry_set_ino64		  (*archive_dl_archive_entry_set_ino64)
#define archive_entry_set_mtime		  (*archive_dl_archive_entry_set_mtime)
#define archive_entry_set_nlink		  (*archive_dl_archive_entry_set_nlink)
#define archive_entry_set_pathname	  (*archive_dl_archive_entry_set_pathname)
#define archive_entry_set_perm		  (*archive_dl_archive_entry_set_perm)
#define archive_entry_set_size		  (*archive_dl_archive_entry_set_size)
#define archive_entry_set_symlink	  (*archive_dl_archive_entry_set_symlink)
#define archive_entry_set_uid		  (*archive_dl_archive_entry_set_uid)
#define archive_entry_size		  (*archive_dl_archive_entry_size)
#define archive_entry_size_is_set	  (*archive_dl_archive_entry_size_is_set)
#define archive_entry_sparse_add_entry	  (*archive_dl_archive_entry_sparse_add_entry)
#define archive_entry_symlink		  (*archive_dl_archive_entry_symlink)
#define archive_entry_uid		  (*archive_dl_archive_entry_uid)
#define archive_entry_xattr_add_entry	  (*archive_dl_archive_entry_xattr_add_entry)
#define archive_entry_xattr_count	  (*archive_dl_archive_entry_xattr_count)
#define archive_entry_xattr_next	  (*archive_dl_archive_entry_xattr_next)
#define archive_entry_xattr_reset	  (*archive_dl_archive_entry_xattr_reset)
#define archive_errno			  (*archive_dl_archive_errno)
#define archive_error_string		  (*archive_dl_archive_error_string)
#define archive_read_data_block		  (*archive_dl_archive_read_data_block)
#define archive_read_free		  (*archive_dl_archive_read_free)
#define archive_read_new		  (*archive_dl_archive_read_new)
#define archive_read_next_header	  (*archive_dl_archive_read_next_header)
#define archive_read_open		  (*archive_dl_archive_read_open)
#define archive_read_open_fd		  (*archive_dl_archive_read_open_fd)
#define archive_read_open_filename	  (*archive_dl_archive_read_open_filename)
#define archive_read_support_filter_bzip2 (*archive_dl_archive_read_support_filter_bzip2)
#define archive_read_support_filter_gzip  (*archive_dl_archive_read_support_filter_gzip)
#define archive_read_support_filter_lz4	  (*archive_dl_archive_read_support_filter_lz4)
#define archive_read_support_filter_lzma  (*archive_dl_archive_read_support_filter_lzma)
#define archive_read_support_filter_xz	  (*archive_dl_archive_read_support_filter_xz)
#define archive_read_support_filter_zstd  (*archive_dl_archive_read_support_filter_zstd)
#define archive_read_support_format_tar	  (*archive_dl_archive_read_support_format_tar)
#define archive_write_close		  (*archive_dl_archive_write_close)
#define archive_write_data		  (*archive_dl_archive_write_data)
#define archive_write_free		  (*archive_dl_archive_write_free)
#define archive_write_header		  (*archive_dl_archive_write_header)
#define archive_write_new		  (*archive_dl_archive_write_new)
#define archive_write_open		  (*archive_dl_archive_write_open)
#define archive_write_set_bytes_per_block (*archive_dl_archive_write_set_bytes_per_block)
#define archive_write_set_format_option	  (*archive_dl_archive_write_set_format_option)
#define archive_write_set_format_pax	  (*archive_dl_archive_write_set_format_pax)

/* Cleanup attributes for libarchive's objects (NULL is fine). */
static inline void archive_dl_read_freep(struct archive **a)
{
	if (*a)
		archive_read_free(*a);
}
static inline void archive_dl_write_freep(struct archive **a)
{
	if (*a)
		archive_write_free(*a);
}
static inline void archive_dl_entry_freep(struct archive_entry **e)
{
	if (*e)
		archive_entry_free(*e);
}
static inline void archive_dl_linkresolver_freep(struct archive_entry_linkresolver **r)
{
	if (*r)
		archive_entry_linkresolver_free(*r);
}
#define cleanup_archive_read  __attribute__((cleanup(archive_dl_read_freep)))
#define cleanup_archive_write __attribute__((cleanup(archive_dl_write_freep)))
#define cleanup_archive_entry __attribute__((cleanup(archive_dl_entry_freep)))
#define cleanup_linkresolver  __attribute__((cleanup(archive_dl_linkresolver_freep)))
#endif

#endif
