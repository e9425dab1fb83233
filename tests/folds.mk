## tests/folds.mk - included by Makefile.am: fold_bn, fold_gemm,
## fold_conv and the cost model (passes/cost.c) on hand-built graphs, each
## run through the runtime before and after the pass.
check_PROGRAMS += tests/test_passes_fold
tests_test_passes_fold_SOURCES = tests/test_passes_fold.c tests/graphkit.h tests/tap.h
tests_test_passes_fold_LDADD = $(NP_LIBS)

TESTS += tests/test_passes_fold

## fold_const: branches that are per-channel constants (zero-weight Conv
## ...) replaced by the constant.
check_PROGRAMS += tests/test_fold_const
tests_test_fold_const_SOURCES = tests/test_fold_const.c tests/graphkit.h tests/tap.h
tests_test_fold_const_LDADD = $(NP_LIBS)

TESTS += tests/test_fold_const
