// libvips for the thumbnailer, loaded on first use. libvips and the ~80 libraries it pulls in
// (glib, librsvg, OpenEXR, HDF5, gnutls through curl...) cost an idle server ~12 MB of
// resident memory when linked, so they are opened with dlopen the first time an image is
// probed, thumbnailed or written, and a server that never thumbnails never maps them.
// libvips' entry points are variadic (name/value option lists ended by NULL), which Swift
// cannot call, so the few calls Myelin makes are fixed-argument functions here. Every call
// runs on the thumbnailer's own threads.
#ifndef MYELIN_CVIPS_H
#define MYELIN_CVIPS_H

/// Loads and starts libvips once (thread-safe): no operation cache (each file is read once),
/// untrusted loaders (ImageMagick, PDF, SVG...) blocked, `threads` workers per pipeline.
/// 0; -1 when vips_init fails; -2 on an ABI mismatch; -3 when libvips.so.42 (or one of its
/// entry points) cannot be loaded. Every other function returns -1 (or NULL) until it succeeded.
int myelin_vips_start(int threads);

/// The loader libvips would use for the file, or NULL: sniffed from the first bytes.
const char *myelin_vips_loader(const char *path);

/// Reads only the header (libvips opens lazily: no pixel is decoded here). Fills the
/// width, the height of one page and the number of pages. Returns 0, or -1.
int myelin_vips_header(const char *path, int *width, int *height, int *pages);

enum { MYELIN_VIPS_JPEG = 0, MYELIN_VIPS_PNG = 1, MYELIN_VIPS_WEBP = 2, MYELIN_VIPS_GIF = 3 };

/// Thumbnails `in` into `out` (shrink-on-load): fits within width x height, or with `crop`
/// fills it and crops the centre; never upscales. `animated` loads every page. Writes the
/// size of the result in `out_width`/`out_height` (the height of one page). 0, or -1.
int myelin_vips_thumbnail(const char *in, const char *out, int width, int height,
                          int crop, int animated, int format, int *out_width, int *out_height);

/// Saves 8-bit pixels (1 to 4 bands, rows of every page one after the other) as an image file
/// whose format the suffix names; `pages` > 1 makes an animated GIF/WebP. The tests and the
/// bench make their images with it at run time. 0, or -1.
int myelin_vips_save_pixels(const char *path, const unsigned char *data, int width,
                            int height, int bands, int pages);

/// Whether libvips is loaded in this process (tests: an idle server has not loaded it).
int myelin_vips_loaded(void);
#endif
