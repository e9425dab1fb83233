## tests/passes.mk
