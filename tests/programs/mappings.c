/* The program's own mappings, whose totals at exit are known: anonymous
 * 128 KiB (a 64 KiB range grown by mremap, moving if it must) + 32 KiB (half
 * of a range whose upper half was unmapped) = 160 KiB; file-backed 32 KiB
 * (a 16 KiB range of a file grown by mremap: still the file's); 3 ranges.
 * A whole range unmapped, and a file mapping unmapped, count for nothing. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define KIB 1024

static void *anonymous(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    return p;
}

int main(void)
{
    char *a = anonymous(64 * KIB);
    char *b = anonymous(64 * KIB);
    char *c = anonymous(64 * KIB);
    a[0] = b[0] = c[0] = 1;
    munmap(b, 64 * KIB);
    munmap(c + 32 * KIB, 32 * KIB);
    a = mremap(a, 64 * KIB, 128 * KIB, MREMAP_MAYMOVE);
    if (a == MAP_FAILED) {
        perror("mremap");
        return 2;
    }

    char path[] = "/tmp/memshim-mappings-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || ftruncate(fd, 32 * KIB) != 0) {
        perror(path);
        return 2;
    }
    unlink(path);
    char *f = mmap(NULL, 16 * KIB, PROT_READ, MAP_SHARED, fd, 0);
    char *g = mmap(NULL, 8 * KIB, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f == MAP_FAILED || g == MAP_FAILED) {
        perror("mmap file");
        return 2;
    }
    munmap(g, 8 * KIB);
    f = mremap(f, 16 * KIB, 32 * KIB, MREMAP_MAYMOVE);
    if (f == MAP_FAILED) {
        perror("mremap file");
        return 2;
    }
    close(fd);
    printf("mapped %p %p %p\n", (void *)a, (void *)c, (void *)f);
    return 0;
}
