// libvips for the thumbnailer. libvips' entry points are variadic (name/value option lists
// ended by NULL), which Swift cannot call, so the few calls Myelin makes are fixed-argument
// static inline wrappers here. Every call runs on the thumbnailer's own threads.
#ifndef MYELIN_CVIPS_SHIM_H
#define MYELIN_CVIPS_SHIM_H
#include <vips/vips.h>
#include <string.h>

/// Starts libvips once: no operation cache (each file is read once), untrusted loaders
/// (ImageMagick, PDF, SVG...) blocked, `threads` workers per pipeline.
static inline int myelin_vips_start(int threads) {
    // VIPS_INIT's ABI check, written out (its g_warning calls do not expand in a module).
    if (vips_version(3) - vips_version(5) != VIPS_LIBRARY_CURRENT - VIPS_LIBRARY_AGE) return -2;
    if (vips_init("myelin") != 0) return -1;
    vips_cache_set_max(0);
    vips_cache_set_max_mem(0);
    vips_cache_set_max_files(0);
    vips_concurrency_set(threads);
#if VIPS_MAJOR_VERSION > 8 || (VIPS_MAJOR_VERSION == 8 && VIPS_MINOR_VERSION >= 13)
    vips_block_untrusted_set(TRUE);
#endif
    return 0;
}

/// The loader libvips would use for the file, or NULL: sniffed from the first bytes.
static inline const char *myelin_vips_loader(const char *path) {
    const char *name = vips_foreign_find_load(path);
    vips_error_clear();
    return name;
}

/// Reads only the header (libvips opens lazily: no pixel is decoded here). Fills the
/// width, the height of one page and the number of pages. Returns 0, or -1.
static inline int myelin_vips_header(const char *path, int *width, int *height, int *pages) {
    VipsImage *image = vips_image_new_from_file(path, "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    if (image == NULL) { vips_error_clear(); return -1; }
    *width = vips_image_get_width(image);
    *height = vips_image_get_page_height(image);
    *pages = vips_image_get_n_pages(image);
    g_object_unref(image);
    return 0;
}

enum { MYELIN_VIPS_JPEG = 0, MYELIN_VIPS_PNG = 1, MYELIN_VIPS_WEBP = 2, MYELIN_VIPS_GIF = 3 };

/// Thumbnails `in` into `out` (shrink-on-load): fits within width x height, or with `crop`
/// fills it and crops the centre; never upscales. `animated` loads every page. Writes the
/// size of the result in `out_width`/`out_height` (the height of one page). 0, or -1.
static inline int myelin_vips_thumbnail(const char *in, const char *out, int width, int height,
                                        int crop, int animated, int format,
                                        int *out_width, int *out_height) {
    char source[4096];
    if (snprintf(source, sizeof source, animated ? "%s[n=-1]" : "%s", in) >= (int)sizeof source) return -1;
    VipsImage *thumb = NULL;
    if (vips_thumbnail(source, &thumb, width, "height", height, "size", VIPS_SIZE_DOWN,
                       "crop", crop ? VIPS_INTERESTING_CENTRE : VIPS_INTERESTING_NONE, NULL) != 0) {
        vips_error_clear();
        return -1;
    }
    int rc;
    switch (format) {
    case MYELIN_VIPS_JPEG: rc = vips_jpegsave(thumb, out, "Q", 80, "strip", TRUE, NULL); break;
    case MYELIN_VIPS_WEBP: rc = vips_webpsave(thumb, out, "Q", 80, "strip", TRUE, NULL); break;
    case MYELIN_VIPS_GIF: rc = vips_gifsave(thumb, out, NULL); break;
    default: rc = vips_pngsave(thumb, out, "strip", TRUE, NULL); break;
    }
    *out_width = vips_image_get_width(thumb);
    *out_height = vips_image_get_page_height(thumb);
    g_object_unref(thumb);
    if (rc != 0) vips_error_clear();
    return rc == 0 ? 0 : -1;
}

/// Saves 8-bit pixels (1 to 4 bands, rows of every page one after the other) as an image file
/// whose format the suffix names; `pages` > 1 makes an animated GIF/WebP. The tests and the
/// bench make their images with it at run time. 0, or -1.
static inline int myelin_vips_save_pixels(const char *path, const unsigned char *data, int width,
                                          int height, int bands, int pages) {
    size_t length = (size_t)width * (size_t)height * (size_t)bands * (size_t)pages;
    VipsImage *image = vips_image_new_from_memory_copy(data, length, width, height * pages, bands,
                                                       VIPS_FORMAT_UCHAR);
    if (image == NULL) { vips_error_clear(); return -1; }
    if (pages > 1) {
        vips_image_set_int(image, "page-height", height);
        vips_image_set_int(image, "n-pages", pages);
    }
    int rc = vips_image_write_to_file(image, path, NULL);
    g_object_unref(image);
    if (rc != 0) vips_error_clear();
    return rc == 0 ? 0 : -1;
}
#endif
