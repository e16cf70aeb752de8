/* A small "service" with the three kinds of memory a profiler must tell apart:
 *   - a session cache that is never trimmed (a real leak, one site),
 *   - per-request parse buffers that are freed (churn, no leak),
 *   - a lookup table built once and kept until exit (still in use).
 * Run it under memshim with `make demo`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct session {
    char id[32];
    char *payload;
    struct session *next;
};

static struct session *cache;   /* grows forever: the leak */
static char **lookup_table;     /* built once, kept: still reachable */

__attribute__((noinline)) static char *parse_request(int n) {
    char *buf = malloc(4096);
    snprintf(buf, 4096, "GET /item/%d HTTP/1.1", n);
    return buf;
}

__attribute__((noinline)) static void remember_session(int n) {
    struct session *s = malloc(sizeof *s);
    snprintf(s->id, sizeof s->id, "session-%d", n);
    s->payload = strdup("user preferences and a shopping cart");
    s->next = cache;
    cache = s;
}

__attribute__((noinline)) static void build_lookup_table(void) {
    lookup_table = calloc(1024, sizeof *lookup_table);
    for (int i = 0; i < 1024; i++) {
        lookup_table[i] = malloc(64);
        snprintf(lookup_table[i], 64, "entry %d", i);
    }
}

__attribute__((noinline)) static void handle(int n) {
    char *req = parse_request(n);
    if (n % 10 == 0)
        remember_session(n);
    free(req);
}

int main(void) {
    build_lookup_table();
    for (int n = 0; n < 20000; n++)
        handle(n);
    long sessions = 0;
    for (struct session *s = cache; s; s = s->next)
        sessions++;
    printf("served 20000 requests, %ld sessions cached\n", sessions);
    cache = NULL; /* drop the only pointer: the sessions are now lost */
    return 0;
}
