/* The echo server behind the demo: one listener, one io watcher per connection. */
#ifndef HARK_ECHO_H
#define HARK_ECHO_H

#include <hark.h>

typedef struct echo_server echo_server_t;

/* Listens on host:port (port 0: the kernel picks one). Returns -errno. */
int echo_server_start(hk_loop_t *loop, const char *host, int port, echo_server_t **out);
/* The port actually bound. */
int echo_server_port(const echo_server_t *server);
/* Open connections and totals, for the metrics line. */
unsigned echo_server_connections(const echo_server_t *server);
unsigned long long echo_server_bytes(const echo_server_t *server);
/* Closes the listener and every connection; frees the server from the loop. */
void echo_server_stop(echo_server_t *server);

#endif
