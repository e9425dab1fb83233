## tests/data.mk - included by Makefile.am: the dataset loaders (runtime/data.c).
check_PROGRAMS += tests/test_data
tests_test_data_SOURCES = tests/test_data.c tests/tap.h
tests_test_data_LDADD = $(NP_LIBS)
TESTS += tests/test_data
