// libpq for the PostgreSQL backend, loaded on the first PostgreSQL connection. libpq and the
// ~20 libraries it pulls in (gnutls, krb5, ldap, sasl, nettle, gmp, p11-kit...) cost an idle
// server ~3.5 MB of resident memory when linked, although the default SQLite configuration
// never uses them; so libpq.so.5 is opened with dlopen by myelin_pq_load, which
// PostgresConnection calls before connecting, and a server on SQLite never maps it.
//
// The types and constants are libpq's own: libpq-fe.h, postgres_ext.h and pg_config_ext.h
// here are symlinks to Debian's libpq-dev headers (`make deps`), which this target uses but
// does not link. Each function below is the libpq function of the same name after
// `myelin_pq_` (PQexecParams: myelin_pq_exec_params), resolved with dlsym when loading.
// The wrappers are not named PQ*: a definition of that name in the binary would interpose
// libpq's calls to its own functions.
#ifndef MYELIN_CPOSTGRES_H
#define MYELIN_CPOSTGRES_H

#include "libpq-fe.h"

/// Loads libpq.so.5 and resolves its entry points, once (thread-safe; later calls return the
/// first result). 0, or -1 when the library or one of its functions cannot be loaded
/// (myelin_pq_load_error says why). Every other function below needs a successful load,
/// except myelin_pq_connectdb, which returns NULL without one.
int myelin_pq_load(void);

/// Why myelin_pq_load failed (dlerror's message), or NULL if it did not fail.
const char *myelin_pq_load_error(void);

/// Whether libpq is loaded in this process (tests: a server on SQLite has not loaded it).
int myelin_pq_loaded(void);

PGconn *myelin_pq_connectdb(const char *conninfo);
void myelin_pq_finish(PGconn *conn);  // NULL allowed, as PQfinish
void myelin_pq_reset(PGconn *conn);
ConnStatusType myelin_pq_status(const PGconn *conn);
PGTransactionStatusType myelin_pq_transaction_status(const PGconn *conn);
char *myelin_pq_error_message(const PGconn *conn);
int myelin_pq_set_client_encoding(PGconn *conn, const char *encoding);
PQnoticeProcessor myelin_pq_set_notice_processor(PGconn *conn, PQnoticeProcessor processor, void *arg);

PGresult *myelin_pq_exec(PGconn *conn, const char *query);
PGresult *myelin_pq_exec_params(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
                                const char *const *paramValues, const int *paramLengths,
                                const int *paramFormats, int resultFormat);
ExecStatusType myelin_pq_result_status(const PGresult *res);
char *myelin_pq_result_error_message(const PGresult *res);
char *myelin_pq_result_error_field(const PGresult *res, int fieldcode);
void myelin_pq_clear(PGresult *res);
int myelin_pq_ntuples(const PGresult *res);
int myelin_pq_nfields(const PGresult *res);
char *myelin_pq_fname(const PGresult *res, int field_num);
Oid myelin_pq_ftype(const PGresult *res, int field_num);
char *myelin_pq_getvalue(const PGresult *res, int tup_num, int field_num);
int myelin_pq_getlength(const PGresult *res, int tup_num, int field_num);
int myelin_pq_getisnull(const PGresult *res, int tup_num, int field_num);
char *myelin_pq_cmd_tuples(PGresult *res);
#endif
