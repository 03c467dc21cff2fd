// libFuzzer target for the HTTP parser shim (Sources/CLLHTTP/myelin_http.c over Debian's llhttp);
// built by scripts/fuzz-http.sh with clang -fsanitize=fuzzer,address.
//
// It drives the shim the way Sources/Transport/Connection.swift does: one myelin_http per
// connection (init with the head limit, release at the end), the input delivered in several
// reads, each read copied into its own exactly-sized heap block (so ASan sees any read past it);
// the head callback takes the spans out of the arena, rejects a declared length over the body
// limit (-1); the body callback counts bytes against the limit (-1 past it); the end callback
// pauses (HPE_PAUSED) when the connection must not keep alive or too many requests are pipelined;
// a pause keeps the rest of the read (from llhttp_get_error_pos), "answers" queued requests down
// to maxPipelined/2, resumes and feeds that rest; HPE_PAUSED_UPGRADE or an error ends the connection.
//
// Input layout: byte 0 = configuration (head limit, body limit, pipelining depth, how quickly
// requests are answered), byte 1 = number of reads (1-8), then one byte per extra read giving its
// split point, then the bytes of the connection.
//
// Invariants checked (abort() on failure, which libFuzzer reports as a crash):
//  - at the head: arena_length <= head_limit and <= arena_capacity; header_count <= 128 and
//    <= header_capacity; target at offset 0; every name/value span inside the arena; the value
//    directly after its name, each header after the previous one, and target + names + values
//    adding up to arena_length (the arena holds nothing else); the expect_continue flag agrees
//    with the headers;
//  - every body span lies inside the read being executed; body bytes of a message never exceed
//    the declared Content-Length, and equal it at the end of a message that declared one (except
//    an upgrade: llhttp ends a CONNECT at its head);
//  - begin/head/end alternate (no head without begin, no end without head);
//  - after HPE_PAUSED the error position lies inside the read being executed;
//  - any other error has a reason string.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>
#include "myelin_http.h"

#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); abort(); } } while (0)

typedef struct {
    const char *chunk;      // the read being executed
    size_t chunk_length;
    int in_message;         // begin seen, end not yet
    int head_done;
    int64_t body_limit;
    int64_t body_count;
    int has_declared;
    uint64_t declared;
    int chunked;
    int pending;            // requests parsed and not yet answered
    int max_pipelined;
    int keep_alive_stop;    // the last message forbade keep-alive
    int rejected;
    volatile unsigned sink; // touches span bytes so ASan checks them
} harness_t;

static harness_t *ctx(myelin_http *h) { return (harness_t *)h->context; }

static void touch(harness_t *c, const char *p, size_t n) {
    unsigned s = 0;
    for (size_t i = 0; i < n; i++) s += (unsigned char)p[i];
    c->sink += s;
}

static void begin_cb(myelin_http *h) {
    harness_t *c = ctx(h);
    CHECK(!c->in_message);
    c->in_message = 1;
    c->head_done = 0;
    c->body_count = 0;
}

static int head_cb(myelin_http *h) {
    harness_t *c = ctx(h);
    CHECK(c->in_message && !c->head_done);
    c->head_done = 1;
    CHECK(h->error == MYELIN_HTTP_OK);
    CHECK(h->arena_length <= h->head_limit);
    CHECK(h->arena_length <= h->arena_capacity);
    CHECK(h->arena_length == 0 || h->arena != NULL);
    CHECK(h->header_count <= MYELIN_HTTP_MAX_HEADERS);
    CHECK(h->header_count <= h->header_capacity);
    CHECK(h->header_count == 0 || h->headers != NULL);
    CHECK(h->target_offset == 0);
    CHECK((uint64_t)h->target_offset + h->target_length <= h->arena_length);
    uint64_t total = h->target_length;
    uint64_t next = h->target_offset + h->target_length;
    int expect = 0;
    for (uint32_t i = 0; i < h->header_count; i++) {
        myelin_http_header e = h->headers[i];
        CHECK(e.name_offset == next);
        CHECK((uint64_t)e.name_offset + e.name_length <= h->arena_length);
        CHECK(e.value_offset == e.name_offset + e.name_length);
        CHECK((uint64_t)e.value_offset + e.value_length <= h->arena_length);
        next = (uint64_t)e.value_offset + e.value_length;
        total += (uint64_t)e.name_length + e.value_length;
        touch(c, h->arena + e.name_offset, e.name_length);
        touch(c, h->arena + e.value_offset, e.value_length);
        if (e.name_length == 6 && strncasecmp(h->arena + e.name_offset, "expect", 6) == 0 &&
            e.value_length == 12 && strncasecmp(h->arena + e.value_offset, "100-continue", 12) == 0) expect = 1;
    }
    CHECK(total == h->arena_length);
    CHECK(next == h->arena_length);
    CHECK(expect == h->expect_continue);
    if (h->target_length) touch(c, h->arena + h->target_offset, h->target_length);
    // As Connection.headComplete reads them.
    uint8_t method = myelin_http_method(h);
    const char *name = llhttp_method_name((llhttp_method_t)method);
    CHECK(name != NULL);
    touch(c, name, strlen(name));
    (void)myelin_http_major(h); (void)myelin_http_minor(h);
    c->chunked = myelin_http_is_chunked(h) != 0;
    c->has_declared = myelin_http_has_content_length(h) != 0;
    c->declared = myelin_http_content_length(h);
    if (c->has_declared && (c->declared > (uint64_t)INT64_MAX || (int64_t)c->declared > c->body_limit)) {
        c->rejected = 1;
        return -1;
    }
    c->pending++;
    return 0;
}

static int body_cb(myelin_http *h, const char *at, size_t length) {
    harness_t *c = ctx(h);
    CHECK(c->in_message && c->head_done);
    CHECK(at >= c->chunk && length <= c->chunk_length && at + length <= c->chunk + c->chunk_length);
    touch(c, at, length);
    c->body_count += (int64_t)length;
    if (c->has_declared && !c->chunked) CHECK((uint64_t)c->body_count <= c->declared);
    if (c->body_count > c->body_limit) {
        c->rejected = 1;
        return -1;
    }
    return 0;
}

static int end_cb(myelin_http *h) {
    harness_t *c = ctx(h);
    CHECK(c->in_message && c->head_done);
    // A CONNECT request ends at its head whatever it declares (llhttp: upgrade, no body).
    if (c->has_declared && !c->chunked && !myelin_http_is_upgrade(h)) CHECK((uint64_t)c->body_count == c->declared);
    c->in_message = 0;
    int keep_alive = myelin_http_keep_alive(h) != 0;
    if (!keep_alive) {
        c->keep_alive_stop = 1;
        return HPE_PAUSED;
    }
    return c->pending > c->max_pipelined ? HPE_PAUSED : 0;
}

static int installed = 0;

// Feeds one read; returns 0 to go on, 1 when the connection is finished.
static int feed(myelin_http *h, harness_t *c, const char *data, size_t length) {
    for (;;) {
        c->chunk = data;
        c->chunk_length = length;
        int rc = myelin_http_execute(h, data, length);
        if (rc == HPE_OK) return 0;
        if (rc == HPE_PAUSED_UPGRADE) return 1;
        if (rc == HPE_PAUSED) {
            const char *pos = myelin_http_error_pos(h);
            CHECK(pos != NULL && pos >= data && pos <= data + length);
            if (c->keep_alive_stop) return 1;
            // The responder answers until at most maxPipelined/2 remain, then the parser resumes
            // on a copy of the rest (Connection keeps `pausedInput` as an array).
            CHECK(c->pending > c->max_pipelined);
            c->pending = c->max_pipelined / 2;
            size_t consumed = (size_t)(pos - data);
            size_t rest = length - consumed;
            myelin_http_resume(h);
            if (rest == 0) return 0;
            char *copy = malloc(rest);
            memcpy(copy, pos, rest);
            int done = feed(h, c, copy, rest);
            free(copy);
            return done;
        }
        // An error: the connection answers 400/413/431 and closes.
        if (!c->rejected && h->error == MYELIN_HTTP_OK) {
            const char *reason = myelin_http_error_reason(h);
            CHECK(reason != NULL);
            touch(c, reason, strlen(reason));
        }
        return 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!installed) {
        myelin_http_set_callbacks(begin_cb, head_cb, body_cb, end_cb);
        installed = 1;
    }
    if (size < 2) return 0;
    uint8_t config = data[0];
    size_t reads = 1 + (data[1] & 7);
    data += 2; size -= 2;
    if (size < reads - 1) return 0;
    const uint8_t *splits = data;
    data += reads - 1; size -= reads - 1;

    static const uint32_t head_limits[4] = {16 * 1024, 16 * 1024, 64, 1100};
    static const int64_t body_limits[4] = {8 << 20, 50 << 20, 0, 16};
    static const int pipelined[4] = {16, 16, 1, 0};

    harness_t c;
    memset(&c, 0, sizeof c);
    c.body_limit = body_limits[(config >> 2) & 3];
    c.max_pipelined = pipelined[(config >> 4) & 3];
    myelin_http *h = malloc(sizeof(myelin_http));
    myelin_http_init(h, head_limits[config & 3], &c);

    // Split points: sorted offsets derived from the split bytes.
    size_t cuts[9];
    cuts[0] = 0;
    for (size_t i = 0; i + 1 < reads; i++) cuts[i + 1] = (size_t)splits[i] * size / 256;
    for (size_t i = 1; i < reads; i++)   // insertion sort
        for (size_t j = i; j > 0 && cuts[j] < cuts[j - 1]; j--) { size_t t = cuts[j]; cuts[j] = cuts[j - 1]; cuts[j - 1] = t; }
    cuts[reads] = size;

    for (size_t i = 0; i < reads; i++) {
        size_t length = cuts[i + 1] - cuts[i];
        if (length == 0) continue;        // a read delivers at least one byte
        char *read = malloc(length);
        memcpy(read, data + cuts[i], length);
        int done = feed(h, &c, read, length);
        free(read);
        if (done) break;
        // Between reads the responder may answer everything queued.
        if (config & 0x40) c.pending = 0;
    }
    myelin_http_release(h);
    free(h);
    return 0;
}
