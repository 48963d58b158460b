/*
 * archive_dl.h - libarchive, loaded on first use.
 *
 * Only `image import` reads archives, but linking libarchive into slicectl
 * pulls in eleven more libraries (xml2, icu, stdc++, the compressors...) that
 * every other verb, and so every slice start, would pay to map and relocate
 * (~1.2 ms per slicectl run here). import.c includes this header instead of
 * calling libarchive directly: each function it uses becomes a call through
 * a pointer filled by archive_dl_load().
 */
#ifndef VSLICE_ARCHIVE_DL_H
#define VSLICE_ARCHIVE_DL_H

#include <archive.h>
#include <archive_entry.h>

#include "vslice/error.h"

#define ARCHIVE_DL_FUNCS(X)                                                                        \
	X(archive_entry_filetype)                                                                  \
	X(archive_entry_hardlink)                                                                  \
	X(archive_entry_mtime)                                                                     \
	X(archive_entry_mtime_is_set)                                                              \
	X(archive_entry_mtime_nsec)                                                                \
	X(archive_entry_pathname)                                                                  \
	X(archive_entry_perm)                                                                      \
	X(archive_entry_size)                                                                      \
	X(archive_entry_size_is_set)                                                               \
	X(archive_entry_symlink)                                                                   \
	X(archive_errno)                                                                           \
	X(archive_error_string)                                                                    \
	X(archive_read_data_block)                                                                 \
	X(archive_read_free)                                                                       \
	X(archive_read_new)                                                                        \
	X(archive_read_next_header)                                                                \
	X(archive_read_open_fd)                                                                    \
	X(archive_read_open_filename)                                                              \
	X(archive_read_support_filter_bzip2)                                                       \
	X(archive_read_support_filter_gzip)                                                        \
	X(archive_read_support_filter_lz4)                                                         \
	X(archive_read_support_filter_lzma)                                                        \
	X(archive_read_support_filter_xz)                                                          \
	X(archive_read_support_filter_zstd)                                                        \
	X(archive_read_support_format_tar)

#define ARCHIVE_DL_DECLARE(f) extern __typeof__(f) *archive_dl_##f;
ARCHIVE_DL_FUNCS(ARCHIVE_DL_DECLARE)
#undef ARCHIVE_DL_DECLARE

/* dlopen libarchive once and resolve every function above. */
int archive_dl_load(struct vs_error *err);

#ifndef ARCHIVE_DL_IMPL
#define archive_entry_filetype		  (*archive_dl_archive_entry_filetype)
#define archive_entry_hardlink		  (*archive_dl_archive_entry_hardlink)
#define archive_entry_mtime		  (*archive_dl_archive_entry_mtime)
#define archive_entry_mtime_is_set	  (*archive_dl_archive_entry_mtime_is_set)
#define archive_entry_mtime_nsec	  (*archive_dl_archive_entry_mtime_nsec)
#define archive_entry_pathname		  (*archive_dl_archive_entry_pathname)
#define archive_entry_perm		  (*archive_dl_archive_entry_perm)
#define archive_entry_size		  (*archive_dl_archive_entry_size)
#define archive_entry_size_is_set	  (*archive_dl_archive_entry_size_is_set)
#define archive_entry_symlink		  (*archive_dl_archive_entry_symlink)
#define archive_errno			  (*archive_dl_archive_errno)
#define archive_error_string		  (*archive_dl_archive_error_string)
#define archive_read_data_block		  (*archive_dl_archive_read_data_block)
#define archive_read_free		  (*archive_dl_archive_read_free)
#define archive_read_new		  (*archive_dl_archive_read_new)
#define archive_read_next_header	  (*archive_dl_archive_read_next_header)
#define archive_read_open_fd		  (*archive_dl_archive_read_open_fd)
#define archive_read_open_filename	  (*archive_dl_archive_read_open_filename)
#define archive_read_support_filter_bzip2 (*archive_dl_archive_read_support_filter_bzip2)
#define archive_read_support_filter_gzip  (*archive_dl_archive_read_support_filter_gzip)
#define archive_read_support_filter_lz4	  (*archive_dl_archive_read_support_filter_lz4)
#define archive_read_support_filter_lzma  (*archive_dl_archive_read_support_filter_lzma)
#define archive_read_support_filter_xz	  (*archive_dl_archive_read_support_filter_xz)
#define archive_read_support_filter_zstd  (*archive_dl_archive_read_support_filter_zstd)
#define archive_read_support_format_tar	  (*archive_dl_archive_read_support_format_tar)
#endif

#endif
