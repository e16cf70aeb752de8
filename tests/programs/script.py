# Builds a dict and lists of strings, round-trips them through JSON, prints a
# deterministic summary, and exits with code 3.
import json
import sys


def build(n):
    d = {}
    for i in range(n):
        d["key-%06d" % i] = "value-" + ("x" * (i % 700)) + str(i)
    return d


def main():
    d = build(20000)
    big = [s * 3 for s in d.values() if len(s) > 600]
    text = json.dumps(d, sort_keys=True)
    back = json.loads(text)
    assert back == d
    blob = bytearray(2 * 1024 * 1024)
    for i in range(0, len(blob), 4096):
        blob[i] = i % 251
    print("entries", len(back))
    print("big strings", len(big), sum(len(s) for s in big))
    print("json length", len(text))
    print("blob sum", sum(blob))
    sys.stdout.flush()
    sys.exit(3)


main()
