## tests/report.mk
