/* A library that stacks_dlopen.c loads with dlopen and unloads with dlclose
 * before exit; its allocation stays live (a leak), its site must stay named.
 * Each function uses the result of its call, so that none is a tail call. */
#include <stdlib.h>

volatile long plugin_sink;

__attribute__((noinline)) void *plugin_make(int n) {
    void *p = malloc(54321 + n); /* @plugin_alloc */
    plugin_sink = (long)p;
    return p;
}

void *plugin_entry(int n) {
    void *p = plugin_make(n); /* @plugin_call */
    plugin_sink = (long)p;
    return p;
}
