# Result counting for scripts/test: `python3 -m tests.harness.results meson TESTLOG.json` or
# `... junit RESULTS.xml` prints "PASSED FAILED" (skipped tests count in neither).
import json
import sys
import xml.etree.ElementTree as ET

MESON_PASS = {"OK", "EXPECTEDFAIL"}
MESON_NEUTRAL = {"SKIP"}


def meson(path):
    passed = failed = 0
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            result = json.loads(line).get("result")
            if result in MESON_PASS:
                passed += 1
            elif result not in MESON_NEUTRAL:
                failed += 1  # FAIL, TIMEOUT, ERROR, UNEXPECTEDPASS, ...
    return passed, failed


def junit(path):
    passed = failed = 0
    for case in ET.parse(path).getroot().iter("testcase"):
        tags = {child.tag for child in case}
        if tags & {"failure", "error"}:
            failed += 1  # a test that failed, or errored in set-up or in the after-test checks
        elif "skipped" not in tags:
            passed += 1
    return passed, failed


def main(argv):
    if len(argv) != 3 or argv[1] not in ("meson", "junit"):
        print("usage: python3 -m tests.harness.results meson|junit FILE", file=sys.stderr)
        return 2
    passed, failed = (meson if argv[1] == "meson" else junit)(argv[2])
    print(passed, failed)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
