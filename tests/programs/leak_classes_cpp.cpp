// C++ leak classes: new[] of objects with destructors (the pointer the
// program holds is 8 bytes into the block: memcheck's "newarray" heuristic
// counts a global one as reachable), std::string objects and buffers.
//   definitely lost: a dropped new Obj[4] (8 + 4*24 B); a dropped
//                    new std::string (32 B), whose buffer (201 B) is indirectly lost
//   still reachable: a global new Obj[3] (via the heuristic), a global
//                    std::string* and its buffer, a static std::string's buffer
#include <cstring>
#include <string>
#include "tally.h"

struct Obj {
    long a = 1, b = 2, c = 3;
    ~Obj() { a = 0; }
};

Obj *g_array;
std::string *g_string;
std::string g_static(150, 's');

__attribute__((noinline)) static void lose_array()
{
    Obj *p = new Obj[4];
    __asm__ volatile("" : : "r"(p) : "memory");
}

__attribute__((noinline)) static void lose_string()
{
    std::string *s = new std::string(200, 'x');
    __asm__ volatile("" : : "r"(s) : "memory");
}

__attribute__((noinline)) static void keep()
{
    g_array = new Obj[3];
    g_string = new std::string(120, 'k');
}

__attribute__((noinline)) static void scrub_stack()
{
    char buf[8192];
    memset(buf, 0, sizeof buf);
    __asm__ volatile("" : : "r"(buf) : "memory");
}

int main()
{
    lose_array();
    lose_string();
    keep();
    scrub_stack();
    tally_print("leak_classes_cpp");
    return 0;
}
