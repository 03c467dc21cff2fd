// libpq through dlopen: see include/CPostgres.h. Each pointer has the type of the libpq
// function it holds (__typeof__ of the declaration in libpq-fe.h, which references nothing
// at link time), so a wrapper cannot call it with the wrong arguments.
#define _GNU_SOURCE
#include "CPostgres.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#define FIELD(name) __typeof__(&name) name
static struct {
    FIELD(PQconnectdb);
    FIELD(PQfinish);
    FIELD(PQreset);
    FIELD(PQstatus);
    FIELD(PQtransactionStatus);
    FIELD(PQerrorMessage);
    FIELD(PQsetClientEncoding);
    FIELD(PQsetNoticeProcessor);
    FIELD(PQexec);
    FIELD(PQexecParams);
    FIELD(PQresultStatus);
    FIELD(PQresultErrorMessage);
    FIELD(PQresultErrorField);
    FIELD(PQclear);
    FIELD(PQntuples);
    FIELD(PQnfields);
    FIELD(PQfname);
    FIELD(PQftype);
    FIELD(PQgetvalue);
    FIELD(PQgetlength);
    FIELD(PQgetisnull);
    FIELD(PQcmdTuples);
} pq;
#undef FIELD

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_result = -1;
static char load_error[512];
static int ready;   // 1 once loaded
static int failed;  // 1 once the load failed (load_error is written)

#define LOAD(name) do { \
        *(void **)(&pq.name) = dlsym(handle, #name); \
        if (!pq.name) return fail(dlerror()); \
    } while (0)

static int fail(const char *message) {
    snprintf(load_error, sizeof load_error, "%s", message ? message : "unknown error");
    return -1;
}

static int load(void) {
    void *handle = dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL);
    if (!handle) return fail(dlerror());
    LOAD(PQconnectdb);
    LOAD(PQfinish);
    LOAD(PQreset);
    LOAD(PQstatus);
    LOAD(PQtransactionStatus);
    LOAD(PQerrorMessage);
    LOAD(PQsetClientEncoding);
    LOAD(PQsetNoticeProcessor);
    LOAD(PQexec);
    LOAD(PQexecParams);
    LOAD(PQresultStatus);
    LOAD(PQresultErrorMessage);
    LOAD(PQresultErrorField);
    LOAD(PQclear);
    LOAD(PQntuples);
    LOAD(PQnfields);
    LOAD(PQfname);
    LOAD(PQftype);
    LOAD(PQgetvalue);
    LOAD(PQgetlength);
    LOAD(PQgetisnull);
    LOAD(PQcmdTuples);
    return 0;
}
#undef LOAD

static void load_once_body(void) {
    load_result = load();
    __atomic_store_n(load_result == 0 ? &ready : &failed, 1, __ATOMIC_RELEASE);
}

// pthread_once orders the writes of load_once_body before every return of pthread_once.
int myelin_pq_load(void) {
    pthread_once(&load_once, load_once_body);
    return load_result;
}

const char *myelin_pq_load_error(void) {
    return __atomic_load_n(&failed, __ATOMIC_ACQUIRE) ? load_error : NULL;
}

int myelin_pq_loaded(void) { return __atomic_load_n(&ready, __ATOMIC_ACQUIRE); }

PGconn *myelin_pq_connectdb(const char *conninfo) {
    return myelin_pq_loaded() ? pq.PQconnectdb(conninfo) : NULL;
}
void myelin_pq_finish(PGconn *conn) { if (conn) pq.PQfinish(conn); }
void myelin_pq_reset(PGconn *conn) { pq.PQreset(conn); }
ConnStatusType myelin_pq_status(const PGconn *conn) { return pq.PQstatus(conn); }
PGTransactionStatusType myelin_pq_transaction_status(const PGconn *conn) { return pq.PQtransactionStatus(conn); }
char *myelin_pq_error_message(const PGconn *conn) { return pq.PQerrorMessage(conn); }
int myelin_pq_set_client_encoding(PGconn *conn, const char *encoding) {
    return pq.PQsetClientEncoding(conn, encoding);
}
PQnoticeProcessor myelin_pq_set_notice_processor(PGconn *conn, PQnoticeProcessor processor, void *arg) {
    return pq.PQsetNoticeProcessor(conn, processor, arg);
}

PGresult *myelin_pq_exec(PGconn *conn, const char *query) { return pq.PQexec(conn, query); }
PGresult *myelin_pq_exec_params(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
                                const char *const *paramValues, const int *paramLengths,
                                const int *paramFormats, int resultFormat) {
    return pq.PQexecParams(conn, command, nParams, paramTypes, paramValues, paramLengths,
                           paramFormats, resultFormat);
}
ExecStatusType myelin_pq_result_status(const PGresult *res) { return pq.PQresultStatus(res); }
char *myelin_pq_result_error_message(const PGresult *res) { return pq.PQresultErrorMessage(res); }
char *myelin_pq_result_error_field(const PGresult *res, int fieldcode) {
    return pq.PQresultErrorField(res, fieldcode);
}
void myelin_pq_clear(PGresult *res) { if (res) pq.PQclear(res); }
int myelin_pq_ntuples(const PGresult *res) { return pq.PQntuples(res); }
int myelin_pq_nfields(const PGresult *res) { return pq.PQnfields(res); }
char *myelin_pq_fname(const PGresult *res, int field_num) { return pq.PQfname(res, field_num); }
Oid myelin_pq_ftype(const PGresult *res, int field_num) { return pq.PQftype(res, field_num); }
char *myelin_pq_getvalue(const PGresult *res, int tup_num, int field_num) {
    return pq.PQgetvalue(res, tup_num, field_num);
}
int myelin_pq_getlength(const PGresult *res, int tup_num, int field_num) {
    return pq.PQgetlength(res, tup_num, field_num);
}
int myelin_pq_getisnull(const PGresult *res, int tup_num, int field_num) {
    return pq.PQgetisnull(res, tup_num, field_num);
}
char *myelin_pq_cmd_tuples(PGresult *res) { return pq.PQcmdTuples(res); }
