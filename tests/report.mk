## tests/report.mk - the run report (XML, validated against
## data/nepenc-report.rng) and the run plot (SVG), included by Makefile.am.
## plot.test renders the plot with rsvg-convert (Debian: librsvg2-bin) and
## skips without it.

check_PROGRAMS += tests/test_report
tests_test_report_SOURCES = tests/test_report.c tests/tap.h
tests_test_report_LDADD = $(NP_LIBS)

TESTS += tests/test_report tests/plot.test
dist_check_SCRIPTS += tests/plot.test
