// libvips through dlopen: see include/CVips.h. The prototypes below are libvips 8's public
// C API (vips/*.h, ABI libvips.so.42), written out so that building needs no vips headers and
// linking pulls in nothing; the enum values are those of the headers.
#define _GNU_SOURCE
#include "CVips.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stddef.h>

typedef struct VipsImage VipsImage;

// VipsSize, VipsInteresting, VipsAccess, VipsBandFormat (vips/resample.h, conversion.h, image.h).
enum { SIZE_DOWN = 2, INTERESTING_NONE = 0, INTERESTING_CENTRE = 1, ACCESS_SEQUENTIAL = 1, FORMAT_UCHAR = 0 };

static struct {
    int (*version)(int);
    int (*init)(const char *);
    void (*cache_set_max)(int);
    void (*cache_set_max_mem)(size_t);
    void (*cache_set_max_files)(int);
    void (*concurrency_set)(int);
    void (*block_untrusted_set)(int);  // 8.13 and later; NULL before
    const char *(*foreign_find_load)(const char *);
    void (*error_clear)(void);
    VipsImage *(*image_new_from_file)(const char *, ...);
    int (*image_get_width)(const VipsImage *);
    int (*image_get_page_height)(VipsImage *);
    int (*image_get_n_pages)(VipsImage *);
    void (*object_unref)(void *);
    int (*thumbnail)(const char *, VipsImage **, int, ...);
    int (*jpegsave)(VipsImage *, const char *, ...);
    int (*webpsave)(VipsImage *, const char *, ...);
    int (*pngsave)(VipsImage *, const char *, ...);
    int (*gifsave)(VipsImage *, const char *, ...);
    VipsImage *(*image_new_from_memory_copy)(const void *, size_t, int, int, int, int);
    void (*image_set_int)(VipsImage *, const char *, int);
    int (*image_write_to_file)(VipsImage *, const char *, ...);
} vips;

static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static int start_result = 1;  // 1: not tried yet
static volatile int ready;

#define LOAD(field, name) do { \
        *(void **)(&vips.field) = dlsym(handle, name); \
        if (!vips.field) return -3; \
    } while (0)

static int load(int threads) {
    void *handle = dlopen("libvips.so.42", RTLD_NOW | RTLD_LOCAL);
    if (!handle) return -3;
    LOAD(version, "vips_version");
    LOAD(init, "vips_init");
    LOAD(cache_set_max, "vips_cache_set_max");
    LOAD(cache_set_max_mem, "vips_cache_set_max_mem");
    LOAD(cache_set_max_files, "vips_cache_set_max_files");
    LOAD(concurrency_set, "vips_concurrency_set");
    *(void **)(&vips.block_untrusted_set) = dlsym(handle, "vips_block_untrusted_set");
    LOAD(foreign_find_load, "vips_foreign_find_load");
    LOAD(error_clear, "vips_error_clear");
    LOAD(image_new_from_file, "vips_image_new_from_file");
    LOAD(image_get_width, "vips_image_get_width");
    LOAD(image_get_page_height, "vips_image_get_page_height");
    LOAD(image_get_n_pages, "vips_image_get_n_pages");
    LOAD(object_unref, "g_object_unref");  // found in libvips' dependencies (gobject)
    LOAD(thumbnail, "vips_thumbnail");
    LOAD(jpegsave, "vips_jpegsave");
    LOAD(webpsave, "vips_webpsave");
    LOAD(pngsave, "vips_pngsave");
    LOAD(gifsave, "vips_gifsave");
    LOAD(image_new_from_memory_copy, "vips_image_new_from_memory_copy");
    LOAD(image_set_int, "vips_image_set_int");
    LOAD(image_write_to_file, "vips_image_write_to_file");
    // VIPS_INIT's ABI check: current - age is the soname's number.
    if (vips.version(3) - vips.version(5) != 42) return -2;
    if (vips.init("myelin") != 0) return -1;
    vips.cache_set_max(0);
    vips.cache_set_max_mem(0);
    vips.cache_set_max_files(0);
    vips.concurrency_set(threads);
    if (vips.block_untrusted_set) vips.block_untrusted_set(1);
    return 0;
}

int myelin_vips_start(int threads) {
    pthread_mutex_lock(&start_lock);
    if (start_result == 1) {
        start_result = load(threads);
        if (start_result == 0) __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    int rc = start_result;
    pthread_mutex_unlock(&start_lock);
    return rc;
}

int myelin_vips_loaded(void) { return __atomic_load_n(&ready, __ATOMIC_ACQUIRE); }

const char *myelin_vips_loader(const char *path) {
    if (!myelin_vips_loaded()) return NULL;
    const char *name = vips.foreign_find_load(path);
    vips.error_clear();
    return name;
}

int myelin_vips_header(const char *path, int *width, int *height, int *pages) {
    if (!myelin_vips_loaded()) return -1;
    VipsImage *image = vips.image_new_from_file(path, "access", ACCESS_SEQUENTIAL, NULL);
    if (image == NULL) { vips.error_clear(); return -1; }
    *width = vips.image_get_width(image);
    *height = vips.image_get_page_height(image);
    *pages = vips.image_get_n_pages(image);
    vips.object_unref(image);
    return 0;
}

int myelin_vips_thumbnail(const char *in, const char *out, int width, int height,
                          int crop, int animated, int format, int *out_width, int *out_height) {
    if (!myelin_vips_loaded()) return -1;
    char source[4096];
    if (snprintf(source, sizeof source, animated ? "%s[n=-1]" : "%s", in) >= (int)sizeof source) return -1;
    VipsImage *thumb = NULL;
    if (vips.thumbnail(source, &thumb, width, "height", height, "size", SIZE_DOWN,
                       "crop", crop ? INTERESTING_CENTRE : INTERESTING_NONE, NULL) != 0) {
        vips.error_clear();
        return -1;
    }
    int rc;
    switch (format) {
    case MYELIN_VIPS_JPEG: rc = vips.jpegsave(thumb, out, "Q", 80, "strip", 1, NULL); break;
    case MYELIN_VIPS_WEBP: rc = vips.webpsave(thumb, out, "Q", 80, "strip", 1, NULL); break;
    case MYELIN_VIPS_GIF: rc = vips.gifsave(thumb, out, NULL); break;
    default: rc = vips.pngsave(thumb, out, "strip", 1, NULL); break;
    }
    *out_width = vips.image_get_width(thumb);
    *out_height = vips.image_get_page_height(thumb);
    vips.object_unref(thumb);
    if (rc != 0) vips.error_clear();
    return rc == 0 ? 0 : -1;
}

int myelin_vips_save_pixels(const char *path, const unsigned char *data, int width,
                            int height, int bands, int pages) {
    if (!myelin_vips_loaded()) return -1;
    size_t length = (size_t)width * (size_t)height * (size_t)bands * (size_t)pages;
    VipsImage *image = vips.image_new_from_memory_copy(data, length, width, height * pages, bands, FORMAT_UCHAR);
    if (image == NULL) { vips.error_clear(); return -1; }
    if (pages > 1) {
        vips.image_set_int(image, "page-height", height);
        vips.image_set_int(image, "n-pages", pages);
    }
    int rc = vips.image_write_to_file(image, path, NULL);
    vips.object_unref(image);
    if (rc != 0) vips.error_clear();
    return rc == 0 ? 0 : -1;
}
