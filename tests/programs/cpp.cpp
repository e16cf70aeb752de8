// C++: new/delete, new[]/delete[] (with and without an array cookie),
// std::vector growth, std::string, and a leaked new int[1000].
#include "tally.h"
#include <string>
#include <vector>

struct Node {
    long a, b, c;
};

struct WithDtor { // non-trivial destructor: new[] adds an 8-byte count cookie
    int x;
    ~WithDtor() { x = 0; }
};

template <class T> static T *keep(T *p) { return static_cast<T *>(tally_escape(p)); }

__attribute__((noinline)) static int *leak_ints()
{
    int *p = keep(new int[1000]);
    tally_alloc(p, 1000 * sizeof(int));
    p[999] = 1;
    return p;
}

int main()
{
    // new / delete
    for (int i = 0; i < 100; i++) {
        Node *n = keep(new Node{1, 2, 3});
        tally_alloc(n, sizeof(Node));
        tally_free(sizeof(Node));
        delete keep(n);
    }
    Node *leaked_node = keep(new Node{4, 5, 6});
    tally_alloc(leaked_node, sizeof(Node));

    // new[] / delete[]
    for (int i = 1; i <= 20; i++) {
        double *d = keep(new double[i * 10]);
        tally_alloc(d, sizeof(double) * i * 10);
        tally_free(sizeof(double) * i * 10);
        delete[] keep(d);
    }
    WithDtor *w = keep(new WithDtor[10]);
    tally_alloc(w, sizeof(WithDtor) * 10 + sizeof(size_t));
    tally_free(sizeof(WithDtor) * 10 + sizeof(size_t));
    delete[] keep(w);

    // std::vector growth: libstdc++ allocates the new storage, moves, then
    // deallocates the old one; capacities 1, 2, 4, ...
    {
        std::vector<long> v;
        size_t cap = 0;
        for (long i = 0; i < 5000; i++) {
            v.push_back(i);
            if (v.capacity() != cap) {
                tally_alloc(v.data(), v.capacity() * sizeof(long));
                if (cap)
                    tally_free(cap * sizeof(long));
                cap = v.capacity();
            }
        }
        keep(v.data());
        tally_free(cap * sizeof(long)); // destroyed at the end of this scope
    }
    {
        std::vector<int> r;
        r.reserve(300);
        tally_alloc(r.data(), 300 * sizeof(int));
        keep(r.data());
        tally_free(300 * sizeof(int));
    }

    // std::string beyond the small-string buffer: capacity + 1 bytes
    {
        std::string s(100, 'x');
        tally_alloc(&s[0], 101);
        keep(&s[0]);
        tally_free(101);
    }

    leak_ints();
    tally_print("cpp");
    return 0;
}
