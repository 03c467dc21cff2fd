// The system resolver's SRV query (libresolv), for server discovery. Blocking: called only
// on libuv's thread pool (uv_queue_work), never on a loop or the cooperative pool.
#ifndef MYELIN_RESOLV_H
#define MYELIN_RESOLV_H
#include <netinet/in.h>
#include <arpa/nameser.h>
#include <resolv.h>
#include <netdb.h>
#include <string.h>

/// Queries `name` for SRV records into `answer`. Returns the answer's length, 0 when the
/// name or the records do not exist (NXDOMAIN, NODATA), -1 on any other failure.
static inline int myelin_query_srv(const char *name, unsigned char *answer, int capacity) {
    struct __res_state state;
    memset(&state, 0, sizeof(state));
    if (res_ninit(&state) != 0) return -1;
    int length = res_nquery(&state, name, ns_c_in, ns_t_srv, answer, capacity);
    int error = state.res_h_errno;
    res_nclose(&state);
    if (length >= 0) return length;
    return (error == HOST_NOT_FOUND || error == NO_DATA) ? 0 : -1;
}
#endif
