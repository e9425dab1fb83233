## tests/passes.mk - the linearize/untie/eliminate/fold_residual/dce passes
## on tiny hand-built graphs, checked numerically through the runtime.

check_PROGRAMS += tests/test_passes_linear

tests_test_passes_linear_SOURCES = tests/test_passes_linear.c tests/graphkit.h tests/tap.h
tests_test_passes_linear_LDADD = $(NP_LIBS)

TESTS += tests/test_passes_linear
