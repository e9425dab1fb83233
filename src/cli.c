/* cli.c - option parsing and help for every command; see cli.h. */
#include "config.h"

#include "cli.h"
#include "nepenthe.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <oneapi/dnnl/dnnl.h>
#include <protobuf-c/protobuf-c.h>

/* Which commands take an option. */
#define C_COMPILE (1u << NP_CMD_COMPILE)
#define C_INSPECT (1u << NP_CMD_INSPECT)
#define C_EVAL (1u << NP_CMD_EVAL)
#define C_FINETUNE (1u << NP_CMD_FINETUNE)
#define C_PROFILE (1u << NP_CMD_PROFILE)
#define C_DATA (C_COMPILE | C_EVAL | C_FINETUNE | C_PROFILE)
#define C_TRAIN (C_COMPILE | C_FINETUNE)
#define C_ALL (C_COMPILE | C_INSPECT | C_EVAL | C_FINETUNE | C_PROFILE)

enum {
	OPT_PASSES = 256, OPT_EXTERNAL_DATA, OPT_JSON, OPT_DATA, OPT_VAL, OPT_TEST,
	OPT_MEAN, OPT_STD, OPT_SCALE, OPT_LIMIT, OPT_BATCH, OPT_THREADS, OPT_SEED,
	OPT_EPOCHS, OPT_LR, OPT_MOMENTUM, OPT_WEIGHT_DECAY, OPT_NESTEROV,
	OPT_LR_SCHEDULE, OPT_AUGMENT, OPT_TEMPERATURE, OPT_NO_DONT_CARE,
	OPT_ZETA, OPT_THETA, OPT_MAX_ITER, OPT_BACKOFF, OPT_ENTROPY_EPS, OPT_METHOD,
	OPT_CRITERION, OPT_FOLD, OPT_NO_ENTROPY_BUDGET, OPT_NO_NEURON_SELECTION,
	OPT_REPORT, OPT_PLOT
};

typedef struct np_opt {
	struct option lo;
	unsigned commands;
} np_opt;

static const np_opt np_opts[] = {
	{{"output", required_argument, NULL, 'o'}, C_COMPILE | C_FINETUNE},
	{{"passes", required_argument, NULL, OPT_PASSES}, C_COMPILE},
	{{"external-data", no_argument, NULL, OPT_EXTERNAL_DATA}, C_COMPILE | C_FINETUNE},
	{{"json", no_argument, NULL, OPT_JSON}, C_ALL},
	{{"zeta", required_argument, NULL, OPT_ZETA}, C_COMPILE},
	{{"theta", required_argument, NULL, OPT_THETA}, C_COMPILE},
	{{"max-iter", required_argument, NULL, OPT_MAX_ITER}, C_COMPILE},
	{{"backoff", required_argument, NULL, OPT_BACKOFF}, C_COMPILE},
	{{"entropy-eps", required_argument, NULL, OPT_ENTROPY_EPS}, C_COMPILE},
	{{"method", required_argument, NULL, OPT_METHOD}, C_COMPILE},
	{{"criterion", required_argument, NULL, OPT_CRITERION}, C_COMPILE},
	{{"fold", required_argument, NULL, OPT_FOLD}, C_COMPILE},
	{{"no-entropy-budget", no_argument, NULL, OPT_NO_ENTROPY_BUDGET}, C_COMPILE},
	{{"no-neuron-selection", no_argument, NULL, OPT_NO_NEURON_SELECTION}, C_COMPILE},
	{{"report", required_argument, NULL, OPT_REPORT}, C_COMPILE},
	{{"plot", required_argument, NULL, OPT_PLOT}, C_COMPILE},
	{{"no-dont-care", no_argument, NULL, OPT_NO_DONT_CARE}, C_COMPILE | C_PROFILE},
	{{"data", required_argument, NULL, OPT_DATA}, C_DATA},
	{{"val", required_argument, NULL, OPT_VAL}, C_TRAIN},
	{{"test", required_argument, NULL, OPT_TEST}, C_TRAIN},
	{{"mean", required_argument, NULL, OPT_MEAN}, C_DATA},
	{{"std", required_argument, NULL, OPT_STD}, C_DATA},
	{{"scale", required_argument, NULL, OPT_SCALE}, C_DATA},
	{{"limit", required_argument, NULL, OPT_LIMIT}, C_DATA},
	{{"batch", required_argument, NULL, OPT_BATCH}, C_DATA},
	{{"threads", required_argument, NULL, OPT_THREADS}, C_DATA},
	{{"seed", required_argument, NULL, OPT_SEED}, C_TRAIN},
	{{"epochs", required_argument, NULL, OPT_EPOCHS}, C_TRAIN},
	{{"lr", required_argument, NULL, OPT_LR}, C_TRAIN},
	{{"momentum", required_argument, NULL, OPT_MOMENTUM}, C_TRAIN},
	{{"weight-decay", required_argument, NULL, OPT_WEIGHT_DECAY}, C_TRAIN},
	{{"nesterov", no_argument, NULL, OPT_NESTEROV}, C_TRAIN},
	{{"lr-schedule", required_argument, NULL, OPT_LR_SCHEDULE}, C_TRAIN},
	{{"augment", required_argument, NULL, OPT_AUGMENT}, C_TRAIN},
	{{"temperature", required_argument, NULL, OPT_TEMPERATURE}, C_TRAIN},
	{{"quiet", no_argument, NULL, 'q'}, C_ALL},
	{{"verbose", no_argument, NULL, 'v'}, C_ALL},
	{{"help", no_argument, NULL, 'h'}, C_ALL},
	{{"version", no_argument, NULL, 'V'}, C_ALL},
};
#define NP_N_OPTS (sizeof np_opts / sizeof np_opts[0])

static const char *const np_command_names[] = {"compile", "inspect", "eval",
                                               "finetune", "profile"};

__attribute__((format(printf, 1, 2)))
static int np_usage(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("nepenc: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'nepenc --help' for more information.\n", stderr);
	return 2;
}

void np_cli_help(FILE *out)
{
	fputs(
"Usage: nepenc MODEL.onnx -o OUT.onnx [OPTION]...\n"
"       nepenc inspect [--json] MODEL.onnx\n"
"       nepenc eval MODEL.onnx --data SPEC [OPTION]...\n"
"       nepenc finetune MODEL.onnx -o OUT.onnx --data SPEC [OPTION]...\n"
"       nepenc profile MODEL.onnx --data SPEC [--json] [OPTION]...\n"
"\n"
"nepenc reads a trained ONNX model, prunes it with NEPENTHE (entropy-guided\n"
"unstructured pruning), removes the layers whose rectifiers reach zero\n"
"entropy, folds the linear operators left back to back, and writes a\n"
"shallower ONNX model.\n"
"\n"
"Commands:\n"
"  inspect                print opset, inputs/outputs, node count by op,\n"
"                         parameter count and the rectified layers\n"
"  eval                   top-1 accuracy and mean loss on labelled data\n"
"  finetune               fine-tune (SGD) without pruning, write the model\n"
"  profile                entropy of every rectified layer on --data\n"
"\n"
"Output:\n"
"  -o, --output FILE      write the resulting model to FILE (via a temporary\n"
"                         file beside it, renamed at the end)\n"
"      --passes P         'default' (NEPENTHE, linearize, fold) or 'none':\n"
"                         write the model back through nepenc's IR unchanged\n"
"      --external-data    store initializers in FILE.data beside the output\n"
"                         (automatic when the model exceeds 2 GiB)\n"
"      --json             print one JSON document on stdout\n"
"\n"
"Data (SPEC: idx:IMAGES[,LABELS]  cifar10:DIR  npy:X.npy[,Y.npy]  pb:DIR):\n"
"      --data SPEC        training data (eval: the data to score)\n"
"      --val SPEC         validation data (default: the last 1/12 of --data)\n"
"      --test SPEC        test data, scored at the end only\n"
"      --scale S          multiply uint8 pixels by S (default 1/255)\n"
"      --mean M[,M...]    subtract per-channel means after scaling\n"
"      --std S[,S...]     then divide by per-channel deviations\n"
"      --limit N          use only the first N examples\n"
"      --batch N          batch size (default 128)\n"
"      --threads N        threads (default: all cores)\n"
"\n"
"Training:\n"
"      --epochs N         epochs (default 1)\n"
"      --lr X             learning rate (default 0.01)\n"
"      --momentum X       SGD momentum (default 0.9)\n"
"      --weight-decay X   L2 weight decay (default 1e-4)\n"
"      --nesterov         Nesterov momentum\n"
"      --lr-schedule S    constant (default), cosine, or step:EPOCHS:GAMMA\n"
"      --augment LIST     flip and/or shift=N, comma-separated (default none)\n"
"      --temperature T    distillation temperature without labels (default 4)\n"
"      --seed N           seed of shuffling and augmentation (default 0)\n"
"\n"
"NEPENTHE:\n"
"      --zeta Z           fraction of the prunable weights removed per\n"
"                         iteration (default 0.5)\n"
"      --theta T          keep validation top-1 >= T x dense (default 0.99)\n"
"      --max-iter N       iterations at most, retries included (default 10)\n"
"      --backoff N        on a failed iterate: restore the last good one,\n"
"                         halve zeta, go on; N retries (default 2; 0 = the\n"
"                         paper's rule: stop)\n"
"      --entropy-eps E    also remove layers with entropy <= E bits, each\n"
"                         neuron to its majority state (default 0)\n"
"      --method M         nepenthe (default) or imp (global magnitude)\n"
"      --criterion C      magnitude (the only one available yet)\n"
"      --no-entropy-budget    budget proportional to layer size (ablation)\n"
"      --no-neuron-selection  also prune zero-entropy neurons (ablation)\n"
"      --no-dont-care     count z == 0 as OFF (ablation; default: not counted)\n"
"      --fold F           exact (default), approx (also Conv -> padded Conv,\n"
"                         kept if theta holds) or none\n"
"      --report FILE      write the run report (XML, RelaxNG schema shipped)\n"
"      --plot FILE        write per-layer entropy and neuron states (SVG)\n"
"\n"
"  -q, --quiet            print nothing on success\n"
"  -v, --verbose          print more detail\n"
"  -h, --help             print this help and exit\n"
"  -V, --version          print the version of nepenc and its libraries\n"
"\n"
"Exit status: 0 on success, 1 if the run failed, 2 on a usage error.\n"
"Errors are one line: 'nepenc: FILE: what went wrong'.\n", out);
}

static void np_print_version(void)
{
	const dnnl_version_t *dv = dnnl_version();
	int xv = atoi(xmlParserVersion);
	printf("nepenc %s\n", PACKAGE_VERSION);
	printf("oneDNN %d.%d.%d (%s)\n", dv->major, dv->minor, dv->patch,
	       dv->hash ? dv->hash : "");
	printf("protobuf-c %s\n", protobuf_c_version());
	printf("libxml2 %d.%d.%d\n", xv / 10000, xv / 100 % 100, xv % 100);
}

/* ------------------------------------------------------------ values */

static bool np_parse_double(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v))
		return false;
	*out = v;
	return true;
}

static bool np_parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

/* "0.5" or "0.4914,0.4822,0.4465" */
static bool np_parse_list(const char *s, double *out, int *n)
{
	char buf[512];
	snprintf(buf, sizeof buf, "%s", s);
	*n = 0;
	for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (*n == NP_DATA_MAX_CHANNELS || !np_parse_double(tok, &out[*n]))
			return false;
		(*n)++;
	}
	return *n > 0;
}

static bool np_parse_schedule(const char *s, np_train_opts *t)
{
	if (strcmp(s, "constant") == 0) {
		t->schedule = NP_LR_CONSTANT;
		return true;
	}
	if (strcmp(s, "cosine") == 0) {
		t->schedule = NP_LR_COSINE;
		return true;
	}
	int step;
	float gamma;
	char tail;
	if (sscanf(s, "step:%d:%f%c", &step, &gamma, &tail) == 2 && step > 0 &&
	    gamma > 0) {
		t->schedule = NP_LR_STEP;
		t->step_epochs = step;
		t->gamma = gamma;
		return true;
	}
	return false;
}

static bool np_parse_augment(const char *s, np_augment *a)
{
	char buf[256];
	snprintf(buf, sizeof buf, "%s", s);
	for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		int64_t v;
		if (strcmp(tok, "flip") == 0)
			a->flip = true;
		else if (strncmp(tok, "shift=", 6) == 0 && np_parse_int(tok + 6, 0, 16, &v))
			a->shift = (int)v;
		else if (strcmp(tok, "none") != 0)
			return false;
	}
	return true;
}

static void np_cli_defaults(np_cli *c)
{
	memset(c, 0, sizeof *c);
	c->batch = 128;
	c->train.epochs = 1;
	c->train.batch = 128;
	c->train.sgd = (np_sgd){.lr = 0.01f, .momentum = 0.9f, .weight_decay = 1e-4f};
	c->train.schedule = NP_LR_CONSTANT;
	c->train.temperature = 4.0f;
	c->zeta = 0.5;
	c->theta = 0.99;
	c->max_iter = 10;
	c->backoff = 2;
	c->passes = "default";
}

/* One option's value into c; returns 0 or 2 (usage error printed). */
static int np_cli_set(np_cli *c, int id, const char *name, const char *arg)
{
	double d;
	int64_t i;
	switch (id) {
	case 'o': c->output = arg; return 0;
	case 'q': c->quiet = true; return 0;
	case 'v': c->verbose = true; return 0;
	case OPT_PASSES: c->passes = arg; return 0;
	case OPT_EXTERNAL_DATA: c->external_data = true; return 0;
	case OPT_JSON: c->json = true; return 0;
	case OPT_DATA: c->data = arg; return 0;
	case OPT_VAL: c->val = arg; return 0;
	case OPT_TEST: c->test = arg; return 0;
	case OPT_NESTEROV: c->train.sgd.nesterov = true; return 0;
	case OPT_NO_DONT_CARE: c->no_dont_care = true; return 0;
	case OPT_NO_ENTROPY_BUDGET: c->no_entropy_budget = true; return 0;
	case OPT_NO_NEURON_SELECTION: c->no_neuron_selection = true; return 0;
	case OPT_REPORT: c->report = arg; return 0;
	case OPT_PLOT: c->plot = arg; return 0;
	case OPT_ZETA:
		if (np_parse_double(arg, &d) && d > 0 && d < 1) { c->zeta = d; return 0; }
		break;
	case OPT_THETA:
		if (np_parse_double(arg, &d) && d > 0 && d <= 1) { c->theta = d; return 0; }
		break;
	case OPT_ENTROPY_EPS:
		if (np_parse_double(arg, &d) && d >= 0) { c->entropy_eps = d; return 0; }
		break;
	case OPT_MAX_ITER:
		if (np_parse_int(arg, 0, 1000, &i)) { c->max_iter = (int)i; return 0; }
		break;
	case OPT_BACKOFF:
		if (np_parse_int(arg, 0, 100, &i)) { c->backoff = (int)i; return 0; }
		break;
	case OPT_METHOD:
		if (strcmp(arg, "nepenthe") == 0) { c->method = NP_METHOD_NEPENTHE; return 0; }
		if (strcmp(arg, "imp") == 0) { c->method = NP_METHOD_IMP; return 0; }
		break;
	case OPT_CRITERION:
		if (strcmp(arg, "magnitude") == 0) { c->criterion = NP_CRIT_MAGNITUDE; return 0; }
		if (strcmp(arg, "wanda") == 0)
			return np_usage("--criterion wanda is not available yet: the input "
			                "norms it scores with are not collected");
		break;
	case OPT_FOLD:
		if (strcmp(arg, "exact") == 0) { c->fold = NP_FOLD_EXACT; return 0; }
		if (strcmp(arg, "approx") == 0) { c->fold = NP_FOLD_APPROX; return 0; }
		if (strcmp(arg, "none") == 0) { c->fold = NP_FOLD_NONE; return 0; }
		break;
	case OPT_MEAN:
		if (np_parse_list(arg, c->dopts.mean, &c->dopts.n_mean)) return 0;
		break;
	case OPT_STD:
		if (np_parse_list(arg, c->dopts.std, &c->dopts.n_std)) {
			for (int k = 0; k < c->dopts.n_std; k++)
				if (c->dopts.std[k] <= 0)
					return np_usage("--std must be positive, got '%s'", arg);
			return 0;
		}
		break;
	case OPT_SCALE:
		if (np_parse_double(arg, &d) && d > 0) { c->dopts.scale = d; return 0; }
		break;
	case OPT_LIMIT:
		if (np_parse_int(arg, 1, INT64_MAX, &i)) { c->dopts.limit = i; return 0; }
		break;
	case OPT_BATCH:
		if (np_parse_int(arg, 1, 1 << 20, &i)) { c->batch = c->train.batch = i; return 0; }
		break;
	case OPT_THREADS:
		if (np_parse_int(arg, 1, 1024, &i)) { c->threads = (int)i; return 0; }
		break;
	case OPT_SEED:
		if (np_parse_int(arg, 0, INT64_MAX, &i)) { c->train.seed = (uint64_t)i; return 0; }
		break;
	case OPT_EPOCHS:
		if (np_parse_int(arg, 0, 100000, &i)) { c->train.epochs = (int)i; return 0; }
		break;
	case OPT_LR:
		if (np_parse_double(arg, &d) && d >= 0) { c->train.sgd.lr = (float)d; return 0; }
		break;
	case OPT_MOMENTUM:
		if (np_parse_double(arg, &d) && d >= 0 && d < 1) { c->train.sgd.momentum = (float)d; return 0; }
		break;
	case OPT_WEIGHT_DECAY:
		if (np_parse_double(arg, &d) && d >= 0) { c->train.sgd.weight_decay = (float)d; return 0; }
		break;
	case OPT_TEMPERATURE:
		if (np_parse_double(arg, &d) && d > 0) { c->train.temperature = (float)d; return 0; }
		break;
	case OPT_LR_SCHEDULE:
		if (np_parse_schedule(arg, &c->train)) return 0;
		break;
	case OPT_AUGMENT:
		if (np_parse_augment(arg, &c->train.augment)) return 0;
		break;
	}
	return np_usage("invalid value '%s' for --%s", arg, name);
}

static const np_opt *np_opt_by_id(int id)
{
	for (size_t i = 0; i < NP_N_OPTS; i++)
		if (np_opts[i].lo.val == id)
			return &np_opts[i];
	return NULL;
}

static np_command_id np_command_of(int argc, char **argv, int *skip)
{
	*skip = 0;
	if (argc >= 2)
		for (int k = NP_CMD_INSPECT; k <= NP_CMD_PROFILE; k++)
			if (strcmp(argv[1], np_command_names[k]) == 0) {
				*skip = 1;
				return (np_command_id)k;
			}
	return NP_CMD_COMPILE;
}

/* Positional argument and required options per command. */
static int np_cli_check(np_cli *c, int argc, char **argv)
{
	if (optind == argc)
		return np_usage("%s: no input model", c->command_name);
	if (optind < argc - 1)
		return np_usage("%s: one input model expected, got also '%s'",
		                c->command_name, argv[optind + 1]);
	c->model = argv[optind];
	bool needs_out = c->command == NP_CMD_COMPILE || c->command == NP_CMD_FINETUNE;
	if (needs_out && !c->output)
		return np_usage("no output file: use -o OUT.onnx");
	if ((c->command == NP_CMD_EVAL || c->command == NP_CMD_FINETUNE ||
	     c->command == NP_CMD_PROFILE) && !c->data)
		return np_usage("%s needs --data SPEC", c->command_name);
	if (c->dopts.n_mean != c->dopts.n_std)
		return np_usage("--mean and --std must have the same number of values");
	if (c->command == NP_CMD_COMPILE && strcmp(c->passes, "none") != 0 &&
	    strcmp(c->passes, "default") != 0)
		return np_usage("--passes takes 'default' or 'none', got '%s'", c->passes);
	if (c->command == NP_CMD_COMPILE && strcmp(c->passes, "none") != 0 && !c->data)
		return np_usage("no data: give --data SPEC (idx:IMAGES,LABELS, cifar10:DIR, "
		                "npy:X.npy[,Y.npy] or pb:DIR)");
	return 0;
}

int np_cli_parse(np_cli *c, int argc, char **argv)
{
	np_cli_defaults(c);
	int skip;
	c->command = np_command_of(argc, argv, &skip);
	c->command_name = np_command_names[c->command];
	argc -= skip;
	argv += skip;
	struct option lo[NP_N_OPTS + 1];
	for (size_t i = 0; i < NP_N_OPTS; i++)
		lo[i] = np_opts[i].lo;
	memset(&lo[NP_N_OPTS], 0, sizeof lo[0]);
	int id, li = -1;
	optind = 1;
	opterr = 0;   /* getopt would print argv[0]; we say "nepenc" */
	while ((id = getopt_long(argc, argv, "o:qvhV", lo, &li)) != -1) {
		if (id == '?' || id == ':') {
			const char *bad = argv[optind - 1];
			if (optopt && bad[0] == '-' && bad[1] != '-')
				return np_usage("%s: invalid option -- '%c'", c->command_name, optopt);
			return np_usage("%s: %s '%s'", c->command_name,
			                id == ':' ? "option needs a value:" : "unrecognized option",
			                bad);
		}
		if (id == 'h') {
			np_cli_help(stdout);
			return -1;
		}
		if (id == 'V') {
			np_print_version();
			return -1;
		}
		const np_opt *o = np_opt_by_id(id);
		if (!(o->commands & (1u << c->command)))
			return np_usage("option --%s does not apply to '%s'", o->lo.name,
			                c->command_name);
		int rc = np_cli_set(c, id, o->lo.name, optarg);
		if (rc)
			return rc;
	}
	return np_cli_check(c, argc, argv);
}
