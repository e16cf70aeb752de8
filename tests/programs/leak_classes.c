/* Known leak classes at exit (memcheck's definitions):
 *   definitely lost: 3 x 100 B (direct), the head of a 5-node list (48 B),
 *                    one block of a 2-block cycle (32 B)
 *   indirectly lost: the 4 other list nodes (4 x 48 B), the cycle's other block (32 B)
 *   possibly lost:   64 B and 96 B blocks held only through interior pointers
 *                    (offsets 16 and 40: none of memcheck's heuristics applies)
 *   still reachable: 300 B from a global, a 3-node list (3 x 48 B) from a global
 */
#include <stdlib.h>
#include <string.h>
#include "tally.h"

struct node { struct node *next; char pad[40]; };
struct pair { struct pair *other; char pad[24]; };

void *global_keep;
struct node *global_list;
char *interior_a;
char *interior_b;

__attribute__((noinline)) static void direct_leak(void)
{
    void *p = malloc(100);
    memset(p, 1, 100);
    __asm__ volatile("" : : "r"(p) : "memory");
}

__attribute__((noinline)) static struct node *make_list(int n)
{
    struct node *head = NULL;
    for (int i = 0; i < n; i++) {
        struct node *x = malloc(sizeof *x);
        memset(x, 0, sizeof *x);
        x->next = head;
        head = x;
    }
    return head;
}

__attribute__((noinline)) static void lose_list(void)
{
    struct node *head = make_list(5);
    __asm__ volatile("" : : "r"(head) : "memory");
}

__attribute__((noinline)) static void lose_cycle(void)
{
    struct pair *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    memset(a, 0, sizeof *a);
    memset(b, 0, sizeof *b);
    a->other = b;
    b->other = a;
    __asm__ volatile("" : : "r"(a) : "memory");
}

__attribute__((noinline)) static void keep_interior(void)
{
    char *a = malloc(64), *b = malloc(96);
    memset(a, 0x5a, 64);
    memset(b, 0x5a, 96);
    interior_a = a + 16;
    interior_b = b + 40;
}

__attribute__((noinline)) static void keep_globals(void)
{
    global_keep = malloc(300);
    memset(global_keep, 0, 300);
    global_list = make_list(3);
}

/* Overwrites the stack below main's frame so no stale pointer survives there. */
__attribute__((noinline)) static void scrub_stack(void)
{
    char buf[8192];
    memset(buf, 0, sizeof buf);
    __asm__ volatile("" : : "r"(buf) : "memory");
}

int main(void)
{
    for (int i = 0; i < 3; i++)
        direct_leak();
    lose_list();
    lose_cycle();
    keep_interior();
    keep_globals();
    scrub_stack();
    tally_print("leak_classes");
    return 0;
}
