/* The C baseline for the transport benchmark: one libuv loop, llhttp, a fixed JSON answer
 * with keep-alive. Built by bench/transport.sh from Debian's llhttp sources; never shipped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include "llhttp.h"

static const char body[] = "{\"unstable_features\":{},\"versions\":[\"r0.0.1\",\"r0.1.0\",\"r0.2.0\",\"r0.3.0\",\"r0.4.0\",\"r0.5.0\",\"r0.6.0\",\"r0.6.1\",\"v1.1\",\"v1.2\",\"v1.3\",\"v1.4\",\"v1.5\",\"v1.6\",\"v1.7\",\"v1.8\",\"v1.9\",\"v1.10\",\"v1.11\"]}";
static char response[1024];
static size_t response_length;
static llhttp_settings_t settings;
static uv_loop_t *loop;

typedef struct { uv_tcp_t tcp; llhttp_t parser; int pending; } client_t;

static void on_close(uv_handle_t *h) { free(h); }

static int on_message_complete(llhttp_t *p) { ((client_t *)p->data)->pending++; return 0; }

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
    static char slab[65536];
    (void)h; (void)size;
    buf->base = slab;
    buf->len = sizeof slab;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    client_t *c = (client_t *)s;
    if (n < 0) { uv_close((uv_handle_t *)s, on_close); return; }
    if (llhttp_execute(&c->parser, buf->base, (size_t)n) != HPE_OK) { uv_close((uv_handle_t *)s, on_close); return; }
    while (c->pending > 0) {
        uv_buf_t out = uv_buf_init(response, (unsigned)response_length);
        if (uv_try_write(s, &out, 1) != (int)response_length) { uv_close((uv_handle_t *)s, on_close); return; }
        c->pending--;
    }
}

static void on_connection(uv_stream_t *server, int status) {
    if (status < 0) return;
    client_t *c = calloc(1, sizeof *c);
    uv_tcp_init(loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) { uv_close((uv_handle_t *)&c->tcp, on_close); return; }
    uv_tcp_nodelay(&c->tcp, 1);
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 8090;
    response_length = (size_t)snprintf(response, sizeof response,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", strlen(body), body);
    llhttp_settings_init(&settings);
    settings.on_message_complete = on_message_complete;
    loop = uv_default_loop();
    uv_tcp_t server;
    struct sockaddr_in addr;
    uv_tcp_init(loop, &server);
    uv_ip4_addr("127.0.0.1", port, &addr);
    uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    if (uv_listen((uv_stream_t *)&server, 1024, on_connection) != 0) { fprintf(stderr, "listen failed\n"); return 1; }
    return uv_run(loop, UV_RUN_DEFAULT);
}
