## tests/profile.mk
