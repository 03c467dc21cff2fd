#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

// Small helpers for OpenSSL macros Swift does not import, and the two server callbacks the
// TLS engine installs (Sources/Transport/TLS/TLSEngine.swift).

static inline int myelin_ssl_ctx_set_min_proto(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}

static inline int myelin_ssl_ctx_set_max_proto(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_max_proto_version(ctx, version);
}

static inline int myelin_ssl_set_sni(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}

/// Turns off the session cache and, for TLS 1.2 and 1.3, session tickets.
static inline void myelin_ssl_ctx_no_resumption(SSL_CTX *ctx) {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
}

static inline void myelin_ssl_ctx_set_options(SSL_CTX *ctx) {
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
}

// ALPN (RFC 7301): the server speaks only HTTP/1.1; a client offering only other protocols
// gets no ALPN answer rather than a fatal alert.
static inline int myelin_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                                     const unsigned char *in, unsigned int inlen, void *arg) {
    static const unsigned char protocols[] = "\x08http/1.1";
    (void)ssl; (void)arg;
    if (SSL_select_next_proto((unsigned char **)out, outlen, protocols, sizeof(protocols) - 1, in, inlen)
        == OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

// SNI (RFC 6066, 3): every name is accepted; one certificate serves the listener.
static inline int myelin_sni_accept(SSL *ssl, int *alert, void *arg) {
    (void)ssl; (void)alert; (void)arg;
    return SSL_TLSEXT_ERR_OK;
}

static inline void myelin_ssl_ctx_server_callbacks(SSL_CTX *ctx) {
    SSL_CTX_set_alpn_select_cb(ctx, myelin_alpn_select, NULL);
    SSL_CTX_set_tlsext_servername_callback(ctx, myelin_sni_accept);
}

static inline int myelin_ssl_ctx_client_alpn(SSL_CTX *ctx) {
    static const unsigned char protocols[] = "\x08http/1.1";
    return SSL_CTX_set_alpn_protos(ctx, protocols, sizeof(protocols) - 1);
}

static inline long myelin_bio_pending(BIO *bio) {
    return (long)BIO_ctrl_pending(bio);
}
