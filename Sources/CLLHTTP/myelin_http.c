#define _GNU_SOURCE
#include "myelin_http.h"
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static llhttp_settings_t settings;
static myelin_http_begin_cb begin_callback;
static myelin_http_head_cb head_callback;
static myelin_http_body_cb body_callback;
static myelin_http_end_cb end_callback;

static int append(myelin_http *h, const char *at, size_t length) {
    if ((size_t)h->arena_length + length > h->head_limit) {
        h->error = MYELIN_HTTP_HEAD_TOO_LARGE;
        return HPE_USER;
    }
    if (h->arena_length + length > h->arena_capacity) {
        uint32_t capacity = h->arena_capacity ? h->arena_capacity : 1024;
        while (capacity < h->arena_length + length) capacity *= 2;
        if (capacity > h->head_limit) capacity = h->head_limit;
        char *grown = realloc(h->arena, capacity);
        if (!grown) { h->error = MYELIN_HTTP_HEAD_TOO_LARGE; return HPE_USER; }
        h->arena = grown;
        h->arena_capacity = capacity;
    }
    memcpy(h->arena + h->arena_length, at, length);
    h->arena_length += (uint32_t)length;
    return 0;
}

static int on_message_begin(llhttp_t *p) {
    myelin_http *h = (myelin_http *)p;
    h->arena_length = 0;
    h->target_offset = 0;
    h->target_length = 0;
    h->header_count = 0;
    h->in_value = 0;
    h->expect_continue = 0;
    begin_callback(h);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t length) {
    myelin_http *h = (myelin_http *)p;
    if (h->target_length == 0) h->target_offset = h->arena_length;
    h->target_length += (uint32_t)length;
    return append(h, at, length);
}

static int on_header_field(llhttp_t *p, const char *at, size_t length) {
    myelin_http *h = (myelin_http *)p;
    if (h->in_value || h->header_count == 0) {
        if (h->header_count == MYELIN_HTTP_MAX_HEADERS) { h->error = MYELIN_HTTP_TOO_MANY_HEADERS; return HPE_USER; }
        if (h->header_count == h->header_capacity) {
            /* Grown on demand: a connection holds room for the headers it has seen, not the
               maximum (memory per idle long-poll). */
            uint32_t capacity = h->header_capacity ? h->header_capacity * 2 : 16;
            if (capacity > MYELIN_HTTP_MAX_HEADERS) capacity = MYELIN_HTTP_MAX_HEADERS;
            myelin_http_header *grown = realloc(h->headers, capacity * sizeof(myelin_http_header));
            if (!grown) { h->error = MYELIN_HTTP_TOO_MANY_HEADERS; return HPE_USER; }
            h->headers = grown;
            h->header_capacity = capacity;
        }
        myelin_http_header *e = &h->headers[h->header_count++];
        e->name_offset = h->arena_length;
        e->name_length = 0;
        e->value_offset = 0;
        e->value_length = 0;
        h->in_value = 0;
    }
    h->headers[h->header_count - 1].name_length += (uint32_t)length;
    return append(h, at, length);
}

static int on_header_field_complete(llhttp_t *p) {
    myelin_http *h = (myelin_http *)p;
    h->in_value = 1;
    myelin_http_header *e = &h->headers[h->header_count - 1];
    e->value_offset = h->arena_length;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t length) {
    myelin_http *h = (myelin_http *)p;
    h->headers[h->header_count - 1].value_length += (uint32_t)length;
    return append(h, at, length);
}

static int on_header_value_complete(llhttp_t *p) {
    myelin_http *h = (myelin_http *)p;
    myelin_http_header *e = &h->headers[h->header_count - 1];
    if (e->name_length == 6 && strncasecmp(h->arena + e->name_offset, "expect", 6) == 0 &&
        e->value_length == 12 && strncasecmp(h->arena + e->value_offset, "100-continue", 12) == 0) {
        h->expect_continue = 1;
    }
    return 0;
}

static int on_headers_complete(llhttp_t *p) {
    myelin_http *h = (myelin_http *)p;
    return head_callback(h);
}

static int on_body(llhttp_t *p, const char *at, size_t length) {
    return body_callback((myelin_http *)p, at, length);
}

static int on_message_complete(llhttp_t *p) {
    return end_callback((myelin_http *)p);
}

void myelin_http_set_callbacks(myelin_http_begin_cb begin, myelin_http_head_cb head, myelin_http_body_cb body, myelin_http_end_cb end) {
    begin_callback = begin;
    head_callback = head;
    body_callback = body;
    end_callback = end;
    llhttp_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_field_complete = on_header_field_complete;
    settings.on_header_value = on_header_value;
    settings.on_header_value_complete = on_header_value_complete;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
}

void myelin_http_init(myelin_http *h, uint32_t head_limit, void *context) {
    memset(h, 0, sizeof(*h));
    llhttp_init(&h->parser, HTTP_REQUEST, &settings);
    h->context = context;
    h->head_limit = head_limit;
}

void myelin_http_release(myelin_http *h) {
    free(h->arena);
    h->arena = NULL;
    h->arena_capacity = 0;
    free(h->headers);
    h->headers = NULL;
    h->header_capacity = 0;
}

void myelin_http_shed(myelin_http *h) {
    myelin_http_release(h);
    h->arena_length = 0;
    h->header_count = 0;
}

int myelin_http_execute(myelin_http *h, const char *data, size_t length) {
    return llhttp_execute(&h->parser, data, length);
}

void myelin_http_resume(myelin_http *h) { llhttp_resume(&h->parser); }

#include <pthread.h>
#include <sys/eventfd.h>

int myelin_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

void myelin_set_thread_name(const char *name) { pthread_setname_np(pthread_self(), name); }

/* Responses (the HTTP client): the same head gathering into the arena, with callbacks of
   their own, so one process can run server and client parsers side by side. */
static llhttp_settings_t response_settings;
static myelin_http_begin_cb response_begin_callback;
static myelin_http_head_cb response_head_callback;
static myelin_http_body_cb response_body_callback;
static myelin_http_end_cb response_end_callback;

static int on_response_begin(llhttp_t *p) {
    myelin_http *h = (myelin_http *)p;
    h->arena_length = 0;
    h->header_count = 0;
    h->in_value = 0;
    response_begin_callback(h);
    return 0;
}

static int on_response_headers_complete(llhttp_t *p) { return response_head_callback((myelin_http *)p); }
static int on_response_body(llhttp_t *p, const char *at, size_t length) {
    return response_body_callback((myelin_http *)p, at, length);
}
static int on_response_complete(llhttp_t *p) { return response_end_callback((myelin_http *)p); }

void myelin_http_set_response_callbacks(myelin_http_begin_cb begin, myelin_http_head_cb head, myelin_http_body_cb body, myelin_http_end_cb end) {
    response_begin_callback = begin;
    response_head_callback = head;
    response_body_callback = body;
    response_end_callback = end;
    llhttp_settings_init(&response_settings);
    response_settings.on_message_begin = on_response_begin;
    response_settings.on_header_field = on_header_field;
    response_settings.on_header_field_complete = on_header_field_complete;
    response_settings.on_header_value = on_header_value;
    response_settings.on_header_value_complete = on_header_value_complete;
    response_settings.on_headers_complete = on_response_headers_complete;
    response_settings.on_body = on_response_body;
    response_settings.on_message_complete = on_response_complete;
}

void myelin_http_init_response(myelin_http *h, uint32_t head_limit, void *context) {
    memset(h, 0, sizeof(*h));
    llhttp_init(&h->parser, HTTP_RESPONSE, &response_settings);
    h->context = context;
    h->head_limit = head_limit;
}

int myelin_http_finish(myelin_http *h) { return llhttp_finish(&h->parser); }
