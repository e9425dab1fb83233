## tests/e2e.mk
