## tests/local.mk - included by Makefile.am; the script tests live here.
## Each script prints TAP; the helpers they share are in tests/lib/
## (already in EXTRA_DIST), the broken-model corpus in tests/broken/.
##   hostile.test   one regression test per finding of issue 11's fuzzing
##                  (nesting, FIFOs, duplicate names, ref attributes,
##                  overflow, model size, memory, config outputs, NaN)

# Tests named *.test get automake's per-extension driver, TEST_LOG_DRIVER:
# make it the same TAP driver as the others.
TEST_LOG_DRIVER = $(LOG_DRIVER)

TESTS += \
	tests/roundtrip-node.test \
	tests/roundtrip-shared.test \
	tests/broken.test \
	tests/hostile.test

dist_check_SCRIPTS = \
	tests/roundtrip-node.test \
	tests/roundtrip-shared.test \
	tests/broken.test \
	tests/hostile.test

EXTRA_DIST += tests/broken tests/make_broken.py tests/ci-summary.sh

# Scratch folders the scripts leave behind only when a check failed.
clean-local: clean-local-script-tests
clean-local-script-tests:
	-rm -rf tests/*.tmp.*
.PHONY: clean-local-script-tests

# Allocation-failure injection (issue 11): nepenc itself, with every
# allocation call of its own code wrapped (tests/allocfail.c).
check_PROGRAMS += tests/nepenc-allocfail
tests_nepenc_allocfail_SOURCES = cli/main.c tests/allocfail.c
tests_nepenc_allocfail_LDADD = $(NP_LIBS)
tests_nepenc_allocfail_LDFLAGS = $(AM_LDFLAGS) \
	-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=aligned_alloc
TESTS += tests/allocfail.test tests/iofault.test
dist_check_SCRIPTS += tests/allocfail.test tests/iofault.test

# The layers (HACKING): symbols and includes only go down.
TESTS += tests/layers.test
dist_check_SCRIPTS += tests/layers.test

# Op names are written in the op table only (runtime/ops.def, rt.h FACTS).
TESTS += tests/opnames.test
dist_check_SCRIPTS += tests/opnames.test
