/* Two threads allocate without pause (every call unwinds through the shim's
 * module snapshot) for as long as the main thread loads and unloads a
 * library 300 times (each dlopen and dlclose publishes a new snapshot and
 * frees the old one once no reader holds it). Every block is freed; prints
 * "ok" and how many blocks the two threads allocated. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define LOADS 300

static volatile int sink;
static volatile int done;

__attribute__((noinline)) static void worker_alloc(void) {
    char *p = malloc(333);
    p[0] = 1;
    sink += p[0];
    free(p);
}

static void *worker(void *arg) {
    long *count = arg;
    while (!done) {
        worker_alloc();
        ++*count;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    pthread_t t[2];
    static long counts[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, worker, &counts[i]) != 0)
            return 3;
    for (int i = 0; i < LOADS; i++) {
        void *lib = dlopen(argv[1], RTLD_NOW);
        if (!lib)
            return 4;
        void *(*entry)(int) = (void *(*)(int))dlsym(lib, "plugin_entry");
        if (!entry)
            return 5;
        free(entry(1));
        if (dlclose(lib) != 0)
            return 6;
    }
    done = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    printf("ok %ld\n", counts[0] + counts[1]);
    return 0;
}
