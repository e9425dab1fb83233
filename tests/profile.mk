## tests/profile.mk - included by Makefile.am: the entropy profiler
## (nepenthe/profile.c) on hand-built graphs, and `nepenc profile` on the
## shared models against PyTorch (tests/fixtures/entropy_*.jsonl).
check_PROGRAMS += tests/test_profile
tests_test_profile_SOURCES = tests/test_profile.c tests/tap.h
tests_test_profile_LDADD = $(NP_LIBS)
# --criterion wanda: input norms collected while profiling, and the masks.
check_PROGRAMS += tests/test_wanda
tests_test_wanda_SOURCES = tests/test_wanda.c tests/graphkit.h tests/tap.h
tests_test_wanda_LDADD = $(NP_LIBS)

TESTS += tests/test_profile tests/test_wanda tests/profile.test
dist_check_SCRIPTS += tests/profile.test
EXTRA_DIST += tests/profile.test tests/fixtures
