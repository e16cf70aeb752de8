// The deepest known call chain in C++ (-O2 -fomit-frame-pointer -g):
// main -> ns::level_1(int) -> ... -> ns::level_11(int) -> ns::Widget::make(int)
// -> operator new; ns::level_6 is always inlined. Call lines are marked.
#include <cstdio>

#define NOINLINE __attribute__((noinline, noclone))

namespace ns {
volatile int sink;

struct Widget {
    char payload[4000];
    static Widget *make(int n);
};

static Widget *kept[4];
static int n_kept;

NOINLINE Widget *Widget::make(int n) {
    Widget *w = new Widget[n + 3]; // @alloc
    kept[n_kept++] = w;
    return w;
}

NOINLINE int level_11(int x) { Widget *w = Widget::make(x); /* @call11 */ sink = w->payload[0]; return x + 1; }
NOINLINE int level_10(int x) { int r = level_11(x); /* @call10 */ sink = r; return r + 1; }
NOINLINE int level_9(int x) { int r = level_10(x); /* @call9 */ sink = r; return r + 1; }
NOINLINE int level_8(int x) { int r = level_9(x); /* @call8 */ sink = r; return r + 1; }
NOINLINE int level_7(int x) { int r = level_8(x); /* @call7 */ sink = r; return r + 1; }
static inline __attribute__((always_inline)) int level_6(int x) {
    int r = level_7(x); // @call6
    sink = r;
    return r + 1;
}
NOINLINE int level_5(int x) { int r = level_6(x); /* @call5 */ sink = r; return r + 1; }
NOINLINE int level_4(int x) { int r = level_5(x); /* @call4 */ sink = r; return r + 1; }
NOINLINE int level_3(int x) { int r = level_4(x); /* @call3 */ sink = r; return r + 1; }
NOINLINE int level_2(int x) { int r = level_3(x); /* @call2 */ sink = r; return r + 1; }
NOINLINE int level_1(int x) { int r = level_2(x); /* @call1 */ sink = r; return r + 1; }
} // namespace ns

int main() {
    int a = ns::level_1(1); // @main
    std::printf("%d\n", a > 0);
    for (int i = 0; i < ns::n_kept; i++)
        delete[] ns::kept[i];
    return 0;
}
