/* PLACEHOLDER until the profile helper lands. */
#include "commands.h"
np_status np_cmd_profile(const np_cli *c, np_error *err)
{
	(void)c;
	return np_fail(err, NP_ERR_UNSUPPORTED, "profile: placeholder");
}
