/* PLACEHOLDER until the pass lands. */
#include "pass.h"
const np_pass np_pass_dce = {"dce", "placeholder", NULL};
