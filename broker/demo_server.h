/*
 * demo_server.h - the `broker demo-server` subcommand: a loopback WebSocket
 * server speaking the path-based test protocol of tests/peers/README.md.
 *
 * Layer: broker/ (a test and demo aid built on the libwebsockets server role).
 * Nothing else in the broker depends on it, and it depends on no other broker,
 * worker, lua/ or shm/ code.
 */
#ifndef BRK_DEMO_SERVER_H
#define BRK_DEMO_SERVER_H

/*
 * Runs the demo server until SIGTERM or SIGINT. argv[0] is the subcommand
 * name ("demo-server"); options: --port N (0 picks a free port), --host ADDR
 * (default 127.0.0.1), --tls CERT KEY (wss), --deflate (enable lws'
 * permessage-deflate; off by default, see demo_server.c), --log BITS (lws log
 * level bitmap, default 0: silent). Prints exactly one
 * line `LISTENING <port>` on stdout once ready. Returns the process exit
 * status: 0 after a clean shutdown, 2 for bad arguments, 1 when the server
 * could not start.
 */
int brk_demo_server_main(int argc, char **argv);

#endif
