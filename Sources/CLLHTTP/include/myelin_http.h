// A thin C shim over llhttp for Myelin's transport: it gathers a request head (method,
// target, headers) into one byte arena without calling into Swift per header, and calls
// back into Swift only at the head, for body bytes, and at the end of each message.
#ifndef MYELIN_HTTP_H
#define MYELIN_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include "llhttp.h"

#define MYELIN_HTTP_MAX_HEADERS 128

enum myelin_http_error {
    MYELIN_HTTP_OK = 0,
    MYELIN_HTTP_HEAD_TOO_LARGE = 1,
    MYELIN_HTTP_TOO_MANY_HEADERS = 2,
};

typedef struct myelin_http_header {
    uint32_t name_offset, name_length, value_offset, value_length;
} myelin_http_header;

typedef struct myelin_http myelin_http;

/// Called when the first byte of a message arrives.
typedef void (*myelin_http_begin_cb)(myelin_http *);
/// Called when a head is complete. Return 0 to go on, -1 to stop (the callee has decided
/// what to answer), 1 for "no body".
typedef int (*myelin_http_head_cb)(myelin_http *);
/// Called with body bytes (already de-chunked). Return 0, or -1 to stop.
typedef int (*myelin_http_body_cb)(myelin_http *, const char *at, size_t length);
/// Called at the end of a message. Return 0, or HPE_PAUSED to pause before the next one.
typedef int (*myelin_http_end_cb)(myelin_http *);

struct myelin_http {
    llhttp_t parser;
    void *context;                 // owned by the Swift connection (unretained)
    char *arena;                   // target and header bytes of the current head
    uint32_t arena_length, arena_capacity, head_limit;
    uint32_t target_offset, target_length;
    myelin_http_header *headers;   // grown on demand up to MYELIN_HTTP_MAX_HEADERS
    uint32_t header_capacity;
    uint32_t header_count;
    uint8_t in_value;              // the last span was a header value
    uint8_t error;                 // enum myelin_http_error
    uint8_t expect_continue;
};

void myelin_http_set_callbacks(myelin_http_begin_cb begin, myelin_http_head_cb head, myelin_http_body_cb body, myelin_http_end_cb end);
/// Prepares `h` for requests; `head_limit` bounds target + header bytes of one head.
void myelin_http_init(myelin_http *h, uint32_t head_limit, void *context);
void myelin_http_release(myelin_http *h);
/// Frees the head arena and header table between heads (they are re-grown by the next head),
/// so that a connection waiting on a long-poll or idle between requests holds neither. Only
/// call it while no head is being parsed: the arena is read until the head callback returns.
void myelin_http_shed(myelin_http *h);
/// Bytes held by the arena and header table (tests and diagnostics).
static inline size_t myelin_http_held_bytes(const myelin_http *h) {
    return (size_t)h->arena_capacity + (size_t)h->header_capacity * sizeof(myelin_http_header);
}
/// Feeds bytes. Returns an llhttp_errno_t; HPE_PAUSED with `llhttp_get_error_pos` after a pause.
int myelin_http_execute(myelin_http *h, const char *data, size_t length);
void myelin_http_resume(myelin_http *h);

/// The response side (HTTP client): its own callbacks, set once per process.
void myelin_http_set_response_callbacks(myelin_http_begin_cb begin, myelin_http_head_cb head, myelin_http_body_cb body, myelin_http_end_cb end);
/// Prepares `h` for responses; `head_limit` bounds header bytes of one head.
void myelin_http_init_response(myelin_http *h, uint32_t head_limit, void *context);
/// The peer closed: completes a body delimited by the end of the connection (llhttp_finish).
int myelin_http_finish(myelin_http *h);
static inline uint16_t myelin_http_status(const myelin_http *h) { return h->parser.status_code; }

static inline uint8_t myelin_http_method(const myelin_http *h) { return h->parser.method; }
static inline uint8_t myelin_http_major(const myelin_http *h) { return h->parser.http_major; }
static inline uint8_t myelin_http_minor(const myelin_http *h) { return h->parser.http_minor; }
static inline uint64_t myelin_http_content_length(const myelin_http *h) { return h->parser.content_length; }
static inline int myelin_http_is_chunked(const myelin_http *h) { return (h->parser.flags & F_CHUNKED) != 0; }
static inline int myelin_http_has_content_length(const myelin_http *h) { return (h->parser.flags & F_CONTENT_LENGTH) != 0; }
static inline int myelin_http_keep_alive(const myelin_http *h) { return llhttp_should_keep_alive(&h->parser); }
static inline int myelin_http_is_upgrade(const myelin_http *h) { return h->parser.upgrade; }
static inline const char *myelin_http_error_pos(const myelin_http *h) { return llhttp_get_error_pos(&h->parser); }
static inline const char *myelin_http_error_reason(const myelin_http *h) { return llhttp_get_error_reason(&h->parser); }



// System calls Glibc's Swift overlay does not import.
int myelin_eventfd(void);
void myelin_set_thread_name(const char *name);
#endif
