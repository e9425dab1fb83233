## tests/rectifiers.mk - included by Makefile.am: every rectifier kind and
## topology on the fixtures of tests/fixtures/rectifiers (made by
## tests/make-rectifier-fixtures.py with PyTorch; committed).
##   test_rectifiers   patterns (GELU erf/tanh, SiLU, Clip forms) on tiny
##                     hand-built graphs: matches, near misses, profile,
##                     linearize
##   rectifiers.test   nepenc inspect and eval on every fixture; a short
##                     main job per family, checked with onnxruntime

check_PROGRAMS += tests/test_rectifiers
tests_test_rectifiers_SOURCES = tests/test_rectifiers.c tests/graphkit.h tests/tap.h
tests_test_rectifiers_LDADD = $(NP_LIBS)

TESTS += tests/test_rectifiers

TESTS += tests/rectifiers.test
dist_check_SCRIPTS += tests/rectifiers.test
# tests/fixtures (hence tests/fixtures/rectifiers) is in EXTRA_DIST already.
EXTRA_DIST += tests/rectifiers.test tests/make-rectifier-fixtures.py
