## tests/profile.mk - included by Makefile.am: the entropy profiler
## (nepenthe/profile.c) on hand-built graphs, and `nepenc profile` on the
## shared models against PyTorch (tests/fixtures/entropy_*.jsonl); the
## masking budget's floor and the EASIER loop on hand-built graphs.
check_PROGRAMS += tests/test_profile
tests_test_profile_SOURCES = tests/test_profile.c tests/tap.h
tests_test_profile_LDADD = $(NP_LIBS)
# --criterion wanda: input norms collected while profiling, and the masks.
check_PROGRAMS += tests/test_wanda
tests_test_wanda_SOURCES = tests/test_wanda.c tests/graphkit.h tests/tap.h
tests_test_wanda_LDADD = $(NP_LIBS)
# --min-live: the no-collapse budget never empties a neuron or a layer.
check_PROGRAMS += tests/test_budget
tests_test_budget_SOURCES = tests/test_budget.c tests/graphkit.h tests/tap.h
tests_test_budget_LDADD = $(NP_LIBS)
# --method easier on a tiny graph: the lowest entropy first, a failing
# step undone, the next one tried; the removed count of the emission.
check_PROGRAMS += tests/test_easier
tests_test_easier_SOURCES = tests/test_easier.c tests/graphkit.h tests/tap.h
tests_test_easier_LDADD = $(NP_LIBS)

TESTS += tests/test_profile tests/test_wanda tests/test_budget tests/test_easier \
	tests/profile.test
dist_check_SCRIPTS += tests/profile.test
EXTRA_DIST += tests/profile.test tests/fixtures
