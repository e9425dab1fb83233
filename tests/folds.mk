## tests/folds.mk
