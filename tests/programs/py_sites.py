# Allocations in three Python functions, each at a line marked `site:NAME`,
# for the test that Python frames appear in native stacks.
kept = []


def alpha(n):
    for _ in range(n):
        kept.append(bytearray(100_000))  # site:alpha


class Store:
    def beta(self, n):
        for _ in range(n):
            kept.append(bytearray(200_000))  # site:Store.beta


def gamma(n):
    out = []
    for _ in range(n):
        out.append(bytearray(300_000))  # site:gamma
    return out


def main():
    alpha(3)  # call:alpha
    Store().beta(3)  # call:Store.beta
    kept.extend(gamma(3))  # call:gamma
    print(len(kept), sum(len(b) for b in kept))


main()  # call:main
