/*
 * dbus-bench-client: a small, neutral libdbus client for the ferrybus benchmark (bench/).
 * The bench compiles it on first use (bench/clients.ts):
 *   gcc -O2 -o dbus-bench-client dbus-bench-client.c $(pkg-config --cflags --libs dbus-1)
 *
 * Every mode connects like an ordinary libdbus program: dbus_connection_open_private (SASL
 * EXTERNAL, unix-fd negotiation) and dbus_bus_register (Hello), one connection per peer.
 *
 *   dbus-bench-client peers --address=A --connections=C [--rules=R] [--matching=M] [--names=PREFIX] [--expect=K]
 *       Opens C connections. Each adds R match rules; on the first M connections the first rule
 *       matches the bench signal (interface com.example.Bench, member Tick), every other rule
 *       matches nothing the bench sends (another member, interface, path or arg0). With
 *       --names, connection i also owns PREFIX.N<i>. AddMatch and RequestName calls are
 *       pipelined and every reply is checked. Prints "ready" when all replies are in, then
 *       reads every connection and counts the bench signals received on all of them.
 *       stdin "expect T": print "reached T" once T signals (in total, since start) arrived;
 *       stdin "report": print "count N" (signals so far).
 *       stdin closed, SIGTERM or SIGINT: print "count N" and exit. --expect=K: exit after K.
 *   dbus-bench-client emit --address=A --count=N [--window=W]
 *       Emits N bench signals (body: the string "hello, world!"); after every W signals (and
 *       at the end) a GetId round trip to the bus, which the bus answers after it has routed
 *       the signals sent before it: at most W signals are in the bus's input at a time.
 *       Prints "emitted N".
 *   dbus-bench-client connect-loop --address=A --count=N --dest=NAME
 *       N times: connect, Hello, one method call to NAME (com.example.Spam.Spam), wait for its
 *       reply, close. Prints "done N" (failures on stderr, exit status 1).
 */
#include <dbus/dbus.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BENCH_PATH "/com/example/Bench"
#define BENCH_IFACE "com.example.Bench"
#define BENCH_MEMBER "Tick"
#define BUS_NAME "org.freedesktop.DBus"
#define BUS_PATH "/org/freedesktop/DBus"

static const char *address;
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

static void die(const char *what, DBusError *err) {
  fprintf(stderr, "dbus-bench-client: %s: %s\n", what, err && dbus_error_is_set(err) ? err->message : "failed");
  exit(1);
}

static const char *opt(int argc, char **argv, const char *name, const char *fallback) {
  size_t n = strlen(name);
  for (int i = 2; i < argc; i++)
    if (strncmp(argv[i], name, n) == 0 && argv[i][n] == '=') return argv[i] + n + 1;
  return fallback;
}

static long opt_long(int argc, char **argv, const char *name, long fallback) {
  const char *v = opt(argc, argv, name, NULL);
  return v ? strtol(v, NULL, 10) : fallback;
}

/* connect + EXTERNAL + Hello; NULL (and the reason in err) on failure */
static DBusConnection *bus_connect(DBusError *err) {
  DBusConnection *c = dbus_connection_open_private(address, err);
  if (!c) return NULL;
  if (!dbus_bus_register(c, err)) {
    dbus_connection_close(c);
    dbus_connection_unref(c);
    return NULL;
  }
  dbus_connection_set_exit_on_disconnect(c, FALSE);
  return c;
}

/* A rule for connection i, rule j: matching, or one of four ways of not matching the bench signal. */
static void rule_text(char *buf, size_t len, long i, long j, int matching) {
  if (matching) {
    snprintf(buf, len, "type='signal',interface='" BENCH_IFACE "',member='" BENCH_MEMBER "'");
    return;
  }
  switch (j % 4) {
  case 0: snprintf(buf, len, "type='signal',interface='" BENCH_IFACE "',member='Tock%ldx%ld'", i, j); break;
  case 1: snprintf(buf, len, "type='signal',interface='com.example.Other%ld.R%ld',member='" BENCH_MEMBER "'", i, j); break;
  case 2: snprintf(buf, len, "type='signal',interface='" BENCH_IFACE "',member='" BENCH_MEMBER "',path='/com/example/Other/%ld/%ld'", i, j); break;
  default: snprintf(buf, len, "type='signal',interface='" BENCH_IFACE "',member='" BENCH_MEMBER "',arg0='other-%ld-%ld'", i, j); break;
  }
}

static DBusPendingCall *call_bus_async(DBusConnection *c, const char *member, const char *arg, int with_flags) {
  DBusMessage *m = dbus_message_new_method_call(BUS_NAME, BUS_PATH, BUS_NAME, member);
  dbus_uint32_t flags = DBUS_NAME_FLAG_DO_NOT_QUEUE;
  if (!m) die("out of memory", NULL);
  if (with_flags) dbus_message_append_args(m, DBUS_TYPE_STRING, &arg, DBUS_TYPE_UINT32, &flags, DBUS_TYPE_INVALID);
  else dbus_message_append_args(m, DBUS_TYPE_STRING, &arg, DBUS_TYPE_INVALID);
  DBusPendingCall *p = NULL;
  if (!dbus_connection_send_with_reply(c, m, &p, 30000) || !p) die("cannot send a call", NULL);
  dbus_message_unref(m);
  return p;
}

static void check_reply(DBusPendingCall *p, const char *what) {
  dbus_pending_call_block(p);
  DBusMessage *r = dbus_pending_call_steal_reply(p);
  if (!r || dbus_message_get_type(r) == DBUS_MESSAGE_TYPE_ERROR) {
    const char *msg = "";
    if (r) dbus_message_get_args(r, NULL, DBUS_TYPE_STRING, &msg, DBUS_TYPE_INVALID);
    fprintf(stderr, "dbus-bench-client: %s failed: %s %s\n", what, r ? dbus_message_get_error_name(r) : "no reply", msg);
    exit(1);
  }
  dbus_message_unref(r);
  dbus_pending_call_unref(p);
}

static int is_bench_signal(DBusMessage *m) {
  return dbus_message_get_type(m) == DBUS_MESSAGE_TYPE_SIGNAL && dbus_message_has_member(m, BENCH_MEMBER) &&
         dbus_message_has_interface(m, BENCH_IFACE);
}

static int mode_peers(int argc, char **argv) {
  long n = opt_long(argc, argv, "--connections", 1);
  long rules = opt_long(argc, argv, "--rules", 0);
  long matching = opt_long(argc, argv, "--matching", 0);
  long expect_exit = opt_long(argc, argv, "--expect", -1);
  const char *names = opt(argc, argv, "--names", NULL);
  DBusError err;
  dbus_error_init(&err);
  DBusConnection **conns = calloc((size_t)n, sizeof *conns);
  struct pollfd *fds = calloc((size_t)n + 1, sizeof *fds);
  DBusPendingCall **pending = calloc((size_t)(n * (rules + 1)) + 1, sizeof *pending);
  long npending = 0;
  char rule[256], name[256];
  for (long i = 0; i < n; i++) {
    conns[i] = bus_connect(&err);
    if (!conns[i]) {
      fprintf(stderr, "dbus-bench-client: connection %ld of %ld: %s\n", i + 1, n, err.message);
      exit(1);
    }
    for (long j = 0; j < rules; j++) {
      rule_text(rule, sizeof rule, i, j, j == 0 && i < matching);
      pending[npending++] = call_bus_async(conns[i], "AddMatch", rule, 0);
    }
    if (names) {
      snprintf(name, sizeof name, "%s.N%ld", names, i);
      pending[npending++] = call_bus_async(conns[i], "RequestName", name, 1);
    }
    dbus_connection_flush(conns[i]);
  }
  for (long k = 0; k < npending; k++) check_reply(pending[k], "AddMatch/RequestName");
  for (long i = 0; i < n; i++) {
    int fd = -1;
    dbus_connection_get_unix_fd(conns[i], &fd);
    fds[i].fd = fd;
    fds[i].events = POLLIN;
  }
  fds[n].fd = 0;
  fds[n].events = POLLIN;
  printf("ready\n");
  fflush(stdout);

  unsigned long long total = 0, target = 0;
  int target_reported = 1;
  char line[128];
  size_t line_len = 0;
  while (!stop_requested) {
    /* Messages libdbus already read and parsed are not visible to poll(). */
    for (long i = 0; i < n; i++) {
      DBusMessage *m;
      while ((m = dbus_connection_pop_message(conns[i])) != NULL) {
        if (is_bench_signal(m)) total++;
        dbus_message_unref(m);
      }
      if (!dbus_connection_get_is_connected(conns[i])) {
        fprintf(stderr, "dbus-bench-client: connection %ld was disconnected by the bus\n", i + 1);
        printf("count %llu\n", total);
        return 1;
      }
    }
    if (!target_reported && total >= target) {
      printf("reached %llu\n", target);
      fflush(stdout);
      target_reported = 1;
    }
    if (expect_exit >= 0 && total >= (unsigned long long)expect_exit) break;
    int r = poll(fds, (nfds_t)n + 1, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      perror("poll");
      return 1;
    }
    for (long i = 0; i < n; i++)
      if (fds[i].revents) dbus_connection_read_write(conns[i], 0);
    if (fds[n].revents) {
      ssize_t got = read(0, line + line_len, sizeof line - 1 - line_len);
      if (got <= 0) break; /* stdin closed: the bench is done with us */
      line_len += (size_t)got;
      line[line_len] = 0;
      char *nl;
      while ((nl = strchr(line, '\n')) != NULL) {
        *nl = 0;
        if (strncmp(line, "expect ", 7) == 0) {
          target = strtoull(line + 7, NULL, 10);
          target_reported = 0;
        } else if (strcmp(line, "report") == 0) {
          printf("count %llu\n", total);
          fflush(stdout);
        }
        size_t used = (size_t)(nl - line) + 1;
        memmove(line, nl + 1, line_len - used + 1);
        line_len -= used;
      }
      if (line_len >= sizeof line - 1) line_len = 0;
    }
  }
  printf("count %llu\n", total);
  fflush(stdout);
  for (long i = 0; i < n; i++) {
    dbus_connection_close(conns[i]);
    dbus_connection_unref(conns[i]);
  }
  return 0;
}

static void get_id(DBusConnection *c) {
  DBusError err;
  dbus_error_init(&err);
  DBusMessage *m = dbus_message_new_method_call(BUS_NAME, BUS_PATH, BUS_NAME, "GetId");
  DBusMessage *r = dbus_connection_send_with_reply_and_block(c, m, 60000, &err);
  if (!r) die("GetId", &err);
  dbus_message_unref(r);
  dbus_message_unref(m);
}

static int mode_emit(int argc, char **argv) {
  long count = opt_long(argc, argv, "--count", 1000);
  long window = opt_long(argc, argv, "--window", 128);
  if (window < 1) window = 1;
  DBusError err;
  dbus_error_init(&err);
  DBusConnection *c = bus_connect(&err);
  if (!c) die("connect", &err);
  const char *text = "hello, world!";
  for (long i = 0; i < count; i++) {
    DBusMessage *m = dbus_message_new_signal(BENCH_PATH, BENCH_IFACE, BENCH_MEMBER);
    if (!m || !dbus_message_append_args(m, DBUS_TYPE_STRING, &text, DBUS_TYPE_INVALID)) die("out of memory", NULL);
    if (!dbus_connection_send(c, m, NULL)) die("send", NULL);
    dbus_message_unref(m);
    if ((i + 1) % window == 0) get_id(c); /* flushes, then waits: the bus has routed what came before */
  }
  get_id(c);
  printf("emitted %ld\n", count);
  fflush(stdout);
  dbus_connection_close(c);
  dbus_connection_unref(c);
  return 0;
}

static int mode_connect_loop(int argc, char **argv) {
  long count = opt_long(argc, argv, "--count", 100);
  const char *dest = opt(argc, argv, "--dest", NULL);
  if (!dest) {
    fprintf(stderr, "dbus-bench-client connect-loop: --dest=NAME is required\n");
    return 2;
  }
  long failed = 0;
  for (long i = 0; i < count; i++) {
    DBusError err;
    dbus_error_init(&err);
    DBusConnection *c = bus_connect(&err);
    if (!c) {
      if (failed++ == 0) fprintf(stderr, "dbus-bench-client: connect %ld: %s\n", i + 1, err.message);
      dbus_error_free(&err);
      continue;
    }
    DBusMessage *m = dbus_message_new_method_call(dest, "/", "com.example.Spam", "Spam");
    DBusMessage *r = dbus_connection_send_with_reply_and_block(c, m, 30000, &err);
    if (!r) {
      if (failed++ == 0) fprintf(stderr, "dbus-bench-client: call %ld: %s\n", i + 1, err.message);
      dbus_error_free(&err);
    } else {
      dbus_message_unref(r);
    }
    dbus_message_unref(m);
    dbus_connection_close(c);
    dbus_connection_unref(c);
  }
  printf("done %ld\n", count - failed);
  fflush(stdout);
  if (failed) fprintf(stderr, "dbus-bench-client: %ld of %ld connections failed\n", failed, count);
  return failed ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: dbus-bench-client peers|emit|connect-loop --address=ADDRESS [options]\n");
    return 2;
  }
  address = opt(argc, argv, "--address", getenv("DBUS_SESSION_BUS_ADDRESS"));
  if (!address) {
    fprintf(stderr, "dbus-bench-client: --address=ADDRESS or DBUS_SESSION_BUS_ADDRESS is required\n");
    return 2;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* no SA_RESTART: poll() returns EINTR */
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  if (strcmp(argv[1], "peers") == 0) return mode_peers(argc, argv);
  if (strcmp(argv[1], "emit") == 0) return mode_emit(argc, argv);
  if (strcmp(argv[1], "connect-loop") == 0) return mode_connect_loop(argc, argv);
  fprintf(stderr, "dbus-bench-client: unknown mode %s\n", argv[1]);
  return 2;
}
