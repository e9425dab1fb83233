/* PLACEHOLDER until the profile helper lands. */
#include "nepenthe.h"
